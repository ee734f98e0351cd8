"""Benchmark solfmt against the reference C compiler, and the import cost of the commands.

Measured on the largest corpus file (HFEMS, 588 lines, 64 solenoids).

Run: ``python benchmarks/bench_solfmt.py [--repeat N] [--reference-ms MS | --reference-cmd CMD]``.

Prints, side by side in one run:

* the whole-process time of ``solfmt --compat --format 4 HFEMS.sol -oOUT`` (median of N runs
  after a warm-up, with bytecode caches as an installed package has them) and its ratio to the
  reference (target: within 10x);
* the in-process time of the same compilation (``compile_files`` + ``write_sft``) and its
  ratio to the reference (target: within 6x), repeated in one process and, as one solfmt
  run pays it, the first compilation in a fresh process;
* the import cost of ``solfmt --help`` and ``soldump FILE.sft`` (``python -X importtime``:
  the modules they load beyond interpreter start-up; target: under 60 ms each), and their
  whole-process times;
* compile times in compat and default mode, ``grammar.parse`` of the file and .sft
  read + write, as before.

The reference is the C v4 ``solfmt`` compiling the same file as a whole process: 6 ms on this
machine class (``--reference-ms 6``, the default, when no C compiler is around), or measured
here with ``--reference-cmd 'CMD {src} -o{out}'`` (``{src}`` and ``{out}`` are replaced).
Needs the folder of example cycle files the corpus tests use (``CORPUS`` below), which is
not part of the package.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from soldrv.compiler import compile_files
from soldrv.grammar import parse
from soldrv.sft import read_sft, write_sft

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "sol_examples"
SOURCE = CORPUS / "hfems__TM__HFEMS@c01fc82.sol"
REFERENCE_MS = 6.0
"""Whole-process time of the C v4 solfmt on HFEMS on this machine class, in ms."""


def _times(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _env() -> dict[str, str]:
    """Return the environment of the measured commands: bytecode caches allowed (as installed)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _process_ms(cmd: list[str], repeat: int) -> tuple[float, float]:
    """(median, best) wall-clock time in ms of running ``cmd`` (after two warm-up runs)."""
    env = _env()

    def run() -> None:
        # no wait(timeout=...): CPython polls then, with sleeps of up to 50 ms that would be
        # measured; a timer kills a run that takes more than 60 s instead
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env)
        watchdog = threading.Timer(60, proc.kill)
        watchdog.start()
        try:
            proc.wait()
        finally:
            watchdog.cancel()

    run()
    run()
    times = _times(run, repeat)
    return statistics.median(times) * 1e3, min(times) * 1e3


_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+\d+ \| (\s*)(\S+)")


