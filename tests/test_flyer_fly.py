"""SolenoidCycler with a RunEngine: bp.fly documents, collected states, limits, stop, plans."""

from __future__ import annotations

import functools
import threading
import time

import bluesky.plans as bp
import polling
import pytest
from bluesky import RunEngine
from bluesky.utils import FailedStatus, RunEngineInterrupted
from ophyd.sim import SynGauss, motor
from test_runner_virtual import TUTORIAL, TUTORIAL_PATTERNS

from soldrv.backends import SimHardware
from soldrv.compiler import compile_text
from soldrv.flyer import SolenoidCycler
from soldrv.machine import ModeRequestError
from soldrv.plans import count_while_cycling, cycle_during, run_cycle

SPEED = 20.0  # the 4 s tutorial cycle takes 0.2 s of wall time

TWO_MODES = """\
solenoid A 22 23 14
solenoid B 24 25 15
DtoA C 0x0E10 { L:50 M:1000 H:4000 }
Proxy D { L:3 H:7 }
resolution = 1/4
mode 0 {
  initialize A: _
  initialize B: _
}
mode 1 {
  A: OO__^
  C: LMHH^
  D: LLHH^
}
mode 2 {
  B: O_O_O_O_^
}
"""


@pytest.fixture
def RE():
    engine = RunEngine({})
    yield engine
    if engine.state != "idle":
        engine.halt()


def record(RE):
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    return docs


def events(docs, stream):
    """Unpack the event pages of ``stream`` into per-event data dicts (time order)."""
    uids = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == stream}
    out = []
    for n, d in docs:
        if n == "event_page" and d["descriptor"] in uids:
            for i in range(len(d["seq_num"])):
                row = {k: v[i] for k, v in d["data"].items()}
                row["time"] = d["time"][i]
                out.append(row)
    return out


def tutorial_cycler(**kw):
    prog = compile_text(TUTORIAL, "tutorial.sol").program
    return SolenoidCycler(prog, SimHardware(prog), name="cyc", speed=SPEED, **kw)


def test_fly_documents_and_collected_states_match_the_cycle(RE):
    cyc = tutorial_cycler()
    docs = record(RE)
    RE(run_cycle(cyc, 0, cycles=2))
    names = [n for n, _ in docs]  # run_cycle collects during the flight: one page or more
    assert names[:2] == ["start", "descriptor"] and names[-1] == "stop"
    assert set(names[2:-1]) == {"event_page"}
    start, desc = docs[0][1], docs[1][1]
    assert start["plan_name"] == "run_cycle" and start["soldrv_mode"] == 0
    assert desc["name"] == "cyc"
    assert {"cyc_A", "cyc_B", "cyc_mode", "cyc_step", "cyc_cycle", "cyc_elapsed"} <= set(
        desc["data_keys"]
    )
    assert docs[-1][1]["exit_status"] == "success"
    rows = events(docs, "cyc")
    # one event per tick that changed something: steps 0, 5, 6, 8, 14, then no change at the
    # wrap (A stays open from step 14 into step 0, B stays closed)
    assert [r["cyc_step"] for r in rows] == [0, 5, 6, 8, 14, 5, 6, 8, 14]
    assert [r["cyc_cycle"] for r in rows] == [0] * 5 + [1] * 4
    for r in rows:
        k = r["cyc_step"]
        assert r["cyc_A"] == (1 if TUTORIAL_PATTERNS["A"][k] == "O" else 0)
        assert r["cyc_B"] == (1 if TUTORIAL_PATTERNS["B"][k] == "O" else 0)
        assert r["cyc_elapsed"] == pytest.approx(r["cyc_cycle"] * 4.0 + k * 0.25)
    times = [r["time"] for r in rows]
    assert times == sorted(times) and abs(times[0] - start["time"]) < 60
    # staged: the hardware ends in the safe state (all closed)
    assert cyc.hardware.states == {"A": 0, "B": 0}
    assert not cyc.flying


