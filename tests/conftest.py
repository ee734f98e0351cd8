"""Shared pytest fixtures: a session simulated CS800 IOC on loopback and a factory for more IOCs.

Channel Access configuration happens AT IMPORT TIME, before any test module creates an ophyd
signal: a free CA port is reserved for the session IOC, the loopback EPICS environment is put in
``os.environ`` and ophyd's control layer is set to ``CS800_TEST_CONTROL_LAYER`` (``caproto``, the
default, or ``pyepics``). caproto's threading client, which ophyd's caproto layer uses, re-reads
``EPICS_CA_ADDR_LIST`` at every search, and ``caproto.sync.client`` at every call -- so IOCs
started later on other ports are reachable once their port is appended to the list, which
``ioc_factory`` does. libca (the pyepics layer) reads the list ONCE per process: under pyepics a
pool of ``CA_PORT_POOL_SIZE`` free ports is reserved here as well, all of them go into the list
now, and ``ioc_factory`` / ``module_ioc_factory`` give each IOC they start a port of the pool
(back to the pool when it stops).

Fixtures:

* ``cs800_sim_ioc`` (session): :class:`sim_ioc.process.SimIocProcess` with 2 simulated
  controllers (411 at ``{prefix}CS0:``, 412 at ``{prefix}CS1:``), speed 500, stale timeout 2 s,
  20 datagrams per wall second, and ``SESSION_VALVES`` valves at ``{prefix}VB:``. Tests that
  disturb it restore it.
* ``ioc_factory`` (function): ``ioc_factory(SimIocProcess(...))`` or ``ioc_factory(IocProcess
  (...))`` starts an extra IOC on its own CA port, makes that port searchable by every client in
  this process, and stops the IOC at the end of the test. ``module_ioc_factory`` is the same for
  a module.
* ``synapps_sim_ioc`` (module): a ``--flavor synapps`` :class:`SimIocProcess` (1 controller at
  ``{prefix}CS0:``, speed 10, the default 5 datagrams per second, comms enabled).
  ``either_flavor_ioc`` (function, parametrized ``fixed``/``synapps``): the session IOC or that
  one, for tests that must hold on both flavours (``ioc.flavor`` says which).
"""

from __future__ import annotations

import os

import pytest

from sim_ioc.process import IocProcess, SimIocProcess, free_port, loopback_ca_env

#: Simulated valves of the session IOC (0: none). The valve-bank author flips this to 8 when
#: ``sim_ioc.valves.ValveBank`` exists.
SESSION_VALVES = 8
SESSION_CONTROLLERS = 2
SESSION_SPEED = 500.0
SESSION_STALE_TIMEOUT = 2.0
#: Simulator datagrams per wall second of the session IOC: faster than the default (5, what the
#: synApps C IOC can decode) so that tests at speed 500 see status every 0.05 s.
SESSION_MAX_RATE_HZ = 20.0

#: CA port of the session IOC, reserved now so the environment can be set before any client.
SESSION_CA_PORT = free_port()

#: ophyd's control layer for this run (``CS800_TEST_CONTROL_LAYER``): caproto or pyepics.
CONTROL_LAYER = os.environ.get("CS800_TEST_CONTROL_LAYER", "").strip().lower() or "caproto"
if CONTROL_LAYER not in ("caproto", "pyepics"):
    raise pytest.UsageError(f"CS800_TEST_CONTROL_LAYER={CONTROL_LAYER!r} is not a control "
                            "layer: use caproto or pyepics")
#: CA ports for the extra IOCs of a pyepics run, at most this many running at once.
CA_PORT_POOL_SIZE = 6


def _distinct_free_ports(count: int) -> list[int]:
    """``count`` different free ports, none of them the session IOC's."""
    ports: list[int] = []
    for _ in range(20 * count):  # bounded: free_port rarely repeats itself
        port = free_port()
        if port != SESSION_CA_PORT and port not in ports:
            ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"could not reserve {count} distinct free CA ports on 127.0.0.1")


#: Free CA ports for extra IOCs (pyepics only; None under caproto, where each IOC keeps the
#: port it chose and is added to the address list when it starts).
CA_PORT_POOL = _distinct_free_ports(CA_PORT_POOL_SIZE) if CONTROL_LAYER == "pyepics" else None
os.environ.update(loopback_ca_env(SESSION_CA_PORT, *(CA_PORT_POOL or ())))

import ophyd  # noqa: E402  (after the environment is set)

ophyd.set_cl(CONTROL_LAYER)


def add_ca_port(port: int) -> None:
    """Make CA clients of this process also search ``127.0.0.1:port``."""
    entry = f"127.0.0.1:{port}"
    current = os.environ.get("EPICS_CA_ADDR_LIST", "").split()
    if entry not in current:
        os.environ["EPICS_CA_ADDR_LIST"] = " ".join([*current, entry])


def remove_ca_port(port: int) -> None:
    """Undo :func:`add_ca_port`."""
    entry = f"127.0.0.1:{port}"
    current = os.environ.get("EPICS_CA_ADDR_LIST", "").split()
    os.environ["EPICS_CA_ADDR_LIST"] = " ".join(e for e in current if e != entry)


class _Launcher:
    """Starts IOC processes, registers their CA ports, stops everything at teardown."""

    def __init__(self) -> None:
        self.started: list[IocProcess] = []

    def __call__(self, proc: IocProcess) -> IocProcess:
        if CA_PORT_POOL is not None:  # pyepics: only the ports listed at import are searched
            if not CA_PORT_POOL:
                raise RuntimeError(f"all {CA_PORT_POOL_SIZE} CA ports of the pool are in use: "
                                   "raise CA_PORT_POOL_SIZE in tests/conftest.py")
            proc.use_ca_port(CA_PORT_POOL.pop(0))  # the longest unused
        self.started.append(proc)
        add_ca_port(proc.ca_port)
        proc.start()
        return proc

    def __enter__(self) -> _Launcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in reversed(self.started):
            try:
                proc.stop()
            finally:
                if CA_PORT_POOL is not None:
                    CA_PORT_POOL.append(proc.ca_port)
                else:
                    remove_ca_port(proc.ca_port)
        self.started.clear()


@pytest.fixture(scope="session")
def cs800_sim_ioc():
    """The session simulated IOC (2 controllers, speed 500, stale timeout 2 s)."""
    proc = SimIocProcess(controllers=SESSION_CONTROLLERS, speed=SESSION_SPEED,
                         stale_timeout=SESSION_STALE_TIMEOUT, valves=SESSION_VALVES,
                         ca_port=SESSION_CA_PORT, max_rate_hz=SESSION_MAX_RATE_HZ)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def ioc_factory():
    """Start extra IOCs (``ioc_factory(proc)``) for one test; stopped at its end."""
    with _Launcher() as launcher:
        yield launcher


@pytest.fixture(scope="module")
def module_ioc_factory():
    """As ``ioc_factory``, for IOCs shared by the tests of one module."""
    with _Launcher() as launcher:
        yield launcher


@pytest.fixture(scope="module")
def synapps_sim_ioc(module_ioc_factory):
    """A synapps-flavour simulated IOC for the tests of one module (comms enabled)."""
    return module_ioc_factory(SimIocProcess(flavor="synapps", speed=10.0))


@pytest.fixture(params=["fixed", "synapps"])
def either_flavor_ioc(request, cs800_sim_ioc, synapps_sim_ioc):
    """The session IOC (fixed flavour), then the module's synapps-flavour IOC."""
    return cs800_sim_ioc if request.param == "fixed" else synapps_sim_ioc
