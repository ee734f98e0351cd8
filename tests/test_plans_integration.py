"""Bluesky plans driving CS0 of the simulated IOC through a real RunEngine.

``RE(ramp(cs0, 150))`` with its documents runs against both IOC flavours (``usable_any``: the
fixed session IOC and a synApps-flavour IOC); the rest, which does not depend on the flavour,
against the session IOC.
"""

from __future__ import annotations

import time

import pytest
import test_device_integration as shared
from bluesky.utils import FailedStatus
from ophyd.sim import det

from ophyd_cs800 import plans
from ophyd_cs800.device import error_message
from ophyd_cs800.errors import CS800RangeError, CS800ShutDownError
from ophyd_cs800.protocol import MOVING_PHASES, Phase, RunMode
from tests.documents import stop_doc

pytestmark = pytest.mark.integration

# The fixtures of the device integration tests, shared (same controller, same restoring).
RE = shared.RE
cs0 = shared.cs0
usable_cs0 = shared.usable_cs0
flavour_ioc = shared.flavour_ioc
any_cs0 = shared.any_cs0
usable_any = shared.usable_any
poll = shared.poll


def collect(RE):  # noqa: N803
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    return docs


def at(cs, target):
    return abs(cs.temperature.get() - target) <= cs.tolerance.get()


def test_RE_ramp_returns_at_target_with_documents(RE, usable_any):  # noqa: N802
    cs0 = usable_any
    RE(plans.ramp(cs0, 200, record=False))  # well above 150 K whatever ran before: a real ramp
    docs = collect(RE)
    start_temp = cs0.temperature.get()
    uids = RE(plans.ramp(cs0, 150))
    assert len(uids) == 1
    assert at(cs0, 150) and cs0.phase.get() not in MOVING_PHASES
    names = [name for name, _ in docs]
    assert names[0] == "start"
    start = docs[0][1]
    assert start["plan_name"] == "ramp" and start["target_K"] == 150.0
    assert stop_doc(docs)["exit_status"] == "success"
    streams = {doc["uid"]: doc["name"] for name, doc in docs if name == "descriptor"}
    assert set(streams.values()) == {"primary", "cs0_monitor", "cs0_setpoint_monitor",
                                     "cs0_phase_name_monitor", "cs0_run_mode_name_monitor",
                                     "cs0_alarm_monitor", "cs0_alarm_code_monitor"}
    primary = [doc for name, doc in docs
               if name == "event" and streams[doc["descriptor"]] == "primary"]
    monitor = [doc for name, doc in docs
               if name == "event" and streams[doc["descriptor"]] == "cs0_monitor"]
    assert len(primary) == 2
    assert primary[0]["data"]["cs0"] == pytest.approx(start_temp, abs=1.0)
    assert abs(primary[1]["data"]["cs0"] - 150) <= cs0.tolerance.get()
    assert primary[1]["data"]["cs0_target"] == pytest.approx(150.0)
    assert len(monitor) > 3


def test_ramp_without_recording_then_cool(RE, usable_cs0):
    cs0 = usable_cs0
    docs = collect(RE)
    RE(plans.ramp(cs0, 160, 360, record=False))
    assert docs == [] and at(cs0, 160)
    RE(plans.ramp(cs0, 175, rate=300, record=False))  # up again
    assert at(cs0, 175) and cs0.status_ramp_rate.get() in (0, 300)
    RE(plans.cool(cs0, 140, record=False))
    assert at(cs0, 140)


def test_plateau_with_waiting(RE, usable_cs0):
    cs0 = usable_cs0
    phases = []
    token = cs0.phase.subscribe(lambda value, **kw: phases.append(value), run=False)
    try:
        started = time.monotonic()
        RE(plans.plateau(cs0, 5, wait=True))  # 300 s simulated: 0.6 s at speed 500
        elapsed = time.monotonic() - started
        assert poll(lambda: phases and phases[-1] == Phase.HOLD)
    finally:
        cs0.phase.unsubscribe(token)
    assert Phase.PLAT in phases  # the plan waited for the Plat phase to end
    assert elapsed >= 0.5  # lower bound only: 300 simulated s at x500
    assert cs0.phase.get() == Phase.HOLD and cs0.run_mode.get() == RunMode.RUN


def test_ramp_wait_false_keeps_going_after_the_plan_then_hold(RE, usable_cs0):
    cs0 = usable_cs0
    start = cs0.temperature.get()
    target = start - 40 if start > 140 else start + 40
    RE(plans.ramp(cs0, target, rate=30, wait=False))  # RE calls stop(success=True) after it
    assert cs0.moving and poll(lambda: cs0.phase.get() == Phase.RAMP)
    RE(plans.hold(cs0))
    assert cs0.phase.get() == Phase.HOLD and not cs0.moving
    held = cs0.target.get()
    assert abs(held - target) > 1
    assert poll(lambda: abs(cs0.setpoint.get() - held) < 0.02)


