"""What both CS800 device families show about the controller and the command they follow.

:class:`FollowedState` is a mixin of :class:`ophyd_cs800.device.CS800` (ophyd) and
:class:`ophyd_cs800.aio.CS800` (ophyd-async). It reads only the state both keep the same
way: ``name``, ``status_period`` (s, the floor), ``_heartbeat``
(:class:`~ophyd_cs800.heartbeat.Heartbeat`), ``_runner`` (the job runner followed now, or
``None``), ``_paused``, ``prefix`` (the PV prefix) and ``snapshot()``. Times are seconds.
It also gives both the same ``summary()``, ``summary_text()`` and ``repr``.
"""

from __future__ import annotations

import time
from typing import Any

from ophyd_cs800 import command_rules as rules
from ophyd_cs800.move_status import MoveJob


class FollowedState:
    """Properties of a CS800 device about its controller and the command it follows."""

    name: str
    prefix: str
    status_period: float
    _heartbeat: Any
    _runner: Any
    _paused: bool

    def snapshot(self) -> Any:  # pragma: no cover - provided by the device
        """Return the controller state from the monitors.

        A :class:`~ophyd_cs800.move_status.Snapshot`.
        """
        raise NotImplementedError

    @property
    def moving(self) -> bool:
        """True while a ramp or cool started by this device is being followed."""
        runner = self._runner
        return runner is not None and not runner.closed and isinstance(runner.job, MoveJob)

    @property
    def paused(self) -> bool:
        """True between ``pause_program()`` and ``resume_program()``."""
        return self._paused

    @property
    def active_job(self) -> str | None:
        """What the device is following now (e.g. ``"ramp to 150.00 K at 360 K/h"``) or None."""
        runner = self._runner
        return None if runner is None or runner.closed else runner.job.what

    @property
    def learned_status_period(self) -> float | None:
        """The status period learned from the arrival of status, s (``None`` until known)."""
        return self._heartbeat.learned_period

    @property
    def effective_status_period(self) -> float:
        """The status period the device plans with: learned, never below ``status_period``."""
        return self._heartbeat.period(self.status_period)

    @property
    def status_age(self) -> float:
        """Seconds since the last status datagram seen (the heartbeat's age)."""
        return self._heartbeat.age(time.monotonic())

    def describe_state(self) -> str:
        """One line for people: TEMP, phase, run mode, alarm and target.

        A silent controller reads ``cs0: no status for 4 s (last TEMP 150.00 K)``; values the
        IOC reports as "not available" read ``unknown``.
        """
        return rules.describe_state(self.name, self.snapshot())

    def summary_text(self) -> str:
        """:meth:`describe_state` with the prefix and the age of the last status (s)."""
        return f"{self.describe_state()}, last status {self.status_age:.1f} s ago [{self.prefix}]"

    def summary(self) -> None:
        """Print :meth:`summary_text` (ophyd's component listing: ``Device.summary(self)``)."""
        print(self.summary_text())

    def __repr__(self) -> str:
        """Show ``<CS800 one-line state>`` (name and prefix if it is unknown; never fails)."""
        try:
            state = self.summary_text()
        except Exception:  # never let a repr fail (disconnected, destroyed)
            state = f"{self.name} ({self.prefix})"
        return f"<CS800 {state}>"


__all__ = ["FollowedState"]
