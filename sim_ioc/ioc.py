"""The CS800 IOC: a caproto server with the synApps ``ip`` PV names, talking UDP to controllers.

PV layout (the same names as ``Oxford_CS800_status.db`` and ``Oxford_CS800.db``):

* status server at ``$(P)$(R)`` (R default ``CS:``): ``status_packet`` (the last datagram
  received: an asyn record, bytes in ``.VAL`` and ``.BINP``), ``RECEIVED``, ``ACCEPTED``,
  ``REJECTED`` and ``REJ:<REASON>`` counters (reasons: SHORT, HEADER, LENGTH, CHECKSUM,
  FOOTER, UNKNOWN controller, OTHER, SOURCE: not from the controller's configured address),
  ``LASTREJECT`` (why the last datagram was refused), ``PORT`` (the UDP status port bound),
  ``PUT:REFUSED`` (Channel Access puts refused, on any PV of this IOC) and,
  per controller, ``$(P)$(R)<controller R>AGE`` (seconds since its last datagram) and ``COUNT``;
* one group per controller at ``$(P)$(R)`` (R default ``CS0:``, ``CS1:``, ...) with every PV of
  ``Oxford_CS800.db``: the status records (:mod:`sim_ioc.pvs`), DISABLE, DEBUG, the parameters
  RRATE RTEMP PTIME CTEMP ERATE TURBO and the actions RAMP PLAT HOLD COOL END PURGE PAUSE
  RESUME STOP RESTART TURBOCMD. A put to an action (or to its ``.PROC``) sends exactly one
  7-byte command datagram; a put to TURBO sends the turbo command at once (as in synApps).
* in simulated mode only, ``SIM:BROADCAST``, ``SIM:ALARM``, ``SIM:DROP``, ``SIM:SENSORFAIL``
  per controller (:class:`SimControllerGroup`).

Two flavours (:mod:`sim_ioc.flavors`). ``fixed`` (the default) differs from the C IOC by
design: DISABLE starts Enabled; header, length, checksum and footer are checked; ERROR is
signed; alarm texts are Oxford's; units are honest; 0xFFFE shows INVALID severity; a put outside
a parameter's limits is refused; no datagram for ``stale_timeout`` seconds puts every status PV
of that controller in INVALID/COMM until the next datagram. ``synapps`` shows what a client
sees from the C IOC (:mod:`sim_ioc.synapps`): clamping, frozen values with NO_ALARM, at most
10 decodes per second, the ``status_packet`` NORD/alarm cycle, DISABLE 1 at boot. Both serve
the 86 records of :data:`sim_ioc.records.C_IOC_RECORDS` and refuse enum puts outside their
strings and writes to limit fields.
"""

from __future__ import annotations

import asyncio
import logging
import math
import numbers
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from caproto import AlarmSeverity, AlarmStatus, ChannelType
from caproto.server import PVGroup, pvproperty
from caproto.server.server import PvpropertyByteRO, PvpropertyDouble, PvpropertyEnum

from ophyd_cs800 import protocol as P
from sim_ioc.flavors import FIXED, Flavor, get_flavor
from sim_ioc.lazy_records import LazyFieldsMixin, LazyRecordGroup
from sim_ioc.log_limit import RateLimitedLog
from sim_ioc.put_refusal import PutRefusalLog, enum_sentence
from sim_ioc.pvs import (
    ALARM_TEXT_UNSET,
    DEBUG_STRINGS,
    ENABLE_STRINGS,
    OFF_ON_STRINGS,
    STATUS_PVS,
    extract,
)
from sim_ioc.records import (
    COMMAND_PORT_RECORD,
    HELPER_RECORDS,
    SPLIT_PARAMS,
    raw_word,
    split_word,
)
from sim_ioc.status_server import (
    REJECT_REASONS,
    StatusCounters,
    StatusReceiver,
    open_command_socket,
    open_private_status_socket,
    open_status_socket,
)
from sim_ioc.synapps import C_IOC_PREC, ScanLimitedReceiver, extract_c_ioc, initial_reading

log = logging.getLogger(__name__)

#: Default seconds without a datagram before a controller's status PVs go INVALID/COMM.
DEFAULT_STALE_TIMEOUT = 5.0
#: Elements of the ``status_packet`` waveform (a firmware-153 datagram is 1236 bytes).
STATUS_PACKET_NELM = 2048
#: Period of the housekeeping task: counters, ``status_packet``, staleness (seconds).
HOUSEKEEPING_PERIOD = 0.2
#: Period of the per-controller AGE update (seconds).
AGE_PERIOD = 1.0

_DEBUG_LEVELS = {
    "Off": logging.CRITICAL + 1,
    "Error": logging.ERROR,
    "Warning": logging.WARNING,
    "Info": logging.INFO,
    "Debug": logging.DEBUG,
}


@dataclass
class ControllerConfig:
    """One controller served by the IOC.

    Attributes
    ----------
    r : str
        The group's ``$(R)``, e.g. ``"CS0:"``.
    cid : int
        Controller number (status id 1028) whose datagrams this group shows; 0 adopts the
        first controller heard from one of this group's addresses that no other group
        claims (one-controller setups only).
    command_addr : tuple[str, int] | None
        ``(host, port)`` the 7-byte commands are sent to (port 30305 on hardware).
    status_from : tuple[str, ...]
        Addresses (host names or dotted IPv4) this group accepts status datagrams
        from; empty: the host of ``command_addr`` (the controller itself). Give it for a
        site whose status arrives through a relay, or when commands go to a broadcast
        address.
    """

    r: str
    cid: int
    command_addr: tuple[str, int] | None = None
    status_from: tuple[str, ...] = ()

    def status_hosts(self) -> tuple[str, ...]:
        """Return the hosts status is accepted from (``status_from``, else the command host)."""
        if self.status_from:
            return tuple(self.status_from)
        return (self.command_addr[0],) if self.command_addr else ()


