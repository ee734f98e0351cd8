"""The reference timer (C driver's truncated period) and WAITS 0 as the C driver runs it."""

from __future__ import annotations

import io

import pytest
from test_runner_virtual import outputs, tiny

from soldrv.compiler import compile_text
from soldrv.drv_cli import main
from soldrv.flyer import SolenoidCycler
from soldrv.machine import SoldrvMachine
from soldrv.runner import RealTimeRunner, VirtualRunner
from soldrv.trace import trace_mode

TENTH = """\
solenoid A 1 2 3
resolution = 1/10
mode 0 {
  A: O_
}
"""


def tenth_program():
    return compile_text(TENTH, "tenth.sol").program


@pytest.mark.parametrize("timer, ticks", [("exact", 3000), ("reference", 3011)])
def test_ticks_by_300_s_at_a_tenth_of_a_second(timer, ticks):
    # SET_TIME 1638: exact 1638/16384 s = 0.0999756 s; the C driver cuts the sub-second part
    # to a multiple of 1/1024 s: 102/1024 s = 0.0996094 s, 0.37 ms shorter per tick
    vr = VirtualRunner(tenth_program(), timer=timer, record=False)
    vr.run([(0.0, 0)], duration=300.0)
    assert vr.ticks_delivered == ticks
    assert vr.machine.period == pytest.approx(0.0999755859375 if timer == "exact" else 0.099609375)


def test_the_default_timer_is_exact_and_a_bad_one_is_refused():
    assert SoldrvMachine(tenth_program()).timer == "exact"
    for make in (lambda: VirtualRunner(tenth_program(), timer="C"),
                 lambda: RealTimeRunner(tenth_program(), timer="C"),
                 lambda: SolenoidCycler(tenth_program(), name="c", timer="C")):
        with pytest.raises(ValueError, match="timer must be 'exact' or 'reference', got 'C'"):
            make()


def test_a_whole_second_count_is_the_same_on_both_timers():
    prog = compile_text(TENTH.replace("1/10", "1/1"), "one.sol").program
    for timer in ("exact", "reference"):
        vr = VirtualRunner(prog, timer=timer, record=False)
        vr.run([(0.0, 0)], duration=300.0)
        assert vr.ticks_delivered == 299


def run_cli(*args):
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(args), stdin=io.StringIO(""), stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("timer, ticks", [(None, 3000), ("exact", 3000), ("reference", 3011)])
def test_soldrv_timer_option_in_a_dry_run(tmp_path, timer, ticks):
    src = tmp_path / "tenth.sol"
    src.write_text(TENTH)
    opt = [] if timer is None else ["--timer", timer]
    rc, out, err = run_cli(str(src), "--dry-run", "--duration", "300", "--mode", "0", "-q", *opt)
    assert (rc, err) == (0, "")
    assert out.splitlines()[-1].endswith(f"after {ticks} ticks")


def test_soldrv_refuses_an_unknown_timer(capsys):
    with pytest.raises(SystemExit) as info:
        main(["x.sol", "--timer", "fast"], stdin=io.StringIO(""))
    assert info.value.code == 2
    assert "invalid choice: 'fast'" in capsys.readouterr().err


# SET_TIME 0x4000 (1 s); STROBES 1 (open); WAITS 0; STROBES 2 (close); WAIT; END_MODE
WAITS_ZERO = b"\x02\x00\x40\x00\x01\x05\x00\x00\x02\x01\x04"


def test_waits_0_waits_one_tick_as_the_c_driver():
    vr = VirtualRunner(tiny(WAITS_ZERO))
    vr.run([(0.0, 0)], duration=5.0)
    assert outputs(vr.actions) == [(0.0, "strobe", (1,)), (1.0, "strobe", (2,))]
    assert [a.kind for a in vr.actions][-1] == "end_mode"
    assert vr.ticks_delivered == 2
    ev = trace_mode(tiny(WAITS_ZERO), 0)
    assert [(e.tick, e.op) for e in ev] == [(0, "set_time"), (0, "strobes"), (1, "strobes"),
                                           (2, "end")]


def test_set_time_actions_say_the_period_and_the_timer():
    prog = tenth_program()
    for timer, text in (("exact", "SET_TIME 1638 (0.0999756 s/tick, exact timer)"),
                        ("reference", "SET_TIME 1638 (0.0996094 s/tick, reference timer)")):
        vr = VirtualRunner(prog, timer=timer)
        vr.run([(0.0, 0)], ticks=1)
        set_time = next(a for a in vr.actions if a.kind == "set_time")
        assert set_time.describe(prog) == text


def test_the_flyer_and_the_real_time_runner_use_the_timer_they_are_given():
    prog = tenth_program()
    cyc = SolenoidCycler(prog, name="c", timer="reference", speed=50.0)
    cyc.cycles.put(1)
    cyc.kickoff().wait(5)
    assert cyc._flight.runner.machine.timer == "reference"
    cyc.complete().wait(10)
    assert RealTimeRunner(prog, timer="reference").machine.period is None  # no SET_TIME yet
    rt = RealTimeRunner(prog, timer="reference", speed=50.0)
    with rt:
        rt.request_mode(0, wait=5)
        assert rt.machine.period == pytest.approx(0.099609375)
