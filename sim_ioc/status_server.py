"""UDP side of the CS800 IOC: the shared status socket, datagram checks and rejection counters.

Every controller broadcasts its status to one UDP port (30304 on real hardware), so one socket
receives all of them. :class:`StatusReceiver` first drops datagrams from addresses that are not
a configured controller's (a set lookup, before any decoding; counted as ``source``), then
checks each datagram with :func:`ophyd_cs800.protocol.decode_status` (length, header, length
field, footer, checksum), counts each rejection by reason, and hands good packets to a
``route`` callable that picks the controller by its controller number (id 1028) and checks
that the number came from that controller's address. Nothing a datagram contains can raise
out of here: a malformed datagram is counted, logged (rate-limited, one line) and forgotten.

The status socket is bound with ``SO_REUSEADDR`` and ``SO_REUSEPORT`` (asyn issue 108), so
other listeners on the same host (another IOC, a logger, ``cs800-sim`` tools) keep receiving.
An IOC fed only by its own simulators binds a private port instead
(:func:`open_private_status_socket`): exclusive, and outside the kernel's ephemeral range.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ophyd_cs800 import protocol as P
from sim_ioc.log_limit import RateLimitedLog

log = logging.getLogger(__name__)

#: Rejection reasons, in the order the PVs are listed (``$(P)$(R)REJ:<REASON>``).
REJECT_REASONS: tuple[str, ...] = (
    "short", "header", "length", "checksum", "footer", "unknown", "other", "source",
)
#: Most datagrams read per wake-up of the event loop (then other tasks get a turn).
DRAIN_BATCH = 512
#: Receive size: larger than any status datagram (a firmware-153 one is 1236 bytes).
RECV_SIZE = 65536
#: Lowest port :func:`open_private_status_socket` tries, and how many random ports it tries.
PRIVATE_PORT_LOW = 20000
PRIVATE_PORT_TRIES = 200
#: Where Linux keeps the ephemeral port range ("low high").
EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
#: Receive buffer asked of the kernel for the status socket (bytes); bursts of datagrams from
#: many controllers queue here while the IOC is busy. Linux caps it at net.core.rmem_max.
STATUS_RCVBUF = 4 * 1024 * 1024


def classify(error: Exception) -> str:
    """Map a :class:`~ophyd_cs800.protocol.ProtocolError` to one of :data:`REJECT_REASONS`.

    Uses the error's ``reason``, never its wording; anything else is ``"other"``.
    """
    reason = getattr(error, "reason", "other")
    return reason if reason in REJECT_REASONS else "other"


@dataclass
class StatusCounters:
    """Counts of status datagrams, by outcome (plain ints; published as PVs by the IOC)."""

    received: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REJECT_REASONS, 0))
    last_reject: str = ""
    last_datagram: bytes = b""

    @property
    def rejected_total(self) -> int:
        """Every rejected datagram, whatever the reason."""
        return sum(self.rejected.values())

    def reject(self, reason: str, message: str) -> None:
        """Count one rejection; ``message`` says what was wrong (kept as the last reason)."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.last_reject = f"{reason}: {message}"


#: ``route(packet, arrival_time, source_address) -> reason``: deliver a good packet; returns ""
#: when a controller group took it, else the rejection reason ("unknown": no group has that
#: controller number; "source": the group does not accept status from that address).
Route = Callable[[P.StatusPacket, float, str], str]


