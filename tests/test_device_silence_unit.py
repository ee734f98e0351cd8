"""CS800 device (ophyd fake signals) facing a silent controller, IOC limits and sentinels.

The controller model is :class:`test_device_unit.FakeController`; here the device runs with
the automatic stale limit (3 status periods + 0.5 s of 0.05 s: 0.65 s).
"""

from __future__ import annotations

import logging

import polling
import pytest
from test_device_unit import WAIT, FakeController, failure, make_device

from ophyd_cs800 import protocol as P
from ophyd_cs800.errors import CS800RangeError, CS800StaleError
from ophyd_cs800.move_status import AUTO

STALE_S = 3 * 0.05 + 0.5


def silent_device():
    dev = make_device(stale_after=AUTO)
    ctl = FakeController(dev)
    return dev, ctl


def test_set_on_a_silent_controller_writes_nothing():
    dev, ctl = silent_device()
    rtemp, rrate = dev.rtemp.get(), dev.rrate.get()
    assert polling.poll(lambda: dev.snapshot().silent, timeout=WAIT)
    for command in (lambda: dev.set(150), lambda: dev.cool(150), lambda: dev.plateau(5),
                    dev.hold, dev.end, dev.pause_program, lambda: dev.set_turbo(1)):
        with pytest.raises(CS800StaleError, match="no status update .* was not sent"):
            command()
    assert ctl.sent == [] and (dev.rtemp.get(), dev.rrate.get()) == (rtemp, rrate)
    assert dev.describe_state().startswith("cs0: no status for ")
    assert "phase" not in dev.describe_state()


def test_a_running_move_fails_when_the_status_stops():
    dev = make_device(stale_after=AUTO)
    ctl = FakeController(dev, instant=False)
    status = dev.set(150)
    exc = failure(status)
    assert isinstance(exc, CS800StaleError) and "during the ramp to 150.00 K" in str(exc)
    assert ctl.names() == ["RAMP"]


def test_datagrams_of_this_controller_keep_it_alive_and_others_do_not():
    dev, ctl = silent_device()
    mine = P.encode_status({1028: 411, 1051: 15000})
    other = P.encode_status({1028: 412, 1051: 15000})
    for i in range(40):  # 0.02 s apart: 0.8 s, longer than the stale limit
        packet = P.encode_status({1028: 411, 1051: 15000 + i}) if i % 2 else other
        dev.status_packet.sim_put(list(packet))
        polling.poll(lambda: False, timeout=0.02)
    assert not dev.snapshot().silent
    assert dev.learned_status_period == pytest.approx(0.04, abs=0.03)
    dev.status_packet.sim_put(list(mine), metadata={"severity": 2})  # a read timeout: no beat
    for _ in range(10):
        dev.status_packet.sim_put(list(other))
    assert polling.poll(lambda: dev.snapshot().silent, timeout=WAIT)


def test_ioc_limits_are_checked_before_writing():
    dev = make_device()
    ctl = FakeController(dev)
    dev.rtemp.sim_put(100.0, metadata={"lower_ctrl_limit": 1.0, "upper_ctrl_limit": 360.0})
    dev.ctemp.sim_put(100.0, metadata={"lower_ctrl_limit": 80.0, "upper_ctrl_limit": 327.67})
    dev.ptime.sim_put(1, metadata={"lower_ctrl_limit": 1, "upper_ctrl_limit": 60})
    with pytest.raises(CS800RangeError, match="370.00 K is out of range: above the IOC's RTEMP "
                       "limit 360.00 K .the controller's limit allows 80.00..400.00 K."):
        dev.set(370)
    with pytest.raises(CS800RangeError, match="above the IOC's CTEMP limit 327.67 K"):
        dev.cool(350)
    with pytest.raises(CS800RangeError, match="plateau duration 90 min .* IOC's PTIME limit 60"):
        dev.plateau(90)
    assert ctl.sent == [] and dev.rtemp.get() == 100.0 and dev.ctemp.get() == 100.0
    dev.set(355).wait(WAIT)
    assert ctl.sent[-1] == ("RAMP", {**ctl.sent[-1][1], "rtemp": 355.0})


def test_not_available_readings_are_never_shown():
    dev = make_device()
    ctl = FakeController(dev)
    ctl.set_state(target=655.34)
    assert "target unknown" in dev.describe_state()
    dev.temperature.sim_put(655.34)
    assert dev.position != 655.34 and dev.snapshot().temp is None


def test_alarm_changes_are_logged_and_reported(caplog):
    dev = make_device()
    FakeController(dev)
    changes = []
    unsubscribe = dev.add_alarm_callback(changes.append)
    with caplog.at_level(logging.INFO, logger="ophyd_cs800.device.cs0"):
        dev.alarm_code.sim_put(0)
        dev.alarm_code.sim_put(6)  # Pressure warning, Oxford level 2
        unsubscribe()
        dev.alarm_code.sim_put(0)
    assert [c.new.code for c in changes] == [0, 6]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("cs0: alarm 6 ")


def test_commands_are_logged_with_their_meaning(caplog):
    dev = make_device()
    FakeController(dev)
    with caplog.at_level(logging.INFO, logger="ophyd_cs800.device.cs0"):
        dev.set(150, rate=120).wait(WAIT)
    text = caplog.text
    assert "sending RAMP 150.00 K at 120 K/h" in text
    assert "accepted the ramp to 150.00 K at 120 K/h" in text and "finished" in text
