"""Command-line entry points of the CS800 IOC: ``cs800-ioc`` and ``cs800-sim-ioc``.

Real hardware (one ``--controller R:CID@HOST[:PORT]`` per controller)::

    cs800-ioc --prefix xxx: --controller CS0:411@192.168.0.144 --controller CS1:369@192.168.0.113

Status datagrams are accepted only from each controller's HOST, or from the hosts given with
``--status-from [R:]HOST`` (status through a relay); others are counted in ``$(P)CS:REJ:SOURCE``.

Simulated controllers and the IOC in one process, on loopback with free UDP ports::

    cs800-sim-ioc --prefix sim: --controllers 2 --speed 100

Both print the prefixes they serve, run until SIGINT/SIGTERM and exit 0. Bad arguments exit 2
with a one-line message; a socket that cannot be bound exits 1. caproto's usual options work:
``--list-pvs``, ``-v``/``-q``, ``--interfaces``.

``--autosave DIR`` keeps each controller's DEBUG, DISABLE, RRATE, RTEMP, PTIME, CTEMP and ERATE
in DIR and restores them before serving (:mod:`sim_ioc.autosave`); ``cs800-ioc`` does so by
default in :func:`sim_ioc.autosave.default_directory`, ``cs800-sim-ioc`` only when asked;
``--no-autosave`` turns it off. ``python -m sim_ioc.cli ioc ...`` runs
``cs800-ioc``, ``python -m sim_ioc.cli [sim-ioc] ...`` runs ``cs800-sim-ioc``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from caproto.asyncio.server import start_server
from caproto.server import template_arg_parser

from ophyd_cs800 import protocol as P
from sim_ioc.autosave import SETTINGS_FIELDS, Autosave, default_directory
from sim_ioc.cli_args import bounded_positive, port
from sim_ioc.flavors import DEFAULT_FLAVOR, FLAVORS
from sim_ioc.ioc import CS800IOC, DEFAULT_STALE_TIMEOUT, ControllerConfig
from sim_ioc.udp_sim import DEFAULT_MAX_RATE_HZ

log = logging.getLogger("sim_ioc.cli")

#: First simulated controller number; the next ones count up (411, 412, ...).
DEFAULT_FIRST_CID = 411


def parse_controller(text: str, default_port: int = P.COMMAND_PORT) -> ControllerConfig:
    """Parse ``R:CID@HOST[:PORT]`` (e.g. ``CS0:411@192.168.0.144``) into a config.

    ``R`` is the group prefix without its final colon, ``CID`` the controller number (0: the
    first controller heard), ``PORT`` the command port (default ``default_port``). Raises
    ``argparse.ArgumentTypeError`` naming the expected form.
    """
    form = "expected R:CID@HOST[:PORT], e.g. CS0:411@192.168.0.144"
    left, at, right = text.partition("@")
    r, colon, cid_text = left.rpartition(":")
    if not at or not colon or not r or not right:
        raise argparse.ArgumentTypeError(f"bad --controller {text!r}: {form}")
    if not cid_text.isdigit() or not 0 <= int(cid_text) <= 65533:
        raise argparse.ArgumentTypeError(
            f"bad --controller {text!r}: controller number must be 0..65533 (0 = first heard)")
    host, colon, port_text = right.partition(":")
    port = default_port
    if colon:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise argparse.ArgumentTypeError(
                f"bad --controller {text!r}: command port must be 1..65535")
        port = int(port_text)
    if not host:
        raise argparse.ArgumentTypeError(f"bad --controller {text!r}: {form}")
    return ControllerConfig(r=f"{r}:", cid=int(cid_text), command_addr=(host, port))


def apply_status_from(controllers: Sequence[ControllerConfig],
                      entries: Sequence[str]) -> list[ControllerConfig]:
    """Apply ``--status-from [R:]HOST`` entries: the addresses status is accepted from.

    ``HOST`` alone applies to every controller (a relay forwarding all of them), ``R:HOST``
    to the controller whose R is ``R:``. A controller named by any entry accepts status only
    from the hosts given for it (not from its command host). Raises
    ``argparse.ArgumentTypeError`` for an empty entry or an unknown R.
    """
    common: list[str] = []
    per_r: dict[str, list[str]] = {}
    known = {c.r for c in controllers}
    for entry in entries:
        r, colon, host = entry.rpartition(":")
        if not host:
            raise argparse.ArgumentTypeError(f"bad --status-from {entry!r}: expected [R:]HOST, "
                                             "e.g. 10.0.0.5 or CS0:10.0.0.5")
        if not colon:
            common.append(host)
        elif f"{r}:" in known:
            per_r.setdefault(f"{r}:", []).append(host)
        else:
            raise argparse.ArgumentTypeError(
                f"bad --status-from {entry!r}: no --controller has R {r + ':'!r} "
                f"(known: {', '.join(sorted(known))})")
    return [replace(c, status_from=tuple(common + per_r.get(c.r, [])))
            if common or c.r in per_r else c for c in controllers]


_positive = bounded_positive("value")


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def _prefix_arg(text: str) -> str:
    if not text.endswith(":"):
        raise argparse.ArgumentTypeError(f"a record-name prefix ends with ':', got {text!r}")
    return text


def _common_parser(prog: str, desc: str, default_prefix: str,
                   default_autosave: Path | None = None) -> tuple[argparse.ArgumentParser,
                                                                  Callable]:
    parser, split_args = template_arg_parser(desc=desc, default_prefix=default_prefix,
                                             supported_async_libs=["asyncio"])
    parser.prog = prog
    saved = ", ".join(SETTINGS_FIELDS)
    parser.add_argument("--autosave", type=Path, default=default_autosave, metavar="DIR",
                        help=f"save {saved} of each controller in DIR and restore them at "
                        f"start (default: {default_autosave or 'off'})")
    parser.add_argument("--no-autosave", action="store_true",
                        help="neither restore nor save the settings")
    parser.add_argument("--status-r", default="CS:", type=_prefix_arg,
                        help="R of the status-server PVs (default CS:)")
    parser.add_argument("--stale-timeout", type=_positive, default=DEFAULT_STALE_TIMEOUT,
                        metavar="S", help="seconds without a datagram before a controller's "
                        f"status PVs go INVALID/COMM (default {DEFAULT_STALE_TIMEOUT:g}; "
                        "fixed flavour only)")
    parser.add_argument("--flavor", choices=tuple(FLAVORS), default=DEFAULT_FLAVOR,
                        help="what clients see: 'fixed' (default: checked limits, INVALID "
                        "when silent) or 'synapps' (the synApps C IOC: clamping, values "
                        "freeze when silent, 10 decodes/s, DISABLE 1 at boot)")
    from ophyd_cs800.version import add_version_option  # every command has --version
    add_version_option(parser)
    return parser, split_args


async def _serve(ioc: CS800IOC, run_options: dict[str, Any],
                 before_serving: Callable[[], Awaitable[None]] | None = None,
                 after_serving: Callable[[], Awaitable[None]] | None = None) -> None:
    """Open the IOC, run the CA server until cancelled (SIGINT/SIGTERM), then close."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None, "_serve runs as the main task of asyncio.run"
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, task.cancel)
        except (NotImplementedError, RuntimeError):  # not the main thread / platform
            pass
    await ioc.open()
    try:
        if before_serving is not None:
            await before_serving()
        for line in ioc.describe():
            print(line, flush=True)
        await start_server(ioc.pvdb, interfaces=run_options["interfaces"],
                           log_pv_names=run_options["log_pv_names"])
    finally:
        if after_serving is not None:
            await after_serving()
        await ioc.close()