def test_duration_limit_and_dtoa_and_proxy_values(RE):
    prog = compile_text(TWO_MODES, "two.sol").program
    hw = SimHardware(prog)
    cyc = SolenoidCycler(prog, hw, name="v", speed=SPEED)
    docs = record(RE)
    RE(run_cycle(cyc, 1, cycles=None, duration=2.9))  # 1 s cycle: ticks up to 2.75 s
    rows = events(docs, "v")
    assert [(r["v_elapsed"], r["v_A"], r["v_da_C"], r["v_proxies"]) for r in rows] == [
        (0.0, 1, 50, "3"), (0.25, 1, 1000, ""), (0.5, 0, 4000, "7"),
        (1.0, 1, 50, "3"), (1.25, 1, 1000, ""), (1.5, 0, 4000, "7"),
        (2.0, 1, 50, "3"), (2.25, 1, 1000, ""), (2.5, 0, 4000, "7"),
    ]
    assert all(r["v_B"] == 0 for r in rows)  # the safe state applied at stage
    assert hw.proxies == [3, 7, 3, 7, 3, 7]


def test_a_mode_that_ends_by_itself_completes(RE):
    prog = compile_text(TWO_MODES).program
    cyc = SolenoidCycler(prog, name="v", speed=SPEED, safe_solenoids={"A": 1, "B": 1})
    docs = record(RE)
    RE(run_cycle(cyc, 0, cycles=None))
    rows = events(docs, "v")
    assert [(r["v_A"], r["v_B"], r["v_mode"]) for r in rows] == [(0, 0, 0)]
    assert cyc.hardware.states == {"A": 1, "B": 1}  # unstage: the custom safe state
    assert cyc.stop_on_complete


def test_undefined_mode_fails_kickoff_and_leaves_the_safe_state(RE):
    cyc = tutorial_cycler()
    with pytest.raises(FailedStatus):
        RE(run_cycle(cyc, 3, cycles=1))
    assert cyc.hardware.states == {"A": 0, "B": 0}
    with pytest.raises(ModeRequestError, match="mode 3 is not defined"):
        cyc.request_mode(3)


def soldrv_threads():
    return [t for t in threading.enumerate() if t.name.startswith("soldrv")]


wait_for = functools.partial(polling.wait_for, interval=0.005)


class WatchedSim(SimHardware):
    """SimHardware that sets an event when a given command is strobed."""

    def __init__(self, program, command):
        super().__init__(program)
        self.command = command
        self.seen = threading.Event()

    def strobe(self, commands):
        super().strobe(commands)
        if self.command in commands:
            self.seen.set()


def test_stop_in_mid_mode_leaves_the_safe_state():
    prog = compile_text(TUTORIAL).program
    hw = WatchedSim(prog, 24)  # 24 opens B (steps 5..7 of 16)
    cyc = SolenoidCycler(prog, hw, name="cyc", speed=1.0)  # B stays open for 0.75 s
    cyc.mode.put(0)
    cyc.cycles.put(100)
    cyc.kickoff().wait(5)
    done = cyc.complete()
    assert hw.seen.wait(10), "B never opened"
    cyc.stop()
    done.wait(5)
    assert done.success and not cyc.flying
    assert hw.states == {"A": 0, "B": 0}
    assert not soldrv_threads()  # the runner thread ended: nothing can run after the stop
    rows = list(cyc.collect())
    # the last change collected is the valve state just before the safe state (B open, unless
    # the stop came more than 0.75 s after B opened on a loaded machine)
    b_before_safe = [c for entry in hw.log[:-1] for c in entry.commands if c in (24, 25)][-1]
    assert rows and rows[-1]["data"]["cyc_B"] == (1 if b_before_safe == 24 else 0)
    assert hw.log[-1].commands == (23, 25)  # the last thing done: the safe state
    cyc.stop()  # stop and unstage are idempotent
    cyc.unstage()
    assert hw.states == {"A": 0, "B": 0} and not soldrv_threads()


class FailingSim(SimHardware):
    """SimHardware whose strobe raises when it carries ``command`` (a PV that went away)."""

    def __init__(self, program, command):
        super().__init__(program)
        self.command = command

    def strobe(self, commands):
        if self.command in commands:
            raise ConnectionError("cs800:VB:V2 is disconnected")
        super().strobe(commands)


