"""soldrv real-time runner: absolute deadlines, requests from other threads, errors survived."""

from __future__ import annotations

import functools
import threading
import time

import polling
import pytest
from test_runner_virtual import TUTORIAL, outputs

from soldrv.backends import SimHardware
from soldrv.compiler import compile_text
from soldrv.program import Program, SetPoint, Solenoid
from soldrv.runner import ModeRequestError, ProgramError, RealTimeRunner, VirtualRunner

SPEED = 20.0  # logical seconds per wall second: the 4 s tutorial cycle takes 0.2 s


wait_for = functools.partial(polling.wait_for, interval=0.005)


def test_real_time_run_matches_the_virtual_clock_and_is_never_early():
    prog = compile_text(TUTORIAL).program
    acts = []
    hw = SimHardware(prog)
    with RealTimeRunner(prog, hw, on_action=acts.append, speed=SPEED) as rt:
        rt.set_limits(cycles=2)
        rt.request_mode(0, wait=5.0)
        assert rt.wait_idle(timeout=10.0)
    start = next(a.time for a in acts if a.kind == "mode")
    got = [(round(t - start, 9), k, p) for t, k, p in outputs(acts)]
    ref = outputs(VirtualRunner(prog).run([(0.0, 0)], duration=8.0))
    assert got == ref
    ticked = [a for a in acts if a.deadline is not None]
    assert ticked and all(a.wall >= a.deadline for a in ticked)
    # deadlines are absolute: t0 + k * period, scaled by the speed
    t0 = next(a for a in acts if a.kind == "set_time")
    for a in ticked:
        assert a.deadline == pytest.approx(rt.wall_of(t0.time + a.tick * 0.25), abs=1e-9)
    assert acts[-1].kind == "halt" and acts[-1].detail == "2 cycle(s) done"
    assert hw.states == {"A": 1, "B": 0}  # stopped at the wrap, before the next cycle


def test_requests_from_another_thread_and_refusals():
    prog = compile_text(TUTORIAL).program
    acts = []
    with RealTimeRunner(prog, on_action=acts.append, speed=SPEED) as rt:
        with pytest.raises(ModeRequestError, match="mode 4 is not defined"):
            rt.request_mode(4)
        t = threading.Thread(target=rt.request_mode, args=(0,))
        t.start()
        t.join(5)
        wait_for(lambda: any(a.kind == "goto" for a in acts), what="a cycle")
        assert rt.halt("test", wait=5.0)
        n = len(acts)
        assert acts[-1].kind == "halt" and rt.machine.mode is None
    assert len(acts) == n  # nothing after the halt but the runner stopping quietly


def test_duration_limit_halts_the_mode():
    prog = compile_text(TUTORIAL).program
    acts = []
    with RealTimeRunner(prog, on_action=acts.append, speed=SPEED) as rt:
        rt.set_limits(duration=1.4)
        rt.request_mode(0)
        assert rt.wait_idle(timeout=10.0)
    halt = acts[-1]
    assert halt.kind == "halt" and halt.detail.startswith("duration done")
    assert max(a.time for a in acts if a.is_output) < halt.time


def test_a_duration_set_before_the_request_counts_from_the_mode_start():
    prog = compile_text(TUTORIAL).program
    acts = []
    with RealTimeRunner(prog, on_action=acts.append, speed=SPEED) as rt:
        assert rt.set_limits(duration=1.4, wait=5.0)  # handled while no mode runs
        posted = rt.logical_now()
        wait_for(lambda: rt.logical_now() >= posted + 1.0, what="1 logical s to pass")
        rt.request_mode(0, wait=5.0)
        assert rt.wait_idle(timeout=10.0)
    start = next(a.time for a in acts if a.kind == "mode")
    halt = acts[-1]
    assert start >= posted + 1.0
    assert halt.kind == "halt" and halt.time == pytest.approx(start + 1.4, abs=1e-9)


