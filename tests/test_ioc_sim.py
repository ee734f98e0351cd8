"""``cs800-sim-ioc`` (session IOC, 2 simulated controllers) over Channel Access and UDP.

Covers: ophyd ``EpicsSignal`` with the caproto control layer against the simulated controllers,
an end-to-end command, the staleness alarm (SIM:BROADCAST), the other SIM: PVs, and a flood of
10,000 malformed datagrams while a controller keeps running. Tests that change a controller put
it back as they found it.
"""

from __future__ import annotations

import functools
import random
import socket
import struct
from pathlib import Path

import polling
import pytest
from caproto import AlarmSeverity, AlarmStatus, ChannelType, ErrorResponseReceived
from ophyd import EpicsSignal, EpicsSignalRO

from ophyd_cs800 import protocol as P
from sim_ioc.clock import ManualClock
from sim_ioc.controller import SimulatedCS800
from sim_ioc.process import ca_read, ca_write
from sim_ioc.status_server import STATUS_RCVBUF

pytestmark = pytest.mark.integration

DEADLINE = 20.0


wait_for = functools.partial(polling.wait_for, timeout=DEADLINE, tolerate=(TimeoutError,))


class Client:
    def __init__(self, ioc) -> None:
        self.ioc = ioc

    def read(self, suffix: str, data_type=None):
        return ca_read(self.ioc.prefix + suffix, self.ioc.env, data_type=data_type)

    def value(self, suffix: str):
        return self.read(suffix).data[0]

    def alarm(self, suffix: str) -> tuple[AlarmSeverity, AlarmStatus]:
        md = self.read(suffix, ChannelType.TIME_DOUBLE).metadata
        return AlarmSeverity(md.severity), AlarmStatus(md.status)

    def put(self, suffix: str, value) -> None:
        ca_write(self.ioc.prefix + suffix, value, self.ioc.env)


@pytest.fixture
def client(cs800_sim_ioc):
    return Client(cs800_sim_ioc)


def test_ophyd_signals_read_the_simulated_controllers(cs800_sim_ioc, client):
    p = cs800_sim_ioc.prefix
    ctrl0 = EpicsSignalRO(f"{p}CS0:CTRLNUM", name="ctrl0")
    ctrl1 = EpicsSignalRO(f"{p}CS1:CTRLNUM", name="ctrl1")
    temp = EpicsSignalRO(f"{p}CS0:TEMP", name="temp")
    rtemp = EpicsSignal(f"{p}CS0:RTEMP", name="rtemp")
    for sig in (ctrl0, ctrl1, temp, rtemp):
        sig.wait_for_connection(timeout=DEADLINE)
    wait_for(lambda: ctrl0.get() == 411 and ctrl1.get() == 412, "controller numbers")
    assert 80.0 <= temp.get() <= 400.0
    desc = temp.describe()["temp"]
    assert desc["units"] == "K" and desc["precision"] == 2
    assert temp.alarm_severity == AlarmSeverity.NO_ALARM
    assert rtemp.limits == (80.0, 400.0)
    runmode = EpicsSignalRO(f"{p}CS0:RUNMODE", name="runmode", string=True)
    runmode.wait_for_connection(timeout=DEADLINE)
    assert runmode.get() in P.RUN_MODE_STRINGS


def test_command_reaches_the_simulator(cs800_sim_ioc, client):
    p = cs800_sim_ioc.prefix
    wait_for(lambda: client.value("CS1:RUNMODE") in (b"Startup OK", b"Run"), "CS1 ready")
    ctemp = EpicsSignal(f"{p}CS1:CTEMP", name="ctemp")
    cool = EpicsSignal(f"{p}CS1:COOL", name="cool")
    ctemp.wait_for_connection(timeout=DEADLINE)
    cool.wait_for_connection(timeout=DEADLINE)
    ctemp.put(150.0, wait=True)
    cool.put(1, wait=True)
    wait_for(lambda: client.value("CS1:TARGETTEMP") == pytest.approx(150.0), "TARGETTEMP 150")
    wait_for(lambda: client.value("CS1:RUNMODE") == b"Run", "CS1 running")
    client.put("CS1:HOLD", 1)
    wait_for(lambda: client.value("CS1:PHASE") == b"Hold", "CS1 holding")


