"""What only the ophyd-async CS800 has, in ophyd-async's mock mode (no IOC).

The rules it shares with the ophyd device are tested per family in ``test_cs800_families.py``;
here: ``init_devices`` naming and the data keys, the enums, watchers of the
``WatchableAsyncStatus``, ``locate``/``subscribe``, ``stop`` as a status, the alarm path, and
the sentences when it is used unconnected. Each test runs its own event loop
(``asyncio.run``).
"""

from __future__ import annotations

import asyncio

import pytest
from cs800_fakes import AioPort, FakeController

from ophyd_cs800.errors import CS800InterruptedError, CS800StaleError
from ophyd_cs800.protocol import PHASE_STRINGS, RUN_MODE_STRINGS

pytest.importorskip("ophyd_async", reason="the [async] extra (Python >= 3.11)")

from bluesky.protocols import Locatable, Movable, Stoppable, Subscribable  # noqa: E402
from ophyd_async.core import (  # noqa: E402
    WatchableAsyncStatus,
    init_devices,
    set_mock_value,
)

from ophyd_cs800 import aio  # noqa: E402

WAIT = 10.0


async def mock_cs800(**kwargs):
    kwargs.setdefault("stale_after", None)
    async with init_devices(mock=True):
        cs0 = aio.CS800("X:CS0:", settle_time=0.0, status_period=0.05, **kwargs)
    return cs0, FakeController(AioPort(cs0, None), instant=False)


def test_init_devices_names_it_and_the_data_keys_are_the_ophyd_ones():
    async def body():
        cs0, _ = await mock_cs800()
        assert cs0.name == "cs0"  # from the variable, as init_devices does
        reading = await cs0.read()
        assert set(reading) == {"cs0", "cs0_setpoint", "cs0_target", "cs0_phase",
                                "cs0_run_mode", "cs0_phase_name", "cs0_run_mode_name",
                                "cs0_alarm"}
        assert reading["cs0_phase"]["value"] is aio.Phase.HOLD
        assert reading["cs0_run_mode"]["value"] is aio.RunMode.RUN
        config = await cs0.read_configuration()
        assert set(config) == {"cs0_ramp_rate", "cs0_tolerance", "cs0_settle_time",
                               "cs0_controller_number", "cs0_firmware"}
        assert config["cs0_ramp_rate"]["value"] == 360
        assert cs0.hints == {"fields": ["cs0"]}
        described = await cs0.describe()
        assert described["cs0_phase"]["choices"] == list(PHASE_STRINGS)

    asyncio.run(body())


def test_protocols_and_enums():
    assert isinstance(aio.CS800("X:"), Movable | Stoppable | Locatable | Subscribable)
    for proto in (Movable, Stoppable, Locatable, Subscribable):
        assert isinstance(aio.CS800("X:"), proto)
    assert tuple(p.value for p in aio.Phase) == PHASE_STRINGS
    assert tuple(m.value for m in aio.RunMode) == RUN_MODE_STRINGS
    names = [name for name, _ in aio.CS800("X:").children()]
    assert not [n for n in names if n.endswith("stop")]  # no STOP: command 19 shuts down


def test_set_is_watchable_with_current_initial_target_unit_fraction():
    async def body():
        cs0, ctl = await mock_cs800()
        status = cs0.set(200)
        assert isinstance(status, WatchableAsyncStatus)
        updates = []
        status.watch(lambda **kw: updates.append(kw))
        while not cs0._runner.accepted:
            await asyncio.sleep(0.01)
        ctl.set_state(temp=250.0)
        while not updates or updates[-1]["current"] != 250.0:
            await asyncio.sleep(0.01)
        ctl.arrive()
        await asyncio.wait_for(status, WAIT)
        first = next(u for u in updates if u["current"] == 250.0)
        assert (first["initial"], first["target"], first["unit"]) == (300.0, 200.0, "K")
        assert first["fraction"] == pytest.approx(0.5) and first["name"] == "cs0"
        assert first["time_elapsed"] >= 0

    asyncio.run(body())


def test_locate_and_subscribe_follow_temp():
    async def body():
        cs0, ctl = await mock_cs800()
        assert await cs0.locate() == {"setpoint": 300.0, "readback": 300.0}
        seen = []
        cs0.subscribe(lambda readings: seen.append(readings["cs0"]["value"]))
        status = cs0.set(150)
        assert (await cs0.locate())["setpoint"] == 150.0  # where it goes
        ctl.set_state(temp=290.0)
        assert seen[-1] == 290.0
        cs0.clear_sub(seen.append)  # an unknown callback: nothing breaks
        await cs0.stop()
        with pytest.raises(CS800InterruptedError):
            await status

    asyncio.run(body())


