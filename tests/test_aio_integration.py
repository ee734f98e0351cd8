"""The ophyd-async CS800 against the simulated IOC (aioca/libca Channel Access on loopback).

libca reads ``EPICS_CA_ADDR_LIST`` once per process, and ``conftest.py`` puts the session
IOC's port there at import, before aioca is first used: so these tests use the session IOC
(fixed flavour) and not IOCs started later. The device lives in the event loop of a module
RunEngine (:class:`cs800_fakes.LoopThread`); the test thread calls it through
:class:`cs800_fakes.Driver`. The ophyd device of ``test_device_integration`` restores the
controller between tests (comms, broadcasts, Ready/Run, holding).
"""

from __future__ import annotations

import importlib.util
import threading
import time

import pytest
import test_device_integration as shared
import test_pause as pause_shared
import test_suspenders as suspender_shared
from bluesky import plan_stubs as bps
from cs800_fakes import Driver, LoopThread

from ophyd_cs800 import plans
from ophyd_cs800.errors import CS800RangeError, CS800ShutDownError, CS800StaleError
from ophyd_cs800.protocol import Phase, RunMode
from tests.documents import stop_doc

pytest.importorskip("ophyd_async", reason="the [async] extra (Python >= 3.11)")
pytestmark = pytest.mark.integration

cs0 = shared.cs0  # the ophyd device: resets the controller and reads what was written
poll = shared.poll
WAIT = shared.WAIT

#: What either family's read() holds (PHASE/RUNMODE also as text: *_phase_name, ...).
READ_KEYS = {"cs0", "cs0_setpoint", "cs0_target", "cs0_phase", "cs0_run_mode", "cs0_phase_name",
             "cs0_run_mode_name", "cs0_alarm"}
#: A recorded run's monitor streams and their one data key each (plans.monitored_signals).
MONITORS = {"cs0_monitor": {"cs0"}, "cs0_setpoint_monitor": {"cs0_setpoint"},
            "cs0_phase_name_monitor": {"cs0_phase_name"},
            "cs0_run_mode_name_monitor": {"cs0_run_mode_name"},
            "cs0_alarm_monitor": {"cs0_alarm"}, "cs0_alarm_code_monitor": {"cs0_alarm_code"}}


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


def test_read_describe_and_configuration(usable, loop, cs800_sim_ioc):
    from ophyd_cs800 import aio

    dev = usable.dev
    reading = loop.run(dev.read())
    assert set(reading) == READ_KEYS
    assert 80 <= reading["cs0"]["value"] <= 400
    assert isinstance(reading["cs0_phase"]["value"], aio.Phase)
    assert reading["cs0_phase_name"]["value"] == reading["cs0_phase"]["value"].value
    assert reading["cs0_run_mode_name"]["value"] in ("Run", "Startup OK")
    assert reading["cs0_run_mode"]["value"] in (aio.RunMode.RUN, aio.RunMode.STARTUP_OK)
    config = loop.run(dev.read_configuration())
    assert config["cs0_controller_number"]["value"] == 411
    assert dev.hints == {"fields": ["cs0"]} and dev.limits == (80.0, 400.0)
    assert dev.ioc_limits("rtemp") is not None  # the IOC's DRVL/DRVH, read at connection
    # the status-packet PV beats: a heartbeat that does not depend on changing values
    # (one status PV shows the last datagram of either controller: CS1 is quiet meanwhile,
    # else CS0's datagram may rarely be the last one when the IOC refreshes the PV)
    cs800_sim_ioc.silence(1)
    try:
        assert poll(lambda: dev._heartbeat.packets.seen, timeout=10)
    finally:
        cs800_sim_ioc.silence(1, False)
    # the ophyd device's presentation, from the same code
    prefix = cs800_sim_ioc.controller_prefix(0)
    assert repr(dev).startswith("<CS800 cs0: ") and repr(dev).endswith(f" s ago [{prefix}]>")
    assert dev.summary_text().startswith("cs0: ") and ", last status " in dev.summary_text()


class _TokenKeeper:
    """A RunEngine seen by ``store.subscribe_store``, keeping the token to unsubscribe it."""

    def __init__(self, engine):
        self.engine = engine
        self.tokens = []

    def subscribe(self, callback):
        self.tokens.append(self.engine.subscribe(callback))
        return self.tokens[-1]