def test_staleness_alarm_follows_sim_broadcast(client):
    wait_for(lambda: client.alarm("CS1:CTRLNUM")[0] == AlarmSeverity.NO_ALARM, "CS1 fresh")
    client.put("CS1:SIM:BROADCAST", "Off")
    try:
        wait_for(lambda: client.alarm("CS1:CTRLNUM") ==
                 (AlarmSeverity.INVALID_ALARM, AlarmStatus.COMM), "CS1 stale")
        for suffix in ("TEMP", "SETPOINT", "RUNMODE", "ALARMI"):
            assert client.alarm(f"CS1:{suffix}") == (AlarmSeverity.INVALID_ALARM,
                                                     AlarmStatus.COMM), suffix
        assert client.alarm("CS0:CTRLNUM")[0] == AlarmSeverity.NO_ALARM  # CS0 unaffected
        # AGE is published once a second: poll rather than read once
        wait_for(lambda: client.value("CS:CS1:AGE") >= 1.0, "CS1 AGE counting")
    finally:
        client.put("CS1:SIM:BROADCAST", "On")
    wait_for(lambda: client.alarm("CS1:CTRLNUM") ==
             (AlarmSeverity.NO_ALARM, AlarmStatus.NO_ALARM), "CS1 fresh again")
    assert client.alarm("CS1:TEMP")[0] == AlarmSeverity.NO_ALARM


def test_sim_alarm_sensorfail_and_drop(client):
    client.put("CS0:SIM:ALARM", 5)
    try:
        wait_for(lambda: client.value("CS0:ALARM") == b"Temp warning", "alarm 5 shown")
        assert client.alarm("CS0:ALARMI") == (AlarmSeverity.MINOR_ALARM, AlarmStatus.STATE)
    finally:
        client.put("CS0:SIM:ALARM", 0)
    wait_for(lambda: client.value("CS0:ALARM") == b"No errors or warnings", "alarm cleared")
    client.put("CS0:SIM:SENSORFAIL", "On")
    try:
        wait_for(lambda: client.alarm("CS0:TEMP") ==
                 (AlarmSeverity.INVALID_ALARM, AlarmStatus.UDF), "TEMP not available")
    finally:
        client.put("CS0:SIM:SENSORFAIL", "Off")
    wait_for(lambda: client.alarm("CS0:TEMP")[0] == AlarmSeverity.NO_ALARM, "TEMP back")
    with pytest.raises(ErrorResponseReceived, match="0 to 1"):
        client.put("CS0:SIM:DROP", 1.5)
    client.put("CS0:SIM:DROP", 0.0)


def _malformed(n: int, seed: int = 7) -> tuple[list[bytes], dict[str, int]]:
    """``n`` bad datagrams of known kinds, and how many of each reason they should count."""
    rng = random.Random(seed)
    good = P.encode_status(SimulatedCS800(411, ManualClock(), seed=1).raw_values())
    unknown = P.encode_status(SimulatedCS800(999, ManualClock(), seed=1).raw_values())
    expected = dict.fromkeys(("short", "header", "length", "checksum", "footer", "unknown"), 0)
    out = []
    for i in range(n):
        kind = i % 7
        if kind == 0:  # random bytes (never starting with the header)
            d = bytes([rng.randrange(0, 0xAA)]) + rng.randbytes(rng.randrange(7, 1200))
            reason = "header"
        elif kind == 1:  # truncated
            cut = rng.randrange(0, len(good) - 1)
            d = good[:cut]
            reason = "short" if cut < 8 else "length"
        elif kind == 2:  # bad checksum
            csum = struct.unpack_from(">H", good, len(good) - 4)[0]
            d = good[:-4] + struct.pack(">H", (csum + 1 + rng.randrange(100)) & 0xFFFF) + good[-2:]
            reason = "checksum"
        elif kind == 3:  # bad footer
            d = good[:-2] + bytes([0xAB, rng.randrange(0, 0xAA)])
            reason = "footer"
        elif kind == 4:  # wrong length field
            d = good[:2] + struct.pack(">H", 920 + 4 * rng.randrange(1, 50)) + good[4:]
            reason = "length"
        elif kind == 5:  # a controller this IOC does not serve
            d = unknown
            reason = "unknown"
        else:  # tiny datagrams
            d = rng.randbytes(rng.randrange(0, 8))
            reason = "short"
        expected[reason] += 1
        out.append(d)
    return out, expected


