"""Unit tests of the IOC's pure parts: PV table, packet -> readings, datagram checks, CLI."""

from __future__ import annotations

import argparse
import asyncio
import math

import pytest
from caproto import AlarmSeverity, AlarmStatus

from ophyd_cs800 import protocol as P
from sim_ioc.cli import parse_controller
from sim_ioc.clock import ManualClock
from sim_ioc.controller import SimulatedCS800
from sim_ioc.ioc import CS800IOC, ControllerConfig
from sim_ioc.pvs import STATUS_BY_SUFFIX, STATUS_PVS, extract
from sim_ioc.status_server import StatusCounters, StatusReceiver, classify

NA = P.NOT_AVAILABLE

#: Every status PV of Oxford_CS800.db (spec section 6.4).
SYNAPPS_STATUS_PVS = {
    "DEVICETYPE", "DEVICESUBTYPE", "DEVICEMINTEMP", "DEVICEMAXTEMP", "VER", "CTRLNUM",
    "SETPOINT", "TEMP", "ERROR", "RUNMODE", "PHASE", "RAMPRATE", "TARGETTEMP", "EVAPTEMP",
    "SUCTTEMP", "REMAINING", "GASFLOW", "GASHEAT", "EVAPHEAT", "SUCTHEAT", "BACKPRESS", "ALARMI",
    "ALARM", "RUNTIME", "EVAPADJUST", "TURBOMODE", "VALVEOPENING", "LEVEL", "COLDHEADTEMP",
    "SHIELDTEMP", "NOZZLETEMP", "COLLARTEMP", "SUCTSETTEMP", "NOZZLESETTEMP", "SAMHOLDTEMP",
    "CRYOSTATTEMP", "VACGAUGE", "SAMHOLDPRES", "ELAPSED", "SAMPLEHEAT", "COLDHEADHEAT",
    "SHIELDHEAT", "NOZZLEHEAT", "AVGSAMPLEHEAT", "AVGNOZZLEHEAT", "VACSENSOR",
}


def base_raw(**changes: int) -> dict[int, int]:
    raw = SimulatedCS800(411, ManualClock(), seed=1).raw_values()
    raw.update({int(k[1:]): v for k, v in changes.items()})
    return raw


def packet(**changes: int) -> P.StatusPacket:
    return P.decode_status(P.encode_status(base_raw(**changes)))


def test_pv_table_has_every_synapps_status_pv_with_its_record_type():
    assert {pv.suffix for pv in STATUS_PVS} == SYNAPPS_STATUS_PVS
    records = {pv.suffix: pv.record for pv in STATUS_PVS}
    assert records["RUNMODE"] == records["PHASE"] == "mbbi"
    assert records["ALARM"] == "stringin"
    assert all(r == "ai" for s, r in records.items() if s not in ("RUNMODE", "PHASE", "ALARM"))
    assert STATUS_BY_SUFFIX["RUNMODE"].enum_strings[:7] == (
        "Startup", "Startup Fail", "Startup OK", "Run", "Setup", "Shutdown OK", "Shutdown Fail")
    assert STATUS_BY_SUFFIX["PHASE"].enum_strings[:11] == (
        "Ramp", "Cool", "Plat", "Hold", "End", "Purge", "Delete Phase", "Load Program",
        "Save Program", "Soak", "Wait")


@pytest.mark.parametrize("suffix, units, precision", [
    ("TEMP", "K", 2), ("ERROR", "K", 2), ("RAMPRATE", "K/h", 0), ("REMAINING", "min", 0),
    ("LEVEL", "%", 2), ("ELAPSED", "min", 0), ("VACGAUGE", "mV", 0), ("SAMHOLDPRES", "", 0),
    ("GASFLOW", "l/min", 2), ("BACKPRESS", "mbar", 0), ("VALVEOPENING", "%", 0),
])
def test_honest_units_and_precision(suffix, units, precision):
    pv = STATUS_BY_SUFFIX[suffix]
    assert (pv.units, pv.precision) == (units, precision)


def test_values_scaled_and_signed():
    r = extract(packet(i1053=3, i1051=10002, i1050=10000, i1052=0xFFFE, i1203=6510, i2034=17,
                       i2012=250, i2032=1, i2042=5, i1055=120))
    assert r["TEMP"][0] == pytest.approx(100.02)
    assert r["SETPOINT"][0] == pytest.approx(100.0)
    assert r["ERROR"][:2] == (pytest.approx(-0.02), AlarmSeverity.NO_ALARM)  # signed in Run
    assert r["LEVEL"][0] == pytest.approx(65.10)
    assert r["ELAPSED"][0] == 17.0
    assert r["VACGAUGE"][0] == 250.0
    assert r["SAMHOLDPRES"][0] == 1.0
    assert r["VACSENSOR"][0] == 5.0  # the last parameter of the packet is read
    assert r["RUNMODE"][0] == "Run" and r["RAMPRATE"][0] == 120.0


