"""The plans as bluesky-queueserver sees them: listed, validated, prepared and run.

A queue server worker takes an item such as ``{"name": "ramp", "args": ["cs0", 150]}``, checks
it against the plan's signature (pydantic models built from the annotations), turns device
names into the profile's devices and runs the plan on its RunEngine. This module calls the same
``bluesky_queueserver.manager.profile_ops`` functions the manager and worker call (no Redis, no
manager process) on a namespace like a startup profile's, and runs the prepared plans against
the session simulated IOC.
"""

import pytest
import test_device_integration as shared
from bluesky_queueserver.manager import profile_ops as qs
from ophyd.sim import det

import ophyd_cs800.plans as cs_plans
import soldrv.plans as sol_plans
from soldrv.backends import SimHardware
from soldrv.compiler import compile_text
from soldrv.flyer import SolenoidCycler
from tests.documents import stop_doc

pytestmark = pytest.mark.integration

cs0 = shared.cs0
usable_cs0 = shared.usable_cs0
RE = shared.RE

GROUP = "primary"
PERMISSIONS = {
    "user_groups": {
        "root": {"allowed_plans": [None], "allowed_devices": [None]},
        GROUP: {"allowed_plans": [":.*"], "allowed_devices": [":?.*:depth=3"]},
    }
}
CYCLE = """\
solenoid A 22 23 14
solenoid B 24 25 15
resolution = 1/4
mode 0 {
  initialize A: _
  initialize B: _
}
mode 1 {
  A: OO__^
  B: _OO_^
}
"""
QUEUE_PLANS = [*cs_plans.__all__, "run_cycle", "count_while_cycling"]


class Profile:
    """What the queue server derives from a startup profile's namespace."""

    def __init__(self, namespace: dict) -> None:
        self.namespace = namespace
        self.plans, self.devices, self.plans_in_ns, self.devices_in_ns = (
            qs.existing_plans_and_devices_from_nspace(nspace=namespace))
        self.allowed_plans, self.allowed_devices = qs.load_allowed_plans_and_devices(
            existing_plans=self.plans, existing_devices=self.devices,
            user_group_permissions=PERMISSIONS)

    def validate(self, item: dict) -> tuple[bool, str]:
        return qs.validate_plan(item, allowed_plans=self.allowed_plans[GROUP],
                                allowed_devices=self.allowed_devices[GROUP])

    def prepare(self, item: dict):
        ok, message = self.validate(item)
        assert ok, message
        prepared = qs.prepare_plan({**item, "user_group": GROUP},
                                   plans_in_nspace=self.plans_in_ns,
                                   devices_in_nspace=self.devices_in_ns,
                                   allowed_plans=self.allowed_plans,
                                   allowed_devices=self.allowed_devices)
        return prepared["callable"](*prepared["args"], **prepared["kwargs"]), prepared


@pytest.fixture(scope="module")
def profile(cs0):
    program = compile_text(CYCLE, "queue.sol").program
    cyc = SolenoidCycler(program, SimHardware(program), name="cyc", speed=20.0)
    namespace = {"cs0": cs0, "det": det, "cyc": cyc}
    namespace.update({name: getattr(cs_plans, name) for name in cs_plans.__all__})
    namespace.update({name: getattr(sol_plans, name) for name in sol_plans.__all__})
    return Profile(namespace)


def test_every_plan_and_device_is_listed(profile):
    assert set(QUEUE_PLANS) <= set(profile.plans)
    assert {"cs0", "det", "cyc"} <= set(profile.devices)
    assert profile.devices["cs0"]["is_movable"] and profile.devices["cyc"]["is_flyable"]
    ramp = {p["name"]: p for p in profile.plans["ramp"]["parameters"]}
    assert list(ramp) == ["cs", "target", "rate", "wait", "timeout", "record", "group", "md"]
    assert ramp["target"]["annotation"] == {"type": "float"}
    assert ramp["rate"]["annotation"] == {"type": "float | None"}
    assert ramp["wait"]["default"] == "True"
    series = {p["name"]: p for p in profile.plans["temperature_series"]["parameters"]}
    assert series["detectors"]["annotation"]["type"] == "collections.abc.Sequence[__READABLE__]"
    assert profile.plans["ramp"]["description"].startswith("Ramp ``cs`` to ``target`` K")