def test_limits_end_with_the_mode_they_were_set_for():
    """A mode halted before its limits are reached: the next mode does not inherit them."""
    prog = compile_text(TUTORIAL).program
    acts = []
    with RealTimeRunner(prog, on_action=acts.append, speed=SPEED) as rt:
        rt.request_mode(0, wait=5.0)
        assert rt.set_limits(cycles=50, duration=4.0, wait=5.0)
        assert rt.halt("operator", wait=5.0)
        halted = rt.logical_now()
        wait_for(lambda: rt.logical_now() >= halted + 6.0, what="the old deadline to pass")
        rt.request_mode(0, wait=5.0)
        start = rt.logical_now()
        wait_for(lambda: sum(a.kind == "goto" for a in acts if a.time > start) >= 2,
                 what="two cycles of the second mode")
        assert rt.machine.mode == 0  # neither the old 4 s deadline nor the cycle count ended it
        assert rt.halt("done", wait=5.0)
    halts = [a.detail for a in acts if a.kind == "halt"]
    assert halts == ["operator", "done"]


def test_program_error_in_the_thread_is_reported_and_the_runner_keeps_serving():
    prog = Program(
        version=0x0300,
        solenoids=[Solenoid(1, 2, 0x408, 1)],
        set_points=[SetPoint(0x10, 7)],
        mode_indices=[0, 6],
        # mode 0: SET_TIME 1/16 s, WAIT, DTOA 9 (bad) ; mode 1: STROBES 1, END_MODE
        code=bytes([2, 0, 4, 1, 8, 9, 0, 1, 4]),
    )
    errors = []
    idle = threading.Event()
    with RealTimeRunner(prog, on_error=errors.append, on_idle=idle.set, speed=SPEED) as rt:
        rt.request_mode(0)
        assert idle.wait(10.0)
        assert len(errors) == 1 and isinstance(errors[0], ProgramError)
        assert "DTOA 9 is out of range" in str(errors[0])
        idle.clear()
        hw_calls = []
        rt.machine.hardware = type("H", (), {"strobe": lambda s, c: hw_calls.append(c)})()
        rt.request_mode(1)
        assert idle.wait(10.0)
        assert hw_calls == [[1]]


def test_runner_must_be_started_and_speed_checked():
    prog = compile_text(TUTORIAL).program
    with pytest.raises(ValueError, match="speed"):
        RealTimeRunner(prog, speed=0)
    with pytest.raises(RuntimeError, match="not started"):
        RealTimeRunner(prog).request_mode(0)


def test_wait_idle_never_returns_before_a_queued_request_ran():
    # mode 1 is init-only (STROBES 1, END_MODE): each request runs and ends at once
    prog = Program(version=0x0300, solenoids=[Solenoid(1, 2, 0x408, 1)],
                   mode_indices=[0xFFFF, 0], code=bytes([0, 1, 4]))
    acts = []
    slow = threading.Event()

    def slow_clock():
        # the runner thread reads the clock between taking a request off the queue and
        # running it: stall it there once, for longer than wait_idle's 0.1 s poll
        if slow.is_set() and threading.current_thread().name == "soldrv":
            slow.clear()
            time.sleep(0.3)
        return time.monotonic()

    with RealTimeRunner(prog, on_action=acts.append, clock=slow_clock) as rt:
        for i in range(1, 4):
            slow.set()
            rt.request_mode(1)  # no wait: only wait_idle synchronises
            assert rt.wait_idle(timeout=10.0)
            assert sum(1 for a in acts if a.kind == "end_mode") == i


def test_a_callback_that_raises_stops_the_mode_but_not_the_runner():
    prog = compile_text(TUTORIAL).program
    errors = []

    def on_action(act):
        if act.kind == "strobe" and act.tick == 5:
            raise KeyError("bad callback")

    hw = SimHardware(prog)
    with RealTimeRunner(prog, hw, on_action=on_action, on_error=errors.append,
                        speed=SPEED) as rt:
        rt.request_mode(0, wait=5.0)
        assert rt.wait_idle(timeout=10.0)  # the mode was stopped, not left "running"
        assert [type(e) for e in errors] == [KeyError] and rt.started
        rt.request_mode(0, wait=5.0)  # the thread still serves requests
        assert rt.machine.mode == 0
    assert not rt.started and rt.close()  # close is idempotent
    with pytest.raises(RuntimeError, match="closed"):
        rt.start()
    with pytest.raises(RuntimeError, match="closed"):
        rt.request_mode(0)