def test_not_available_is_invalid_not_655():
    r = extract(packet(i2010=NA, i1053=2, i1052=NA))
    value, severity, status = r["COLDHEADTEMP"]
    assert math.isnan(value) and severity == AlarmSeverity.INVALID_ALARM
    assert status == AlarmStatus.UDF
    assert r["ERROR"][1] == AlarmSeverity.INVALID_ALARM  # 0xFFFE outside Run: not available


def test_gasflow_falls_back_to_flow_block():
    assert extract(packet(i1060=NA, i1100=499))["GASFLOW"][0] == pytest.approx(4.99)
    assert extract(packet(i1060=52, i1100=499))["GASFLOW"][0] == pytest.approx(5.2)
    assert extract(packet(i1060=NA, i1100=NA))["GASFLOW"][1] == AlarmSeverity.INVALID_ALARM


@pytest.mark.parametrize("code, text, severity", [
    (0, "No errors or warnings", AlarmSeverity.NO_ALARM),
    (3, "End complete", AlarmSeverity.NO_ALARM),
    (5, "Temp warning", AlarmSeverity.MINOR_ALARM),
    (15, "Brownout", AlarmSeverity.MAJOR_ALARM),
    (34, "Cryostat open timeout", AlarmSeverity.MAJOR_ALARM),  # the C IOC is off by one here
    (35, "High temp warning", AlarmSeverity.MINOR_ALARM),
    (50, "Turbo flow", AlarmSeverity.NO_ALARM),
    (99, "Unknown alarm 99", AlarmSeverity.MAJOR_ALARM),
])
def test_alarm_text_and_severity_follow_oxford_level(code, text, severity):
    r = extract(packet(i1065=code))
    assert r["ALARM"][:2] == (text, severity)
    assert r["ALARMI"][:2] == (float(code), severity)


def test_unknown_enum_state_is_invalid_state():
    value, severity, status = extract(packet(i1053=9))["RUNMODE"]
    assert severity == AlarmSeverity.INVALID_ALARM and status == AlarmStatus.STATE


def test_absent_ids_are_invalid():
    raw = {1028: 411, 1051: 9000}
    r = extract(P.decode_status(P.encode_status(raw)))
    assert r["TEMP"][:2] == (90.0, AlarmSeverity.NO_ALARM)
    assert r["SETPOINT"][1] == AlarmSeverity.INVALID_ALARM
    assert r["ALARM"][1] == AlarmSeverity.INVALID_ALARM


@pytest.mark.parametrize("datagram, reason", [
    (b"\xaa\xab\x00", "short"),
    (b"\x00\x00" + P.encode_status({1028: 1})[2:], "header"),
    (P.encode_status({1028: 1})[:-3] + b"\x00\xab\xaa", "checksum"),
    (P.encode_status({1028: 1})[:-2] + b"\x00\x00", "footer"),
    (P.encode_status({1028: 1}) + b"\x00", "length"),
])
def test_classify_each_defect(datagram, reason):
    with pytest.raises(P.ProtocolError) as info:
        P.decode_status(datagram)
    assert classify(info.value) == reason


def test_receiver_counts_and_routes():
    routed = []
    counters = StatusCounters()
    rx = StatusReceiver(lambda pkt, t, src: routed.append(pkt.cid) or
                        ("" if pkt.cid == 411 else "unknown"), counters)
    rx.datagram_received(P.encode_status(base_raw()), ("127.0.0.1", 1))
    rx.datagram_received(P.encode_status({1028: 999}), ("127.0.0.1", 1))
    rx.datagram_received(b"junk", ("127.0.0.1", 1))
    assert (counters.received, counters.accepted, counters.rejected_total) == (3, 1, 2)
    assert counters.rejected["unknown"] == 1 and counters.rejected["short"] == 1
    assert routed == [411, 999]
    assert counters.last_reject.startswith("short: status datagram too short")


def test_parse_controller():
    c = parse_controller("CS0:411@192.168.0.144")
    assert (c.r, c.cid, c.command_addr) == ("CS0:", 411, ("192.168.0.144", P.COMMAND_PORT))
    c = parse_controller("CS1:0@127.0.0.1:40000")
    assert (c.r, c.cid, c.command_addr) == ("CS1:", 0, ("127.0.0.1", 40000))
    for bad in ("CS0@host", "CS0:abc@host", "CS0:411@", "CS0:411@h:99999", "411@host"):
        with pytest.raises(argparse.ArgumentTypeError, match="--controller"):
            parse_controller(bad)


def test_ioc_rejects_bad_configuration():
    with pytest.raises(ValueError, match="at least one controller"):
        CS800IOC("x:", [])
    with pytest.raises(ValueError, match="distinct"):
        CS800IOC("x:", [ControllerConfig("CS0:", 1), ControllerConfig("CS0:", 2)])
    with pytest.raises(ValueError, match="controller numbers must be distinct"):
        CS800IOC("x:", [ControllerConfig("CS0:", 1), ControllerConfig("CS1:", 1)])
    with pytest.raises(ValueError, match="stale timeout"):
        CS800IOC("x:", [ControllerConfig("CS0:", 1)], stale_timeout=0)


