"""The CryoStream 800 as an ophyd-async device (Channel Access through aioca).

``ophyd_cs800.aio.CS800`` talks to the same synApps ``Oxford_CS800.db`` PVs as the ophyd
:class:`ophyd_cs800.device.CS800` and follows every command with the very same rules
(:mod:`ophyd_cs800.command_rules` decides what is checked and written,
:class:`ophyd_cs800.move_status.JobTracker` when a command is accepted, re-sent, done or
failed). Only the driving differs: the rules run in an asyncio task (the status's task), fed
by the signals' monitor subscriptions, instead of a thread.

Needs the ``[async]`` extra (``ophyd-async[ca]``, Python >= 3.11)::

    from ophyd_async.core import init_devices
    from ophyd_cs800.aio import CS800
    with init_devices():
        cs0 = CS800("xxx:CS0:")          # named cs0 by init_devices
    RE(ramp(cs0, 150))                   # the plans of ophyd_cs800.plans take either family

Temperatures are kelvin, rates K/h, times seconds (``time.monotonic()``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import numpy as np
from bluesky.protocols import Locatable, Location, Movable, Stoppable, Subscribable

try:
    from ophyd_async.core import (
        Array1D,
        AsyncStatus,
        Device,
        StandardReadable,
        StrictEnum,
        SupersetEnum,
        WatchableAsyncStatus,
        WatcherUpdate,
        soft_signal_rw,
    )
    from ophyd_async.core import StandardReadableFormat as Format
    from ophyd_async.epics.core import epics_signal_r, epics_signal_rw, epics_signal_w
except ImportError as exc:  # the core package works without it
    raise ImportError(
        "ophyd_cs800.aio needs the [async] extra: pip install 'ophyd-cs800[async]' "
        "(ophyd-async[ca], Python >= 3.11); the ophyd device ophyd_cs800.CS800 does not."
    ) from exc

from ophyd_cs800 import command_rules as rules
from ophyd_cs800.alarms import AlarmCallback, AlarmWatch
from ophyd_cs800.device import default_status_packet_pv
from ophyd_cs800.device_state import FollowedState
from ophyd_cs800.errors import CS800Error, CS800StaleError
from ophyd_cs800.heartbeat import Heartbeat
from ophyd_cs800.limits import Range, available, ioc_range
from ophyd_cs800.logs import device_logger
from ophyd_cs800.move_status import (
    AUTO,
    DONE,
    TIMEOUT,
    FollowedJob,
    Job,
    JobTracker,
    MoveJob,
    ResponseTimes,
    Snapshot,
    stale_limit,
    supersede,
)
from ophyd_cs800.protocol import PHASE_STRINGS, RUN_MODE_STRINGS

#: ophyd-async reports CA severity INVALID (3) as -1.
_INVALID = -1


class Phase(SupersetEnum):
    """PHASE as text: a superset enum.

    The synApps C IOC serves the first 11 strings, this package's IOC all 13 (adding Regen, Regen
    2), and a strict enum would refuse one of them.
    """

    RAMP = "Ramp"
    COOL = "Cool"
    PLAT = "Plat"
    HOLD = "Hold"
    END = "End"
    PURGE = "Purge"
    DELETE_PHASE = "Delete Phase"
    LOAD_PROGRAM = "Load Program"
    SAVE_PROGRAM = "Save Program"
    SOAK = "Soak"
    WAIT = "Wait"
    REGEN = "Regen"
    REGEN_2 = "Regen 2"


class RunMode(StrictEnum):
    """RUNMODE as text (the 7 strings of both IOCs)."""

    STARTUP = "Startup"
    STARTUP_FAIL = "Startup Fail"
    STARTUP_OK = "Startup OK"
    RUN = "Run"
    SETUP = "Setup"
    SHUTDOWN_OK = "Shutdown OK"
    SHUTDOWN_FAIL = "Shutdown Fail"


#: Signals whose monitors feed the snapshot and the heartbeat (a posted value that is not
#: INVALID is a datagram; the noisy ones move with nearly every datagram). Attribute names
#: are those of the ophyd device.
_STATUS_SIGNALS = ("temperature", "setpoint", "target", "phase", "run_mode", "alarm",
                   "alarm_code", "evap_temp", "suct_temp", "gas_heat")
#: Parameter PVs whose IOC limits (DRVL/DRVH, CA control limits) are checked before writing.
_PARAMS = ("rrate", "rtemp", "ctemp", "ptime", "erate")
#: Signals the checks before a command read (and CTRLNUM, to recognise our datagrams).
_CHECK_SIGNALS = ("disable", "min_temp", "max_temp", "controller_number")
#: Soft configuration signals the move rules use.
_TUNABLES = ("ramp_rate", "tolerance", "settle_time")


def _index(value: Any, strings: tuple[str, ...]) -> int | None:
    """Return the int of an enum PV value (``Phase.RAMP`` or ``"Ramp"`` -> 0), or None."""
    text = getattr(value, "value", value)
    return strings.index(text) if text in strings else None


class AsyncJobRunner(FollowedJob):
    """Follows one :class:`Job` in an asyncio task.

    The same :class:`JobTracker` decisions as the ophyd device's thread, fed by monitor callbacks
    (:meth:`wake`) and a poll timer.

    Parameters: as :class:`ophyd_cs800.move_status.JobRunner`; ``send_lock`` is an
    ``asyncio.Lock``, ``job.send`` and ``on_timeout`` are coroutine functions.
    """

    def __init__(self, job: Job, snapshot: Callable[[], Snapshot], *, status_period: float,
                 max_resends: int, responses: ResponseTimes, log: Any,
                 paused: Callable[[], bool], send_lock: asyncio.Lock,
                 on_timeout: Callable[[], Awaitable[None]] | None = None,
                 on_finish: Callable[[AsyncJobRunner], None] | None = None,
                 already_accepted: bool = False):
        super().__init__(job, JobTracker(job, status_period=status_period,
                                         max_resends=max_resends, responses=responses, log=log,
                                         already_accepted=already_accepted))
        self.poll_interval = min(0.25, status_period / 4)
        self._snapshot = snapshot
        self._paused = paused
        self._send_lock = send_lock
        self._on_timeout = on_timeout
        self._on_finish = on_finish
        self._wake = asyncio.Event()
        self._outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._successor: AsyncJobRunner | None = None
        self._send_once = False

    def wake(self) -> None:
        """Look again now (a monitor posted)."""
        self._wake.set()

    def cancel(self, exc: BaseException | None) -> bool:
        """End the job now: fail it with ``exc`` (or finish it if ``None``).

        Finished without an error means replaced by a newer command: if this one was not
        sent yet (its task had not run), it is still sent once, so the controller gets the
        commands in the order they were given, as from the ophyd device's threads.
        """
        self._send_once = exc is None and self.tracker.sends == 0
        return self._finish(exc)

    def hand_over(self, successor: AsyncJobRunner) -> bool:
        """Stop following; finish the way ``successor`` (the same command again) finishes."""
        if self._closed:
            return False
        self._closed = True
        self._successor = successor
        self._wake.set()
        return True

    def _finish(self, exc: BaseException | None) -> bool:
        if self._closed:
            return False
        self._closed = True
        self.tracker.note_end(exc)
        if exc is None:
            self._outcome.set_result(None)
        else:
            self._outcome.set_exception(exc)
        self._wake.set()
        if self._on_finish is not None:
            self._on_finish(self)
        return True

    async def result(self) -> None:
        """Wait for the job's end: return when it finished, raise its failure."""
        runner: AsyncJobRunner = self
        while True:
            await runner._wait_closed()
            if runner._successor is None:
                return await runner._outcome
            runner = runner._successor

    async def _wait_closed(self) -> None:
        while not self._closed:
            self._wake.clear()
            await self._wake.wait()

    async def _send(self, why: str = "") -> bool:
        async with self._send_lock:
            if self._closed and not self._send_once:  # stopped or taken over: send nothing
                return False
            self._send_once = False
            self.tracker.note_send(why)
            try:
                # this family's jobs send with a coroutine function (CS800._writer)
                await cast("Awaitable[None]", self.job.send())
            except Exception as exc:
                error = self.tracker.send_error(exc)
            else:
                return True
        self._finish(error)
        return False

    async def follow(self) -> AsyncIterator[Snapshot]:
        """Send and follow the job; yields each snapshot looked at (for progress updates)."""
        tracker = self.tracker
        try:
            if not tracker.accepted and not await self._send():
                return
            tracker.begin(time.monotonic())
            while not self._closed:
                now, paused = time.monotonic(), self._paused()
                snap = self._snapshot()
                step = tracker.step(snap, now, paused=paused)
                if step.kind == "send":
                    if not await self._send(step.why):
                        return
                elif step is DONE:
                    self._finish(None)
                elif step is TIMEOUT:
                    hold_error: BaseException | None = None
                    if self._on_timeout is not None:
                        try:
                            await self._on_timeout()
                        except Exception as err:  # report, but the timeout is the error
                            hold_error = err
                    self._finish(tracker.timeout_error(snap, hold_error,
                                                       held=self._on_timeout is not None))
                elif step.error is not None:
                    self._finish(step.error)
                else:
                    yield snap
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                    except asyncio.TimeoutError:
                        pass
        finally:  # the status task was cancelled (e.g. the RunEngine aborted): end the job
            self._finish(CS800Error(f"{self.job.device}: following the {self.job.what} "
                                    "was cancelled."))


