"""Bluesky plans for the Oxford CryoStream 800.

Every plan takes either device: :class:`ophyd_cs800.device.CS800` or the ophyd-async
:class:`ophyd_cs800.aio.CS800`.

Every plan is a generator of ``Msg`` objects: usable as ``RE(ramp(cs0, 150))``, inside other
plans (``yield from ramp(cs0, 150, record=False)`` inside your own run: by default ``ramp`` and
``cool`` open a run of their own) and in bluesky-queueserver. Nothing blocks inside a plan:
commands go through ``Msg('set', ...)`` on the device (moves) or on its ``cs.actions`` soft
signals (plateau, hold, end, ...), which return ophyd statuses; ``wait=True`` waits on them
with ``Msg('wait')``. Errors raised before anything is sent (out of range, comms disabled,
controller shut down) surface at the ``set``; failures found later (not accepted, timeout,
stale controller) fail the status, and the RunEngine raises ``FailedStatus`` from them
(:func:`ophyd_cs800.device.error_message` returns the sentence).

The annotations are evaluated objects (no ``from __future__ import annotations``):
bluesky-queueserver builds its parameter checks from them, and could not resolve the names of
string annotations. ``detectors`` are ``Sequence[Readable]`` so the queue server turns device
names into devices; a ``cs`` that is not a :class:`CS800` (a misspelt name reaching the plan as
a string) raises ``TypeError`` naming what was given.

Temperatures are kelvin, rates K/h (whole numbers, 1-360), durations minutes.
"""

import sys
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any

from bluesky import plan_stubs as bps
from bluesky import plans as bp
from bluesky import preprocessors as bpp
from bluesky.protocols import Readable
from bluesky.utils import FailedStatus, Msg, RunEngineControlException

from ophyd_cs800.alarms import AlarmChange
from ophyd_cs800.device import CS800
from ophyd_cs800.enums import Alarm

Plan = Generator[Msg, Any, Any]

#: Oxford alarm level (3: serious warning) from which a run's stop document names the alarm.
REASON_ALARM_LEVEL = 3


def monitored_signals(cs: CS800) -> list[Any]:
    """Return what a recorded run of ``cs`` monitors, one stream each (``<name>_monitor``).

    TEMP (stream ``cs0_monitor``), SETPOINT, PHASE and RUNMODE (as text), ALARM (text) and
    ALARMI (the alarm code; its Oxford level is ``ophyd_cs800.enums.alarm_for(code).level``).
    """
    return [cs.temperature, cs.setpoint, cs.phase_name, cs.run_mode_name, cs.alarm,
            cs.alarm_code]


def checkpointed_wait(cs: CS800, status: Any, group: str | None,
                      period: float | None = None) -> Plan:
    """Wait for ``status`` (set in ``group``) with a checkpoint every ``period`` s.

    ``period`` defaults to the device's status period (``cs.effective_status_period``, the
    learned one, at least ``cs.status_period``; never below 0.1 s), so one
    ``RE.request_pause(defer=True)`` (one Ctrl-C) or a suspender stops the plan within a
    status period instead of at the end of the move, and ``RE.resume()`` continues the same
    wait: nothing before the last checkpoint (the set, an earlier reading) is replayed. The
    loop ends on ``status`` itself, so a wait whose group the RunEngine dropped when it was
    interrupted still lasts until the move is done. A failed status raises ``FailedStatus``
    as ``bps.wait`` does. (``status`` ``None``: a plan stepped without a RunEngine.)
    """
    period = max(0.1, float(period if period is not None else cs.effective_status_period))
    while status is not None and not status.done:
        yield from bps.checkpoint()
        started = time.monotonic()
        yield from bps.wait(group, timeout=period, error_on_timeout=False)
        if not status.done and time.monotonic() - started < period / 2:
            yield from bps.sleep(period)  # the group is gone (dropped at an interruption)
    if status is None:
        yield from bps.wait(group)
    elif not status.success:
        raise FailedStatus(status)


