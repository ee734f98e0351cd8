"""The ophyd-async CS800 against the simulated IOC (aioca/libca Channel Access on loopback).

libca reads ``EPICS_CA_ADDR_LIST`` once per process, and ``conftest.py`` puts the session
IOC's port there at import, before aioca is first used: so these tests use the session IOC
(fixed flavour) and not IOCs started later. The device lives in the event loop of a module
RunEngine (:class:`cs800_fakes.LoopThread`); the test thread calls it through
:class:`cs800_fakes.Driver`. The ophyd device of ``test_device_integration`` restores the
controller between tests (comms, broadcasts, Ready/Run, holding).
"""

from __future__ import annotations

import time

import pytest
import test_device_integration as shared
from bluesky import plan_stubs as bps
from cs800_fakes import Driver, LoopThread

from ophyd_cs800 import plans
from ophyd_cs800.errors import CS800RangeError, CS800ShutDownError, CS800StaleError
from ophyd_cs800.protocol import Phase, RunMode

pytest.importorskip("ophyd_async", reason="the [async] extra (Python >= 3.11)")
pytestmark = pytest.mark.integration

cs0 = shared.cs0  # the ophyd device: resets the controller and reads what was written
poll = shared.poll
WAIT = shared.WAIT


@pytest.fixture(scope="module")
def loop():
    # Not closed: libca keeps calling back into the loop of its channels (e.g. when the
    # session IOC stops at the end), as every RunEngine's loop stays open in bluesky.
    return LoopThread()


@pytest.fixture(scope="module")
def acs0(cs800_sim_ioc, loop):
    """An ``ophyd_cs800.aio.CS800`` on controller CS0 of the session IOC, named ``cs0``."""
    from ophyd_cs800 import aio

    async def build():
        dev = aio.CS800(cs800_sim_ioc.controller_prefix(0), name="cs0",
                        settle_time=shared.SETTLE, status_period=shared.SIM_STATUS_PERIOD,
                        max_resends=shared.MAX_RESENDS)
        await dev.connect(timeout=20)
        return dev

    dev = loop.run(build(), timeout=30)
    yield Driver(dev, None, loop)


@pytest.fixture()
def usable(acs0, cs0, cs800_sim_ioc):
    shared.make_usable(cs0, cs800_sim_ioc)
    assert poll(lambda: not acs0.snapshot().silent and acs0.snapshot().run_mode in
                (RunMode.STARTUP_OK, RunMode.RUN) and acs0.active_job is None)
    yield acs0
    if acs0.moving:
        acs0.stop()
    shared.make_usable(cs0, cs800_sim_ioc)


def away(dev, delta=15.0):
    """A target ``delta`` K from the current temperature (a short move: ~1 s at x500)."""
    here = dev.position
    return round(here - delta if here > 150 else here + delta, 1)


def test_read_describe_and_configuration(usable, loop):
    from ophyd_cs800 import aio

    dev = usable.dev
    reading = loop.run(dev.read())
    assert set(reading) == {"cs0", "cs0_setpoint", "cs0_target", "cs0_phase", "cs0_run_mode",
                            "cs0_alarm"}
    assert 80 <= reading["cs0"]["value"] <= 400
    assert isinstance(reading["cs0_phase"]["value"], aio.Phase)
    assert reading["cs0_run_mode"]["value"] in (aio.RunMode.RUN, aio.RunMode.STARTUP_OK)
    config = loop.run(dev.read_configuration())
    assert config["cs0_controller_number"]["value"] == 411
    assert dev.hints == {"fields": ["cs0"]} and dev.limits == (80.0, 400.0)
    assert dev.ioc_limits("rtemp") is not None  # the IOC's DRVL/DRVH, read at connection
    # the status-packet PV beats: a heartbeat that does not depend on changing values
    assert poll(lambda: dev._heartbeat.packets.seen, timeout=10)


