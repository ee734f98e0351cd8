"""Benchmark the CS800 IOC: datagram-to-monitor latency and CPU use per number of controllers.

Run::

    python benchmarks/bench_ioc.py [--samples 400] [--seconds 10] [--counts 1,10,50]

1. Latency: ``cs800-ioc`` runs as a subprocess; this script sends status datagrams (built with
   ``protocol.encode_status``, TEMP changing every time) to its status port and subscribes to
   ``CS0:TEMP`` with caproto's threading client. Latency = CA monitor callback time minus the
   time just before ``sendto``, both ``time.monotonic()`` in this process. Prints median, p99
   and max in milliseconds.
2. CPU: for 1, 10 and 50 simulated controllers at 1 Hz (speed 1), the IOC's process CPU seconds
   per wall second, from ``/proc/<pid>/stat`` (utime + stime), over ``--seconds``:
   (a) ``cs800-ioc`` alone, fed by ``cs800-sim`` in a separate process;
   (b) ``cs800-sim-ioc`` (IOC and simulators in one process).
   No CA client is connected during the CPU runs. Linux only (uses /proc).
3. Foreign flood (``--flood``, or ``--flood-only``): ``cs800-ioc`` with controller 411 at
   127.0.0.1, fed at 10 Hz with a marker in RUNTIME (timed through a CA monitor,
   :class:`sim_ioc.flood.MarkerProbe`) while ``python -m sim_ioc.flood`` subprocesses send
   64-byte junk from 127.0.0.2, 127.0.0.6, ... (one sender per 100k/s asked) for
   ``--flood-seconds`` at each of ``--flood-rates``. Per rate: the rate achieved, the IOC's
   reading rate (REJ:SOURCE per second), markers shown, their p99 and the longest gap without
   an update, whether the controller went stale, the IOC's CPU. The ceiling is the highest
   achieved rate at which p99 (a lost marker counting as infinitely late) stays under 1 s.
4. Soak (``--soak 60 [--soak-controllers 10] [--soak-speed 1000]``, or ``--soak-only``):
   ``cs800-sim-ioc`` at high speed (datagram rate capped at 20 Hz per controller), RSS sampled
   every 5 s, CPU, datagram counters, child processes, and the time from SIGINT to exit.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from ophyd_cs800 import protocol as P
from sim_ioc.clock import ManualClock
from sim_ioc.controller import SimulatedCS800
from sim_ioc.flood import MarkerProbe
from sim_ioc.flood import percentile as sorted_percentile
from sim_ioc.process import IocProcess, SimIocProcess, ca_read

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """Utime + stime of ``pid`` in seconds (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_fraction(pid: int, seconds: float) -> float:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)  # measuring a rate over a wall-clock window (benchmark, not a test)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def hardware_ioc(n: int, command_port: int) -> IocProcess:
    args = ["ioc", "--status-port", "0", "--listen", "127.0.0.1", "--command-host", "127.0.0.1",
            "-q"]
    for i in range(n):
        args += ["--controller", f"CS{i}:{411 + i}@127.0.0.1:{command_port}"]
    return IocProcess(args, ready_pv="CS:PORT", startup_timeout=60)


def bench_latency(samples: int, rate_hz: float) -> None:
    from caproto.threading.client import Context

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    with hardware_ioc(1, sink.getsockname()[1]) as ioc:
        os.environ.update(ioc.env)
        port = int(ioc.read(ioc.prefix + "CS:PORT").data[0])
        raw = SimulatedCS800(411, ManualClock(), seed=1).raw_values()
        sent: dict[int, float] = {}
        latencies: list[float] = []
        done = threading.Event()

        def on_update(sub, response):
            now = time.monotonic()
            ck = round(float(response.data[0]) * 100)
            t0 = sent.pop(ck, None)
            if t0 is not None:
                latencies.append(now - t0)
                if len(latencies) >= samples:
                    done.set()

        ctx = Context()
        pv, = ctx.get_pvs(ioc.prefix + "CS0:TEMP", timeout=10)
        pv.wait_for_connection(timeout=10)
        sub = pv.subscribe(data_type="time")
        sub.add_callback(on_update)
        time.sleep(0.5)  # let the subscription's initial value arrive before timing
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        period = 1.0 / rate_hz
        next_t = time.monotonic()
        for i in range(samples * 2):
            if done.is_set():
                break
            ck = 10000 + (i % 20000)
            raw[1051] = ck
            datagram = P.encode_status(raw)
            sent[ck] = time.monotonic()
            sender.sendto(datagram, ("127.0.0.1", port))
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))
        done.wait(5)
        sub.clear()
        ctx.disconnect()
        sender.close()
    sink.close()
    ms = [x * 1000 for x in latencies]
    print(f"latency datagram -> CA monitor (cs800-ioc, {len(ms)} samples at {rate_hz:g} Hz): "
          f"median {statistics.median(ms):.2f} ms, p99 {percentile(ms, 99):.2f} ms, "
          f"max {max(ms):.2f} ms")


