"""Ramp, store the run, and plot it from the store (saved as a PNG).

Run against the simulated IOC (started for you)::

    python examples/plot_ramp.py --target 200 --out ramp.png [--data DIR]

``RE(ramp(cs0, target, rate))`` records the run (readings before and after, and the monitor
streams of TEMP, SETPOINT, PHASE, RUNMODE and the alarm) into the Tiled store; the plot is then
drawn from the stored run by ``plot_run.draw_run``: temperature, set point and target against
controller time (simulated minutes for the simulator, with its speed-up stated), alarms
marked. Needs the ``[data]`` extra and matplotlib.
"""

from __future__ import annotations

import argparse

from cs800_session import add_store, open_cs800, sim_md
from plot_run import draw_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", default=None, help="controller PV prefix (default: a sim)")
    parser.add_argument("--target", type=float, default=200.0, help="K")
    parser.add_argument("--rate", type=float, default=360.0, help="K/h")
    parser.add_argument("--speed", type=float, default=200.0, help="sim speed-up")
    parser.add_argument("--data", default=None, help="store directory (default: per-user)")
    parser.add_argument("--out", default="cs800_ramp.png", help="PNG file to write")
    args = parser.parse_args()

    with open_cs800(args.prefix, speed=args.speed, settle_time=0.5) as cs0:
        from bluesky import RunEngine

        from ophyd_cs800.plans import ramp

        RE = RunEngine({}, context_managers=[])  # noqa: N806
        stored = add_store(RE, args.data)
        if stored is None:
            raise SystemExit("plot_ramp draws from the store: install the [data] extra")
        (uid,) = RE(ramp(cs0, args.target, rate=args.rate, md=sim_md(args.prefix, args.speed)))
    print(f"run {uid}: {draw_run(stored.run(uid), args.out)}")


if __name__ == "__main__":
    main()