class StatusReceiver:
    """The status socket's reader: source check, datagram check, count, route. Never raises.

    ``allowed`` is the set of source addresses (dotted IPv4 strings) status may come from;
    a datagram from any other address is dropped before it is decoded (a set lookup) and
    counted as ``"source"``, so a flood of foreign datagrams costs little more than the
    ``recvfrom`` that reads it. ``None`` accepts every source.

    :meth:`attach` reads the socket with ``loop.add_reader`` and drains up to
    :data:`DRAIN_BATCH` datagrams per wake-up (asyncio's datagram transport reads one per
    wake-up, several times slower under a flood). A byte-identical repeat of the last good
    datagram from the same source reuses its decoded packet, so a replay flood is cheap too.
    """

    def __init__(self, route: Route, counters: StatusCounters,
                 allowed: frozenset[str] | set[str] | None = None,
                 rate_log: RateLimitedLog | None = None) -> None:
        """Deliver good packets to ``route``; count everything in ``counters``."""
        self.route = route
        self.counters = counters
        self.allowed = allowed
        self.rate_log = rate_log or RateLimitedLog(log)
        self._last_good: dict[str, tuple[bytes, P.StatusPacket]] = {}
        #: Where :meth:`_drain` hands a datagram that passed the source check: by default
        #: :meth:`datagram_received`; the synApps flavour puts its one-per-scan queue here.
        self.deliver: Callable[[bytes, tuple[str, int]], None] = self.datagram_received
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ socket
    def attach(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        """Start reading the non-blocking ``sock`` in ``loop``."""
        self._sock, self._loop = sock, loop
        loop.add_reader(sock.fileno(), self._drain)

    def close(self) -> None:
        """Stop reading and close the socket (safe to call twice)."""
        if self._sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None

    def _drain(self) -> None:
        """Read every waiting datagram (at most DRAIN_BATCH), cheapest checks first.

        A datagram from an address no controller group accepts costs a ``recvfrom`` and a set
        lookup; such drops are counted and logged once per batch.
        """
        if self._sock is None:  # closed while a wake-up was pending
            return
        recv = self._sock.recvfrom
        allowed = self.allowed
        foreign: list[str] = []
        try:
            for _ in range(DRAIN_BATCH):
                try:
                    data, addr = recv(RECV_SIZE)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:  # e.g. an ICMP error reported on the socket
                    self.rate_log.note("status socket errors", f"status socket error: {exc}")
                    return
                if allowed is not None and addr[0] not in allowed:
                    foreign.append(addr[0])
                    continue
                self.deliver(data, addr)
        finally:
            if foreign:
                self._foreign(foreign)

    # ------------------------------------------------------------------ one datagram
    def _foreign(self, sources: list[str]) -> None:
        """Count datagrams dropped for their source address (one entry per datagram)."""
        counters = self.counters
        n = len(sources)
        counters.received += n
        counters.rejected["source"] += n
        message = f"datagram from {sources[-1]}, which is not a configured controller address"
        counters.last_reject = f"source: {message}"
        for source, count in Counter(sources).items():
            self.rate_log.note("status datagrams from unconfigured addresses dropped",
                               f"status {message}: dropped", detail=source, count=count)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """Handle one datagram from ``addr`` (``(host, port)``)."""
        source = addr[0]
        if self.allowed is not None and source not in self.allowed:
            self._foreign([source])
            return
        counters = self.counters
        counters.received += 1
        counters.last_datagram = data
        arrival = time.time()
        cached = self._last_good.get(source)
        if cached is not None and cached[0] == data:
            packet = cached[1]
        else:
            try:
                packet = P.decode_status(data)
            except P.ProtocolError as exc:
                self._reject(classify(exc), str(exc))
                return
            except Exception as exc:  # a codec bug must not stop the IOC  # noqa: BLE001
                self._reject("other", f"{type(exc).__name__}: {exc}")
                return
            self._last_good[source] = (data, packet)
        try:
            reason = self.route(packet, arrival, source)
        except Exception as exc:  # noqa: BLE001
            self._reject("other", f"{type(exc).__name__}: {exc}")
            return
        if not reason:
            counters.accepted += 1
        elif reason == "source":
            self._reject("source", f"controller number {packet.cid} from {source}, which is "
                                   "not its configured address")
        else:
            self._reject(reason, f"controller number {packet.cid} (from {source}) is not "
                                 "served here")

    def _reject(self, reason: str, message: str) -> None:
        self.counters.reject(reason, message)
        self.rate_log.note(f"status datagrams rejected ({reason})",
                           f"status datagram rejected: {message}")


def _udp_socket(host: str, port: int, what: str,
                options: tuple[tuple[int, int], ...]) -> socket.socket:
    """Return a non-blocking UDP socket bound to host:port.

    Its ``options`` (level, name) are set to 1.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for level, name in options:
            sock.setsockopt(level, name, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot bind the CS800 {what} socket to {host}:{port}: "
                                 f"{exc.strerror}") from exc
    sock.setblocking(False)
    return sock


def open_status_socket(host: str, port: int, rng: random.Random | None = None) -> socket.socket:
    """Bind the shared status UDP socket on ``host:port`` (port 0: a free port, see below).

    ``SO_REUSEADDR`` and (where the platform has it) ``SO_REUSEPORT`` are set before binding,
    so other processes can bind the same port. ``SO_BROADCAST`` is set and the receive buffer
    enlarged (:data:`STATUS_RCVBUF`). To receive broadcasts bind ``""``/``"0.0.0.0"``.

    Port 0 is not left to the kernel: Linux lets a socket with ``SO_REUSEADDR`` that binds port
    0 be handed a port that another ``SO_REUSEADDR`` socket already holds, and every caproto CA
    client search socket is such a socket. A client given the status port would have the
    IOC's search replies delivered here (the more specific bind wins): its search times out and
    the reply is counted as a malformed datagram. So port 0 means a random free port outside the
    kernel's ephemeral range (:func:`_bind_outside_ephemeral`), which no port-0 bind is given
    (below it, else above it; if neither has a free port, an exclusive kernel-chosen one).

    Raises
    ------
    OSError
        With the address in the message, if the bind fails.
    """
    return open_shared_socket(host, port, "status", rng)


def open_shared_socket(host: str, port: int, what: str,
                       rng: random.Random | None = None) -> socket.socket:
    """Bind a UDP socket that other listeners may share, as :func:`open_status_socket` does.

    ``SO_REUSEADDR``, ``SO_REUSEPORT`` (where the platform has it) and ``SO_BROADCAST`` are set
    and the receive buffer is enlarged; port 0 means a random free port outside the kernel's
    ephemeral range, proved free by an exclusive probe bind first (see
    :func:`open_status_socket` for why). ``what`` names the socket in the error message
    (``"status"``, ``"identification"``). Raises ``OSError`` with the address if the bind fails.
    """
    options = [(socket.SOL_SOCKET, socket.SO_REUSEADDR), (socket.SOL_SOCKET, socket.SO_BROADCAST)]
    if hasattr(socket, "SO_REUSEPORT"):
        options.append((socket.SOL_SOCKET, socket.SO_REUSEPORT))
    if port == 0:
        return _bind_outside_ephemeral(host, tuple(options), rng, what)
    sock = _udp_socket(host, port, what, tuple(options))
    _enlarge_rcvbuf(sock)
    return sock


def ephemeral_port_range() -> tuple[int, int]:
    """Return the kernel's ephemeral (port 0) range, from ``/proc`` on Linux.

    ``(32768, 60999)`` elsewhere.
    """
    try:
        low, high = (int(x) for x in Path(EPHEMERAL_RANGE_FILE).read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def open_private_status_socket(host: str, rng: random.Random | None = None) -> socket.socket:
    """Bind an exclusive status socket on a free port outside the kernel's ephemeral range.

    For an IOC fed only by its own simulators (``cs800-sim-ioc``). No ``SO_REUSEADDR`` or
    ``SO_REUSEPORT``: no other socket can share the port while it is bound. And since the port is
    outside the range the kernel hands out for port 0, no Channel Access server or client (nor
    :func:`sim_ioc.process.free_port`) is ever given that number, so stray CA searches aimed at a
    recycled port never land here (above the range if there is no room below it; a
    kernel-chosen port as the last resort). Raises ``OSError`` (with the address) only if no
    port at all can be bound.
    """
    return _bind_outside_ephemeral(host, (), rng)


def _bind_outside_ephemeral(host: str, options: tuple[tuple[int, int], ...],
                            rng: random.Random | None, what: str = "status") -> socket.socket:
    """Return a socket with ``options`` on a random free port outside the kernel's ephemeral range.

    Tries up to ``PRIVATE_PORT_TRIES`` random ports of ``PRIVATE_PORT_LOW`` .. (start of the
    ephemeral range - 1), then as many above the range's end (a tuned range may leave no room
    below it). Each port is first proved free by an exclusive probe bind: with ``SO_REUSEADDR``
    the real bind would also succeed on a port another reusing socket holds (another IOC's).
    Another process could still take the port between probe and bind (microseconds): accepted.
    If no such port binds, the kernel picks one and the socket is bound *without* ``options``
    (exclusive, so no port-0 client can be handed its port later); a warning says so.
    """
    rng = rng or random.Random()
    low, high = ephemeral_port_range()
    for start, stop in ((PRIVATE_PORT_LOW, low), (high + 1, 65536)):
        for _ in range(PRIVATE_PORT_TRIES if stop > start else 0):
            port = rng.randrange(start, stop)
            try:
                if options:  # an exclusive bind needs no probe: it fails on a held port itself
                    _udp_socket(host, port, what, ()).close()
                sock = _udp_socket(host, port, what, options)
            except OSError:
                continue
            _enlarge_rcvbuf(sock)
            return sock
    sock = _udp_socket(host, 0, what, ())
    if options:
        log.warning("no free port outside the ephemeral range %d-%d: the %s socket on port %d "
                    "is exclusive (other listeners cannot share it)", low, high, what,
                    sock.getsockname()[1])
    _enlarge_rcvbuf(sock)
    return sock


def _enlarge_rcvbuf(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STATUS_RCVBUF)
    except OSError:  # a smaller buffer still works; only bursts may be lost
        log.warning("could not enlarge the status socket's receive buffer")


def open_command_socket(host: str) -> socket.socket:
    """Open the UDP socket that sends 7-byte commands, bound to ``host`` on a free port."""
    return _udp_socket(host, 0, "command", ((socket.SOL_SOCKET, socket.SO_BROADCAST),))
