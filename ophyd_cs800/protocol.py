"""The CryoStream 800 Ethernet (UDP) protocol: a pure codec.

Bytes in, typed values out, and back: no sockets, no threads, no ophyd. The documentation's
"The CS800 wire protocol" page describes it for users; in short:

* **Status datagram** (controller -> UDP port 30304, once per second)::

      AA AB | size (u16) | size/4 x (id u16, value u16) | checksum (u16) | AB AA

  all big-endian; the checksum is the 16-bit sum of the big-endian *words* of the data region.
  Parse by id: the 928-byte packet (230 ids) and the longer firmware-153 packet (258 ids and 196
  trailing bytes that are covered by the length and checksum but are not id/value pairs) both
  decode. Unknown ids are kept. Raw ``0xFFFE`` means "not available" and decodes to ``None``.
* **Command datagram** (host -> controller UDP port 30305, never answered): 7 bytes,
  ``>HHH`` (command id, param1, param2) and an 8-bit sum of those six bytes.

Temperatures travel in centi-kelvin (80 K is 8000), rates in K/h, durations in minutes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from ophyd_cs800.enums import (
    ALARMS,
    MOVING_PHASES,
    PHASE_STRINGS,
    RUN_MODE_STRINGS,
    TURBO_MODE_STRINGS,
    Alarm,
    HardwareBits,
    Phase,
    RunMode,
    TurboMode,
    alarm_for,
)
from ophyd_cs800.params import LONG_EXTRA_PARAMS, STANDARD_PARAMS

__all__ = [
    "ALARMS",
    "COMMAND_PORT",
    "DEFAULT_MAX_TEMP_K",
    "DEFAULT_MIN_TEMP_K",
    "FOOTER",
    "HEADER",
    "IDENTIFICATION_LEN",
    "ID_PORT",
    "LONG_IDS",
    "LONG_TRAILER_LEN",
    "MAX_NAME_LEN",
    "MIN_IDENTIFICATION_LEN",
    "MOVING_PHASES",
    "NOT_AVAILABLE",
    "PARAMS",
    "PHASE_STRINGS",
    "RUN_MODE_STRINGS",
    "SIGNED_IDS",
    "STANDARD_IDS",
    "STATUS_PORT",
    "TURBO_MODE_STRINGS",
    "Alarm",
    "Command",
    "CommandId",
    "HardwareBits",
    "Identification",
    "Param",
    "Phase",
    "ProtocolError",
    "RunMode",
    "StatusPacket",
    "TurboMode",
    "alarm_for",
    "ck_to_kelvin",
    "controller_number_from_mac",
    "cool",
    "decode_command",
    "decode_identification",
    "decode_status",
    "encode_identification",
    "encode_status",
    "end",
    "hold",
    "interrupt_flow",
    "kelvin_to_ck",
    "mac_for_controller",
    "mac_from_words",
    "mac_to_words",
    "normalise_mac",
    "pause",
    "plat",
    "purge",
    "ramp",
    "raw_to_value",
    "regen",
    "restart",
    "resume",
    "run_shield",
    "set_autofill_mode",
    "set_autofill_refill_level",
    "set_autofill_stop_level",
    "set_flow_interrupt_time",
    "set_idle_shield_mode",
    "set_parameter",
    "status_checksum",
    "stop",
    "turbo",
    "validate_command",
    "value_to_raw",
]

HEADER = b"\xaa\xab"
FOOTER = b"\xab\xaa"
#: Raw 16-bit value meaning "not available / not fitted". 65535 is a genuine value elsewhere.
NOT_AVAILABLE = 0xFFFE
#: Default ports (for real hardware; tests always pick free ports).
ID_PORT = 30303
STATUS_PORT = 30304
COMMAND_PORT = 30305
#: Bytes after the last id/value pair of the 1236-byte firmware-153 packet.
LONG_TRAILER_LEN = 196
#: Lowest and highest plausible parameter id when splitting the data region into pairs.
_MIN_ID, _MAX_ID = 1000, 9999
#: Default device temperature limits in kelvin (ids 1002/1003 of a standard unit).
DEFAULT_MIN_TEMP_K = 80.0
DEFAULT_MAX_TEMP_K = 400.0


class ProtocolError(ValueError):
    """A datagram that cannot be decoded; the message names the problem and the bytes found.

    Attributes
    ----------
    reason : str
        Which check failed, for counting without parsing the message: ``"short"``,
        ``"header"``, ``"length"``, ``"footer"``, ``"checksum"`` (status and command
        datagrams), ``"command"`` (unknown command id) or ``"identification"`` (an
        identification datagram, see :func:`decode_identification`).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Parameter table and scaling
# --------------------------------------------------------------------------------------------

