"""``cs800-ioc`` over real UDP and Channel Access: the test plays the controllers.

The IOC runs as a subprocess with two controllers (411 at ``CS0:``, 369 at ``CS1:``) whose
command addresses are UDP sockets owned by the test; the test sends status datagrams built with
``protocol.encode_status`` to the IOC's status port and reads what the commands put on the wire.
"""

from __future__ import annotations

import functools
import math
import socket
import threading

import polling
import pytest
from caproto import AlarmSeverity, AlarmStatus, ChannelType, ErrorResponseReceived

from ophyd_cs800 import protocol as P
from sim_ioc.clock import ManualClock
from sim_ioc.controller import SimulatedCS800
from sim_ioc.process import IocProcess, ca_read, ca_write
from sim_ioc.pvs import STATUS_PVS

pytestmark = pytest.mark.integration

DEADLINE = 15.0  # generous: the machine is shared
NA_ = P.NOT_AVAILABLE


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(DEADLINE)
    return sock


def raw_status(cid: int, **changes: int) -> dict[int, int]:
    raw = SimulatedCS800(cid, ManualClock(), seed=cid).raw_values()
    raw.update({int(k[1:]): v for k, v in changes.items()})
    return raw


class Rig:
    """The IOC process, the controllers' command sockets and a status sender."""

    def __init__(self, proc: IocProcess, cmd: dict[str, socket.socket]) -> None:
        self.proc = proc
        self.cmd = cmd
        self.prefix = proc.prefix
        self.status_port = int(self.read("CS:PORT").data[0])
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.marker = 1000

    def read(self, suffix: str, data_type=None):
        return ca_read(self.prefix + suffix, self.proc.env, data_type=data_type)

    def value(self, suffix: str):
        data = self.read(suffix).data
        return data[0] if len(data) == 1 else data

    def put(self, suffix: str, value) -> None:
        if suffix.endswith(".PROC"):  # a uchar field: caproto writes a list of bytes
            value = [value]
        ca_write(self.prefix + suffix, value, self.proc.env)

    def send_raw(self, datagram: bytes) -> None:
        self.sender.sendto(datagram, ("127.0.0.1", self.status_port))

    def feed(self, r: str, cid: int, **changes: int) -> dict[int, int]:
        """Send one status datagram of ``cid`` and wait until group ``r`` shows it."""
        self.marker += 1
        raw = raw_status(cid, i1066=self.marker, **changes)  # RUNTIME carries a marker
        self.send_raw(P.encode_status(raw))
        wait_for(lambda: self.value(f"{r}RUNTIME") == self.marker, f"{r}RUNTIME update")
        return raw

    def command(self, r: str = "CS0:") -> bytes:
        data, _ = self.cmd[r].recvfrom(64)
        return data

    def close(self) -> None:
        self.sender.close()


wait_for = functools.partial(polling.wait_for, timeout=DEADLINE, tolerate=(TimeoutError,))


@pytest.fixture(scope="module")
def rig(module_ioc_factory):
    cmd = {"CS0:": udp_socket(), "CS1:": udp_socket()}
    ports = {r: s.getsockname()[1] for r, s in cmd.items()}
    proc = module_ioc_factory(IocProcess(
        ["ioc", "--controller", f"CS0:411@127.0.0.1:{ports['CS0:']}",
         "--controller", f"CS1:369@127.0.0.1:{ports['CS1:']}",
         "--status-port", "0", "--listen", "127.0.0.1", "--command-host", "127.0.0.1",
         "--stale-timeout", "30"],
        ready_pv="CS:PORT"))
    rig = Rig(proc, cmd)
    try:
        yield rig
    finally:
        rig.close()
        for sock in cmd.values():
            sock.close()


