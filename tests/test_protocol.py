"""Unit and property tests of the pure CS800 codec (ophyd_cs800.protocol)."""

import re
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ophyd_cs800 import protocol as P

# --------------------------------------------------------------------------------------------
# Commands: the hex table of spec section 5.2, byte for byte
# --------------------------------------------------------------------------------------------

SPEC_HEX_TABLE = [
    (P.restart(), "00 0A 00 00 00 00 0A"),
    (P.ramp(360, 100.0), "00 0B 01 68 27 10 AB"),
    (P.ramp(120, 295.0), "00 0B 00 78 73 3C 32"),
    (P.plat(30), "00 0C 00 1E 00 00 2A"),
    (P.hold(), "00 0D 00 00 00 00 0D"),
    (P.cool(100.0), "00 0E 27 10 00 00 45"),
    (P.end(360), "00 0F 01 68 00 00 78"),
    (P.purge(), "00 10 00 00 00 00 10"),
    (P.pause(), "00 11 00 00 00 00 11"),
    (P.resume(), "00 12 00 00 00 00 12"),
    (P.stop(), "00 13 00 00 00 00 13"),
    (P.turbo(True), "00 14 00 01 00 00 15"),
    (P.turbo(False), "00 14 00 00 00 00 14"),
    (P.set_autofill_mode(1), "00 CA 00 01 00 00 CB"),
]


@pytest.mark.parametrize(
    ("cmd", "hex_bytes"), SPEC_HEX_TABLE, ids=lambda x: getattr(x, "command", x)
)
def test_spec_hex_table(cmd, hex_bytes):
    assert cmd.encode().hex(" ").upper() == hex_bytes


EVERY_USER_COMMAND = [
    P.restart(),
    P.ramp(0, 80.0),
    P.ramp(360, 400.0),
    P.plat(1),
    P.plat(1440),
    P.hold(),
    P.cool(80.0),
    P.end(1),
    P.purge(),
    P.pause(),
    P.resume(),
    P.stop(),
    P.turbo(True),
    P.regen(),
    P.set_flow_interrupt_time(600),
    P.interrupt_flow(),
    P.run_shield(True),
    P.set_idle_shield_mode(2),
    P.set_autofill_mode(2),
    P.set_autofill_refill_level(20),
    P.set_autofill_stop_level(80),
    P.set_parameter(1300, 1),
]


def test_every_command_id_has_a_builder():
    assert {c.command for c in EVERY_USER_COMMAND} == set(P.CommandId)
    assert 66 not in {int(c) for c in P.CommandId}, "firmware update must never be sendable"


@pytest.mark.parametrize("cmd", EVERY_USER_COMMAND, ids=lambda c: c.command.name)
def test_every_command_round_trips(cmd):
    data = cmd.encode()
    assert len(data) == 7
    assert data[6] == sum(data[:6]) & 0xFF
    assert P.decode_command(data) == cmd
    P.validate_command(P.decode_command(data))


