"""The ``soldrv`` command: run a solenoid-cycle file (``.sft`` or ``.sol``).

::

    soldrv FILE... [--mode N] [--at T:N ...] [--duration S | --ticks N] [--speed X]
                   [--timer exact|reference] [--dry-run] [--pv-map MAP | --valve-bank PREFIX]
                   [--compat] [--safe NAME=0|1 ...] [--no-safe] [-q]

* Real time (default): ticks on absolute deadlines, outputs to the simulated backend (printed)
  or to EPICS PVs (``--pv-map`` file, or ``--valve-bank PREFIX`` for ``sim_ioc.valves``).
  Mode requests are read from stdin as ``S<n>`` lines, like the v4 driver; ``Q`` or end of
  input quits (with ``--duration``/``--ticks`` the run goes on to that limit instead).
* ``--dry-run``: the timeline on the virtual clock, printed at once; it needs ``--duration``
  or ``--ticks``. Requests come from ``--mode``, ``--at T:N`` and, when stdin is not a
  terminal, ``S<n>`` lines optionally prefixed by a time: ``@12.5 S3``.

``--timer exact`` (default) ticks every count/16384 s; ``--timer reference`` uses the C
driver's period, whose sub-second part is cut down to a multiple of 1/1024 s (at a 1/10 s
resolution it delivers 3011 ticks by 300 s where the exact timer delivers 3000).

When a real-time run ends (``Q``, end of input, the limit, Ctrl-C or SIGTERM) the runner is
stopped and then the safe state is written: every solenoid closed, ``--safe NAME=1`` to open
one, ``--no-safe`` to leave the outputs alone. ``@T S<n>`` stdin lines are scheduled at T s.
When a mode stops on a hardware failure or a program error, the safe state is written at once
too; if the hardware cannot take it, it is retried every 0.2 s until it holds, a new mode is
requested or soldrv ends.

Bad input (unreadable or malformed file, bad map, bad arguments) prints one sentence and exits
with status 2; a refused request or a program error while running is printed and soldrv keeps
running. Exit status: 0 when the run ended as asked; 1 when a mode stopped on a program error
or a hardware failure, or the safe state could not be written at the end; 2 for bad input;
130 after Ctrl-C/SIGTERM (also in a dry run, which then prints one line, no traceback).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import re
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from ophyd_cs800.version import add_version_option
from soldrv.machine import TIMERS, Action, HardwareError, ModeRequestError, ProgramError
from soldrv.program import Program
from soldrv.runner import RealTimeRunner, VirtualRunner, load_program
from soldrv.safe_state import SafeState
from soldrv.sft import SftError

__all__ = ["file_error", "main", "parse_request", "read_name_map"]

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
    ValueError naming the line for a malformed line, an unknown name, a key mapped twice
    (DtoAs sharing an address are one channel) or an address no DtoA of the program uses.
    """
    from soldrv.backends import resolve_dtoa_address, resolve_solenoid

    out: dict[str, dict[str | int, str]] = {"solenoids": {}, "status": {}, "dtoa": {}}
    seen: dict[tuple[str, int], int] = {}
    addresses = {sp.address for sp in program.set_points}
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
                kind, index = "status", resolve_solenoid(program, key[:-4])
            else:
                try:
                    kind, index = "solenoids", resolve_solenoid(program, key)
                except KeyError as sol_err:
                    try:
                        kind, index = "dtoa", resolve_dtoa_address(program, key)
                    except KeyError as da_err:
                        raise KeyError(
                            f"{key!r} is neither a solenoid nor a DtoA of the program "
                            f"({sol_err.args[0]}; {da_err.args[0]})"
                        ) from None
                    if index not in addresses:
                        raise KeyError(
                            f"no DtoA of the program uses address 0x{index:04X}"
                        ) from None
        except KeyError as e:
            raise ValueError(f"name map line {no}: {e.args[0]}") from None
        if (kind, index) in seen:
            raise ValueError(
                f"name map line {no}: {key!r} is mapped twice (first on line "
                f"{seen[(kind, index)]})"
            )
        seen[(kind, index)] = no
        out[kind][index] = pv
    return out


