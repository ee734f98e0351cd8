"""The PV table of one CS800 controller: the synApps ``Oxford_CS800.db`` status records.

Each status PV of ``Oxford_CS800.db`` is listed once, with its record type, the parameter id it
is read from, its precision and display limits. Engineering units and scaling come from
:mod:`ophyd_cs800.protocol` (``PARAMS[id].unit``, :func:`~ophyd_cs800.protocol.raw_to_value`),
so the IOC shows what the protocol layer decodes, with the fixes over the C IOC:
ERROR signed, LEVEL in %, ELAPSED in minutes, VACGAUGE in mV, SAMHOLDPRES a flag, GASFLOW from
id 1100 when 1060 reads 0xFFFE, 0xFFFE shown as INVALID severity rather than 655.34.

:func:`extract` turns one decoded :class:`~ophyd_cs800.protocol.StatusPacket` into
``(value, severity, status)`` for every status PV. Pure: no caproto, no sockets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from caproto import AlarmSeverity, AlarmStatus

from ophyd_cs800 import protocol as P

#: Alarm level (0..4, Oxford) -> EPICS severity of ALARMI and ALARM. Level 0 "no alarm" and 1
#: "information" (End complete, Purge complete, Turbo flow, ...) are not alarms; 2 "warning"
#: is MINOR; 3 "serious warning" and 4 "error/shutdown" are MAJOR. (The C IOC makes every
#: non-zero code MAJOR.)
ALARM_LEVEL_SEVERITY: dict[int, AlarmSeverity] = {
    0: AlarmSeverity.NO_ALARM,
    1: AlarmSeverity.NO_ALARM,
    2: AlarmSeverity.MINOR_ALARM,
    3: AlarmSeverity.MAJOR_ALARM,
    4: AlarmSeverity.MAJOR_ALARM,
}

#: DEBUG mbbo strings (SNL diagnostics level in the C IOC; here the controller's log level).
DEBUG_STRINGS: tuple[str, ...] = ("Off", "Error", "Warning", "Info", "Debug")
ENABLE_STRINGS: tuple[str, ...] = ("Enabled", "Disabled")
OFF_ON_STRINGS: tuple[str, ...] = ("Off", "On")

#: What a status PV holds before the first datagram (synApps: ALARM reads "unset").
ALARM_TEXT_UNSET = "unset"


@dataclass(frozen=True)
class StatusPV:
    """One status record of a controller group.

    Attributes
    ----------
    suffix : str
        PV name after ``$(P)$(R)``, as in ``Oxford_CS800.db``.
    pid : int
        Status parameter id read (ALARM: the alarm code id 1065).
    record : str
        EPICS record type reported as ``.RTYP`` (``ai``, ``mbbi``, ``stringin``).
    units : str
        Engineering units (``PARAMS[pid].unit``; ``""`` for counts and flags).
    precision : int
        Display precision (digits after the point).
        low, high: display limits (LOPR/HOPR); equal means "not set".
    enum_strings : tuple[str, ...]
        Mbbi state strings.
    doc : str
        Description (``.DESC``).
    """

    suffix: str
    pid: int
    record: str = "ai"
    units: str = ""
    precision: int = 0
    low: float = 0.0
    high: float = 0.0
    enum_strings: tuple[str, ...] = ()
    doc: str = ""


_TEMP_RANGE = (80.0, 400.0)
_PERCENT_RANGE = (0.0, 100.0)
#: Display limits of Oxford_CS800.db, by PV.
_DISPLAY: dict[str, tuple[float, float]] = {
    **{pv: _TEMP_RANGE for pv in ("DEVICEMINTEMP", "DEVICEMAXTEMP", "SETPOINT", "TEMP",
                                  "TARGETTEMP", "EVAPTEMP", "SUCTTEMP", "SAMHOLDTEMP",
                                  "CRYOSTATTEMP")},
    **{pv: _PERCENT_RANGE for pv in ("GASHEAT", "EVAPHEAT", "SUCTHEAT", "VALVEOPENING", "LEVEL",
                                     "SAMPLEHEAT", "COLDHEADHEAT", "SHIELDHEAT", "NOZZLEHEAT",
                                     "AVGSAMPLEHEAT", "AVGNOZZLEHEAT")},
    "GASFLOW": (0.0, 10.0),
    "BACKPRESS": (0.0, 1000.0),
    "SAMHOLDPRES": (0.0, 1.0),
}
_ENUMS: dict[str, tuple[str, ...]] = {
    "RUNMODE": P.RUN_MODE_STRINGS,
    "PHASE": P.PHASE_STRINGS,
}
#: GASFLOW may come from id 1100 (cl/min), so show two decimals.
_PRECISION: dict[str, int] = {"GASFLOW": 2}


def _precision(param: P.Param) -> int:
    if param.pv in _PRECISION:
        return _PRECISION[param.pv]
    scale = param.scale
    return 0 if scale >= 1 else max(0, round(-math.log10(scale)))


def _build_table() -> tuple[StatusPV, ...]:
    rows: list[StatusPV] = []
    for param in P.PARAMS.values():
        if not param.pv:
            continue
        low, high = _DISPLAY.get(param.pv, (0.0, 0.0))
        enum_strings = _ENUMS.get(param.pv, ())
        rows.append(
            StatusPV(
                suffix=param.pv,
                pid=param.id,
                record="mbbi" if enum_strings else "ai",
                units="" if enum_strings else param.unit,
                precision=_precision(param),
                low=low,
                high=high,
                enum_strings=enum_strings,
                doc=f"{param.name} (id {param.id})"[:40],
            )
        )
        if param.pv == "ALARMI":
            rows.append(StatusPV("ALARM", param.id, record="stringin", doc="Alarm text (Oxford)"))
    return tuple(rows)


#: Every status PV of one controller, in packet order of their ids (ALARM after ALARMI).
STATUS_PVS: tuple[StatusPV, ...] = _build_table()
STATUS_BY_SUFFIX: dict[str, StatusPV] = {pv.suffix: pv for pv in STATUS_PVS}

#: A status reading: (value, severity, status). ``value`` is a float for ai, a state string
#: for mbbi, a string for stringin.
Reading = tuple[object, AlarmSeverity, AlarmStatus]

_OK = (AlarmSeverity.NO_ALARM, AlarmStatus.NO_ALARM)
_NOT_AVAILABLE = (AlarmSeverity.INVALID_ALARM, AlarmStatus.UDF)
_BAD_STATE = (AlarmSeverity.INVALID_ALARM, AlarmStatus.STATE)


def _ai_reading(value: float | int | None) -> Reading:
    if value is None:
        return (math.nan, *_NOT_AVAILABLE)
    return (float(value), *_OK)


def _enum_reading(pv: StatusPV, raw: int | None) -> Reading:
    if raw is None or not 0 <= raw < len(pv.enum_strings):
        # An absent id, 0xFFFE or a state this firmware adds: show the first state, INVALID.
        return (pv.enum_strings[0], *(_NOT_AVAILABLE if raw in (None, P.NOT_AVAILABLE)
                                      else _BAD_STATE))
    return (pv.enum_strings[raw], *_OK)


def extract(packet: P.StatusPacket) -> dict[str, Reading]:
    """Return ``{suffix: (value, severity, status)}`` for every status PV from one packet.

    A parameter the packet does not carry, or that reads 0xFFFE, gives NaN (ai) with INVALID
    severity and UDF status. An mbbi value outside its state strings gives INVALID/STATE.
    ALARMI and ALARM take the severity of the alarm's Oxford level (:data:`ALARM_LEVEL_SEVERITY`)
    with STATE status. Never raises for any decoded packet.
    """
    out: dict[str, Reading] = {}
    raw_words = packet.raw
    for pv in STATUS_PVS:
        suffix = pv.suffix
        if pv.enum_strings:
            out[suffix] = _enum_reading(pv, raw_words.get(pv.pid))
        elif suffix == "ERROR":
            out[suffix] = _ai_reading(packet.error)
        elif suffix == "GASFLOW":
            out[suffix] = _ai_reading(packet.gas_flow)
        elif suffix in ("ALARMI", "ALARM"):
            alarm = packet.alarm
            if alarm is None:
                out[suffix] = ((math.nan if suffix == "ALARMI" else "not available"),
                               *_NOT_AVAILABLE)
                continue
            severity = ALARM_LEVEL_SEVERITY.get(alarm.level, AlarmSeverity.MAJOR_ALARM)
            status = AlarmStatus.NO_ALARM if severity == AlarmSeverity.NO_ALARM else \
                AlarmStatus.STATE
            value = float(alarm.code) if suffix == "ALARMI" else alarm.text[:39]
            out[suffix] = (value, severity, status)
        else:
            out[suffix] = _ai_reading(packet.value(pv.pid))
    return out