class _AlarmRecord:
    """The worst alarm that appeared on one device between :meth:`start` and :meth:`stop`.

    Fed by the device's one alarm path (:meth:`CS800.add_alarm_callback`, which also logs).
    """

    def __init__(self, cs: CS800) -> None:
        self.cs = cs
        self.worst: Alarm | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def _seen(self, change: AlarmChange) -> None:
        if self.worst is None or change.new.level > self.worst.level:
            self.worst = change.new

    def start(self) -> None:
        self._unsubscribe = self.cs.add_alarm_callback(self._seen)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def reason(self, error: str = "") -> str:
        """Return the stop document's reason: ``error`` and/or the alarm of level >= 3 seen."""
        parts = [error] if error else []
        if self.worst is not None and self.worst.level >= REASON_ALARM_LEVEL:
            parts.append(f"{self.cs.name} raised alarm {self.worst.code} {self.worst.text!r} "
                         f"(level {self.worst.level}) during the run")
        return "; ".join(parts)


def recorded_run(cs: CS800, plan: Plan, *, md: dict[str, Any]) -> Plan:
    """Run ``plan`` as one run of ``cs``, with its monitor streams and an alarm reason.

    Like ``bluesky.preprocessors.run_wrapper`` inside ``monitor_during_wrapper``
    (:func:`monitored_signals`), except that an alarm of Oxford level >= 3 seen during the run
    is named in the stop document's ``reason``; the ``exit_status`` stays what happened
    (``success`` when the plan finished). Returns the run uid.
    """
    record = _AlarmRecord(cs)

    def inner() -> Plan:
        uid = yield from bps.open_run(md)

        def except_plan(exc: Exception) -> Plan:
            if isinstance(exc, RunEngineControlException):
                # RequestAbort / RequestStop carry their exit status ("abort", "success")
                status = getattr(exc, "exit_status", "abort")
                yield from bps.close_run(exit_status=status, reason=record.reason())
            else:
                yield from bps.close_run(exit_status="fail", reason=record.reason(str(exc)))

        def else_plan() -> Plan:
            yield from bps.close_run(reason=record.reason())

        yield from bpp.contingency_wrapper(plan, except_plan=except_plan, else_plan=else_plan)
        return uid

    record.start()
    try:
        return (yield from bpp.monitor_during_wrapper(inner(), monitored_signals(cs)))
    finally:
        record.stop()


def _is_cs800(cs: Any) -> bool:
    """Return True for a CS800 of either family.

    ``ophyd_cs800.aio`` is looked up, never imported: an ophyd-async CS800 can only exist once that
    module was imported.
    """
    aio = sys.modules.get("ophyd_cs800.aio")
    return isinstance(cs, CS800) or (aio is not None and isinstance(cs, aio.CS800))


def _require_cs800(cs: Any, plan_name: str) -> CS800:
    """Return ``cs`` if it is a CS800 of either family; ``TypeError`` naming it otherwise."""
    if not _is_cs800(cs):
        raise TypeError(
            f"{plan_name}: cs must be a CS800 device (e.g. cs0 = CS800('xxx:CS0:', "
            f"name='cs0')), got {cs!r} ({type(cs).__name__}); in bluesky-queueserver give the "
            "name of a CS800 of the profile")
    return cs


def _action(cs: Any, plan_name: str, action: str, value: Any, *, wait: bool,
            group: str | None = None) -> Plan:
    """``abs_set`` of the soft signal ``cs.actions.<action>`` (one controller command)."""
    signal = getattr(_require_cs800(cs, plan_name).actions, action)
    return (yield from bps.abs_set(signal, value, group=group, wait=wait))


def _move(
    cs: CS800,
    target: float,
    *,
    wait: bool,
    record: bool | None,
    group: str | None,
    md: dict[str, Any] | None,
    plan_name: str,
    **set_kwargs: Any,
) -> Plan:
    """Move ``cs`` with ``Msg('set')``; with ``record`` inside a run (see :func:`ramp`)."""
    _require_cs800(cs, plan_name)
    set_kwargs = {key: value for key, value in set_kwargs.items() if value is not None}
    if record is None:
        record = wait
    if record and not wait:
        raise ValueError(f"{plan_name}(..., record=True) needs wait=True: a run records a "
                         "finished move")
    if not record:
        return (yield from bps.abs_set(cs, target, group=group, wait=wait, **set_kwargs))
    cs.check_value(target)
    _md = {
        "plan_name": plan_name,
        "detectors": [cs.name],
        "target_K": float(target),
        "plan_args": {"target": float(target), **set_kwargs},
        "hints": {"dimensions": [(["time"], "primary")]},
    }
    _md.update(md or {})

    def body() -> Plan:
        yield from bps.trigger_and_read([cs])
        group_ = group or f"{cs.name}-{plan_name}"
        status = yield from bps.abs_set(cs, target, group=group_, **set_kwargs)
        yield from checkpointed_wait(cs, status, group_)
        yield from bps.trigger_and_read([cs])

    return (yield from recorded_run(cs, body(), md=_md))