def test_every_status_pv_shows_the_datagram(rig):
    raw = rig.feed("CS0:", 411, i1053=3, i1054=0, i1050=15000, i1051=14998, i1052=2,
                   i1056=20000, i1055=120, i1060=NA_, i1100=499, i1203=6510, i2034=17,
                   i2012=250, i2032=1, i2042=7, i1065=5, i2010=NA_)
    special = {
        "ERROR": (0.02, AlarmSeverity.NO_ALARM),
        "GASFLOW": (4.99, AlarmSeverity.NO_ALARM),
        "ALARMI": (5.0, AlarmSeverity.MINOR_ALARM),
        "LEVEL": (65.10, AlarmSeverity.NO_ALARM),
        "ELAPSED": (17.0, AlarmSeverity.NO_ALARM),
        "VACGAUGE": (250.0, AlarmSeverity.NO_ALARM),
        "SAMHOLDPRES": (1.0, AlarmSeverity.NO_ALARM),
        "VACSENSOR": (7.0, AlarmSeverity.NO_ALARM),
        "COLDHEADTEMP": (math.nan, AlarmSeverity.INVALID_ALARM),
        "TEMP": (149.98, AlarmSeverity.NO_ALARM),
        "CTRLNUM": (411.0, AlarmSeverity.NO_ALARM),
    }
    for pv in STATUS_PVS:
        if pv.record == "mbbi":
            r = rig.read("CS0:" + pv.suffix, data_type=ChannelType.CTRL_ENUM)
            names = [s.decode() for s in r.metadata.enum_strings]
            assert names[: len(pv.enum_strings)] == list(pv.enum_strings)
            assert names[r.data[0]] == pv.enum_strings[raw[pv.pid]], pv.suffix
            continue
        if pv.record == "stringin":
            r = rig.read("CS0:ALARM", data_type=ChannelType.TIME_STRING)
            assert r.data[0] == b"Temp warning"
            assert r.metadata.severity == AlarmSeverity.MINOR_ALARM
            continue
        r = rig.read("CS0:" + pv.suffix, data_type=ChannelType.CTRL_DOUBLE)
        assert r.metadata.units.decode() == pv.units, pv.suffix
        assert r.metadata.precision == pv.precision, pv.suffix
        if pv.suffix in special:
            expected, severity = special[pv.suffix]
        else:
            value = P.raw_to_value(pv.pid, raw[pv.pid])
            expected = math.nan if value is None else float(value)
            severity = AlarmSeverity.INVALID_ALARM if value is None else AlarmSeverity.NO_ALARM
        got = r.data[0]
        assert (math.isnan(got) if math.isnan(expected) else got == pytest.approx(expected)), \
            (pv.suffix, got, expected)
        assert r.metadata.severity == severity, pv.suffix
    assert (rig.value("CS0:RUNMODE"), rig.value("CS0:PHASE")) == (b"Run", b"Ramp")
    assert rig.read("CS0:TEMP.RTYP").data[0] == b"ai"
    assert rig.read("CS0:TEMP.EGU").data[0] == b"K"


def test_firmware_153_datagram_shows_the_ids_past_byte_920(rig):
    """The 1236-byte layout (spec 2.4): the C IOC never sees ids 2034-2042; this IOC does."""
    sim = SimulatedCS800(411, ManualClock(), seed=3, layout="long", firmware=153)
    trailing = P.decode_status(sim.status_datagram()).trailing
    assert len(trailing) == 196
    raw = sim.raw_values()
    raw.update({1066: 4321, 2034: 33, 2035: 29000, 2041: 28800, 2042: 9})
    datagram = P.encode_status(raw, trailing)
    assert len(datagram) == 1236
    rig.send_raw(datagram)
    wait_for(lambda: rig.value("CS0:RUNTIME") == 4321, "the long datagram applied")
    assert rig.value("CS0:VER") == 153
    assert (rig.value("CS0:ELAPSED"), rig.value("CS0:VACSENSOR")) == (33.0, 9.0)
    assert rig.value("CS0:SUCTSETTEMP") == pytest.approx(290.0)
    assert rig.value("CS0:COLLARTEMP") == pytest.approx(288.0)
    rig.feed("CS0:", 411)  # back to the 928-byte layout of the other tests


#: menuAlarmSevr strings, by severity.
SEVR_TEXT = {0: b"NO_ALARM", 1: b"MINOR", 2: b"MAJOR", 3: b"INVALID"}


