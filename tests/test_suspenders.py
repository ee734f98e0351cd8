"""Suspenders against CS0 of the session simulated IOC: an alarm injected (SIM:ALARM) during a
temperature series suspends it, clearing it resumes, and no point is lost or duplicated; the
run's stop document names the alarm while its exit status stays "success"."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
import test_device_integration as shared
from ophyd.sim import det

from ophyd_cs800 import plans, store
from ophyd_cs800.suspenders import SuspendOnAlarm, SuspendOnShutdown, SuspendWhenStale
from tests.documents import stop_doc

pytestmark = pytest.mark.integration

RE, cs0, usable_cs0 = shared.RE, shared.cs0, shared.usable_cs0  # the shared fixtures
poll = shared.poll

BROWNOUT = 15  # Oxford alarm 15 "Brownout", level 3 (serious warning; no shutdown)
NUM = 30  # readings of the count that a silence interrupts


def stream_events(docs, stream):
    streams = {doc["uid"]: doc["name"] for name, doc in docs if name == "descriptor"}
    return [doc for name, doc in docs
            if name == "event" and streams[doc["descriptor"]] == stream]


def test_alarm_suspends_a_temperature_series_and_clearing_it_resumes(RE, usable_cs0,
                                                                     cs800_sim_ioc, tmp_path):
    cs0 = usable_cs0
    sim_alarm = shared.sim_signal(cs800_sim_ioc, "SIM:ALARM")
    start = cs0.temperature.get()
    step = -10 if start > 120 else 10  # whatever earlier tests left: down if there is room
    temps = [round(start + step, 1), round(start + 2 * step, 1), round(start + 3 * step, 1)]
    RE.record_interruptions = True  # each suspension's justification: "interruptions" stream
    RE.install_suspender(SuspendOnAlarm(cs0, level=3))
    stored = store.subscribe_store(RE, tmp_path / "runs")  # the alarm, kept and plotted
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    seen = {}

    def inject_then_clear():
        try:
            # while it moves to the second temperature
            if not poll(lambda: len(stream_events(docs, "primary")) == 1, timeout=60):
                return
            sim_alarm.put(BROWNOUT, wait=True)
            seen["suspended"] = poll(lambda: stream_events(docs, "interruptions"), timeout=30)
            # suspended: no new point while the alarm stands (the ramp itself goes on)
            seen["points_while_suspended"] = poll(
                lambda: len(stream_events(docs, "primary")) > 1, timeout=1.5)
        finally:
            sim_alarm.put(0, wait=True)

    thread = threading.Thread(target=inject_then_clear, daemon=True)
    thread.start()
    try:
        (uid,) = RE(plans.temperature_series([det], cs0, temps, rate=360))
    finally:
        thread.join(timeout=60)
        sim_alarm.put(0, wait=True)
    assert seen.get("suspended"), "the alarm did not suspend the plan"
    assert not seen["points_while_suspended"]
    interruptions = [e["data"]["interruption"] for e in stream_events(docs, "interruptions")]
    assert interruptions == ["cs0 has alarm 15 'Brownout' (level 3), at or above level 3"]
    points = stream_events(docs, "primary")
    assert [p["seq_num"] for p in points] == [1, 2, 3]
    for point, temp in zip(points, temps, strict=True):
        assert abs(point["data"]["cs0"] - temp) <= cs0.tolerance.get()
    stop = stop_doc(docs)
    assert stop["exit_status"] == "success"
    assert "raised alarm 15 'Brownout' (level 3) during the run" in stop["reason"]
    codes = [e["data"]["cs0_alarm_code"] for e in stream_events(docs, "cs0_alarm_code_monitor")]
    assert BROWNOUT in codes and codes[-1] == 0
    run = stored.run(uid)
    assert run.metadata["stop"]["reason"] == stop["reason"]
    assert BROWNOUT in list(run["cs0_alarm_code_monitor"]["cs0_alarm_code"].read())
    pytest.importorskip("matplotlib")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        from plot_run import draw_run
    finally:
        sys.path.pop(0)
    drawn = draw_run(run, str(tmp_path / "series.png"))
    assert ", 1 alarm(s) marked;" in drawn, drawn
    assert (tmp_path / "series.png").read_bytes()[:4] == b"\x89PNG"


def test_suspenders_say_why_and_check_their_level(usable_cs0):
    cs0 = usable_cs0
    alarm = SuspendOnAlarm(cs0, level=2)
    assert alarm._should_suspend(5) and not alarm._should_suspend(0)  # 5: Temp warning, lvl 2
    alarm._last, alarm._tripped = 5, True
    assert alarm._get_justification() == ("cs0 has alarm 5 'Temp warning' (level 2), at or "
                                          "above level 2")
    with pytest.raises(ValueError, match="level must be an Oxford alarm level 1-4, got 7"):
        SuspendOnAlarm(cs0, level=7)
    shutdown = SuspendOnShutdown(cs0)
    assert shutdown._should_suspend(5) and shutdown._should_resume(3)  # Shutdown OK / Run
    assert not shutdown._should_suspend(3)
    # the ophyd-async device's RUNMODE reads as text
    assert shutdown._should_suspend("Shutdown OK") and shutdown._should_resume("Run")
    assert not shutdown._should_suspend("Run") and not shutdown._should_resume("Shutdown Fail")
    shutdown._last, shutdown._tripped = "Shutdown Fail", True
    assert shutdown._get_justification() == ("cs0 is shut down (run mode SHUTDOWN_FAIL): "
                                             "restart it to go on")
    stale = SuspendWhenStale(cs0)
    assert not stale._should_suspend(0.0)  # the session controller is talking


def test_a_silent_controller_suspends_a_count_until_status_flows_again(RE, usable_cs0,
                                                                       cs800_sim_ioc):
    from bluesky import plans as bp

    cs0 = usable_cs0
    broadcast = shared.sim_signal(cs800_sim_ioc, "SIM:BROADCAST")
    RE.record_interruptions = True
    stale = SuspendWhenStale(cs0)
    RE.install_suspender(stale)
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    seen = {}

    def silence_then_talk():
        try:
            if not poll(lambda: len(stream_events(docs, "primary")) >= 2, timeout=60):
                return
            broadcast.put("Off", wait=True)
            seen["suspended"] = poll(lambda: stream_events(docs, "interruptions"), timeout=30)
            seen["count"] = len(stream_events(docs, "primary"))
            seen["points_while_suspended"] = poll(
                lambda: len(stream_events(docs, "primary")) > seen["count"], timeout=1.0)
        finally:
            broadcast.put("On", wait=True)

    thread = threading.Thread(target=silence_then_talk, daemon=True)
    thread.start()
    try:
        RE(bp.count([cs0], num=NUM, delay=0.3))  # 9 s: longer than the stale limit
    finally:
        thread.join(timeout=60)
        broadcast.put("On", wait=True)
        RE.remove_suspender(stale)
    assert seen.get("suspended"), "the silence did not suspend the count"
    assert not seen["points_while_suspended"]
    (why,) = [e["data"]["interruption"] for e in stream_events(docs, "interruptions")]
    assert why.startswith("cs0: no status from the controller for ")
    # bp.count re-takes a reading made after its last checkpoint (bluesky's rewind, with the
    # same seq_num): every reading is there, at most that one twice
    seq = [p["seq_num"] for p in stream_events(docs, "primary")]
    assert sorted(set(seq)) == list(range(1, NUM + 1)) and len(seq) <= NUM + 1, seq
    assert stop_doc(docs)["exit_status"] == "success"