def resolve_source(host: str) -> str:
    """Return the dotted IPv4 address of ``host`` (a name or an address), as datagrams show it.

    Raises
    ------
    ValueError
        Naming the host, if it cannot be resolved.
    """
    try:
        return socket.gethostbyname(host)
    except (OSError, UnicodeError) as exc:
        raise ValueError(f"cannot resolve controller address {host!r}: {exc}") from None


class _ParamDouble(LazyFieldsMixin, PvpropertyDouble):
    """An ``ao`` parameter.

    A put outside DRVL..DRVH (the control limits) is refused, or, in a flavour that clamps
    (synApps), clamped silently to the nearer limit as an EPICS ao does.
    """

    whole = False
    #: A command parameter: clamped instead of refused in a flavour that clamps.
    flavor_clamps = False

    async def verify_value(self, value):
        """Refuse (or clamp) values outside the control limits.

        Refuse NaN; whole numbers for whole-number PVs (refused in the fixed flavour, rounded as the
        ao's RVAL when clamping).
        """
        lo, hi = self.lower_ctrl_limit, self.upper_ctrl_limit
        units = f" {self.units}" if self.units else ""
        clamp = self.flavor_clamps and getattr(self.group, "flavor", FIXED).clamp
        if not math.isfinite(value):
            raise ValueError(f"{self.pvname} must be a finite number, got {value!r}; "
                             "nothing was sent")
        if clamp:
            value = min(max(round(value) if self.whole else value, lo), hi)
        if not lo <= value <= hi:
            raise ValueError(
                f"{self.pvname} {value:g}{units} is out of range: allowed {lo:g} to {hi:g}"
                f"{units}; nothing was sent"
            )
        if self.whole and value != int(value):
            raise ValueError(
                f"{self.pvname} must be a whole number of{units or ' units'}, got {value:g}; "
                "nothing was sent"
            )
        return await super().verify_value(value)


class _CommandParam(_ParamDouble):
    """A command parameter (RTEMP, RRATE, ...): clamped in the synApps flavour, else refused."""

    flavor_clamps = True


class _WholeCommandParam(_CommandParam):
    """A command parameter holding a whole number (K/h, minutes)."""

    whole = True


class _CheckedEnum(LazyFieldsMixin, PvpropertyEnum):
    """A writable enum (bo, mbbo).

    A put that is not one of its strings, or an index outside them (e.g. -1 sent as an integer), is
    refused with a sentence naming the choices.
    """

    def _refusal(self, value: Any) -> ValueError:
        return ValueError(enum_sentence(self.pvname, self.enum_strings, value))

    async def verify_value(self, value):
        """Accept a state string or its index; refuse anything else before any putter runs."""
        strings = self.enum_strings
        if isinstance(value, str) and value in strings:
            return await super().verify_value(value)
        if isinstance(value, numbers.Real) and not isinstance(value, str) \
                and float(value).is_integer() and 0 <= int(value) < len(strings):
            return await super().verify_value(strings[int(value)])
        raise self._refusal(value)


def _enum(name: str, value: str, strings: tuple[str, ...], record: str, doc: str) -> pvproperty:
    """Return a writable, checked enum record."""
    return pvproperty(name=name, value=value, dtype=_CheckedEnum, enum_strings=strings,
                      record=record, alarm_group=name, doc=doc)


def _status_property(pv) -> pvproperty:
    common = dict(name=pv.suffix, read_only=True, record=pv.record, alarm_group=pv.suffix,
                  doc=pv.doc)
    if pv.record == "mbbi":
        return pvproperty(value=pv.enum_strings[0], dtype=ChannelType.ENUM,
                          enum_strings=pv.enum_strings, **common)
    if pv.record == "stringin":
        return pvproperty(value=ALARM_TEXT_UNSET, dtype=ChannelType.STRING, **common)
    # An EPICS ai reports HOPR/LOPR as both display and control limits (and caproto's .HOPR
    # field reads the control limit), so both are set.
    return pvproperty(value=math.nan, dtype=float, units=pv.units, precision=pv.precision,
                      lower_disp_limit=pv.low, upper_disp_limit=pv.high,
                      lower_ctrl_limit=pv.low, upper_ctrl_limit=pv.high, **common)


def _record_group(name: str, base: type, doc: str, properties: dict[str, pvproperty]) -> type:
    """Return a group class ``name`` deriving from ``base`` with the generated ``properties``.

    mypy cannot follow a class made this way, so each use gives mypy its base class instead
    (under ``TYPE_CHECKING``): the generated class only adds pvproperties to it.
    """
    return type(name, (base,), {"__doc__": doc, "__module__": __name__, **properties})


#: Base class with one read-only record per status PV of :data:`sim_ioc.pvs.STATUS_PVS`.
if TYPE_CHECKING:
    _StatusRecords = LazyRecordGroup
else:
    _StatusRecords = _record_group(
        "_StatusRecords", LazyRecordGroup,
        "The status records of one controller (generated from sim_ioc.pvs).",
        {pv.suffix.lower(): _status_property(pv) for pv in STATUS_PVS})