def test_record_fields_follow_each_status_record(rig):
    """.RTYP .EGU .PREC .HOPR .LOPR .SEVR .STAT of every status PV, as a screen reads them."""
    rig.feed("CS1:", 369, i1052=NA_, i1065=6)  # ERROR not available: INVALID/UDF
    for pv in STATUS_PVS:
        name = "CS1:" + pv.suffix
        md = rig.read(name, data_type=ChannelType.TIME_STRING).metadata
        field = {f: rig.value(f"{name}.{f}") for f in ("RTYP", "SEVR", "STAT")}
        assert field["RTYP"] == pv.record.encode(), name
        assert field["SEVR"] == SEVR_TEXT[md.severity], name
        assert field["STAT"] == AlarmStatus(md.status).name.encode(), name
        if pv.record == "ai":
            assert rig.value(f"{name}.EGU") == pv.units.encode(), name
            assert rig.value(f"{name}.PREC") == pv.precision, name
            assert (rig.value(f"{name}.LOPR"), rig.value(f"{name}.HOPR")) == (pv.low, pv.high)
            ctrl = rig.read(name, data_type=ChannelType.CTRL_DOUBLE).metadata
            assert (ctrl.lower_ctrl_limit, ctrl.upper_ctrl_limit) == (pv.low, pv.high), name
    assert rig.value("CS1:ERROR.SEVR") == b"INVALID"
    assert rig.value("CS1:ALARMI.SEVR") == b"MINOR"
    assert rig.value("CS1:TEMP.HOPR") == 400.0
    rig.feed("CS1:", 369, i1052=3, i1065=0)  # the fields follow later alarm changes
    wait_for(lambda: rig.value("CS1:ERROR.SEVR") == b"NO_ALARM", "ERROR.SEVR cleared")
    assert rig.value("CS1:ERROR.STAT") == b"NO_ALARM"
    assert rig.value("CS1:ALARMI.SEVR") == b"NO_ALARM"


#: (parameter puts, action PV, datagram from spec section 5.2)
COMMANDS = [
    ({"RRATE": 360, "RTEMP": 100}, "RAMP", "00 0B 01 68 27 10 AB"),
    ({"RRATE": 120, "RTEMP": 295}, "RAMP", "00 0B 00 78 73 3C 32"),
    ({"PTIME": 30}, "PLAT", "00 0C 00 1E 00 00 2A"),
    ({}, "HOLD", "00 0D 00 00 00 00 0D"),
    ({"CTEMP": 100}, "COOL", "00 0E 27 10 00 00 45"),
    ({"ERATE": 360}, "END", "00 0F 01 68 00 00 78"),
    ({}, "PURGE", "00 10 00 00 00 00 10"),
    ({}, "PAUSE", "00 11 00 00 00 00 11"),
    ({}, "RESUME", "00 12 00 00 00 00 12"),
    ({}, "STOP", "00 13 00 00 00 00 13"),
    ({}, "RESTART", "00 0A 00 00 00 00 0A"),
]


@pytest.mark.parametrize("params, action, expected", COMMANDS,
                         ids=[f"{a}-{i}" for i, (_, a, _) in enumerate(COMMANDS)])
def test_action_sends_exactly_the_datagram(rig, params, action, expected):
    for name, value in params.items():
        rig.put(f"CS0:{name}", value)
    rig.put(f"CS0:{action}", 1)
    assert rig.command() == bytes.fromhex(expected)
    rig.put(f"CS0:{action}.PROC", 1)  # processing the record (screens) sends it again
    assert rig.command() == bytes.fromhex(expected)
    rig.put("CS0:HOLD", 1)  # the next datagram is the sentinel: exactly one was sent per put
    assert rig.command() == bytes.fromhex("00 0D 00 00 00 00 0D")


def test_turbo_sends_at_once_and_turbocmd_resends(rig):
    rig.put("CS0:TURBO", 1)
    assert rig.command() == bytes.fromhex("00 14 00 01 00 00 15")
    rig.put("CS0:TURBOCMD.PROC", 1)
    assert rig.command() == bytes.fromhex("00 14 00 01 00 00 15")
    rig.put("CS0:TURBO", "Off")
    assert rig.command() == bytes.fromhex("00 14 00 00 00 00 14")