def _format_action(program: Program, act: Action) -> str:
    mode = "-" if act.mode is None else str(act.mode)
    return f"{act.time:11.4f} s  mode {mode:>3} step {act.step:>4}  {act.describe(program)}\n"


def _print_action(out: TextIO, program: Program, act: Action) -> None:
    if act.kind in ("set_time", "goto"):
        return
    out.write(_format_action(program, act))


def _parse_at(text: str) -> tuple[float, int]:
    try:
        t, m = text.split(":", 1)
        at, mode = float(t), int(m)
    except ValueError:
        at, mode = -1.0, -1
    if not (at >= 0 and mode >= 0):  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"--at wants SECONDS:MODE with both >= 0 (e.g. 12.5:3), got {text!r}"
        )
    return at, mode


def _positive(kind: type, what: str, allow_zero: bool = False) -> Any:
    def conv(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} wants a number, got {text!r}") from None
        if not (value >= 0 if allow_zero else value > 0) or value != value:
            raise argparse.ArgumentTypeError(
                f"{what} must be {'>= 0' if allow_zero else '> 0'}, got {text!r}"
            )
        return value

    return conv


def _parse_safe(text: str) -> tuple[str, int]:
    name, sep, state = text.partition("=")
    if not sep or state.strip() not in ("0", "1") or not name.strip():
        raise argparse.ArgumentTypeError(f"--safe wants NAME=0 or NAME=1, got {text!r}")
    return name.strip(), int(state)


def _build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="soldrv",
        description="Run a solenoid-cycle program (.sft, or .sol compiled on the fly).",
    )
    ap.add_argument("files", nargs="+", help="one .sft file, or one or more .sol files")
    ap.add_argument("--mode", type=_positive(int, "--mode", True),
                    help="request this mode at start")
    ap.add_argument("--at", type=_parse_at, action="append", default=[], metavar="T:N",
                    help="request mode N at T seconds (repeatable)")
    ap.add_argument("--duration", type=_positive(float, "--duration"),
                    help="stop after this many seconds")
    ap.add_argument("--ticks", type=_positive(int, "--ticks"),
                    help="stop after this many timer ticks")
    ap.add_argument("--speed", type=_positive(float, "--speed"), default=1.0,
                    help="logical seconds per wall second in real time (default 1)")
    ap.add_argument("--timer", choices=TIMERS, default="exact",
                    help="tick period: exact count/16384 s (default), or the C driver's "
                         "(sub-second part cut to a multiple of 1/1024 s)")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the timeline on the virtual clock (needs --duration or --ticks)")
    ap.add_argument("--pv-map", metavar="MAP", help="drive EPICS PVs named in this map file")
    ap.add_argument("--valve-bank", metavar="PREFIX",
                    help="drive a sim_ioc.valves bank: solenoid i -> PREFIX V<i+1>, D/A -> DA<k>")
    ap.add_argument("--compat", action="store_true",
                    help="compile .sol input with the reference compiler's bugs")
    ap.add_argument("--safe", type=_parse_safe, action="append", default=[], metavar="NAME=0|1",
                    help="safe state of a solenoid, applied when soldrv exits (Q, end of "
                         "input, the limit, Ctrl-C or SIGTERM); default: every solenoid closed")
    ap.add_argument("--no-safe", action="store_true",
                    help="leave the outputs as they are when soldrv exits")
    ap.add_argument("-q", "--quiet", action="store_true", help="do not print every action")
    return add_version_option(ap)


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