def _param(name: str, *, precision: int, doc: str) -> pvproperty:
    """Return a command parameter (ao).

    Value, units and limits come from the flavour (FIXED here, the IOC's flavour at group creation).
    A put also updates the byte-split helpers.
    """
    spec = FIXED.params[name]

    async def put(group: CS800ControllerGroup, instance, value):
        await group.split_param(name, value)
        return value

    return pvproperty(name=name, value=spec.default,
                      dtype=_WholeCommandParam if spec.whole else _CommandParam,
                      record="ao", units=spec.units, precision=precision,
                      lower_ctrl_limit=spec.low, upper_ctrl_limit=spec.high,
                      lower_disp_limit=spec.low, upper_disp_limit=spec.high,
                      alarm_group=name, doc=doc, put=put)


def _helper(name: str) -> pvproperty:
    """Return a byte-split helper.

    ``XH``/``XL`` (ao) or ``XCH``/``XCL`` (calcout), computed only.
    """
    record = "calcout" if name.endswith(("CH", "CL")) else "ao"
    return pvproperty(name=name, value=0.0, dtype=float, read_only=True, record=record,
                      alarm_group=name, doc=f"Signed byte of {name.rstrip('CHL')} (computed)")


#: The byte-split helpers and command_port, the records of Oxford_CS800.db that clients only
#: read (:mod:`sim_ioc.records`).
if TYPE_CHECKING:
    _HelperRecords = _StatusRecords
else:
    _HelperRecords = _record_group(
        "_HelperRecords", _StatusRecords,
        "Status records plus the byte-split helpers and command_port.",
        {**{name.lower(): _helper(name) for name in HELPER_RECORDS},
         "command_port": pvproperty(name=COMMAND_PORT_RECORD, value=0, dtype=int, read_only=True,
                                    record="asyn", alarm_group=COMMAND_PORT_RECORD,
                                    doc="asyn record of the command port (VAL unused)")})


def _action(name: str, build: Callable[[CS800ControllerGroup], P.Command], doc: str):
    async def put(group: CS800ControllerGroup, instance, value):
        group.send(build(group))
        return value

    return pvproperty(name=name, value=0.0, record="ao", alarm_group=name, doc=doc, put=put)


