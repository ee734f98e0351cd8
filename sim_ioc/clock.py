"""The one injected time source of the CS800 simulator.

Everything in :mod:`sim_ioc` that needs time (the controller model, the UDP status loop) asks a
:class:`Clock` for *simulated* seconds. Two implementations:

* :class:`ScaledClock` -- simulated time runs ``speed`` times faster than the wall clock
  (``time.monotonic``); the speed can be changed while the simulation runs without making
  simulated time jump.
* :class:`ManualClock` -- simulated time moves only when a test calls :meth:`ManualClock.advance`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

#: Largest accepted speed factor (simulated seconds per wall second).
MAX_SPEED = 100_000.0


@runtime_checkable
class Clock(Protocol):
    """Anything with a ``now()`` method returning simulated seconds (a float, never decreasing)."""

    def now(self) -> float:
        """Return the current simulated time in seconds (arbitrary origin, monotonic)."""
        ...


def _check_speed(speed: float) -> float:
    """Return ``speed`` as a float, or raise ``ValueError`` if it is not in (0, MAX_SPEED]."""
    try:
        value = float(speed)
    except (TypeError, ValueError):
        raise ValueError(f"clock speed must be a number, got {speed!r}") from None
    if not math.isfinite(value) or value <= 0.0 or value > MAX_SPEED:
        raise ValueError(
            f"clock speed must be a finite factor > 0 and <= {MAX_SPEED:g}, got {speed!r}"
        )
    return value


class ScaledClock:
    """Simulated time = ``start`` + wall-clock monotonic time elapsed x ``speed``.

    Parameters
    ----------
    speed : float, optional
        Simulated seconds per wall second (1.0 = real time, 1000.0 = a 33-minute ramp in
        2 s). Must be finite, > 0 and <= :data:`MAX_SPEED`, else ``ValueError``.
    start : float, optional
        Simulated time at construction, in seconds.
    wall : Callable[[], float], optional
        Wall-clock source in seconds (default ``time.monotonic``); injectable for tests.

    Notes
    -----
    The speed may be changed at any time through the :attr:`speed` property; simulated time stays
    continuous across the change. Thread-safe.
    """

    def __init__(
        self,
        speed: float = 1.0,
        *,
        start: float = 0.0,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create the clock; see the class docstring for the arguments."""
        self._speed = _check_speed(speed)
        self._wall = wall
        self._lock = threading.Lock()
        self._wall0 = wall()
        self._sim0 = float(start)

    def now(self) -> float:
        """Return the simulated time in seconds."""
        with self._lock:
            return self._sim0 + (self._wall() - self._wall0) * self._speed

    @property
    def speed(self) -> float:
        """Simulated seconds per wall second; setting it re-anchors so time does not jump."""
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        new = _check_speed(value)
        with self._lock:
            wall = self._wall()
            self._sim0 += (wall - self._wall0) * self._speed
            self._wall0 = wall
            self._speed = new

    def wall_seconds_until(self, sim_time: float) -> float:
        """Return the wall seconds until simulated time reaches ``sim_time`` (0 if already past)."""
        return max(0.0, (sim_time - self.now()) / self._speed)

    def __repr__(self) -> str:
        """Show the speed and the current simulated time."""
        return f"ScaledClock(speed={self._speed:g}, now={self.now():.3f})"


class ManualClock:
    """A clock that moves only when told to: for unit tests and deterministic runs.

    Parameters
    ----------
    start : float, optional
        Initial simulated time in seconds.
    """

    def __init__(self, start: float = 0.0) -> None:
        """Create the clock at ``start`` simulated seconds."""
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        """Return the simulated time in seconds."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move simulated time forward by ``seconds`` (>= 0) and return the new time.

        Raises ``ValueError`` for a negative, NaN or infinite step (time never runs backwards).
        """
        step = float(seconds)
        if not math.isfinite(step) or step < 0.0:
            raise ValueError(f"ManualClock.advance needs a finite step >= 0 s, got {seconds!r}")
        with self._lock:
            self._now += step
            return self._now

    def __repr__(self) -> str:
        """Show the current simulated time."""
        return f"ManualClock(now={self._now:.3f})"
