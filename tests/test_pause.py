"""Pause that works: one deferred pause during a recorded ramp (a Ctrl-C) pauses within a
status period; resuming continues without a second "before" event; abort and stop leave the
controller ramping, as documented. Against CS0 of the session simulated IOC."""

from __future__ import annotations

import threading
import time

import pytest
import test_device_integration as shared
from bluesky.utils import RunEngineInterrupted

from ophyd_cs800 import plans
from ophyd_cs800.protocol import Phase
from tests.documents import stop_doc

pytestmark = pytest.mark.integration

RE, cs0, usable_cs0 = shared.RE, shared.cs0, shared.usable_cs0  # the shared fixtures
poll = shared.poll

#: K/h: at the session IOC's speed 500, 12 K take about 9 s wall, a ramp long enough to pause.
SLOW_RATE = 10
DROP = 12.0


def primary_events(docs):
    streams = {doc["uid"]: doc["name"] for name, doc in docs if name == "descriptor"}
    return [doc for name, doc in docs
            if name == "event" and streams[doc["descriptor"]] == "primary"]


def start_slow_ramp(RE, cs0, docs, pause, *, dev=None, drop=DROP):  # noqa: N803
    """Run a slow recorded ramp of ``drop`` K; ``pause(RE)`` from a thread once it ramps;
    return the target and timings. ``dev`` (default ``cs0``) is the device the plan moves,
    e.g. an ophyd-async CS800 of the same controller; ``cs0`` (ophyd) reads its state."""
    start = cs0.temperature.get()  # whatever earlier tests left: down if there is room
    target = round(start - drop if start - drop >= 100 else start + drop, 2)
    timing = {}

    def interrupt():
        if poll(lambda: cs0.phase.get() == Phase.RAMP and primary_events(docs), timeout=30):
            timing["requested"] = time.monotonic()
            pause(RE)

    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    with pytest.raises(RunEngineInterrupted):
        RE(plans.ramp(cs0 if dev is None else dev, target, rate=SLOW_RATE))
    timing["paused"] = time.monotonic()
    thread.join(timeout=30)
    assert RE.state == "paused"
    return target, timing


def test_one_deferred_pause_pauses_within_a_status_period_and_resumes(RE, usable_cs0):
    cs0 = usable_cs0
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    target, timing = start_slow_ramp(RE, cs0, docs, lambda re: re.request_pause(defer=True))
    latency = timing["paused"] - timing["requested"]
    # a status period (0.25 s) plus a generous allowance for a loaded 2-core machine; the ramp
    # itself still has well over 10 s to go, which the old single wait would have waited out
    assert latency < cs0.effective_status_period + 2.0, latency
    assert cs0.phase.get() == Phase.RAMP  # the pause leaves the controller ramping
    assert abs(cs0.temperature.get() - target) > 3
    RE.resume()
    assert abs(cs0.temperature.get() - target) <= cs0.tolerance.get()
    events = primary_events(docs)
    assert [e["seq_num"] for e in events] == [1, 2]
    assert abs(events[1]["data"]["cs0"] - target) <= cs0.tolerance.get()
    assert stop_doc(docs)["exit_status"] == "success"


def test_immediate_pause_and_resume_records_no_second_before_event(RE, usable_cs0):
    cs0 = usable_cs0
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    target, _ = start_slow_ramp(RE, cs0, docs, lambda re: re.request_pause(defer=False))
    assert cs0.phase.get() == Phase.RAMP
    RE.resume()  # replays from the checkpoint in the wait: not the set, not the first reading
    events = primary_events(docs)
    assert [e["seq_num"] for e in events] == [1, 2]
    assert abs(events[0]["data"]["cs0"] - events[1]["data"]["cs0"]) > 10  # before != after
    assert abs(events[1]["data"]["cs0"] - target) <= cs0.tolerance.get()
    assert stop_doc(docs)["exit_status"] == "success"


@pytest.mark.parametrize("how, exit_status", [("abort", "abort"), ("stop", "success")])
def test_abort_and_stop_after_a_pause_leave_the_controller_ramping(RE, usable_cs0, how,
                                                                  exit_status):
    cs0 = usable_cs0
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    target, _ = start_slow_ramp(RE, cs0, docs, lambda re: re.request_pause(defer=True))
    getattr(RE, how)()
    assert RE.state == "idle"
    assert stop_doc(docs)["exit_status"] == exit_status
    assert cs0.phase.get() == Phase.RAMP  # documented: RE(hold(cs0)) freezes it
    assert cs0.target.get() == pytest.approx(target, abs=0.01)
    RE(plans.hold(cs0))
    assert poll(lambda: cs0.phase.get() == Phase.HOLD, timeout=10)
