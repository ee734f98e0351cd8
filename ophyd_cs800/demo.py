"""``cs800-demo``: a simulated CryoStream 800 on loopback, driven by ``RE(ramp(cs0, 150))``.

The demo starts ``cs800-sim-ioc`` (one simulated controller, sped up) on free loopback ports,
points this process's Channel Access client at it *before* any ophyd signal exists, creates
``cs0 = CS800(prefix, name="cs0")``, and runs ``RE(ramp(cs0, 150))`` with a live table
(BestEffortCallback with plots disabled, or bluesky's LiveTable when matplotlib is not
installed) and a progress bar. It prints where the controller ended, then stops the IOC it
started: also on Ctrl-C and on errors. No network access beyond 127.0.0.1.

This is the one module of ``ophyd_cs800`` that imports ``sim_ioc`` (see the layering rules).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ophyd_cs800.version import add_version_option

#: Default simulated seconds per wall second: 293 K -> 150 K at 360 K/h takes about 15 s.
DEFAULT_SPEED = 100.0
#: Seconds the sample must stay within tolerance before the ramp counts as done (wall clock).
DEFAULT_SETTLE = 1.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cs800-demo",
        description="Start a simulated CryoStream 800 IOC on loopback and run "
        "RE(ramp(cs0, TARGET)) against it with a live table and a progress bar.",
    )
    add_version_option(parser)
    parser.add_argument("--target", type=float, default=150.0,
                        help="target temperature in K (default 150)")
    parser.add_argument("--rate", type=float, default=360.0,
                        help="ramp rate in K/h, 1-360 (default 360)")
    parser.add_argument("--speed", type=float, default=DEFAULT_SPEED,
                        help=f"simulation speed-up (default {DEFAULT_SPEED:g})")
    parser.add_argument("--settle", type=float, default=DEFAULT_SETTLE,
                        help=f"settle time in wall-clock seconds (default {DEFAULT_SETTLE:g})")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (there is none anyway when stdout is no terminal)")
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="store the run in the Tiled catalog in DIR (created on first use; "
                        "default: a per-user data directory, printed), or an http(s):// "
                        "Tiled server")
    parser.add_argument("--no-store", action="store_true",
                        help="do not store the run (no Tiled needed)")
    parser.add_argument("--log", type=Path, default=None,
                        help="IOC log file (default: a temporary file, removed at the end)")
    return parser


def _table_callback() -> tuple[Any, str]:
    """BestEffortCallback without plots; bluesky's LiveTable if matplotlib is missing."""
    try:
        from bluesky.callbacks.best_effort import BestEffortCallback
    except ImportError:  # BEC imports matplotlib; an environment may have removed it
        from bluesky.callbacks.core import LiveTable

        return LiveTable(["cs0", "cs0_setpoint", "cs0_target", "cs0_phase"]), "LiveTable"
    bec = BestEffortCallback()
    bec.disable_plots()
    return bec, "BestEffortCallback"