def _flood_senders(port: int, rate: float, seconds: float) -> list[subprocess.Popen]:
    n = max(1, -(-int(rate) // 100_000))
    sources = ["127.0.0.2", *(f"127.0.0.{6 + i}" for i in range(n - 1))]
    return [subprocess.Popen(
        [sys.executable, "-m", "sim_ioc.flood", "--to", f"127.0.0.1:{port}", "--source", src,
         "--rate", str(rate / n), "--seconds", str(seconds), "--count", str(int(rate / n *
                                                                               seconds) + 1)],
        stdout=subprocess.PIPE, text=True) for src in sources]


def bench_flood(rates: list[float], seconds: float) -> None:
    """Print per flood rate how a configured controller fares, then the ceiling."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    ceiling, failed = 0.0, float("inf")
    with hardware_ioc(1, sink.getsockname()[1]) as ioc:
        os.environ.update(ioc.env)
        port = int(ioc.read(ioc.prefix + "CS:PORT").data[0])
        for rate in rates:
            with MarkerProbe(("127.0.0.1", port), ioc.prefix + "CS0:RUNTIME", 411,
                             "127.0.0.1", rate_hz=10.0) as probe:
                rej0 = ca_read(ioc.prefix + "CS:REJ:SOURCE", ioc.env).data[0]
                cpu0, start = cpu_seconds(ioc.pid), time.monotonic()
                procs = _flood_senders(port, rate, seconds)
                outs = [p.communicate(timeout=seconds + 60)[0] for p in procs]
                end = time.monotonic()
                cpu = (cpu_seconds(ioc.pid) - cpu0) / (end - start)
                deadline = time.monotonic() + 5
                while not probe.caught_up() and time.monotonic() < deadline:
                    time.sleep(0.05)  # polling, bounded
            time.sleep(1.0)  # let the housekeeping publish the counters (5 Hz)
            rej = ca_read(ioc.prefix + "CS:REJ:SOURCE", ioc.env).data[0] - rej0
            sent = sum(int(o.split()[1]) for o in outs)
            took = max(float(o.split()[3]) for o in outs)
            lat = probe.latencies(start, end)
            shown = [x for x in lat if x != float("inf")]
            p99_all = sorted_percentile(lat, 99)
            p99_shown = sorted_percentile(shown, 99) if shown else float("inf")
            gap = probe.longest_gap(start, end)
            stale = probe.went_invalid(start)
            achieved = sent / took
            if p99_all < 1.0 and not stale:
                ceiling = max(ceiling, achieved)
            else:
                failed = min(failed, achieved)
            print(f"flood {rate:>8.0f}/s asked, {achieved:>8.0f}/s sent ({len(procs)} sender(s))"
                  f": IOC read {rej / (end - start):>7.0f}/s, CPU {cpu * 100:3.0f} %; "
                  f"controller: {len(shown)}/{len(lat)} markers shown, p99 "
                  f"{p99_shown * 1000:.0f} ms (shown) / "
                  f"{'lost' if p99_all == float('inf') else f'{p99_all * 1000:.0f} ms'} (all), "
                  f"longest gap {gap * 1000:.0f} ms, {'STALE' if stale else 'never stale'}",
                  flush=True)
    sink.close()
    bound = ("" if failed < float("inf") else
             "at least (no rate reached failed; the senders could go no faster here) ")
    print(f"foreign-flood ceiling (p99 < 1 s counting lost markers, never stale): {bound}"
          f"{ceiling:.0f} datagrams/s" + (f"; failed at {failed:.0f}/s" if bound == "" else ""))


def bench_cpu_alone(n: int, seconds: float) -> tuple[float, float]:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    with hardware_ioc(n, sink.getsockname()[1]) as ioc:
        port = int(ioc.read(ioc.prefix + "CS:PORT").data[0])
        cmd = [sys.executable, "-m", "sim_ioc.sim_cli", "--status-to", f"127.0.0.1:{port}",
               "--command-port", "0", "--speed", "1"]
        for i in range(n):
            cmd += ["--cid", str(411 + i)]
        with tempfile.TemporaryFile() as log:
            sim = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                wait_all_heard(ioc, n)
                frac = cpu_fraction(ioc.pid, seconds)
                rss = rss_mb(ioc.pid)
            finally:
                sim.terminate()
                try:
                    sim.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    sim.kill()
                    sim.wait(timeout=10)
    sink.close()
    return frac, rss


def wait_all_heard(ioc: IocProcess, n: int, timeout: float = 60.0) -> None:
    """Wait until every controller group has shown a datagram (bounded)."""
    deadline = time.monotonic() + timeout
    i = 0
    while i < n and time.monotonic() < deadline:
        try:
            value = ca_read(f"{ioc.prefix}CS{i}:CTRLNUM", ioc.env, timeout=2).data[0]
        except TimeoutError:
            continue
        if value == 411 + i:
            i += 1
    if i < n:
        raise RuntimeError(f"only {i} of {n} controllers reported within {timeout:g} s")


def bench_cpu_sim(n: int, seconds: float) -> float:
    with SimIocProcess(controllers=n, speed=1.0, extra_args=["-q"], startup_timeout=60) as ioc:
        wait_all_heard(ioc, n)
        return cpu_fraction(ioc.pid, seconds)


def bench_soak(n: int, speed: float, seconds: float) -> None:
    """Run ``cs800-sim-ioc`` fast for ``seconds``; print RSS over time, CPU and SIGINT exit."""
    import signal

    with SimIocProcess(controllers=n, speed=speed, extra_args=["-q"],
                       startup_timeout=60) as ioc:
        wait_all_heard(ioc, n)
        pid = ioc.pid
        rss0, c0, t0 = rss_mb(pid), cpu_seconds(pid), time.monotonic()
        samples = [rss0]
        while time.monotonic() - t0 < seconds:
            time.sleep(min(5.0, seconds))  # sampling RSS over a wall-clock window
            samples.append(rss_mb(pid))
        cpu = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
        accepted = int(ca_read(ioc.prefix + "CS:ACCEPTED", ioc.env).data[0])
        rejected = int(ca_read(ioc.prefix + "CS:REJECTED", ioc.env).data[0])
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                  text=True).stdout.split()
        proc = ioc._proc
        t1 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=30)
        exit_s = time.monotonic() - t1
    print(f"soak: cs800-sim-ioc, {n} controllers at {speed:g}x for {seconds:g} s: RSS "
          f"{rss0:.0f} MB at start, {max(samples):.0f} MB max, {samples[-1]:.0f} MB at end; "
          f"CPU {cpu * 100:.0f} % of one core; {accepted} datagrams accepted, {rejected} "
          f"rejected; child processes {len(children)}; SIGINT -> exit {status} in "
          f"{exit_s:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400, help="latency samples")
    parser.add_argument("--rate", type=float, default=50.0, help="latency datagrams per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="CPU measuring window")
    parser.add_argument("--counts", default="1,10,50", help="controller counts for CPU")
    parser.add_argument("--soak", type=float, default=0.0, metavar="S",
                        help="also run cs800-sim-ioc for S seconds at --soak-speed with "
                        "--soak-controllers and print its memory (default 0: skip)")
    parser.add_argument("--soak-controllers", type=int, default=10)
    parser.add_argument("--soak-speed", type=float, default=1000.0)
    parser.add_argument("--soak-only", action="store_true", help="skip latency and CPU")
    parser.add_argument("--flood", action="store_true", help="also run the foreign flood")
    parser.add_argument("--flood-only", action="store_true", help="only the foreign flood")
    parser.add_argument("--flood-rates", default="25000,50000,100000,200000,300000",
                        help="flood rates asked, datagrams/s")
    parser.add_argument("--flood-seconds", type=float, default=5.0)
    args = parser.parse_args()
    flood_rates = [float(r) for r in args.flood_rates.split(",")]
    if args.flood_only:
        bench_flood(flood_rates, args.flood_seconds)
        return
    if args.soak_only:
        bench_soak(args.soak_controllers, args.soak_speed, args.soak or 60.0)
        return
    bench_latency(args.samples, args.rate)
    counts = [int(c) for c in args.counts.split(",")]
    for n in counts:
        alone, rss = bench_cpu_alone(n, args.seconds)
        together = bench_cpu_sim(n, args.seconds)
        print(f"CPU, {n:3d} controller(s) at 1 Hz: cs800-ioc alone {alone * 100:5.1f} % of one "
              f"core (RSS {rss:.0f} MB); cs800-sim-ioc (IOC + simulators) "
              f"{together * 100:5.1f} %")
    if args.soak > 0:
        bench_soak(args.soak_controllers, args.soak_speed, args.soak)
    if args.flood:
        bench_flood(flood_rates, args.flood_seconds)


if __name__ == "__main__":
    main()
