"""Benchmark solfmt: compile time of the largest corpus file (HFEMS, 64 solenoids) and lines/s.

Run: ``python benchmarks/bench_solfmt.py [--repeat N]``. Prints, for the v4 output in compat
and default mode (v3 cannot hold its 64 solenoids), the best and median compile time of
HFEMS@c01fc82.sol, the source lines compiled per second, the whole-file syntax-tree parse
(:func:`soldrv.grammar.parse`) for comparison, and the .sft read + write time. Needs
``../shared/sol_examples``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from soldrv.compiler import compile_files
from soldrv.grammar import parse
from soldrv.sft import read_sft, write_sft

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "sol_examples"
SOURCE = CORPUS / "hfems__TM__HFEMS@c01fc82.sol"


def _times(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10, help="runs per figure (default 10)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if not SOURCE.exists():
        print(f"corpus file not found: {SOURCE}", file=sys.stderr)
        return 1
    text = SOURCE.read_text(encoding="latin-1")
    n_lines = text.count("\n")
    print(f"source: {SOURCE.name}  ({n_lines} lines, {len(text)} bytes, 64 solenoids)")
    print(f"{'mode':<16}{'best ms':>10}{'median ms':>12}{'lines/s':>12}{'code bytes':>12}")
    for version, compat in ((4, True), (4, False)):
        result = compile_files([SOURCE], compat=compat, version=version)
        times = _times(lambda v=version, c=compat: compile_files([SOURCE], compat=c, version=v),
                       args.repeat)
        best, med = min(times), statistics.median(times)
        label = f"v{version} {'compat' if compat else 'default'}"
        print(f"{label:<16}{best * 1e3:>10.1f}{med * 1e3:>12.1f}{n_lines / med:>12.0f}"
              f"{len(result.program.code):>12}")
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