@pytest.mark.parametrize("name, value, allowed", [
    ("RTEMP", 500, "80 to 400"), ("RTEMP", 50, "80 to 400"), ("CTEMP", 401, "80 to 400"),
    ("RRATE", 361, "0 to 360"), ("RRATE", -1, "0 to 360"), ("RRATE", 12.5, "whole number"),
    ("ERATE", 0, "1 to 360"), ("PTIME", 0, "1 to 1440"), ("PTIME", 1441, "1 to 1440"),
])
def test_out_of_range_parameter_refused_and_nothing_sent(rig, name, value, allowed):
    before = rig.value(f"CS0:{name}")
    with pytest.raises(ErrorResponseReceived, match=allowed):
        rig.put(f"CS0:{name}", value)
    assert rig.value(f"CS0:{name}") == before
    rig.put("CS0:HOLD", 1)  # nothing was sent by the refused put: HOLD is the next datagram
    assert rig.command() == bytes.fromhex("00 0D 00 00 00 00 0D")


def test_temperature_limits_follow_the_device(rig):
    assert rig.read("CS0:RTEMP", ChannelType.CTRL_DOUBLE).metadata.upper_ctrl_limit == 400
    assert rig.value("CS0:RTEMP.DRVH") == 400  # the field group exists before the change
    rig.feed("CS0:", 411, i1003=50000)  # a "Plus" unit: 500 K
    try:
        wait_for(lambda: rig.read("CS0:RTEMP", ChannelType.CTRL_DOUBLE)
                 .metadata.upper_ctrl_limit == 500, "RTEMP limit 500 K")
        assert rig.value("CS0:RTEMP.DRVH") == 500  # the record field follows (screens)
        rig.put("CS0:RTEMP", 450)
        rig.put("CS0:RRATE", 360)
        rig.put("CS0:RAMP", 1)
        assert rig.command() == P.ramp(360, 450, max_temp=500).encode()
    finally:
        rig.put("CS0:RTEMP", 100)
        rig.feed("CS0:", 411, i1003=40000)
    wait_for(lambda: rig.read("CS0:CTEMP", ChannelType.CTRL_DOUBLE)
             .metadata.upper_ctrl_limit == 400, "CTEMP limit back to 400 K")


def test_disable_refuses_commands_and_ignores_status(rig):
    rig.feed("CS0:", 411)
    assert rig.value("CS0:DISABLE") == b"Enabled"  # Enabled by default (the C IOC starts Disabled)
    rig.put("CS0:DISABLE", "Disabled")
    try:
        with pytest.raises(ErrorResponseReceived, match="DISABLE is Disabled"):
            rig.put("CS0:HOLD", 1)
        accepted = rig.value("CS:ACCEPTED")
        runtime = rig.value("CS0:RUNTIME")
        rig.send_raw(P.encode_status(raw_status(411, i1066=4242)))
        wait_for(lambda: rig.value("CS:ACCEPTED") > accepted, "datagram counted")
        assert rig.value("CS0:RUNTIME") == runtime  # heard but not applied
    finally:
        rig.put("CS0:DISABLE", "Enabled")
    rig.feed("CS0:", 411)
    rig.put("CS0:PAUSE", 1)
    assert rig.command() == bytes.fromhex("00 11 00 00 00 00 11")


def test_two_controllers_stay_separate(rig):
    rig.feed("CS0:", 411, i1051=10000)
    rig.feed("CS1:", 369, i1051=20000)
    assert rig.value("CS0:TEMP") == pytest.approx(100.0)
    assert rig.value("CS1:TEMP") == pytest.approx(200.0)
    assert (rig.value("CS0:CTRLNUM"), rig.value("CS1:CTRLNUM")) == (411, 369)
    rig.put("CS1:CTEMP", 120)
    rig.put("CS1:COOL", 1)
    assert rig.command("CS1:") == P.cool(120).encode()
    rig.put("CS0:HOLD", 1)  # CS0's socket got nothing from CS1's command
    assert rig.command("CS0:") == bytes.fromhex("00 0D 00 00 00 00 0D")


def test_status_port_is_shared_with_other_listeners(rig):
    shared = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        shared.bind(("127.0.0.1", rig.status_port))  # works because the IOC set both options
    finally:
        shared.close()
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(OSError):
            plain.bind(("127.0.0.1", rig.status_port))  # without them: address in use
    finally:
        plain.close()


