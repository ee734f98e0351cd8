"""Bluesky plans for solenoid cycles run by a :class:`soldrv.flyer.SolenoidCycler`.

* :func:`run_cycle` -- fly one mode for a number of cycles or a duration (``bp.fly``), staged
  so that the hardware is in the safe state before and after (also when the plan fails).
* :func:`cycle_during` -- run any plan (e.g. a step scan) while the cycler flies a mode; the
  cycle events go to the cycler's own stream and the mode stops when the plan ends.
* :func:`count_while_cycling` -- ``bp.count`` of detectors (and the valve states) while a
  mode cycles.

Annotations are evaluated objects (no ``from __future__ import annotations``), so
bluesky-queueserver can build its parameter checks for :func:`run_cycle` and
:func:`count_while_cycling` (``cycle_during`` takes a plan object, which a queue item cannot
carry).
"""

from collections.abc import Generator, Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import bluesky.preprocessors as bpp
from bluesky.protocols import Readable
from bluesky.utils import Msg

from soldrv.flyer import SolenoidCycler

__all__ = ["count_while_cycling", "cycle_during", "run_cycle"]

Plan = Generator[Msg, Any, Any]


def _configure(
    cycler: SolenoidCycler, mode: int, cycles: int | None, duration: float | None
) -> Plan:
    if cycles is not None and cycles < 0:
        raise ValueError(f"cycles must be >= 0 (0 = no limit), got {cycles}")
    if duration is not None and duration < 0:
        raise ValueError(f"duration must be >= 0 s (0 = no limit), got {duration}")
    yield from bps.mv(
        cycler.mode, mode, cycler.cycles, cycles or 0, cycler.duration, float(duration or 0.0)
    )


def run_cycle(
    cycler: SolenoidCycler,
    mode: int,
    *,
    cycles: int | None = 1,
    duration: float | None = None,
    md: dict[str, Any] | None = None,
) -> Plan:
    """Fly ``mode`` on ``cycler`` until ``cycles`` cycles or ``duration`` seconds are done.

    One run: start, descriptor, event_page(s) (one event per tick that changed an output),
    stop. With ``cycles=None`` and ``duration=None`` the mode runs until it ends by itself
    (END_MODE or SELECT of an undefined mode) -- a cycling mode then runs forever, so give a
    limit for those. Raises ValueError for a negative limit; an undefined mode fails the
    kickoff (FailedStatus). Returns the run uid.
    """
    if not cycles and not duration:  # None or 0: no limit
        md_extra: dict[str, Any] = {"cycles": "until the mode ends"}
    else:
        md_extra = {"cycles": cycles or 0, "duration_s": duration or 0.0}
    _md = {"plan_name": "run_cycle", "soldrv_mode": mode, **md_extra, **(md or {})}
    yield from _configure(cycler, mode, cycles, duration)
    if not cycles and not duration:
        # no limit: wait for the mode to end by itself instead of stopping it at complete()
        return (yield from _without_stop_on_complete(cycler, _md))
    return (yield from bpp.stage_wrapper(bp.fly([cycler], md=_md), [cycler]))


def _without_stop_on_complete(cycler: SolenoidCycler, md: dict[str, Any]) -> Plan:
    saved = cycler.stop_on_complete

    def restore() -> Plan:
        cycler.stop_on_complete = saved
        yield from bps.null()

    cycler.stop_on_complete = False
    return (
        yield from bpp.finalize_wrapper(
            bpp.stage_wrapper(bp.fly([cycler], md=md), [cycler]), restore()
        )
    )


def cycle_during(plan: Plan, cycler: SolenoidCycler, mode: int, *, stage: bool = True) -> Plan:
    """Run ``plan`` while ``cycler`` flies ``mode`` (no cycle limit: it stops with the plan).

    Uses ``bpp.fly_during_wrapper``: kickoff after the run opens, complete (which stops the
    mode) and collect before it closes. With ``stage`` (default) the cycler is staged around
    it, so the hardware is in the safe state before and after; pass False when ``plan``
    stages the cycler itself (e.g. it reads the cycler as a detector).
    """
    yield from _configure(cycler, mode, 0, 0.0)
    flown = bpp.fly_during_wrapper(plan, [cycler])
    if stage:
        flown = bpp.stage_wrapper(flown, [cycler])
    return (yield from flown)


def count_while_cycling(
    detectors: Sequence[Readable],
    cycler: SolenoidCycler,
    mode: int,
    *,
    num: int = 1,
    delay: float | None = None,
    md: dict[str, Any] | None = None,
) -> Plan:
    """``bp.count`` of ``detectors`` and the cycler's current states while ``mode`` cycles.

    Each point of the primary stream holds the detector readings and the valve states at
    that moment; the full cycle timeline is in the cycler's own stream.
    """
    _md = {"plan_name": "count_while_cycling", "soldrv_mode": mode, **(md or {})}
    inner = bp.count([*detectors, cycler], num=num, delay=delay, md=_md)  # stages the cycler
    return (yield from cycle_during(inner, cycler, mode, stage=False))
