"""CS800 device against the session simulated IOC (real Channel Access and UDP on loopback).

The fixtures here (``cs0``, ``usable_cs0``, ``RE``) are also imported by
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
from ophyd_cs800.errors import CS800CommsDisabledError, CS800RangeError, CS800StaleError
from ophyd_cs800.protocol import MOVING_PHASES, Phase, RunMode

pytestmark = pytest.mark.integration

#: Status period used for the sim: it broadcasts up to 20 times a wall second at speed 500;
#: 0.25 s keeps the confirmation window (3 periods) comfortable on a loaded machine, and a few
#: extra re-sends (harmless: the same command again) absorb a slow moment of a shared CI box.
SIM_STATUS_PERIOD = 0.25
MAX_RESENDS = 5
SETTLE = 0.3
WAIT = 60.0


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
    mode = dev.run_mode.get()
    if mode in (RunMode.SHUTDOWN_OK, RunMode.SHUTDOWN_FAIL, RunMode.STARTUP_FAIL,
                RunMode.STARTUP):
        dev.restart().wait(WAIT)
    if dev.run_mode.get() == RunMode.RUN and dev.phase.get() != Phase.HOLD:
        dev.hold().wait(WAIT)
    assert dev.run_mode.get() in (RunMode.STARTUP_OK, RunMode.RUN)


@pytest.fixture(scope="module")
def cs0(cs800_sim_ioc):
    dev = CS800(cs800_sim_ioc.controller_prefix(0), name="cs0", settle_time=SETTLE,
                status_period=SIM_STATUS_PERIOD, max_resends=MAX_RESENDS)
    dev.wait_for_connection(timeout=20)
    yield dev
    make_usable(dev, cs800_sim_ioc)


@pytest.fixture()
def usable_cs0(cs0, cs800_sim_ioc):
    make_usable(cs0, cs800_sim_ioc)
    cs0.settle_time.put(SETTLE)
    cs0.ramp_rate.put(360)
    yield cs0
    make_usable(cs0, cs800_sim_ioc)


@pytest.fixture()
def RE():
    engine = RunEngine({}, context_managers=[])
    yield engine
    if engine.state != "idle":
        engine.halt()


def test_read_and_describe_against_the_ioc(usable_cs0):
    cs0 = usable_cs0
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


def test_out_of_range_raises_before_anything_is_sent(usable_cs0):
    cs0 = usable_cs0
    target_before = cs0.rtemp.get(use_monitor=False)
    with pytest.raises(CS800RangeError, match="80.00 K to 400.00 K"):
        cs0.set(401)
    with pytest.raises(CS800RangeError, match="ramp rate"):
        cs0.set(200, rate=500)
    assert cs0.rtemp.get(use_monitor=False) == target_before
    assert cs0.active_job is None


def test_stop_during_a_move_holds_and_never_sends_stop(usable_cs0, cs800_sim_ioc):
    cs0 = usable_cs0
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
    log = cs800_sim_ioc.log_text(10**8)[log_before:]
    assert "CS0 INFO: sent HOLD" in log and "sent STOP" not in log


def test_stale_controller_fails_the_move_instead_of_hanging(usable_cs0, cs800_sim_ioc):
    cs0 = usable_cs0
    broadcast = sim_signal(cs800_sim_ioc, "SIM:BROADCAST")
    start = cs0.temperature.get()
    status = cs0.set(start - 20 if start > 120 else start + 20, rate=10)  # ~14 s of wall time
    assert poll(lambda: cs0.phase.get() == Phase.RAMP)
    broadcast.put("Off", wait=True)
    try:
        with pytest.raises(CS800StaleError, match="stopped reporting"):
            status.wait(WAIT)
        with pytest.raises(CS800StaleError, match="not reporting"):
            cs0.set(200)
    finally:
        broadcast.put("On", wait=True)
    assert poll(lambda: not cs0._temp_invalid())


def test_comms_disabled_is_refused(usable_cs0):
    cs0 = usable_cs0
    cs0.disable.put(1, wait=True)
    try:
        assert poll(lambda: cs0.disable.get() == 1)
        with pytest.raises(CS800CommsDisabledError, match="disabled"):
            cs0.set(200)
    finally:
        cs0.disable.put(0, wait=True)