class CS800ControllerGroup(_HelperRecords):
    """Every PV of ``Oxford_CS800.db`` for one controller at ``$(P)$(R)``.

    Status PVs are read-only and change only when a datagram of this controller arrives (or
    when it goes stale). Command PVs send through :meth:`send`.
    """

    # ------------------------------------------------------------------ control / diagnostics
    disable = _enum("DISABLE", "Enabled", ENABLE_STRINGS, "bo",
                    "Comms: Enabled or Disabled (the flavour's boot value)")
    debug = _enum("DEBUG", "Warning", DEBUG_STRINGS, "mbbo", "Log level of this controller")

    # ------------------------------------------------------------------ command parameters
    rrate = _param("RRATE", precision=0, doc="Ramp rate for RAMP (K/h)")
    rtemp = _param("RTEMP", precision=2, doc="Ramp target for RAMP (K)")
    ptime = _param("PTIME", precision=0, doc="Plateau duration for PLAT (min)")
    ctemp = _param("CTEMP", precision=2, doc="Cool target for COOL (K)")
    erate = _param("ERATE", precision=0, doc="End ramp rate for END (K/h)")
    turbo = _enum("TURBO", "Off", OFF_ON_STRINGS, "bo", "Turbo flow; a put sends the command")

    # ------------------------------------------------------------------ actions
    ramp = _action("RAMP", lambda g: P.ramp(g.rrate.value, g.rtemp.value,
                                            **g.temp_limits(g.rtemp)),
                   "Send Ramp (RRATE, RTEMP)")
    plat = _action("PLAT", lambda g: P.plat(g.ptime.value), "Send Plat (PTIME)")
    hold = _action("HOLD", lambda g: P.hold(), "Send Hold")
    cool = _action("COOL", lambda g: P.cool(g.ctemp.value, **g.temp_limits(g.ctemp)),
                   "Send Cool (CTEMP)")
    end = _action("END", lambda g: P.end(g.erate.value), "Send End (ERATE)")
    purge = _action("PURGE", lambda g: P.purge(), "Send Purge")
    pause = _action("PAUSE", lambda g: P.pause(), "Send Pause (suspend)")
    resume = _action("RESUME", lambda g: P.resume(), "Send Resume")
    stop = _action("STOP", lambda g: P.stop(), "Send Stop (shuts down)")
    restart = _action("RESTART", lambda g: P.restart(), "Send Restart")
    turbocmd = _action("TURBOCMD", lambda g: P.turbo(g.turbo.value == "On"),
                       "Send Turbo (TURBO)")

    def __init__(self, prefix: str, *, config: ControllerConfig,
                 send_datagram: Callable[[bytes, tuple[str, int]], None] | None = None,
                 flavor: Flavor | str = FIXED, **kwargs: Any) -> None:
        """Create the group at ``prefix`` for ``config``; commands go out via ``send_datagram``.

        ``flavor`` (:mod:`sim_ioc.flavors`) sets the parameters' limits and defaults, DISABLE
        at boot, the DEBUG and PHASE strings and how status is shown.
        """
        super().__init__(prefix, **kwargs)
        self.flavor = get_flavor(flavor)
        self.config = config
        self.bound_cid: int | None = config.cid or None
        #: Source addresses (dotted IPv4) whose status datagrams this group accepts.
        self.sources: frozenset[str] = frozenset()
        self.send_datagram = send_datagram
        self.clog = logging.getLogger(f"{__name__}.{prefix.rstrip(':')}")
        self.min_temp = P.DEFAULT_MIN_TEMP_K
        self.max_temp = P.DEFAULT_MAX_TEMP_K
        self.last_heard: float | None = None  # monotonic time of the last good datagram
        self.last_applied: float | None = None
        self.count = 0
        self.commands_sent = 0
        self.stale = False
        self._posted: dict[str, tuple[Any, AlarmSeverity, AlarmStatus]] = {}
        self.status_channels = {pv.suffix: getattr(self, pv.suffix.lower()) for pv in STATUS_PVS}
        self.params = {name: getattr(self, name.lower()) for name in self.flavor.params}
        self._apply_flavor()

    def _apply_flavor(self) -> None:
        """Set the flavour's boot state (before serving: no client can see the change)."""
        flavor = self.flavor
        for name, spec in flavor.params.items():
            self.params[name]._data.update(
                value=spec.default, lower_ctrl_limit=spec.low, upper_ctrl_limit=spec.high,
                lower_disp_limit=spec.low, upper_disp_limit=spec.high)
        for name in SPLIT_PARAMS:
            self._set_split(name, self.params[name].value)
        self.disable._data["value"] = "Disabled" if flavor.disabled_at_boot else "Enabled"
        self.debug._data.update(enum_strings=flavor.debug_strings, value=flavor.debug_default)
        self.phase._data.update(enum_strings=flavor.phase_strings, value=flavor.phase_strings[0])
        if flavor.c_ioc_status:  # PINI records that read 0 (NO_ALARM) until the first datagram
            for pv in STATUS_PVS:
                channel = self.status_channels[pv.suffix]
                value, severity, status = initial_reading(pv.suffix, channel.enum_strings
                                                          if pv.record == "mbbi" else ())
                channel._data["value"] = value
                if pv.record == "ai":
                    channel._data["precision"] = C_IOC_PREC.get(pv.suffix, 0)
                self.alarms[pv.suffix]._data.update(status=status, severity=severity)
        else:
            for suffix in self.status_channels:  # no data yet: INVALID/UDF, as an EPICS record
                self.alarms[suffix]._data.update(status=AlarmStatus.UDF,
                                                 severity=AlarmSeverity.INVALID_ALARM)

    def _set_split(self, name: str, value: float) -> dict[Any, int]:
        """Return the helper channels of parameter ``name``, each with the value it takes.

        The values are those for parameter value ``value``.
        """
        high, low = split_word(raw_word(name, value))
        channels = {getattr(self, f"{name}{s}".lower()): v
                    for s, v in (("CH", high), ("H", high), ("CL", low), ("L", low))}
        for channel, byte in channels.items():
            channel._data["value"] = float(byte)
        return channels

    async def split_param(self, name: str, value: float) -> None:
        """Process the calcouts ``XCH``/``XCL`` and ao ``XH``/``XL`` after a put of ``name``."""
        for channel, byte in self._set_split(name, value).items():
            await channel.write(byte, verify_value=False)

    # ------------------------------------------------------------------ state
    @property
    def disabled(self) -> bool:
        """True when DISABLE reads Disabled: no commands sent, no status applied."""
        return self.disable.value == "Disabled"

    def temp_limits(self, channel: Any) -> dict[str, float]:
        """Return the temperature limits a command built from ``channel`` is checked with.

        ``channel`` is RTEMP or CTEMP; the limits are builder keywords: DEVICEMINTEMP..DEVICEMAXTEMP
        in the fixed flavour; the channel's own DRVL..DRVH where the IOC does not check the
        device's limits (synApps).
        """
        if self.flavor.limits_follow_device:
            return {"min_temp": self.min_temp, "max_temp": self.max_temp}
        return {"min_temp": channel.lower_ctrl_limit, "max_temp": channel.upper_ctrl_limit}

    # ------------------------------------------------------------------ commands
    def send(self, command: P.Command) -> None:
        """Send one command datagram to this controller.

        Raises
        ------
        RuntimeError
            (The CA put fails with this text.) When DISABLE is Disabled, when no command address
            is known, or when the socket refuses the datagram.
        """
        name = command.command.name
        if self.disabled and self.flavor.disabled_put_succeeds:  # SDIS: skipped, no error
            self.clog.info("%sDISABLE is Disabled: %s was not sent", self.prefix, name)
            return
        if self.disabled:
            raise RuntimeError(f"{self.prefix}DISABLE is Disabled: {name} was not sent")
        addr = self.config.command_addr
        if addr is None or self.send_datagram is None:
            raise RuntimeError(f"{self.prefix}: no command address configured; {name} not sent")
        data = command.encode()
        try:
            self.send_datagram(data, addr)
        except OSError as exc:
            raise RuntimeError(f"{self.prefix}: sending {name} to {addr[0]}:{addr[1]} failed: "
                               f"{exc}") from exc
        self.commands_sent += 1
        self.clog.info("sent %s (%s) to %s:%d", name, data.hex(" "), *addr)

    @turbo.putter
    async def turbo(self, instance, value):
        """TURBO forward-links TURBOCMD in synApps: a put sends the turbo command at once."""
        self.send(P.turbo(value == "On"))
        return value

    @debug.putter
    async def debug(self, instance, value):
        """Set this controller's log level (Off, Error, Warning, Info, Debug)."""
        self.clog.setLevel(_DEBUG_LEVELS.get(value, logging.WARNING))
        return value

    # ------------------------------------------------------------------ status
    def heard(self, now: float) -> bool:
        """Note a good datagram of this controller; return True if it should be applied."""
        self.last_heard = now
        self.count += 1
        if self.disabled:
            return False
        self.last_applied = now
        return True

    async def _post(self, suffix: str, value: Any, severity: AlarmSeverity,
                    status: AlarmStatus, timestamp: float) -> None:
        key = (None if isinstance(value, float) and math.isnan(value) else value, severity, status)
        channel = self.status_channels[suffix]
        if self._posted.get(suffix) == key:
            # As an EPICS ai with MDEL 0: the record is processed (a read shows the new time
            # stamp) but no monitor is posted for an unchanged value and alarm.
            await channel.write_metadata(timestamp=timestamp, publish=False)
            return
        self._posted[suffix] = key
        await channel.write(value, timestamp=timestamp, severity=severity, status=status,
                            verify_value=False)

    async def apply(self, packet: P.StatusPacket, timestamp: float) -> None:
        """Show one decoded packet of this controller on the status PVs."""
        if self.flavor.c_ioc_status:
            enums = {"RUNMODE": self.runmode.enum_strings, "PHASE": self.phase.enum_strings}
            readings = extract_c_ioc(packet, enums)
        else:
            readings = extract(packet)
        for suffix, (value, severity, status) in readings.items():
            await self._post(suffix, value, severity, status, timestamp)
        self.stale = False
        if self.flavor.limits_follow_device:
            await self._update_temp_limits(readings)

    async def _update_temp_limits(self, readings) -> None:
        lo, lo_sev, _ = readings["DEVICEMINTEMP"]
        hi, hi_sev, _ = readings["DEVICEMAXTEMP"]
        if lo_sev != AlarmSeverity.NO_ALARM or hi_sev != AlarmSeverity.NO_ALARM or not lo < hi:
            return
        if (lo, hi) == (self.min_temp, self.max_temp):
            return
        self.min_temp, self.max_temp = lo, hi
        for channel in (self.rtemp, self.ctemp):
            await channel.write_metadata(lower_ctrl_limit=lo, upper_ctrl_limit=hi,
                                         lower_disp_limit=lo, upper_disp_limit=hi)
            channel.sync_static_fields()  # .DRVH/.DRVL follow too, if a client built them

    async def mark_stale(self) -> None:
        """No datagram for too long: every status PV goes INVALID with COMM status."""
        self.stale = True
        now = time.time()
        for suffix, channel in self.status_channels.items():
            await self._post(suffix, channel.value, AlarmSeverity.INVALID_ALARM,
                             AlarmStatus.COMM, now)
        self.clog.warning("%s: no status datagram for too long; status PVs INVALID/COMM",
                          self.prefix)


