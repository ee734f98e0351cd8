"""Flyer events carry the time of each change, stream during the flight, and the safe state
is retried after a failure until it holds."""

from __future__ import annotations

import threading
import time

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import polling
import pytest
import test_flyer_fly
from bluesky.utils import FailedStatus
from test_runner_virtual import TUTORIAL

from soldrv.backends import SimHardware
from soldrv.compiler import compile_text
from soldrv.flyer import SolenoidCycler
from soldrv.plans import fly_streaming, run_cycle

SPEED = 4.0  # the tutorial's 4 s cycle in 1 s of wall time: ticks 62.5 ms apart
STEPS = [0, 5, 6, 8, 14, 5, 6, 8, 14]  # the ticks of two cycles that change an output
TOLERANCE = 0.05  # s

RE = test_flyer_fly.RE  # the RunEngine fixture (halted at the end if a test left it running)


def flown(RE, plan, cyc, pages=None):
    """Run ``plan``; return the event rows (with ``time``) and the epoch time each page came."""
    pages = [] if pages is None else pages
    RE.subscribe(lambda n, d: pages.append((time.time(), d)) if n == "event_page" else None)
    RE(plan)
    rows = []
    for _, page in pages:
        for i, t in enumerate(page["time"]):
            row = {k: v[i] for k, v in page["data"].items()}
            row["time"] = t
            row["timestamps"] = {k: v[i] for k, v in page["timestamps"].items()}
            rows.append(row)
    return rows, [t for t, _ in pages]


def change_times(hw):
    """Epoch times of the cycle's strobes in the SimHardware log (monotonic clock)."""
    offset = time.time() - time.monotonic()
    # the first and last entries are the safe state written by stage and unstage
    return [e.time + offset for e in hw.log if e.kind == "strobe"]


def tutorial(**kw):
    prog = compile_text(TUTORIAL, "tutorial.sol").program
    hw = SimHardware(prog)
    return SolenoidCycler(prog, hw, name="cyc", speed=SPEED, **kw), hw


def test_events_carry_the_change_times_and_stream_during_the_flight(RE):
    cyc, hw = tutorial()
    pages = []
    rows, arrivals = flown(RE, run_cycle(cyc, 0, cycles=2, period=0.1), cyc, pages)
    assert [r["cyc_step"] for r in rows] == STEPS
    changes = change_times(hw)[1:-1]  # without the safe states of stage and unstage
    assert len(changes) == len(rows) == 9
    for row, changed in zip(rows, changes, strict=True):
        assert abs(row["time"] - changed) < TOLERANCE, (row, changed)
        assert set(row["timestamps"].values()) == {row["time"]}  # every key: the change
    # and on the schedule, not bunched at the end: step k of cycle c at (4 c + k/4) logical s
    # after the first change (a loose bound: a loaded machine delays single ticks by tens of ms)
    t0 = rows[0]["time"]
    for r in rows:
        assert abs(r["time"] - t0 - r["cyc_elapsed"] / SPEED) < 0.2, r
    # streamed: a page reached the subscriber before the flight's last change, and every
    # page within a second of its last change (collects: each tick batch, at most every 0.1 s)
    assert len(arrivals) >= 2 and arrivals[0] < changes[-1]
    assert max(arrivals[i] - max(p["time"]) for i, (_, p) in enumerate(pages)) < 1.0


def test_a_failing_flight_still_emits_the_events_before_the_failure(RE):
    prog = compile_text(TUTORIAL, "tutorial.sol").program
    hw = test_flyer_fly.FailingSim(prog, 24)  # opening B (step 5) fails
    cyc = SolenoidCycler(prog, hw, name="cyc", speed=SPEED)
    pages = []
    with pytest.raises(FailedStatus):
        flown(RE, run_cycle(cyc, 0, cycles=2), cyc, pages)
    rows = [(s, a, b) for _, p in pages
            for s, a, b in zip(p["data"]["cyc_step"], p["data"]["cyc_A"], p["data"]["cyc_B"],
                               strict=True)]
    assert rows == [(0, 1, 0), (5, 1, -1)]
    assert hw.states == {"A": 0, "B": 0}  # the safe state


