"""The two flavours of the CS800 IOC: ``fixed`` (ours, the default) and ``synapps`` (the C IOC).

A :class:`Flavor` holds every difference a client can see between them (as the C IOC was
measured: EPICS base 7.0.8.1, the ``ip`` module's CS800 support): the command parameters' limits
and defaults and what a put outside them does, DISABLE at boot, the DEBUG and PHASE strings, how
status is decoded and shown (see :mod:`sim_ioc.synapps` for the C IOC's decoding), whether a
silent controller's PVs go INVALID, and how fast datagrams are decoded. Pure data: no caproto,
no sockets.

Both flavours refuse enum puts outside their strings and writes to the limit fields (``.HOPR
.LOPR .DRVH .DRVL``) of every record.
"""

from __future__ import annotations

from dataclasses import dataclass

from ophyd_cs800 import protocol as P
from sim_ioc.pvs import DEBUG_STRINGS


@dataclass(frozen=True)
class ParamSpec:
    """One command parameter (an ao record).

    Attributes
    ----------
    name : str
        PV name after ``$(P)$(R)`` (``RTEMP``, ...).
    default : float
        Value at boot (engineering units).
        low, high: DRVL..DRVH (the CA control limits), engineering units.
    units : str
        Engineering units (``K``, ``K/h``, ``min``).
    whole : bool
        The value is a whole number (K/h, minutes).
    """

    name: str
    default: float
    low: float
    high: float
    units: str
    whole: bool


@dataclass(frozen=True)
class Flavor:
    """What a client sees from one flavour of the IOC.

    Attributes
    ----------
    name : str
        ``"fixed"`` or ``"synapps"``.
    params : dict[str, ParamSpec]
        The command parameters by name.
    clamp : bool
        A put outside DRVL..DRVH is clamped silently (EPICS ao); False: refused.
    disabled_put_succeeds : bool
        An action put while DISABLE is 1 succeeds and sends nothing
        (the record is skipped through SDIS); False: refused with a sentence.
    limits_follow_device : bool
        RTEMP/CTEMP limits follow DEVICEMINTEMP..DEVICEMAXTEMP.
    disabled_at_boot : bool
        DISABLE reads Disabled (1) at boot.
        debug_strings, debug_default: the DEBUG mbbo.
    phase_strings : tuple[str, ...]
        The PHASE mbbi.
    c_ioc_status : bool
        Decode status as the C IOC does (:mod:`sim_ioc.synapps`): raw x ESLO,
        0xFFFE as a number, NO_ALARM, the SNL's alarm texts, ALARMI MAJOR when non-zero.
    marks_stale : bool
        A silent controller's status PVs go INVALID/COMM after the stale timeout.
    scan_limited : bool
        The status port is read by a 0.1 s scan (at most 10 decodes/s, backlog
        queued) and ``status_packet`` shows the asyn record's NORD/alarm cycle.
    per_controller_stats : bool
        Serve ``$(P)CS:$(R)AGE`` and ``COUNT`` (not in the C IOC).
    """

    name: str
    params: dict[str, ParamSpec]
    clamp: bool
    disabled_put_succeeds: bool
    limits_follow_device: bool
    disabled_at_boot: bool
    debug_strings: tuple[str, ...]
    debug_default: str
    phase_strings: tuple[str, ...]
    c_ioc_status: bool
    marks_stale: bool
    scan_limited: bool
    per_controller_stats: bool


def _params(*specs: ParamSpec) -> dict[str, ParamSpec]:
    return {spec.name: spec for spec in specs}


FIXED = Flavor(
    name="fixed",
    params=_params(
        ParamSpec("RRATE", 360.0, 0.0, 360.0, "K/h", True),
        ParamSpec("RTEMP", 100.0, P.DEFAULT_MIN_TEMP_K, P.DEFAULT_MAX_TEMP_K, "K", False),
        ParamSpec("PTIME", 10.0, 1.0, 1440.0, "min", True),
        ParamSpec("CTEMP", 100.0, P.DEFAULT_MIN_TEMP_K, P.DEFAULT_MAX_TEMP_K, "K", False),
        ParamSpec("ERATE", 360.0, 1.0, 360.0, "K/h", True),
    ),
    clamp=False,
    disabled_put_succeeds=False,
    limits_follow_device=True,
    disabled_at_boot=False,
    debug_strings=DEBUG_STRINGS,
    debug_default="Warning",
    phase_strings=P.PHASE_STRINGS,
    c_ioc_status=False,
    marks_stale=True,
    scan_limited=False,
    per_controller_stats=True,
)

#: The synApps ``ip`` C IOC as measured (EPICS base 7.0.8.1, the ``ip`` module's CS800 support).
SYNAPPS = Flavor(
    name="synapps",
    params=_params(
        ParamSpec("RRATE", 360.0, 1.0, 360.0, "K/h", True),
        ParamSpec("RTEMP", 100.0, 1.0, 360.0, "K", False),
        ParamSpec("PTIME", 1.0, 1.0, 1440.0, "min", True),
        ParamSpec("CTEMP", 100.0, 80.0, 327.67, "K", False),
        ParamSpec("ERATE", 360.0, 1.0, 360.0, "K/h", True),
    ),
    clamp=True,
    disabled_put_succeeds=True,
    limits_follow_device=False,
    disabled_at_boot=True,
    debug_strings=("off", "error", "warning", "info", "debug"),
    debug_default="off",
    phase_strings=P.PHASE_STRINGS[:11],
    c_ioc_status=True,
    marks_stale=False,
    scan_limited=True,
    per_controller_stats=False,
)

#: Flavours by name (the ``--flavor`` choices).
FLAVORS: dict[str, Flavor] = {flavor.name: flavor for flavor in (FIXED, SYNAPPS)}
DEFAULT_FLAVOR = FIXED.name


def get_flavor(name: str | Flavor) -> Flavor:
    """Return the flavour called ``name`` (a :class:`Flavor` is returned as is).

    Raises ``ValueError`` naming the choices for an unknown name.
    """
    if isinstance(name, Flavor):
        return name
    try:
        return FLAVORS[name]
    except KeyError:
        raise ValueError(f"unknown IOC flavour {name!r}: choose one of "
                         f"{', '.join(FLAVORS)}") from None
