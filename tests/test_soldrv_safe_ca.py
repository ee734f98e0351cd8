"""soldrv and a Channel Access valve bank that goes away mid-cycle and comes back."""

from __future__ import annotations

import os
import subprocess
import time

import polling
import pytest
from test_soldrv_cli import TUT, bank_log, soldrv_cmd

from sim_ioc.process import SimIocProcess, ca_read

# caproto's client searches for lost channels with a back-off of up to 5 s by default; a site
# that needs a quick recovery sets this (the test measures soldrv, not the search back-off).
# The knob is caproto's, so soldrv runs on ophyd's caproto layer here: with pyepics installed
# ophyd would pick libca, whose re-search after a restart waits for the IOC's beacons (through
# a CA repeater) or its own back-off (about 5 s here, no repeater).
FAST_SEARCH = {"CAPROTO_CLIENT_MAX_RETRY_SEARCHES_INTERVAL_SEC": "0.1",
               "OPHYD_CONTROL_LAYER": "caproto"}


@pytest.mark.integration
def test_the_safe_state_follows_a_killed_bank_back_and_soldrv_exits_1(tmp_path, ioc_factory):
    ioc = ioc_factory(SimIocProcess(controllers=1, valves=2, speed=100.0))
    prefix = ioc.prefix + "VB:"
    env = {**os.environ, **ioc.env, **FAST_SEARCH}
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "w") as f, open(err, "w") as e:
        proc = subprocess.Popen(
            [*soldrv_cmd(), str(TUT), "--valve-bank", prefix, "--mode", "0",
             "--duration", "120"],
            stdin=subprocess.PIPE, stdout=f, stderr=e, env=env, text=True,
        )
        try:
            polling.wait_for(lambda: "STROBES open B" in out.read_text(), "B to open", 30)
            ioc.stop()  # the bank goes away with A and B open (B closes at step 8)
            polling.wait_for(lambda: "it is retried every 0.2 s" in err.read_text(),
                             "the failure and the first safe-state attempt", 30)
            assert proc.poll() is None  # soldrv keeps running, retrying
            text = err.read_text()
            assert "the hardware call failed" in text and "the mode was stopped" in text
            ioc.start()  # the same prefix and port: the bank is reachable again (all closed)
            back = time.monotonic()
            polling.wait_for(lambda: bank_log(ioc, prefix) == ["V1=0", "V2=0"],
                             "the safe state on the bank", 10, interval=0.02)
            latency = time.monotonic() - back
            assert latency < 1.0, latency
            polling.wait_for(lambda: "the safe state holds now" in err.read_text(),
                             "the retry to report success", 10)
            proc.stdin.write("Q\n")
            proc.stdin.flush()
            assert proc.wait(30) == 1  # the cycle did not end as asked
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            proc.stdin.close()
    assert "the run did not end as asked" in err.read_text()
    assert out.read_text().splitlines()[-1] == "safe state: A=0 B=0"
    assert list(ca_read(prefix + "STATES", ioc.env).data) == [0, 0]
