"""CS800 device against the simulated IOC (real Channel Access and UDP on loopback).

Tests whose outcome depends on the IOC run against both flavours (``usable_any``: the fixed
session IOC and a synApps-flavour IOC of this module, ``cs800-sim-ioc --flavor synapps``);
the rest against the session IOC only (``usable_cs0``). The fixtures here (``cs0``,
``usable_cs0``, ``flavour_ioc``, ``any_cs0``, ``usable_any``, ``RE``) are also imported by
``test_plans_integration.py``. Every test leaves controller CS0 usable: comms enabled,
broadcasts on, Ready or Run, not ramping.
"""

from __future__ import annotations

import functools

import polling
import pytest
from bluesky import RunEngine
from ophyd import EpicsSignal

from ophyd_cs800 import CS800
from ophyd_cs800.errors import CS800CommsDisabledError, CS800InterruptedError, CS800RangeError
from ophyd_cs800.protocol import MOVING_PHASES, Phase, RunMode
from sim_ioc.process import SimIocProcess

pytestmark = pytest.mark.integration

#: Status period floor used for the sim: it broadcasts up to 20 (synApps flavour: 8) times a
#: wall second; 0.5 s keeps the confirmation window (3 periods) and the stale limit (3 periods
#: + 0.5 s = 2 s without status) comfortable on a loaded machine, and a few extra re-sends
#: (harmless: the same command again) absorb a slow moment of a shared CI box.
SIM_STATUS_PERIOD = 0.5
MAX_RESENDS = 5
SETTLE = 0.3
WAIT = 60.0


#: The IOC flavours the flavour-dependent tests run against.
FLAVOURS = ("fixed", "synapps")
#: Datagrams per wall second of the synApps-flavour simulator: below the C IOC's 10 decodes
#: per second, so its readbacks do not lag (one controller on the status port).
SYNAPPS_RATE_HZ = 8
#: Simulated seconds per wall second, as the session IOC.
SPEED = 500.0

poll = functools.partial(polling.poll, timeout=WAIT, interval=0.05)


def sim_signal(ioc, suffix, index=0):
    sig = EpicsSignal(ioc.controller_prefix(index) + suffix, name=suffix.replace(":", "_").lower())
    sig.wait_for_connection(timeout=20)
    return sig


def make_usable(dev, ioc):
    """Bring the controller back to a usable state: comms, broadcasts, Ready/Run, holding."""
    broadcast = sim_signal(ioc, "SIM:BROADCAST")
    if broadcast.get(as_string=True) != "On":
        broadcast.put("On", wait=True)
    if dev.disable.get() != 0:
        dev.disable.put(0, wait=True)
    assert poll(lambda: not dev._temp_invalid(), timeout=20), "CS0 TEMP stays INVALID"
    assert poll(lambda: not dev.snapshot().silent, timeout=20), "CS0 stays silent"
    mode = dev.run_mode.get()
    if mode in (RunMode.SHUTDOWN_OK, RunMode.SHUTDOWN_FAIL, RunMode.STARTUP_FAIL,
                RunMode.STARTUP):
        dev.restart().wait(WAIT)
    if dev.run_mode.get() == RunMode.RUN and dev.phase.get() != Phase.HOLD:
        dev.hold().wait(WAIT)
    assert dev.run_mode.get() in (RunMode.STARTUP_OK, RunMode.RUN)


def make_cs0(ioc):
    dev = CS800(ioc.controller_prefix(0), name="cs0", settle_time=SETTLE,
                status_period=SIM_STATUS_PERIOD, max_resends=MAX_RESENDS)
    dev.wait_for_connection(timeout=20)
    return dev


@pytest.fixture(scope="module")
def cs0(cs800_sim_ioc):
    dev = make_cs0(cs800_sim_ioc)
    yield dev
    make_usable(dev, cs800_sim_ioc)


@pytest.fixture(scope="module", params=FLAVOURS)
def flavour_ioc(request, cs800_sim_ioc, module_ioc_factory):
    """The session IOC (fixed flavour), or a synApps-flavour IOC with one controller."""
    if request.param == "fixed":
        return cs800_sim_ioc
    return module_ioc_factory(SimIocProcess(flavor="synapps", controllers=1, speed=SPEED,
                                            max_rate_hz=SYNAPPS_RATE_HZ))


@pytest.fixture(scope="module")
def any_cs0(flavour_ioc):
    """A CS800 on controller CS0 of :func:`flavour_ioc`."""
    dev = make_cs0(flavour_ioc)
    yield dev
    make_usable(dev, flavour_ioc)
    dev.destroy()


def usable(dev, ioc):
    """Yield ``dev`` usable with the default settle time and rate; leave it usable after."""
    make_usable(dev, ioc)
    dev.settle_time.put(SETTLE)
    dev.ramp_rate.put(360)
    yield dev
    make_usable(dev, ioc)


@pytest.fixture()
def usable_any(any_cs0, flavour_ioc):
    yield from usable(any_cs0, flavour_ioc)


@pytest.fixture()
def usable_cs0(cs0, cs800_sim_ioc):
    yield from usable(cs0, cs800_sim_ioc)


