"""The tutorial fly example runs end to end (its own IOC, bp.fly over CA, a PNG)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "solenoid_tutorial_fly.py"


@pytest.mark.integration
def test_tutorial_fly_example_writes_a_timing_diagram(tmp_path):
    png = tmp_path / "timing.png"
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        rc = subprocess.run(
            [sys.executable, str(EXAMPLE), "--speed", "20", "--cycles", "1", "--out", str(png)],
            stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=120,
        ).returncode
    text = log.read_text()
    assert rc == 0, text
    assert re.search(r"documents: start, descriptor, event_page( x\d+)?, stop", text)
    assert "  live: " in text  # pages printed as they arrived
    assert "t=  1.50 s  cycle 0  step  6  A=0  B=1" in text
    assert "valve readbacks after unstage (safe state): {'A': 0, 'B': 0}" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
