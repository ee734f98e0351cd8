"""Keep the ``time`` of the events a flyer collects (bluesky drops it).

The bluesky flyer protocol says that ``collect()`` yields partial Events with ``time``,
``data`` and ``timestamps`` (``bluesky.protocols.EventCollectable``). The RunEngine of
bluesky 1.13 to 1.15 (checked in 1.15.1: ``RunBundler._collect_events`` and
``_collect_event_pages``) composes each event with ``data`` and ``timestamps`` only, so every
collected event is stamped with the moment of the ``collect`` message: a flight's events all
carry the time it ended, and anything keyed on event time (tables, plots, Tiled) shows them
bunched there.

:func:`install` wraps ``RunBundler._collect_events`` so that, for objects that say so with a
true ``keeps_event_times`` attribute (:class:`soldrv.flyer.SolenoidCycler`), the event pages
carry the ``time`` of the partial events. Every other object is collected exactly as before.
The wrapper is installed once per process (idempotent) and does nothing when the installed
bluesky does not have the method it expects (then :func:`install` returns False and the
events keep the collect time; their per-key ``timestamps`` are right either way).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from typing import Any

__all__ = ["install"]

_EXPECTED = ["self", "collect_obj", "local_descriptors", "return_payload", "message_stream_name"]
_MARK = "_soldrv_keeps_event_times"


class _TimeTap:
    """Stands in for the collected object: passes its events on, notes their times.

    Times are grouped as bluesky groups events into pages (one page per set of data keys,
    in order of first appearance), so :meth:`stamp` can give each page its own.
    """

    def __init__(self, obj: Any, stream_name: str | None) -> None:
        self.obj = obj
        self.stream_name = stream_name
        self.times: dict[frozenset[str] | None, list[Any]] = {}

    def collect(self) -> Iterator[dict[str, Any]]:
        for ev in self.obj.collect():
            key = None if self.stream_name else frozenset(ev["data"])
            self.times.setdefault(key, []).append(ev.get("time"))
            yield ev

    def stamp(self, page: dict[str, Any]) -> None:
        """Put the noted times of the next page into ``page`` (if they fit)."""
        if not self.times:
            return
        key = next(iter(self.times))
        times = self.times.pop(key)
        if len(times) == len(page.get("time", ())) and all(
            isinstance(t, (int, float)) for t in times
        ):
            page["time"] = [float(t) for t in times]


def install() -> bool:
    """Make the RunEngine keep collected event times for ``keeps_event_times`` objects.

    Returns True when the wrapper is in place (now or before), False when bluesky is missing
    or its ``RunBundler._collect_events`` is not the one this wraps (nothing is changed then).
    """
    try:
        from bluesky import bundlers
        from event_model import DocumentNames
    except ImportError:
        return False
    bundler = getattr(bundlers, "RunBundler", None)
    original = getattr(bundler, "_collect_events", None)
    if original is None:
        return False
    if getattr(original, _MARK, False):
        return True
    if list(inspect.signature(original).parameters) != _EXPECTED:
        return False

    @functools.wraps(original)
    async def _collect_events(
        self: Any,
        collect_obj: Any,
        local_descriptors: Any,
        return_payload: bool,
        message_stream_name: str | None,
    ) -> Any:
        if not getattr(collect_obj, "keeps_event_times", False) or "emit" not in vars(self):
            return await original(
                self, collect_obj, local_descriptors, return_payload, message_stream_name
            )
        tap = _TimeTap(collect_obj, message_stream_name)
        emit = self.emit

        async def emit_with_times(name: Any, doc: Any, *args: Any, **kwargs: Any) -> Any:
            if name == DocumentNames.event_page:
                tap.stamp(doc)
            return await emit(name, doc, *args, **kwargs)

        self.emit = emit_with_times
        try:
            return await original(self, tap, local_descriptors, return_payload,
                                  message_stream_name)
        finally:
            self.emit = emit

    setattr(_collect_events, _MARK, True)
    bundler._collect_events = _collect_events  # type: ignore[union-attr]
    return True