def test_stop_success_true_is_a_no_op_status_and_stop_holds():
    async def body():
        cs0, ctl = await mock_cs800()
        status = cs0.set(150)
        while ctl.names() != ["RAMP"]:
            await asyncio.sleep(0.01)
        await cs0.stop(success=True)
        assert not status.done and ctl.names() == ["RAMP"]
        await cs0.stop()
        with pytest.raises(CS800InterruptedError, match="HOLD was sent"):
            await asyncio.wait_for(status, WAIT)
        assert ctl.names() == ["RAMP", "HOLD"]

    asyncio.run(body())


def test_alarm_changes_reach_callbacks_and_the_log(caplog):
    async def body():
        cs0, _ = await mock_cs800()
        changes = []
        unsubscribe = cs0.add_alarm_callback(changes.append)
        set_mock_value(cs0.alarm_code, 0)
        set_mock_value(cs0.alarm_code, 10)
        unsubscribe()
        set_mock_value(cs0.alarm_code, 0)
        return changes

    with caplog.at_level("INFO", logger="ophyd_cs800.device"):
        changes = asyncio.run(body())
    assert [change.new.code for change in changes] == [10]  # 0 was seen at connection
    assert any(rec.name == "ophyd_cs800.device.cs0" for rec in caplog.records)


def test_commands_are_logged_with_their_meaning(caplog):
    async def body():
        cs0, ctl = await mock_cs800()
        ctl.instant = True
        await asyncio.wait_for(cs0.set(150, rate=120), WAIT)

    with caplog.at_level("INFO", logger="ophyd_cs800.device"):
        asyncio.run(body())
    text = caplog.text
    assert "cs0: sending RAMP 150.00 K at 120 K/h (ramp to 150.00 K at 120 K/h)" in text
    assert "cs0: the controller accepted the ramp" in text


def test_unconnected_device_refuses_with_a_sentence():
    async def body():
        cs0 = aio.CS800("X:CS0:", name="cs0")
        with pytest.raises(CS800StaleError, match="not connected, so the move was not sent: "
                           r"connect it first \(with init_devices\(\)"):
            cs0.set(150)
        assert await cs0.stop() is None  # nothing to stop, nothing sent

    asyncio.run(body())


def test_silent_controller_is_refused_before_writing():
    async def body():
        cs0, ctl = await mock_cs800(stale_after=0.2)
        await asyncio.sleep(0.3)  # no monitor posts: the heartbeat ages
        assert cs0.snapshot().silent
        assert cs0.describe_state().startswith("cs0: no status for ")
        with pytest.raises(CS800StaleError, match="so the move was not sent"):
            cs0.set(150)
        ctl.set_state(temp=299.9)  # a datagram: reporting again
        cs0.check_value(150)
        assert not cs0.snapshot().silent and ctl.sent == []

    asyncio.run(body())


def test_not_available_readings_are_never_values():
    async def body():
        cs0, ctl = await mock_cs800()
        ctl.set_state(target=655.34)  # synApps' "not available"
        assert cs0.snapshot().target is None
        set_mock_value(cs0.max_temp, 655.34)
        assert cs0.limits == (80.0, 400.0)

    asyncio.run(body())


def test_without_the_extra_the_import_says_what_to_install():
    import subprocess
    import sys

    code = ("import sys; sys.modules['ophyd_async'] = None\n"
            "import ophyd_cs800, ophyd_cs800.plans\n"  # the core works without it
            "import ophyd_cs800.aio")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert "ophyd_cs800.aio needs the [async] extra: pip install 'ophyd-cs800[async]'" in (
        result.stderr)


def test_tunables_from_the_constructor_are_configuration():
    async def body():
        cs0, _ = await mock_cs800(tolerance=0.3, ramp_rate=120, max_resends=4)
        config = await cs0.read_configuration()
        assert (config["cs0_tolerance"]["value"], config["cs0_ramp_rate"]["value"]) == (0.3, 120)
        assert cs0.max_resends == 4 and cs0.status_period == 0.05
        await cs0.ramp_rate.set(60)
        assert cs0._tunable("ramp_rate") == 60  # what the next set() uses

    asyncio.run(body())


def test_actions_work_when_the_cs800_is_a_child_of_another_device():
    from ophyd_async.core import Device

    class Endstation(Device):
        def __init__(self, name=""):
            self.cryo = aio.CS800("X:CS0:", settle_time=0.0, status_period=0.05,
                                  stale_after=None)
            super().__init__(name=name)

    async def body():
        async with init_devices(mock=True):
            es = Endstation()
        ctl = FakeController(AioPort(es.cryo, None))
        await asyncio.wait_for(es.cryo.actions.hold.set(1), WAIT)
        assert ctl.names() == ["HOLD"]
        assert "es-cryo" in await es.cryo.read()  # TEMP under the CS800's own name

    asyncio.run(body())