def test_ramp_carries_centikelvin_and_rate():
    cmd = P.ramp(123, 150.004)
    assert (cmd.param1, cmd.param2) == (123, 15000)
    assert P.ramp(6, 99.995).param2 == 10000  # rounded to the nearest 0.01 K


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: P.ramp(361, 100), "ramp rate 361 K/h is out of range: allowed 0 to 360 K/h"),
        (lambda: P.ramp(-1, 100), "ramp rate -1 K/h is out of range: allowed 0 to 360 K/h"),
        (lambda: P.ramp(10.5, 100), "ramp rate must be a whole number of K/h, got 10.5"),
        (
            lambda: P.ramp(360, 79.99),
            "ramp target 79.99 K is out of range: allowed 80.00 to 400.00 K",
        ),
        (
            lambda: P.ramp(360, 400.01),
            "ramp target 400.01 K is out of range: allowed 80.00 to 400.00 K",
        ),
        (lambda: P.cool(500), "cool target 500.00 K is out of range: allowed 80.00 to 400.00 K"),
        (lambda: P.end(0), "end rate 0 K/h is out of range: allowed 1 to 360 K/h"),
        (lambda: P.end(361), "end rate 361 K/h is out of range: allowed 1 to 360 K/h"),
        (lambda: P.plat(0), "plateau duration 0 min is out of range: allowed 1 to 1440 min"),
        (lambda: P.plat(1441), "plateau duration 1441 min is out of range: allowed 1 to 1440 min"),
        (lambda: P.set_flow_interrupt_time(601), "allowed 1 to 600 ds"),
        (
            lambda: P.set_autofill_mode(3),
            "autofill mode 3 is not allowed: allowed 0 (manual), 1 (auto), 2 (scheduled)",
        ),
        (lambda: P.set_autofill_refill_level(41), "allowed 20 to 40 %"),
        (lambda: P.set_autofill_stop_level(59), "allowed 60 to 80 %"),
        (
            lambda: P.set_parameter(70000, 1),
            "parameter id 70000 is out of range: allowed 0 to 65535",
        ),
    ],
)
def test_out_of_range_commands_name_the_allowed_range(build, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


def test_plus_unit_limits_are_honoured():
    assert P.ramp(360, 500.0, max_temp=500.0).param2 == 50000
    with pytest.raises(ValueError, match="allowed 80.00 to 400.00 K"):
        P.ramp(360, 500.0)


def test_validate_command_checks_received_parameters():
    P.validate_command(P.Command(P.CommandId.RAMP, 360, 10000))
    with pytest.raises(ValueError, match="ramp target 1.00 K"):
        P.validate_command(P.Command(P.CommandId.RAMP, 360, 100))
    with pytest.raises(ValueError, match="turbo setting 2 is not allowed"):
        P.validate_command(P.Command(P.CommandId.TURBO, 2))
    # unused parameters are not checked: BCSB copies param1 into param2
    P.validate_command(P.Command(P.CommandId.END, 360, 360))


@pytest.mark.parametrize(
    ("datagram", "message"),
    [
        (b"\x00\x0d\x00\x00\x00\x00", "command datagram must be 7 bytes, got 6"),
        (b"\x00\x0d\x00\x00\x00\x00\x0d\x00", "command datagram must be 7 bytes, got 8"),
        (b"\x00\x0d\x00\x00\x00\x00\x0e", "command checksum mismatch: expected 0x0D, found 0x0E"),
        (b"\x00\x63\x00\x00\x00\x00\x63", "unknown command id 99 (0x63)"),
        (b"\x00\x42\x22\x82\x00\x01\xe7", "unknown command id 66 (0x42)"),
    ],
)
def test_malformed_commands(datagram, message):
    with pytest.raises(P.ProtocolError, match=re.escape(message)):
        P.decode_command(datagram)


def test_command_rejects_non_16_bit_parameters():
    with pytest.raises(ValueError, match="param1 65536 is not a 16-bit word"):
        P.Command(P.CommandId.PLAT, 65536)


# --------------------------------------------------------------------------------------------
# Status datagrams
# --------------------------------------------------------------------------------------------


def _snapshot() -> dict[int, int]:
    """The APS 19-ID cold snapshot of spec section 2.6 on top of 0xFFFE everywhere."""
    raw = dict.fromkeys(P.STANDARD_IDS, P.NOT_AVAILABLE)
    raw.update(
        {
            1000: 1,
            1001: 4,
            1002: 8000,
            1003: 40000,
            1004: 115,
            1028: 427,
            1050: 10000,
            1051: 9998,
            1052: 0x10000 - 2,
            1053: 3,
            1054: 3,
            1055: 0,
            1056: 10000,
            1057: 7912,
            1058: 29000,
            1059: 0,
            1061: 5,
            1062: 55,
            1063: 0,
            1065: 0,
            1066: 160,
            1067: 32,
            1068: 0,
            1071: 0,
            1072: 3,
            1073: 0,
            1100: 499,
            1101: 36,
            1103: 54,
            1203: 6510,
            1303: 65535,
            2034: 12,
            2042: 0,
        }
    )
    return raw


def test_standard_layout_is_928_bytes_with_230_ids_in_order():
    assert len(P.STANDARD_IDS) == 230
    assert list(P.STANDARD_IDS) == sorted(P.STANDARD_IDS)
    data = P.encode_status(_snapshot())
    assert len(data) == 928
    assert data[:4] == b"\xaa\xab\x03\x98"  # 920 = 0x0398
    assert data[-2:] == b"\xab\xaa"
    assert struct.unpack_from(">HH", data, 920) == (2042, 0)  # the last pair, at offset 920
    packet = P.decode_status(data)
    assert list(packet.raw) == list(P.STANDARD_IDS)
    assert packet.trailing == b""


def test_long_firmware_153_layout_decodes():
    raw = {pid: 1 for pid in P.LONG_IDS}
    raw.update({1028: 1213, 1004: 153, 2034: 7, 2042: 3})
    trailer = bytes(4) + bytes(range(192))
    data = P.encode_status(raw, trailer)
    assert len(data) == 1236 and struct.unpack_from(">H", data, 2)[0] == 1228
    packet = P.decode_status(data)
    assert len(packet.raw) == 258
    assert packet.trailing == trailer
    assert (packet.cid, packet.firmware) == (1213, 153)
    # ids that sit past byte 920 on firmware 153, invisible to the C IOC
    assert packet.value(2034) == 7 and packet.value(2042) == 3


def test_engineering_values_of_the_snapshot():
    packet = P.decode_status(P.encode_status(_snapshot()))
    assert packet.cid == 427
    assert packet.run_mode is P.RunMode.RUN and packet.phase is P.Phase.HOLD
    assert packet.temp == pytest.approx(99.98)
    assert packet.setpoint == pytest.approx(100.0) and packet.target_temp == pytest.approx(100.0)
    assert packet.error == pytest.approx(-0.02)  # signed, never 655.34
    assert packet.ramp_rate == 0 and packet.remaining == 0
    assert packet.gas_flow == pytest.approx(4.99)  # from 1100 because 1060 is 0xFFFE
    assert packet.value(1060) is None
    assert packet.value(1101) == 36 and P.PARAMS[1101].unit == "mbar"
    assert packet.value(1203) == pytest.approx(65.10) and P.PARAMS[1203].unit == "%"
    assert packet.value(2034) == 12 and P.PARAMS[2034].unit == "min"
    assert packet.value(1303) == 65535  # a genuine 65535 is not the sentinel
    assert packet.value(2010) is None  # coldhead not fitted
    assert packet.alarm == P.Alarm(0, 0, "No errors or warnings", "No alarm")
    assert packet.suspended is False
    assert packet.turbo_mode is P.TurboMode.OFF


def test_error_sentinel_outside_run_mode_is_not_available():
    raw = _snapshot()
    raw[1053] = int(P.RunMode.STARTUP_OK)
    packet = P.decode_status(P.encode_status(raw))
    assert packet.error is None
    raw[1052] = 150  # +1.50 K
    assert P.decode_status(P.encode_status(raw)).error == pytest.approx(1.5)


def test_legacy_gas_flow_is_used_when_present():
    raw = _snapshot()
    raw[1060] = 50  # dl/min
    assert P.decode_status(P.encode_status(raw)).gas_flow == pytest.approx(5.0)


def test_unknown_ids_are_kept():
    data = P.encode_status([(1051, 10000), (7777, 42), (1028, 5)])
    packet = P.decode_status(data)
    assert packet.raw == {1051: 10000, 7777: 42, 1028: 5}
    assert packet.value(7777) == 42


def test_checksum_is_a_word_sum_not_a_byte_sum():
    data = bytes.fromhex("04 1b 27 0f 04 1c ff fe")
    assert P.status_checksum(data) == (0x041B + 0x270F + 0x041C + 0xFFFE) & 0xFFFF
    assert P.status_checksum(data) != sum(data) & 0xFFFF


@pytest.mark.parametrize("pid", sorted(P.PARAMS))
def test_every_field_round_trips(pid):
    param = P.PARAMS[pid]
    samples = (
        [0, 1, 100, 8000, 40000, 65533] if not param.signed else [0, 1, 0x7FFF, 0x8000, 0xFFFF]
    )
    for raw in samples:
        value = P.raw_to_value(pid, raw)
        assert value is not None
        assert P.value_to_raw(pid, value) == raw
    assert P.value_to_raw(pid, None) == P.NOT_AVAILABLE
    if not param.signed:
        assert P.raw_to_value(pid, P.NOT_AVAILABLE) is None


def test_value_to_raw_refuses_values_that_do_not_fit():
    with pytest.raises(ValueError, match="does not fit parameter 1051"):
        P.value_to_raw(1051, 700.0)
    with pytest.raises(ValueError, match="does not fit parameter 1052 \\(signed 16-bit"):
        P.value_to_raw(1052, 400.0)
    with pytest.raises(ValueError, match="not a 16-bit word"):
        P.raw_to_value(1051, 70000)


def test_status_round_trip_of_random_values():
    import random

    rng = random.Random(1)
    raw = {pid: rng.randrange(0, 0x10000) for pid in P.STANDARD_IDS}
    packet = P.decode_status(P.encode_status(raw))
    assert packet.raw == raw
    assert P.encode_status(packet.raw, packet.trailing) == P.encode_status(raw)


# --- malformed status datagrams: each class with its own message ---------------------------

GOOD = P.encode_status(_snapshot())


def _with_word(data: bytes, offset: int, word: int) -> bytes:
    return data[:offset] + struct.pack(">H", word) + data[offset + 2 :]


@pytest.mark.parametrize(
    ("datagram", "message", "reason"),
    [
        (b"", "status datagram too short: 0 bytes, need at least 8", "short"),
        (GOOD[:7], "status datagram too short: 7 bytes, need at least 8", "short"),
        (b"\xaa\xac" + GOOD[2:], "bad header: expected AA AB, found AA AC", "header"),
        (
            GOOD[:500],
            "length field says 920 data bytes, datagram holds 492 (total 500 bytes)",
            "length",
        ),
        (
            GOOD + b"\x00",
            "length field says 920 data bytes, datagram holds 921 (total 929 bytes)",
            "length",
        ),
        (GOOD[:-2] + b"\xab\xab", "bad footer: expected AB AA, found AB AB", "footer"),
        (
            _with_word(GOOD, 924, (struct.unpack_from(">H", GOOD, 924)[0] + 1) & 0xFFFF),
            "checksum mismatch: expected 0x{:04X} (sum of data words), found 0x{:04X}".format(
                struct.unpack_from(">H", GOOD, 924)[0],
                (struct.unpack_from(">H", GOOD, 924)[0] + 1) & 0xFFFF,
            ),
            "checksum",
        ),
        # a data word changed: the checksum no longer matches
        (_with_word(GOOD, 6 + 4 * 43, 9999), "checksum mismatch: expected 0x", "checksum"),
    ],
    ids=["empty", "short", "header", "truncated", "too-long", "footer", "checksum", "payload"],
)
def test_malformed_status_datagrams(datagram, message, reason):
    with pytest.raises(P.ProtocolError) as info:
        P.decode_status(datagram)
    assert str(info.value).startswith(message)
    assert info.value.reason == reason  # what the IOC's REJ:<reason> counters use


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (b"\x00\x0d\x00", "length"),
        (b"\x00\x0d\x00\x00\x00\x00\x0e", "checksum"),
        (b"\x00\x63\x00\x00\x00\x00\x63", "command"),
    ],
)
def test_malformed_commands_carry_their_reason(datagram, reason):
    with pytest.raises(P.ProtocolError) as info:
        P.decode_command(datagram)
    assert info.value.reason == reason


