"""SimIocProcess never leaves an IOC behind, even when the process that started it is killed."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

DEADLINE = 60.0

PARENT = textwrap.dedent(
    """
    import sys, threading
    from sim_ioc.process import SimIocProcess
    ioc = SimIocProcess(controllers=1, speed=10.0).start()
    print(ioc.pid, flush=True)
    threading.Event().wait(120)  # until killed
    """
)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status  # a zombie has exited


@pytest.mark.integration
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_ioc_exits_when_its_parent_is_killed(tmp_path):
    out = tmp_path / "parent.out"
    ioc_pid = None
    with open(out, "wb") as fh:
        parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=fh,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and ioc_pid is None:
            assert parent.poll() is None, out.read_text()
            first = out.read_text().split("\n", 1)[0].strip()
            ioc_pid = int(first) if first.isdigit() else None
            time.sleep(0.1)
        assert ioc_pid is not None, out.read_text()
        assert _alive(ioc_pid)
        parent.kill()  # SIGKILL: no cleanup code of the parent runs
        parent.wait(10)
        deadline = time.monotonic() + 20
        while _alive(ioc_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(ioc_pid), "the IOC outlived the process that started it"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if ioc_pid is not None and _alive(ioc_pid):
            os.kill(ioc_pid, signal.SIGKILL)


def test_search_timeouts_are_retried_from_new_sockets_then_named(monkeypatch):
    """A PV nobody serves: three real searches, each from a new client socket, and the
    error says so. Linux can give a caproto client socket a port another SO_REUSEADDR socket
    holds, whose owner then receives the reply; a new socket is the cure."""
    from caproto import CaprotoTimeoutError
    from caproto.sync import client as sync

    from sim_ioc.process import CA_SEARCH_ATTEMPTS, ca_read, free_port, loopback_ca_env

    sockets = []  # kept alive, so that no two can share an id()
    real_search = sync.search

    def recording_search(pv_name, udp_sock, timeout, **kwargs):
        sockets.append(udp_sock)
        return real_search(pv_name, udp_sock, timeout, **kwargs)

    monkeypatch.setattr(sync, "search", recording_search)
    env = loopback_ca_env(free_port())  # nothing listens there
    with pytest.raises(CaprotoTimeoutError, match=r"NOPE:PV.*\(3 searches, each from a new"):
        ca_read("NOPE:PV", env, timeout=0.2)
    assert len(sockets) == CA_SEARCH_ATTEMPTS == 3
    assert len({id(sock) for sock in sockets}) == 3


def test_only_search_timeouts_are_retried():
    from caproto import CaprotoTimeoutError

    from sim_ioc.process import _search_retried

    calls = []

    def times_out_after_the_search():  # e.g. a put whose completion never came
        calls.append(1)
        raise CaprotoTimeoutError("no write response")

    with pytest.raises(CaprotoTimeoutError, match="^no write response$"):
        _search_retried(times_out_after_the_search)
    assert len(calls) == 1


@pytest.mark.integration
def test_ca_helpers_reach_a_served_pv(cs800_sim_ioc, monkeypatch):
    from caproto.sync import client as sync

    from sim_ioc.process import ca_read, ca_write

    searches = []
    real_search = sync.search

    def counting_search(*args, **kwargs):
        searches.append(args[0])
        return real_search(*args, **kwargs)

    monkeypatch.setattr(sync, "search", counting_search)
    prefix = cs800_sim_ioc.controller_prefix(0)
    ca_write(prefix + "DISABLE", "Enabled", cs800_sim_ioc.env)  # already enabled: harmless
    assert ca_read(prefix + "CTRLNUM", cs800_sim_ioc.env).data[0] == 411
    # one search each (a second only if the rare port sharing hit this very search)
    assert searches[0] == prefix + "DISABLE" and searches[-1] == prefix + "CTRLNUM"
    assert set(searches) == {prefix + "DISABLE", prefix + "CTRLNUM"} and len(searches) <= 4
