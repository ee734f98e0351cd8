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