def test_ramp_plan_documents_match_the_ophyd_family(usable, cs0, loop):
    """RE(ramp(cs, T)) with each family: the same streams and the same data keys."""
    keys = {}
    for family, dev in (("aio", usable.dev), ("ophyd", cs0)):
        docs: list = []
        loop.engine(plans.ramp(dev, away(usable)), lambda name, doc, d=docs: d.append((name, doc)))
        stop = next(doc for name, doc in docs if name == "stop")
        assert stop["exit_status"] == "success", (family, stop)
        keys[family] = {doc["name"]: set(doc["data_keys"])
                        for name, doc in docs if name == "descriptor"}
        config = next(doc for name, doc in docs if name == "descriptor"
                      and doc["name"] == "primary")["configuration"]["cs0"]["data"]
        keys[family]["configuration"] = set(config)
    assert keys["aio"] == keys["ophyd"]
    assert keys["aio"]["primary"] == {"cs0", "cs0_setpoint", "cs0_target", "cs0_phase",
                                      "cs0_run_mode", "cs0_alarm"}
    assert keys["aio"]["cs0_monitor"] == {"cs0"}
    assert abs(usable.position - cs0.target.get()) <= 0.2


def test_bps_mv_and_cool_reach_the_target(usable, loop):
    target = away(usable)
    loop.engine(bps.mv(usable.dev, target))
    assert abs(usable.position - target) <= 0.2
    target = away(usable, 10.0)
    loop.engine(plans.cool(usable.dev, target))
    assert abs(usable.position - target) <= 0.2 and usable.snapshot().target == target


def test_plateau_then_hold(usable, cs0, loop):
    loop.engine(plans.plateau(usable.dev, 1, wait=True))  # 60 s simulated: 0.12 s at x500
    assert usable.snapshot().phase == Phase.HOLD  # the plateau is over: Hold follows
    loop.engine(plans.hold(usable.dev))
    assert usable.snapshot().phase == Phase.HOLD
    assert poll(lambda: cs0.phase.get() == Phase.HOLD and cs0.run_mode.get() == RunMode.RUN)


def test_stop_holds_where_it_is(usable, cs0):
    target = away(usable)
    status = usable.set(target, rate=60)
    assert poll(lambda: cs0.phase.get() == Phase.RAMP)
    usable.stop().wait(WAIT)
    with pytest.raises(Exception, match="HOLD was sent"):
        status.wait(WAIT)
    assert poll(lambda: cs0.phase.get() == Phase.HOLD)
    assert abs(cs0.target.get() - target) > 1  # held where it was, not at the target


def test_end_then_restart(usable, cs0, loop):
    loop.engine(plans.end(usable.dev, wait=True))
    assert usable.snapshot().run_mode == RunMode.SHUTDOWN_OK
    with pytest.raises(CS800ShutDownError, match="controller is shut down"):
        usable.set(200)
    loop.engine(plans.restart(usable.dev))
    assert usable.snapshot().run_mode in (RunMode.STARTUP_OK, RunMode.RUN)


def test_out_of_range_refused_before_writing(usable, cs0):
    before = cs0.rtemp.get(use_monitor=False), cs0.rrate.get(use_monitor=False)
    with pytest.raises(CS800RangeError, match="80.00 K to 400.00 K; nothing was sent"):
        usable.set(401)
    with pytest.raises(CS800RangeError, match="ramp rate"):
        usable.set(200, rate=500)
    assert (cs0.rtemp.get(use_monitor=False), cs0.rrate.get(use_monitor=False)) == before
    assert usable.active_job is None


def test_silenced_controller_fails_within_the_ophyd_bound(usable, cs0, cs800_sim_ioc):
    """The same bound as the ophyd device: 3 (learned) status periods + 1 s after silence."""
    start = usable.position
    status = usable.set(start - 20 if start > 120 else start + 20, rate=10)
    assert poll(lambda: cs0.phase.get() == Phase.RAMP)
    cs800_sim_ioc.silence(0)
    silenced = time.monotonic()
    try:
        with pytest.raises(CS800StaleError, match="no status update from the controller"):
            status.wait(WAIT)
        failed = time.monotonic()
        bound = 3 * usable.effective_status_period + 1.0
        assert failed - silenced <= bound, f"failed {failed - silenced:.2f} s after silence"
        assert usable.describe_state().startswith("cs0: no status for ")
        with pytest.raises(CS800StaleError, match="so the move was not sent"):
            usable.set(200)
    finally:
        cs800_sim_ioc.silence(0, False)