class Action(Device, Movable[Any]):
    """A command of the parent :class:`CS800` as a settable child: ``set(value)`` runs it.

    Plans use these through ``bps.abs_set(cs.actions.plateau, 5)``, as with the ophyd device.
    ``method`` names the ``CS800`` method, called with ``value`` unless ``takes_value`` is
    False.
    """

    def __init__(self, method: str, takes_value: bool = True, name: str = ""):
        self._method = method
        self._takes_value = takes_value
        super().__init__(name=name)

    def set(self, value: Any = 1, **kwargs: Any) -> AsyncStatus:
        """Run the command on the CS800 that owns this action; returns its status."""
        actions = self.parent  # Action -> CS800Actions -> CS800 (also inside a bigger device)
        if actions is None or actions.parent is None:
            raise RuntimeError(f"{self.name}: this action is not part of a CS800 device")
        cs = actions.parent
        run = getattr(cs, self._method)
        return run(value, **kwargs) if self._takes_value else run(**kwargs)


class CS800Actions(Device):
    """The CS800 commands as settable children (used by :mod:`ophyd_cs800.plans`)."""

    def __init__(self, name: str = ""):
        self.plateau = Action("plateau")
        self.hold = Action("hold", takes_value=False)
        self.end = Action("end")
        self.purge = Action("purge", takes_value=False)
        self.restart = Action("restart", takes_value=False)
        self.pause_program = Action("pause_program", takes_value=False)
        self.resume_program = Action("resume_program", takes_value=False)
        self.turbo = Action("set_turbo")
        super().__init__(name=name)