def test_a_hardware_failure_mid_cycle_fails_complete_and_leaves_the_safe_state(RE):
    prog = compile_text(TUTORIAL).program
    hw = FailingSim(prog, 24)  # opening B (step 5) fails
    cyc = SolenoidCycler(prog, hw, name="cyc", speed=SPEED)
    cyc.cycles.put(3)
    docs = record(RE)
    with pytest.raises(FailedStatus) as info:
        RE(bp.fly([cyc]))  # not staged: the flyer itself must put the safe state
    text = str(info.value.__cause__ or info.value)
    assert "mode 0, offset" in text
    assert "the hardware call failed: ConnectionError: cs800:VB:V2 is disconnected" in text
    assert "the hardware was put in the safe state" in text
    assert hw.states == {"A": 0, "B": 0}
    assert docs[-1][1]["exit_status"] == "fail"
    wait_for(lambda: not soldrv_threads(), "the runner thread to end")
    # the RunEngine still collects what was recorded; the last event is step 5, where B's
    # failed strobe left it unknown (-1)
    assert [n for n, _ in docs] == ["start", "descriptor", "event_page", "stop"]
    rows = events(docs, "cyc")
    assert [(r["cyc_step"], r["cyc_A"], r["cyc_B"]) for r in rows] == [(0, 1, 0), (5, 1, -1)]
    assert cyc.read()["cyc_B"]["value"] == 0 and not cyc.flying  # then the safe state


class BlockingSim(SimHardware):
    """SimHardware whose proxy triggers block until ``release`` is set (a hung call)."""

    def __init__(self, program):
        super().__init__(program)
        self.release = threading.Event()
        self.entered = threading.Event()

    def proxy(self, proxy_id):
        self.entered.set()
        assert self.release.wait(20)
        super().proxy(proxy_id)


def test_complete_returns_at_once_while_a_hardware_call_hangs():
    prog = compile_text(TWO_MODES).program
    hw = BlockingSim(prog)  # mode 1, step 0: PROXY (hangs), then DTOA, then STROBES
    cyc = SolenoidCycler(prog, hw, name="cyc", speed=SPEED)
    cyc.mode.put(1)
    cyc.cycles.put(0)  # no limit: complete stops the mode
    kick = cyc.kickoff()
    assert hw.entered.wait(10)  # the runner is stuck in its first hardware call
    kick.wait(5)  # done: the mode runs
    t = time.monotonic()
    st = cyc.complete()
    assert time.monotonic() - t < 2.0 and not st.done
    wait_for(lambda: cyc._flight.runner.machine.halt_requested, "the halt request")
    hw.release.set()
    st.wait(10)
    assert st.success and not cyc.flying
    # the halt took effect after the hung call: the rest of that step never ran
    assert [e.kind for e in hw.log] == ["proxy"]
    cyc.stop()
    assert hw.states == {"A": 0, "B": 0} and hw.dtoa == {0x0E10: None}


def test_kickoff_and_complete_leave_no_thread_behind():
    prog = compile_text(TWO_MODES).program
    cyc = SolenoidCycler(prog, name="v", speed=SPEED)
    cyc.cycles.put(0)
    for _ in range(20):  # mode 0 ends at once: the runner thread ends on its own
        cyc.kickoff().wait(5)
        cyc.complete().wait(5)
    wait_for(lambda: not soldrv_threads(), "every runner thread to end")
    cyc.mode.put(0)
    prog0 = compile_text(TUTORIAL.replace("mode 0", "mode 1")).program
    bad = SolenoidCycler(prog0, name="b")
    with pytest.raises(ModeRequestError, match="mode 0 is not defined"):
        bad.kickoff().wait(5)
    assert not soldrv_threads()


def test_pause_keeps_cycling_and_abort_leaves_the_safe_state(RE):
    cyc = tutorial_cycler()
    docs = record(RE)

    def pause_when_flying():
        wait_for(lambda: cyc.flying, "kickoff")
        RE.request_pause(defer=False)

    threading.Thread(target=pause_when_flying, daemon=True).start()
    with pytest.raises(RunEngineInterrupted):
        RE(run_cycle(cyc, 0, cycles=1000))
    assert RE.state == "paused"
    assert cyc.flying  # the cycle is hardware-timed: a paused RunEngine does not stop it
    RE.abort("test")
    assert RE.state == "idle" and not cyc.flying
    assert cyc.hardware.states == {"A": 0, "B": 0}  # unstage: the safe state
    assert docs[-1][0] == "stop" and docs[-1][1]["exit_status"] == "abort"
    wait_for(lambda: not soldrv_threads(), "the runner thread to end")


