"""Load for the IOC's status port: a bounded UDP flood, and a probe that times the updates.

:func:`flood` sends from a chosen loopback source; :class:`MarkerProbe` feeds one controller's
status with a changing marker and times, over a Channel Access monitor, when each is shown.

Run::

    python -m sim_ioc.flood --to 127.0.0.1:PORT --source 127.0.0.2 --rate 100000 --seconds 3

sends junk datagrams (or ``--replay-cid CID``: one valid status datagram of that controller,
over and over) from ``--source`` (any 127.x.y.z address routes on Linux's ``lo``) to ``--to``,
at about ``--rate`` datagrams per second (0: as fast as possible) until ``--seconds`` have
passed or ``--count`` datagrams were sent, then prints ``sent N in S s`` and exits 0.
Every run is bounded in time and count. Used by the tests and ``benchmarks/bench_ioc.py``.
"""

from __future__ import annotations

import argparse
import math
import socket
import sys
import threading
import time
from collections.abc import Sequence

from sim_ioc.cli_args import bounded_positive, host_port

#: Datagrams sent between two checks of the clock.
BURST = 200
#: Upper bound of ``--seconds`` and ``--count`` (a flood is always bounded).
MAX_SECONDS = 600.0
MAX_COUNT = 100_000_000


def payload(replay_cid: int | None) -> bytes:
    """Return the datagram to send: 64 junk bytes, or a valid status datagram of ``replay_cid``."""
    if replay_cid is None:
        return bytes(range(64))
    from sim_ioc.clock import ManualClock
    from sim_ioc.controller import SimulatedCS800

    return SimulatedCS800(replay_cid, ManualClock()).status_datagram()


def flood(to: tuple[str, int], source: str, data: bytes, rate: float, seconds: float,
          count: int = MAX_COUNT) -> tuple[int, float]:
    """Send ``data`` from ``source`` to ``to`` at ``rate``/s (0: flat out) for ``seconds`` s.

    Stops after ``count`` datagrams. Returns (datagrams sent, seconds taken). A send the
    kernel refuses (full buffer) is retried in the next burst, not counted.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((source, 0))
        sock.setblocking(False)
        send = sock.sendto
        start = time.monotonic()
        deadline = start + seconds
        sent = 0
        while sent < count:
            now = time.monotonic()
            if now >= deadline:
                break
            if rate > 0:
                ahead = sent - rate * (now - start)
                if ahead > 0:
                    time.sleep(min(ahead / rate, deadline - now))
                    continue
            for _ in range(min(BURST, count - sent)):
                try:
                    send(data, to)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # e.g. ECONNREFUSED reported from an earlier datagram
                sent += 1
        return sent, time.monotonic() - start
    finally:
        sock.close()


class MarkerProbe:
    """Feeds controller ``cid``'s status to ``status_to`` from ``source`` at ``rate_hz``.

    Each datagram with a new marker in RUNTIME (id 1066), and records through a CA monitor of
    ``runtime_pv`` when each marker was shown (``time.monotonic()`` seconds).

    Use as a context manager; entering waits (up to ``timeout`` s) until 3 markers were shown.
    """

    def __init__(self, status_to: tuple[str, int], runtime_pv: str, cid: int, source: str,
                 rate_hz: float = 10.0, timeout: float = 15.0) -> None:
        """Prepare the probe (nothing is sent until entered)."""
        from sim_ioc.clock import ManualClock
        from sim_ioc.controller import SimulatedCS800

        self.status_to, self.runtime_pv, self.rate_hz = status_to, runtime_pv, rate_hz
        self.timeout = timeout
        self.raw = SimulatedCS800(cid, ManualClock(), seed=cid).raw_values()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.sent: dict[int, float] = {}
        self.shown: dict[int, float] = {}
        self.severities: list[tuple[float, int]] = []  # (when shown, alarm severity)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from ophyd_cs800 import protocol as P

        marker = 20000
        while not self._stop.wait(1 / self.rate_hz):
            marker = marker + 1 if marker < 60000 else 20001
            self.sent[marker] = time.monotonic()
            self.sock.sendto(P.encode_status({**self.raw, 1066: marker}), self.status_to)

    def _on_update(self, sub, response) -> None:
        now = time.monotonic()
        self.shown.setdefault(int(response.data[0]), now)
        self.severities.append((now, int(response.metadata.severity)))

    def __enter__(self) -> MarkerProbe:
        """Subscribe, start feeding, wait until updates arrive (``TimeoutError`` if not)."""
        from caproto.threading.client import Context

        self._ctx = Context()
        pv, = self._ctx.get_pvs(self.runtime_pv, timeout=self.timeout)
        pv.wait_for_connection(timeout=self.timeout)
        self._sub = pv.subscribe(data_type="time")
        self._sub.add_callback(self._on_update)
        self._thread.start()
        deadline = time.monotonic() + self.timeout
        while len(self.shown) < 3:
            if time.monotonic() > deadline:
                self.__exit__()
                raise TimeoutError(f"{self.runtime_pv} showed no markers within "
                                   f"{self.timeout:g} s")
            time.sleep(0.02)  # polling a condition, bounded by the deadline
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop feeding, unsubscribe, close the socket."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.timeout)
        self._sub.clear()
        self._ctx.disconnect()
        self.sock.close()

    def caught_up(self) -> bool:
        """Return True once the last marker sent (or the one before) was shown."""
        return bool(self.sent) and max(self.shown, default=0) >= max(self.sent) - 2

    def latencies(self, start: float, end: float) -> list[float]:
        """Sorted send-to-monitor latencies (s) of markers sent in [start, end].

        ``inf`` for a marker never shown (lost).
        """
        return sorted(self.shown.get(m, math.inf) - t for m, t in self.sent.items()
                      if start <= t <= end)

    def longest_gap(self, start: float, end: float) -> float:
        """Longest time (s) in [start, end] without a new marker shown."""
        times = sorted([start, *(t for t in self.shown.values() if start < t < end), end])
        return max(b - a for a, b in zip(times, times[1:], strict=False))

    def went_invalid(self, start: float) -> bool:
        """Return True if an update after ``start`` had INVALID severity.

        That is: the controller went stale.
        """
        return any(severity == 3 for t, severity in self.severities if t >= start)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0..100) of already sorted values (nearest rank)."""
    return sorted_values[min(len(sorted_values) - 1, int(q / 100 * len(sorted_values)))]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sim_ioc.flood``: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m sim_ioc.flood", description=__doc__
                                     .split("\n")[0])
    parser.add_argument("--to", type=host_port, required=True, metavar="HOST:PORT")
    parser.add_argument("--source", default="127.0.0.2", metavar="ADDR",
                        help="local address to send from (default 127.0.0.2)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="datagrams per second (default 0: as fast as possible)")
    parser.add_argument("--seconds", type=bounded_positive("seconds", MAX_SECONDS),
                        default=3.0)
    parser.add_argument("--count", type=int, default=MAX_COUNT)
    parser.add_argument("--replay-cid", type=int, default=None, metavar="CID",
                        help="send one valid status datagram of controller CID, repeatedly")
    args = parser.parse_args(argv)
    if args.rate < 0 or not 1 <= args.count <= MAX_COUNT:
        parser.error(f"--rate must be >= 0 and --count 1..{MAX_COUNT}")
    try:
        sent, took = flood(args.to, args.source, payload(args.replay_cid), args.rate,
                           args.seconds, args.count)
    except OSError as exc:
        print(f"error: cannot send from {args.source}: {exc}", file=sys.stderr)
        return 1
    print(f"sent {sent} in {took:.3f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
