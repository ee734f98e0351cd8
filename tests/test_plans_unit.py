"""Plans without an IOC: the messages they yield, and full RunEngine runs on a fake CS800."""

from __future__ import annotations

import pytest
from bluesky import RunEngine
from bluesky.utils import FailedStatus
from ophyd.sim import det
from test_device_unit import FakeController, make_device

from ophyd_cs800 import plans
from ophyd_cs800.device import error_message
from ophyd_cs800.errors import CS800RangeError, CS800ShutDownError
from ophyd_cs800.protocol import RunMode


@pytest.fixture()
def cs():
    dev = make_device()
    FakeController(dev)
    return dev


@pytest.fixture()
def RE():  # noqa: N802
    engine = RunEngine({}, context_managers=[])
    yield engine
    if engine.state != "idle":
        engine.halt()


def messages(plan):
    return [(m.command, m.obj, m.args, {k: v for k, v in m.kwargs.items() if k != "group"})
            for m in plan]


def test_ramp_without_record_is_a_set_and_a_wait(cs):
    msgs = messages(plans.ramp(cs, 150, 120, record=False))
    assert msgs[0] == ("set", cs, (150,), {"rate": 120})
    assert [m[0] for m in msgs] == ["set", "wait"]
    msgs = messages(plans.ramp(cs, 150, wait=False))
    assert [m[0] for m in msgs] == ["set"] and msgs[0][3] == {}


def test_ramp_records_by_default(cs):
    commands = [m[0] for m in messages(plans.ramp(cs, 150, timeout=30))]
    assert commands[:2] == ["open_run", "monitor"] and commands[-2:] == ["unmonitor",
                                                                         "close_run"]
    assert commands.count("save") == 2  # one reading before and one after the move
    sets = [m for m in messages(plans.ramp(cs, 150, timeout=30)) if m[0] == "set"]
    assert sets == [("set", cs, (150,), {"timeout": 30})]


def test_record_needs_wait(cs):
    with pytest.raises(ValueError, match="needs wait=True"):
        list(plans.ramp(cs, 150, wait=False, record=True))


@pytest.mark.parametrize("plan, obj_attr, value, waits", [
    (lambda cs: plans.plateau(cs, 5), "plateau", 5, False),
    (lambda cs: plans.plateau(cs, 5, wait=True), "plateau", 5, True),
    (lambda cs: plans.hold(cs), "hold", 1, True),
    (lambda cs: plans.pause(cs), "pause_program", 1, True),
    (lambda cs: plans.resume(cs), "resume_program", 1, True),
    (lambda cs: plans.end(cs, 120), "end", 120, False),
    (lambda cs: plans.purge(cs), "purge", 1, False),
    (lambda cs: plans.turbo(cs, True), "turbo", True, True),
    (lambda cs: plans.restart(cs), "restart", 1, True),
])
def test_command_plans_set_the_action_signals(cs, plan, obj_attr, value, waits):
    msgs = messages(plan(cs))
    assert msgs[0][:3] == ("set", getattr(cs.actions, obj_attr), (value,))
    assert [m[0] for m in msgs] == (["set", "wait"] if waits else ["set"])


def test_RE_ramp_cool_and_documents_with_fake_device(RE, cs):  # noqa: N802
    docs = []
    RE.subscribe(lambda name, doc: docs.append(name))
    RE(plans.ramp(cs, 150))
    assert cs.position == 150.0
    assert docs[0] == "start" and docs[-1] == "stop" and docs.count("event") >= 2
    RE(plans.cool(cs, 100, record=False))
    assert cs.position == 100.0


def test_RE_end_restart_cycle_with_fake_device(RE, cs):  # noqa: N802
    RE(plans.end(cs, wait=True))
    assert cs.run_mode.get() == RunMode.SHUTDOWN_OK
    with pytest.raises(CS800ShutDownError, match="controller is shut down"):
        RE(plans.ramp(cs, 150))
    RE(plans.restart(cs))
    RE(plans.ramp(cs, 150, record=False))
    RE(plans.purge(cs, wait=True))
    assert cs.run_mode.get() == RunMode.SHUTDOWN_OK


def test_temperature_series_checks_every_temperature_first(RE, cs):
    docs = []
    primary = set()

    def keep(name, doc):
        docs.append(name)
        if name == "descriptor" and doc["name"] == "primary":
            primary.add(doc["uid"])
        if name == "event" and doc["descriptor"] in primary:
            docs.append("primary event")

    RE.subscribe(keep)
    with pytest.raises(CS800RangeError, match="500.00 K is out of range"):
        RE(plans.temperature_series([det], cs, [150, 500]))
    assert docs == []
    with pytest.raises(ValueError, match="at least one"):
        RE(plans.temperature_series([det], cs, []))
    RE(plans.temperature_series([det], cs, [150, 140], rate=120))
    assert docs.count("primary event") == 2 and cs.ramp_rate.get() == 120


def test_ramp_and_record_raises_when_the_move_fails(RE):
    cs = make_device()
    ctl = FakeController(cs)
    ctl.drop = 100  # the controller ignores every command
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    with pytest.raises(Exception) as info:
        RE(plans.ramp_and_record([det], cs, 150, period=0.05))
    assert "did not accept" in error_message(info.value)
    assert docs[-1][0] == "stop" and docs[-1][1]["exit_status"] == "fail"


def test_failed_status_in_RE_wraps_the_sentence(RE):  # noqa: N802
    cs = make_device()
    FakeController(cs, instant=False)
    with pytest.raises(FailedStatus) as info:
        RE(plans.ramp(cs, 150, timeout=0.2, record=False))
    assert "did not finish within" in str(info.value.__cause__)


@pytest.mark.parametrize("name, args", [
    ("ramp", (150,)), ("cool", (100,)), ("plateau", (5,)), ("hold", ()), ("pause", ()),
    ("resume", ()), ("end", ()), ("purge", ()), ("turbo", (True,)), ("restart", ()),
])
def test_a_cs_that_is_no_cs800_is_refused_before_any_message(name, args):
    plan = getattr(plans, name)("cs9", *args)  # e.g. a misspelt name from a queue item
    with pytest.raises(TypeError, match=rf"^{name}: cs must be a CS800 device .*'cs9' \(str\)"):
        next(plan)


def test_data_plans_refuse_a_cs_that_is_no_cs800():
    with pytest.raises(TypeError, match=r"^temperature_series: cs must be a CS800 .*SynGauss"):
        next(plans.temperature_series([det], det, [150]))
    with pytest.raises(TypeError, match=r"^ramp_and_record: cs must be a CS800 .*None"):
        next(plans.ramp_and_record([det], None, 150))
    assert sorted(plans.__all__) == sorted(
        ["ramp", "cool", "plateau", "hold", "pause", "resume", "end", "purge", "turbo", "restart",
         "temperature_series", "ramp_and_record"])