DRY_RUN_MAX_TICKS = 1_000_000
"""Timer ticks a dry run delivers at most when no ``--ticks`` is given (keeps it bounded)."""


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
    failures = 0
    vr = VirtualRunner(
        program, on_action=None if args.quiet else lambda a: _print_action(out, program, a),
        record=False, timer=args.timer,
    )
    ticks = DRY_RUN_MAX_TICKS if args.ticks is None else args.ticks
    end = float("inf") if args.duration is None else args.duration
    for at, mode in [*reqs, (end, None)]:
        ran_out, errors = _advance(vr, min(at, end), ticks, err)
        failures += errors
        if ran_out or mode is None:
            break
        if at >= end:  # requests at or after the end of the run never act
            break
        try:
            vr.request_mode(mode)
        except ModeRequestError as e:
            err.write(f"soldrv: request refused: {e}\n")
        except (ProgramError, HardwareError) as e:
            err.write(f"soldrv: {e}\n")
            failures += 1
    if args.ticks is None and vr.ticks_delivered >= DRY_RUN_MAX_TICKS:
        err.write(f"soldrv: dry run stopped after {DRY_RUN_MAX_TICKS} ticks, before "
                  f"--duration {args.duration:g} s (give --ticks N for a longer run)\n")
    out.write(f"end of dry run at {vr.now:.4f} s after {vr.ticks_delivered} ticks\n")
    return 1 if failures else 0


def _advance(vr: VirtualRunner, until: float, ticks: int, err: TextIO) -> tuple[bool, int]:
    """Move the virtual clock to ``until``, printing program errors.

    Returns (True if the ticks ran out, the number of errors printed).
    """
    errors = 0
    while True:
        try:
            if vr.deliver_ticks(until, ticks):
                return True, errors
            if until != float("inf"):
                vr.now = max(vr.now, until)
            return until == float("inf"), errors
        except (ProgramError, HardwareError) as e:
            err.write(f"soldrv: {e}\n")
            errors += 1


def _hardware(args: argparse.Namespace, program: Program) -> Any:
    if args.pv_map or args.valve_bank:
        from soldrv.backends import OphydHardware, valve_bank_pvs

        if args.pv_map:
            try:
                with open(args.pv_map, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(file_error("the name map", args.pv_map, e)) from None
            maps = read_name_map(text, program)
            sol, sta, da = maps["solenoids"], maps["status"], maps["dtoa"]
        else:
            sol, sta, da = valve_bank_pvs(program, args.valve_bank)
        return OphydHardware.from_pvs(program, sol, status=sta, dtoa=da)
    from soldrv.backends import SimHardware

    return SimHardware(program)


def file_error(what: str, path: str, exc: OSError | UnicodeDecodeError) -> str:
    """One sentence for a file that cannot be read: ``cannot read <what> <path>: <reason>``.

    ``what`` names the role (e.g. ``"the name map"``; empty for the program file itself).
    """
    if isinstance(exc, UnicodeDecodeError):
        bad = exc.object[exc.start:exc.start + 1].hex()
        reason = f"it is not UTF-8 text (byte 0x{bad} at offset {exc.start})"
    else:
        reason = (exc.strerror or str(exc)).lower()
        path = exc.filename or path
    return f"cannot read {what + ' ' if what else ''}{path}: {reason}"


def _safe_state(args: argparse.Namespace, program: Program) -> dict[int, int] | None:
    """Return the safe state applied at exit ({solenoid index: 0/1}); None with --no-safe.

    Raises ValueError naming an unknown solenoid of ``--safe``.
    """
    from soldrv.backends import resolve_solenoid

    if args.no_safe:
        return None
    safe = {i: 0 for i in range(len(program.solenoids))}
    for name, state in args.safe:
        try:
            safe[resolve_solenoid(program, name)] = state
        except KeyError as e:
            raise ValueError(f"--safe {name}={state}: {e.args[0]}") from None
    return safe


class _Signals:
    """SIGINT (Ctrl-C) and SIGTERM end soldrv; while shutting down, both are ignored.

    As the v4 soldrv does, the handlers are installed even if the signal was ignored when
    soldrv started (e.g. a background job of a non-interactive shell, or a child of a process
    that ignored SIGINT), and the two signals are unblocked. Only the main thread can handle
    signals: elsewhere (soldrv called from a thread) this does nothing. Handlers and the
    signal mask are restored by :meth:`restore`.
    """

    def __init__(self) -> None:
        self.active = threading.current_thread() is threading.main_thread()
        self.saved: dict[int, Any] = {}
        self.blocked: set[signal.Signals] = set()
        if self.active:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self._terminate)
            mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGINT, signal.SIGTERM))
            self.blocked = {sig for sig in (signal.SIGINT, signal.SIGTERM) if sig in mask}

    @staticmethod
    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def shield(self) -> None:
        """Ignore SIGINT and SIGTERM from now on (the safe state must not be cut short)."""
        if self.active:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)

    def restore(self) -> None:
        """Put back the handlers that were there before."""
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        self.saved.clear()
        if self.blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, self.blocked)
            self.blocked = set()


