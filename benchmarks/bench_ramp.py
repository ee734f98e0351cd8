"""Benchmark the overhead of ``RE(ramp(cs0, T))`` beyond the simulated ramp time.

For the ophyd device and the ophyd-async device side by side.

Run::

    python benchmarks/bench_ramp.py [--speed 100] [--runs 5] [--delta 30] [--rate 360]
                                    [--family both|ophyd|aio]

A ``cs800-sim-ioc`` subprocess with one controller runs at ``--speed`` (simulated seconds per
wall second). Each device family (``ophyd_cs800.CS800`` and, with the ``[async]`` extra,
``ophyd_cs800.aio.CS800``; settle time 0, status period 0.25 s, the same RunEngine) ramps
alternately down and up by ``--delta`` K at ``--rate`` K/h, ``--runs`` times each for

* ``RE(ramp(cs0, T, record=False))`` (a plain move, like ``bps.mv``), and
* ``RE(ramp(cs0, T))`` (the default: a run with a reading before and after, plus a monitor),

and prints, per variant and family, the median / min / max of

    overhead = wall time of the RE call - |dT| / rate / speed

The overhead includes the physics the simulator models on purpose: the gas lags the ramping
set point by rate * tau (tau = 20 s simulated), and after the set point stops it takes about
tau * ln(lag / tolerance) simulated seconds to come within tolerance; that share is printed as
"gas-lag share" so the rest (commanding, confirmation, polling, documents) is visible.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

GAS_TAU_S = 20.0  # the simulator's gas time constant at normal flow (sim_ioc.controller)


def connect_aio(prefix: str):
    """Return the ophyd-async CS800 on ``prefix``, connected in the RunEngine's event loop."""
    from bluesky.run_engine import call_in_bluesky_event_loop

    from ophyd_cs800 import aio

    async def build():
        dev = aio.CS800(prefix, name="cs0", settle_time=0.0, status_period=0.25)
        await dev.connect(timeout=20)
        return dev

    return call_in_bluesky_event_loop(build(), timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", type=float, default=100.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--delta", type=float, default=30.0, help="K per ramp")
    parser.add_argument("--rate", type=int, default=360, help="K/h")
    parser.add_argument("--family", choices=("both", "ophyd", "aio"), default="both")
    args = parser.parse_args(argv)

    from sim_ioc.process import SimIocProcess

    with SimIocProcess(controllers=1, speed=args.speed) as ioc:
        os.environ.update(ioc.env)  # before the first CA client context (libca reads it once)
        import ophyd

        ophyd.set_cl("caproto")
        from bluesky import RunEngine

        from ophyd_cs800 import CS800
        from ophyd_cs800.plans import ramp

        cs0 = CS800(ioc.controller_prefix(0), name="cs0", settle_time=0.0, status_period=0.25)
        cs0.wait_for_connection(timeout=20)
        RE = RunEngine({}, context_managers=[])  # noqa: N806
        deadline = time.monotonic() + 20
        while cs0.run_mode.get() not in (2, 3) and time.monotonic() < deadline:
            time.sleep(0.05)
        families = {"ophyd": cs0}
        if args.family in ("both", "aio"):
            families["aio"] = connect_aio(ioc.controller_prefix(0))
        if args.family == "aio":
            del families["ophyd"]
        base = 200.0
        RE(ramp(cs0, base, record=False))  # start from a known temperature
        ramp_s = args.delta / args.rate * 3600 / args.speed
        lag_k = args.rate / 3600 * GAS_TAU_S
        lag_s = GAS_TAU_S * math.log(max(lag_k / cs0.tolerance.get(), 1.0)) / args.speed
        print(f"speed x{args.speed:g}, {args.delta:g} K per ramp at {args.rate} K/h: simulated "
              f"ramp {ramp_s:.2f} s wall; gas-lag share about {lag_s:.2f} s "
              f"(lag {lag_k:.1f} K, tolerance {cs0.tolerance.get():g} K, settle time 0)")
        for label, record in (("RE(ramp(cs0, T, record=False))", False),
                              ("RE(ramp(cs0, T))", True)):
            for family, dev in families.items():
                RE(ramp(dev, base, record=False))  # every variant starts from the same place
                overheads = []
                for i in range(args.runs):
                    target = base - args.delta if i % 2 == 0 else base
                    start = time.monotonic()
                    RE(ramp(dev, target, args.rate, record=record))
                    overheads.append(time.monotonic() - start - ramp_s)
                median = statistics.median(overheads)
                print(f"{label:32s} {family:5s} overhead median {median:.2f} s, "
                      f"min {min(overheads):.2f} s, max {max(overheads):.2f} s "
                      f"({args.runs} runs; minus gas lag: {median - lag_s:.2f} s)")
        cs0.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