def test_failing_plan_unstages_to_the_safe_state(RE):
    cyc = tutorial_cycler()

    def bad_plan():
        yield from cycle_during(_boom(), cyc, 0)

    with pytest.raises(RuntimeError, match="boom"):
        RE(bad_plan())
    assert cyc.hardware.states == {"A": 0, "B": 0} and not cyc.flying


def _boom():
    import bluesky.plan_stubs as bps

    yield from bps.open_run()
    yield from bps.sleep(0.3)
    raise RuntimeError("boom")


def test_request_mode_while_flying_waits_for_the_caret(RE):
    import bluesky.plan_stubs as bps
    import bluesky.preprocessors as bpp

    prog = compile_text(TWO_MODES).program
    cyc = SolenoidCycler(prog, name="v", speed=SPEED / 4)  # mode 1's ^ every 0.2 s
    docs = record(RE)
    cyc.mode.put(1)
    cyc.cycles.put(4)

    @bpp.stage_decorator([cyc])
    @bpp.run_decorator()
    def plan():
        yield from bps.kickoff(cyc, wait=True)
        cyc.request_mode(2)  # while flying: pending until mode 1's next ^
        yield from bps.complete(cyc, wait=True)
        yield from bps.collect(cyc)

    RE(plan())
    rows = events(docs, "v")
    modes = [r["v_mode"] for r in rows]
    assert modes[0] == 1 and 2 in modes
    first2 = modes.index(2)
    assert set(modes[:first2]) == {1} and set(modes[first2:]) == {2}
    # the switch happens at a ^ (a multiple of mode 1's 1 s cycle), at mode 2's step 0
    assert rows[first2]["v_step"] == 0 and rows[first2]["v_cycle"] == 0
    assert rows[first2]["v_elapsed"] == pytest.approx(round(rows[first2]["v_elapsed"]))
    assert rows[first2]["v_elapsed"] >= 1.0
    assert rows[first2]["v_B"] == 1


def test_count_while_cycling_reads_detectors_and_valve_states(RE):
    cyc = tutorial_cycler()
    det = SynGauss("det", motor, "motor", center=0, Imax=1, sigma=1)
    docs = record(RE)
    RE(count_while_cycling([det], cyc, 0, num=3, delay=0.05))
    names = [n for n, _ in docs]
    assert names[0] == "start" and names[-1] == "stop"
    streams = {d["name"] for n, d in docs if n == "descriptor"}
    assert streams == {"primary", "cyc"}
    primary = [d for n, d in docs if n == "event"]
    assert len(primary) == 3
    assert all(d["data"]["cyc_A"] in (0, 1) and "det" in d["data"] for d in primary)
    assert events(docs, "cyc")[0]["cyc_step"] == 0
    assert docs[-1][1]["exit_status"] == "success"
    assert cyc.hardware.states == {"A": 0, "B": 0}


def test_configuration_and_bad_safe_state():
    cyc = tutorial_cycler()
    conf = cyc.read_configuration()
    assert {"cyc_mode", "cyc_cycles", "cyc_duration"} <= set(conf)
    with pytest.raises(KeyError, match="no solenoid 'Z'"):
        tutorial_cycler(safe_solenoids={"Z": 0})
    with pytest.raises(ValueError, match="0 \\(closed\\) or 1"):
        tutorial_cycler(safe_solenoids={"A": 2})


def test_flights_one_after_another_without_staging(RE):
    cyc = tutorial_cycler()
    for _ in range(3):
        RE(bp.fly([cyc]))
        assert not cyc.flying
    wait_for(lambda: not soldrv_threads(), "finished runner threads to end")
    cyc.cycles.put(0)
    cyc.kickoff().wait(5)
    second = cyc.kickoff()
    with pytest.raises(RuntimeError, match="already flying"):
        second.wait(5)
    assert cyc.flying  # the refused kickoff did not disturb the flight
    cyc.complete().wait(5)  # no limit: complete stops the mode
    assert not cyc.flying
    wait_for(lambda: not soldrv_threads(), "the runner thread to end")