#: raw unit -> (numerator, denominator, engineering unit): engineering = raw * num / den.
_UNIT_SCALING: dict[str, tuple[int, int, str]] = {
    "cK": (1, 100, "K"),
    "min": (1, 1, "min"),
    "K/hour": (1, 1, "K/h"),
    "dl/min": (1, 10, "l/min"),
    "cl/min": (1, 100, "l/min"),
    "cbar": (10, 1, "mbar"),
    "mbar": (1, 1, "mbar"),
    "%": (1, 1, "%"),
    "c%": (1, 100, "%"),
    "mV": (1, 1, "mV"),
    "C": (1, 1, "degC"),
    "cC": (1, 100, "degC"),
    "cV": (1, 100, "V"),
    "cA": (1, 100, "A"),
    "dbar": (1, 10, "bar"),
    "hour": (1, 1, "h"),
    "rpm": (1, 1, "rpm"),
    "s": (1, 1, "s"),
    "Hz": (1, 1, "Hz"),
    "mA": (1, 1, "mA"),
    "bits": (1, 1, ""),
    "-": (1, 1, ""),
}

#: Parameter ids whose raw word is a signed 16-bit integer.
SIGNED_IDS: frozenset[int] = frozenset({1052})


@dataclass(frozen=True)
class Param:
    """One status parameter.

    Attributes
    ----------
    id : int
        The parameter id on the wire.
    legacy_name : str
        Symbolic name from ``cs800sim`` (e.g. ``StatusGasTemp``).
    name : str
        Oxford's name (``OxcryoProperties.xml``, e.g. ``Sample temp``).
    raw_unit : str
        Unit of the raw word (``cK``, ``min``, ``cl/min`` ...).
    unit : str
        Engineering unit after scaling (``K``, ``min``, ``l/min`` ...; ``""`` for counts).
    num : int
        Scaling numerator; engineering = raw * num / den.
    den : int
        Scaling denominator.
    signed : bool
        The raw word is a signed 16-bit integer (only id 1052).
    pv : str | None
        SynApps ``Oxford_CS800.db`` PV suffix filled from this id, or ``None``.
    """

    id: int
    legacy_name: str
    name: str
    raw_unit: str
    unit: str
    num: int
    den: int
    signed: bool
    pv: str | None

    @property
    def scale(self) -> float:
        """Engineering value of one raw count (e.g. 0.01 for centi-kelvin)."""
        return self.num / self.den


def _make_param(row: tuple[int, str, str, str, str]) -> Param:
    pid, legacy, name, raw_unit, pv = row
    num, den, unit = _UNIT_SCALING[raw_unit]
    return Param(pid, legacy, name, raw_unit, unit, num, den, pid in SIGNED_IDS, pv or None)


#: Every known parameter by id: the 230 standard ids and the firmware-153 extras.
PARAMS: dict[int, Param] = {
    row[0]: _make_param(row) for row in (*STANDARD_PARAMS, *LONG_EXTRA_PARAMS)
}
#: The 230 ids of the 928-byte packet, in packet order.
STANDARD_IDS: tuple[int, ...] = tuple(row[0] for row in STANDARD_PARAMS)
#: The 258 ids of the firmware-153 (1236-byte) packet, in packet order.
LONG_IDS: tuple[int, ...] = tuple(sorted((*STANDARD_IDS, *(r[0] for r in LONG_EXTRA_PARAMS))))


def raw_to_value(pid: int, raw: int) -> float | int | None:
    """Convert a raw 16-bit word of parameter ``pid`` to engineering units.

    Parameters
    ----------
    pid : int
        Status parameter id (e.g. 1051, the gas temperature).
    raw : int
        The raw 16-bit word, 0..65535.

    Returns
    -------
    float or int or None
        The value in the parameter's engineering unit (K, K/h, min, ...). ``None`` for the
        0xFFFE "not available" sentinel (for the signed error id 1052 the sentinel is ambiguous
        and decodes to -0.02 K; :attr:`StatusPacket.error` resolves it). Unknown ids and
        unit-less counts return the raw integer.

    Raises
    ------
    ValueError
        If ``raw`` is outside 0..65535.
    """
    if not 0 <= raw <= 0xFFFF:
        raise ValueError(f"raw value {raw} of parameter {pid} is not a 16-bit word (0..65535)")
    param = PARAMS.get(pid)
    if param is not None and param.signed:
        signed = raw - 0x10000 if raw & 0x8000 else raw
        return signed * param.num / param.den
    if raw == NOT_AVAILABLE:
        return None
    if param is None or (param.num == 1 and param.den == 1):
        return raw
    return raw * param.num / param.den


def value_to_raw(pid: int, value: float | None) -> int:
    """Convert an engineering value of parameter ``pid`` to its raw 16-bit word.

    Parameters
    ----------
    pid : int
        Status parameter id.
    value : float or None
        The value in the parameter's engineering unit; ``None`` means "not available".

    Returns
    -------
    int
        The raw word, rounded to the nearest raw count; 0xFFFE for ``None``.

    Raises
    ------
    ValueError
        Naming the range, if the value does not fit the word (0..65533 unsigned,
        -32768..32767 signed).
    """
    if value is None:
        return NOT_AVAILABLE
    param = PARAMS.get(pid)
    num, den = (param.num, param.den) if param else (1, 1)
    raw = round(value * den / num)
    if param is not None and param.signed:
        if not -0x8000 <= raw <= 0x7FFF:
            raise ValueError(
                f"{value} {param.unit} does not fit parameter {pid} "
                f"(signed 16-bit: {-0x8000 * num / den} to {0x7FFF * num / den} {param.unit})"
            )
        return raw & 0xFFFF
    if not 0 <= raw < NOT_AVAILABLE:
        unit = param.unit if param else ""
        raise ValueError(
            f"{value} {unit} does not fit parameter {pid} "
            f"(0 to {(NOT_AVAILABLE - 1) * num / den} {unit}; 0xFFFE means not available)"
        )
    return raw


