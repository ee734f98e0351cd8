"""Repair of the connection states PyDM's EPICS plugins lose in a race (pure logic).

The end-to-end case, against a live IOC with PyDM's own plugin, is in test_screens.py.
"""

from __future__ import annotations

from types import SimpleNamespace

from sim_ioc.screens.connection_repair import ConnectionRepair


class FakeConnection:
    """A plugin connection: ``connected`` (what the widgets were told) and ``pv.connected``."""

    def __init__(self, told: bool, truth: bool | None) -> None:
        self.connected = told
        self.pv = SimpleNamespace(connected=truth) if truth is not None else None
        self.sent: list[bool] = []

    def send_connection_state(self, conn: bool) -> None:
        self.sent.append(conn)
        self.connected = conn


def _repair(connections: dict[str, FakeConnection]) -> ConnectionRepair:
    return ConnectionRepair(lambda: list(connections.items()))


def test_a_lost_connect_is_sent_again_on_the_second_tick_only():
    lost = FakeConnection(told=False, truth=True)  # the race: the PV connected, widgets not told
    fine = FakeConnection(told=True, truth=True)
    repair = _repair({"ca://x:CS0:TEMP": lost, "ca://x:CS0:PHASE": fine})
    assert repair.tick() == []  # once may be a connect whose callback is on its way
    assert lost.sent == []
    assert repair.tick() == ["ca://x:CS0:TEMP"]
    assert lost.sent == [True] and lost.connected is True
    assert fine.sent == []
    assert repair.tick() == [] and lost.sent == [True]  # repaired: nothing more to do
    assert repair.repaired == ["ca://x:CS0:TEMP"]


def test_a_lost_disconnect_is_repaired_too():
    stale = FakeConnection(told=True, truth=False)
    repair = _repair({"a": stale})
    repair.tick()
    assert repair.tick() == ["a"] and stale.sent == [False]


def test_a_difference_that_resolves_itself_between_ticks_is_left_alone():
    connecting = FakeConnection(told=False, truth=True)
    repair = _repair({"a": connecting})
    repair.tick()
    connecting.connected = True  # the plugin's own callback arrived
    assert repair.tick() == []
    connecting.connected = False  # a new, unrelated difference starts its own count
    assert repair.tick() == []
    assert repair.tick() == ["a"]
    assert connecting.sent == [True]


def test_connections_without_a_pv_yet_and_vanished_ones_are_skipped():
    connections = {"nopv": FakeConnection(told=False, truth=None),
                   "gone": FakeConnection(told=False, truth=True)}
    repair = _repair(connections)
    repair.tick()
    del connections["gone"]  # closed between ticks
    assert repair.tick() == []
    assert connections["nopv"].sent == []