def test_plain_bp_fly_gives_all_events_with_their_true_times(RE):
    cyc, hw = tutorial()
    cyc.cycles.put(2)
    rows, arrivals = flown(RE, bp.fly([cyc]), cyc)
    assert len(arrivals) == 1  # bp.fly collects once, at the end
    assert [r["cyc_step"] for r in rows] == STEPS
    changes = change_times(hw)
    assert len(changes) == 9  # not staged: no safe state written
    for row, changed in zip(rows, changes, strict=True):
        assert abs(row["time"] - changed) < TOLERANCE, (row, changed)
    assert rows[-1]["time"] - rows[0]["time"] > 1.5  # spread over the flight, not bunched


class OtherFlyer:
    """A flyer that does not ask for its times to be kept: bluesky's behaviour is unchanged."""

    name = "other"
    parent = None

    def kickoff(self):
        from ophyd.status import Status

        st = Status()
        st.set_finished()
        return st

    complete = kickoff

    def describe_collect(self):
        return {"other": {"x": {"source": "x", "dtype": "number", "shape": []}}}

    def collect(self):
        yield {"time": 1.0, "data": {"x": 1}, "timestamps": {"x": 1.0}}


def test_other_flyers_keep_bluesky_collect_time(RE):
    tutorial()  # a cycler exists: the event-time wrapper is installed
    rows, _ = flown(RE, bp.fly([OtherFlyer()]), None)
    assert len(rows) == 1 and rows[0]["time"] > 1e9  # the collect time, as bluesky does


def test_fly_streaming_refuses_a_bad_period(RE):
    cyc, _ = tutorial()
    with pytest.raises(ValueError, match="period must be > 0 s, got 0"):
        RE(fly_streaming([cyc], period=0))


class BreakableSim(SimHardware):
    """SimHardware whose strobes raise while ``broken`` is set (a valve bank gone away)."""

    def __init__(self, program):
        super().__init__(program)
        self.broken = threading.Event()
        self.break_after_b = True

    def strobe(self, commands):
        if self.broken.is_set():
            raise ConnectionError("the valve bank is unreachable")
        super().strobe(commands)
        if 24 in commands and self.break_after_b:  # B opened (step 5): the bank goes away
            self.break_after_b = False
            self.broken.set()


def test_a_safe_state_that_fails_is_retried_until_it_holds(RE):
    prog = compile_text(TUTORIAL, "tutorial.sol").program
    hw = BreakableSim(prog)
    cyc = SolenoidCycler(prog, hw, name="cyc", speed=SPEED, safe_retry_period=0.05)
    cyc.cycles.put(3)
    with pytest.raises(FailedStatus) as info:
        RE(bp.fly([cyc]))
    text = str(info.value.__cause__ or info.value)
    assert "the hardware call failed: ConnectionError: the valve bank is unreachable" in text
    assert ("putting the safe state failed too (ConnectionError: the valve bank is "
            "unreachable); it is retried every 0.05 s until it holds") in text
    assert cyc.safe_state.retrying and hw.states["B"] == 1  # B is still open
    hw.broken.clear()  # the bank is back
    polling.wait_for(lambda: hw.states == {"A": 0, "B": 0}, "the retried safe state", 5)
    polling.wait_for(lambda: not cyc.safe_state.retrying, "the retry to end", 5)
    assert cyc.read()["cyc_B"]["value"] == 0 and cyc.safe_state.last_error is None
    # a new flight stops a retry that is still running (it must not close valves mid-flight)
    hw.broken.set()
    cyc.safe_state.retry_period = 60.0
    assert "it is retried every 60 s" in cyc.safe_state.put_after_failure()
    assert cyc.safe_state.retrying
    hw.broken.clear()
    cyc.cycles.put(1)
    cyc.kickoff().wait(5)
    assert not cyc.safe_state.retrying
    cyc.complete().wait(10)
    RE(bps.null())  # the RunEngine is still usable