def _real_time(args: argparse.Namespace, program: Program, out: TextIO, err: TextIO,
               stdin: TextIO) -> int:
    safe = _safe_state(args, program)
    hw = _hardware(args, program)
    done = threading.Event()
    lock = threading.Lock()
    schedule: list[tuple[float, int, int]] = []  # heap of (logical s, order, mode)
    order = itertools.count()

    def write(stream: TextIO, text: str) -> None:
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # output closed (e.g. a pipe into head): quit
            done.set()

    def on_action(act: Action) -> None:
        if not args.quiet and act.kind not in ("set_time", "goto"):
            write(out, _format_action(program, act))

    guard: SafeState | None = None
    if safe is not None:
        guard = SafeState(hw, program, safe, on_held=lambda: _note_retry_held(guard, write, err))
    failures: list[Exception] = []

    def on_error(e: Exception) -> None:
        """Handle a mode stopped on a failure (runner thread).

        Say so, put the safe state at once.
        """
        failures.append(e)
        write(err, f"soldrv: {e}\n")
        if guard is not None:
            write(err, f"soldrv: {guard.put_after_failure()}\n")

    runner = RealTimeRunner(
        program, hw, on_action=on_action, on_error=on_error, speed=args.speed,
        max_ticks=args.ticks, timer=args.timer,
    )
    limited = args.duration is not None or args.ticks is not None

    def request(mode: int) -> None:
        try:
            runner.machine.check_request(mode)
            if guard is not None:  # a new mode: a retry of the safe state must not hit it
                guard.cancel()
            runner.request_mode(mode)
        except ModeRequestError as e:
            write(err, f"soldrv: request refused: {e}\n")
        except RuntimeError:  # the runner is closing: soldrv is quitting
            pass

    def reader() -> None:
        try:
            for line in stdin:
                if line.strip().upper() in ("Q", "QUIT"):
                    done.set()
                    return
                if not line.strip():
                    continue
                try:
                    at, mode = parse_request(line)
                except ValueError as e:
                    write(err, f"soldrv: {e}\n")
                    continue
                if at is None:
                    request(mode)
                else:  # @T S<n>: at T logical seconds after the start
                    with lock:
                        heapq.heappush(schedule, (at, next(order), mode))
        except (OSError, ValueError):  # stdin closed under us: like end of input
            pass
        if not limited:
            done.set()

    for at, mode in [*([(0.0, args.mode)] if args.mode is not None else []), *args.at]:
        heapq.heappush(schedule, (at, next(order), mode))
    signals = _Signals()
    interrupted = False
    try:
        runner.start()
        threading.Thread(target=reader, name="soldrv-stdin", daemon=True).start()
        while not done.is_set():
            now = runner.logical_now()
            with lock:
                due = []
                while schedule and schedule[0][0] <= now:
                    due.append(heapq.heappop(schedule)[2])
                next_at = schedule[0][0] if schedule else None
            for mode in due:
                request(mode)
            if args.duration is not None and now >= args.duration:
                break
            if args.ticks is not None and runner.ticks_delivered >= args.ticks:
                break
            wake = [0.05]
            if next_at is not None:
                wake.append((next_at - now) / args.speed)
            if args.duration is not None:
                wake.append((args.duration - now) / args.speed)
            done.wait(max(0.0, min(wake)))
    except KeyboardInterrupt:
        interrupted = True
        write(err, "soldrv: interrupted\n")
    finally:
        signals.shield()
        try:
            ok = _shut_down(runner, guard, program, args.quiet, out, err, write)
        finally:
            signals.restore()
    if interrupted:
        return 130
    if failures:
        write(err, f"soldrv: the run did not end as asked: {len(failures)} mode(s) stopped on "
                   "a failure (exit status 1)\n")
    return 0 if ok and not failures else 1


