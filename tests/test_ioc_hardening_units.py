"""Pure-logic checks of the IOC's status receiver and routing (issue 10); no sockets."""

from __future__ import annotations

import asyncio

from ophyd_cs800 import protocol as P
from sim_ioc import status_server
from sim_ioc.ioc import CS800IOC, ControllerConfig
from sim_ioc.status_server import StatusCounters, StatusReceiver


def datagram(cid: int, marker: int = 1) -> bytes:
    return P.encode_status({1028: cid, 1066: marker})


def test_foreign_sources_are_dropped_before_decoding(monkeypatch):
    decoded = []
    real = P.decode_status
    monkeypatch.setattr(status_server.P, "decode_status",
                        lambda data: decoded.append(data) or real(data))
    counters = StatusCounters()
    rx = StatusReceiver(lambda pkt, t, src: "", counters, allowed={"10.0.0.1"})
    for _ in range(3):
        rx.datagram_received(datagram(411), ("10.0.0.9", 30304))
    rx.datagram_received(b"junk", ("10.0.0.9", 30304))
    assert decoded == []
    assert counters.rejected["source"] == 4 and counters.received == 4
    assert counters.last_reject == ("source: datagram from 10.0.0.9, which is not a configured "
                                    "controller address")
    # a byte-identical repeat from the same source is decoded once
    for _ in range(5):
        rx.datagram_received(datagram(411), ("10.0.0.1", 30304))
    rx.datagram_received(datagram(411, marker=2), ("10.0.0.1", 30304))
    assert len(decoded) == 2 and counters.accepted == 6


def test_route_checks_the_source_and_keeps_only_the_newest_packet():
    ioc = CS800IOC("x:", [ControllerConfig("CS0:", 411, ("127.0.0.1", 9)),
                          ControllerConfig("CS1:", 0, ("127.0.0.3", 9),
                                           status_from=("127.0.0.4",))])
    cs0, cs1 = ioc.controllers
    assert ioc.allowed_sources == {"127.0.0.1", "127.0.0.4"}
    assert ioc.route(P.decode_status(datagram(411, 1)), 0.0, "127.0.0.4") == "source"
    assert ioc.route(P.decode_status(datagram(999)), 0.0, "127.0.0.1") == "unknown"  # no capture
    assert cs1.bound_cid is None
    for marker in range(1, 101):  # a burst: one packet waits, the newest
        assert ioc.route(P.decode_status(datagram(411, marker)), float(marker), "127.0.0.1") == ""
    assert list(ioc._latest) == [cs0] and ioc._latest[cs0][1] == 100.0
    assert ioc._latest[cs0][0].raw[1066] == 100 and cs0.count == 100
    assert ioc.route(P.decode_status(datagram(369)), 0.0, "127.0.0.4") == ""  # adopted
    assert cs1.bound_cid == 369

    async def show():
        ioc._wake = asyncio.Event()
        ioc._wake.set()
        task = asyncio.create_task(ioc._consume())
        while ioc._latest:
            await asyncio.sleep(0.01)  # the consumer empties the slots (bounded below)
        task.cancel()

    asyncio.run(asyncio.wait_for(show(), 10))
    assert cs0.runtime.value == 100.0 and cs1.ctrlnum.value == 369.0
