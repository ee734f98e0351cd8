"""Temperature series: read a detector at a list of temperatures, settling at each one.

Run against the simulated IOC (started for you)::

    python examples/temperature_series.py [--data DIR]

or against a real controller (synApps or ``cs800-ioc``)::

    python examples/temperature_series.py --prefix 17bmCryo:CS0: --temps 280 260 240 --settle 30

The detector is ``ophyd.sim.det`` (a simulated point detector); replace it with yours. The run
goes to the Tiled store (``--data DIR``, default the per-user data directory); plot it with
``python examples/plot_run.py UID``.
"""

from __future__ import annotations

import argparse

from cs800_session import add_store, open_cs800, sim_md


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", default=None, help="controller PV prefix (default: a sim)")
    parser.add_argument("--temps", type=float, nargs="+", default=[250.0, 220.0, 200.0])
    parser.add_argument("--rate", type=float, default=360.0, help="K/h")
    parser.add_argument("--settle", type=float, default=1.0, help="settle time, s")
    parser.add_argument("--speed", type=float, default=200.0, help="sim speed-up")
    parser.add_argument("--data", default=None, help="store directory (default: per-user)")
    args = parser.parse_args()

    with open_cs800(args.prefix, speed=args.speed, settle_time=args.settle) as cs0:
        from bluesky import RunEngine
        from bluesky.callbacks.core import LiveTable
        from ophyd.sim import det

        from ophyd_cs800.plans import temperature_series

        RE = RunEngine({}, context_managers=[])  # noqa: N806
        stored = add_store(RE, args.data)
        (uid,) = RE(temperature_series([det], cs0, args.temps, rate=args.rate,
                                       md=sim_md(args.prefix, args.speed)),
                    LiveTable(["cs0", "det", "cs0_phase_name"]))
        print(f"done: {cs0.describe_state()}")
        if stored is not None:
            stored.flush()
            print(f"run {uid} stored in {stored.where}")


if __name__ == "__main__":
    main()