def test_cid0_adopts_the_only_controller(ioc_factory):
    cmd = udp_socket()
    try:
        proc = ioc_factory(IocProcess(
            ["ioc", "--controller", f"CS0:0@127.0.0.1:{cmd.getsockname()[1]}",
             "--status-port", "0", "--listen", "127.0.0.1", "--command-host", "127.0.0.1"],
            ready_pv="CS:PORT"))
        rig = Rig(proc, {"CS0:": cmd})
        try:
            # nothing heard yet: no data, INVALID (UDF, or COMM once the stale timeout passed)
            assert rig.read("CS0:TEMP", ChannelType.TIME_DOUBLE).metadata.severity == \
                AlarmSeverity.INVALID_ALARM
            assert "CS0:  controller 0 (first heard)" in proc.log_text()
            rig.feed("CS0:", 555, i1051=12345)
            assert rig.value("CS0:CTRLNUM") == 555 and rig.value("CS0:TEMP") == 123.45
            unknown = rig.value("CS:REJ:UNKNOWN")
            rig.send_raw(P.encode_status(raw_status(556)))  # a second controller: not adopted
            wait_for(lambda: rig.value("CS:REJ:UNKNOWN") == unknown + 1, "unknown counted")
            wait_for(lambda: "controller 556 is also broadcasting, but CID 0 adopts only" in
                     proc.log_text(tail=10**7), "the CID-0 caveat logged")
            rig.feed("CS0:", 555)
            assert rig.value("CS0:CTRLNUM") == 555
            rig.put("CS0:RESTART", 1)
            assert rig.command() == bytes.fromhex("00 0A 00 00 00 00 0A")
        finally:
            rig.close()
    finally:
        cmd.close()


def test_initial_alarm_state_and_status_packet(rig):
    raw = rig.feed("CS1:", 369)
    wait_for(lambda: bytes(rig.read("CS:status_packet").data) == P.encode_status(raw),
             "status_packet holds the last datagram")
    assert rig.read("CS1:TEMP", ChannelType.TIME_DOUBLE).metadata.status == AlarmStatus.NO_ALARM
    # an asyn record in synApps: clients of the C IOC monitor status_packet.BINP
    assert rig.value("CS:status_packet.RTYP") == b"asyn"
    assert bytes(rig.read("CS:status_packet.BINP").data) == P.encode_status(raw)
    rig.feed("CS1:", 369)
    wait_for(lambda: rig.value("CS:status_packet.NORD") == 928, "NORD shows the datagram size")


def test_busy_status_port_exits_1_with_a_sentence(tmp_path):
    import os
    import subprocess
    import sys

    from sim_ioc.process import free_port, loopback_ca_env

    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # no SO_REUSE*: exclusive
    blocker.bind(("127.0.0.1", 0))
    try:
        port = blocker.getsockname()[1]
        env = {**os.environ, **loopback_ca_env(free_port())}
        result = subprocess.run(
            [sys.executable, "-m", "sim_ioc.cli", "ioc", "--prefix", "busy:", "--controller",
             "CS0:1@127.0.0.1:9", "--status-port", str(port), "--listen", "127.0.0.1"],
            env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        blocker.close()
    assert result.returncode == 1
    assert f"cannot bind the CS800 status socket to 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_unchanged_value_posts_no_monitor_but_a_new_timestamp(rig):
    from caproto.threading.client import Context

    rig.feed("CS1:", 369, i1051=11111)
    t1 = rig.read("CS1:TEMP", ChannelType.TIME_DOUBLE).metadata.timestamp
    updates = []
    got = [threading.Event(), threading.Event()]

    def on_update(sub, response):
        updates.append(response.data[0])
        got[min(len(updates), 2) - 1].set()

    ctx = Context()  # finds the IOC: module_ioc_factory put its port in EPICS_CA_ADDR_LIST
    try:
        pv, = ctx.get_pvs(rig.prefix + "CS1:TEMP", timeout=DEADLINE)
        pv.wait_for_connection(timeout=DEADLINE)
        sub = pv.subscribe(data_type="time")
        sub.add_callback(on_update)
        assert got[0].wait(DEADLINE), "no initial monitor"
        rig.feed("CS1:", 369, i1051=11111)  # same TEMP: processed, no monitor
        assert rig.read("CS1:TEMP", ChannelType.TIME_DOUBLE).metadata.timestamp > t1
        rig.feed("CS1:", 369, i1051=22222)  # changed: one monitor
        assert got[1].wait(DEADLINE), "no monitor for the change"
        sub.clear()
    finally:
        ctx.disconnect()
    assert updates == [pytest.approx(111.11), pytest.approx(222.22)]