Hook = Callable[[], Awaitable[None]]


def _with_autosave(ioc: CS800IOC, args: argparse.Namespace, before: Hook | None = None,
                   after: Hook | None = None) -> tuple[Hook | None, Hook | None]:
    """Wrap the serving hooks so the settings are restored before CA serves, saved at the end."""
    directory = None if args.no_autosave else args.autosave
    if directory is None:
        return before, after
    saver = Autosave(ioc.controllers, directory)

    async def restore_then_start() -> None:
        await saver.restore()
        print(f"autosave: {saver.directory}", flush=True)
        saver.start()
        if before is not None:
            await before()

    async def stop_then_save() -> None:
        try:
            if after is not None:
                await after()
        finally:
            await saver.stop()

    return restore_then_start, stop_then_save


def _run(coro: Coroutine[Any, Any, None]) -> int:
    try:
        asyncio.run(coro)
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


class _BeaconNoiseFilter(logging.Filter):
    """Reduce caproto's beacon failures to one line.

    With no CA repeater listening on the beacon port (the normal case on a laptop or in CI),
    caproto logs a full traceback for every beacon it fails to send, for as long as the IOC
    runs. Beacons only speed up reconnection; the first failure is shown once, without its
    traceback, and later ones are dropped.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass every record except the second and later beacon failures."""
        if not record.getMessage().startswith("Failed to send beacon"):
            return True
        if self.seen:
            return False
        self.seen = True
        record.exc_info = None
        record.exc_text = None
        record.msg = f"{record.getMessage()} (no CA repeater listening; shown once)"
        record.args = ()
        return True


