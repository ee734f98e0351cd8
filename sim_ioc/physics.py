"""Closed-form building blocks of the simulated cryostream's thermal model.

Every function here is exact for its step, whatever the step length: the controller model can
integrate in long sub-steps (a fast clock) without losing accuracy. Times are in seconds,
temperatures in kelvin.
"""

from __future__ import annotations

import math
import random


def relax(x0: float, target: float, tau_s: float, dt_s: float) -> float:
    """Return a first-order lag's value after ``dt_s`` seconds toward a constant ``target``.

    ``x(t) = target + (x0 - target) * exp(-t / tau)``. ``tau_s`` must be > 0 (``ValueError``).
    """
    if tau_s <= 0.0:
        raise ValueError(f"time constant must be > 0 s, got {tau_s!r}")
    return target + (x0 - target) * math.exp(-dt_s / tau_s)


def lag_linear(x0: float, s0: float, slope: float, tau_s: float, dt_s: float) -> float:
    """Return a first-order lag's value after ``dt_s`` when its input moves linearly.

    Solves ``dx/dt = (s(t) - x) / tau`` with ``s(t) = s0 + slope * t`` exactly:
    ``x(t) = s(t) - slope*tau + (x0 - s0 + slope*tau) * exp(-t/tau)``. In steady state ``x``
    trails the input by ``slope * tau``. ``tau_s`` must be > 0 (``ValueError``).
    """
    if tau_s <= 0.0:
        raise ValueError(f"time constant must be > 0 s, got {tau_s!r}")
    lag = slope * tau_s
    return s0 + slope * dt_s - lag + (x0 - s0 + lag) * math.exp(-dt_s / tau_s)


def time_to_within(x0: float, target: float, tau_s: float, tolerance: float) -> float:
    """Return the seconds a first-order lag needs to come within ``tolerance`` of ``target``.

    0.0 if it is already within; ``tolerance`` must be > 0 (``ValueError``).
    """
    if tolerance <= 0.0:
        raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
    gap = abs(x0 - target)
    if gap <= tolerance:
        return 0.0
    return tau_s * math.log(gap / tolerance)


class Ar1Noise:
    """Band-limited Gaussian noise (an Ornstein-Uhlenbeck process sampled exactly), clipped.

    Parameters
    ----------
    rng : random.Random
        The seeded random generator to draw from.
    sigma : float
        Standard deviation of the stationary process (same unit as the signal).
    tau_s : float
        Correlation time in seconds (> 0).
    clip : float
        The output is limited to +/- ``clip``.
    """

    def __init__(self, rng: random.Random, sigma: float, tau_s: float, clip: float) -> None:
        """Create the process at a random stationary starting value."""
        if sigma < 0.0 or tau_s <= 0.0 or clip < 0.0:
            raise ValueError("Ar1Noise needs sigma >= 0, tau_s > 0 and clip >= 0")
        self._rng = rng
        self._sigma = sigma
        self._tau = tau_s
        self._clip = clip
        self._x = rng.gauss(0.0, sigma) if sigma else 0.0

    def step(self, dt_s: float) -> float:
        """Advance the process by ``dt_s`` seconds (no change for dt <= 0); return the value."""
        if dt_s > 0.0 and self._sigma:
            a = math.exp(-dt_s / self._tau)
            self._x = a * self._x + self._sigma * math.sqrt(1.0 - a * a) * self._rng.gauss(0, 1)
        return self.value

    @property
    def value(self) -> float:
        """The current noise value, clipped to +/- ``clip``."""
        return max(-self._clip, min(self._clip, self._x))
