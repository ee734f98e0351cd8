"""SimulatorServer and the cs800-sim command over real UDP on loopback (free ports only)."""

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ophyd_cs800 import protocol as P
from ophyd_cs800.protocol import Phase, RunMode
from sim_ioc.clock import ScaledClock
from sim_ioc.controller import SimulatedCS800
from sim_ioc.udp_sim import SimulatorServer

pytestmark = pytest.mark.integration

DEADLINE_S = 15.0  # generous: the machine is shared


def receiver() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def wait_status(sock, predicate, cid=None, deadline_s=DEADLINE_S):
    """Receive status datagrams until predicate(packet) holds for controller cid; bounded."""
    end = time.monotonic() + deadline_s
    seen = 0
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no matching status datagram within {deadline_s} s "
                                 f"({seen} datagrams seen)")
        sock.settimeout(min(left, 1.0))
        try:
            data, addr = sock.recvfrom(4096)
        except TimeoutError:
            continue
        seen += 1
        pkt = P.decode_status(data)
        if (cid is None or pkt.cid == cid) and predicate(pkt):
            return pkt, addr


async def in_thread(func, *args, **kw):
    return await asyncio.to_thread(func, *args, **kw)


def send_cmd(port, cmd):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(cmd.encode(), ("127.0.0.1", port))


def test_command_over_udp_changes_next_status_datagrams():
    async def main():
        rx, rx2 = receiver(), receiver()
        clock = ScaledClock(20.0)
        a = SimulatedCS800(411, clock, seed=1)
        b = SimulatedCS800(369, clock, seed=2, layout="long", firmware=153)
        server = SimulatorServer([a, b], status_to=rx.getsockname(), max_rate_hz=20.0)
        async with server:
            ports = server.command_ports
            assert set(ports) == {411, 369} and ports[411] != ports[369]
            assert server.command_port == ports[411] and all(ports.values())
            pkt, addr = await in_thread(wait_status, rx, lambda p: p.run_mode is RunMode.STARTUP_OK,
                                        411)
            assert addr == ("127.0.0.1", ports[411])  # status leaves from the command socket
            send_cmd(ports[411], P.cool(150))
            pkt, _ = await in_thread(wait_status, rx, lambda p: p.target_temp == 150.0, 411)
            assert pkt.run_mode is RunMode.RUN and pkt.phase is Phase.COOL
            assert pkt.ramp_rate == 360 and pkt.get_raw(1072) == 1
            # the other controller did not see the command, and speaks the long layout
            pkt, _ = await in_thread(wait_status, rx, lambda p: True, 369)
            assert pkt.run_mode is RunMode.STARTUP_OK and len(pkt.trailing) == 196
            send_cmd(ports[411], P.Command(P.CommandId.RAMP, 400, 10000))  # rate out of range
            pkt, _ = await in_thread(wait_status, rx, lambda p: p.get_raw(1073) == 1, 411)
            assert pkt.target_temp == 150.0
            # status_to may change at run time
            server.status_to = rx2.getsockname()
            pkt, _ = await in_thread(wait_status, rx2, lambda p: True, 411)
            assert pkt.target_temp == 150.0
            # a lossy link: with drop_fraction 1 nothing gets through in either direction
            b.drop_fraction = 1.0
            send_cmd(ports[369], P.cool(200))
            await in_thread(wait_status, rx2, lambda p: server.commands_dropped[369] == 1
                            and server.status_dropped[369] > 0, 411)
            assert b.received == 0 and b.missed == 0
        assert not server.running
        rx.close()
        rx2.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_rate_cap_and_broadcast_switch_at_1000x():
    async def main():
        rx = receiver()
        rx.setblocking(False)
        clock = ScaledClock(1000.0)
        ctl = SimulatedCS800(7, clock, seed=1)
        server = SimulatorServer([ctl], status_to=rx.getsockname(), max_rate_hz=10.0)
        async with server:
            t0, n0 = time.monotonic(), server.status_sent[7]
            await asyncio.sleep(1.0)
            rate = (server.status_sent[7] - n0) / (time.monotonic() - t0)
            assert 0 < rate <= 10.0 * 1.5 + 2  # capped, although 1000 simulated s passed
            ctl.broadcasting = False  # the status loop runs in this thread: effective now
            n1 = server.status_sent[7]
            await asyncio.sleep(0.5)
            assert server.status_sent[7] == n1
            assert ctl.run_mode is RunMode.STARTUP_OK  # the model kept running
        rx.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_server_rejects_bad_arguments_and_busy_ports():
    clock = ScaledClock()
    ctl = SimulatedCS800(1, clock)
    with pytest.raises(ValueError, match="at least one"):
        SimulatorServer([])
    with pytest.raises(ValueError, match="unique"):
        SimulatorServer([ctl, SimulatedCS800(1, clock)])
    with pytest.raises(ValueError, match="status_to"):
        SimulatorServer([ctl], status_to=("127.0.0.1", 0))
    with pytest.raises(ValueError, match="unknown controllers"):
        SimulatorServer([ctl], command_ports={2: 0})
    busy = receiver()

    async def main():
        server = SimulatorServer([ctl], command_port=busy.getsockname()[1])
        with pytest.raises(OSError, match="cannot bind the command port"):
            await server.start()
        assert not server.running

    asyncio.run(main())
    busy.close()


def cs800_sim_command():
    script = Path(sys.executable).with_name("cs800-sim")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sim_ioc.sim_cli"]


def test_cs800_sim_subprocess_serves_and_stops_cleanly(tmp_path):
    rx = receiver()
    log_path = tmp_path / "cs800-sim.log"
    host, port = rx.getsockname()
    args = cs800_sim_command() + ["--cid", "411", "--cid", "369", "--status-to", f"{host}:{port}",
                                  "--command-port", "0", "--speed", "20", "--seed", "5"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ,
                                                               "PYTHONUNBUFFERED": "1"})
    try:
        ports = {}
        end = time.monotonic() + DEADLINE_S
        while len(ports) < 2:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < end, f"no port lines in the log: {log_path.read_text()}"
            ports = {int(c): int(p) for c, p in re.findall(
                r"controller (\d+) -> commands on 127\.0\.0\.1:(\d+)", log_path.read_text())}
            time.sleep(0.05)  # polling a log file for a condition, bounded by the deadline
        wait_status(rx, lambda p: p.run_mode is RunMode.STARTUP_OK, 369)
        send_cmd(ports[369], P.ramp(120, 250))
        pkt, _ = wait_status(rx, lambda p: p.target_temp == 250.0, 369)
        assert pkt.phase is Phase.RAMP and pkt.ramp_rate == 120
        pkt, _ = wait_status(rx, lambda p: True, 411)
        assert pkt.run_mode is RunMode.STARTUP_OK
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE_S) == 0
        assert "cs800-sim: stopped" in log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=DEADLINE_S)
        rx.close()


def test_cs800_sim_bad_arguments_exit_2(tmp_path):
    result = subprocess.run(cs800_sim_command() + ["--status-to", "nowhere"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "expected HOST:PORT" in result.stderr
