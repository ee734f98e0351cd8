"""Benchmark: status decode throughput and the simulator's real speed factor.

Prints:

1. ``protocol.decode_status`` throughput on 928-byte and 1236-byte datagrams (datagrams/s), and
   the controller's status encode throughput.
2. The model's ceiling: simulated seconds integrated per wall second when advanced flat out
   (1 s sub-steps, one controller).
3. A 1000x run through the real UDP server on loopback: simulated seconds per wall second
   actually reached, status datagrams per wall second (capped), CPU used, and whether a
   300 K -> 100 K ramp at 360 K/h still ends after 33.3 simulated minutes.

Run: ``python benchmarks/bench_protocol_sim.py [--seconds S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time

from ophyd_cs800 import protocol as P
from sim_ioc.clock import ManualClock, ScaledClock
from sim_ioc.controller import SimulatedCS800
from sim_ioc.udp_sim import SimulatorServer


def rate(func, seconds: float) -> float:
    """Measure the calls of ``func`` per wall second, measured over about ``seconds``."""
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(200):
            func()
        n += 200
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return n / elapsed


def bench_decode(seconds: float) -> None:
    clock = ManualClock()
    for layout, firmware in (("928", 115), ("long", 153)):
        ctl = SimulatedCS800(411, clock, layout=layout, firmware=firmware, seed=1)
        clock.advance(10)
        data = ctl.status_datagram()
        decoded = rate(lambda data=data: P.decode_status(data), seconds)
        encoded = rate(ctl.status_datagram, seconds)
        print(f"decode_status, {len(data):4d}-byte datagram: {decoded:10,.0f} datagrams/s   "
              f"(SimulatedCS800.status_datagram: {encoded:8,.0f} /s)")


def bench_model_ceiling(seconds: float) -> None:
    clock = ManualClock()
    ctl = SimulatedCS800(411, clock, seed=1, start_temp_k=300.0, ambient_k=300.0)
    clock.advance(3)
    ctl.handle_command(P.ramp(360, 100).encode())
    sim0, t0 = clock.now(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        clock.advance(50.0)  # what one 20 Hz status tick covers at 1000x
        ctl.advance()
        if ctl.phase is P.Phase.HOLD:
            ctl.handle_command(P.ramp(360, 300 if ctl.setpoint_k < 200 else 100).encode())
    factor = (clock.now() - sim0) / (time.perf_counter() - t0)
    print(f"model ceiling (advance flat out, 1 s sub-steps): {factor:12,.0f} simulated s per "
          f"wall s")


async def bench_server(seconds: float) -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    loop = asyncio.get_running_loop()
    clock = ScaledClock(1000.0)
    ctl = SimulatedCS800(411, clock, seed=1, start_temp_k=300.0, ambient_k=300.0)
    server = SimulatorServer([ctl], status_to=rx.getsockname(), max_rate_hz=20.0)
    await server.start()
    received = 0
    ramp_start = ramp_end = None
    deviations: list[float] = []
    cpu0, wall0, sim0 = time.process_time(), time.perf_counter(), clock.now()
    try:
        while time.perf_counter() - wall0 < seconds:
            try:
                data = await asyncio.wait_for(loop.sock_recv(rx, 4096), 1.0)
            except asyncio.TimeoutError:
                continue
            received += 1
            pkt = P.decode_status(data)
            if ramp_start is None and pkt.run_mode is P.RunMode.STARTUP_OK:
                ramp_start = clock.now()
                ctl.handle_command(P.ramp(360, 100).encode())
            elif ramp_start is not None and ramp_end is None:
                if pkt.phase is P.Phase.HOLD and pkt.setpoint == 100.0:
                    ramp_end = clock.now()
                else:  # set point expected from the clock at reception (0.1 K per sim s)
                    expected = 300.0 - 0.1 * (clock.now() - ramp_start)
                    deviations.append(pkt.setpoint - expected)
    finally:
        await server.stop()
        rx.close()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    print(f"server at 1000x asked: {(clock.now() - sim0) / wall:8,.0f} simulated s per wall s, "
          f"{received / wall:5.1f} status datagrams/s received (cap 20), CPU {cpu / wall:.0%}")
    if ramp_start is not None and ramp_end is not None:
        minutes = (ramp_end - ramp_start) / 60
        print(f"  300 K -> 100 K at 360 K/h ended after {minutes:.2f} simulated min "
              f"(expected 33.33; resolution one status tick = 50 simulated s)")
    if deviations:
        worst = max(deviations, key=abs)
        deviations.sort()
        print(f"  set point in each datagram vs the clock at reception: median "
              f"{deviations[len(deviations) // 2]:+.3f} K, worst {worst:+.3f} K over "
              f"{len(deviations)} datagrams (reception latency x 1000 x 0.1 K/s)")
    else:
        print("  the ramp did not finish within the run: give more --seconds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="wall seconds per throughput measurement (default 1)")
    args = parser.parse_args()
    bench_decode(args.seconds)
    bench_model_ceiling(args.seconds * 2)
    asyncio.run(bench_server(max(3.0, args.seconds * 3)))


if __name__ == "__main__":
    main()
