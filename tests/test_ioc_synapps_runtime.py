"""The synapps flavour shows what a client sees from the synApps C IOC at run time.

Against subprocess IOCs over Channel Access (spec ``synapps-ioc-runtime.md`` section 2):
values freeze with NO_ALARM when the controller is silent or DISABLE is 1; the
``status_packet`` NORD/alarm cycle; at most 10 decodes per second with the backlog queued;
limits, defaults and silent clamping; sentinels as numbers; DISABLE 1 at boot; the SNL's alarm
texts and ALARMI severity; DEBUG "off"; 11 PHASE strings. Plus the pure parts
(:mod:`sim_ioc.synapps`) as unit tests.
"""

from __future__ import annotations

import asyncio
import time

import polling
import pytest
from caproto import AlarmSeverity, AlarmStatus, ChannelType

from ophyd_cs800 import protocol as P
from sim_ioc.process import SimIocProcess
from sim_ioc.synapps import ScanLimitedReceiver, alarm_text, extract_c_ioc

#: Stale timeout given to the synapps IOC: the flavour must ignore it (values freeze).
STALE_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def ioc(module_ioc_factory):
    """synapps flavour, comms enabled, 5 datagrams/s (the new default), speed 10."""
    return module_ioc_factory(SimIocProcess(flavor="synapps", speed=10.0,
                                            stale_timeout=STALE_TIMEOUT))


@pytest.fixture(scope="module")
def boot_ioc(module_ioc_factory):
    """synapps flavour as it boots (DISABLE 1), fed 20 datagrams/s: more than it decodes."""
    return module_ioc_factory(SimIocProcess(flavor="synapps", speed=20.0, max_rate_hz=20.0,
                                            enable_comms=False))


def _read(ioc, suffix: str, data_type=None):
    return ioc.read(ioc.controller_prefix(0) + suffix, data_type=data_type)


def _value(ioc, suffix: str):
    data = _read(ioc, suffix).data
    return data[0] if len(data) == 1 else data


def _alarm(ioc, pv: str) -> tuple[AlarmSeverity, AlarmStatus]:
    md = ioc.read(pv, data_type="time").metadata
    return AlarmSeverity(md.severity), AlarmStatus(md.status)


# ---------------------------------------------------------------------------- pure parts
def _packet(**raw: int) -> P.StatusPacket:
    ids = {"TEMP": 1051, "GASFLOW": 1060, "LEVEL": 1203, "ALARMI": 1065, "PHASE": 1054,
           "ERROR": 1052, "VACSENSOR": 2042}
    return P.StatusPacket(raw={ids[name]: value for name, value in raw.items()})


def test_c_ioc_decoding_shows_sentinels_as_numbers_with_no_alarm():
    enums = {"PHASE": P.PHASE_STRINGS[:11], "RUNMODE": P.RUN_MODE_STRINGS}
    out = extract_c_ioc(_packet(TEMP=0xFFFE, GASFLOW=0xFFFE, LEVEL=0xFFFE, ERROR=0xFFFE,
                                ALARMI=0, PHASE=3), enums)
    assert out["TEMP"][0] == pytest.approx(655.34)
    assert out["GASFLOW"][0] == pytest.approx(6553.4)
    assert out["LEVEL"][0] == 65534
    assert out["ERROR"][0] == pytest.approx(655.34)   # unsigned, as the C IOC decodes it
    assert all(sev == AlarmSeverity.NO_ALARM for _, sev, _ in out.values())
    assert out["ALARM"][0] == "No error" and out["PHASE"][0] == "Hold"


def test_c_ioc_decoding_alarm_texts_severity_and_unknown_states():
    enums = {"PHASE": P.PHASE_STRINGS[:11], "RUNMODE": P.RUN_MODE_STRINGS}
    out = extract_c_ioc(_packet(ALARMI=3, PHASE=11), enums)
    assert out["ALARM"][0] == "End Complete"
    assert out["ALARMI"][1:] == (AlarmSeverity.MAJOR_ALARM, AlarmStatus.HIGH)
    assert "PHASE" not in out and "TEMP" not in out   # kept: no string / not in the packet
    assert alarm_text(34) == "High Temp Warning"      # the SNL's table is shifted from 34
    assert alarm_text(56) == "not recognized"


def test_vacsensor_in_the_last_pair_is_never_found():
    packet = P.StatusPacket(raw={**{1000 + i: 0 for i in range(229)}, 2042: 7})
    assert "VACSENSOR" not in extract_c_ioc(packet, {"PHASE": (), "RUNMODE": ()})
    assert extract_c_ioc(P.StatusPacket(raw={2042: 7}), {})["VACSENSOR"][0] == 7


class _Inner:
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def connection_made(self, transport) -> None:
        pass

    def datagram_received(self, data: bytes, addr) -> None:
        self.got.append(data)


