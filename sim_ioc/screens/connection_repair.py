"""Re-send the connection state PyDM's EPICS plugins lose in a race.

PyDM's ``ca`` plugin (pyepics and caproto alike, PyDM 1.x) creates the client PV, then, on
another thread, calls ``add_listener``, which asks the PV whether it is connected and, if
not, sends "disconnected". When the PV connects between that question and that answer, the
connection callback's "connected" is overwritten by the stale "disconnected", and nothing
sends it again: the widget keeps its disconnected border and no value while the channel is
connected and updating underneath. We saw it about once in 25 opens of the 156 channels of
two controllers and a valve bank on a loaded 2-core machine (``cs800-screen --check`` said
"155 of 156 channels connected" after 30 s; the missing one's client PV was connected).

:class:`ConnectionRepair` compares, on every :meth:`~ConnectionRepair.tick`, each plugin
connection's ``connected`` (what the widgets were told) with its client PV's ``connected``
(the truth) and re-sends the truth through the plugin's own ``send_connection_state``, which
also re-sends the value and the access rights. A difference must be seen on two ticks in a
row before it is repaired, so an ordinary connect or disconnect, whose callback is still on
its way, is left to that callback. Repairs can race the client thread too; the next ticks
see any difference that remains and repair it, so the state converges.

Pure logic: it works on any objects with ``connected``, ``pv.connected`` and
``send_connection_state(bool)``; :func:`plugin_connections` finds PyDM's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

log = logging.getLogger(__name__)

#: Seconds between two ticks in the open window and in ``--check``.
TICK_PERIOD = 0.5


def _true_state(connection: Any) -> bool | None:
    """Return the client PV's own connection state (None: the connection has no PV yet)."""
    pv = getattr(connection, "pv", None)
    state = getattr(pv, "connected", None)
    return None if state is None else bool(state)


class ConnectionRepair:
    """Repair plugin connections whose told state differs from their PV's on two ticks.

    Parameters
    ----------
    connections
        Called at every tick; returns ``(name, connection)`` pairs to look at.
    """

    def __init__(self, connections: Callable[[], Iterable[tuple[str, Any]]]) -> None:
        self._connections = connections
        self._suspects: set[str] = set()
        #: Names repaired so far, in order (a name repaired twice appears twice).
        self.repaired: list[str] = []

    def tick(self) -> list[str]:
        """Look once; re-send the state of every connection seen wrong on this and the last tick.

        Returns
        -------
        list of str
            The names repaired on this tick.
        """
        wrong: set[str] = set()
        fixed: list[str] = []
        for name, connection in self._connections():
            truth = _true_state(connection)
            if truth is None or bool(getattr(connection, "connected", False)) == truth:
                continue
            if name not in self._suspects:
                wrong.add(name)
                continue
            log.info("PyDM lost the connection state of %s (it said %s): sent %s again",
                     name, not truth, truth)
            connection.send_connection_state(truth)
            fixed.append(name)
        self._suspects = wrong
        self.repaired.extend(fixed)
        return fixed


def plugin_connection(address: str) -> Any:
    """Return PyDM's plugin connection of ``address`` (e.g. ``ca://x:CS0:TEMP``), or None."""
    from pydm.data_plugins import plugin_for_address
    from pydm.utilities import parsed_address

    plugin = plugin_for_address(address)
    if plugin is None:
        return None
    parsed = parsed_address(address)
    return plugin.connections.get(parsed.netloc + parsed.path)


def plugin_connections(addresses: Sequence[str]) -> Callable[[], list[tuple[str, Any]]]:
    """Return a source for :class:`ConnectionRepair`: the PyDM connections of ``addresses``."""
    unique = list(dict.fromkeys(addresses))

    def connections() -> list[tuple[str, Any]]:
        found = ((address, plugin_connection(address)) for address in unique)
        return [(address, c) for address, c in found if c is not None]

    return connections
