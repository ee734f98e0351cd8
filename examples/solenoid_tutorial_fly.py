"""Fly the two-solenoid tutorial cycle against the simulated valve bank, events streaming live.

The cycle is the tutorial of "Solenoid Cycle Definitions v3.0" (``solenoid_tutorial.sol``
beside this script): A and B on a 4 s cycle at 1/4 s resolution. The script

1. starts ``cs800-sim-ioc --valves 2`` on a free loopback port (or uses ``--prefix`` of a
   running valve bank, with your EPICS_CA_* environment),
2. maps solenoid A -> ``VB:V1``, B -> ``VB:V2`` (``OphydHardware``),
3. runs ``RE(run_cycle(cycler, 0, cycles=N))`` (a fly inside a stage, so the valves end
   closed; it collects every 0.25 s while the cycle runs), printing each event page as it
   arrives and then the documents' names and every event with its time (the time of the
   change, relative to the first one),
4. draws a timing diagram of what was collected to a PNG.

Usage::

    python examples/solenoid_tutorial_fly.py [--cycles 2] [--speed 1] [--out timing.png]
"""

from __future__ import annotations

import argparse
import os
from contextlib import ExitStack
from pathlib import Path

HERE = Path(__file__).resolve().parent


def draw(rows: list[dict], keys: list[str], labels: list[str], out: Path, title: str) -> None:
    """Draw one step trace per solenoid (open = high) against elapsed seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [r["elapsed"] for r in rows]
    end = times[-1] + 0.5 if times else 1.0
    fig, axes = plt.subplots(len(keys), 1, sharex=True, figsize=(8, 1.3 * len(keys) + 0.8))
    axes = list(axes) if len(keys) > 1 else [axes]
    for ax, key, label in zip(axes, keys, labels, strict=True):
        vals = [r[key] for r in rows]
        ax.step([*times, end], [*vals, vals[-1]], where="post", lw=2)
        ax.set_ylim(-0.2, 1.2)
        ax.set_yticks([0, 1], ["closed", "open"])
        ax.set_ylabel(label, rotation=0, labelpad=20)
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("time since kickoff (s)")
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=2, help="cycles to fly (default 2)")
    ap.add_argument("--speed", type=float, default=1.0,
                    help="logical seconds per wall second (default 1 = real time)")
    ap.add_argument("--out", type=Path, default=Path("solenoid_tutorial_timing.png"))
    ap.add_argument("--prefix", help="PV prefix of a running valve bank (e.g. cs800:VB:)")
    args = ap.parse_args(argv)

    with ExitStack() as stack:
        prefix = args.prefix
        if prefix is None:
            from sim_ioc.process import SimIocProcess

            ioc = stack.enter_context(SimIocProcess(controllers=1, valves=2, speed=100.0))
            os.environ.update(ioc.env)  # before ophyd creates its Channel Access context
            prefix = ioc.prefix + "VB:"
        import ophyd
        from bluesky import RunEngine

        if ophyd.get_cl().name != "caproto":
            ophyd.set_cl("caproto")
        from soldrv.backends import OphydHardware, valve_bank_pvs
        from soldrv.flyer import SolenoidCycler
        from soldrv.plans import run_cycle
        from soldrv.runner import load_program

        program = load_program(HERE / "solenoid_tutorial.sol")
        sol, status, dtoa = valve_bank_pvs(program, prefix)
        hardware = OphydHardware.from_pvs(program, sol, status=status, dtoa=dtoa)
        cycler = SolenoidCycler(program, hardware, name="tutorial", speed=args.speed)

        RE = RunEngine({})
        docs: list[tuple[str, dict]] = []
        RE.subscribe(lambda name, doc: docs.append((name, doc)))
        RE.subscribe(live, "event_page")
        RE(run_cycle(cycler, 0, cycles=args.cycles))
        print("documents:", summary([name for name, _ in docs]))

        rows = []
        for name, doc in docs:
            if name == "event_page":
                for i in range(len(doc["seq_num"])):
                    rows.append({"time": doc["time"][i],
                                 **{k: v[i] for k, v in doc["data"].items()}})
        t0 = rows[0]["time"] if rows else 0.0
        for r in rows:
            r["elapsed"] = r["tutorial_elapsed"]
        print(f"{len(rows)} events (one per tick that changed a valve):")
        for r in rows:
            print(f"  t={r['elapsed']:6.2f} s  cycle {r['tutorial_cycle']}  "
                  f"step {r['tutorial_step']:2d}  A={r['tutorial_A']}  B={r['tutorial_B']}  "
                  f"event time +{r['time'] - t0:.3f} s")
        print("valve readbacks after unstage (safe state):", hardware.readback())
        draw(rows, ["tutorial_A", "tutorial_B"], ["A", "B"], args.out,
             f"Tutorial cycle, {args.cycles} cycle(s), flown over Channel Access")
        print(f"timing diagram written to {args.out}")
    return args.out


def live(name: str, page: dict) -> None:
    """Print an event page as it arrives (during the flight: run_cycle streams)."""
    print(f"  live: {len(page['seq_num'])} event(s), steps {page['data']['tutorial_step']}")


def summary(names: list[str]) -> str:
    """``start, descriptor, event_page x3, stop``: repeated document names counted."""
    out: list[list] = []
    for n in names:
        if out and out[-1][0] == n:
            out[-1][1] += 1
        else:
            out.append([n, 1])
    return ", ".join(n if k == 1 else f"{n} x{k}" for n, k in out)


if __name__ == "__main__":
    main()