def ramp(
    cs: CS800,
    target: float,
    rate: float | None = None,
    *,
    wait: bool = True,
    timeout: float | None = None,
    record: bool | None = None,
    group: str | None = None,
    md: dict[str, Any] | None = None,
) -> Plan:
    """Ramp ``cs`` to ``target`` K at ``rate`` K/h (default: ``cs.ramp_rate``, 360 K/h).

    Parameters
    ----------
    cs : ophyd_cs800.device.CS800 or ophyd_cs800.aio.CS800
        The controller (either device family).
    target : float
        Target temperature in K.
    rate : float or None, optional
        Ramp rate in whole K/h, 1-360 (default: ``cs.ramp_rate``).
    wait : bool, optional
        With ``wait=True`` the plan returns when the sample gas is at the target (out of
        Ramp/Cool/Wait, within ``cs.tolerance`` for ``cs.settle_time`` s); ``wait=False``
        starts the ramp and returns its status at once (wait later with ``bps.wait(group)``).
    timeout : float or None, optional
        Seconds; overrides the computed timeout.
    record : bool or None, optional
        Default: same as ``wait``. Makes the move a run: a ``primary`` event before and after
        the move (the table shows where it started and ended) and a ``cs0_monitor`` stream of
        TEMP during it. With ``record=False`` it is a plain move like ``bps.mv`` (no
        documents, usable inside another run).
    group : str or None, optional
        The bluesky group of the move's status.
    md : dict or None, optional
        Extra run metadata (with ``record``).

    Returns
    -------
    str or Status
        The plan's return value: the run uid when recorded, else the move's status.
    """
    return (yield from _move(cs, target, wait=wait, record=record, group=group, md=md,
                             plan_name="ramp", rate=rate, timeout=timeout))


def cool(
    cs: CS800,
    target: float,
    *,
    wait: bool = True,
    timeout: float | None = None,
    record: bool | None = None,
    group: str | None = None,
    md: dict[str, Any] | None = None,
) -> Plan:
    """Go to ``target`` K as fast as possible (Cool); otherwise like :func:`ramp`."""
    return (yield from _move(cs, target, wait=wait, record=record, group=group, md=md,
                             plan_name="cool", cool=True, timeout=timeout))


def plateau(cs: CS800, minutes: float, *, wait: bool = False, group: str | None = None) -> Plan:
    """Hold the current temperature for ``minutes`` (1-1440), then Hold indefinitely.

    ``wait=True`` returns when the plateau is over (PHASE has left Plat).
    """
    return (yield from _action(cs, "plateau", "plateau", minutes, group=group, wait=wait))


def hold(cs: CS800, *, wait: bool = True) -> Plan:
    """Hold the current temperature indefinitely; cancels the programme and any move of ``cs``.

    ``wait=True`` returns once PHASE reads Hold. (In Ready this starts the gas flow.)
    """
    return (yield from _action(cs, "hold", "hold", 1, wait=wait))


def pause(cs: CS800) -> Plan:
    """Suspend the controller's programme (a temporary Hold that :func:`resume` continues)."""
    return (yield from _action(cs, "pause", "pause_program", 1, wait=True))


def resume(cs: CS800) -> Plan:
    """Resume the programme suspended by :func:`pause`."""
    return (yield from _action(cs, "resume", "resume_program", 1, wait=True))


def end(cs: CS800, rate: float = 360, *, wait: bool = False) -> Plan:
    """Ramp to 300 K at ``rate`` K/h (1-360), then shut the controller down (Shutdown OK).

    ``wait=True`` returns when the run mode reads Shutdown OK. Use :func:`restart` before
    the next ramp.
    """
    return (yield from _action(cs, "end", "end", rate, wait=wait))


def purge(cs: CS800, *, wait: bool = False) -> Plan:
    """Warm the cooler up to room temperature, then shut down (``wait=True``: until then)."""
    return (yield from _action(cs, "purge", "purge", 1, wait=wait))


def turbo(cs: CS800, on: bool) -> Plan:
    """Switch turbo gas flow (10 l/min) on (``True``) or off (``False``)."""
    return (yield from _action(cs, "turbo", "turbo", bool(on), wait=True))