def _setup_logging(args: argparse.Namespace) -> None:
    logging.getLogger("caproto.ctx").addFilter(_BeaconNoiseFilter())
    level = logging.WARNING if args.quiet else logging.INFO
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    pkg = logging.getLogger("sim_ioc")
    pkg.addHandler(handler)
    pkg.setLevel(level)
    pkg.propagate = False


def main_ioc(argv: Sequence[str] | None = None) -> int:
    """``cs800-ioc``: the IOC for real CS800 controllers (see the module docstring)."""
    parser, split_args = _common_parser(
        "cs800-ioc", "CS800 IOC (synApps Oxford_CS800 PV names) for real controllers.", "xxx:",
        default_autosave=default_directory())
    parser.add_argument("--controller", action="append", required=True, metavar="R:CID@HOST",
                        help="R:CID@HOST[:PORT], once per controller (CID 0: first heard)")
    parser.add_argument("--status-port", type=port, default=P.STATUS_PORT,
                        help=f"UDP port the status broadcasts arrive on (default "
                        f"{P.STATUS_PORT}; 0 = a free port, shown in $(P)$(R)PORT)")
    parser.add_argument("--listen", default="0.0.0.0", metavar="HOST",
                        help="interface the status socket binds (default 0.0.0.0, needed "
                        "for broadcasts)")
    parser.add_argument("--command-port", type=port, default=P.COMMAND_PORT,
                        help=f"controllers' command port when not given per controller "
                        f"(default {P.COMMAND_PORT})")
    parser.add_argument("--command-host", default="0.0.0.0", metavar="HOST",
                        help="local address the command socket binds (default 0.0.0.0)")
    parser.add_argument("--status-from", action="append", default=[], metavar="[R:]HOST",
                        help="accept status datagrams only from HOST (all controllers) or, "
                        "with R:, for that controller; repeatable. Default: each controller's "
                        "own HOST of --controller. For status that arrives through a relay")
    args = parser.parse_args(argv)
    try:
        controllers = [parse_controller(c, args.command_port) for c in args.controller]
        controllers = apply_status_from(controllers, args.status_from)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    ioc_options, run_options = split_args(args)
    _setup_logging(args)
    try:
        ioc = CS800IOC(ioc_options["prefix"], controllers, status_r=args.status_r,
                       status_host=args.listen, status_port=args.status_port,
                       command_host=args.command_host, stale_timeout=args.stale_timeout,
                       flavor=args.flavor)
    except ValueError as exc:
        parser.error(str(exc))
    return _run(_serve(ioc, run_options, *_with_autosave(ioc, args)))


def _mount_valves(ioc: CS800IOC, prefix: str, n_valves: int) -> None:
    try:
        from sim_ioc.valves import ValveBank
    except ImportError as exc:
        raise SystemExit(f"error: --valves needs the simulated valve bank (sim_ioc.valves), "
                         f"which is not available: {exc}") from None
    ioc.add_group(ValveBank(prefix=f"{prefix}VB:", n_valves=n_valves, n_dtoa=8))