def kelvin_to_ck(t_k: float) -> int:
    """Kelvin to the protocol's integer centi-kelvin (rounded to the nearest 0.01 K)."""
    return round(t_k * 100)


def ck_to_kelvin(ck: int) -> float:
    """Integer centi-kelvin to kelvin."""
    return ck / 100


# --------------------------------------------------------------------------------------------
# Status datagrams
# --------------------------------------------------------------------------------------------


def status_checksum(data: bytes) -> int:
    """Return the 16-bit sum of the big-endian words of a status data region.

    ``data`` is the region between the length field and the checksum (ids and values, and any
    trailing bytes). An odd final byte counts as the high byte of a word padded with zero.
    """
    return sum(_words(data)) & 0xFFFF


def _words(data: bytes) -> tuple[int, ...]:
    """Big-endian 16-bit words of ``data``; an odd final byte is padded with zero."""
    if len(data) % 2:
        data = data + b"\x00"
    return struct.unpack(f">{len(data) // 2}H", data)


@dataclass
class StatusPacket:
    """A decoded status datagram.

    Attributes
    ----------
    raw : dict[int, int]
        Parameter id -> raw unsigned 16-bit word, in packet order (unknown ids kept).
    trailing : bytes
        Bytes of the data region after the last id/value pair (firmware 153).
    checksum : int
        The checksum word carried by the datagram (already verified).
    """

    raw: dict[int, int] = field(default_factory=dict)
    trailing: bytes = b""
    checksum: int = 0

    def get_raw(self, pid: int) -> int | None:
        """Raw word of ``pid``, or ``None`` if the packet does not carry that id."""
        return self.raw.get(pid)

    def value(self, pid: int) -> float | int | None:
        """Engineering value of ``pid`` (see :func:`raw_to_value`); ``None`` if absent or 0xFFFE."""
        raw = self.raw.get(pid)
        return None if raw is None else raw_to_value(pid, raw)

    def values(self) -> dict[int, float | int | None]:
        """Every carried id with its engineering value."""
        return {pid: raw_to_value(pid, raw) for pid, raw in self.raw.items()}

    def _enum(self, pid: int, enum: type[IntEnum]) -> IntEnum | None:
        raw = self.raw.get(pid)
        if raw is None or raw == NOT_AVAILABLE:
            return None
        try:
            return enum(raw)
        except ValueError:
            return None

    @property
    def cid(self) -> int | None:
        """Controller number (id 1028), the key that tells controllers apart."""
        value = self.value(1028)
        return None if value is None else int(value)

    @property
    def firmware(self) -> int | None:
        """Control firmware version (id 1004)."""
        value = self.value(1004)
        return None if value is None else int(value)

    @property
    def run_mode(self) -> RunMode | None:
        """Run mode (id 1053), or ``None`` if absent/unknown."""
        return self._enum(1053, RunMode)  # type: ignore[return-value]

    @property
    def phase(self) -> Phase | None:
        """Phase (id 1054), or ``None`` if absent/unknown."""
        return self._enum(1054, Phase)  # type: ignore[return-value]

    @property
    def turbo_mode(self) -> TurboMode | None:
        """Turbo mode (id 1068), or ``None`` if absent/unknown."""
        return self._enum(1068, TurboMode)  # type: ignore[return-value]

    @property
    def alarm(self) -> Alarm | None:
        """The current alarm (id 1065) with Oxford's level and text, or ``None`` if absent."""
        raw = self.raw.get(1065)
        return None if raw is None or raw == NOT_AVAILABLE else alarm_for(raw)

    @property
    def temp(self) -> float | None:
        """Sample (gas) temperature in kelvin (id 1051): the readback."""
        return self.value(1051)

    @property
    def setpoint(self) -> float | None:
        """Current (ramping) gas set point in kelvin (id 1050)."""
        return self.value(1050)

    @property
    def target_temp(self) -> float | None:
        """Final target of the current phase in kelvin (id 1056)."""
        return self.value(1056)

    @property
    def ramp_rate(self) -> int | None:
        """Ramp rate of the current phase in K/h (id 1055); 0 in Hold."""
        value = self.value(1055)
        return None if value is None else int(value)

    @property
    def remaining(self) -> int | None:
        """Phase time remaining in minutes (id 1059)."""
        value = self.value(1059)
        return None if value is None else int(value)

    @property
    def error(self) -> float | None:
        """Signed temperature error (set point - temperature) in kelvin (id 1052).

        0xFFFE is -0.02 K in Run mode and "not available" otherwise.
        """
        raw = self.raw.get(1052)
        if raw is None or (raw == NOT_AVAILABLE and self.run_mode is not RunMode.RUN):
            return None
        return raw_to_value(1052, raw)

    @property
    def gas_flow(self) -> float | None:
        """Gas flow in l/min.

        Id 1060 (dl/min), or the flow block's id 1100 (cl/min) when 1060 reads 0xFFFE, as on real
        800s.
        """
        legacy = self.value(1060)
        return legacy if legacy is not None else self.value(1100)

    @property
    def suspended(self) -> bool | None:
        """Suspended (paused) flag, id 1071."""
        value = self.value(1071)
        return None if value is None else bool(value)