def test_empty_data_region_decodes_to_nothing():
    packet = P.decode_status(P.encode_status([]))
    assert packet.raw == {} and packet.cid is None and packet.temp is None


def test_encode_rejects_non_words():
    with pytest.raises(ValueError, match="status value of id 1051 70000 is not a 16-bit word"):
        P.encode_status([(1051, 70000)])


# --- property tests: nothing but ProtocolError escapes ---------------------------------------


def _decode_or_protocol_error(data: bytes) -> None:
    try:
        P.decode_status(data)
    except P.ProtocolError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=1300))
def test_random_bytes_never_raise_anything_but_protocol_error(data):
    _decode_or_protocol_error(data)
    try:
        P.decode_command(data[:9])
    except P.ProtocolError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(GOOD)))
def test_truncated_datagrams_raise_protocol_error(cut):
    if cut == len(GOOD):
        assert P.decode_status(GOOD[:cut]).cid == 427
        return
    with pytest.raises(P.ProtocolError):
        P.decode_status(GOOD[:cut])


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=8)
)
def test_mutated_datagrams_never_raise_anything_but_protocol_error(mutations):
    data = bytearray(GOOD)
    for offset, byte in mutations:
        data[offset] = byte
    _decode_or_protocol_error(bytes(data))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)), max_size=300),
    st.binary(max_size=40),
)
def test_any_encoded_datagram_decodes(pairs, trailer):
    packet = P.decode_status(P.encode_status(pairs, trailer))
    # the decoded pairs are a prefix of what was sent, the rest is trailing
    assert len(packet.raw) * 4 + len(packet.trailing) == len(pairs) * 4 + len(trailer)