def _wait_ready(cs0: Any, timeout: float) -> None:
    """Wait until the simulated controller has finished start-up (Ready or Run)."""
    from ophyd_cs800.protocol import RunMode

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cs0.run_mode.get() in (RunMode.STARTUP_OK, RunMode.RUN) and not cs0._temp_invalid():
            return
        time.sleep(0.05)
    raise RuntimeError(f"the simulated controller did not become Ready within {timeout:g} s "
                       f"({cs0.describe_state()})")


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo with parsed ``args``; returns the process exit code."""
    from sim_ioc.process import SimIocProcess

    log_dir = None
    log_path = args.log
    if log_path is None:
        log_dir = tempfile.TemporaryDirectory(prefix="cs800-demo-")
        log_path = Path(log_dir.name) / "ioc.log"
    ioc = SimIocProcess(controllers=1, speed=args.speed, log_path=log_path)
    print(f"cs800-demo: starting the simulated IOC (speed x{args.speed:g}) ...", flush=True)
    try:
        ioc.start()
        os.environ.update(ioc.env)  # before the first CA client context exists
        return _drive(ioc, args)
    except KeyboardInterrupt:
        print("\ncs800-demo: interrupted; stopping the IOC.", file=sys.stderr)
        return 130
    except Exception as exc:
        from ophyd_cs800.device import error_message

        print(f"cs800-demo: failed: {error_message(exc)}", file=sys.stderr)
        tail = ioc.log_text(2000)
        if tail:
            print(f"--- last lines of the IOC log ({log_path}) ---\n{tail}", file=sys.stderr)
        return 1
    finally:
        ioc.stop()
        if log_dir is not None:
            log_dir.cleanup()


def _drive(ioc: Any, args: argparse.Namespace) -> int:
    import ophyd

    ophyd.set_cl("caproto")
    from bluesky import RunEngine
    from bluesky.utils import ProgressBarManager, RunEngineInterrupted

    from ophyd_cs800.device import CS800
    from ophyd_cs800.plans import ramp

    prefix = ioc.controller_prefix(0)
    print(f"cs800-demo: IOC pid {ioc.pid}, Channel Access on 127.0.0.1:{ioc.ca_port}, "
          f"controller PVs {prefix}*", flush=True)
    # The sim broadcasts up to 20 status datagrams per wall second: use a 0.25 s period.
    cs0 = CS800(prefix, name="cs0", settle_time=args.settle, status_period=0.25)
    cs0.wait_for_connection(timeout=20)
    _wait_ready(cs0, 20)
    print(f"cs800-demo: {cs0.describe_state()}", flush=True)

    RE = RunEngine({}, context_managers=[])  # noqa: N806 - the conventional name
    stored = None if args.no_store else _open_store(RE, args.data)
    table, kind = _table_callback()
    RE.subscribe(table)
    if not args.no_progress and sys.stdout.isatty():  # no bar redraws in a file or CI log
        # bluesky declares waiting_hook only by assigning None in RunEngine.__init__
        RE.waiting_hook = ProgressBarManager()  # type: ignore[assignment]
    print(f"cs800-demo: RE(ramp(cs0, {args.target:g}, rate={args.rate:g}))  "
          f"[live table: {kind}]", flush=True)
    started = time.monotonic()

    def pause_now(signum: int, frame: Any) -> None:  # Ctrl-C: pause the RE at once (once)
        if RE.state == "idle":  # before the plan started (or after it ended): just quit
            raise KeyboardInterrupt
        if RE.state.can_pause:
            try:
                RE.request_pause(defer=False)
            except Exception:  # a second Ctrl-C racing the first: already pausing
                pass

    previous = signal.signal(signal.SIGINT, pause_now)
    try:
        # sim_speed: plots of the stored run show simulated time (examples/plot_run.py)
        uids = RE(ramp(cs0, args.target, rate=args.rate, md={"sim_speed": args.speed}))
    except RunEngineInterrupted:
        signal.signal(signal.SIGINT, previous)
        print("\ncs800-demo: Ctrl-C: aborting the plan.", file=sys.stderr, flush=True)
        if RE.state == "paused":
            quiet = logging.getLogger("bluesky")
            level = quiet.level
            quiet.setLevel(logging.CRITICAL)  # no "Run aborted" traceback for a Ctrl-C
            try:
                RE.abort("interrupted by the user")
            finally:
                quiet.setLevel(level)
        raise KeyboardInterrupt from None
    finally:
        signal.signal(signal.SIGINT, previous)
    wall = time.monotonic() - started
    temp = cs0.temperature.get()
    print(
        f"cs800-demo: cs0 ended at {temp:.2f} K (target {args.target:.2f} K, tolerance "
        f"{cs0.tolerance.get():g} K), phase {cs0.phase.get(as_string=True)}, after "
        f"{wall:.1f} s wall time ({wall * args.speed / 60:.1f} simulated minutes).",
        flush=True,
    )
    ok = abs(temp - args.target) <= cs0.tolerance.get()
    cs0.destroy()
    if stored is not None:
        assert isinstance(uids, tuple), "RE() returns the run uids (call_returns_result off)"
        _report_stored(stored, uids[0])
    return 0 if ok else 1


def _open_store(RE: Any, data: str | None) -> Any:  # noqa: N803
    """Subscribe the Tiled store at ``data`` to ``RE`` and say where it is; None without Tiled."""
    from ophyd_cs800 import store

    where = data if data is not None else store.default_data_dir()
    try:
        stored = store.subscribe_store(RE, where)
    except store.StoreUnavailableError as exc:
        print(f"cs800-demo: the run is not stored: {exc}", flush=True)
        return None
    print(f"cs800-demo: runs are stored in the Tiled catalog at {where}", flush=True)
    return stored


def _report_stored(stored: Any, uid: str) -> None:
    """Read the run back from the store and print what it holds."""
    from ophyd_cs800 import store

    where = stored.where
    summary = store.read_run_summary(stored.run(uid), "cs0")
    print(f"cs800-demo: read back from the store at {where}: run {uid[:8]} has "
          f"{summary['events']} events, last cs0 {summary['last']:.2f} K; streams "
          f"{', '.join(summary['streams'])}; exit status {summary['exit_status']}.",
          flush=True)
    if not store.is_uri(where):
        print(f"cs800-demo: browse it: {' '.join(store.serve_command(where))}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cs800-demo``; returns the exit code (0 when the ramp reached target).

    Bad arguments exit with argparse's message (code 2).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if not 1 <= args.rate <= 360:
        parser.error(f"--rate must be 1-360 K/h, got {args.rate:g}")
    if not 80 <= args.target <= 400:
        parser.error(f"--target must be 80-400 K, got {args.target:g}")
    if args.speed <= 0 or args.settle < 0:
        parser.error("--speed must be > 0 and --settle >= 0")
    from ophyd_cs800.store import is_uri

    data = None if args.data is None or is_uri(args.data) else Path(args.data).expanduser()
    if data is not None and data.exists() and not data.is_dir():
        parser.error(f"--data must be a directory (created on first use) or an http(s):// "
                     f"Tiled server, got the file {args.data}")
    return run_demo(args)


if __name__ == "__main__":
    sys.exit(main())
