"""The controller's heartbeat: when status last arrived, and how often it arrives.

The synApps C IOC never marks a silent controller: every status PV keeps its last value with
NO_ALARM. Only *time* tells, so a client keeps a :class:`StatusClock` fed with one ``beat``
per status datagram it sees, and asks it for the age of the newest one and for the learned
status period (a robust estimate of the interval between datagrams). Two sources of beats:

* the status server's datagram PV ``$(P)$(R)status_packet.BINP`` (both IOCs): every datagram
  the IOC decodes posts it, whatever the values; :func:`packet_controller` tells which
  controller sent it, since one status port serves every controller of the subnet;
* otherwise the monitors of the controller's noisy status PVs (TEMP, ERROR, heater powers):
  a value that changes is a datagram; a controller whose readings do not change at all looks
  slower than it is (the learned period grows, so staleness takes longer to declare).

Pure logic: no ophyd, no Channel Access. Times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque

from ophyd_cs800.protocol import ProtocolError, decode_status

#: Monitor beats closer than this (s) are one datagram: the IOC posts a datagram's PVs together.
SAME_DATAGRAM_S = 0.02
#: Intervals kept for the period estimate (the median of these).
PERIOD_HISTORY = 15
#: Intervals needed before a learned period is believed.
MIN_INTERVALS = 3
#: Status id of the controller number in a status datagram (SetUpControllerNumber).
CONTROLLER_NUMBER_ID = 1028
#: EPICS INVALID alarm severity.
INVALID_SEVERITY = 3


class StatusClock:
    """Arrival times of status datagrams: their age and the learned status period.

    ``beat(now)`` records one datagram (beats within :data:`SAME_DATAGRAM_S` of the previous
    one are the same datagram). ``learned_period`` is the median of the last
    :data:`PERIOD_HISTORY` intervals, so a lone late datagram or a burst of queued ones does
    not move it; ``period(floor)`` never goes below ``floor`` (the device's ``status_period``).
    Thread safe (monitor callbacks and the job thread use it).
    """

    def __init__(self, start: float, *, merge: float = SAME_DATAGRAM_S) -> None:
        """Start counting the age from ``start`` (no datagram seen yet).

        Beats closer than ``merge`` seconds count as one.
        """
        self._merge = merge
        self._lock = threading.Lock()
        self._last = start
        self._seen = False
        self._intervals: deque[float] = deque(maxlen=PERIOD_HISTORY)

    def beat(self, now: float) -> None:
        """Record a status datagram seen at ``now``."""
        with self._lock:
            gap = now - self._last
            if self._seen and gap < self._merge:
                return
            if self._seen:
                self._intervals.append(gap)
            self._last = now
            self._seen = True

    @property
    def seen(self) -> bool:
        """True once a datagram was recorded."""
        return self._seen

    @property
    def last(self) -> float:
        """When the newest datagram arrived (or the clock started, if none did)."""
        return self._last

    def age(self, now: float) -> float:
        """Seconds since the newest datagram (or since the clock started)."""
        return max(0.0, now - self._last)

    @property
    def learned_period(self) -> float | None:
        """Median interval between datagrams in s, or ``None`` until enough were seen."""
        with self._lock:
            if len(self._intervals) < MIN_INTERVALS:
                return None
            return statistics.median(self._intervals)

    def period(self, floor: float) -> float:
        """Return the status period to plan with: the learned one, never below ``floor`` seconds."""
        learned = self.learned_period
        return floor if learned is None else max(floor, learned)


class Heartbeat:
    """The two sources of beats of one controller, combined.

    :attr:`packets` is fed by the datagram PV (one beat per datagram of this controller),
    :attr:`monitors` by the status PVs' monitors. The age is that of the freshest evidence
    from either; the learned period comes from the packets once they beat (their intervals
    are the datagrams' own), from the monitors otherwise.
    """

    def __init__(self, start: float) -> None:
        """Both clocks start at ``start``."""
        self.packets = StatusClock(start, merge=0.0)
        self.monitors = StatusClock(start)
        self._last_packet = b""

    def on_monitor(self, severity: int | None, now: float) -> None:
        """Count a monitor a status PV posted at ``now``: a beat unless it only turned INVALID (3).

        The fixed IOC marks a silent controller's PVs INVALID; that post is no datagram.
        """
        if severity is None or int(severity) < INVALID_SEVERITY:
            self.monitors.beat(now)

    def on_packet(self, datagram: object, severity: int | None, controller: int | None,
                  now: float) -> bool:
        """``status_packet.BINP`` posted ``datagram`` at ``now``; True if it was a beat.

        It counts only when it has NO_ALARM severity (the C IOC also processes the record on
        each 1 s read timeout, with READ/MAJOR), carries ``controller``'s number (one status
        port serves every controller; ``None``, unknown, never matches) and differs from the
        last counted one (an IOC may post the same datagram again).
        """
        if (severity is not None and int(severity) != 0) or controller is None:
            return False
        data = datagram_bytes(datagram)
        if packet_controller(data) != controller or data == self._last_packet:
            return False
        self._last_packet = data
        self.packets.beat(now)
        return True

    def age(self, now: float) -> float:
        """Seconds since the newest datagram seen by either source."""
        return min(self.packets.age(now), self.monitors.age(now))

    @property
    def learned_period(self) -> float | None:
        """The learned status period, s (``None`` until known)."""
        learned = self.packets.learned_period if self.packets.seen else None
        return learned if learned is not None else self.monitors.learned_period

    def period(self, floor: float) -> float:
        """Return the status period to plan with: the learned one, never below ``floor`` seconds."""
        learned = self.learned_period
        return floor if learned is None else max(floor, learned)


def datagram_bytes(datagram: object) -> bytes:
    """Bytes of a CA char array (bytes, a list of ints, or a numpy array, signed or not)."""
    if isinstance(datagram, (bytes, bytearray)):
        return bytes(datagram)
    astype = getattr(datagram, "astype", None)
    if astype is not None:
        return bytes(astype("uint8").tobytes())
    try:
        return bytes(int(x) & 0xFF for x in datagram)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return b""


def packet_controller(datagram: object) -> int | None:
    """Return the controller number a status datagram carries.

    ``None`` if it is no valid datagram.

    ``status_packet.BINP`` holds the bytes the IOC read (NORD of them; a waveform may carry
    trailing zeros, which are cut at the datagram's own length field).
    """
    data = datagram_bytes(datagram)
    if len(data) >= 4:
        total = int.from_bytes(data[2:4], "big") + 8  # header, length, data, checksum, footer
        data = data[:total] if total <= len(data) else data
    try:
        packet = decode_status(data)
    except (ProtocolError, ValueError):
        return None
    return packet.get_raw(CONTROLLER_NUMBER_ID)


__all__ = ["MIN_INTERVALS", "PERIOD_HISTORY", "SAME_DATAGRAM_S", "Heartbeat", "StatusClock",
           "datagram_bytes", "packet_controller"]