# --------------------------------------------------------------------------------------------
# Enumerations
# --------------------------------------------------------------------------------------------


def test_alarm_table_is_oxfords_and_correct_past_34():
    assert sorted(P.ALARMS) == list(range(63))
    assert P.alarm_for(34).text == "Cryostat open timeout" and P.alarm_for(34).level == 4
    assert P.alarm_for(35).text == "High temp warning"
    assert P.alarm_for(56).text == "Disconnect vacuum"
    assert P.alarm_for(62) == P.Alarm(62, 1, "Shield on", "")
    assert (P.alarm_for(30).level, P.alarm_for(31).level) == (2, 3)
    assert P.alarm_for(3).level == 1  # "End complete" is information, not MAJOR
    unknown = P.alarm_for(99)
    assert unknown.level == 4 and unknown.text == "Unknown alarm 99"


def test_enum_strings_match_synapps():
    assert P.RUN_MODE_STRINGS[P.RunMode.SHUTDOWN_OK] == "Shutdown OK"
    assert len(P.RUN_MODE_STRINGS) == len(P.RunMode)
    assert P.PHASE_STRINGS[:11] == (
        "Ramp",
        "Cool",
        "Plat",
        "Hold",
        "End",
        "Purge",
        "Delete Phase",
        "Load Program",
        "Save Program",
        "Soak",
        "Wait",
    )
    assert len(P.PHASE_STRINGS) == len(P.Phase)
    assert P.MOVING_PHASES == {P.Phase.RAMP, P.Phase.COOL, P.Phase.WAIT}
    assert P.HardwareBits(12) == P.HardwareBits.SERIES_800 | P.HardwareBits.AUTOFILL


def test_param_table_names_and_pvs():
    assert P.PARAMS[1051].name == "Sample temp" and P.PARAMS[1051].pv == "TEMP"
    assert P.PARAMS[1051].unit == "K" and P.PARAMS[1051].scale == pytest.approx(0.01)
    assert P.PARAMS[1060].unit == "l/min" and P.PARAMS[1100].scale == pytest.approx(0.01)
    assert P.PARAMS[1064].unit == "mbar"  # cbar on the wire
    assert P.PARAMS[1052].signed and not P.PARAMS[1051].signed
    assert P.PARAMS[1101].pv == "BACKPRESS"
    pvs = [p.pv for p in P.PARAMS.values() if p.pv]
    assert len(pvs) == len(set(pvs))