def _note_retry_held(guard: SafeState | None, write: Any, err: TextIO) -> None:
    """Say when a retried safe state finally holds (not for the first or the final write)."""
    if guard is not None and guard.retrying:
        write(err, f"soldrv: the safe state holds now (after {guard.attempts} attempts)\n")


def _shut_down(runner: RealTimeRunner, guard: SafeState | None, program: Program,
               quiet: bool, out: TextIO, err: TextIO, write: Any) -> bool:
    """Stop the runner and any retry, then apply the safe state; False if that failed."""
    if not runner.close(10.0):
        write(err, "soldrv: warning: the runner thread is still in a hardware call after "
                   "10 s; applying the safe state anyway\n")
    if guard is None:
        return True
    guard.cancel()
    try:
        guard.apply()
    except Exception as e:  # noqa: BLE001 - reported, exit status 1
        write(err, f"soldrv: error: putting the safe state failed: {type(e).__name__}: {e}\n")
        return False
    if not quiet:
        states = " ".join(f"{program.solenoid_label(i)}={v}" for i, v in guard.solenoids.items())
        write(out, f"safe state: {states}\n")
    return True


def main(argv: Sequence[str] | None = None, *, stdin: TextIO | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Entry point of the ``soldrv`` console script; returns the exit status (see module doc)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    sin = stdin or sys.stdin
    args = _build_parser().parse_args(argv)
    signals = _Signals()  # Ctrl-C and SIGTERM end loading and a dry run too, even if ignored
    try:
        return _main(args, sin, out, err)
    except KeyboardInterrupt:  # Ctrl-C outside a real-time run (loading, a dry run)
        try:
            err.write("soldrv: interrupted\n")
        except (OSError, ValueError):
            pass
        return 130
    finally:
        signals.restore()


def _main(args: argparse.Namespace, sin: TextIO, out: TextIO, err: TextIO) -> int:
    try:
        from soldrv.errors import SolfmtError

        program = load_program(args.files, compat=args.compat)
    except (OSError, UnicodeDecodeError) as e:
        if isinstance(e, OSError) and e.filename is None:
            text = str(e)  # already a sentence naming the file ("Can't open x.sft: ...")
        else:
            text = file_error("", args.files[0] if len(args.files) == 1 else "the program", e)
        err.write(f"soldrv: error: {text}\n")
        return 2
    except (SftError, SolfmtError, ValueError) as e:
        err.write(f"soldrv: error: {e}\n")
        return 2
    for what, mode in [("--mode", args.mode), *(("--at", m) for _, m in args.at)]:
        if mode is not None and mode != 0 and not program.is_defined(mode):
            defined = ", ".join(map(str, program.defined_modes())) or "none"
            err.write(f"soldrv: error: {what} {mode}: mode {mode} is not defined; "
                      f"defined modes: {defined}\n")
            return 2
    try:
        _safe_state(args, program)  # unknown --safe names are refused in a dry run too
        if args.dry_run:
            return _dry_run(args, program, out, err, sin)
        return _real_time(args, program, out, err, sin)
    except BrokenPipeError:  # e.g. soldrv ... --dry-run | head
        return 0
    except (OSError, ValueError, KeyError, TimeoutError) as e:
        err.write(f"soldrv: error: {e.args[0] if isinstance(e, KeyError) else e}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