#: Queue items of the CS800 plans (test_aio_queueserver.py runs them for an ophyd-async cs0).
CS800_ITEMS = [
    {"name": "ramp", "args": ["cs0", 150]},
    {"name": "ramp", "args": ["cs0", 150.5], "kwargs": {"rate": 240, "wait": False}},
    {"name": "cool", "args": ["cs0", 120], "kwargs": {"timeout": 600}},
    {"name": "plateau", "args": ["cs0", 10]},
    {"name": "hold", "args": ["cs0"]},
    {"name": "pause", "args": ["cs0"]},
    {"name": "resume", "args": ["cs0"]},
    {"name": "end", "args": ["cs0"], "kwargs": {"rate": 120}},
    {"name": "purge", "args": ["cs0"]},
    {"name": "turbo", "args": ["cs0", True]},
    {"name": "restart", "args": ["cs0"]},
    {"name": "temperature_series", "args": [["det"], "cs0", [250, 200]], "kwargs": {"rate": 360}},
    {"name": "ramp_and_record", "args": [["det"], "cs0", 200], "kwargs": {"period": 0.5}},
]


@pytest.mark.parametrize("item", [
    *CS800_ITEMS,
    {"name": "run_cycle", "args": ["cyc", 1], "kwargs": {"cycles": 2}},
    {"name": "count_while_cycling", "args": [["det"], "cyc", 1], "kwargs": {"num": 3}},
], ids=lambda item: item["name"])
def test_queue_items_are_accepted(profile, item):
    ok, message = profile.validate(item)
    assert ok, message


@pytest.mark.parametrize("item, words", [
    ({"name": "ramp", "args": ["cs0", "hot"]}, ["target", "valid number"]),
    ({"name": "ramp", "args": ["cs0", 150], "kwargs": {"speed": 3}}, ["speed"]),
    ({"name": "ramp", "args": ["cs0"]}, ["target"]),
    ({"name": "plateau", "args": ["cs0", "long"]}, ["minutes"]),
    ({"name": "turbo", "args": ["cs0", "maybe"]}, ["on"]),
    ({"name": "temperature_series", "args": [["det"], "cs0", "cold"]}, ["temperatures"]),
    ({"name": "run_cycle", "args": ["cyc", 1.5]}, ["mode"]),
    ({"name": "rampp", "args": ["cs0", 150]}, ["rampp"]),
], ids=lambda value: value["name"] if isinstance(value, dict) else "")
def test_bad_queue_items_are_refused_naming_the_parameter(profile, item, words):
    ok, message = profile.validate(item)
    assert not ok
    for word in words:
        assert word in message


def test_prepared_ramp_runs_and_ends_at_the_target(profile, usable_cs0, RE):
    start = float(usable_cs0.position)  # queue items come as JSON: plain floats
    target = round(start - 5 if start > 150 else start + 5, 1)
    plan, prepared = profile.prepare({"name": "ramp", "args": ["cs0", target],
                                      "kwargs": {"record": False}})
    assert prepared["args"][0] is usable_cs0  # the name became the profile's device
    RE(plan)
    assert abs(usable_cs0.position - target) <= usable_cs0.tolerance.get()
    assert usable_cs0.target.get() == pytest.approx(target)


def test_prepared_temperature_series_records_one_event_per_temperature(profile, usable_cs0, RE):
    start = round(float(usable_cs0.position), 1)
    temps = [start + 2, start]
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    plan, prepared = profile.prepare({"name": "temperature_series",
                                      "args": [["det"], "cs0", temps]})
    assert prepared["args"][0] == [det]
    RE(plan)
    events = [doc for name, doc in docs if name == "event" and "det" in doc["data"]]
    assert len(events) == 2  # the primary stream (the monitor streams hold no det)
    for event, temp in zip(events, temps, strict=True):
        assert abs(event["data"]["cs0"] - temp) <= usable_cs0.tolerance.get()
        assert "det" in event["data"]


def test_prepared_run_cycle_flies_the_cycles(profile, RE):
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    plan, prepared = profile.prepare({"name": "run_cycle", "args": ["cyc", 1],
                                      "kwargs": {"cycles": 2}})
    assert prepared["args"][0] is profile.namespace["cyc"]
    RE(plan)
    names = [name for name, _ in docs]
    assert names[0] == "start"
    assert stop_doc(docs)["exit_status"] == "success"
    pages = [doc["data"] for name, doc in docs if name == "event_page"]
    valves = [(a, b) for page in pages for a, b in zip(page["cyc_A"], page["cyc_B"], strict=True)]
    # A: OO__ and B: _OO_ twice; one event per tick that changed a valve
    assert valves == [(1, 0), (1, 1), (0, 1), (0, 0)] * 2


def test_a_misspelt_device_name_fails_in_the_plan_with_a_sentence(profile, RE):
    # the queue server cannot tell "cs9" from any string: it reaches the plan unchanged
    plan, prepared = profile.prepare({"name": "ramp", "args": ["cs9", 150]})
    assert prepared["args"][0] == "cs9"
    with pytest.raises(TypeError, match=r"ramp: cs must be a CS800 device .*got 'cs9' \(str\)"):
        RE(plan)
    assert RE.state == "idle"