def main_sim_ioc(argv: Sequence[str] | None = None) -> int:
    """``cs800-sim-ioc``: the IOC plus simulated controllers in one process, on loopback."""
    from sim_ioc.clock import MAX_SPEED, ScaledClock
    from sim_ioc.controller import LAYOUTS, SimulatedCS800
    from sim_ioc.udp_sim import SimulatorServer

    parser, split_args = _common_parser(
        "cs800-sim-ioc", "CS800 IOC with simulated controllers (loopback UDP).", "sim:")
    parser.add_argument("--controllers", type=_count, default=1, metavar="N",
                        help="number of simulated controllers (default 1): CS0:, CS1:, ...")
    parser.add_argument("--first-cid", type=int, default=DEFAULT_FIRST_CID, metavar="CID",
                        help=f"controller number of CS0: (default {DEFAULT_FIRST_CID}); the "
                        "next ones count up")
    parser.add_argument("--speed", type=_positive, default=1.0,
                        help="simulated seconds per wall second (default 1 = real time)")
    parser.add_argument("--valves", type=_count, default=0, metavar="N",
                        help="also serve a simulated valve bank with N valves at $(P)VB:")
    parser.add_argument("--layout", choices=LAYOUTS, default="928",
                        help="status datagram layout: 928 bytes (firmware 115) or long "
                        "(1236 bytes, firmware 153)")
    parser.add_argument("--seed", type=int, default=None, help="noise seed (reproducible runs)")
    parser.add_argument("--max-rate-hz", type=_positive, default=DEFAULT_MAX_RATE_HZ,
                        help="cap on status datagrams per wall second per controller (default "
                        f"{DEFAULT_MAX_RATE_HZ:g}: the synApps C IOC decodes at most 10/s)")
    parser.add_argument("--enable-comms", action="store_true",
                        help="synapps flavour: set DISABLE to Enabled once the simulators run "
                        "(the C IOC boots Disabled); no effect in the fixed flavour")
    args = parser.parse_args(argv)
    if not 1 <= args.controllers <= 1000:
        parser.error(f"--controllers must be 1..1000, got {args.controllers}")
    if not 1 <= args.first_cid <= 65533 - args.controllers:
        parser.error(f"--first-cid must leave room for {args.controllers} controller numbers "
                     f"below 65534, got {args.first_cid}")
    if args.speed > MAX_SPEED:
        parser.error(f"--speed must be <= {MAX_SPEED:g}")
    ioc_options, run_options = split_args(args)
    _setup_logging(args)
    prefix = ioc_options["prefix"]
    clock = ScaledClock(args.speed)
    firmware = 153 if args.layout == "long" else 115
    sims = [
        SimulatedCS800(args.first_cid + i, clock, firmware=firmware, layout=args.layout,
                       seed=None if args.seed is None else args.seed + i)
        for i in range(args.controllers)
    ]
    # The simulators send status from 127.0.0.1 (their command sockets): only that is accepted.
    configs = [ControllerConfig(r=f"CS{i}:", cid=sim.cid, status_from=("127.0.0.1",))
               for i, sim in enumerate(sims)]
    try:
        ioc = CS800IOC(prefix, configs, status_r=args.status_r, status_host="127.0.0.1",
                       status_port=0, command_host="127.0.0.1",
                       stale_timeout=args.stale_timeout, sims=sims, private_status_port=True,
                       flavor=args.flavor)
    except ValueError as exc:
        parser.error(str(exc))
    if args.valves:
        _mount_valves(ioc, prefix, args.valves)
    server: SimulatorServer | None = None

    async def start_simulators() -> None:
        nonlocal server
        assert ioc.status_port is not None, "the IOC is open: its status port is bound"
        server = SimulatorServer(sims, status_to=("127.0.0.1", ioc.status_port),
                                 command_host="127.0.0.1", command_port=0,
                                 max_rate_hz=args.max_rate_hz)
        await server.start()
        for group in ioc.controllers:
            group.config.command_addr = ("127.0.0.1", server.command_ports[group.config.cid])
            if args.enable_comms and group.disabled:
                await group.disable.write("Enabled")
        if args.valves:
            print(f"{prefix}VB:  simulated valve bank, {args.valves} valves", flush=True)

    async def stop_simulators() -> None:
        if server is not None:
            await server.stop()

    return _run(_serve(ioc, run_options,
                       *_with_autosave(ioc, args, start_simulators, stop_simulators)))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sim_ioc.cli [ioc|sim-ioc] ARGS``: dispatch to one of the two commands."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "ioc":
        return main_ioc(args[1:])
    if args and args[0] == "sim-ioc":
        args = args[1:]
    return main_sim_ioc(args)


if __name__ == "__main__":
    sys.exit(main())