def _imported(code: str) -> dict[str, int]:
    """Map module -> self import time in µs for running ``code`` under ``python -X importtime``."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    out = {}
    for m in _IMPORTTIME.finditer(proc.stderr):
        out[m.group(3)] = int(m.group(1))
    return out


def import_cost_ms(code: str, repeat: int) -> float:
    """Median import cost in ms of ``code``.

    Self times of the modules it imports beyond those that the interpreter imports at start-up
    (``python -c pass``).
    """
    costs = []
    for _ in range(repeat):
        startup = _imported("pass")
        mods = _imported(code)
        costs.append(sum(us for mod, us in mods.items() if mod not in startup) / 1e3)
    return statistics.median(costs)


_FIRST_COMPILE = """
import time
from soldrv.compiler import compile_files
from soldrv.sft import write_sft
t0 = time.perf_counter()
write_sft(compile_files([{src!r}], compat=True, version=4).program)
print((time.perf_counter() - t0) * 1e3)
"""


def first_compile_ms(repeat: int) -> float:
    """Median in ms of the first compile + write of HFEMS in a fresh interpreter.

    Cold code paths and caches, unlike the repeated in-process figure.
    """
    code = _FIRST_COMPILE.format(src=str(SOURCE))
    out = []
    for _ in range(repeat):
        proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                              text=True, timeout=60, check=True)
        out.append(float(proc.stdout))
    return statistics.median(out)


def _tool(name: str) -> list[str]:
    exe = Path(sys.executable).with_name(name)
    if exe.exists():
        return [str(exe)]
    main = "main_solfmt" if name == "solfmt" else "main_soldump"
    return [sys.executable, "-c", f"from soldrv.cli import {main} as m; raise SystemExit(m())"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10, help="runs per figure (default 10)")
    ref = ap.add_mutually_exclusive_group()
    ref.add_argument("--reference-ms", type=float, default=REFERENCE_MS,
                     help="whole-process time of the C solfmt on HFEMS in ms (default 6)")
    ref.add_argument("--reference-cmd", help="C solfmt command to time: 'CMD {src} -o{out}'")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if args.reference_ms <= 0:
        ap.error("--reference-ms must be positive")
    if not SOURCE.exists():
        print(f"corpus file not found: {SOURCE}", file=sys.stderr)
        return 1
    text = SOURCE.read_text(encoding="latin-1")
    n_lines = text.count("\n")
    print(f"source: {SOURCE.name}  ({n_lines} lines, {len(text)} bytes, 64 solenoids)")
    with tempfile.TemporaryDirectory(prefix="bench-solfmt-") as tmp:
        out = os.path.join(tmp, "HFEMS.sft")
        if args.reference_cmd:
            cmd = [a.replace("{src}", str(SOURCE)).replace("{out}", os.path.join(tmp, "c.sft"))
                   for a in shlex.split(args.reference_cmd)]
            reference = _process_ms(cmd, args.repeat)[0]
            ref_label = f"measured: {args.reference_cmd}"
        else:
            reference = args.reference_ms
            ref_label = "given with --reference-ms"
        whole, whole_best = _process_ms([*_tool("solfmt"), "--compat", "--format", "4",
                                         str(SOURCE), f"-o{out}"], args.repeat)
        sft_bytes = Path(out).read_bytes()
        times = _times(
            lambda: write_sft(compile_files([SOURCE], compat=True, version=4).program),
            args.repeat)
        inproc, inproc_best = statistics.median(times) * 1e3, min(times) * 1e3
        bare, bare_best = _process_ms([sys.executable, "-c", "pass"], args.repeat)
        print(f"reference C solfmt, whole process: {reference:.1f} ms ({ref_label})")
        loaded = " (the machine is loaded: figures are inflated)" if bare_best > 30 else ""
        print(f"python start-up alone ('python -c pass'): {bare:.1f} ms median, {bare_best:.1f} "
              f"ms best{loaded}")
        print(f"solfmt --compat --format 4, whole process: {whole:.1f} ms median "
              f"= {whole / reference:.1f}x the reference (target <= 10x); best {whole_best:.1f}"
              f" ms = {whole_best / reference:.1f}x")
        print(f"solfmt --compat --format 4, in-process:    {inproc:.1f} ms median "
              f"= {inproc / reference:.1f}x the reference (target <= 6x); best {inproc_best:.1f}"
              f" ms = {inproc_best / reference:.1f}x")
        first = first_compile_ms(args.repeat)
        print(f"  the same, first compile in a fresh process (what one solfmt run pays): "
              f"{first:.1f} ms median = {first / reference:.1f}x")
        sft = os.path.join(tmp, "dump.sft")
        Path(sft).write_bytes(sft_bytes)
        for label, code, cmd in (
            ("solfmt --help", "import soldrv.cli",
             [*_tool("solfmt"), "--help"]),
            ("soldump FILE.sft",
             f"import sys; sys.argv = ['soldump', {sft!r}]; from soldrv.cli import main_soldump;"
             " import contextlib, io; f = io.StringIO();"
             " cm = contextlib.redirect_stdout(f); cm.__enter__(); main_soldump()",
             [*_tool("soldump"), sft]),
        ):
            cost = import_cost_ms(code, max(3, args.repeat // 3))
            wall = _process_ms(cmd, args.repeat)[0]
            print(f"{label}: import cost {cost:.1f} ms beyond start-up (target < 60), whole "
                  f"process {wall:.1f} ms median")
    print(f"{'mode':<16}{'best ms':>10}{'median ms':>12}{'lines/s':>12}{'code bytes':>12}")
    for version, compat in ((4, True), (4, False)):
        result = compile_files([SOURCE], compat=compat, version=version)
        times = _times(lambda v=version, c=compat: compile_files([SOURCE], compat=c, version=v),
                       args.repeat)
        best, med = min(times), statistics.median(times)
        label = f"v{version} {'compat' if compat else 'default'}"
        print(f"{label:<16}{best * 1e3:>10.1f}{med * 1e3:>12.1f}{n_lines / med:>12.0f}"
              f"{len(result.program.code):>12}")
    parse(text)  # the grammar is built on first use: not part of the figure
    times = _times(lambda: parse(text), args.repeat)
    med = statistics.median(times)
    print(f"{'grammar.parse':<16}{min(times) * 1e3:>10.1f}{med * 1e3:>12.1f}"
          f"{n_lines / med:>12.0f}{'(tree)':>12}")
    data = write_sft(compile_files([SOURCE], compat=True, version=4).program)
    times = _times(lambda: write_sft(read_sft(data)), args.repeat * 10)
    print(f".sft read+write of {len(data)} bytes: median {statistics.median(times) * 1e3:.2f} ms")
    print("(v3 cannot hold 64 solenoids: 'Too Many Solenoids Defined', as the reference)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
