"""What differs between the IOC flavours, seen by the CS800 device (real CA and UDP, loopback).

Each test runs against the fixed session IOC and against a synApps-flavour IOC (fixtures of
``test_device_integration``): the C IOC's limits (RTEMP 1..360 K, CTEMP 80..327.67 K) refuse
370 K and cool to 350 K before any PV is written, while ours executes them; a controller that
falls silent (``SIM:BROADCAST`` Off) fails a running move within 3 status periods + 1 s on
both, although the synApps flavour keeps TEMP at NO_ALARM; and a command to a silent
controller writes nothing (RTEMP, RRATE, CTEMP and the controller's own count of commands
received, status id 1072, are unchanged).
"""

from __future__ import annotations

import logging
import time

import pytest
import test_device_integration as shared
from caproto import AlarmSeverity

from ophyd_cs800 import protocol as P
from ophyd_cs800.errors import CS800RangeError, CS800StaleError
from ophyd_cs800.protocol import Phase

pytestmark = pytest.mark.integration

flavour_ioc = shared.flavour_ioc
any_cs0 = shared.any_cs0
usable_any = shared.usable_any
poll = shared.poll

#: Status id of the controller's count of commands received (CommsCommandsReceived).
COMMANDS_RECEIVED_ID = 1072


def commands_received(ioc) -> int:
    """The controller's own count of commands received, from the newest datagram of CS0."""
    packet = P.decode_status(_datagram_of(ioc, 411))
    return packet.raw[COMMANDS_RECEIVED_ID]


def _datagram_of(ioc, cid: int) -> bytes:
    def read():
        data = bytes(ioc.read(ioc.prefix + "CS:status_packet.BINP").data)
        total = int.from_bytes(data[2:4], "big") + 8 if len(data) > 4 else 0
        data = data[:total]
        try:
            return data if P.decode_status(data).raw.get(1028) == cid else None
        except P.ProtocolError:
            return None

    return poll(read, timeout=20)


@pytest.fixture
def only_cs0_broadcasts(flavour_ioc):
    """Silence the IOC's other controllers for one test, so that ``CS:status_packet`` (the
    status server's last datagram, sampled every 0.2 s) shows CS0's datagrams: simulators of
    one rate send in step, and the other controller's datagram is then nearly always last."""
    others = range(1, flavour_ioc.controllers)
    for i in others:
        flavour_ioc.silence(i)
    try:
        yield
    finally:
        for i in others:
            flavour_ioc.silence(i, False)


def no_command_reaches(ioc, received: int) -> bool:
    """True when the controller's count stays at ``received`` for 1 s of datagrams."""
    return not poll(lambda: commands_received(ioc) != received, timeout=1.0)


def settled_commands_received(ioc) -> int:
    """The controller's count once commands sent before (a previous test's HOLD) are in."""
    for _ in range(10):  # bounded: each round lasts at least 1 s
        count = commands_received(ioc)
        if no_command_reaches(ioc, count):
            return count
    raise AssertionError("the controller's count of commands received never settled")


def parameters(cs0) -> tuple[float, float, float]:
    return (cs0.rtemp.get(use_monitor=False), cs0.rrate.get(use_monitor=False),
            cs0.ctemp.get(use_monitor=False))


def test_370_K_and_cool_to_350_K_follow_the_ioc_limits(usable_any, flavour_ioc):  # noqa: N802
    cs0 = usable_any
    before = parameters(cs0)
    if flavour_ioc.flavor == "synapps":
        received = settled_commands_received(flavour_ioc)
        with pytest.raises(CS800RangeError, match=r"370.00 K is out of range: above the IOC's "
                           r"RTEMP limit 360.00 K \(the controller's limit allows 80.00..400.00"):
            cs0.set(370)
        with pytest.raises(CS800RangeError, match="350.00 K is out of range: above the IOC's "
                           "CTEMP limit 327.67 K"):
            cs0.cool(350)
        assert parameters(cs0) == before and no_command_reaches(flavour_ioc, received)
        assert cs0.active_job is None
        return
    for start, target in ((lambda: cs0.set(370)), 370.0), ((lambda: cs0.cool(350)), 350.0):
        status = start()
        assert poll(lambda t=target: cs0.target.get() == pytest.approx(t))  # executed
        cs0.stop()
        with pytest.raises(Exception, match="HOLD was sent"):
            status.wait(shared.WAIT)


def test_silenced_mid_ramp_fails_within_three_periods_and_a_second(usable_any, flavour_ioc):
    cs0 = usable_any
    start = cs0.temperature.get()
    status = cs0.set(start - 20 if start > 120 else start + 20, rate=10)  # ~14 s of wall time
    assert poll(lambda: cs0.phase.get() == Phase.RAMP)
    flavour_ioc.silence(0)
    silenced = time.monotonic()
    try:
        # synApps: only the heartbeat can tell; ours also marks INVALID after its stale timeout
        cause = ("no status update from the controller" if flavour_ioc.flavor == "synapps" else
                 "no status update from the controller|stopped reporting .*INVALID severity")
        with pytest.raises(CS800StaleError, match=cause):
            status.wait(shared.WAIT)
        failed = time.monotonic()
        bound = 3 * cs0.effective_status_period + 1.0
        assert failed - silenced <= bound, f"failed {failed - silenced:.2f} s after silence"
        assert poll(lambda: cs0.describe_state().startswith("cs0: no status for "))
        if flavour_ioc.flavor == "synapps":  # the C IOC never marks a silent controller
            assert cs0.temperature.metadata["severity"] == AlarmSeverity.NO_ALARM
            assert cs0.temperature.get(use_monitor=False) == pytest.approx(cs0.position)
    finally:
        flavour_ioc.silence(0, False)


def test_a_command_to_a_silent_controller_writes_nothing(usable_any, flavour_ioc,
                                                        only_cs0_broadcasts):
    cs0 = usable_any
    received, before = settled_commands_received(flavour_ioc), parameters(cs0)
    flavour_ioc.silence(0)
    try:
        assert poll(lambda: cs0.snapshot().silent)
        with pytest.raises(CS800StaleError, match="so the move was not sent"):
            cs0.set(200, rate=120)
        with pytest.raises(CS800StaleError, match="so the plateau was not sent"):
            cs0.plateau(5)
        if flavour_ioc.flavor == "synapps":
            assert cs0.temperature.metadata["severity"] == AlarmSeverity.NO_ALARM
        assert parameters(cs0) == before
    finally:
        flavour_ioc.silence(0, False)
    assert poll(lambda: not cs0.snapshot().silent)
    assert no_command_reaches(flavour_ioc, received)  # nothing reached the controller


def test_an_alarm_is_logged_as_a_warning_and_reported(usable_any, flavour_ioc, caplog):
    cs0 = usable_any
    changes = []
    unsubscribe = cs0.add_alarm_callback(changes.append)
    alarm = shared.sim_signal(flavour_ioc, "SIM:ALARM")
    try:
        with caplog.at_level(logging.INFO, logger="ophyd_cs800.device.cs0"):
            alarm.put(6, wait=True)  # Pressure warning: Oxford level 2
            assert poll(lambda: any(c.new.code == 6 for c in changes))
            alarm.put(0, wait=True)
            assert poll(lambda: changes[-1].new.code == 0)
    finally:
        unsubscribe()
        alarm.put(0, wait=True)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("cs0: alarm 6 'Pressure warning' (level 2)") for m in warned)
    raised = next(c for c in changes if c.new.code == 6)
    assert raised.level == 2 and raised.ioc_text  # the IOC's own text (synApps: its table)
