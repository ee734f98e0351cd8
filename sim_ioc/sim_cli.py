"""``cs800-sim``: simulated CS800 controllers speaking the real UDP protocol, standalone.

Example::

    cs800-sim --cid 411 --cid 369 --status-to 127.0.0.1:30304 --command-port 30305 --speed 10

Add ``--id-to HOST:PORT`` to make every controller announce itself there once per wall second
with its identification datagram (UDP 30303 on real hardware; see ``cs800-discover``).

prints one line per controller (``controller 411 -> commands on 127.0.0.1:30305``) and runs until
SIGINT or SIGTERM, then exits with status 0. Bad arguments exit with status 2 and a one-line
message; a port that cannot be bound exits with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from ophyd_cs800.version import add_version_option
from sim_ioc.cli_args import bounded_positive, host_port, port
from sim_ioc.clock import MAX_SPEED, ScaledClock
from sim_ioc.controller import LAYOUTS, SimulatedCS800
from sim_ioc.udp_sim import DEFAULT_MAX_RATE_HZ, SimulatorServer

_speed = bounded_positive("speed", MAX_SPEED)
_rate = bounded_positive("max rate")


def build_parser() -> argparse.ArgumentParser:
    """Return the ``cs800-sim`` argument parser."""
    p = argparse.ArgumentParser(
        prog="cs800-sim",
        description="Simulated Oxford CryoStream 800 controllers on UDP: status datagrams out "
        "(one per simulated second), 7-byte commands in.",
    )
    p.add_argument("--cid", type=int, action="append", metavar="N",
                   help="controller number (id 1028); repeat for several controllers "
                   "(default: one controller, 411)")
    p.add_argument("--status-to", type=host_port, default=("127.0.0.1", 30304),
                   metavar="HOST:PORT", help="where status datagrams go (default 127.0.0.1:30304)")
    p.add_argument("--id-to", type=host_port, default=None, metavar="HOST:PORT",
                   help="also send each controller's identification datagram (name, MAC) "
                   "here once per wall second, as a real unit does to UDP 30303 (default: none)")
    p.add_argument("--command-host", default="127.0.0.1",
                   help="address the command sockets bind to (default 127.0.0.1)")
    p.add_argument("--command-port", type=port, default=30305, metavar="PORT",
                   help="command port of the first controller, the next ones count up "
                   "(default 30305; 0 = free ports)")
    p.add_argument("--speed", type=_speed, default=1.0,
                   help="simulated seconds per wall second (default 1)")
    p.add_argument("--broadcast", action="store_true",
                   help="allow a broadcast --status-to address (SO_BROADCAST)")
    p.add_argument("--layout", choices=LAYOUTS, default="928",
                   help="928-byte standard datagram or the 1236-byte firmware-153 one")
    p.add_argument("--firmware", type=int, default=None,
                   help="firmware reported in id 1004 (default 115, or 153 with --layout long)")
    p.add_argument("--seed", type=int, default=None, help="seed of the noise generators")
    p.add_argument("--start-temp", type=float, default=293.0, metavar="K",
                   help="gas and room temperature at power-up, kelvin (default 293)")
    p.add_argument("--max-rate", "--max-rate-hz", type=_rate, default=DEFAULT_MAX_RATE_HZ,
                   metavar="HZ", help="cap on status datagrams per wall second per controller "
                   f"(default {DEFAULT_MAX_RATE_HZ:g}, which the synApps C IOC can decode)")
    p.add_argument("-v", "--verbose", action="store_true", help="log ignored commands")
    return add_version_option(p)


async def _serve(server: SimulatorServer, clock: ScaledClock) -> None:
    """Start ``server``, print what it serves, run until SIGINT/SIGTERM, stop."""
    await server.start()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    host, port = server.status_to
    print(f"cs800-sim: {len(server.controllers)} simulated CS800 controller(s), speed "
          f"{clock.speed:g}x, status to {host}:{port}"
          + ("" if server.id_to is None else
             f", identification to {server.id_to[0]}:{server.id_to[1]}"), flush=True)
    for ctl in server.controllers:
        print(f"controller {ctl.cid} -> commands on {server.command_host}:"
              f"{server.command_ports[ctl.cid]} (layout {ctl.layout}, firmware {ctl.firmware})",
              flush=True)
    try:
        await done.wait()
    finally:
        await server.stop()
    print("cs800-sim: stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cs800-sim``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    cids = args.cid or [411]
    firmware = args.firmware if args.firmware is not None else (
        153 if args.layout == "long" else 115)
    clock = ScaledClock(args.speed)
    try:
        controllers = [
            SimulatedCS800(cid, clock, firmware=firmware, layout=args.layout,
                           seed=None if args.seed is None else args.seed + i,
                           start_temp_k=args.start_temp, ambient_k=args.start_temp)
            for i, cid in enumerate(cids)
        ]
        server = SimulatorServer(
            controllers, status_to=args.status_to, command_host=args.command_host,
            command_port=args.command_port, broadcast=args.broadcast, max_rate_hz=args.max_rate,
            id_to=args.id_to,
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(_serve(server, clock))
    except OSError as exc:
        print(f"cs800-sim: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
