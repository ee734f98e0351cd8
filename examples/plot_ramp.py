"""Record the temperature during a ramp and plot it against time (saved as a PNG).

Run against the simulated IOC (started for you)::

    python examples/plot_ramp.py --target 200 --out ramp.png

Uses :func:`ophyd_cs800.plans.ramp_and_record` (bluesky ``ramp_plan``): a reading of ``cs0``
every ``--period`` seconds while the controller ramps, plus the TEMP monitor stream. Needs
matplotlib (``pip install -e ".[examples]"``).
"""

from __future__ import annotations

import argparse

from cs800_session import open_cs800


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", default=None, help="controller PV prefix (default: a sim)")
    parser.add_argument("--target", type=float, default=200.0, help="K")
    parser.add_argument("--rate", type=float, default=360.0, help="K/h")
    parser.add_argument("--period", type=float, default=0.2, help="seconds between readings")
    parser.add_argument("--speed", type=float, default=200.0, help="sim speed-up")
    parser.add_argument("--out", default="cs800_ramp.png", help="PNG file to write")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")  # write a file; no display needed
    import matplotlib.pyplot as plt

    with open_cs800(args.prefix, speed=args.speed, settle_time=0.5) as cs0:
        from bluesky import RunEngine

        from ophyd_cs800.plans import ramp_and_record

        rows: list[tuple[float, float, float]] = []

        def keep(name, doc):
            if name == "event" and "cs0_setpoint" in doc["data"]:
                rows.append((doc["time"], doc["data"]["cs0"], doc["data"]["cs0_setpoint"]))

        RE = RunEngine({}, context_managers=[])  # noqa: N806
        RE(ramp_and_record([], cs0, args.target, rate=args.rate, period=args.period), keep)

    t0 = rows[0][0]
    seconds = [r[0] - t0 for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(seconds, [r[2] for r in rows], "--", label="SETPOINT (ramping set point)")
    ax.plot(seconds, [r[1] for r in rows], "o-", ms=3, label="TEMP (sample gas)")
    ax.axhline(args.target, color="grey", lw=0.8, label=f"target {args.target:g} K")
    ax.set_xlabel("wall-clock time (s)")
    ax.set_ylabel("temperature (K)")
    ax.set_title(f"CS800 ramp to {args.target:g} K at {args.rate:g} K/h")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"{len(rows)} readings; ended at {rows[-1][1]:.2f} K; plot saved to {args.out}")


if __name__ == "__main__":
    main()