def test_scan_decodes_at_most_one_datagram_per_period_and_drops_the_oldest():
    async def run() -> tuple[list, list, int]:
        inner, reads = _Inner(), []

        async def on_read(data):
            reads.append(data)

        rx = ScanLimitedReceiver(inner, on_read, depth=5, scan_period=0.05, read_timeout=0.2)
        for i in range(8):
            rx.datagram_received(bytes([i]) * 1000, ("127.0.0.1", 1))
        task = asyncio.get_running_loop().create_task(rx.scan())
        deadline = time.monotonic() + 5.0
        while len(reads) < 7 and time.monotonic() < deadline:  # 5 reads, then timeouts
            await asyncio.sleep(0.01)
        task.cancel()
        return inner.got, reads, rx.dropped

    got, reads, dropped = asyncio.run(run())
    assert dropped == 3 and [d[0] for d in got[:5]] == [3, 4, 5, 6, 7]
    assert [len(r) for r in reads[:5]] == [928] * 5     # NRRD 928
    assert reads[5] is None                              # then a read timeout


# ---------------------------------------------------------------------------- over CA
def test_limits_and_defaults_are_the_c_iocs(ioc):
    expected = {"RTEMP": (1.0, 360.0, 100.0), "CTEMP": (80.0, 327.67, 100.0),
                "RRATE": (1.0, 360.0, 360.0), "PTIME": (1.0, 1440.0, 1.0),
                "ERATE": (1.0, 360.0, 360.0)}
    for name, (low, high, default) in expected.items():
        reading = _read(ioc, name, ChannelType.CTRL_DOUBLE)
        md = reading.metadata
        assert (md.lower_ctrl_limit, md.upper_ctrl_limit) == pytest.approx((low, high)), name
        assert reading.data[0] == pytest.approx(default), name


@pytest.mark.parametrize("name, put, reads", [
    ("RTEMP", 370.0, 360.0), ("RTEMP", 0.5, 1.0), ("CTEMP", 350.0, 327.67),
    ("RRATE", 0.0, 1.0), ("RRATE", 5000.0, 360.0), ("PTIME", 2000.0, 1440.0),
])
def test_a_put_outside_drvl_drvh_is_clamped_silently(ioc, name, put, reads):
    before = _value(ioc, name)
    try:
        ioc.write(ioc.controller_prefix(0) + name, put)   # succeeds, as on an EPICS ao
        assert _value(ioc, name) == pytest.approx(reads)
    finally:
        ioc.write(ioc.controller_prefix(0) + name, before)


def test_enum_strings_debug_and_sentinels(ioc):
    phase = _read(ioc, "PHASE", ChannelType.CTRL_ENUM)
    assert len(phase.metadata.enum_strings) == 11
    assert _value(ioc, "DEBUG") == b"off"
    debug = _read(ioc, "DEBUG", ChannelType.CTRL_ENUM)
    assert debug.metadata.enum_strings[0] == b"off"
    polling.wait_for(lambda: _value(ioc, "CTRLNUM") == 411, "the first decoded datagram")
    # The simulator reports no gas flow and no level (0xFFFE), as a standard CryoStream.
    assert _value(ioc, "GASFLOW") == pytest.approx(6553.4)
    assert _value(ioc, "LEVEL") == 65534
    assert _alarm(ioc, ioc.controller_prefix(0) + "GASFLOW")[0] == AlarmSeverity.NO_ALARM


def test_alarm_texts_and_alarmi_severity(ioc):
    prefix = ioc.controller_prefix(0)
    try:
        ioc.write(prefix + "SIM:ALARM", 5)
        polling.wait_for(lambda: _value(ioc, "ALARM") == b"Temp Warning", "ALARM text", 10.0)
        assert _alarm(ioc, prefix + "ALARMI") == (AlarmSeverity.MAJOR_ALARM, AlarmStatus.HIGH)
        assert _alarm(ioc, prefix + "ALARM")[0] == AlarmSeverity.NO_ALARM
    finally:
        ioc.write(prefix + "SIM:ALARM", 0)
    polling.wait_for(lambda: _value(ioc, "ALARMI") == 0, "the alarm cleared", 10.0)
    assert _value(ioc, "ALARM") == b"No error"
    assert _alarm(ioc, prefix + "ALARMI")[0] == AlarmSeverity.NO_ALARM


def test_a_silent_controller_freezes_values_and_status_packet_cycles(ioc):
    packet = ioc.prefix + "CS:status_packet"
    polling.wait_for(lambda: ioc.read(packet + ".NORD").data[0] == 928, "NORD 928")
    assert _alarm(ioc, packet) == (AlarmSeverity.NO_ALARM, AlarmStatus.NO_ALARM)
    try:
        ioc.silence(0)
        silenced = time.monotonic()
        polling.wait_for(lambda: ioc.read(packet + ".NORD").data[0] == 0, "NORD 0", 5.0)
        assert _alarm(ioc, packet) == (AlarmSeverity.MAJOR_ALARM, AlarmStatus.READ)
        temp = _value(ioc, "TEMP")
        stamp = ioc.read(packet, data_type="time").metadata.timestamp
        # Past the stale timeout given to the IOC (ignored by this flavour) and past another
        # read timeout: TEMP has not moved and has no alarm; status_packet was processed again.
        deadline = silenced + STALE_TIMEOUT + 1.5
        polling.poll(lambda: time.monotonic() > deadline, STALE_TIMEOUT + 3.0, interval=0.1)
        assert _value(ioc, "TEMP") == temp
        assert _alarm(ioc, ioc.controller_prefix(0) + "TEMP")[0] == AlarmSeverity.NO_ALARM
        assert ioc.read(packet, data_type="time").metadata.timestamp > stamp
    finally:
        ioc.silence(0, silent=False)
    polling.wait_for(lambda: ioc.read(packet + ".NORD").data[0] == 928, "NORD 928 again", 5.0)
    assert _alarm(ioc, packet)[0] == AlarmSeverity.NO_ALARM