class SimControllerGroup(CS800ControllerGroup):
    """A controller group with the simulation-control PVs (simulated mode only).

    ``sim`` is the :class:`sim_ioc.controller.SimulatedCS800` behind this controller.
    """

    sim_broadcast = _enum("SIM:BROADCAST", "On", OFF_ON_STRINGS, "bo",
                          "Simulator sends status datagrams")
    sim_alarm = pvproperty(name="SIM:ALARM", value=0, dtype=int, record="longout",
                           lower_ctrl_limit=0, upper_ctrl_limit=65533, alarm_group="SIM:ALARM",
                           doc="Inject an alarm code into the simulator")
    sim_drop = pvproperty(name="SIM:DROP", value=0.0, dtype=_ParamDouble, record="ao",
                          lower_ctrl_limit=0.0, upper_ctrl_limit=1.0, precision=3,
                          alarm_group="SIM:DROP", doc="Fraction of status datagrams dropped")
    sim_sensorfail = _enum("SIM:SENSORFAIL", "Off", OFF_ON_STRINGS, "bo",
                           "Simulate a sensor failure")

    def __init__(self, prefix: str, *, sim: Any, **kwargs: Any) -> None:
        """Create the group; ``sim`` is the simulated controller these PVs act on."""
        super().__init__(prefix, **kwargs)
        self.sim = sim

    @sim_broadcast.putter
    async def sim_broadcast(self, instance, value):
        """Stop (Off) or resume (On) the simulator's status datagrams."""
        self.sim.broadcasting = value == "On"
        return value

    @sim_alarm.putter
    async def sim_alarm(self, instance, value):
        """Raise alarm ``value`` in the simulator (0 clears, as far as the simulator allows)."""
        self.sim.inject_alarm(int(value))
        return value

    @sim_drop.putter
    async def sim_drop(self, instance, value):
        """Make the simulator drop this fraction (0..1) of its status datagrams."""
        self.sim.drop_fraction = float(value)
        return value

    @sim_sensorfail.putter
    async def sim_sensorfail(self, instance, value):
        """Switch the simulated sensor failure on or off."""
        self.sim.set_sensor_fail(value == "On")
        return value


def _counter(name: str, doc: str) -> pvproperty:
    return pvproperty(name=name, value=0, dtype=int, read_only=True, record="longin",
                      alarm_group=name, doc=doc)


if TYPE_CHECKING:
    _StatusServerBase = LazyRecordGroup
