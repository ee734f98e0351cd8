"""Pause latency and store cost of a recorded ramp against the simulated IOC.

Prints, for ``--runs`` slow ramps on a fresh ``cs800-sim-ioc`` (speed ``--speed``):

* the time from ``RE.request_pause(defer=True)`` (one Ctrl-C, sent from a thread while the
  ramp runs) to the RunEngine being paused (median, max), with the device's status period;
* with ``--data DIR`` (default: a temporary directory), the documents of one full recorded
  ramp, the time ``Store.flush()`` still needed after the plan returned, and the store's size.

Usage::

    python benchmarks/bench_pause_store.py [--runs 5] [--speed 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--speed", type=float, default=100.0)
    parser.add_argument("--data", default=None, help="store directory (default: temporary)")
    args = parser.parse_args()

    from sim_ioc.process import SimIocProcess

    with SimIocProcess(controllers=1, speed=args.speed) as ioc:
        os.environ.update(ioc.env)
        import ophyd

        ophyd.set_cl("caproto")
        from bluesky import RunEngine
        from bluesky.utils import RunEngineInterrupted

        from ophyd_cs800 import CS800, store
        from ophyd_cs800.plans import hold, ramp

        cs0 = CS800(ioc.controller_prefix(0), name="cs0", status_period=0.25, settle_time=0.2)
        cs0.wait_for_connection(timeout=20)
        deadline = time.monotonic() + 20
        while cs0.run_mode.get() not in (2, 3) and time.monotonic() < deadline:
            time.sleep(0.05)
        RE = RunEngine({}, context_managers=[])  # noqa: N806
        paused_at: list[float] = []
        RE.state_hook = lambda new, old: paused_at.append(time.monotonic()) \
            if new == "paused" else None
        latencies, to_state = [], []
        for _ in range(args.runs):
            target = round(cs0.temperature.get() - 20, 2)
            asked: list[float] = []

            def ask(asked: list[float] = asked) -> None:
                while cs0.phase.get() != 0:  # Ramp
                    time.sleep(0.01)
                time.sleep(0.5)
                asked.append(time.monotonic())
                RE.request_pause(defer=True)

            threading.Thread(target=ask, daemon=True).start()
            try:
                RE(ramp(cs0, target, rate=30))
            except RunEngineInterrupted:
                latencies.append(time.monotonic() - asked[0])
                to_state.append(paused_at[-1] - asked[0])
                RE.abort()
            RE(hold(cs0))
        print(f"pause latency (request_pause(defer=True) -> paused), {len(latencies)} ramps, "
              f"status period {cs0.effective_status_period:.2f} s: median "
              f"{statistics.median(latencies):.3f} s, max {max(latencies):.3f} s (state "
              f"'paused' after median {statistics.median(to_state):.3f} s, max "
              f"{max(to_state):.3f} s)")

        with tempfile.TemporaryDirectory() as tmp:
            where = Path(args.data or tmp)
            started = time.monotonic()
            stored = store.subscribe_store(RE, where)
            opened = time.monotonic() - started
            counts: dict[str, int] = {}
            RE.subscribe(lambda name, doc: counts.__setitem__(name, counts.get(name, 0) + 1))
            started = time.monotonic()
            (uid,) = RE(ramp(cs0, round(cs0.temperature.get() - 30, 2)))
            plan_s = time.monotonic() - started
            started = time.monotonic()
            stored.flush()
            flush_s = time.monotonic() - started
            size = sum(p.stat().st_size for p in where.rglob("*") if p.is_file())
            print(f"store: opened in {opened:.2f} s; one ramp ({plan_s:.1f} s): "
                  f"{counts.get('event', 0)} events; flush after the plan {flush_s:.3f} s; "
                  f"{size / 1e6:.2f} MB on disk; failures {stored.writer.failures}")
        cs0.destroy()


if __name__ == "__main__":
    main()
