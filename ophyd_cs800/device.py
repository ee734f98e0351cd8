"""The ophyd ``CS800`` device: an Oxford CryoStream 800 as a temperature positioner in kelvin.

It talks to the PVs of synApps ``ip`` ``Oxford_CS800.db`` (prefix like ``xxx:CS0:``),
served by the synApps IOC or by this package's ``cs800-ioc`` / ``cs800-sim-ioc``.
It never imports the simulator.

``cs0.set(150)`` (what ``bps.mv`` and :func:`ophyd_cs800.plans.ramp` use) checks that comms
are enabled, the controller is reporting (its heartbeat, :mod:`ophyd_cs800.heartbeat`), it is
Ready or Running, and 150 K lies in DEVICEMINTEMP..DEVICEMAXTEMP and in the IOC's own RTEMP
limits (:mod:`ophyd_cs800.limits`); writes RRATE and RTEMP and processes RAMP; confirms
through TARGETTEMP that the controller took the command (re-sending a bounded number of times,
since the controller never replies); and
finishes when PHASE has left Ramp/Cool/Wait and |TEMP - 150| <= ``tolerance`` has held for
``settle_time`` seconds. ``stop(success=True)`` (called by the RunEngine after every plan) does
nothing; ``stop()`` during a move sends HOLD. The device never sends STOP (command 19), which
shuts the cooler down. Everything it does is logged on ``ophyd_cs800.device.<name>``
(:mod:`ophyd_cs800.logs`); alarm changes also reach :meth:`CS800.add_alarm_callback`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO, Signal
from ophyd import FormattedComponent as FCpt
from ophyd.device import required_for_connection
from ophyd.positioner import PositionerBase
from ophyd.status import DeviceStatus, MoveStatus, StatusBase

from ophyd_cs800 import command_rules as rules
from ophyd_cs800.alarms import AlarmCallback, AlarmWatch
from ophyd_cs800.device_state import FollowedState
from ophyd_cs800.errors import (
    CS800Error,
    CS800StaleError,
)
from ophyd_cs800.heartbeat import INVALID_SEVERITY, Heartbeat
from ophyd_cs800.limits import Range, available, ioc_range
from ophyd_cs800.logs import device_logger
from ophyd_cs800.move_status import (
    AUTO,
    Job,
    JobRunner,
    MoveJob,
    ResponseTimes,
    Snapshot,
    phase_name,
    stale_limit,
    supersede,
)
from ophyd_cs800.protocol import RunMode

#: Record name of the status server's datagram PV, after the IOC's ``$(P)`` (both IOCs).
STATUS_PACKET_RECORD = "CS:status_packet"


def default_status_packet_pv(prefix: str) -> str:
    """Return the usual status-packet PV of a controller prefix.

    ``xxx:CS0:`` -> ``xxx:CS:status_packet``.

    Both the synApps ``iocsh`` examples and ``cs800-ioc`` put the status server at
    ``$(P)CS:`` and the controllers at ``$(P)CS0:``, ``$(P)CS1:``...: ``$(P)`` is the prefix
    without its last ``:``-separated part.
    """
    head = prefix[:-1] if prefix.endswith(":") else prefix
    ioc_prefix = head.rsplit(":", 1)[0] + ":" if ":" in head else ""
    return ioc_prefix + STATUS_PACKET_RECORD


def _hk(suffix: str, **kwargs: Any) -> Cpt:
    """Return a housekeeping status PV.

    Read-only, not in read()/configuration, created on first use.
    """
    return Cpt(EpicsSignalRO, suffix, kind="omitted", lazy=True, **kwargs)


def _param(suffix: str) -> Cpt:
    """Return a command parameter PV (RRATE, RTEMP, ...).

    Written with put completion before an action.
    """
    return Cpt(EpicsSignal, suffix, kind="omitted", put_complete=True)


def _action_pv(suffix: str) -> Cpt:
    """Return a command record processed by writing 1 to its ``.PROC`` field.

    (sends one UDP command).
    """
    return Cpt(EpicsSignal, f"{suffix}.PROC", kind="omitted", put_complete=True)


class Action(Signal):
    """A soft signal whose ``set(value)`` runs one controller command on the parent ``CS800``.

    Plans use these through ordinary ``Msg('set', ...)`` (``bps.abs_set(cs.actions.plateau, 5)``),
    so every command is non-blocking and returns an ophyd status. ``method`` names the
    ``CS800`` method called with ``value`` (ignored for commands without a parameter).
    """

    def __init__(self, *, method: str, takes_value: bool = True, **kwargs: Any):
        super().__init__(value=0, **kwargs)
        self._method = method
        self._takes_value = takes_value

    def set(self, value: Any = 1, **kwargs: Any) -> StatusBase:
        """Run the command on the CS800 device that owns it; returns its status."""
        self._readback = value
        # Action -> CS800Actions -> CS800: not ``self.root``, which is the outermost device
        # when the CS800 is a component of a larger one (a beamline/endstation Device).
        run = getattr(self.parent.parent, self._method)
        return run(value, **kwargs) if self._takes_value else run(**kwargs)

    def put(self, value: Any, **kwargs: Any) -> None:
        """Start the command without waiting (same as ``set``, the status is dropped)."""
        self.set(value)


class CS800Actions(Device):
    """The CS800 commands as settable soft signals (used by :mod:`ophyd_cs800.plans`)."""

    plateau = Cpt(Action, method="plateau", kind="omitted")
    hold = Cpt(Action, method="hold", takes_value=False, kind="omitted")
    end = Cpt(Action, method="end", kind="omitted")
    purge = Cpt(Action, method="purge", takes_value=False, kind="omitted")
    restart = Cpt(Action, method="restart", takes_value=False, kind="omitted")
    pause_program = Cpt(Action, method="pause_program", takes_value=False, kind="omitted")
    resume_program = Cpt(Action, method="resume_program", takes_value=False, kind="omitted")
    turbo = Cpt(Action, method="set_turbo", kind="omitted")


class CS800(FollowedState, Device, PositionerBase):
    """An Oxford CryoStream 800 on the synApps ``Oxford_CS800.db`` PVs, a positioner in kelvin.

    Parameters
    ----------
    prefix : str, optional
        The controller's PV prefix ``$(P)$(R)``, e.g. ``"xxx:CS0:"``.
    name : str
        The device name; the readback TEMP is reported under it (``cs0``).
    tolerance : float, optional
        |TEMP - target| (K) that counts as "there" (default 0.2 K: the readback
        resolution is 0.01 K and the noise at rest about +/-0.05 K).
    settle_time : float, optional
        Seconds (wall clock) TEMP must stay within tolerance, out of
        Ramp/Cool/Wait, before a move is done (default 5 s).
    ramp_rate : float, optional
        K/h used by ``set`` / ``ramp`` when no rate is given (1-360, default 360).
    status_period : float, optional
        The shortest status period to plan with, seconds (1.0: a real
        controller reports once a second). The period actually used is learned from the
        arrival of status (:attr:`learned_status_period`) and never below this floor: an
        IOC that delivers status late or seldom widens the confirmation window and the
        stale limit instead of causing re-sends. Sets the poll interval too.
    max_resends : int, optional
        Re-sends of a command the controller has not acted on (default 2; the
        confirmation window doubles at each).
    timeout_margin : float, optional
        Seconds added to the computed ramp time for the default timeout.
    stale_after : float | str | None, optional
        Seconds without any status before the controller counts as silent: a
        running move fails, and every command is refused before anything is written.
        ``"auto"`` (default): 3 status periods + 0.5 s, so a move fails within 3 status
        periods + 1 s of the last datagram; a number: that many seconds; ``None``: only
        INVALID severity on TEMP counts (the synApps C IOC never sets it).
    status_packet_pv : str | None, optional
        The status server's datagram PV, which moves with every datagram
        whatever the values (``$(P)CS:status_packet`` on the synApps IOC and ours), used as
        the heartbeat. ``"auto"`` (default): derived from ``prefix``
        (``xxx:CS0:`` -> ``xxx:CS:status_packet``, see :func:`default_status_packet_pv`);
        ``None``: no packet heartbeat. Without it (or while it is not connected) the
        heartbeat is the monitors of the noisy status PVs (TEMP, SUCTTEMP, EVAPTEMP,
        GASHEAT, ...): a controller whose readings do not change at all then looks silent.
    put_timeout : float, optional
        Seconds allowed for each PV write.
    timeout : float | None, optional
        A fixed default timeout for moves (seconds) instead of the computed one.

    Notes
    -----
    Attributes set from the parameters can be changed later (``cs0.status_period = 0.2``);
    ``tolerance``, ``settle_time`` and ``ramp_rate`` are configuration signals
    (``cs0.tolerance.put(0.3)``) and so appear in the run's configuration.
    """

    #: Last valid TEMP in K (PositionerBase's cache; None until the first reading).
    _position: float | None

    # -- readings (read()) -------------------------------------------------------------------
    temperature = Cpt(EpicsSignalRO, "TEMP", kind="hinted", auto_monitor=True)
    setpoint = Cpt(EpicsSignalRO, "SETPOINT", kind="normal", auto_monitor=True)
    target = Cpt(EpicsSignalRO, "TARGETTEMP", kind="normal", auto_monitor=True)
    phase = Cpt(EpicsSignalRO, "PHASE", kind="normal", auto_monitor=True)
    run_mode = Cpt(EpicsSignalRO, "RUNMODE", kind="normal", auto_monitor=True)
    # The same PHASE/RUNMODE as text ("Hold", "Run") for tables and documents: cs0_phase_name,
    # cs0_run_mode_name; cs0_phase and cs0_run_mode stay the ints (protocol.Phase / RunMode).
    phase_name = Cpt(EpicsSignalRO, "PHASE", kind="normal", auto_monitor=True, string=True)
    run_mode_name = Cpt(EpicsSignalRO, "RUNMODE", kind="normal", auto_monitor=True,
                        string=True)
    alarm = Cpt(EpicsSignalRO, "ALARM", kind="normal", auto_monitor=True, string=True)

    # -- configuration -----------------------------------------------------------------------
    ramp_rate = Cpt(Signal, value=360, kind="config")
    tolerance = Cpt(Signal, value=0.2, kind="config")
    settle_time = Cpt(Signal, value=5.0, kind="config")
    controller_number = Cpt(EpicsSignalRO, "CTRLNUM", kind="config", auto_monitor=True)
    firmware = Cpt(EpicsSignalRO, "VER", kind="config")

    # -- used by the checks before a command ------------------------------------------------
    disable = Cpt(EpicsSignal, "DISABLE", kind="omitted", auto_monitor=True)
    min_temp = Cpt(EpicsSignalRO, "DEVICEMINTEMP", kind="omitted", auto_monitor=True)
    max_temp = Cpt(EpicsSignalRO, "DEVICEMAXTEMP", kind="omitted", auto_monitor=True)

    # -- the heartbeat (see status_packet_pv) and the alarm path ------------------------------
    status_packet = FCpt(EpicsSignalRO, "{_status_packet_pv}.BINP", kind="omitted", lazy=True,
                         auto_monitor=True)
    alarm_code = Cpt(EpicsSignalRO, "ALARMI", kind="omitted", auto_monitor=True)
    evap_temp = Cpt(EpicsSignalRO, "EVAPTEMP", kind="omitted", auto_monitor=True)
    suct_temp = Cpt(EpicsSignalRO, "SUCTTEMP", kind="omitted", auto_monitor=True)
    gas_heat = Cpt(EpicsSignalRO, "GASHEAT", kind="omitted", auto_monitor=True)

    # -- command parameters and command records (never STOP) --------------------------------
    rrate = _param("RRATE")
    rtemp = _param("RTEMP")
    ctemp = _param("CTEMP")
    ptime = _param("PTIME")
    erate = _param("ERATE")
    cmd_ramp = _action_pv("RAMP")
    cmd_cool = _action_pv("COOL")
    cmd_plat = _action_pv("PLAT")
    cmd_hold = _action_pv("HOLD")
    cmd_end = _action_pv("END")
    cmd_purge = _action_pv("PURGE")
    cmd_pause = _action_pv("PAUSE")
    cmd_resume = _action_pv("RESUME")
    cmd_restart = _action_pv("RESTART")
    turbo = Cpt(EpicsSignal, "TURBO", kind="omitted", put_complete=True, lazy=True)

    actions = Cpt(CS800Actions, "", kind="omitted")

    # -- housekeeping status PVs (omitted; created on first access) -------------------------
    error = _hk("ERROR")
    status_ramp_rate = _hk("RAMPRATE")
    remaining = _hk("REMAINING")
    gas_flow = _hk("GASFLOW")
    evap_heat = _hk("EVAPHEAT")
    suct_heat = _hk("SUCTHEAT")
    back_pressure = _hk("BACKPRESS")
    run_time = _hk("RUNTIME")
    evap_adjust = _hk("EVAPADJUST")
    turbo_mode = _hk("TURBOMODE")
    valve_opening = _hk("VALVEOPENING")
    level = _hk("LEVEL")
    device_type = _hk("DEVICETYPE")
    device_subtype = _hk("DEVICESUBTYPE")
    coldhead_temp = _hk("COLDHEADTEMP")
    shield_temp = _hk("SHIELDTEMP")
    nozzle_temp = _hk("NOZZLETEMP")
    collar_temp = _hk("COLLARTEMP")
    suct_set_temp = _hk("SUCTSETTEMP")
    nozzle_set_temp = _hk("NOZZLESETTEMP")
    sample_holder_temp = _hk("SAMHOLDTEMP")
    cryostat_temp = _hk("CRYOSTATTEMP")
    vac_gauge = _hk("VACGAUGE")
    sample_holder_present = _hk("SAMHOLDPRES")
    elapsed = _hk("ELAPSED")
    sample_heat = _hk("SAMPLEHEAT")
    coldhead_heat = _hk("COLDHEADHEAT")
    shield_heat = _hk("SHIELDHEAT")
    nozzle_heat = _hk("NOZZLEHEAT")
    avg_sample_heat = _hk("AVGSAMPLEHEAT")
    avg_nozzle_heat = _hk("AVGNOZZLEHEAT")
    vac_sensor = _hk("VACSENSOR")

    def __init__(
        self,
        prefix: str = "",
        *,
        name: str,
        tolerance: float = 0.2,
        settle_time: float = 5.0,
        ramp_rate: float = 360,
        status_period: float = 1.0,
        max_resends: int = 2,
        timeout_margin: float = 300.0,
        stale_after: float | str | None = AUTO,
        status_packet_pv: str | None = AUTO,
        put_timeout: float = 10.0,
        connection_timeout: float = 5.0,
        timeout: float | None = None,
        **kwargs: Any,
    ):
        kwargs.setdefault("labels", {"cryostreams"})  # listed by %wa / wh_pos-style helpers
        if status_packet_pv == AUTO:
            status_packet_pv = default_status_packet_pv(prefix)
        self._status_packet_pv = status_packet_pv or f"{prefix}status_packet-unused"
        self._use_status_packet = bool(status_packet_pv)
        super().__init__(prefix, name=name, timeout=timeout, **kwargs)
        #: This device's logger, ``ophyd_cs800.device.<name>`` (see :mod:`ophyd_cs800.logs`).
        self.log = device_logger(self.name)
        self._alarms = AlarmWatch(self.name, self.log)
        self._responses = ResponseTimes()
        self.temperature.name = self.name
        self.tolerance.put(float(tolerance))
        self.settle_time.put(float(settle_time))
        self.ramp_rate.put(ramp_rate)
        self.status_period = float(status_period)
        self.max_resends = int(max_resends)
        self.timeout_margin = float(timeout_margin)
        self.stale_after = stale_after
        self.put_timeout = float(put_timeout)
        self.command_connection_timeout = float(connection_timeout)
        from ophyd_cs800.ca_put_errors import install_put_error_fix

        install_put_error_fix()  # a put the IOC refuses raises at once, never times out
        self._job_lock = threading.RLock()
        # Held around every command write (runner sends, HOLD from stop/timeout, pause,
        # resume, turbo): a command's RRATE/RTEMP/RAMP writes never interleave with another's,
        # and a cancelled runner cannot re-send after stop()'s HOLD.
        self._send_lock = threading.RLock()
        self._runner: JobRunner | None = None
        self._paused = False
        # Counts pause_program() calls, so that a RESUME whose put completes after a newer
        # PAUSE was requested does not clear the paused flag of that newer pause.
        self._pause_gen = 0
        self._pause_lock = threading.Lock()
        self._heartbeat = Heartbeat(time.monotonic())
        self._silent_logged = False
        self.temperature.subscribe(self._temperature_changed, run=False)
        for sig in (self.setpoint, self.target, self.phase, self.run_mode, self.alarm_code,
                    self.evap_temp, self.suct_temp, self.gas_heat):
            sig.subscribe(self._status_changed, run=False)
        self.alarm_code.subscribe(self._alarm_changed, run=False)
        if self._use_status_packet:
            # Created now but connected in the background like the other monitors: ophyd
            # would otherwise wait for a lazy component's connection here, and a device made
            # while its IOC is down (an IPython profile) would raise in its constructor.
            self.lazy_wait_for_connection = False
            try:
                packet = self.status_packet
            finally:
                del self.lazy_wait_for_connection  # back to ophyd's default for the others
            packet.subscribe(self._packet_arrived, run=False)

    # -- positioner basics -------------------------------------------------------------------
    @property
    def egu(self) -> str:
        """Engineering units of the position: ``"K"``."""
        return "K"

    @property
    def precision(self) -> int:
        """Display precision of the position (0.01 K resolution)."""
        return 2

    @property
    def position(self) -> float | None:
        """The current sample gas temperature TEMP in kelvin (``None`` if never received)."""
        if self._position is None and self.temperature.connected:
            try:
                self._position = available(self.temperature.get())
            except Exception:
                return None
        return self._position

    @property
    def limits(self) -> tuple[float, float]:
        """(low, high) target limits in K: DEVICEMINTEMP..DEVICEMAXTEMP, 80..400 if unknown."""
        return rules.limits_from(self._valid_value(self.min_temp),
                                 self._valid_value(self.max_temp))



    @required_for_connection
    def _temperature_changed(self, value: Any = None, timestamp: float | None = None,
                             **kwargs: Any) -> None:
        self._status_changed(obj=self.temperature)
        if available(value) is not None:  # a "not available" reading is no position
            self._set_position(value,
                               timestamp=timestamp if timestamp is not None else time.time())

    def _status_changed(self, obj: Signal | None = None, **kwargs: Any) -> None:
        """Note that a status PV changed: a datagram arrived (see :meth:`Heartbeat.on_monitor`)."""
        severity = None if obj is None else obj.metadata.get("severity")
        self._heartbeat.on_monitor(severity, time.monotonic())

    def _packet_arrived(self, value: Any = None, obj: Signal | None = None,
                        **kwargs: Any) -> None:
        """``status_packet.BINP`` posted (see :meth:`Heartbeat.on_packet`)."""
        severity = None if obj is None else obj.metadata.get("severity")
        self._heartbeat.on_packet(value, severity, self._controller_number(), time.monotonic())

    def _controller_number(self) -> int | None:
        """CTRLNUM from its monitor cache (``None`` until known; never a CA read)."""
        sig = self.controller_number
        value = available(getattr(sig, "_readback", None)) if sig.connected else None
        return None if value is None or value <= 0 else int(value)

    def _alarm_changed(self, value: Any = None, **kwargs: Any) -> None:
        code = available(value)
        try:
            text = str(self.alarm.get()) if self.alarm.connected else ""
        except Exception:
            text = ""
        self._alarms.update(None if code is None else int(code), text)

    def add_alarm_callback(self, callback: AlarmCallback) -> Callable[[], None]:
        """Call ``callback(change)`` on every change of the controller's alarm code (ALARMI).

        ``change`` is an :class:`~ophyd_cs800.alarms.AlarmChange`. Returns a function that
        unsubscribes.

        Every change is also logged on :attr:`log` (WARNING from Oxford level 2). Callbacks
        run on a Channel Access monitor thread: keep them short.
        """
        return self._alarms.subscribe(callback)




    # -- reading the cached state ------------------------------------------------------------
    @staticmethod
    def _valid_value(sig: Signal) -> float | None:
        """Return the cached value of a monitored PV as a float, or None if absent/invalid/NaN.

        The synApps "not available" readings (655.34, 65534, 6553.4) are ``None`` too.
        """
        try:
            if not sig.connected:
                return None
            severity = sig.metadata.get("severity")
            if severity is not None and int(severity) >= INVALID_SEVERITY:
                return None
            value = sig.get()
        except Exception:
            return None
        return available(value)

    def _int_value(self, sig: Signal) -> int | None:
        value = self._valid_value(sig)
        return None if value is None else int(value)

    def _temp_invalid(self) -> bool:
        sig = self.temperature
        if not sig.connected:
            return True
        severity = sig.metadata.get("severity")
        return severity is not None and int(severity) >= INVALID_SEVERITY

    def snapshot(self) -> Snapshot:
        """Return the controller state from the cached monitors (no Channel Access traffic)."""
        try:
            alarm = str(self.alarm.get()) if self.alarm.connected else ""
        except Exception:
            alarm = ""
        temp_invalid = self._temp_invalid()
        temp = self._position if temp_invalid else self._valid_value(self.temperature)
        setpoint, target = self._valid_value(self.setpoint), self._valid_value(self.target)
        phase, run_mode = self._int_value(self.phase), self._int_value(self.run_mode)
        now = time.monotonic()  # after the reads: the values are at least this recent
        period = self.effective_status_period
        snap = Snapshot(
            now=now, temp=temp, temp_invalid=temp_invalid,
            update_age=self._heartbeat.age(now), setpoint=setpoint, target=target,
            phase=phase, run_mode=run_mode, alarm=alarm, status_period=period,
            stale_limit=stale_limit(self.stale_after, period),
        )
        self._log_silence(snap)
        return snap

    def _log_silence(self, snap: Snapshot) -> None:
        """Log once when the controller falls silent, once when it reports again."""
        if snap.silent and not self._silent_logged:
            self._silent_logged = True
            self.log.warning("%s: %s: the controller is silent (stale)", self.name,
                             snap.describe())
        elif not snap.silent and self._silent_logged:
            self._silent_logged = False
            self.log.info("%s: status arrives again (%s)", self.name, snap.describe())

    # -- checks before sending anything -------------------------------------------------------
    def _pvname(self, sig: Signal) -> str:
        """Return the PV name behind a component signal (also for ophyd fake signals)."""
        name = getattr(sig, "pvname", None)
        if name:
            return str(name)
        cpt = getattr(type(sig.parent), sig.attr_name, None)
        return f"{self.prefix}{getattr(cpt, 'suffix', sig.attr_name)}"

    def _require_connected(self, *signals: Signal) -> None:
        for sig in signals:
            if sig.connected:
                continue
            try:
                sig.wait_for_connection(timeout=self.command_connection_timeout)
            except Exception:
                raise CS800StaleError(
                    f"{self.name}: cannot reach {self._pvname(sig)} (not "
                    f"connected within {self.command_connection_timeout:g} s): is the IOC "
                    "running, and does EPICS_CA_ADDR_LIST point at it? Nothing was sent."
                ) from None

    def _check_commandable(self, what: str, *, modes: tuple[RunMode, ...] | None) -> Snapshot:
        """Raise unless comms are enabled, TEMP is valid and the run mode is in ``modes``.

        ``modes=None`` accepts any run mode. Returns the snapshot the checks were made on.
        """
        self._require_connected(self.disable, self.run_mode, self.temperature, self.phase)
        try:  # the raw value: a never-processed bo may carry UDF/INVALID on a C IOC
            disabled = int(self.disable.get())
        except (TypeError, ValueError):
            disabled = None
        snap = self.snapshot()
        rules.check_commandable(self.name, what, disabled=disabled, snap=snap, modes=modes,
                                disable_pv=self._pvname(self.disable),
                                temp_pv=self._pvname(self.temperature))
        return snap

    def check_value(self, value: Any) -> None:
        """Raise :class:`CS800RangeError` unless ``value`` is a temperature both sides accept.

        ``value`` must be a finite temperature (K) that both the controller (:attr:`limits`) and
        the IOC (RTEMP's control limits) accept.
        """
        rules.target_kelvin(self.name, value, self.limits, self._ioc_limits("rtemp"))

    def ioc_limits(self, sig: EpicsSignal) -> Range | None:
        """Return the IOC's own limits on a parameter PV (its CA control limits, DRVL/DRVH).

        ``None`` if it has none. Read fresh from the IOC (a CA read of the control form, no
        write), falling back to the values cached at connection; 0..0 (no limits) or a missing
        value give ``None``.
        """
        meta: dict[str, Any] = dict(sig.metadata)
        pv = getattr(sig, "_read_pv", None)
        if pv is not None and hasattr(pv, "get_ctrlvars"):
            try:
                meta.update(pv.get_ctrlvars(timeout=self.put_timeout) or {})
            except Exception:  # use the cached values
                pass
        record = self._pvname(sig).rsplit(":", 1)[-1]
        return ioc_range(meta.get("lower_ctrl_limit"), meta.get("upper_ctrl_limit"), record)

    def _ioc_limits(self, attr: str) -> Range | None:
        """:meth:`ioc_limits` of the parameter PV of component ``attr`` (``"rtemp"``, ...)."""
        return self.ioc_limits(getattr(self, attr))

    # -- writing PVs (runs on the job thread) ------------------------------------------------
    def _put(self, sig: EpicsSignal, value: Any) -> None:
        sig.put(value, wait=True, timeout=self.put_timeout)

    def _writer(self, writes: rules.Writes, checked: str | None) -> Callable[[], None]:
        """Return a ``send`` callable that writes ``(attribute, value)`` pairs in order.

        The ``checked`` temperature parameter is read back after the write (see
        :meth:`_put_checked`).
        """
        def send() -> None:
            for attr, value in writes:
                if attr == checked:
                    self._put_checked(getattr(self, attr), value)
                else:
                    self._put(getattr(self, attr), value)

        return send

    def _put_checked(self, sig: EpicsSignal, value: float) -> None:
        """Write a temperature parameter and check the IOC did not clamp it (DRVL/DRVH)."""
        self._put(sig, value)
        try:
            echo = float(sig.get(use_monitor=False))
        except Exception:
            return
        error = rules.clamp_error(self.name, self._pvname(sig), value, echo)
        if error is not None:
            raise error

    # -- jobs ---------------------------------------------------------------------------------
    def _start(self, job: Job, status: StatusBase) -> StatusBase:
        """Supersede any running job, then follow ``job`` on a new runner thread.

        The same command again (e.g. replayed by the RunEngine after a pause) takes over: the
        old status finishes with the new one. A different command ends the old one (see
        :func:`~ophyd_cs800.move_status.supersede`).
        """
        with self._job_lock:
            taken_over = supersede(self._runner, job, status)
            self._paused = False  # any new command ends a suspended programme
            runner = JobRunner(
                job,
                status,
                self.snapshot,
                status_period=self.status_period,
                max_resends=self.max_resends,
                responses=self._responses,
                log=self.log,
                paused=lambda: self._paused,
                on_timeout=self._send_hold if isinstance(job, MoveJob) else None,
                on_finish=self._job_finished,
                send_lock=self._send_lock,
                already_accepted=taken_over,
            )
            self._runner = runner
            if isinstance(job, MoveJob):
                self._moving = True
                self._started_moving = True
                self._run_subs(sub_type=self.SUB_START, timestamp=time.time())
            runner.start()
        return status

    def _job_finished(self, runner: JobRunner) -> None:
        with self._job_lock:
            if self._runner is runner:
                self._runner = None
                if isinstance(runner.job, MoveJob):
                    self._moving = False
        if isinstance(runner.job, MoveJob) and runner.status.success:
            self._run_subs(sub_type=self.SUB_DONE, timestamp=time.time())

    def _finished_status(self) -> DeviceStatus:
        status = DeviceStatus(self, call_stop_on_failure=False)
        status.set_finished()
        return status

    def _send_hold(self) -> None:
        self._paused = False
        with self._send_lock:
            self.log.info("%s: sending HOLD (the move timed out)", self.name)
            self._put(self.cmd_hold, 1)


    # -- the positioner interface -------------------------------------------------------------
    def set(
        self,
        new_position: float,
        *,
        rate: float | None = None,
        cool: bool = False,
        timeout: float | None = None,
        moved_cb: Callable[..., None] | None = None,
        wait: bool = False,
    ) -> MoveStatus:
        """Ramp (or Cool) to ``new_position`` kelvin; return a status done when it is there.

        Parameters
        ----------
        new_position : float
            Target temperature in K, within :attr:`limits`.
        rate : float | None, optional
            Ramp rate in whole K/h, 1-360 (default: the ``ramp_rate`` signal).
        cool : bool, optional
            Send Cool (as fast as possible) instead of Ramp; ``rate`` must be None.
        timeout : float | None, optional
            Seconds before the move fails (default: :attr:`timeout` if set, else
            ``1.1 * |dT| / rate + timeout_margin + settle_time``).
        moved_cb : Callable[..., None] | None, optional
            Called with ``obj=self`` when the move finishes (ophyd compatibility).
        wait : bool, optional
            Block until the move finishes (for interactive use outside a plan).

        Returns
        -------
        MoveStatus
            Done when the controller is there. Set on the status later: not accepted after
            re-sends, timeout (HOLD is sent), stale controller, shutdown, or interrupted (HOLD
            from elsewhere, stop()). A newer command of this device (another set, hold,
            plateau, ...) ends the status successfully: the move is over, replaced by the
            newer command.

        Raises
        ------
        CS800RangeError
            Before anything is sent: target or rate out of range.
        CS800CommsDisabledError
            Before anything is sent: comms are disabled.
        CS800ShutDownError
            Before anything is sent: shut down, restart it first.
        CS800StaleError
            Before anything is sent: not connected / not reporting.
        """
        snap = self._check_commandable("move", modes=rules.READY_OR_RUN)
        job = rules.move_job(
            self.name, snap, new_position, self._writer, limits=self.limits,
            ioc_limits=self._ioc_limits, rate=rate, default_rate=self.ramp_rate.get(),
            cool=cool, tolerance=float(self.tolerance.get()),
            settle_time=float(self.settle_time.get()),
            timeout=self.timeout if timeout is None else timeout,
            timeout_margin=self.timeout_margin)
        target = job.target
        status = MoveStatus(self, target, timeout=None, settle_time=0,
                            call_stop_on_failure=False)
        if moved_cb is not None:
            status.add_callback(lambda st: moved_cb(obj=self))
        self._start(job, status)
        if wait:
            status.wait()
        return status

    def move(self, position: float, wait: bool = True, timeout: float | None = None,
             moved_cb: Callable[..., None] | None = None, **kwargs: Any) -> MoveStatus:
        """Ramp to ``position`` K and, by default, wait for it (see :meth:`set`)."""
        return self.set(position, wait=wait, timeout=timeout, moved_cb=moved_cb, **kwargs)

    def cool(self, target: float, *, timeout: float | None = None) -> MoveStatus:
        """Go to ``target`` K as fast as possible (Cool command); same status as :meth:`set`."""
        return self.set(target, cool=True, timeout=timeout)

    def stop(self, *, success: bool = False) -> None:
        """Stop a move: with ``success=False`` send HOLD (hold the current temperature).

        ``stop(success=True)``, which the RunEngine calls after every plan (and on pause),
        does nothing: a ramp started with ``wait=False`` keeps going. ``stop()`` sends HOLD if
        this device is following a command or the controller is ramping/cooling, and fails
        the running move's status. Never sends STOP (which would shut the cooler down).
        """
        if success:
            return
        # The send lock waits for a command write in flight (at most one put) and keeps the
        # runner from re-sending its command after this HOLD: it is closed before release.
        with self._job_lock, self._send_lock:
            runner = self._runner
            active = runner is not None and not runner.closed
            snap = self.snapshot()
            if not rules.stop_sends_hold(active, snap):
                return
            self._paused = False
            hold_error: Exception | None = None
            try:
                self.log.info("%s: sending HOLD (stop())", self.name)
                self.cmd_hold.put(1, wait=False)
            except Exception as exc:  # still end the move; say that HOLD did not go out
                hold_error = exc
            if runner is not None and active:
                runner.cancel(rules.stopped_error(self.name, runner.job.what, snap, hold_error))

    # -- other commands (each returns a status; plans use them through cs.actions) ------------
    def _command(self, job: Job | None) -> StatusBase:
        """Follow ``job`` with a new device status (a finished one when ``job`` is None)."""
        if job is None:
            return self._finished_status()
        return self._start(job, DeviceStatus(self, call_stop_on_failure=False))

    def plateau(self, minutes: float, *, timeout: float | None = None) -> StatusBase:
        """Hold the current temperature for ``minutes`` (whole minutes, 1-1440), then Hold.

        The status finishes when the controller leaves the Plat phase.

        Parameters
        ----------
        minutes : float
            Plateau duration in whole minutes, 1-1440.
        timeout : float or None, optional
            Seconds before the status fails (default: ``minutes * 60 + timeout_margin``).

        Returns
        -------
        StatusBase
            Finished when the controller leaves the Plat phase.

        Raises
        ------
        CS800Error
            Before sending, like :meth:`set` (range, comms, shut down).
        """
        self._check_commandable("plateau", modes=rules.READY_OR_RUN)
        return self._command(rules.plateau_job(
            self.name, minutes, self._writer, ioc_limits=self._ioc_limits, timeout=timeout,
            timeout_margin=self.timeout_margin))

    def hold(self, *, timeout: float | None = None) -> StatusBase:
        """Hold the current temperature indefinitely (ends the programme and any move).

        Done when PHASE reads Hold in Run mode. In Ready this starts the gas flow.
        """
        self._check_commandable("hold", modes=rules.READY_OR_RUN)
        return self._command(rules.hold_job(self.name, self._writer, timeout=timeout,
                                            timeout_margin=self.timeout_margin))

    def end(self, rate: float = 360, *, timeout: float | None = None) -> StatusBase:
        """Ramp to 300 K at ``rate`` (whole K/h, 1-360), then shut down (Shutdown OK).

        A ramp afterwards raises "controller is shut down".

        Parameters
        ----------
        rate : float, optional
            Ramp rate in whole K/h, 1-360.
        timeout : float or None, optional
            Seconds before the status fails (default: ``1.1 * |300 K - TEMP| / rate`` in
            hours, plus ``timeout_margin`` s).

        Returns
        -------
        StatusBase
            Finished when the run mode reads Shutdown OK (at once if already shut down,
            without sending).

        Raises
        ------
        CS800RangeError
            For a rate outside 1-360 K/h, checked before anything else.
        CS800Error
            Before sending, when comms are disabled or the controller is silent.
        """
        rate_k_h = rules.end_rate(self.name, rate)
        snap = self._check_commandable("end", modes=None)
        return self._command(rules.end_job(
            self.name, snap, rate_k_h, self._writer, ioc_limits=self._ioc_limits,
            timeout=timeout, timeout_margin=self.timeout_margin))

    def purge(self, *, timeout: float = rules.PURGE_TIMEOUT_S) -> StatusBase:
        """Warm up to room temperature, then shut down; the status finishes at Shutdown OK."""
        snap = self._check_commandable("purge", modes=None)
        return self._command(rules.purge_job(self.name, snap, self._writer, timeout=timeout))

    def restart(self, *, timeout: float = rules.RESTART_TIMEOUT_S) -> StatusBase:
        """Restart after a shutdown; the status finishes in Ready (Startup OK) or Run.

        Does nothing (finished status) if the controller is already Ready or Running.
        """
        snap = self._check_commandable("restart", modes=None)
        return self._command(rules.restart_job(self.name, snap, self._writer, timeout=timeout))

    def _fire(self, sig: EpicsSignal, value: Any, what: str,
              before: Callable[[], None] | None = None,
              undo: Callable[[], None] | None = None,
              after: Callable[[], None] | None = None) -> StatusBase:
        """Write one command PV with put completion on a thread; the status follows the write.

        ``before`` runs after the checks, just before the write is started; ``undo`` runs if
        the write fails (the controller never got the command); ``after`` runs once the write
        succeeded, before the status finishes.
        """
        self._check_commandable(what, modes=None)
        status = DeviceStatus(self, call_stop_on_failure=False)

        def write() -> None:
            try:
                with self._send_lock:
                    self.log.info("%s: sending %s (%s = %r)", self.name, what.upper(),
                                  self._pvname(sig), value)
                    self._put(sig, value)
            except Exception as exc:
                if undo is not None:
                    undo()
                status.set_exception(rules.send_failure(self.name, what, exc))
            else:
                if after is not None:
                    after()
                status.set_finished()

        if before is not None:
            before()
        threading.Thread(target=write, name=f"cs800-{self.name}-{what}", daemon=True).start()
        return status

    def _pause(self) -> None:
        with self._pause_lock:
            self._pause_gen += 1
            self._paused = True

    def _unpause(self, gen: int | None = None) -> None:
        """Clear the paused flag; with ``gen``, only if no pause was requested since then."""
        with self._pause_lock:
            if gen is None or gen == self._pause_gen:
                self._paused = False

    def pause_program(self) -> StatusBase:
        """Suspend the programme (a temporary Hold); a running move waits, its timeout paused."""
        return self._fire(self.cmd_pause, 1, "pause", self._pause, undo=self._unpause)

    def resume_program(self) -> StatusBase:
        """Resume the programme suspended by :meth:`pause_program`.

        A running move counts as paused until the RESUME write has completed: until then the
        controller still holds away from the target, which must not read as an interruption.
        A pause requested while the RESUME is being written stays in force (it is sent after).
        """
        with self._pause_lock:
            gen = self._pause_gen
        return self._fire(self.cmd_resume, 1, "resume", after=lambda: self._unpause(gen))

    def set_turbo(self, on: Any) -> StatusBase:
        """Switch turbo gas flow (10 l/min) on or off; writing TURBO sends the command at once."""
        return self._fire(self.turbo, rules.turbo_value(self.name, on), "turbo")

    # -- presentation: summary(), summary_text() and repr come from FollowedState -----------

    def destroy(self) -> None:
        """End any command being followed (its status fails), then disconnect all PVs."""
        runner = self._runner
        if runner is not None:
            runner.cancel(CS800Error(f"{self.name}: the device was destroyed during the "
                                     f"{runner.job.what}."))
        super().destroy()

    def _repr_info(self):  # noqa: D102 - ophyd hook
        for key, value in super()._repr_info():
            if key != "settle_time":  # PositionerBase's number; ours is the settle_time signal
                yield key, value
        yield ("egu", "K")


def error_message(exc: BaseException) -> str:
    """Return the CS800 sentence behind ``exc`` (unwrapping bluesky's ``FailedStatus``)."""
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, CS800Error):
        seen = seen.__cause__ or seen.__context__
    return str(seen if seen is not None else exc)


__all__ = [
    "CS800",
    "Action",
    "CS800Actions",
    "error_message",
    "phase_name",
]
