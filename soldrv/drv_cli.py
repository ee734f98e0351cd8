"""The ``soldrv`` command: run a solenoid-cycle file (``.sft`` or ``.sol``).

::

    soldrv FILE... [--mode N] [--at T:N ...] [--duration S | --ticks N] [--speed X]
                   [--dry-run] [--pv-map MAP | --valve-bank PREFIX] [--compat] [-q]

* Real time (default): ticks on absolute deadlines, outputs to the simulated backend (printed)
  or to EPICS PVs (``--pv-map`` file, or ``--valve-bank PREFIX`` for ``sim_ioc.valves``).
  Mode requests are read from stdin as ``S<n>`` lines, like the v4 driver; ``Q`` or end of
  input quits (with ``--duration``/``--ticks`` the run goes on to that limit instead).
* ``--dry-run``: the timeline on the virtual clock, printed at once; it needs ``--duration``
  or ``--ticks``. Requests come from ``--mode``, ``--at T:N`` and, when stdin is not a
  terminal, ``S<n>`` lines optionally prefixed by a time: ``@12.5 S3``.

Bad input (unreadable or malformed file, bad map) prints one sentence and exits with status 2;
a refused request or a program error while running is printed and soldrv keeps running.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

from soldrv.machine import Action, HardwareError, ModeRequestError, ProgramError
from soldrv.program import Program
from soldrv.runner import RealTimeRunner, VirtualRunner, load_program
from soldrv.sft import SftError

__all__ = ["main", "parse_request", "read_name_map"]

_REQ_RE = re.compile(r"^\s*(?:@\s*(?P<at>[0-9.eE+-]+)\s+)?[Ss]\s*(?P<mode>\S+)\s*$")


def parse_request(line: str) -> tuple[float | None, int]:
    """Parse a stdin request line ``S<n>`` or ``@<seconds> S<n>`` -> (time or None, mode).

    Raises ValueError("Invalid command ...") for anything else.
    """
    m = _REQ_RE.match(line)
    if not m:
        raise ValueError(f"Invalid command {line.strip()!r}: expected S<mode> (e.g. S1)")
    try:
        mode = int(m.group("mode"), 10)
        at = None if m.group("at") is None else float(m.group("at"))
    except ValueError:
        raise ValueError(f"Invalid command {line.strip()!r}: expected S<mode> (e.g. S1)") from None
    if mode < 0 or (at is not None and at < 0):
        raise ValueError(f"Invalid command {line.strip()!r}: mode and time must be >= 0")
    return at, mode


def read_name_map(text: str, program: Program) -> dict[str, dict[str | int, str]]:
    """Parse a name-map file: one ``KEY PV`` (or ``KEY = PV``) per line, ``#`` comments.

    KEY is a solenoid name (or ``sol<i>``), ``<solenoid>.rbv`` for its status readback, or a
    DtoA name / address (``0x0E42``). Returns {"solenoids", "status", "dtoa"} maps. Raises
    ValueError naming the line for a malformed line or an unknown name.
    """
    from soldrv.backends import resolve_dtoa_address, resolve_solenoid

    out: dict[str, dict[str | int, str]] = {"solenoids": {}, "status": {}, "dtoa": {}}
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace("=", " ").split()
        if len(parts) != 2:
            raise ValueError(f"name map line {no}: expected 'KEY PV', got {raw.strip()!r}")
        key, pv = parts
        try:
            if key.lower().endswith(".rbv"):
                out["status"][resolve_solenoid(program, key[:-4])] = pv
                continue
            try:
                out["solenoids"][resolve_solenoid(program, key)] = pv
            except KeyError:
                out["dtoa"][resolve_dtoa_address(program, key)] = pv
        except KeyError as e:
            raise ValueError(f"name map line {no}: {e.args[0]}") from None
    return out


def _print_action(out: TextIO, program: Program, act: Action) -> None:
    if act.kind in ("set_time", "goto"):
        return
    mode = "-" if act.mode is None else str(act.mode)
    out.write(
        f"{act.time:11.4f} s  mode {mode:>3} step {act.step:>4}  {act.describe(program)}\n"
    )
    out.flush()


def _parse_at(text: str) -> tuple[float, int]:
    try:
        t, m = text.split(":", 1)
        return float(t), int(m)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--at wants SECONDS:MODE (e.g. 12.5:3), got {text!r}"
        ) from None


def _build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="soldrv",
        description="Run a solenoid-cycle program (.sft, or .sol compiled on the fly).",
    )
    ap.add_argument("files", nargs="+", help="one .sft file, or one or more .sol files")
    ap.add_argument("--mode", type=int, help="request this mode at start")
    ap.add_argument("--at", type=_parse_at, action="append", default=[], metavar="T:N",
                    help="request mode N at T seconds (repeatable)")
    ap.add_argument("--duration", type=float, help="stop after this many seconds")
    ap.add_argument("--ticks", type=int, help="stop after this many timer ticks")
    ap.add_argument("--speed", type=float, default=1.0,
                    help="logical seconds per wall second in real time (default 1)")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the timeline on the virtual clock (needs --duration or --ticks)")
    ap.add_argument("--pv-map", metavar="MAP", help="drive EPICS PVs named in this map file")
    ap.add_argument("--valve-bank", metavar="PREFIX",
                    help="drive a sim_ioc.valves bank: solenoid i -> PREFIX V<i+1>, D/A -> DA<k>")
    ap.add_argument("--compat", action="store_true",
                    help="compile .sol input with the reference compiler's bugs")
    ap.add_argument("-q", "--quiet", action="store_true", help="do not print every action")
    return ap


def _stdin_requests(stdin: TextIO, err: TextIO) -> list[tuple[float, int]]:
    reqs = []
    for line in stdin:
        if not line.strip():
            continue
        try:
            at, mode = parse_request(line)
        except ValueError as e:
            err.write(f"soldrv: {e}\n")
            continue
        reqs.append((at or 0.0, mode))
    return reqs


def _dry_run(args: argparse.Namespace, program: Program, out: TextIO, err: TextIO,
             stdin: TextIO) -> int:
    if args.duration is None and args.ticks is None:
        err.write("soldrv: error: --dry-run needs a limit: --duration SECONDS or --ticks N\n")
        return 2
    reqs = list(args.at)
    if args.mode is not None:
        reqs.append((0.0, args.mode))
    if not stdin.isatty():
        reqs += _stdin_requests(stdin, err)
    reqs.sort(key=lambda r: r[0])
    vr = VirtualRunner(
        program, on_action=None if args.quiet else lambda a: _print_action(out, program, a),
        record=False,
    )
    end = float("inf") if args.duration is None else args.duration
    for at, mode in [*reqs, (end, None)]:
        if _advance(vr, min(at, end), args.ticks, err) or mode is None:
            break
        try:
            vr.request_mode(mode)
        except ModeRequestError as e:
            err.write(f"soldrv: request refused: {e}\n")
        except (ProgramError, HardwareError) as e:
            err.write(f"soldrv: {e}\n")
    out.write(f"end of dry run at {vr.now:.4f} s after {vr.ticks_delivered} ticks\n")
    return 0


def _advance(vr: VirtualRunner, until: float, ticks: int | None, err: TextIO) -> bool:
    """Move the virtual clock to ``until``, printing program errors; True if ticks ran out."""
    while True:
        try:
            if vr.deliver_ticks(until, ticks):
                return True
            if until != float("inf"):
                vr.now = max(vr.now, until)
            return until == float("inf")
        except (ProgramError, HardwareError) as e:
            err.write(f"soldrv: {e}\n")


def _hardware(args: argparse.Namespace, program: Program) -> Any:
    if args.pv_map or args.valve_bank:
        from soldrv.backends import OphydHardware, valve_bank_pvs

        if args.pv_map:
            with open(args.pv_map, encoding="utf-8") as f:
                maps = read_name_map(f.read(), program)
            sol, sta, da = maps["solenoids"], maps["status"], maps["dtoa"]
        else:
            sol, sta, da = valve_bank_pvs(program, args.valve_bank)
        return OphydHardware.from_pvs(program, sol, status=sta, dtoa=da)
    from soldrv.backends import SimHardware

    return SimHardware(program)


def _real_time(args: argparse.Namespace, program: Program, out: TextIO, err: TextIO,
               stdin: TextIO) -> int:
    hw = _hardware(args, program)
    done = threading.Event()

    def on_action(act: Action) -> None:
        if not args.quiet:
            _print_action(out, program, act)

    runner = RealTimeRunner(
        program, hw, on_action=on_action,
        on_error=lambda e: err.write(f"soldrv: {e}\n"), speed=args.speed,
    )
    runner.start()
    limited = args.duration is not None or args.ticks is not None

    def reader() -> None:
        for line in stdin:
            if line.strip().upper() in ("Q", "QUIT"):
                break
            if not line.strip():
                continue
            try:
                _, mode = parse_request(line)
                runner.request_mode(mode)
            except (ValueError, ModeRequestError) as e:
                err.write(f"soldrv: {e}\n")
                err.flush()
        if not limited:
            done.set()

    try:
        for at, mode in sorted([*([(0.0, args.mode)] if args.mode is not None else []),
                                *args.at]):
            threading.Timer(at / args.speed, _safe_request, (runner, mode, err)).start()
        threading.Thread(target=reader, daemon=True).start()
        end = None if args.duration is None else time.monotonic() + args.duration / args.speed
        while not done.is_set():
            if end is not None and time.monotonic() >= end:
                break
            if args.ticks is not None and runner.ticks_delivered >= args.ticks:
                break
            done.wait(0.05 if end is None else max(0.0, min(0.05, end - time.monotonic())))
    except KeyboardInterrupt:
        err.write("soldrv: interrupted\n")
    finally:
        runner.close()
    return 0


def _safe_request(runner: RealTimeRunner, mode: int, err: TextIO) -> None:
    try:
        runner.request_mode(mode)
    except ModeRequestError as e:
        err.write(f"soldrv: request refused: {e}\n")


def main(argv: Sequence[str] | None = None, *, stdin: TextIO | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Entry point of the ``soldrv`` console script; returns the exit status (see module doc)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    sin = stdin or sys.stdin
    args = _build_parser().parse_args(argv)
    try:
        from soldrv.errors import SolfmtError

        program = load_program(args.files, compat=args.compat)
    except (OSError, SftError, SolfmtError, ValueError) as e:
        err.write(f"soldrv: error: {e}\n")
        return 2
    for what, mode in [("--mode", args.mode), *(("--at", m) for _, m in args.at)]:
        if mode is not None and mode != 0 and not program.is_defined(mode):
            defined = ", ".join(map(str, program.defined_modes())) or "none"
            err.write(f"soldrv: error: {what} {mode}: mode {mode} is not defined; "
                      f"defined modes: {defined}\n")
            return 2
    if args.dry_run:
        return _dry_run(args, program, out, err, sin)
    try:
        return _real_time(args, program, out, err, sin)
    except (OSError, ValueError, TimeoutError) as e:
        err.write(f"soldrv: error: {e}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
