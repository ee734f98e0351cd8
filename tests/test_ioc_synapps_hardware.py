"""``cs800-ioc --flavor synapps`` over real UDP and Channel Access: the test plays the controller.

DISABLE is 1 at boot (nothing decoded, no command sent, no error); enabled, the IOC decodes
datagrams as the C IOC, clamps RTEMP to 360 K and sends exactly those bytes; DISABLE 1 during
operation freezes every value with NO_ALARM while ``status_packet`` keeps reading.
"""

from __future__ import annotations

import polling
import pytest
from caproto import AlarmSeverity
from test_ioc_hardware import Rig, raw_status, udp_socket

from ophyd_cs800 import protocol as P
from sim_ioc.process import IocProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rig(module_ioc_factory):
    cmd = {"CS0:": udp_socket()}
    port = cmd["CS0:"].getsockname()[1]
    proc = module_ioc_factory(IocProcess(
        ["ioc", "--controller", f"CS0:411@127.0.0.1:{port}", "--status-port", "0",
         "--listen", "127.0.0.1", "--command-host", "127.0.0.1"],
        ready_pv="CS:PORT", flavor="synapps"))
    rig = Rig(proc, cmd)
    try:
        yield rig
    finally:
        rig.close()
        cmd["CS0:"].close()


def _no_command(rig: Rig, within: float = 0.5) -> bool:
    sock = rig.cmd["CS0:"]
    sock.settimeout(within)
    try:
        sock.recvfrom(64)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(15.0)
    return False


def _feed(rig: Rig, temp_ck: int) -> None:
    rig.send_raw(P.encode_status(raw_status(411, i1051=temp_ck, i1053=3, i1054=3)))


def test_disabled_at_boot_then_enabled_decodes_and_clamps(rig):
    assert rig.value("CS0:DISABLE") == b"Disabled"
    _feed(rig, 12345)
    polling.wait_for(lambda: rig.value("CS:status_packet.NORD") == 928, "status_packet read",
                     15.0)
    assert rig.value("CS0:TEMP") == 0.0                 # read, but not decoded: disabled
    rig.put("CS0:RAMP.PROC", 1)                          # succeeds, sends nothing (SDIS)
    assert _no_command(rig)

    rig.put("CS0:DISABLE", "Enabled")
    _feed(rig, 12345)
    polling.wait_for(lambda: rig.value("CS0:TEMP") == pytest.approx(123.45), "TEMP", 15.0)
    rig.put("CS0:RTEMP", 370.0)                          # the C IOC's DRVH is 360 K
    assert rig.value("CS0:RTEMP") == pytest.approx(360.0)
    rig.put("CS0:RAMP.PROC", 1)
    assert rig.command() == P.ramp(360, 360.0, max_temp=400.0).encode()
    rig.put("CS0:RTEMP", 100.0)


def test_disable_freezes_values_with_no_alarm(rig):
    rig.put("CS0:DISABLE", "Enabled")
    _feed(rig, 20000)
    polling.wait_for(lambda: rig.value("CS0:TEMP") == pytest.approx(200.0), "TEMP", 15.0)
    try:
        rig.put("CS0:DISABLE", "Disabled")
        received = rig.value("CS:RECEIVED")
        _feed(rig, 21000)
        polling.wait_for(lambda: rig.value("CS:RECEIVED") > received, "the datagram read", 15.0)
        assert rig.value("CS:status_packet.NORD") == 928
        assert rig.value("CS0:TEMP") == pytest.approx(200.0)
        severity = rig.read("CS0:TEMP", data_type="time").metadata.severity
        assert severity == AlarmSeverity.NO_ALARM
    finally:
        rig.put("CS0:DISABLE", "Enabled")