def _rmem_max() -> int:
    try:
        return int(Path("/proc/sys/net/core/rmem_max").read_text())
    except (OSError, ValueError):
        return 0


def test_ten_thousand_malformed_datagrams(cs800_sim_ioc, client):
    datagrams, expected = _malformed(10_000)
    reasons = list(expected)

    def counters() -> dict[str, int]:
        return {r: int(client.value(f"CS:REJ:{r.upper()}")) for r in reasons}

    port = int(client.value("CS:PORT"))
    before = counters()
    rejected0 = int(client.value("CS:REJECTED"))
    count0 = int(client.value("CS:CS0:COUNT"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # Paced: a batch must fit the IOC's socket buffer (a 1200-byte datagram takes ~2.3 kB
        # of it). The IOC asks for STATUS_RCVBUF; where net.core.rmem_max caps that at Linux's
        # default (~425 kB effective), send smaller batches (slower: counters publish at 5 Hz).
        batch = 1000 if _rmem_max() >= STATUS_RCVBUF else 100
        for start in range(0, len(datagrams), batch):
            for d in datagrams[start:start + batch]:
                sock.sendto(d, ("127.0.0.1", port))
            sent = min(start + batch, len(datagrams))
            wait_for(lambda sent=sent: int(client.value("CS:REJECTED")) - rejected0 >= sent,
                     f"{sent} rejections counted")
    finally:
        sock.close()
    after = counters()
    # Exact: the status port is private (see test_sim_ioc_status_port_is_private), so every
    # rejection counted here is one of the datagrams sent above.
    assert {r: after[r] - before[r] for r in reasons} == expected, \
        bytes(client.read("CS:LASTREJECT").data).decode()
    assert int(client.value("CS:REJECTED")) - rejected0 == len(datagrams)
    assert int(client.value("CS:REJ:OTHER")) == 0
    # the IOC is up and the good controller kept updating, correctly
    assert cs800_sim_ioc._proc.poll() is None
    wait_for(lambda: int(client.value("CS:CS0:COUNT")) > count0 + 5, "CS0 datagrams")
    assert client.value("CS0:CTRLNUM") == 411
    assert client.alarm("CS0:TEMP")[0] == AlarmSeverity.NO_ALARM
    wait_for(lambda: client.value("CS:CS0:AGE") < 2.0, "CS0 AGE small")  # published at 1 Hz
    last = bytes(client.read("CS:LASTREJECT").data).decode()
    assert last.split(":")[0] in reasons


def test_sim_ioc_status_port_is_private(client):
    """No other socket can share the simulated IOC's status port, and no CA port is ever it.

    The port lies below the kernel's ephemeral range (where every port-0 bind, CA servers' and
    clients' included, gets its number) and is bound without SO_REUSEADDR/SO_REUSEPORT, so stray
    datagrams (e.g. CA searches of another test run aimed at a recycled port) cannot reach it.
    """
    from sim_ioc.status_server import PRIVATE_PORT_LOW, ephemeral_port_range

    port = int(client.value("CS:PORT"))
    low, _ = ephemeral_port_range()
    assert PRIVATE_PORT_LOW <= port < low
    for options in ((), (socket.SO_REUSEADDR,), (socket.SO_REUSEADDR, socket.SO_REUSEPORT)):
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for option in options:
                other.setsockopt(socket.SOL_SOCKET, option, 1)
            with pytest.raises(OSError):
                other.bind(("127.0.0.1", port))
        finally:
            other.close()


def test_ophyd_reaches_an_ioc_started_later(cs800_sim_ioc, ioc_factory):
    """The conftest claim: ioc_factory makes a later IOC reachable by ophyd's existing context."""
    from sim_ioc.process import SimIocProcess

    first = EpicsSignalRO(f"{cs800_sim_ioc.prefix}CS0:CTRLNUM", name="first")
    first.wait_for_connection(timeout=DEADLINE)  # the shared caproto context exists now
    extra = ioc_factory(SimIocProcess(controllers=1, speed=100.0, extra_args=["--first-cid",
                                                                                "700"]))
    sig = EpicsSignalRO(f"{extra.prefix}CS0:CTRLNUM", name="later")
    sig.wait_for_connection(timeout=DEADLINE)
    wait_for(lambda: sig.get() == 700, "CTRLNUM 700 from the extra IOC")
    assert first.get() == 411
