"""Bluesky plans for solenoid cycles run by a :class:`soldrv.flyer.SolenoidCycler`.

* :func:`run_cycle` -- fly one mode for a number of cycles or a duration, staged so that the
  hardware is in the safe state before and after (also when the plan fails); the events are
  collected while the cycle runs (:func:`fly_streaming`), so they reach subscribers and the
  store within ``period`` seconds of each change, each with the time of its change.
* :func:`fly_streaming` -- ``bp.fly`` that collects during the flight: each tick batch as it
  is recorded, at most once every ``period`` seconds.
* :func:`cycle_during` -- run any plan (e.g. a step scan) while the cycler flies a mode; the
  cycle events go to the cycler's own stream and the mode stops when the plan ends.
* :func:`count_while_cycling` -- ``bp.count`` of detectors (and the valve states) while a
  mode cycles.

Annotations are evaluated objects (no ``from __future__ import annotations``), so
bluesky-queueserver can build its parameter checks for :func:`run_cycle` and
:func:`count_while_cycling` (``cycle_during`` takes a plan object, which a queue item cannot
carry).
"""

import asyncio
import functools
import time
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
    """Like ``bp.fly(flyers)``, but collect while they fly, as the events are recorded.

    One run: kickoff every flyer (wait); then, until every complete status is done, collect
    each flyer as soon as new events wait (a single flyer with ``wait_for_events(timeout)``,
    such as :class:`SolenoidCycler`, says when: each tick batch), but not more often than
    every ``period`` seconds; other flyers are collected every ``period`` s (an empty collect
    emits nothing). So an event reaches subscribers at most about ``period`` s after its
    change. A last collect comes before the complete statuses are checked for errors, so the
    events recorded up to a failure are emitted too. ``period`` must be > 0 (ValueError).
    Returns the run uid.
    """
    if not period > 0:
        raise ValueError(f"period must be > 0 s, got {period}")

    @bpp.run_decorator(md=md)
    def inner() -> Plan:
        for flyer in flyers:
            yield from bps.kickoff(flyer, wait=True)
        group = short_uid("complete")
        statuses = []
        for flyer in flyers:
            statuses.append((yield from bps.complete(flyer, group=group, wait=False)))
        last = time.monotonic()
        try:
            while not all(st.done for st in statuses):
                wake = functools.partial(_new_events, flyers, last + period, period)
                yield from bps.wait_for([wake])
                for flyer in flyers:
                    yield from bps.collect(flyer)
                last = time.monotonic()
        except Exception:  # a flight failed (the RunEngine throws its FailedStatus in here)
            for flyer in flyers:  # emit what was recorded up to the failure, then fail
                yield from bps.collect(flyer)
            raise
        for flyer in flyers:
            yield from bps.collect(flyer)
        yield from bps.wait(group=group)  # raises if a flight failed

    return (yield from inner())


async def _new_events(flyers: Sequence[Any], not_before: float, period: float) -> None:
    """Return once new events wait (or ``period`` s passed), not before ``not_before``.

    ``not_before`` is a ``time.monotonic()`` value. A single flyer with ``wait_for_events``
    is waited on in a worker thread (bounded by ``period``); otherwise this sleeps ``period``.
    """
    hold = not_before - time.monotonic()
    if hold > 0:
        await asyncio.sleep(hold)
    wait = getattr(flyers[0], "wait_for_events", None) if len(flyers) == 1 else None
    if callable(wait):
        await asyncio.get_running_loop().run_in_executor(None, wait, period)
    else:
        await asyncio.sleep(period)


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
    with the time of that change), stop. The events are collected while the mode runs, as each
    tick batch is recorded but at most once every ``period`` seconds (:func:`fly_streaming`),
    so they are seen during the flight.

    Parameters
    ----------
    cycler : SolenoidCycler
        The flyer.
    mode : int
        The mode to fly; an undefined mode fails the kickoff (FailedStatus).
    cycles : int or None, optional
        Cycles to fly.
    duration : float or None, optional
        Seconds to fly. With ``cycles=None`` and ``duration=None`` the mode runs until it ends
        by itself (END_MODE or SELECT of an undefined mode) -- a cycling mode then runs
        forever, so give a limit for those.
    md : dict or None, optional
        Extra run metadata.
    period : float, optional
        Seconds between event collections at most.

    Returns
    -------
    str
        The run uid (the plan's return value).

    Raises
    ------
    ValueError
        For a negative limit.
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
    inner = bp.count([*detectors, cycler], num=num, delay=delay or 0.0, md=_md)  # stages the cycler
    return (yield from cycle_during(inner, cycler, mode, stage=False))