def test_ramp_plan_documents_match_the_ophyd_family(usable, cs0, loop, tmp_path):
    """RE(ramp(cs, T)) with each family: the same streams, data keys and stored runs."""
    keeper = _TokenKeeper(loop.engine)
    stored = None
    if importlib.util.find_spec("tiled") is not None:  # the [data] extra: store both runs
        from ophyd_cs800 import store

        stored = store.subscribe_store(keeper, tmp_path / "runs")
    keys, uids = {}, {}
    try:
        for family, dev in (("aio", usable.dev), ("ophyd", cs0)):
            docs: list = []
            (uids[family],) = loop.engine(plans.ramp(dev, away(usable)),
                                          lambda name, doc, d=docs: d.append((name, doc)))
            stop = next(doc for name, doc in docs if name == "stop")
            assert stop["exit_status"] == "success", (family, stop)
            keys[family] = {doc["name"]: set(doc["data_keys"])
                            for name, doc in docs if name == "descriptor"}
            config = next(doc for name, doc in docs if name == "descriptor"
                          and doc["name"] == "primary")["configuration"]["cs0"]["data"]
            keys[family]["configuration"] = set(config)
    finally:
        for token in keeper.tokens:
            loop.engine.unsubscribe(token)
    assert keys["aio"] == keys["ophyd"]
    assert keys["aio"]["primary"] == READ_KEYS
    assert {name: keys["aio"][name] for name in MONITORS} == MONITORS
    assert abs(usable.position - cs0.target.get()) <= 0.2
    if stored is not None:  # the store gives both runs back with the same streams
        streams = {family: set(stored.run(uid)) for family, uid in uids.items()}
        assert streams["aio"] == streams["ophyd"] == {"primary", *MONITORS}
        aio_run = stored.run(uids["aio"])
        assert aio_run.metadata["stop"]["exit_status"] == "success"
        assert len(aio_run["primary"]["cs0"].read()) == 2


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
        # the heartbeat, or our IOC's own staleness (INVALID after its 2 s), whichever is first
        with pytest.raises(CS800StaleError, match="no status update from the controller|"
                           "stopped reporting .*INVALID severity"):
            status.wait(WAIT)
        failed = time.monotonic()
        bound = 3 * usable.effective_status_period + 1.0
        assert failed - silenced <= bound, f"failed {failed - silenced:.2f} s after silence"
        assert poll(lambda: usable.describe_state().startswith("cs0: no status for "))
        with pytest.raises(CS800StaleError, match="so the move was not sent"):
            usable.set(200)
    finally:
        cs800_sim_ioc.silence(0, False)


def test_a_deferred_pause_of_an_async_ramp_pauses_within_a_status_period(usable, cs0, loop):
    """As test_pause.py: one RE.request_pause(defer=True) stops the ramp plan at its next
    checkpoint, the controller keeps ramping, and resume() finishes the same run."""
    engine = loop.engine
    docs: list = []
    token = engine.subscribe(lambda name, doc: docs.append((name, doc)))
    try:
        target, timing = pause_shared.start_slow_ramp(
            engine, cs0, docs, lambda re: re.request_pause(defer=True), dev=usable.dev)
        latency = timing["paused"] - timing["requested"]
        assert latency < usable.effective_status_period + 2.0, latency
        # the pause leaves the controller ramping: still in RAMP, or (on a machine slow
        # enough that the ~9 s ramp ended first) holding at the ramp's own target, not held
        # short of it
        assert cs0.phase.get() == Phase.RAMP or (
            cs0.phase.get() == Phase.HOLD and abs(cs0.temperature.get() - target) <= 0.2)
        engine.resume()
    finally:
        if engine.state != "idle":
            engine.abort()
        engine.unsubscribe(token)
    events = pause_shared.primary_events(docs)
    assert [e["seq_num"] for e in events] == [1, 2]
    assert abs(events[1]["data"]["cs0"] - target) <= 0.2
    assert stop_doc(docs)["exit_status"] == "success"


def test_alarm_suspends_an_async_ramp_and_clearing_it_resumes(usable, cs0, loop,
                                                                cs800_sim_ioc):
    """As test_suspenders.py: SuspendOnAlarm on the ophyd-async device's ALARMI signal (and
    SuspendOnShutdown on its RUNMODE, which reads "Run" and so never trips)."""
    from ophyd_cs800.suspenders import SuspendOnAlarm, SuspendOnShutdown, SuspendWhenStale

    engine = loop.engine
    sim_alarm = shared.sim_signal(cs800_sim_ioc, "SIM:ALARM")
    start = usable.position
    target = round(start - 10 if start - 10 >= 100 else start + 10, 1)  # ~3.6 s at 20 K/h
    suspenders = [SuspendOnAlarm(usable.dev, level=3), SuspendOnShutdown(usable.dev)]
    assert not SuspendWhenStale(usable.dev)._should_suspend(0.0)  # the controller talks
    docs: list = []
    seen = {}

    def inject_then_clear():
        try:
            if not poll(lambda: cs0.phase.get() == Phase.RAMP
                        and pause_shared.primary_events(docs), timeout=30):
                return
            sim_alarm.put(suspender_shared.BROWNOUT, wait=True)
            seen["suspended"] = poll(
                lambda: suspender_shared.stream_events(docs, "interruptions"), timeout=30)
        finally:
            sim_alarm.put(0, wait=True)

    engine.record_interruptions = True
    for suspender in suspenders:
        engine.install_suspender(suspender)
    token = engine.subscribe(lambda name, doc: docs.append((name, doc)))
    thread = threading.Thread(target=inject_then_clear, daemon=True)
    thread.start()
    try:
        engine(plans.ramp(usable.dev, target, rate=20))
    finally:
        thread.join(timeout=60)
        sim_alarm.put(0, wait=True)
        for suspender in suspenders:
            engine.remove_suspender(suspender)
        engine.unsubscribe(token)
        engine.record_interruptions = False
    assert seen.get("suspended"), "the alarm did not suspend the plan"
    assert suspenders[1]._last == "Run"  # RUNMODE reached SuspendOnShutdown, as text
    interruptions = [e["data"]["interruption"]
                     for e in suspender_shared.stream_events(docs, "interruptions")]
    assert interruptions == ["cs0 has alarm 15 'Brownout' (level 3), at or above level 3"]
    stop = stop_doc(docs)
    assert stop["exit_status"] == "success"
    assert "cs0 raised alarm 15 'Brownout' (level 3) during the run" in stop["reason"]
    codes = [e["data"]["cs0_alarm_code"]
             for e in suspender_shared.stream_events(docs, "cs0_alarm_code_monitor")]
    assert suspender_shared.BROWNOUT in codes and codes[-1] == 0
    assert abs(usable.position - target) <= 0.2
