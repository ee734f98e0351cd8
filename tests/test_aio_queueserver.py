"""The plans with the ophyd-async CS800, as bluesky-queueserver sees them (listed, validated,
prepared, run against the session IOC): the checks of ``test_queueserver.py`` for the second
device family. The device lives in the event loop of the module's RunEngine, as in a queue
server worker, which creates its RunEngine before it loads the profile's devices.
"""

import pytest
import test_aio_integration as aio_shared
import test_queueserver as qs_shared
from ophyd.sim import det

import ophyd_cs800.plans as cs_plans

pytest.importorskip("ophyd_async", reason="the [async] extra (Python >= 3.11)")
pytestmark = pytest.mark.integration

cs0 = aio_shared.cs0  # the ophyd device: restores the controller between tests
loop = aio_shared.loop
acs0 = aio_shared.acs0
usable = aio_shared.usable

#: Queue items of the CS800 plans, accepted for an async cs0 as for an ophyd one.
ITEMS = qs_shared.CS800_ITEMS


@pytest.fixture(scope="module")
def profile(acs0):
    namespace = {"cs0": acs0.dev, "det": det}
    namespace.update({name: getattr(cs_plans, name) for name in cs_plans.__all__})
    return qs_shared.Profile(namespace)


def test_the_async_device_is_listed_as_movable(profile):
    assert set(cs_plans.__all__) <= set(profile.plans)
    assert profile.devices["cs0"]["is_movable"] and profile.devices["cs0"]["is_readable"]


@pytest.mark.parametrize("item", ITEMS, ids=lambda item: item["name"])
def test_queue_items_are_accepted(profile, item):
    ok, message = profile.validate(item)
    assert ok, message


def test_prepared_ramp_runs_and_ends_at_the_target(profile, usable, loop):
    start = float(usable.position)
    target = round(start - 5 if start > 150 else start + 5, 1)
    plan, prepared = profile.prepare({"name": "ramp", "args": ["cs0", target],
                                      "kwargs": {"record": False}})
    assert prepared["args"][0] is usable.dev  # the name became the profile's device
    loop.engine(plan)
    assert abs(usable.position - target) <= 0.2
    assert usable.snapshot().target == pytest.approx(target)


def test_prepared_temperature_series_records_one_event_per_temperature(profile, usable, loop):
    start = round(float(usable.position), 1)
    temps = [start + 2, start]
    docs = []
    plan, prepared = profile.prepare({"name": "temperature_series",
                                      "args": [["det"], "cs0", temps]})
    loop.engine(plan, lambda name, doc: docs.append((name, doc)))
    events = aio_shared.pause_shared.primary_events(docs)  # not the monitor streams
    assert len(events) == 2
    for event, temp in zip(events, temps, strict=True):
        assert abs(event["data"]["cs0"] - temp) <= 0.2 and "det" in event["data"]
    start_doc = next(doc for name, doc in docs if name == "start")
    assert start_doc["ramp_rate_K_per_h"] == 360
    # the run's monitor streams, as with the ophyd device (plans.monitored_signals)
    streams = {doc["name"] for name, doc in docs if name == "descriptor"}
    assert streams == {"primary", *aio_shared.MONITORS}
    assert next(doc for name, doc in docs if name == "stop")["exit_status"] == "success"