def encode_status(
    raw: Mapping[int, int] | Iterable[tuple[int, int]], trailing: bytes = b""
) -> bytes:
    """Encode a status datagram from (id, raw word) pairs, in the given order.

    Parameters
    ----------
    raw : Mapping[int, int] or Iterable[tuple[int, int]]
        The (parameter id, raw 16-bit word) pairs.
    trailing : bytes, optional
        Bytes appended to the data region (covered by length and checksum), as in the
        firmware-153 packet.

    Returns
    -------
    bytes
        The datagram: header, length, data, checksum and footer.

    Raises
    ------
    ValueError
        If an id or value is not a 16-bit word, or the data region exceeds 65535 bytes.
    """
    pairs = raw.items() if isinstance(raw, Mapping) else raw
    words: list[int] = []
    for pid, value in pairs:
        for word, what in ((pid, "id"), (value, f"value of id {pid}")):
            if not 0 <= word <= 0xFFFF:
                raise ValueError(f"status {what} {word} is not a 16-bit word (0..65535)")
        words += (pid, value)
    data = struct.pack(f">{len(words)}H", *words) + bytes(trailing)
    if len(data) > 0xFFFF:
        raise ValueError(f"status data region of {len(data)} bytes exceeds 65535")
    return (
        HEADER
        + struct.pack(">H", len(data))
        + data
        + struct.pack(">H", status_checksum(data))
        + FOOTER
    )


def decode_status(datagram: bytes) -> StatusPacket:
    """Decode one status datagram.

    Parameters
    ----------
    datagram : bytes
        One UDP status datagram as received.

    Returns
    -------
    StatusPacket
        The (id, value) pairs of the data region, split until a pair whose id is not a
        plausible parameter id (1000..9999, not seen before); the rest is kept as
        :attr:`StatusPacket.trailing`.

    Raises
    ------
    ProtocolError
        Naming the first failure of these checks, in this order: at least 8 bytes; header
        ``AA AB``; the length field equals the datagram's data size; footer ``AB AA``; the
        checksum.
    """
    data = bytes(datagram)
    total = len(data)
    if total < 8:
        raise ProtocolError(
            f"status datagram too short: {total} bytes, need at least 8", "short"
        )
    if data[:2] != HEADER:
        raise ProtocolError(
            f"bad header: expected AA AB, found {data[:2].hex(' ').upper()}", "header"
        )
    size = struct.unpack_from(">H", data, 2)[0]
    if size != total - 8:
        raise ProtocolError(
            f"length field says {size} data bytes, datagram holds {total - 8} "
            f"(total {total} bytes)",
            "length",
        )
    if data[-2:] != FOOTER:
        raise ProtocolError(
            f"bad footer: expected AB AA, found {data[-2:].hex(' ').upper()}", "footer"
        )
    region = data[4 : 4 + size]
    found = struct.unpack_from(">H", data, 4 + size)[0]
    words = _words(region)
    expected = sum(words) & 0xFFFF
    if found != expected:
        raise ProtocolError(
            f"checksum mismatch: expected 0x{expected:04X} (sum of data words), "
            f"found 0x{found:04X}",
            "checksum",
        )
    n_pairs = size // 4
    raw: dict[int, int] = {}
    pairs = zip(words[0 : 2 * n_pairs : 2], words[1 : 2 * n_pairs : 2], strict=True)
    for pid, value in pairs:
        if not _MIN_ID <= pid <= _MAX_ID or pid in raw:
            break
        raw[pid] = value
    return StatusPacket(raw=raw, trailing=region[4 * len(raw) :], checksum=found)


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


class CommandId(IntEnum):
    """Ethernet command ids (``Cryostream.xml`` LIST_OF_COMMANDS).

    Firmware update (66) is deliberately absent: it enters the boot loader and is never sent.
    """

    RESTART = 10
    RAMP = 11
    PLAT = 12
    HOLD = 13
    COOL = 14
    END = 15
    PURGE = 16
    PAUSE = 17  # "Suspend" in the XML
    RESUME = 18
    STOP = 19  # emergency stop: shuts the cooler down
    TURBO = 20
    REGEN = 21
    SET_FLOW_INTERRUPT_TIME = 120
    INTERRUPT_FLOW = 121
    RUN_SHIELD = 122
    SET_IDLE_SHIELD_MODE = 123
    SET_AUTOFILL_MODE = 202
    SET_AUTOFILL_REFILL_LEVEL = 203
    SET_AUTOFILL_STOP_LEVEL = 204
    SET_PARAMETER = 252


