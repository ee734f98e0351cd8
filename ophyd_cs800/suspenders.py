"""Ready-made RunEngine suspenders for a CryoStream 800, built on bluesky's ``SuspenderBase``.

Install one with ``RE.install_suspender(SuspendOnAlarm(cs0, level=3))``. While its condition
holds, the RunEngine suspends the running plan at its next checkpoint (the plans of
:mod:`ophyd_cs800.plans` have one every status period while waiting) and resumes it, from that
checkpoint, ``sleep`` seconds after the condition cleared: nothing recorded is lost or
recorded twice. A suspender does not touch the controller (a ramp keeps going while a plan is
suspended); give ``pre_plan=`` (e.g. ``lambda: hold(cs0)``) for that.

* :class:`SuspendOnAlarm` -- the controller's alarm (ALARMI) at or above an Oxford level
  (2 warning, 3 serious warning, 4 error);
* :class:`SuspendOnShutdown` -- the controller is shut down (run mode Shutdown OK/Fail or
  Startup Fail), until it is restarted (Ready or Run);
* :class:`SuspendWhenStale` -- no status from the controller for longer than the device's
  stale limit (the device's heartbeat, ``cs0.snapshot().silent``), until status flows again.

Each takes a CS800 of either family (:class:`ophyd_cs800.device.CS800` or the ophyd-async
:class:`ophyd_cs800.aio.CS800`): an ophyd-async signal is watched through its
``subscribe_reading`` (callbacks in the RunEngine's event loop), an ophyd signal through its
``subscribe`` (callbacks on a Channel Access thread).
"""

from __future__ import annotations

import threading
from typing import Any

from bluesky.suspenders import SuspenderBase
from ophyd import Signal

from ophyd_cs800.enums import alarm_for
from ophyd_cs800.protocol import RUN_MODE_STRINGS, RunMode

#: Run modes in which the controller does nothing until restarted.
SHUT_DOWN_MODES = (RunMode.SHUTDOWN_OK, RunMode.SHUTDOWN_FAIL, RunMode.STARTUP_FAIL)
#: Run modes in which it takes commands again.
WORKING_MODES = (RunMode.STARTUP_OK, RunMode.RUN)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number  # NaN: not available


def _run_mode(value: Any) -> int | None:
    """Return the run mode's int from an ophyd reading (``3``) or an ophyd-async one (``"Run"``)."""
    text = getattr(value, "value", value)
    if isinstance(text, str) and text in RUN_MODE_STRINGS:
        return RUN_MODE_STRINGS.index(text)
    mode = _number(value)
    return None if mode is None else int(mode)


class _AsyncSignalValues:
    """An ophyd-async signal seen through ophyd's subscription interface.

    That is ``subscribe(cb, event_type, run)`` / ``clear_sub(cb)``, which bluesky's
    ``SuspenderBase`` calls: ``cb(value)`` on each reading.

    The current value is passed at once (ophyd's ``run=True``). The CS800's watched signals
    (ALARMI, RUNMODE) are monitored from ``connect()``, so subscribing from another thread
    (``RE.install_suspender`` from the shell) only adds a listener to that monitor.
    """

    def __init__(self, signal: Any) -> None:
        self.signal = signal
        self._wrappers: dict[int, Any] = {}

    def subscribe(self, callback: Any, event_type: Any = None, run: bool = True) -> None:
        def on_reading(readings: dict[str, Any]) -> None:
            callback(next(iter(readings.values()))["value"])

        self._wrappers[id(callback)] = on_reading
        self.signal.subscribe_reading(on_reading)

    def clear_sub(self, callback: Any) -> None:
        wrapper = self._wrappers.pop(id(callback), None)
        if wrapper is not None:
            self.signal.clear_sub(wrapper)


def _watchable(signal: Any) -> Any:
    """``signal`` as ``SuspenderBase`` subscribes to it (ophyd signals as they are)."""
    return _AsyncSignalValues(signal) if hasattr(signal, "subscribe_reading") else signal


class _CS800Suspender(SuspenderBase):
    """A suspender on one signal of a CS800 that names the device in its justification."""

    def __init__(self, cs: Any, signal: Any, **kwargs: Any) -> None:
        super().__init__(_watchable(signal), **kwargs)
        self.cs = cs
        self._last: Any = None

    def __call__(self, value: Any = None, **kwargs: Any) -> None:  # noqa: D102 - bluesky hook
        self._last = value
        super().__call__(value, **kwargs)

    def _why(self) -> str:
        raise NotImplementedError

    def _get_justification(self) -> str:
        if not self.tripped:
            return ""
        return ": ".join(s for s in (self._why(), self._tripped_message) if s)


