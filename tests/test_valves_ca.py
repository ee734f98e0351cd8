"""The simulated valve bank over Channel Access, driven by OphydHardware and the flyer."""

from __future__ import annotations

import time

import pytest
from bluesky import RunEngine
from caproto import ErrorResponseReceived
from test_runner_virtual import TUTORIAL

from sim_ioc.process import SimIocProcess, ca_read, ca_write
from sim_ioc.valves import ValveBank
from soldrv.backends import OphydHardware, valve_bank_pvs
from soldrv.compiler import compile_text
from soldrv.flyer import SolenoidCycler
from soldrv.plans import run_cycle

N_VALVES = 4


@pytest.fixture(scope="module")
def bank(request):
    """(PV prefix of the bank, IOC process): the session IOC if it serves valves, else ours."""
    import conftest

    if getattr(conftest, "SESSION_VALVES", 0) >= N_VALVES:
        ioc = request.getfixturevalue("cs800_sim_ioc")
    else:
        factory = request.getfixturevalue("module_ioc_factory")
        ioc = factory(SimIocProcess(controllers=1, valves=N_VALVES, speed=100.0))
    prefix = ioc.prefix + "VB:"
    yield prefix, ioc
    for n in range(1, N_VALVES + 1):  # leave the bank closed for other tests
        ca_write(f"{prefix}V{n}", 0, ioc.env)


def read(ioc, pv):
    return ca_read(pv, ioc.env).data


def log_lines(ioc, prefix):
    raw = ca_read(prefix + "LOG", ioc.env).data
    text = bytes(raw).split(b"\0", 1)[0].decode()
    return [line.split(" ", 1)[1] for line in text.splitlines() if line]


def test_valve_bank_class_checks_its_size():
    with pytest.raises(ValueError, match="n_valves must be an integer 1..1024"):
        ValveBank(prefix="x:", n_valves=0)
    with pytest.raises(ValueError, match="n_dtoa"):
        ValveBank(prefix="x:", n_valves=2, n_dtoa=-1)
    bank = ValveBank(prefix="x:", n_valves=2, n_dtoa=1)
    assert sorted(bank.pvdb) == sorted(
        ["x:V1", "x:V1_RBV", "x:V2", "x:V2_RBV", "x:DA1", "x:DA1_RBV", "x:STATES",
         "x:CHANGES", "x:LAST", "x:LOG", "x:NVALVES", "x:NDTOA", "x:RESET"]
    )


@pytest.mark.integration
def test_valve_pvs_readback_log_and_refused_puts(bank):
    prefix, ioc = bank
    n_valves = read(ioc, prefix + "NVALVES")[0]
    assert n_valves == ioc.valves >= N_VALVES
    ca_write(prefix + "RESET", 1, ioc.env)
    ca_write(prefix + "V3", 1, ioc.env)
    assert read(ioc, prefix + "V3_RBV")[0] == 1
    assert list(read(ioc, prefix + "STATES")) == [0, 0, 1] + [0] * (n_valves - 3)
    with pytest.raises(ErrorResponseReceived, match="accepts 0 \\(close\\) or 1"):
        ca_write(prefix + "V3", 5, ioc.env)
    with pytest.raises(ErrorResponseReceived, match="0..65535"):
        ca_write(prefix + "DA2", 70000, ioc.env)
    ca_write(prefix + "DA2", 4000, ioc.env)
    assert read(ioc, prefix + "DA2_RBV")[0] == 4000
    ca_write(prefix + "V3", 0, ioc.env)  # still serving after the refusals
    assert read(ioc, prefix + "CHANGES")[0] == 3
    assert read(ioc, prefix + "LAST")[0] == b"V3=0"
    assert log_lines(ioc, prefix) == ["V3=1", "DA2=4000", "V3=0"]