@dataclass(frozen=True)
class Command:
    """A command datagram: command id and two 16-bit parameters (unused ones are 0).

    Construction checks only that the parameters are 16-bit words (``ValueError`` otherwise);
    the builders below and :func:`validate_command` check the allowed ranges.
    """

    command: CommandId
    param1: int = 0
    param2: int = 0

    def __post_init__(self) -> None:
        """Make ``command`` a :class:`CommandId` (a plain int is accepted)."""
        object.__setattr__(self, "command", CommandId(self.command))
        for name in ("param1", "param2"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFFFF:
                raise ValueError(
                    f"{self.command.name} {name} {value} is not a 16-bit word (0..65535)"
                )

    def encode(self) -> bytes:
        """Return the 7-byte datagram: ``>HHH`` and the 8-bit sum of those six bytes."""
        body = struct.pack(">HHH", self.command, self.param1, self.param2)
        return body + bytes([sum(body) & 0xFF])


def decode_command(datagram: bytes) -> Command:
    """Decode a 7-byte command datagram.

    Parameter ranges are not checked here: see :func:`validate_command`.

    Parameters
    ----------
    datagram : bytes
        One UDP command datagram as received.

    Returns
    -------
    Command
        The command id and its two 16-bit parameters.

    Raises
    ------
    ProtocolError
        For a wrong length, a checksum mismatch or an unknown command id (including 66,
        firmware update).
    """
    data = bytes(datagram)
    if len(data) != 7:
        raise ProtocolError(f"command datagram must be 7 bytes, got {len(data)}", "length")
    expected = sum(data[:6]) & 0xFF
    if data[6] != expected:
        raise ProtocolError(
            f"command checksum mismatch: expected 0x{expected:02X}, found 0x{data[6]:02X}",
            "checksum",
        )
    cid, param1, param2 = struct.unpack(">HHH", data[:6])
    try:
        command = CommandId(cid)
    except ValueError:
        raise ProtocolError(f"unknown command id {cid} (0x{cid:02X})", "command") from None
    return Command(command, param1, param2)


def _check_range(what: str, value: float, low: float, high: float, unit: str) -> None:
    if not low <= value <= high:
        raise ValueError(
            f"{what} {value:g} {unit} is out of range: allowed {low:g} to {high:g} {unit}"
        )


def _check_temp(what: str, ck: int, min_temp: float, max_temp: float) -> None:
    t_k = ck / 100
    if not kelvin_to_ck(min_temp) <= ck <= kelvin_to_ck(max_temp):
        raise ValueError(
            f"{what} {t_k:.2f} K is out of range: allowed {min_temp:.2f} to {max_temp:.2f} K"
        )


def _check_choice(what: str, value: int, choices: Mapping[int, str]) -> None:
    if value not in choices:
        allowed = ", ".join(f"{k} ({v})" for k, v in choices.items())
        raise ValueError(f"{what} {value} is not allowed: allowed {allowed}")


_ON_OFF = {0: "off", 1: "on"}
_AUTOFILL_MODES = {0: "manual", 1: "auto", 2: "scheduled"}
_IDLE_SHIELD_MODES = {0: "always off", 1: "always on", 2: "auto"}


def validate_command(
    cmd: Command, *, min_temp: float = DEFAULT_MIN_TEMP_K, max_temp: float = DEFAULT_MAX_TEMP_K
) -> None:
    """Check a command's parameters against the controller's documented limits.

    Temperatures (Ramp, Cool) must lie within ``min_temp``..``max_temp`` kelvin (the device's
    ids 1002/1003); ramp rate 0-360 K/h; End rate 1-360 K/h; Plat 1-1440 min; Turbo and Run shield
    0/1; flow interrupt time 1-600 ds; autofill mode and idle shield mode 0/1/2; autofill refill
    level 20-40 %, stop level 60-80 %. Unused parameters are not checked (clients send 0 or a
    copy of param1).

    Parameters
    ----------
    cmd : Command
        The command to check.
    min_temp, max_temp : float, optional
        The device's temperature limits in K (ids 1002/1003).

    Raises
    ------
    ValueError
        Naming the allowed range, for a parameter outside it.
    """
    c, p1, p2 = cmd.command, cmd.param1, cmd.param2
    if c is CommandId.RAMP:
        _check_range("ramp rate", p1, 0, 360, "K/h")
        _check_temp("ramp target", p2, min_temp, max_temp)
    elif c is CommandId.COOL:
        _check_temp("cool target", p1, min_temp, max_temp)
    elif c is CommandId.PLAT:
        _check_range("plateau duration", p1, 1, 1440, "min")
    elif c is CommandId.END:
        _check_range("end rate", p1, 1, 360, "K/h")
    elif c is CommandId.TURBO:
        _check_choice("turbo setting", p1, _ON_OFF)
    elif c is CommandId.RUN_SHIELD:
        _check_choice("shield setting", p1, _ON_OFF)
    elif c is CommandId.SET_FLOW_INTERRUPT_TIME:
        _check_range("flow interrupt time", p1, 1, 600, "ds")
    elif c is CommandId.SET_AUTOFILL_MODE:
        _check_choice("autofill mode", p1, _AUTOFILL_MODES)
    elif c is CommandId.SET_IDLE_SHIELD_MODE:
        _check_choice("idle shield mode", p1, _IDLE_SHIELD_MODES)
    elif c is CommandId.SET_AUTOFILL_REFILL_LEVEL:
        _check_range("autofill refill level", p1, 20, 40, "%")
    elif c is CommandId.SET_AUTOFILL_STOP_LEVEL:
        _check_range("autofill stop level", p1, 60, 80, "%")


def _build(
    command: CommandId,
    param1: int = 0,
    param2: int = 0,
    *,
    min_temp: float = DEFAULT_MIN_TEMP_K,
    max_temp: float = DEFAULT_MAX_TEMP_K,
) -> Command:
    cmd = Command(command, param1, param2)
    validate_command(cmd, min_temp=min_temp, max_temp=max_temp)
    return cmd


def _int_param(what: str, value: float, unit: str) -> int:
    if value != int(value):
        raise ValueError(f"{what} must be a whole number of {unit}, got {value}")
    return int(value)


def restart() -> Command:
    """Restart after a shutdown (back to Ready; it does not start cooling by itself)."""
    return _build(CommandId.RESTART)


def ramp(
    rate_k_per_h: float,
    target_k: float,
    *,
    min_temp: float = DEFAULT_MIN_TEMP_K,
    max_temp: float = DEFAULT_MAX_TEMP_K,
) -> Command:
    """Ramp to ``target_k`` kelvin at ``rate_k_per_h`` (whole K/h, 0-360).

    Parameters
    ----------
    rate_k_per_h : float
        Ramp rate in K/h, a whole number 0-360.
    target_k : float
        Target temperature in K (sent at 0.01 K resolution).
    min_temp, max_temp : float, optional
        The limits in K the target must lie within.

    Returns
    -------
    Command
        The checked Ramp command.

    Raises
    ------
    ValueError
        Naming the range, for a rate or target outside it or a rate that is not whole.
    """
    rate = _int_param("ramp rate", rate_k_per_h, "K/h")
    _check_range("ramp rate", rate, 0, 360, "K/h")
    return _build(
        CommandId.RAMP, rate, kelvin_to_ck(target_k), min_temp=min_temp, max_temp=max_temp
    )


def plat(minutes: float) -> Command:
    """Plateau: hold the current temperature for ``minutes`` (whole minutes, 1-1440)."""
    value = _int_param("plateau duration", minutes, "minutes")
    return _build(CommandId.PLAT, value)


def hold() -> Command:
    """Hold the current temperature indefinitely (cancels the programme)."""
    return _build(CommandId.HOLD)


def cool(
    target_k: float,
    *,
    min_temp: float = DEFAULT_MIN_TEMP_K,
    max_temp: float = DEFAULT_MAX_TEMP_K,
) -> Command:
    """Go to ``target_k`` kelvin as fast as possible (within ``min_temp``..``max_temp``)."""
    return _build(CommandId.COOL, kelvin_to_ck(target_k), min_temp=min_temp, max_temp=max_temp)


def end(rate_k_per_h: float = 360) -> Command:
    """Ramp to 300 K at ``rate_k_per_h`` (whole K/h, 1-360), then shut down."""
    rate = _int_param("end rate", rate_k_per_h, "K/h")
    return _build(CommandId.END, rate)


def purge() -> Command:
    """Warm up to room temperature, then shut down."""
    return _build(CommandId.PURGE)


def pause() -> Command:
    """Suspend the programme (a temporary Hold)."""
    return _build(CommandId.PAUSE)


def resume() -> Command:
    """Resume the suspended programme."""
    return _build(CommandId.RESUME)


def stop() -> Command:
    """Emergency stop: **shuts the cooler down** (alarm 2). Not a way to halt a ramp: use hold."""
    return _build(CommandId.STOP)


def turbo(on: bool) -> Command:
    """Turbo gas flow (10 l/min) on or off."""
    return _build(CommandId.TURBO, int(bool(on)))


def regen() -> Command:
    """Regenerate the cryosorb (Cryostream 1000-type hardware)."""
    return _build(CommandId.REGEN)


def set_flow_interrupt_time(deciseconds: int) -> Command:
    """Set the flow interrupt time for :func:`interrupt_flow`, in 0.1 s (1-600)."""
    value = _int_param("flow interrupt time", deciseconds, "ds")
    return _build(CommandId.SET_FLOW_INTERRUPT_TIME, value)


def interrupt_flow() -> Command:
    """Interrupt the flow for the time set by :func:`set_flow_interrupt_time` (annealing)."""
    return _build(CommandId.INTERRUPT_FLOW)


def run_shield(on: bool) -> Command:
    """Shield flow on or off."""
    return _build(CommandId.RUN_SHIELD, int(bool(on)))


def set_idle_shield_mode(mode: int) -> Command:
    """Idle shield flow mode: 0 always off, 1 always on, 2 auto."""
    return _build(CommandId.SET_IDLE_SHIELD_MODE, mode)


def set_autofill_mode(mode: int) -> Command:
    """Autofill mode: 0 manual, 1 auto, 2 scheduled."""
    return _build(CommandId.SET_AUTOFILL_MODE, mode)


def set_autofill_refill_level(percent: int) -> Command:
    """Autofill refill level in % (20-40)."""
    value = _int_param("autofill refill level", percent, "%")
    return _build(CommandId.SET_AUTOFILL_REFILL_LEVEL, value)


def set_autofill_stop_level(percent: int) -> Command:
    """Autofill stop level in % (60-80)."""
    value = _int_param("autofill stop level", percent, "%")
    return _build(CommandId.SET_AUTOFILL_STOP_LEVEL, value)


def set_parameter(pid: int, raw: int) -> Command:
    """Build a generic parameter write (e.g. Ethernet settings 1300-1310).

    Id and raw 16-bit value.
    """
    for what, word in (("parameter id", pid), ("parameter value", raw)):
        if not 0 <= word <= 0xFFFF:
            raise ValueError(f"{what} {word} is out of range: allowed 0 to 65535")
    return _build(CommandId.SET_PARAMETER, pid, raw)


# --------------------------------------------------------------------------------------------
# Identification datagrams (controller -> UDP port 30303, once per second)
# --------------------------------------------------------------------------------------------

#: Bytes of an identification datagram as the real unit sends it (and as encoded here): a
#: 16-byte name field (15 name bytes, CR, then LF), then the MAC address as 17 characters.
IDENTIFICATION_LEN = 34
#: Shortest datagram decoded: Oxford's wording (a 16-byte name, then the MAC) allows 33 bytes.
MIN_IDENTIFICATION_LEN = 33
#: Longest NetBIOS name :func:`encode_identification` accepts (characters).
MAX_NAME_LEN = 15
#: Bytes stripped from both ends of the name field: 0xFF padding, NUL, space, CR, LF.
_NAME_PAD = b"\xff\x00 \r\n"
_MAC_TEXT_LEN = 17
_HEX = frozenset(b"0123456789abcdefABCDEF")
#: First four bytes of every CS800 MAC address seen so far (APS 19-ID and LBL BCSB).
_MAC_PREFIX = "00-00-0C-01"


@dataclass(frozen=True)
class Identification:
    """A decoded identification datagram.

    The controller's IP address is not in the data: it is the datagram's source address.

    Attributes
    ----------
    name : str | None
        The NetBIOS name, or ``None`` when none is assigned (the name field is all
        0xFF, as on the APS 19-ID unit).
    mac : str
        The MAC address as six upper-case hex pairs joined by dashes
        (``00-00-0C-01-01-AB``).
    """

    name: str | None
    mac: str


def _mac_pairs(text: str) -> list[str] | None:
    """Return the six hex pairs of ``text`` split on ``-`` or ``:``.

    ``None`` if malformed.
    """
    sep = "-" if "-" in text else ":"
    pairs = text.split(sep)
    if len(pairs) != 6 or any(len(p) != 2 or not _HEX.issuperset(p.encode()) for p in pairs):
        return None
    return pairs


def normalise_mac(mac: str) -> str:
    """Return ``mac`` as six upper-case hex pairs joined by dashes (``00-00-0C-01-01-AB``).

    Parameters
    ----------
    mac : str
        Six hex pairs separated by dashes or colons, any case.

    Returns
    -------
    str
        The normalised MAC address.

    Raises
    ------
    ValueError
        Naming the expected form, for anything else (wrong number of pairs, non-hex
        characters, not a string).
    """
    pairs = _mac_pairs(mac) if isinstance(mac, str) and mac.isascii() else None
    if pairs is None:
        raise ValueError(
            f"MAC address must be six hex pairs separated by dashes or colons, such as "
            f"00-00-0C-01-01-AB, got {mac!r}"
        )
    return "-".join(pairs).upper()


def mac_to_words(mac: str) -> tuple[int, int, int]:
    """Return the three 16-bit words of ``mac`` as sent in status ids 1311, 1312, 1313.

    ``00-00-0C-01-04-BD`` gives ``(0x0000, 0x0C01, 0x04BD)`` (the BCSB capture).

    Raises
    ------
    ValueError
        For a malformed MAC (see :func:`normalise_mac`).
    """
    octets = bytes.fromhex(normalise_mac(mac).replace("-", ""))
    return struct.unpack(">3H", octets)


def mac_from_words(word1: int, word2: int, word3: int) -> str:
    """Return the MAC address carried by status ids 1311, 1312, 1313 (big-endian words, in order).

    Parameters
    ----------
    word1, word2, word3 : int
        The raw words of ids 1311, 1312 and 1313.

    Returns
    -------
    str
        Six upper-case hex pairs joined by dashes.

    Raises
    ------
    ValueError
        If a word is not 0..65535.
    """
    for word in (word1, word2, word3):
        if not 0 <= word <= 0xFFFF:
            raise ValueError(f"MAC word {word} is not a 16-bit word (0..65535)")
    return struct.pack(">3H", word1, word2, word3).hex("-").upper()


def mac_for_controller(cid: int) -> str:
    """Return the MAC address a CS800 with controller number ``cid`` appears to have.

    ``00-00-0C-01-HH-LL`` with the controller number in the last two bytes: an inference
    from two units (MAC ``...-01-AB`` with controller 427 at APS 19-ID, MAC
    words ``0000 0C01 04BD`` with controller 1213 at LBL), not documented by Oxford. Used by the
    simulator.

    Raises
    ------
    ValueError
        For ``cid`` outside 0..65535 (or not an integer).
    """
    if not isinstance(cid, int) or isinstance(cid, bool) or not 0 <= cid <= 0xFFFF:
        raise ValueError(f"controller number must be an integer 0..65535, got {cid!r}")
    return f"{_MAC_PREFIX}-{cid >> 8:02X}-{cid & 0xFF:02X}"


def controller_number_from_mac(mac: str) -> int:
    """Return a *hint* at the controller number (id 1028): the last two bytes of ``mac``.

    The inverse of :func:`mac_for_controller`. Inferred from two units, not documented by Oxford:
    trust the status datagram's id 1028 when it is available.

    Raises
    ------
    ValueError
        For a malformed MAC.
    """
    return mac_to_words(mac)[2]


def decode_identification(data: bytes) -> Identification:
    r"""Decode an identification datagram (UDP 30303).

    The real one (APS 19-ID) is 34 bytes: 15 x 0xFF, CR LF, then the MAC address as 17 ASCII
    characters (``00-00-0C-01-01-AB``). Oxford's wording puts the NetBIOS name in the first 16
    bytes (a NetBIOS name is at most 15 characters; the 16th byte is its type suffix) and the
    MAC after it. So: trailing padding (0xFF, NUL, CR, LF, spaces) is dropped; the MAC is the
    last 17 bytes left, six hex pairs joined by dashes (returned in upper case); the name is
    ``data[:15]`` with padding stripped from both ends (nothing left: ``None``), any byte that is
    not printable ASCII shown as ``\xNN`` (the MAC is what matters: an odd name never loses
    the datagram). The 33-byte form of that wording (no CR LF) and longer datagrams are
    accepted; bytes between the two fields are ignored.

    Parameters
    ----------
    data : bytes
        One identification datagram as received.

    Returns
    -------
    Identification
        The NetBIOS name (or ``None``) and the MAC address.

    Raises
    ------
    ProtocolError
        Reason ``"identification"``, naming the problem and showing the bytes found: fewer than
        33 bytes (trailing padding not counted), or a MAC field that is not six dash-separated
        hex pairs.
    """
    data = bytes(data)
    body = data.rstrip(_NAME_PAD)
    if len(body) < MIN_IDENTIFICATION_LEN:
        padding = f" ({len(body)} without trailing padding)" if len(body) != len(data) else ""
        raise ProtocolError(
            f"identification datagram too short: {len(data)} bytes{padding}, need at least "
            f"{MIN_IDENTIFICATION_LEN} (16-byte name field, then a 17-character MAC address); "
            f"found {data.hex(' ').upper() or 'nothing'}",
            "identification",
        )
    mac_field = body[-_MAC_TEXT_LEN:]
    pairs = _mac_pairs(mac_field.decode("ascii")) if mac_field.isascii() else None
    if pairs is None or b"-" not in mac_field:
        raise ProtocolError(
            f"bad MAC address in identification datagram: expected six dash-separated hex "
            f"pairs such as 00-00-0C-01-01-AB in the last {_MAC_TEXT_LEN} bytes, found "
            f"{mac_field.hex(' ').upper()} ({mac_field!r})",
            "identification",
        )
    name = "".join(chr(b) if 0x20 <= b <= 0x7E else f"\\x{b:02x}"
                   for b in data[:MAX_NAME_LEN].strip(_NAME_PAD))
    return Identification(name or None, "-".join(pairs).upper())


def encode_identification(mac: str, name: str | None = None) -> bytes:
    """Encode an identification datagram in the 34-byte layout of the real controller.

    The name field is ``name`` padded with 0xFF to 15 bytes (all 0xFF for no name), then
    CR LF, then ``mac`` as 17 upper-case characters with dashes. ``name`` must be at most 15
    printable ASCII characters without leading or trailing spaces (``""`` means no name);
    otherwise, or for a malformed ``mac``, ``ValueError`` names the limit.
    """
    text = normalise_mac(mac)
    raw_name = b""
    if name:
        if (
            not isinstance(name, str)
            or len(name) > MAX_NAME_LEN
            or not all(" " <= c <= "~" for c in name)
            or name != name.strip(" ")
        ):
            raise ValueError(
                f"identification name must be at most {MAX_NAME_LEN} printable ASCII "
                f"characters without leading or trailing spaces, got {name!r}"
            )
        raw_name = name.encode("ascii")
    return raw_name.ljust(MAX_NAME_LEN, b"\xff") + b"\r\n" + text.encode("ascii")