def test_status_packet_monitor_fires_for_every_datagram(ioc):
    """The heartbeat a client can use: one NO_ALARM monitor per decoded datagram (5/s here)."""
    from caproto.threading.client import Context

    updates: list[tuple[int, float]] = []
    ctx = Context()
    try:
        (pv,) = ctx.get_pvs(ioc.prefix + "CS:status_packet", timeout=10.0)
        pv.wait_for_connection(timeout=10.0)
        sub = pv.subscribe(data_type="time")

        def note(sub, response) -> None:
            updates.append((response.metadata.severity, response.metadata.timestamp))

        sub.add_callback(note)  # caproto keeps a weak reference: ``note`` lives until the end
        polling.wait_for(lambda: len(updates) >= 11, "11 status_packet monitors", 10.0)
        sub.clear()
    finally:
        ctx.disconnect()
    fresh = updates[1:]  # the first is the current value
    assert all(sev == AlarmSeverity.NO_ALARM for sev, _ in fresh)
    stamps = [stamp for _, stamp in fresh]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert stamps[-1] - stamps[0] < 9 * 0.2 + 1.5   # about one per 0.2 s, generous


def test_boot_state_disabled_and_rate_limited(boot_ioc):
    prefix = boot_ioc.controller_prefix(0)
    assert _value(boot_ioc, "DISABLE") == b"Disabled"
    # Nothing decoded while disabled: PINI values (0, NO_ALARM), ALARM "unset".
    assert _value(boot_ioc, "TEMP") == 0.0 and _value(boot_ioc, "ALARM") == b"unset"
    assert _alarm(boot_ioc, prefix + "TEMP")[0] == AlarmSeverity.NO_ALARM
    # An action while disabled succeeds and sends nothing (SDIS), as on the C IOC.
    boot_ioc.write(prefix + "RTEMP", 150.0)
    boot_ioc.write(prefix + "RAMP.PROC", [1])
    assert "sent RAMP" not in boot_ioc.log_text(100_000)
    # The asyn record still reads the port: at most 10 datagrams per second, of 20 sent.
    received = boot_ioc.prefix + "CS:RECEIVED"
    # the window runs from before the first read to after the second, so it holds both
    # samples however long each read takes on a loaded machine (one took ~0.3 s in a run)
    t0 = time.monotonic()
    first = boot_ioc.read(received).data[0]
    polling.poll(lambda: time.monotonic() - t0 > 2.0, 4.0, interval=0.1)
    count, window = boot_ioc.read(received).data[0] - first, time.monotonic() - t0
    assert 0 < count <= 10 * window + 2
    # The backlog queued meanwhile is still decoded after the controller falls silent.
    boot_ioc.silence(0)
    silenced = time.monotonic()
    polling.wait_for(lambda: boot_ioc.read(boot_ioc.prefix + "CS:status_packet.NORD").data[0]
                     == 0, "the backlog drained", 20.0, interval=0.05)
    assert time.monotonic() - silenced > 1.5


# ---------------------------------------------------------------------------- flags
def test_the_simulators_default_rate_is_one_the_c_ioc_decodes():
    import inspect

    from sim_ioc import sim_cli
    from sim_ioc.udp_sim import DEFAULT_MAX_RATE_HZ, SimulatorServer

    assert DEFAULT_MAX_RATE_HZ <= 5
    assert inspect.signature(SimulatorServer).parameters["max_rate_hz"].default <= 5
    assert sim_cli.build_parser().parse_args([]).max_rate <= 5


def test_bad_flavor_and_rate_flags_get_a_sentence(capsys):
    from sim_ioc import cli, sim_cli
    from sim_ioc.flavors import get_flavor

    with pytest.raises(ValueError, match="unknown IOC flavour 'nope': choose one of fixed, "
                                         "synapps"):
        get_flavor("nope")
    with pytest.raises(SystemExit) as info:
        cli.main_sim_ioc(["--flavor", "nope"])
    assert info.value.code == 2
    assert "invalid choice: 'nope' (choose from" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sim_cli.build_parser().parse_args(["--max-rate", "0"])
    assert "max rate must be a number > 0, got '0'" in capsys.readouterr().err