@pytest.mark.integration
def test_tutorial_flown_over_channel_access(bank):
    prefix, ioc = bank
    prog = compile_text(TUTORIAL, "tutorial.sol").program
    sol, sta, da = valve_bank_pvs(prog, prefix)
    hw = OphydHardware.from_pvs(prog, sol, status=sta, dtoa=da, connect_timeout=10)
    cyc = SolenoidCycler(prog, hw, name="tut", speed=10.0)
    ca_write(prefix + "RESET", 1, ioc.env)
    RE = RunEngine({})
    docs = []
    RE.subscribe(lambda n, d: docs.append((n, d)))
    RE(run_cycle(cyc, 0, cycles=2))
    names = [n for n, _ in docs]  # run_cycle collects during the flight: one page or more
    assert names[:2] == ["start", "descriptor"] and set(names[2:-1]) == {"event_page"}
    steps = [s for n, d in docs if n == "event_page" for s in d["data"]["tut_step"]]
    assert steps == [0, 5, 6, 8, 14, 5, 6, 8, 14]
    # what reached the IOC, in order: safe state (stage), 2 cycles, safe state (unstage)
    cycle = ["V2=1", "V1=0", "V2=0", "V1=1"]
    expected = ["V1=0", "V2=0", "V1=1", "V2=0", *cycle, *cycle, "V1=0", "V2=0"]
    deadline = time.monotonic() + 10
    while log_lines(ioc, prefix) != expected:
        assert time.monotonic() < deadline, log_lines(ioc, prefix)
        time.sleep(0.05)
    assert hw.wait_readback(5.0)
    assert hw.readback() == {"A": 0, "B": 0}
    assert list(read(ioc, prefix + "STATES"))[:2] == [0, 0]


@pytest.mark.integration
def test_missing_pvs_give_a_timeout_sentence(bank):
    prefix, _ = bank
    prog = compile_text(TUTORIAL).program
    with pytest.raises(TimeoutError, match="did not connect within 0.5 s: .*NOPE:V1"):
        OphydHardware.from_pvs(prog, {"A": "NOPE:V1"}, connect_timeout=0.5)


@pytest.mark.integration
def test_a_put_that_fails_mid_cycle_fails_complete_and_closes_what_it_can(bank, ioc_factory):
    """B's PV lives on a second IOC that goes away mid-cycle: its puts raise over CA."""
    from bluesky.utils import FailedStatus

    prefix, ioc = bank
    other = ioc_factory(SimIocProcess(controllers=1, valves=2, speed=100.0))
    prog = compile_text(TUTORIAL, "tutorial.sol").program
    hw = OphydHardware.from_pvs(
        prog, {"A": prefix + "V1", "B": other.prefix + "VB:V2"}, connect_timeout=10
    )
    cyc = SolenoidCycler(prog, hw, name="tut", speed=1.0)
    cyc.cycles.put(3)
    ca_write(prefix + "RESET", 1, ioc.env)
    RE = RunEngine({})
    docs = []
    RE.subscribe(lambda n, d: docs.append((n, d)))

    with pytest.raises(FailedStatus) as info:
        RE(_fly_with(cyc, other))
    text = str(info.value.__cause__)
    assert "the hardware call failed" in text and "VB:V2" in text
    # the safe state closes A; B cannot be reached, and the sentence says so
    assert "putting the safe state failed too" in text
    assert log_lines(ioc, prefix)[-1] == "V1=0"
    assert read(ioc, prefix + "V1_RBV")[0] == 0
    assert docs[-1][1]["exit_status"] == "fail"


def _fly_with(cyc, other):
    """bp.fly, with the second IOC stopped right after the kickoff."""
    import bluesky.plan_stubs as bps
    import bluesky.preprocessors as bpp

    @bpp.run_decorator()
    def inner():
        yield from bps.kickoff(cyc, wait=True)
        other.stop()
        yield from bps.complete(cyc, wait=True)
        yield from bps.collect(cyc)

    return (yield from inner())
