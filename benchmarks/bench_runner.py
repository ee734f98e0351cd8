"""Real-time accuracy of the soldrv runner at a resolution of 1/64 s.

Runs a 4-solenoid cycle that changes every solenoid on every tick (64 strobes per second) for
``--seconds`` (default 30) in real time, first on ``SimHardware``, then on the simulated valve
bank over Channel Access (an IOC subprocess on a free loopback port). Prints, per backend:

* lateness of each action against its absolute deadline (``t0 + k/64`` s): median, p99, max
  -- "start" is when the runner began the tick, "done" when the hardware call returned;
* the drift at the end: how late the last tick ran, and ticks delivered vs expected (a runner
  that schedules relative to the previous tick would accumulate its lateness here);
* for the ``SolenoidCycler`` flyer flown by ``run_cycle`` on ``SimHardware`` (collecting each
  tick batch as it is recorded, at most every 0.25 s), with the 1/64 s cycle above and with
  the tutorial's 1/4 s cycle: how far each event's ``time`` is from the moment its hardware
  call returned, and how long after that change its event page reached a subscriber;
* the ticks delivered by 300 s at a 1/10 s resolution with the exact and the reference timer
  (virtual clock).

Usage: ``python benchmarks/bench_runner.py [--seconds 30] [--no-ca] [--no-flyer]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence

SOURCE = """\
solenoid S1 1 2 0
solenoid S2 3 4 1
solenoid S3 5 6 2
solenoid S4 7 8 3
resolution = 1/64
mode 1 {
  S1: O_
  S2: _O
  S3: O_
  S4: _O
}
"""


class TimedHardware:
    """Wraps a backend; records (deadline, returned-at) for every hardware call."""

    def __init__(self, inner, clock=time.monotonic):
        self.inner = inner
        self.clock = clock
        self.deadline = None
        self.done: list[tuple[float, float]] = []

    def note(self, act) -> None:
        if act.is_output:
            self.deadline = act.deadline

    def _after(self) -> None:
        if self.deadline is not None:
            self.done.append((self.deadline, self.clock()))

    def strobe(self, commands: Sequence[int]) -> None:
        self.inner.strobe(commands)
        self._after()

    def set_point(self, address: int, value: int) -> None:
        self.inner.set_point(address, value)
        self._after()

    def proxy(self, proxy_id: int) -> None:
        self.inner.proxy(proxy_id)
        self._after()


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def measure(label: str, program, hardware, seconds: float) -> None:
    from soldrv.runner import RealTimeRunner

    timed = TimedHardware(hardware)
    acts = []

    def on_action(a):
        timed.note(a)
        if a.deadline is not None and a.is_output:
            acts.append(a)

    rt = RealTimeRunner(program, timed, on_action=on_action)
    with rt:
        rt.set_limits(duration=seconds)
        rt.request_mode(1, wait=5.0)
        if not rt.wait_idle(seconds + 30):
            raise SystemExit(f"{label}: the runner did not finish in time")
    start_late = [(a.wall - a.deadline) * 1e3 for a in acts]
    done_late = [(w - d) * 1e3 for d, w in timed.done]
    period = 1 / 64
    expected = int(seconds / period) - 1  # ticks strictly before the duration limit
    last = acts[-1]
    print(f"\n{label}: {seconds:g} s at 1/64 s, {len(acts)} strobes, {rt.ticks_delivered} ticks "
          f"(expected {expected})")
    for name, vals in (("start", start_late), ("done", done_late)):
        print(f"  lateness {name:5s}: median {statistics.median(vals):7.3f} ms   "
              f"p99 {pct(vals, 99):7.3f} ms   max {max(vals):7.3f} ms")
    print(f"  drift at end: last tick (k={last.tick}) ran {start_late[-1]:.3f} ms after its "
          f"absolute deadline t0 + k/64; {expected - rt.ticks_delivered} tick(s) missing")


def measure_flyer(label: str, program, mode: int, seconds: float, period: float = 0.25) -> None:
    """Fly ``mode`` with run_cycle; print event-time error and streaming latency."""
    from bluesky import RunEngine

    from soldrv.backends import SimHardware
    from soldrv.flyer import SolenoidCycler
    from soldrv.plans import run_cycle

    hw = SimHardware(program)
    cyc = SolenoidCycler(program, hw, name="bench")
    RE = RunEngine({})
    arrivals: list[tuple[float, list[float]]] = []
    RE.subscribe(lambda n, d: arrivals.append((time.time(), d["time"])), "event_page")
    RE(run_cycle(cyc, mode, cycles=None, duration=seconds, period=period))
    offset = time.time() - time.monotonic()
    changes = [e.time + offset for e in hw.log if e.kind == "strobe"][1:-1]  # minus stage/unstage
    times = [t for _, page in arrivals for t in page]
    if len(changes) != len(times):
        print(f"\nflyer: {len(times)} events but {len(changes)} changes: not comparable")
        return
    error = [abs(t - c) * 1e3 for t, c in zip(times, changes, strict=True)]
    latency = [(got - t) * 1e3 for got, page in arrivals for t in page]
    print(f"\nSolenoidCycler + run_cycle (period {period:g} s), SimHardware, {label}: "
          f"{len(times)} events in {len(arrivals)} pages over {seconds:g} s")
    print(f"  |event time - change time|: median {statistics.median(error):7.3f} ms   "
          f"p99 {pct(error, 99):7.3f} ms   max {max(error):7.3f} ms")
    print(f"  page received - change:     median {statistics.median(latency):7.1f} ms   "
          f"p99 {pct(latency, 99):7.1f} ms   max {max(latency):7.1f} ms")


def timer_ticks() -> None:
    """Print the ticks by 300 s at 1/10 s with both timers (virtual clock, instant)."""
    from soldrv.compiler import compile_text
    from soldrv.runner import VirtualRunner

    prog = compile_text("solenoid A 1 2 3\nresolution = 1/10\nmode 0 {\n  A: O_\n}\n").program
    counts = {}
    for timer in ("exact", "reference"):
        vr = VirtualRunner(prog, timer=timer, record=False)
        vr.run([(0.0, 0)], duration=300.0)
        counts[timer] = (vr.ticks_delivered, vr.machine.period)
    print("\nticks by 300 s at resolution 1/10 s: " + ", ".join(
        f"{t} {n} (period {p * 1e3:.6f} ms)" for t, (n, p) in counts.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--no-ca", action="store_true", help="skip the Channel Access run")
    ap.add_argument("--no-flyer", action="store_true", help="skip the flyer run")
    args = ap.parse_args()

    from soldrv.compiler import compile_text

    program = compile_text(SOURCE, "bench.sol").program
    from soldrv.backends import SimHardware

    measure("SimHardware", program, SimHardware(program), args.seconds)
    timer_ticks()
    if not args.no_flyer:
        from pathlib import Path

        from soldrv.runner import load_program

        measure_flyer("1/64 s cycle", program, 1, args.seconds)
        tutorial = Path(__file__).resolve().parents[1] / "examples" / "solenoid_tutorial.sol"
        measure_flyer("tutorial 1/4 s cycle", load_program(tutorial), 0, args.seconds)
    if args.no_ca:
        return
    from sim_ioc.process import SimIocProcess

    with SimIocProcess(controllers=1, valves=4, speed=100.0) as ioc:
        os.environ.update(ioc.env)  # before ophyd creates its CA context
        import ophyd

        ophyd.set_cl("caproto")
        from soldrv.backends import OphydHardware, valve_bank_pvs

        sol, sta, da = valve_bank_pvs(program, ioc.prefix + "VB:")
        hw = OphydHardware.from_pvs(program, sol, status=sta, dtoa=da, connect_timeout=10)
        measure("OphydHardware -> CA valve bank (caproto, put without wait)", program, hw,
                args.seconds)
        from sim_ioc.process import ca_read

        changes = ca_read(ioc.prefix + "VB:CHANGES", ioc.env).data[0]
        print(f"  valve bank received {changes} valve commands")


if __name__ == "__main__":
    main()