def test_cid0_adopts_first_controller_and_lazy_fields():
    ioc = CS800IOC("x:", [ControllerConfig("CS0:", 0, ("127.0.0.1", 9))])

    async def go():
        assert ioc.route(packet(i1028=777), 0.0, "127.0.0.1") == ""
        # one CID-0 group adopts one controller
        assert ioc.route(packet(i1028=778), 0.0, "127.0.0.1") == "unknown"
        group = ioc.controllers[0]
        pkt, _ = ioc._latest[group]
        await group.apply(pkt, 1.0)
        return group

    group = asyncio.run(go())
    assert group.bound_cid == 777 and group.ctrlnum.value == 777.0
    temp = ioc.pvdb["x:CS0:TEMP"]
    assert temp.field_inst is None  # record fields are built on demand ...
    assert temp.get_field("RTYP").value == "ai" and temp.get_field("EGU").value == "K"
    assert ioc.pvdb["x:CS0:RAMP"].get_field("PROC") is not None


def test_valves_missing_gives_a_clear_error(monkeypatch):
    import sys

    from sim_ioc import cli

    monkeypatch.setitem(sys.modules, "sim_ioc.valves", None)  # import fails
    ioc = CS800IOC("x:", [ControllerConfig("CS0:", 1)])
    with pytest.raises(SystemExit, match="--valves needs the simulated valve bank"):
        cli._mount_valves(ioc, "x:", 8)


def test_private_status_socket_is_exclusive_and_outside_the_ephemeral_range(tmp_path,
                                                                            monkeypatch):
    import socket

    from sim_ioc import status_server as S

    sock = S.open_private_status_socket("127.0.0.1")
    try:
        port = sock.getsockname()[1]
        assert S.PRIVATE_PORT_LOW <= port < S.ephemeral_port_range()[0]
        assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    finally:
        sock.close()
    # an ephemeral range that leaves no room below it: a kernel-chosen port, still exclusive
    range_file = tmp_path / "range"
    range_file.write_text("1024\t65535\n")
    monkeypatch.setattr(S, "EPHEMERAL_RANGE_FILE", str(range_file))
    assert S.ephemeral_port_range() == (1024, 65535)
    sock = S.open_private_status_socket("127.0.0.1")
    try:
        assert sock.getsockname()[1] >= 1024
        assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    finally:
        sock.close()
    monkeypatch.setattr(S, "EPHEMERAL_RANGE_FILE", str(tmp_path / "absent"))
    assert S.ephemeral_port_range() == (32768, 60999)


def test_shared_status_socket_on_port_0_avoids_the_ephemeral_range_and_held_ports():
    """Port 0 must not be the kernel's pick: Linux gives a port-0 SO_REUSEADDR socket (every
    caproto client's search socket) a port another SO_REUSEADDR socket holds, and the IOC's
    search replies to that client would then land on the status socket."""
    import random
    import socket

    from sim_ioc import status_server as S

    low = S.ephemeral_port_range()[0]
    held = S.open_status_socket("127.0.0.1", 0)  # another IOC's status socket, also reusing
    try:
        held_port = held.getsockname()[1]
        assert S.PRIVATE_PORT_LOW <= held_port < low
        assert held.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert held.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)

        class FirstTheHeldPort(random.Random):
            picks = [held_port]

            def randrange(self, start, stop=None, step=1):
                return self.picks.pop() if self.picks else super().randrange(start, stop)

        sock = S.open_status_socket("127.0.0.1", 0, FirstTheHeldPort())
        try:  # the held port was tried first and skipped, though SO_REUSEADDR would allow it
            assert sock.getsockname()[1] != held_port
            assert S.PRIVATE_PORT_LOW <= sock.getsockname()[1] < low
        finally:
            sock.close()
    finally:
        held.close()


def test_port_0_without_room_below_the_ephemeral_range(tmp_path, monkeypatch, caplog):
    """A tuned range leaving no room below it: a port above it; no room at all: an exclusive
    kernel-chosen port (never a reusing socket inside the range)."""
    import socket

    from sim_ioc import status_server as S

    range_file = tmp_path / "range"
    monkeypatch.setattr(S, "EPHEMERAL_RANGE_FILE", str(range_file))
    range_file.write_text("15000 60999\n")
    sock = S.open_status_socket("127.0.0.1", 0)
    try:
        assert sock.getsockname()[1] > 60999
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    finally:
        sock.close()
    range_file.write_text("1024 65535\n")
    sock = S.open_status_socket("127.0.0.1", 0)
    try:
        assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    finally:
        sock.close()
    assert "no free port outside the ephemeral range 1024-65535" in caplog.text
    assert "status socket on port" in caplog.text and "is exclusive" in caplog.text


def test_free_port_avoids_the_ephemeral_and_private_ranges():
    from sim_ioc.process import FREE_PORT_RANGE, free_port
    from sim_ioc.status_server import PRIVATE_PORT_LOW, ephemeral_port_range

    low, high = FREE_PORT_RANGE
    assert high <= PRIVATE_PORT_LOW
    if ephemeral_port_range()[0] < high:
        pytest.skip("this host's ephemeral port range starts below FREE_PORT_RANGE")
    assert all(low <= free_port() < high for _ in range(20))