@pytest.fixture()
def RE():
    engine = RunEngine({}, context_managers=[])
    yield engine
    if engine.state != "idle":
        engine.halt()


def test_read_and_describe_against_the_ioc(usable_any):
    cs0 = usable_any
    reading = cs0.read()
    assert 80 <= reading["cs0"]["value"] <= 400
    assert reading["cs0_phase"]["value"] in [int(p) for p in Phase]
    desc = cs0.describe()
    assert desc["cs0"]["units"] == "K" and desc["cs0"]["precision"] == 2
    assert cs0.read_configuration()["cs0_controller_number"]["value"] == 411
    assert cs0.limits == (80.0, 400.0)


def test_set_ramps_down_and_up_within_tolerance(usable_cs0):
    cs0 = usable_cs0
    cs0.set(200, rate=360).wait(WAIT)  # start well above 150 K whatever ran before
    updates = []
    status = cs0.set(150)
    status.watch(lambda **kw: updates.append(kw["current"]))
    status.wait(WAIT)
    assert status.success
    assert abs(cs0.temperature.get() - 150) <= cs0.tolerance.get()
    assert cs0.phase.get() not in MOVING_PHASES
    assert cs0.target.get() == pytest.approx(150.0)
    assert len(updates) > 3 and updates[0] > updates[-1]
    cs0.set(170, rate=360).wait(WAIT)
    assert abs(cs0.temperature.get() - 170) <= cs0.tolerance.get()


def test_move_to_the_current_temperature_finishes(usable_cs0):
    cs0 = usable_cs0
    here = round(cs0.temperature.get(), 2)
    status = cs0.set(here)
    status.wait(WAIT)
    assert status.success and cs0.target.get() == pytest.approx(here)
    assert abs(cs0.temperature.get() - here) <= cs0.tolerance.get()


def test_out_of_range_raises_before_anything_is_sent(usable_any, flavour_ioc):
    cs0 = usable_any
    target_before = cs0.rtemp.get(use_monitor=False)
    highest = "400.00" if flavour_ioc.flavor == "fixed" else "360.00"  # the C IOC's RTEMP DRVH
    with pytest.raises(CS800RangeError, match=f"80.00 K to {highest} K"):
        cs0.set(401)
    with pytest.raises(CS800RangeError, match="ramp rate"):
        cs0.set(200, rate=500)
    assert cs0.rtemp.get(use_monitor=False) == target_before
    assert cs0.active_job is None


def test_stop_during_a_move_holds_and_never_sends_stop(usable_any, flavour_ioc):
    cs0, cs800_sim_ioc = usable_any, flavour_ioc
    log_before = len(cs800_sim_ioc.log_text(10**8))
    start = cs0.temperature.get()
    target = start - 60 if start > 150 else start + 60
    status = cs0.set(target, rate=60)
    assert poll(lambda: cs0.phase.get() == Phase.RAMP)
    cs0.stop()
    with pytest.raises(Exception, match="HOLD was sent"):
        status.wait(WAIT)
    assert poll(lambda: cs0.phase.get() == Phase.HOLD)
    assert cs0.run_mode.get() == RunMode.RUN
    held = cs0.target.get()
    assert abs(held - target) > 1  # held where it was, not at the target
    if flavour_ioc.flavor == "fixed":  # the synApps flavour logs no commands ("DEBUG off")
        log = cs800_sim_ioc.log_text(10**8)[log_before:]
        assert "CS0 INFO: sent HOLD" in log and "sent STOP" not in log


def test_comms_disabled_is_refused(usable_any):
    cs0 = usable_any
    cs0.disable.put(1, wait=True)
    try:
        assert poll(lambda: cs0.disable.get() == 1)
        with pytest.raises(CS800CommsDisabledError, match="disabled"):
            cs0.set(200)
    finally:
        cs0.disable.put(0, wait=True)


def test_a_second_client_replacing_the_ramp_is_named(usable_cs0, cs800_sim_ioc):
    """Two devices (two RunEngines' worth) on one controller: the loser is told it was replaced."""
    cs0 = usable_cs0
    other = make_cs0(cs800_sim_ioc)
    try:
        start = cs0.temperature.get()  # whatever earlier tests left
        # The winner's target lies on the other side of the start from the loser's: the
        # loser's ramp never passes it, so the winner always has a move to make (a target
        # within tolerance of TEMP would finish at once, sending nothing).
        down = start - 40 >= 90
        loser_target = round(start - 40 if down else start + 40, 1)  # ~10 s of ramp
        winner_target = round(start + 10 if down else max(start - 10, 82.0), 1)
        loser = cs0.set(loser_target, rate=30)
        # The loser must have seen its own command accepted before the second client writes:
        # one still waiting for it would take the winner's target for an ignored command and
        # send its own again.
        assert poll(lambda: cs0.phase.get() == Phase.RAMP and cs0._runner is not None
                    and cs0._runner.accepted)
        assert cs0.target.get() == pytest.approx(loser_target)
        winner = other.set(winner_target, rate=360)
        with pytest.raises(CS800InterruptedError, match="another command replaced this one"):
            loser.wait(WAIT)
        winner.wait(WAIT)
        assert winner.success
    finally:
        other.destroy()