def restart(cs: CS800, *, wait: bool = True) -> Plan:
    """Restart a shut-down controller; ``wait=True`` returns when it is Ready.

    Does nothing if the controller is already Ready or Running.
    """
    return (yield from _action(cs, "restart", "restart", 1, wait=wait))


def temperature_series(
    detectors: Sequence[Readable],
    cs: CS800,
    temperatures: Sequence[float],
    *,
    rate: float | None = None,
    md: dict[str, Any] | None = None,
) -> Plan:
    """Read ``detectors`` (and ``cs``) at each temperature in turn, settling at each one.

    One run; one event per temperature, after the move to it is done (the device's tolerance
    and settle time decide).

    Parameters
    ----------
    detectors : Sequence[Readable]
        Read at each temperature.
    cs : ophyd_cs800.device.CS800 or ophyd_cs800.aio.CS800
        The controller (either device family).
    temperatures : Sequence[float]
        Temperatures in K, in order.
    rate : float or None, optional
        K/h; sets ``cs.ramp_rate`` first.
    md : dict or None, optional
        Extra run metadata.

    Returns
    -------
    str
        The run uid (the plan's return value).

    Raises
    ------
    ValueError
        For an empty ``temperatures``.
    CS800RangeError
        Every temperature is checked against the controller's range before anything moves.
    """
    _require_cs800(cs, "temperature_series")
    temps = [float(t) for t in temperatures]
    if not temps:
        raise ValueError("temperature_series needs at least one temperature")
    for t in temps:
        cs.check_value(t)
    if rate is not None:
        yield from bps.mv(cs.ramp_rate, rate)
    rate_now = (yield from bps.rd(cs.ramp_rate))  # a Msg: works for both device families
    readables = [*detectors, cs]
    _md = {
        "plan_name": "temperature_series",
        "detectors": [d.name for d in detectors],
        "motors": [cs.name],
        "num_points": len(temps),
        "num_intervals": len(temps) - 1,
        "plan_args": {"detectors": [repr(d) for d in detectors], "temperatures": temps,
                      "rate": rate},
        "temperatures_K": temps,
        "ramp_rate_K_per_h": rate_now,
        "hints": {"dimensions": [([cs.name], "primary")]},
    }
    _md.update(md or {})

    def body() -> Plan:
        for temp in temps:
            yield from bps.checkpoint()
            group = f"{cs.name}-series-{temp:g}"
            status = yield from bps.abs_set(cs, temp, group=group)
            yield from checkpointed_wait(cs, status, group)
            yield from bps.trigger_and_read(readables)

    return (yield from recorded_run(cs, body(), md=_md))


def ramp_and_record(
    detectors: Sequence[Readable],
    cs: CS800,
    target: float,
    *,
    rate: float | None = None,
    period: float | None = 1.0,
    md: dict[str, Any] | None = None,
) -> Plan:
    """Ramp ``cs`` to ``target`` K while reading ``detectors`` and ``cs`` every ``period`` s.

    Built on ``bluesky.plans.ramp_plan``: a ``primary`` event per reading (before, during and
    after the ramp) plus a monitor stream of the temperature. If the move fails (timeout,
    stale controller, ...) the run ends with that error instead of looking successful.

    Parameters
    ----------
    detectors : Sequence[Readable]
        Read with ``cs`` at each reading.
    cs : ophyd_cs800.device.CS800 or ophyd_cs800.aio.CS800
        The controller (either device family).
    target : float
        Target temperature in K, checked before anything moves.
    rate : float or None, optional
        Ramp rate in K/h (default: ``cs.ramp_rate``).
    period : float or None, optional
        Seconds between readings.
    md : dict or None, optional
        Extra run metadata.

    Returns
    -------
    str
        The run uid (the plan's return value).
    """
    _require_cs800(cs, "ramp_and_record").check_value(target)
    readables = [*detectors, cs]

    def inner() -> Plan:
        return (yield from bps.trigger_and_read(readables))

    _md = {"plan_name": "ramp_and_record", "target_K": float(target)}
    _md.update(md or {})
    # The RunEngine raises FailedStatus as soon as the move's status fails (the run is open),
    # so a failed ramp ends the run with exit_status "fail".
    go = ramp(cs, target, rate, wait=False, record=False)
    return (yield from bp.ramp_plan(go, cs.temperature, inner, period=period, md=_md))


__all__ = [
    "cool",
    "end",
    "hold",
    "pause",
    "plateau",
    "purge",
    "ramp",
    "ramp_and_record",
    "restart",
    "resume",
    "temperature_series",
    "turbo",
]