def test_end_then_ramp_raises_shut_down_then_restart(RE, usable_cs0):
    cs0 = usable_cs0
    RE(plans.ramp(cs0, 250, record=False))  # End ramps back to 300 K: keep that short
    RE(plans.end(cs0, 360, wait=True))
    assert cs0.run_mode.get() == RunMode.SHUTDOWN_OK
    with pytest.raises(CS800ShutDownError, match="controller is shut down.*restart it first"):
        RE(plans.ramp(cs0, 150))
    RE(plans.restart(cs0))
    assert cs0.run_mode.get() == RunMode.STARTUP_OK
    RE(plans.ramp(cs0, 280, record=False))
    assert at(cs0, 280) and cs0.run_mode.get() == RunMode.RUN


def test_purge_then_restart(RE, usable_cs0):
    cs0 = usable_cs0
    RE(plans.ramp(cs0, 290, record=False))
    RE(plans.purge(cs0, wait=True))
    assert cs0.run_mode.get() == RunMode.SHUTDOWN_OK
    RE(plans.restart(cs0))
    assert cs0.run_mode.get() == RunMode.STARTUP_OK


def test_pause_and_resume_a_ramp(RE, usable_cs0):
    cs0 = usable_cs0
    start = cs0.temperature.get()
    target = start - 30 if start > 130 else start + 30

    RE(plans.ramp(cs0, target, rate=60, wait=False, group="r"))
    RE(plans.pause(cs0))
    assert poll(lambda: cs0.phase.get() == Phase.HOLD) and cs0.moving
    RE(plans.resume(cs0))
    assert poll(lambda: cs0.phase.get() == Phase.RAMP)
    assert poll(lambda: not cs0.moving)
    assert at(cs0, target)


def test_out_of_range_in_a_plan_raises_before_sending(RE, usable_cs0):
    cs0 = usable_cs0
    docs = collect(RE)
    with pytest.raises(CS800RangeError, match="out of range"):
        RE(plans.ramp(cs0, 20))
    with pytest.raises(CS800RangeError, match="out of range"):
        RE(plans.temperature_series([det], cs0, [150, 500]))
    assert docs == [] and cs0.active_job is None


def test_temperature_series_reads_detector_at_each_temperature(RE, usable_cs0):
    cs0 = usable_cs0
    docs = collect(RE)
    temps = [200.0, 190.0, 185.0]
    RE(plans.temperature_series([det], cs0, temps))
    events = [doc for name, doc in docs if name == "event" and "det" in doc["data"]]
    assert [round(e["data"]["cs0"]) for e in events] == [200, 190, 185]
    assert all(abs(e["data"]["cs0"] - t) <= 0.2 for e, t in zip(events, temps, strict=True))
    assert all("det" in e["data"] for e in events)
    assert docs[0][1]["plan_name"] == "temperature_series"
    assert [e["data"]["cs0_phase_name"] for e in events] == ["Hold"] * 3


def test_ramp_and_record_takes_data_during_the_ramp(RE, usable_cs0):
    cs0 = usable_cs0
    docs = collect(RE)
    start = cs0.temperature.get()
    target = start - 25 if start > 125 else start + 25
    RE(plans.ramp_and_record([det], cs0, target, rate=120, period=0.1))  # ~1.5 s of ramp
    events = [doc for name, doc in docs if name == "event" and "det" in doc["data"]]
    temps = [e["data"]["cs0"] for e in events]
    assert len(temps) >= 5
    assert abs(temps[-1] - target) <= cs0.tolerance.get()
    assert len({round(t) for t in temps}) >= 3  # readings spread over the ramp
    assert stop_doc(docs)["exit_status"] == "success"


def test_failed_move_in_RE_carries_the_sentence(RE, usable_cs0):  # noqa: N802
    cs0 = usable_cs0
    start = cs0.temperature.get()
    with pytest.raises(FailedStatus) as info:
        RE(plans.ramp(cs0, start - 30 if start > 130 else start + 30, rate=10, timeout=0.5,
                      record=False))
    assert "did not finish within" in error_message(info.value)
    assert "HOLD was sent" in error_message(info.value)
    assert poll(lambda: cs0.phase.get() == Phase.HOLD)


def test_runengine_pause_and_resume_during_a_ramp(RE, usable_cs0):  # noqa: N802
    """Ctrl-C (request_pause) leaves the controller ramping; RE.resume() finishes the ramp."""
    import threading

    from bluesky.utils import RunEngineInterrupted

    cs0 = usable_cs0
    start = cs0.temperature.get()
    target = start - 30 if start > 130 else start + 30

    def pause_when_ramping():
        if poll(lambda: cs0.phase.get() == Phase.RAMP):
            RE.request_pause()

    threading.Thread(target=pause_when_ramping, daemon=True).start()
    with pytest.raises(RunEngineInterrupted):  # 3.6 s of ramp for the pause to land in
        RE(plans.ramp(cs0, target, rate=60))
    assert RE.state == "paused" and cs0.moving  # stop(success=True) did not halt the ramp
    RE.resume()
    assert RE.state == "idle" and at(cs0, target) and not cs0.moving
