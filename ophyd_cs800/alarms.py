"""The package's one alarm path: a controller's alarm changes, logged and passed to callbacks.

The controller reports one alarm code (status id 1065, the IOC's ``ALARMI``); Oxford's table
(:func:`ophyd_cs800.enums.alarm_for`) gives its level (0 none, 1 information, 2 warning,
3 serious warning, 4 error, which shuts the cooler down) and text. The IOC's ``ALARM`` text is
kept too (the synApps C IOC's table differs from Oxford's from code 34 on).

:class:`AlarmWatch` is fed every ``ALARMI`` update; on a change of code it logs one line on the
device's logger (WARNING from level :data:`WARNING_LEVEL`, INFO below) and calls each
registered callback with an :class:`AlarmChange`. Callbacks run on the thread that fed the
update (a CA monitor thread): keep them short. Pure logic: no ophyd, no Channel Access.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ophyd_cs800.enums import Alarm, alarm_for

#: Oxford alarm level from which a change is logged as a WARNING (2: warning).
WARNING_LEVEL = 2


@dataclass(frozen=True)
class AlarmChange:
    """One change of a controller's alarm.

    Attributes
    ----------
    device : str
        The device name (``"cs0"``).
    old : ophyd_cs800.enums.Alarm or None
        The previous alarm (``None`` before the first one seen).
    new : ophyd_cs800.enums.Alarm
        The alarm now (code, Oxford level, Oxford text).
    ioc_text : str
        The IOC's ``ALARM`` string at the time (``""`` if unknown).
    """

    device: str
    old: Alarm | None
    new: Alarm
    ioc_text: str = ""

    @property
    def level(self) -> int:
        """Oxford level of the new alarm (0-4)."""
        return self.new.level

    def describe(self) -> str:
        """One line, e.g. ``cs0: alarm 17 'Temp warning' (level 2), was 0 'No errors...'``."""
        was = "" if self.old is None else f", was {self.old.code} {self.old.text!r}"
        ioc = f", IOC says {self.ioc_text!r}" if self.ioc_text and self.ioc_text != self.new.text \
            else ""
        return (f"{self.device}: alarm {self.new.code} {self.new.text!r} "
                f"(level {self.new.level}){ioc}{was}")


AlarmCallback = Callable[[AlarmChange], None]


class AlarmWatch:
    """Follows one controller's alarm code; logs and reports each change.

    Parameters
    ----------
    device : str
        The device name used in messages.
    logger : logging.Logger
        Where changes are logged.
    """

    def __init__(self, device: str, logger: logging.Logger) -> None:
        self.device = device
        self.logger = logger
        self._lock = threading.Lock()
        self._callbacks: dict[int, AlarmCallback] = {}
        self._next_token = 0
        self.current: Alarm | None = None

    def subscribe(self, callback: AlarmCallback) -> Callable[[], None]:
        """Call ``callback(change)`` on every alarm change; returns a function that unsubscribes."""
        with self._lock:
            token = self._next_token
            self._next_token += 1
            self._callbacks[token] = callback

        def unsubscribe() -> None:
            with self._lock:
                self._callbacks.pop(token, None)

        return unsubscribe

    def update(self, code: int | None, ioc_text: str = "") -> AlarmChange | None:
        """Feed one ``ALARMI`` reading (``None``: not available); returns the change, if any."""
        if code is None:
            return None
        new = alarm_for(int(code))
        with self._lock:
            old = self.current
            if old is not None and old.code == new.code:
                return None
            self.current = new
            callbacks = list(self._callbacks.values())
        change = AlarmChange(self.device, old, new, ioc_text)
        if old is not None or new.level > 0:  # not the quiet "no error" first seen at connect
            level = logging.WARNING if new.level >= WARNING_LEVEL else logging.INFO
            self.logger.log(level, "%s", change.describe())
        for callback in callbacks:
            try:
                callback(change)
            except Exception:  # a broken callback must not stop the others or the monitor
                self.logger.exception("%s: alarm callback %r failed", self.device, callback)
        return change


__all__ = ["WARNING_LEVEL", "AlarmCallback", "AlarmChange", "AlarmWatch"]
