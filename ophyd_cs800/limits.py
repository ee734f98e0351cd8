"""Where a command parameter must lie: the controller's range and the IOC's, checked together.

A target temperature must satisfy two ranges: DEVICEMINTEMP..DEVICEMAXTEMP, what the
controller accepts, and the IOC's own limits on the parameter record (the CA control limits
DRVL/DRVH of RTEMP, CTEMP, RRATE, PTIME, ERATE), what the IOC passes on. The synApps C IOC
clamps a put outside DRVL/DRVH silently (RTEMP 1..360 K, CTEMP 80..327.67 K), so a client
that relies on the clamp changes the IOC's parameter and then fails. :func:`check_in_ranges`
checks both before anything is written, and its sentence names both and which one binds.

It also knows the synApps "not available" readings: the word 0xFFFE through the C IOC's
scaling reads 655.34 (K fields), 65534 (rates, %, minutes) or 6553.4 (GASFLOW), with NO_ALARM.
:func:`available` turns them (and NaN) into ``None``, so they are never shown or used.

Pure logic: no ophyd, no Channel Access.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ophyd_cs800.errors import CS800RangeError

#: Readings that mean "not available" through the synApps scaling of 0xFFFE (and NaN, ours).
NOT_AVAILABLE_READINGS = (655.34, 65534.0, 6553.4)
#: Two readings closer than this are the same sentinel (they come scaled from a 16-bit word).
_SENTINEL_TOLERANCE = 1e-6


def is_not_available(value: float) -> bool:
    """Return True for NaN and for the synApps "not available" readings 655.34, 65534 and 6553.4."""
    return math.isnan(value) or any(
        abs(value - sentinel) <= _SENTINEL_TOLERANCE * sentinel
        for sentinel in NOT_AVAILABLE_READINGS
    )


def available(value: object) -> float | None:
    """``value`` as a finite float, or ``None`` if it is missing, no number or not available."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or is_not_available(number):
        return None
    return number


@dataclass(frozen=True)
class Range:
    """An allowed interval ``low..high`` (inclusive) and who imposes it.

    Attributes
    ----------
    low : float
        Lowest allowed value, in ``unit``.
    high : float
        Highest allowed value, in ``unit``.
    owner : str
        Who imposes it, as it reads in a sentence: ``"the controller's limit"``
        or ``"the IOC's RTEMP limit"``.
    """

    low: float
    high: float
    owner: str


def ioc_range(low: object, high: object, record: str) -> Range | None:
    """Return the IOC's control limits of ``record`` as a :class:`Range`.

    ``None`` if it has none.

    CA reports "no limits" as 0..0 (or low >= high); a missing, NaN or sentinel value also
    means none is known.
    """
    lo, hi = available(low), available(high)
    if lo is None or hi is None or not lo < hi:
        return None
    return Range(lo, hi, f"the IOC's {record} limit")


def check_in_ranges(device: str, what: str, value: float, unit: str,
                    controller: Range, ioc: Range | None, *, decimals: int = 2,
                    resolution: float = 0.0) -> None:
    """Raise :class:`CS800RangeError` unless ``value`` lies in ``controller`` and ``ioc``.

    ``what`` names the parameter in the sentence (``"target"``, ``"ramp rate"``), ``unit`` its
    unit and ``decimals`` how many decimals to show; ``resolution`` is the wire resolution
    (0.01 K): a value within half of it of a bound is on it. The sentence names the range that
    binds (the tighter one on the violated side) and the other one, e.g. ``"cs0: target
    370.00 K is out of range: above the IOC's RTEMP limit 360.00 K (the controller's limit
    allows 80.00..400.00 K); allowed 80.00 K to 360.00 K; nothing was sent."``
    """
    slack = resolution / 2
    ranges = [controller] if ioc is None else [controller, ioc]
    too_high = [r for r in ranges if value > r.high + slack]
    too_low = [r for r in ranges if value < r.low - slack]
    if not too_high and not too_low:
        return

    def fmt(number: float) -> str:
        return f"{number:.{decimals}f}"

    if too_high:
        binding = min(too_high, key=lambda r: r.high)
        side, bound = "above", binding.high
    else:
        binding = max(too_low, key=lambda r: r.low)
        side, bound = "below", binding.low
    also = "".join(f" ({other.owner} allows {fmt(other.low)}..{fmt(other.high)} {unit})"
                   for other in ranges if other is not binding)
    raise CS800RangeError(
        f"{device}: {what} {fmt(value)} {unit} is out of range: {side} {binding.owner} "
        f"{fmt(bound)} {unit}{also}; allowed {fmt(max(r.low for r in ranges))} {unit} to "
        f"{fmt(min(r.high for r in ranges))} {unit}; nothing was sent."
    )


__all__ = ["NOT_AVAILABLE_READINGS", "Range", "available", "check_in_ranges", "ioc_range",
           "is_not_available"]
