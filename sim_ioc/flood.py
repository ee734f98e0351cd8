"""A bounded UDP flood from a chosen loopback source: load for testing the IOC's status port.

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
import socket
import sys
import time
from collections.abc import Sequence

from sim_ioc.cli_args import bounded_positive, host_port

#: Datagrams sent between two checks of the clock.
BURST = 200
#: Upper bound of ``--seconds`` and ``--count`` (a flood is always bounded).
MAX_SECONDS = 600.0
MAX_COUNT = 100_000_000


def payload(replay_cid: int | None) -> bytes:
    """The datagram to send: 64 junk bytes, or a valid status datagram of ``replay_cid``."""
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