class SuspendOnAlarm(_CS800Suspender):
    """Suspend while the controller's alarm is at or above Oxford ``level`` (default 3).

    Parameters
    ----------
    cs : Any
        The CS800 (either family).
    level : int, optional
        2 (warning), 3 (serious warning) or 4 (error: the cooler shuts down).
    sleep : float, optional
        Seconds to wait after the alarm cleared before resuming.
    pre_plan, post_plan, tripped_message : optional
        As for bluesky's suspenders.
    """

    def __init__(self, cs: Any, level: int = 3, **kwargs: Any) -> None:
        if int(level) not in range(1, 5):
            raise ValueError(f"SuspendOnAlarm: level must be an Oxford alarm level 1-4, got "
                             f"{level!r}")
        super().__init__(cs, cs.alarm_code, **kwargs)
        self.level = int(level)

    def _alarm(self, value: Any) -> Any:
        code = _number(value)
        return None if code is None else alarm_for(int(code))

    def _should_suspend(self, value: Any) -> bool:
        alarm = self._alarm(value)
        return alarm is not None and alarm.level >= self.level

    def _should_resume(self, value: Any) -> bool:
        alarm = self._alarm(value)
        return alarm is not None and alarm.level < self.level

    def _why(self) -> str:
        alarm = self._alarm(self._last)
        what = "an alarm" if alarm is None else \
            f"alarm {alarm.code} {alarm.text!r} (level {alarm.level})"
        return f"{self.cs.name} has {what}, at or above level {self.level}"


class SuspendOnShutdown(_CS800Suspender):
    """Suspend while the controller is shut down; resume once it is Ready or Running again."""

    def __init__(self, cs: Any, **kwargs: Any) -> None:
        super().__init__(cs, cs.run_mode, **kwargs)

    def _should_suspend(self, value: Any) -> bool:
        return _run_mode(value) in SHUT_DOWN_MODES

    def _should_resume(self, value: Any) -> bool:
        return _run_mode(value) in WORKING_MODES

    def _why(self) -> str:
        mode = _run_mode(self._last)
        name = RunMode(mode).name if mode in set(RunMode) else "unknown"
        return f"{self.cs.name} is shut down (run mode {name}): restart it to go on"


class SuspendWhenStale(_CS800Suspender):
    """Suspend while the controller sends no status (longer than the device's stale limit).

    A silent controller makes no Channel Access updates, so this suspender looks every
    ``check_period`` seconds (default: the device's status period) from a thread of its own,
    started by ``install`` and stopped by ``remove``. The value it watches is the soft
    signal :attr:`status_age` (seconds since the last status).
    """

    def __init__(self, cs: Any, *, check_period: float | None = None, **kwargs: Any) -> None:
        self.status_age = Signal(name=f"{cs.name}_status_age", value=0.0)
        super().__init__(cs, self.status_age, **kwargs)
        self.check_period = check_period
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _silent(self) -> bool:
        return bool(self.cs.snapshot().silent)

    def _should_suspend(self, value: Any) -> bool:
        return self._silent()

    def _should_resume(self, value: Any) -> bool:
        return not self._silent()

    def _why(self) -> str:
        return (f"{self.cs.name}: no status from the controller for "
                f"{self.cs.status_age:.1f} s")

    def _watch(self) -> None:
        while not self._stop.wait(self.check_period or self.cs.effective_status_period):
            self.status_age.put(round(self.cs.status_age, 3))

    def install(self, RE: Any, *, event_type: Any = None) -> None:  # noqa: N803, D102
        super().install(RE, event_type=event_type)
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, daemon=True,
                                            name=f"{self.cs.name}-stale-suspender")
            self._thread.start()

    def remove(self) -> None:  # noqa: D102
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        super().remove()


def cs800_suspenders(cs: Any, *, alarm_level: int = 3, sleep: float = 0.0) -> list[Any]:
    """Return the three suspenders for ``cs``.

    E.g. ``for s in cs800_suspenders(cs0): RE.install_suspender(s)``.
    """
    return [SuspendOnAlarm(cs, alarm_level, sleep=sleep), SuspendOnShutdown(cs, sleep=sleep),
            SuspendWhenStale(cs, sleep=sleep)]


__all__ = [
    "SuspendOnAlarm",
    "SuspendOnShutdown",
    "SuspendWhenStale",
    "cs800_suspenders",
]
