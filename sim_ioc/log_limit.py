"""Rate-limited logging: one line per kind of event at once, then one summary per interval.

A client on the subnet can make the IOC refuse thousands of puts or datagrams per second; a
line (let alone a traceback) for each would fill the disk. :class:`RateLimitedLog` logs the
first event of a kind at once and counts the rest; when the interval is over it writes one
summary line (how many more, the commonest details, the last message). The exact volume is in
the counters (``REJ:*`` PVs), not in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: Seconds between two lines of the same kind.
DEFAULT_INTERVAL = 10.0
#: Distinct details (e.g. source addresses) counted per kind and interval; more go to "other".
MAX_DETAILS = 64


@dataclass
class _Kind:
    started: float
    suppressed: int = 0
    last_message: str = ""
    details: dict[str, int] = field(default_factory=dict)


class RateLimitedLog:
    """Log at most one line per kind (``key``) and ``interval`` seconds, plus a summary.

    ``note()`` is cheap when a line is suppressed (a dict update); :meth:`flush` (called
    periodically, e.g. by the IOC's housekeeping) writes the summaries whose interval is over,
    so a burst that stops is still reported.
    """

    def __init__(self, logger: logging.Logger, interval: float = DEFAULT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Write to ``logger``; ``interval`` in seconds; ``clock`` returns seconds."""
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._kinds: dict[str, _Kind] = {}

    def note(self, key: str, message: str, detail: str = "",
             level: int = logging.WARNING, count: int = 1) -> None:
        """``count`` events of kind ``key``.

        The first is logged now if none was in this interval, the others are counted for the
        summary.

        ``detail`` (e.g. a source address) is tallied for the summary line.
        """
        now = self.clock()
        kind = self._kinds.get(key)
        if kind is None or now - kind.started >= self.interval:
            if kind is not None:
                self._summarise(key, kind, level)
            kind = self._kinds[key] = _Kind(started=now)
            self.logger.log(level, "%s", message)
            count -= 1
            if not count:
                return
        kind.suppressed += count
        kind.last_message = message
        if detail:
            details = kind.details
            if detail not in details and len(details) >= MAX_DETAILS:
                detail = "other"
            details[detail] = details.get(detail, 0) + count

    def flush(self, level: int = logging.WARNING, *, everything: bool = False) -> None:
        """Write the summary of every kind whose interval is over, and forget those kinds.

        With ``everything``: of every kind, e.g. at exit.
        """
        now = self.clock()
        for key, kind in list(self._kinds.items()):
            if everything or now - kind.started >= self.interval:
                self._summarise(key, kind, level)
                del self._kinds[key]

    def _summarise(self, key: str, kind: _Kind, level: int) -> None:
        if not kind.suppressed:
            return
        top = sorted(kind.details.items(), key=lambda item: -item[1])[:3]
        by = f" (most from {', '.join(f'{d}: {n}' for d, n in top)})" if top else ""
        self.logger.log(level, "%d more %s in the last %.0f s%s; last: %s", kind.suppressed,
                        key, min(self.interval, self.clock() - kind.started), by,
                        kind.last_message)
