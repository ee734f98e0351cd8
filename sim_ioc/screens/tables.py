"""What each operator screen shows, taken from the IOC's own PV tables (no Qt here).

The CS800 screens read the PV table of one controller group of the IOC
(:class:`sim_ioc.ioc.CS800ControllerGroup`: the status records of :data:`sim_ioc.pvs.STATUS_PVS`
plus DISABLE, DEBUG, the parameters and the actions); the valve screen reads the table of a
:class:`sim_ioc.valves.ValveBank` of the bank's size. A screen names a PV only through
:func:`controller_table` / :func:`valve_table`, which raise ``KeyError`` for a name the IOC
does not serve, so a screen cannot drift from the IOC: a renamed record breaks the screens'
unit tests, not a beamline's night shift.

Everything here is pure data: importable without PyDM or Qt.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sim_ioc.pvs import STATUS_PVS

#: Readbacks of the overview, in screen order.
OVERVIEW = ("TEMP", "SETPOINT", "TARGETTEMP", "RAMPRATE", "PHASE", "RUNMODE", "REMAINING",
            "ALARM")
#: Strip-chart curves of the overview (temperature and set point, as the MEDM main screen).
STRIP_CHART = ("TEMP", "SETPOINT")
#: Time span of the strip chart (seconds; the MEDM main screen shows 5 minutes).
STRIP_CHART_SPAN_S = 300.0
#: Program controls: (action, button text, its parameters), as ``Oxford_CS800_program.adl``.
PROGRAM = (
    ("RAMP", "Ramp", ("RRATE", "RTEMP")),
    ("PLAT", "Plateau", ("PTIME",)),
    ("COOL", "Cool", ("CTEMP",)),
    ("HOLD", "Hold", ()),
    ("PAUSE", "Pause", ()),
    ("RESUME", "Resume", ()),
)
#: Admin actions: (action, button text, its parameters, confirmation question or "").
ADMIN = (
    ("END", "End", ("ERATE",), "End the run and warm up to room temperature at ERATE?"),
    ("PURGE", "Purge", (), "Purge: warm up and purge the coldhead?"),
    ("RESTART", "Restart", (), "Restart the controller after a shutdown?"),
    ("STOP", "Stop", (), "Stop the CryoStream? The gas flow stops and the sample warms up."),
)
#: Identity shown in every CS800 screen's title line.
IDENTITY = ("CTRLNUM", "VER", "DISABLE")
#: Flow readbacks of the sensors screen (``Oxford_CS800_sensors.adl``).
FLOW = ("GASFLOW", "BACKPRESS", "VALVEOPENING")
#: Not shown as temperature sensors: limits and set points.
_NOT_SENSORS = {"DEVICEMINTEMP", "DEVICEMAXTEMP", "SETPOINT", "TARGETTEMP", "SUCTSETTEMP",
                "NOZZLESETTEMP", "ERROR"}


@dataclass(frozen=True)
class PVInfo:
    """One PV of a table, as a screen needs it.

    Attributes
    ----------
    suffix : str
        Name after the group prefix (``TEMP``, ``V3_RBV``).
    writable : bool
        A client may put to it.
    units : str
        Engineering units ("" if none).
    enum_strings : tuple[str, ...]
        State strings of an enum PV (empty otherwise).
    doc : str
        The record's description.
    """

    suffix: str
    writable: bool
    units: str = ""
    enum_strings: tuple[str, ...] = ()
    doc: str = ""


def _table(group: object) -> dict[str, PVInfo]:
    prefix = group.prefix  # type: ignore[attr-defined]
    table: dict[str, PVInfo] = {}
    for name, channel in group.pvdb.items():  # type: ignore[attr-defined]
        spec = channel.pvspec
        table[name[len(prefix):]] = PVInfo(
            suffix=name[len(prefix):],
            writable=not spec.read_only,
            units=getattr(channel, "units", "") or "",
            enum_strings=tuple(getattr(channel, "enum_strings", ()) or ()),
            doc=spec.doc or "",
        )
    return table


@cache
def controller_table() -> dict[str, PVInfo]:
    """Return the PVs of one CS800 controller group of the IOC, by suffix (``$(P)$(R)`` removed)."""
    from sim_ioc.ioc import ControllerConfig, CS800ControllerGroup

    return _table(CS800ControllerGroup("T:", config=ControllerConfig(r="CS0:", cid=0)))


@cache
def valve_table(n_valves: int, n_dtoa: int = 8) -> dict[str, PVInfo]:
    """Return the PVs of a valve bank by suffix.

    The bank has ``n_valves`` valves and ``n_dtoa`` D/A channels.
    """
    from sim_ioc.valves import ValveBank

    return _table(ValveBank("T:", n_valves=n_valves, n_dtoa=n_dtoa))


def pv(suffix: str) -> PVInfo:
    """Return the controller PV ``suffix``; raise ``KeyError`` naming it if the IOC lacks it."""
    try:
        return controller_table()[suffix]
    except KeyError:
        raise KeyError(f"the IOC serves no controller PV {suffix!r}") from None


def sensors() -> tuple[list[PVInfo], list[PVInfo], list[PVInfo]]:
    """(temperatures in K, heaters in %, flow) of the sensors screen, in the IOC's order."""
    status = [pv(s.suffix) for s in STATUS_PVS]
    temps = [p for p in status if p.units == "K" and p.suffix not in _NOT_SENSORS]
    heaters = [p for p in status if p.units == "%" and p.suffix.endswith("HEAT")]
    return temps, heaters, [pv(s) for s in FLOW]


def full_status() -> list[PVInfo]:
    """Every status record of a controller, in the IOC's order."""
    return [pv(s.suffix) for s in STATUS_PVS]


def controller_suffixes() -> list[str]:
    """Every controller suffix any CS800 screen uses (for tests and the channel check)."""
    temps, heaters, flow = sensors()
    names = [*IDENTITY, *OVERVIEW, *STRIP_CHART, "ALARMI", "DEBUG", "TURBO"]
    for action, _text, params in PROGRAM:
        names += [action, *params]
    for action, _text, params, _question in ADMIN:
        names += [action, *params]
    names += [p.suffix for p in (*temps, *heaters, *flow, *full_status())]
    return list(dict.fromkeys(pv(n).suffix for n in names))