else:
    _StatusServerBase = _record_group(
        "_StatusServerBase", LazyRecordGroup,
        "Rejection counters of the status server (one per reason).",
        {f"rej_{reason}": _counter(f"REJ:{reason.upper()}", f"Rejected: {reason}")
         for reason in REJECT_REASONS})


class _StatusPacketChannel(LazyFieldsMixin, PvpropertyByteRO):
    """``status_packet``, an asyn record in synApps: ``.BINP`` is the datagram, ``.NORD`` its size.

    The value (``.VAL``) and ``.BINP`` are the same channel, so a client written for the C IOC
    (monitoring ``status_packet.BINP``, as its SNL program does) sees the datagrams. Refreshed
    at 5 Hz (:data:`HOUSEKEEPING_PERIOD`): of several datagrams within one period only the last
    is shown.
    """

    def get_field(self, field: str):
        """``BINP``: this channel; any other field as :class:`LazyFieldsMixin`."""
        if field == "BINP":
            return self
        return super().get_field(field)

    def note_length(self, nbytes: int) -> None:
        """Show ``nbytes`` in ``.NORD`` (bytes of the last datagram), if a client built it."""
        if self.field_inst is not None and "NORD" in self.fields:
            self.fields["NORD"]._data["value"] = nbytes

    async def asyn_read(self, data: bytes | None) -> None:
        """Process as the C IOC's asyn record after one read (synApps flavour).

        ``data``: the bytes read (NORD = their number, NO_ALARM); None on a read timeout
        (NORD 0, READ/MAJOR, the last bytes kept). Either way the record is processed: a
        monitor with a new time stamp. ``.NORD`` is written before the value, so a client
        that sees the value's update reads the matching NORD.
        """
        self._nord = 0 if data is None else len(data)
        if self.field_inst is not None and "NORD" in self.fields:
            await self.fields["NORD"].write(self._nord, verify_value=False)
        if data is None:
            await self.write(self.value, verify_value=False, status=AlarmStatus.READ,
                             severity=AlarmSeverity.MAJOR_ALARM)
        else:
            await self.write(data, verify_value=False, status=AlarmStatus.NO_ALARM,
                             severity=AlarmSeverity.NO_ALARM)

    _nord = 0

    def _build_fields(self) -> None:
        super()._build_fields()
        if "NORD" in self.fields:
            self.fields["NORD"]._data["value"] = self._nord


class StatusServerGroup(_StatusServerBase):
    """The status-server PVs at ``$(P)$(R)`` (``Oxford_CS800_status.db`` plus counters)."""

    status_packet = pvproperty(name="status_packet", value=b"", dtype=_StatusPacketChannel,
                               max_length=STATUS_PACKET_NELM, read_only=True, record="asyn",
                               strip_null_terminator=False, alarm_group="status_packet",
                               doc="Last status datagram received")
    received = _counter("RECEIVED", "Status datagrams received")
    accepted = _counter("ACCEPTED", "Status datagrams accepted")
    rejected = _counter("REJECTED", "Status datagrams rejected")
    last_reject = pvproperty(name="LASTREJECT", value="", dtype=str, max_length=256,
                             read_only=True, alarm_group="LASTREJECT",
                             doc="Why the last datagram was rejected")
    port = _counter("PORT", "UDP port of the status socket")
    refused_puts = _counter("PUT:REFUSED", "Channel Access puts refused (any PV of this IOC)")

    async def publish(self, counters: StatusCounters, refused_puts: int = 0) -> None:
        """Write the counters and the last datagram to their PVs (only those that changed)."""
        # Per-reason counters first, totals last: a client that sees REJECTED reach N also
        # sees reasons that add up to at least N (a write may yield to CA readers in between).
        values = {
            **{getattr(self, f"rej_{r}"): counters.rejected.get(r, 0) for r in REJECT_REASONS},
            self.accepted: counters.accepted,
            self.rejected: counters.rejected_total,
            self.received: counters.received,
            self.refused_puts: refused_puts,
        }
        for channel, value in values.items():
            if channel.value != value:
                await channel.write(value, verify_value=False)
        if counters.last_reject and self.last_reject.value != counters.last_reject:
            await self.last_reject.write(counters.last_reject[:255], verify_value=False)
        packet = counters.last_datagram[:STATUS_PACKET_NELM]
        if self.scan_owned:  # the synApps flavour's asyn read processes status_packet
            return
        if packet and packet != self._last_packet:
            self._last_packet = packet
            await self.status_packet.write(packet, verify_value=False)
            self.status_packet.note_length(len(packet))

    _last_packet = b""
    #: True when :class:`~sim_ioc.synapps.ScanLimitedReceiver` writes ``status_packet``.
    scan_owned = False


class ControllerStatsGroup(LazyRecordGroup):
    """Per-controller reception figures at ``$(P)$(status R)$(controller R)``."""

    age = pvproperty(name="AGE", value=math.nan, dtype=float, read_only=True, record="ai",
                     units="s", precision=1, alarm_group="AGE",
                     doc="Seconds since the last datagram")
    count = _counter("COUNT", "Datagrams of this controller")

    def __init__(self, prefix: str, **kwargs: Any) -> None:
        """Create AGE and COUNT at ``prefix``; AGE is INVALID/UDF until a datagram arrives."""
        super().__init__(prefix, **kwargs)
        self.alarms["AGE"]._data.update(status=AlarmStatus.UDF,
                                        severity=AlarmSeverity.INVALID_ALARM)


