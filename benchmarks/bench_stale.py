"""Benchmark how soon a running move fails after the controller falls silent, on both IOCs.

Run::

    python benchmarks/bench_stale.py [--rate-hz 1] [--status-period 1.0] [--runs 3] [--speed 100]
                                     [--no-lag]

For each IOC flavour (``fixed``: ours; ``synapps``: what the synApps C IOC shows, values
frozen with NO_ALARM) a ``cs800-sim-ioc`` subprocess with one controller sends ``--rate-hz``
status datagrams per wall second (1: a real CryoStream). The ``CS800`` device (default
``status_period``, ``stale_after="auto"``) starts a slow ramp; once the controller ramps, its
broadcasts are switched off (``SIM:BROADCAST`` Off) and the move's failure is timed. Printed
per flavour (median and max over ``--runs``):

* from the last datagram the device saw to the failed move (the heartbeat's last beat), and
* from the broadcast switch-off to the failed move,

next to the bound the device promises: 3 status periods + 1 s (the status period being the
device's effective one: learned, never below ``status_period``).

Then (unless ``--no-lag``) a lagging IOC: the synApps flavour fed 20 datagrams/s (it decodes
10/s and queues the rest, so readbacks arrive seconds late); three Cool commands in a row,
printing for each how many times it was sent and when the controller was seen to accept it.
The first may be re-sent (nothing is known of the lag yet); the next ones wait long enough.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def one_flavour(flavor: str, args: argparse.Namespace) -> None:
    """Start an IOC of ``flavor``, time ``args.runs`` silenced moves and print the figures."""
    from sim_ioc.process import SimIocProcess

    with SimIocProcess(controllers=1, speed=args.speed, flavor=flavor,
                       max_rate_hz=args.rate_hz) as ioc:
        os.environ.update(ioc.env)  # caproto's client re-reads the address list per search
        from ophyd_cs800 import CS800
        from ophyd_cs800.errors import CS800StaleError
        from ophyd_cs800.protocol import Phase, RunMode

        cs0 = CS800(ioc.controller_prefix(0), name=f"cs0_{flavor}", settle_time=0.0,
                    status_period=args.status_period)
        cs0.wait_for_connection(timeout=20)
        deadline = time.monotonic() + 30
        while (cs0.run_mode.get() not in (RunMode.STARTUP_OK, RunMode.RUN)
               or cs0.learned_status_period is None) and time.monotonic() < deadline:
            time.sleep(0.05)
        from_last, from_off, bounds = [], [], []
        for run in range(args.runs):
            start = cs0.temperature.get()
            status = cs0.set(start - 20 if run % 2 == 0 else start + 20, rate=1)
            deadline = time.monotonic() + 30
            while cs0.phase.get() != Phase.RAMP and time.monotonic() < deadline:
                time.sleep(0.02)
            ioc.silence(0)
            off = time.monotonic()
            try:
                status.wait(60)
            except CS800StaleError:
                failed = time.monotonic()
            else:
                raise SystemExit(f"{flavor}: the move finished although the controller is silent")
            finally:
                ioc.silence(0, False)
            last = max(cs0._heartbeat.packets.last, cs0._heartbeat.monitors.last)
            from_last.append(failed - last)
            from_off.append(failed - off)
            bounds.append(3 * cs0.effective_status_period + 1.0)
            deadline = time.monotonic() + 30
            while cs0.snapshot().silent and time.monotonic() < deadline:
                time.sleep(0.05)
            cs0.hold().wait(60)
        cs0.destroy()
        print(f"{flavor:8s} last datagram -> failed move: median "
              f"{statistics.median(from_last):.2f} s, max {max(from_last):.2f} s; "
              f"broadcast off -> failed: median "
              f"{statistics.median(from_off):.2f} s, max {max(from_off):.2f} s; bound "
              f"3 periods + 1 s = {max(bounds):.2f} s (learned period "
              f"{cs0.learned_status_period or float('nan'):.2f} s)")


def lagging_ioc(args: argparse.Namespace) -> None:
    """Three Cool commands through a synApps-flavour IOC that lags behind 20 datagrams/s."""
    from sim_ioc.process import SimIocProcess

    with SimIocProcess(controllers=1, speed=args.speed, flavor="synapps", max_rate_hz=20) as ioc:
        os.environ.update(ioc.env)
        from ophyd_cs800 import CS800

        cs0 = CS800(ioc.controller_prefix(0), name="cs0_lag", settle_time=0.0,
                    status_period=args.status_period)
        cs0.wait_for_connection(timeout=20)
        deadline = time.monotonic() + 15  # let the IOC's queue fill: the lag builds up
        while time.monotonic() < deadline:
            time.sleep(0.1)
        for target in (250.0, 240.0, 230.0):
            status = cs0.cool(target)
            runner = cs0._runner
            start = time.monotonic()
            while runner is not None and not runner.accepted and not status.done:
                time.sleep(0.01)
            accepted = time.monotonic() - start
            status.wait(120)
            print(f"lagging synapps IOC (20 datagrams/s in, 10 decoded/s): cool to "
                  f"{target:.0f} K sent {runner.sends if runner else 0} time(s), accepted "
                  f"after {accepted:.1f} s")
        cs0.destroy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate-hz", type=float, default=1.0,
                        help="status datagrams per wall second (1: a real controller)")
    parser.add_argument("--status-period", type=float, default=1.0,
                        help="the device's status_period floor, s")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--speed", type=float, default=100.0)
    parser.add_argument("--no-lag", action="store_true", help="skip the lagging-IOC figures")
    args = parser.parse_args(argv)
    import ophyd

    ophyd.set_cl("caproto")
    print(f"{args.rate_hz:g} datagrams/s, status_period {args.status_period:g} s, "
          f"{args.runs} runs per flavour")
    for flavor in ("fixed", "synapps"):
        one_flavour(flavor, args)
    if not args.no_lag:
        lagging_ioc(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