class CS800(FollowedState, StandardReadable, Locatable[float], Stoppable,
            Subscribable[float]):
    """An Oxford CryoStream 800 on the synApps ``Oxford_CS800.db`` PVs, in ophyd-async.

    The same positioner in kelvin as :class:`ophyd_cs800.device.CS800` (same parameters,
    readings, configuration, commands, errors and move rules); data keys use ``_`` as the
    ophyd device does (``cs0``, ``cs0_setpoint``, ...). PHASE and RUNMODE read as text
    (:class:`Phase`, :class:`RunMode`), and as plain strings ``phase_name``/``run_mode_name``
    (the ophyd device's readings of the same name). Connect with ``init_devices()``
    (``mock=True`` for tests) or ``await cs0.connect()``.

    The keyword-only ``tolerance``, ``settle_time``, ``ramp_rate``, ``status_period``,
    ``max_resends``, ``timeout_margin``, ``stale_after``, ``put_timeout``, ``timeout`` and
    ``status_packet_pv`` are as for the ophyd device (K, s, K/h). The status-packet PV is the
    heartbeat when it connects (not a child: an IOC without it still connects; then the
    monitors are the heartbeat).

    Parameters
    ----------
    prefix : str
        The controller's PV prefix ``$(P)$(R)``, e.g. ``"xxx:CS0:"``.
    name : str
        The device name; the readback TEMP is reported under it.
    """

    def __init__(self, prefix: str = "", name: str = "", *, tolerance: float = 0.2,
                 settle_time: float = 5.0, ramp_rate: float = 360, status_period: float = 1.0,
                 max_resends: int = 2, timeout_margin: float = 300.0,
                 stale_after: float | str | None = AUTO, put_timeout: float = 10.0,
                 timeout: float | None = None, status_packet_pv: str | None = AUTO):
        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.temperature = epics_signal_r(float, prefix + "TEMP")
        with self.add_children_as_readables():
            self.setpoint = epics_signal_r(float, prefix + "SETPOINT")
            self.target = epics_signal_r(float, prefix + "TARGETTEMP")
            self.phase = epics_signal_r(Phase, prefix + "PHASE")
            self.run_mode = epics_signal_r(RunMode, prefix + "RUNMODE")
            # PHASE/RUNMODE as plain text too, under the ophyd device's data keys
            # (cs0_phase_name, cs0_run_mode_name): both families' documents have the same keys
            self.phase_name = epics_signal_r(str, prefix + "PHASE")
            self.run_mode_name = epics_signal_r(str, prefix + "RUNMODE")
            self.alarm = epics_signal_r(str, prefix + "ALARM")
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.ramp_rate = soft_signal_rw(float, float(ramp_rate))
            self.tolerance = soft_signal_rw(float, float(tolerance))
            self.settle_time = soft_signal_rw(float, float(settle_time))
            self.controller_number = epics_signal_r(float, prefix + "CTRLNUM")
            self.firmware = epics_signal_r(float, prefix + "VER")
        self.disable = epics_signal_rw(bool, prefix + "DISABLE")
        self.min_temp = epics_signal_r(float, prefix + "DEVICEMINTEMP")
        self.max_temp = epics_signal_r(float, prefix + "DEVICEMAXTEMP")
        # the heartbeat's noisy status PVs and the alarm path
        self.alarm_code = epics_signal_r(float, prefix + "ALARMI")
        self.evap_temp = epics_signal_r(float, prefix + "EVAPTEMP")
        self.suct_temp = epics_signal_r(float, prefix + "SUCTTEMP")
        self.gas_heat = epics_signal_r(float, prefix + "GASHEAT")
        # command parameters, and command records processed through .PROC (never STOP:
        # command 19 shuts the cooler down)
        self.rrate = epics_signal_rw(float, prefix + "RRATE")
        self.rtemp = epics_signal_rw(float, prefix + "RTEMP")
        self.ctemp = epics_signal_rw(float, prefix + "CTEMP")
        self.ptime = epics_signal_rw(float, prefix + "PTIME")
        self.erate = epics_signal_rw(float, prefix + "ERATE")
        self.cmd_ramp = epics_signal_w(int, prefix + "RAMP.PROC")
        self.cmd_cool = epics_signal_w(int, prefix + "COOL.PROC")
        self.cmd_plat = epics_signal_w(int, prefix + "PLAT.PROC")
        self.cmd_hold = epics_signal_w(int, prefix + "HOLD.PROC")
        self.cmd_end = epics_signal_w(int, prefix + "END.PROC")
        self.cmd_purge = epics_signal_w(int, prefix + "PURGE.PROC")
        self.cmd_pause = epics_signal_w(int, prefix + "PAUSE.PROC")
        self.cmd_resume = epics_signal_w(int, prefix + "RESUME.PROC")
        self.cmd_restart = epics_signal_w(int, prefix + "RESTART.PROC")
        self.turbo = epics_signal_rw(bool, prefix + "TURBO")
        self.actions = CS800Actions()
        self.prefix = prefix
        self.status_period = float(status_period)
        self.max_resends = int(max_resends)
        self.timeout_margin = float(timeout_margin)
        self.stale_after = stale_after
        self.put_timeout = float(put_timeout)
        self.timeout = timeout
        self._readings: dict[str, dict[str, Any]] = {}
        self._last_temp: float | None = None
        self._heartbeat = Heartbeat(time.monotonic())
        self._responses = ResponseTimes()
        self._ioc_ranges: dict[str, Range | None] = {}
        self._alarms: AlarmWatch | None = None
        if status_packet_pv == AUTO:
            status_packet_pv = default_status_packet_pv(prefix)
        self._status_packet_pv = status_packet_pv
        self._status_packet: Any = None
        self._runner: AsyncJobRunner | None = None
        self._send_lock: asyncio.Lock | None = None
        self._paused = False
        self._pause_gen = 0
        self._subscribed = False
        super().__init__(name=name)

    # -- naming and connection ---------------------------------------------------------------
    def set_name(self, name: str, *, child_name_separator: str | None = None) -> None:
        """Name the device; TEMP reads under ``name``, the others as ``name_child``.

        The separator is always ``_`` (``init_devices`` passes ``-``), so the data keys are
        those of the ophyd device.
        """
        super().set_name(name, child_name_separator="_")
        self.temperature.set_name(name)

    async def connect(self, mock: Any = False, timeout: float = 10.0,
                      force_reconnect: bool = False) -> None:
        """Connect the PVs (``mock=True``: ophyd-async mock mode), then monitor the status."""
        await super().connect(mock=mock, timeout=timeout, force_reconnect=force_reconnect)
        if self._send_lock is None:
            self._send_lock = asyncio.Lock()
        self._alarms = AlarmWatch(self.name, self.log)
        for attr in _PARAMS:  # the IOC's own limits: fixed record fields, read once
            described = await getattr(self, attr).describe()
            control = next(iter(described.values())).get("limits", {}).get("control", {})
            self._ioc_ranges[attr] = ioc_range(control.get("low"), control.get("high"),
                                               attr.upper())
        if not self._subscribed:
            self._subscribed = True
            for attr in (*_STATUS_SIGNALS, *_CHECK_SIGNALS, *_TUNABLES):
                getattr(self, attr).subscribe_reading(self._monitor(attr))
            await self._connect_status_packet(mock, timeout)
        # The first monitor of each PV follows the connection: wait for them (bounded), so a
        # command right after connecting sees the controller's state, not "unknown".
        deadline = time.monotonic() + timeout
        wanted = (*_STATUS_SIGNALS, *_CHECK_SIGNALS, *_TUNABLES)
        while (any(attr not in self._readings for attr in wanted)
               and time.monotonic() < deadline):
            await asyncio.sleep(0.01)

    async def _connect_status_packet(self, mock: Any, timeout: float) -> None:
        """Monitor the status server's datagram PV as the heartbeat, if it connects."""
        if not self._status_packet_pv:
            return
        sig = epics_signal_r(Array1D[np.uint8], self._status_packet_pv + ".BINP",
                             name=f"{self.name}_status_packet")
        try:
            await sig.connect(mock=mock, timeout=timeout)
        except Exception as exc:  # the monitors stay the heartbeat
            self.log.info("%s: no status-packet heartbeat (%s): %s", self.name,
                          self._status_packet_pv, exc)
            return
        self._status_packet = sig

        def arrived(readings: dict[str, Any]) -> None:
            reading = next(iter(readings.values()))
            severity = reading.get("alarm_severity", 0)
            number = self._value("controller_number")
            self._heartbeat.on_packet(reading["value"], 3 if severity == _INVALID else severity,
                                      None if not number else int(number), time.monotonic())

        sig.subscribe_reading(arrived)

    def _monitor(self, attr: str) -> Callable[[dict[str, Any]], None]:
        status = attr in _STATUS_SIGNALS

        def changed(readings: dict[str, Any]) -> None:
            reading = next(iter(readings.values()))
            self._readings[attr] = reading
            valid = reading.get("alarm_severity", 0) != _INVALID
            if status:  # a datagram arrived (unless it merely turned INVALID)
                self._heartbeat.on_monitor(0 if valid else 3, time.monotonic())
            if attr == "temperature" and self._number(reading) is not None:
                self._last_temp = self._number(reading)
            if attr == "alarm_code" and self._alarms is not None:
                code = self._number(reading)
                text = self._readings.get("alarm", {}).get("value", "")
                self._alarms.update(None if code is None else int(code), str(text))
            runner = self._runner
            if runner is not None:
                runner.wake()

        return changed

    # -- the cached state ---------------------------------------------------------------------
    @staticmethod
    def _number(reading: dict[str, Any] | None) -> float | None:
        """Return a reading's value as a float; None if INVALID, no number or "not available"."""
        if reading is None or reading.get("alarm_severity", 0) == _INVALID:
            return None
        return available(reading["value"])

    def _value(self, attr: str) -> float | None:
        return self._number(self._readings.get(attr))

    def _tunable(self, attr: str) -> float:
        return float(self._readings[attr]["value"])

    def _enum(self, attr: str, strings: tuple[str, ...]) -> int | None:
        reading = self._readings.get(attr)
        if reading is None or reading.get("alarm_severity", 0) == _INVALID:
            return None
        return _index(reading["value"], strings)

    def snapshot(self) -> Snapshot:
        """Return the controller state from the monitored values (no Channel Access traffic)."""
        temp_reading = self._readings.get("temperature")
        temp_invalid = temp_reading is None or temp_reading.get("alarm_severity") == _INVALID
        alarm = self._readings.get("alarm")
        now = time.monotonic()
        period = self.effective_status_period
        return Snapshot(
            now=now, temp=self._last_temp if temp_invalid else self._value("temperature"),
            temp_invalid=temp_invalid, update_age=self._heartbeat.age(now),
            setpoint=self._value("setpoint"), target=self._value("target"),
            phase=self._enum("phase", PHASE_STRINGS),
            run_mode=self._enum("run_mode", RUN_MODE_STRINGS),
            alarm="" if alarm is None else str(alarm["value"]),
            status_period=period, stale_limit=stale_limit(self.stale_after, period),
        )

    @property
    def log(self) -> Any:  # a logging.Logger (ophyd-async's Device.log is an adapter)
        """The device's logger, ``ophyd_cs800.device.<name>`` (as the ophyd device's)."""
        return device_logger(self.name)




    def add_alarm_callback(self, callback: AlarmCallback) -> Callable[[], None]:
        """Call ``callback(change)`` on every change of the alarm code (ALARMI), in the event loop.

        Returns a function that unsubscribes (as the ophyd device).
        """
        if self._alarms is None:
            raise CS800StaleError(f"{self.name}: connect the device first.")
        return self._alarms.subscribe(callback)

    def ioc_limits(self, attr: str) -> Range | None:
        """Return the IOC's own limits (DRVL/DRVH, read at connection) of a parameter, or None."""
        return self._ioc_ranges.get(attr)

    @property
    def limits(self) -> tuple[float, float]:
        """(low, high) target limits in K: DEVICEMINTEMP..DEVICEMAXTEMP, 80..400 if unknown."""
        return rules.limits_from(self._value("min_temp"), self._value("max_temp"))

    @property
    def position(self) -> float | None:
        """The last valid TEMP in K (``None`` before the first monitor)."""
        return self._last_temp





    # -- checks before anything is written ----------------------------------------------------
    def _check_commandable(self, what: str, *, modes: tuple[Any, ...] | None) -> Snapshot:
        if not self._subscribed or "run_mode" not in self._readings:
            raise CS800StaleError(
                f"{self.name}: not connected, so the {what} was not sent: connect it first "
                f"(with init_devices(), or await {self.name}.connect()).")
        disable = self._readings.get("disable")
        disabled = None
        if disable is not None and disable.get("value") is not None:
            disabled = int(bool(disable["value"]))
        snap = self.snapshot()
        rules.check_commandable(self.name, what, disabled=disabled, snap=snap, modes=modes,
                                disable_pv=self.disable.source.split("://")[-1],
                                temp_pv=self.temperature.source.split("://")[-1])
        return snap

    def check_value(self, value: Any) -> None:
        """Raise :class:`CS800RangeError` unless ``value`` is a finite temperature in limits."""
        rules.target_kelvin(self.name, value, self.limits, self.ioc_limits("rtemp"))

    # -- writing PVs (in the job's task) ------------------------------------------------------
    async def _put(self, attr: str, value: Any) -> None:
        await getattr(self, attr).set(value, timeout=self.put_timeout)

    def _writer(self, writes: rules.Writes, checked: str | None) -> Callable[[], Awaitable[None]]:
        async def send() -> None:
            for attr, value in writes:
                await self._put(attr, value)
                if attr == checked:
                    sig = getattr(self, attr)
                    echo = float(await sig.get_value(cached=False))
                    error = rules.clamp_error(self.name, sig.source.split("://")[-1], value,
                                              echo)
                    if error is not None:
                        raise error

        return send

    # -- jobs -----------------------------------------------------------------------------------
    def _runner_for(self, job: Job) -> AsyncJobRunner:
        """Supersede any running job (the shared rule), then make the runner of ``job``."""
        assert self._send_lock is not None
        runner = AsyncJobRunner(
            job, self.snapshot, status_period=self.status_period,
            max_resends=self.max_resends, responses=self._responses, log=self.log,
            paused=lambda: self._paused, send_lock=self._send_lock,
            on_timeout=self._send_hold if isinstance(job, MoveJob) else None,
            on_finish=self._job_finished)
        runner.tracker.accepted = supersede(self._runner, job, runner)
        self._paused = False  # any new command ends a suspended programme
        self._runner = runner
        return runner

    def _job_finished(self, runner: AsyncJobRunner) -> None:
        if self._runner is runner:
            self._runner = None

    async def _send_hold(self) -> None:
        self._paused = False
        assert self._send_lock is not None
        async with self._send_lock:
            self.log.info("%s: sending HOLD (the move timed out)", self.name)
            await self._put("cmd_hold", 1)

    def _command(self, job: Job | None) -> AsyncStatus:
        if job is None:  # nothing to do (already there)
            return AsyncStatus(asyncio.sleep(0), name=self.name)
        runner = self._runner_for(job)

        async def run() -> None:
            async for _ in runner.follow():
                pass
            await runner.result()

        return AsyncStatus(run(), name=self.name)

    # -- the positioner interface ---------------------------------------------------------------
    def set(self, value: float, *, rate: float | None = None,
            cool: bool = False, timeout: float | None = None) -> WatchableAsyncStatus[float]:
        """Ramp (or Cool) to ``value`` K; the status is done when it is there.

        Parameters
        ----------
        value : float
            Target temperature in K, within :attr:`limits`.
        rate : float or None, optional
            Ramp rate in whole K/h, 1-360 (default: the ``ramp_rate`` signal).
        cool : bool, optional
            Send Cool (as fast as possible) instead of Ramp; ``rate`` must be None.
        timeout : float or None, optional
            Seconds before the move fails (default: :attr:`timeout` if set, else computed).

        Returns
        -------
        WatchableAsyncStatus[float]
            Done when it is there; it reports current/initial/target/unit/fraction to watchers
            (``ProgressBarManager``).

        Raises
        ------
        CS800Error
            Before anything is written, exactly as the ophyd device: CS800RangeError,
            CS800CommsDisabledError, CS800ShutDownError, CS800StaleError.
        """
        snap = self._check_commandable("move", modes=rules.READY_OR_RUN)
        job = rules.move_job(
            self.name, snap, value, self._writer, limits=self.limits,
            ioc_limits=self.ioc_limits, rate=rate,
            default_rate=self._tunable("ramp_rate"), cool=cool,
            tolerance=self._tunable("tolerance"), settle_time=self._tunable("settle_time"),
            timeout=self.timeout if timeout is None else timeout,
            timeout_margin=self.timeout_margin)
        runner = self._runner_for(job)
        initial = snap.temp if snap.temp is not None else job.target
        return WatchableAsyncStatus(self._watch(runner, initial, job.target), name=self.name)

    async def _watch(self, runner: AsyncJobRunner, initial: float,
                     target: float) -> AsyncIterator[WatcherUpdate[float]]:
        last: float | None = None
        async for snap in runner.follow():
            if snap.temp is not None and snap.temp != last:
                last = snap.temp
                span = abs(target - initial)
                fraction = min(1.0, abs(target - snap.temp) / span) if span else 0.0
                yield WatcherUpdate(current=snap.temp, initial=initial, target=target,
                                    name=self.name, unit="K", precision=2, fraction=fraction)
        await runner.result()

    def cool(self, target: float, *, timeout: float | None = None) -> WatchableAsyncStatus:
        """Go to ``target`` K as fast as possible (Cool command); same status as :meth:`set`."""
        return self.set(target, cool=True, timeout=timeout)

    async def locate(self) -> Location[float]:
        """Where the device is going (the move's target, else TARGETTEMP) and TEMP."""
        runner = self._runner
        snap = self.snapshot()
        if runner is not None and not runner.closed and isinstance(runner.job, MoveJob):
            setpoint = runner.job.target
        else:
            setpoint = snap.target if snap.target is not None else math.nan
        readback = snap.temp if snap.temp is not None else math.nan
        return Location(setpoint=setpoint, readback=readback)

    def subscribe(self, function: Callable[[dict[str, Any]], None]) -> None:
        """Subscribe to TEMP readings (``{name: reading}``)."""
        self.temperature.subscribe_reading(function)

    def clear_sub(self, function: Callable[[dict[str, Any]], None]) -> None:
        """Remove a subscription made with :meth:`subscribe`."""
        self.temperature.clear_sub(function)

    def stop(self, success: bool = False) -> AsyncStatus:
        """``stop(success=True)`` does nothing; ``stop()`` sends HOLD and fails the move.

        HOLD goes out (after any command write in flight, never before it) when this device
        follows a command or the controller ramps; never STOP, which shuts the cooler down.
        """
        return AsyncStatus(self._stop(success), name=self.name)

    async def _stop(self, success: bool) -> None:
        if success or self._send_lock is None:
            return
        async with self._send_lock:
            runner = self._runner
            following = runner is not None and not runner.closed
            snap = self.snapshot()
            if not rules.stop_sends_hold(following, snap):
                return
            self._paused = False
            hold_error: Exception | None = None
            try:
                self.log.info("%s: sending HOLD (stop())", self.name)
                await self._put("cmd_hold", 1)
            except Exception as exc:  # still end the move; say that HOLD did not go out
                hold_error = exc
            if following and runner is not None:
                runner.cancel(rules.stopped_error(self.name, runner.job.what, snap, hold_error))

    # -- other commands ---------------------------------------------------------------------------
    def plateau(self, minutes: float, *, timeout: float | None = None) -> AsyncStatus:
        """Hold the current temperature for ``minutes`` (1-1440); done when Plat ends."""
        self._check_commandable("plateau", modes=rules.READY_OR_RUN)
        return self._command(rules.plateau_job(
            self.name, minutes, self._writer, ioc_limits=self.ioc_limits, timeout=timeout,
            timeout_margin=self.timeout_margin))

    def hold(self, *, timeout: float | None = None) -> AsyncStatus:
        """Hold the current temperature indefinitely; done when PHASE reads Hold."""
        self._check_commandable("hold", modes=rules.READY_OR_RUN)
        return self._command(rules.hold_job(self.name, self._writer, timeout=timeout,
                                            timeout_margin=self.timeout_margin))

    def end(self, rate: float = 360, *, timeout: float | None = None) -> AsyncStatus:
        """Ramp to 300 K at ``rate`` K/h, then shut down; done at Shutdown OK."""
        rate_k_h = rules.end_rate(self.name, rate)
        snap = self._check_commandable("end", modes=None)
        return self._command(rules.end_job(
            self.name, snap, rate_k_h, self._writer, ioc_limits=self.ioc_limits,
            timeout=timeout, timeout_margin=self.timeout_margin))

    def purge(self, *, timeout: float = rules.PURGE_TIMEOUT_S) -> AsyncStatus:
        """Warm up to room temperature, then shut down; done at Shutdown OK."""
        snap = self._check_commandable("purge", modes=None)
        return self._command(rules.purge_job(self.name, snap, self._writer, timeout=timeout))

    def restart(self, *, timeout: float = rules.RESTART_TIMEOUT_S) -> AsyncStatus:
        """Restart after a shutdown; done in Ready or Run (at once if already there)."""
        snap = self._check_commandable("restart", modes=None)
        return self._command(rules.restart_job(self.name, snap, self._writer, timeout=timeout))

    def _fire(self, attr: str, value: Any, what: str, *,
              before: Callable[[], None] | None = None,
              undo: Callable[[], None] | None = None,
              after: Callable[[], None] | None = None) -> AsyncStatus:
        """Write one command PV (put completion, under the send lock); raises before writing."""
        self._check_commandable(what, modes=None)
        assert self._send_lock is not None
        lock = self._send_lock
        if before is not None:
            before()

        async def write() -> None:
            try:
                async with lock:
                    self.log.info("%s: sending %s (%s = %r)", self.name, what.upper(),
                                  getattr(self, attr).source.split("://")[-1], value)
                    await self._put(attr, value)
            except Exception as exc:
                if undo is not None:
                    undo()
                raise rules.send_failure(self.name, what, exc) from exc
            if after is not None:
                after()

        return AsyncStatus(write(), name=self.name)

    def _pause(self) -> None:
        self._pause_gen += 1
        self._paused = True

    def _unpause(self, gen: int | None = None) -> None:
        if gen is None or gen == self._pause_gen:
            self._paused = False

    def pause_program(self) -> AsyncStatus:
        """Suspend the programme (a temporary Hold); a running move waits, its timeout paused."""
        return self._fire("cmd_pause", 1, "pause", before=self._pause, undo=self._unpause)

    def resume_program(self) -> AsyncStatus:
        """Resume the programme; a move counts as paused until the RESUME write completed."""
        gen = self._pause_gen
        return self._fire("cmd_resume", 1, "resume", after=lambda: self._unpause(gen))

    def set_turbo(self, on: Any) -> AsyncStatus:
        """Switch turbo gas flow (10 l/min) on or off."""
        return self._fire("turbo", bool(rules.turbo_value(self.name, on)), "turbo")


__all__ = ["CS800", "Action", "AsyncJobRunner", "CS800Actions", "Phase", "RunMode"]
