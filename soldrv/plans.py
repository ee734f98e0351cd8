"""Bluesky plans for solenoid cycles run by a :class:`soldrv.flyer.SolenoidCycler`.

* :func:`run_cycle` -- fly one mode for a number of cycles or a duration, staged so that the
  hardware is in the safe state before and after (also when the plan fails); the events are
  collected while the cycle runs (:func:`fly_streaming`), so they reach subscribers and the
  store within ``period`` seconds of each change, each with the time of its change.
* :func:`fly_streaming` -- ``bp.fly`` that collects every ``period`` seconds during the flight.
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
from bluesky.utils import Msg, short_uid

from soldrv.flyer import SolenoidCycler

__all__ = ["STREAM_PERIOD", "count_while_cycling", "cycle_during", "fly_streaming", "run_cycle"]

Plan = Generator[Msg, Any, Any]

STREAM_PERIOD = 0.25
"""Seconds between two collects while flying (the most an event waits to be emitted)."""


def fly_streaming(
    flyers: Sequence[Any], *, period: float = STREAM_PERIOD, md: dict[str, Any] | None = None
) -> Plan:
    """Like ``bp.fly(flyers)``, but collect every ``period`` seconds while they fly.

    One run: kickoff every flyer (wait), then, until every complete status is done, wait up to
    ``period`` s and collect each flyer (empty collects emit nothing); a last collect follows
    completion. Subscribers see ``event_page`` documents during the flight instead of one at
    the end. ``period`` must be > 0 (ValueError). Returns the run uid.
    """
    if not period > 0:
        raise ValueError(f"period must be > 0 s, got {period}")

    @bpp.run_decorator(md=md)
    def inner() -> Plan:
        for flyer in flyers:
            yield from bps.kickoff(flyer, wait=True)
        group = short_uid("complete")
        for flyer in flyers:
            yield from bps.complete(flyer, group=group, wait=False)
        done = False
        while not done:
            done = yield from bps.wait(group=group, timeout=period, error_on_timeout=False)
            for flyer in flyers:
                yield from bps.collect(flyer)

    return (yield from inner())


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
    period: float = STREAM_PERIOD,
) -> Plan:
    """Fly ``mode`` on ``cycler`` until ``cycles`` cycles or ``duration`` seconds are done.

    One run: start, descriptor, event_pages (one event per tick that changed an output, each
    with the time of that change), stop. The events are collected every ``period`` seconds
    while the mode runs (:func:`fly_streaming`), so they are seen during the flight. With
    ``cycles=None`` and ``duration=None`` the mode runs until it ends by itself (END_MODE or
    SELECT of an undefined mode) -- a cycling mode then runs forever, so give a limit for
    those. Raises ValueError for a negative limit; an undefined mode fails the
    kickoff (FailedStatus). Returns the run uid.
    """
    if not cycles and not duration:  # None or 0: no limit
        md_extra: dict[str, Any] = {"cycles": "until the mode ends"}
    else:
        md_extra = {"cycles": cycles or 0, "duration_s": duration or 0.0}
    _md = {"plan_name": "run_cycle", "soldrv_mode": mode, **md_extra, **(md or {})}
    yield from _configure(cycler, mode, cycles, duration)
    fly = fly_streaming([cycler], period=period, md=_md)
    if not cycles and not duration:
        # no limit: wait for the mode to end by itself instead of stopping it at complete()
        return (yield from _without_stop_on_complete(cycler, fly))
    return (yield from bpp.stage_wrapper(fly, [cycler]))


def _without_stop_on_complete(cycler: SolenoidCycler, fly: Plan) -> Plan:
    saved = cycler.stop_on_complete

    def restore() -> Plan:
        cycler.stop_on_complete = saved
        yield from bps.null()

    cycler.stop_on_complete = False
    return (
        yield from bpp.finalize_wrapper(bpp.stage_wrapper(fly, [cycler]), restore())
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