class CS800IOC:
    """The whole IOC: status server, controller groups, sockets and background tasks.

    Build it, ``await open()`` (binds the UDP sockets, starts the tasks), serve :attr:`pvdb`
    with caproto, then ``await close()``. Extra PV groups (e.g. the simulated valve bank) are
    added with :meth:`add_group` before serving.
    """

    def __init__(
        self,
        prefix: str,
        controllers: Sequence[ControllerConfig],
        *,
        status_r: str = "CS:",
        status_host: str = "0.0.0.0",
        status_port: int = P.STATUS_PORT,
        command_host: str = "0.0.0.0",
        stale_timeout: float = DEFAULT_STALE_TIMEOUT,
        sims: Sequence[Any] | None = None,
        private_status_port: bool = False,
        flavor: Flavor | str = FIXED,
    ) -> None:
        """Create the PV groups.

        ``controllers`` needs at least one entry, distinct R values and distinct non-zero
        controller numbers (``ValueError`` otherwise). ``sims`` (simulated mode) gives the
        simulated controller of each entry and adds the ``SIM:`` PVs. ``stale_timeout`` must
        be positive (seconds). ``private_status_port`` (for an IOC fed only by its own
        simulators) ignores ``status_port`` and binds an exclusive port outside the kernel's
        ephemeral range (:func:`sim_ioc.status_server.open_private_status_socket`).
        ``flavor``: ``"fixed"`` (default) or ``"synapps"`` (:mod:`sim_ioc.flavors`); an unknown
        name raises ``ValueError``.
        """
        self.flavor = get_flavor(flavor)
        if not controllers:
            raise ValueError("the IOC needs at least one controller (--controller R:CID@HOST)")
        if stale_timeout <= 0 or not math.isfinite(stale_timeout):
            raise ValueError(f"stale timeout must be a positive number of seconds, "
                             f"got {stale_timeout}")
        rs = [c.r for c in controllers]
        if len(set(rs)) != len(rs) or status_r in rs:
            raise ValueError(f"controller prefixes must be distinct and differ from the status "
                             f"server's {status_r!r}: got {rs}")
        cids = [c.cid for c in controllers if c.cid]
        if len(set(cids)) != len(cids):
            raise ValueError(f"controller numbers must be distinct: got {cids}")
        if sims is not None and len(sims) != len(controllers):
            raise ValueError("one simulated controller per controller entry is needed")
        self.prefix = prefix
        self.status_host, self.requested_status_port = status_host, status_port
        self.private_status_port = private_status_port
        self.command_host = command_host
        self.stale_timeout = float(stale_timeout)
        self.counters = StatusCounters()
        self.status = StatusServerGroup(prefix + status_r)
        self.status.scan_owned = self.flavor.scan_limited
        self.controllers: list[CS800ControllerGroup] = []
        self.stats: list[ControllerStatsGroup] = []
        for i, config in enumerate(controllers):
            group = (CS800ControllerGroup(prefix + config.r, config=config,
                                          send_datagram=self._send_datagram,
                                          flavor=self.flavor) if sims is None else
                     SimControllerGroup(prefix + config.r, config=config,
                                        send_datagram=self._send_datagram, flavor=self.flavor,
                                        sim=sims[i]))
            self.controllers.append(group)
            if self.flavor.per_controller_stats:
                self.stats.append(ControllerStatsGroup(prefix + status_r + config.r))
        for group in self.controllers:
            group.sources = frozenset(resolve_source(h) for h in group.config.status_hosts())
        self.pvdb: dict[str, Any] = {}
        for any_group in (self.status, *self.controllers, *self.stats):
            self.add_group(any_group)
        self._by_cid = {g.bound_cid: g for g in self.controllers if g.bound_cid}
        self._warned_cids: set[int] = set()
        self.rate_log = RateLimitedLog(log)
        self.put_refusals = PutRefusalLog(self.rate_log)
        self._receiver: StatusReceiver | None = None
        self._command_sock: socket.socket | None = None
        # Status is state: the newest packet of each group not yet shown (one per group).
        self._latest: dict[CS800ControllerGroup, tuple[P.StatusPacket, float]] = {}
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self.status_port: int | None = None
        self._started = time.monotonic()

    def add_group(self, group: PVGroup) -> None:
        """Serve the PVs of ``group`` too; a PV name already served raises ``ValueError``."""
        clash = set(group.pvdb) & set(self.pvdb)
        if clash:
            raise ValueError(f"PV names served twice: {sorted(clash)[:5]}")
        self.pvdb.update(group.pvdb)

    @property
    def allowed_sources(self) -> frozenset[str]:
        """Every address some controller group accepts status from."""
        return frozenset().union(*(g.sources for g in self.controllers))

    # ------------------------------------------------------------------ routing
    def route(self, packet: P.StatusPacket, arrival: float, source: str) -> str:
        """Hand a checked packet from ``source`` to its controller group (by id 1028).

        Returns "" when a group took it, "unknown" when no group has that controller number
        (a CID-0 group adopts a number only from one of its own addresses), "source" when the
        group does not accept status from ``source``. Only the newest packet of each group
        waits to be shown: a flood replaces, it never queues.
        """
        cid = packet.cid
        if cid is None or cid == 0:
            return "unknown"
        group = self._by_cid.get(cid)
        if group is None:
            group = next((g for g in self.controllers
                          if g.bound_cid is None and source in g.sources), None)
            if group is None:
                self._warn_cid0_ambiguity(cid)
                return "unknown"
            group.bound_cid = cid  # CID 0: adopt the first controller heard (from its address)
            self._by_cid[cid] = group
            log.info("%s: CID 0 adopts controller number %d (from %s)", group.prefix, cid,
                     source)
        elif source not in group.sources:
            return "source"
        if group.heard(time.monotonic()):
            self._latest[group] = (packet, arrival)
            if self._wake is not None:
                self._wake.set()
        return ""

    def _warn_cid0_ambiguity(self, cid: int) -> None:
        """Log once per controller number when a CID-0 group may have adopted the wrong one."""
        auto = [g for g in self.controllers if g.config.cid == 0]
        if not auto or cid in self._warned_cids or len(self._warned_cids) >= 100:
            return
        self._warned_cids.add(cid)
        adopted = ", ".join(f"{g.prefix} shows {g.bound_cid}" for g in auto)
        log.warning("controller %d is also broadcasting, but CID 0 adopts only the first "
                    "controller heard (%s); give each controller its number (R:CID@HOST)",
                    cid, adopted)

    def _send_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._command_sock is None:
            raise OSError("the command socket is not open (IOC not started)")
        self._command_sock.sendto(data, addr)

    # ------------------------------------------------------------------ life cycle
    async def open(self) -> None:
        """Bind the status and command sockets and start the background tasks.

        Raises
        ------
        OSError
            With the address, if a socket cannot be bound.
        """
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self.private_status_port:
            status_sock = open_private_status_socket(self.status_host)
        else:
            status_sock = open_status_socket(self.status_host, self.requested_status_port)
        self.status_port = status_sock.getsockname()[1]
        self._receiver = StatusReceiver(self.route, self.counters, self.allowed_sources,
                                        self.rate_log)
        scan: ScanLimitedReceiver | None = None
        if self.flavor.scan_limited:
            # The C IOC's one-read-per-scan queue sits behind the source check, so a foreign
            # flood never fills it (the hardening holds in this flavour too).
            scan = ScanLimitedReceiver(self._receiver, self.status.status_packet.asyn_read)
            self._receiver.deliver = scan.datagram_received
        self._receiver.attach(loop, status_sock)
        self._command_sock = open_command_socket(self.command_host)
        self.put_refusals.install()
        await self.status.port.write(self.status_port, verify_value=False)
        self._started = time.monotonic()
        self._tasks = [loop.create_task(self._consume()), loop.create_task(self._housekeeping())]
        if scan is not None:
            self._tasks.append(loop.create_task(scan.scan()))

    async def close(self) -> None:
        """Stop the tasks and close the sockets (safe to call twice or after a failed open)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._tasks = []
        self.put_refusals.uninstall()
        self.rate_log.flush(everything=True)
        if self._receiver is not None:
            self._receiver.close()
            self._receiver = None
        if self._command_sock is not None:
            self._command_sock.close()
            self._command_sock = None

    async def _consume(self) -> None:
        latest, wake = self._latest, self._wake
        assert wake is not None, "open() creates the wake-up event before this task"
        while True:
            await wake.wait()
            wake.clear()
            while latest:
                group = next(iter(latest))
                packet, arrival = latest.pop(group)
                try:
                    if not group.disabled:
                        await group.apply(packet, arrival)
                except Exception as exc:  # a PV update must never stop the IOC  # noqa: BLE001
                    self.rate_log.note("status packets not shown",
                                       f"{group.prefix}: showing a status packet failed: "
                                       f"{type(exc).__name__}: {exc}")

    async def _housekeeping(self) -> None:
        next_age = 0.0
        while True:
            try:
                self.rate_log.flush()
                await self.status.publish(self.counters, self.put_refusals.refused)
                now = time.monotonic()
                for group in self.controllers:
                    last = group.last_applied
                    silent_for = now - (last if last is not None else self._started)
                    if (self.flavor.marks_stale and not group.stale
                            and silent_for > self.stale_timeout):
                        await group.mark_stale()
                if now >= next_age:
                    next_age = now + AGE_PERIOD
                    await self._publish_ages(now)
            except Exception:  # noqa: BLE001
                log.exception("housekeeping failed")
            await asyncio.sleep(HOUSEKEEPING_PERIOD)

    async def _publish_ages(self, now: float) -> None:
        for group, stats in zip(self.controllers, self.stats, strict=False):  # synApps: none
            if group.last_heard is None:
                continue
            await stats.age.write(round(now - group.last_heard, 1), verify_value=False,
                                  severity=AlarmSeverity.NO_ALARM, status=AlarmStatus.NO_ALARM)
            if stats.count.value != group.count:
                await stats.count.write(group.count, verify_value=False)

    def describe(self) -> list[str]:
        """One line per served prefix (printed by the command-line tools)."""
        lines = [f"{self.status.prefix}  status server, UDP {self.status_host}:{self.status_port}"
                 f" ({self.flavor.name} flavour)"]
        for group in self.controllers:
            cid = group.config.cid or "0 (first heard)"
            addr = group.config.command_addr
            where = f"{addr[0]}:{addr[1]}" if addr else "no command address"
            sources = ", ".join(sorted(group.sources)) or "nowhere"
            lines.append(f"{group.prefix}  controller {cid}, commands to {where}, status from "
                         f"{sources}"
                         + ("; DISABLE is Disabled: nothing decoded or sent until it is "
                            "Enabled" if group.disabled else ""))
        return lines
