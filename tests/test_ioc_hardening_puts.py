"""Refused Channel Access puts: a prompt sentence for the client, bounded log lines (issue 10).

The IOC runs as a subprocess (``cs800-ioc`` with one controller whose command socket the test
owns); clients are caproto's sync and threading clients over real loopback CA.
"""

from __future__ import annotations

import logging
import time

import pytest
from caproto import ChannelType, ErrorResponseReceived
from test_ioc_hardware import DEADLINE, udp_socket, wait_for

from sim_ioc.log_limit import RateLimitedLog
from sim_ioc.process import IocProcess, ca_read, ca_write

pytestmark = pytest.mark.integration

PROMPT = 2.0  # s: a refusal must come well before caproto's 4-5 s timeouts
STORM = 1000


@pytest.fixture(scope="module")
def ioc(module_ioc_factory):
    cmd = udp_socket()
    proc = module_ioc_factory(IocProcess(
        ["ioc", "--controller", f"CS0:411@127.0.0.1:{cmd.getsockname()[1]}",
         "--status-port", "0", "--listen", "127.0.0.1", "--command-host", "127.0.0.1"],
        ready_pv="CS:PORT"))
    proc.cmd = cmd
    try:
        yield proc
    finally:
        cmd.close()


def refusal(proc: IocProcess, suffix: str, value, **kwargs) -> tuple[str, float]:
    """Put with notify; return (the error text the client got, seconds it took)."""
    start = time.monotonic()
    with pytest.raises(ErrorResponseReceived) as info:
        ca_write(proc.prefix + suffix, value, proc.env, notify=True, timeout=10, **kwargs)
    took = time.monotonic() - start
    text = bytes(info.value.args[0].error_message).rstrip(b"\0").decode()
    return text, took


@pytest.mark.parametrize(("suffix", "value", "words"), [
    ("CS0:RTEMP", 999.0, "CS0:RTEMP 999 K is out of range: allowed 80 to 400 K; nothing was sent"),
    ("CS0:TURBO", "maybe", "CS0:TURBO accepts only 'Off', 'On' (or index 0..1), got 'maybe'; "
                           "nothing was changed"),
    ("CS0:DEBUG", "Loud", "CS0:DEBUG accepts only 'Off', 'Error', 'Warning', 'Info', 'Debug'"),
])
def test_refused_put_is_a_prompt_sentence(ioc, suffix, value, words):
    text, took = refusal(ioc, suffix, value)
    assert words in text
    assert "CaprotoConversionError" not in text and "Traceback" not in text
    assert took < PROMPT


def test_text_put_to_a_number_is_a_sentence(ioc):
    """``caput RTEMP abc`` as libca sends it (DBR_STRING): converted, and refused, by the IOC."""
    text, took = refusal(ioc, "CS0:RTEMP", "abc", data_type=ChannelType.STRING)
    assert "CS0:RTEMP needs a number, got 'abc'; nothing was changed" in text
    assert took < PROMPT


def test_refused_turbo_sends_nothing_and_stays_readable(ioc):
    refusal(ioc, "CS0:TURBO", "maybe")
    ioc.cmd.settimeout(0.3)
    with pytest.raises(TimeoutError):
        ioc.cmd.recvfrom(64)  # no command went out
    ioc.cmd.settimeout(DEADLINE)
    assert ca_read(ioc.prefix + "CS0:TURBO", ioc.env).data[0] == b"Off"


def test_put_storm_is_counted_and_logs_a_few_lines(ioc):
    """1000 refused puts: PUT:REFUSED counts each, the log gets one line (no traceback)."""
    from caproto.threading.client import Context

    refused0 = ca_read(ioc.prefix + "CS:PUT:REFUSED", ioc.env).data[0]
    lines0 = len(ioc.log_path.read_text(errors="replace").splitlines())
    ctx = Context()
    try:
        pv, = ctx.get_pvs(ioc.prefix + "CS0:RTEMP", timeout=DEADLINE)
        pv.wait_for_connection(timeout=DEADLINE)
        for i in range(STORM):
            pv.write([1000.0 + i], wait=False, notify=False)
        wait_for(lambda: ca_read(ioc.prefix + "CS:PUT:REFUSED", ioc.env).data[0]
                 >= refused0 + STORM, f"{STORM} refusals counted", timeout=60)
        assert pv.read(timeout=DEADLINE).data[0] == 100.0  # nothing was taken
    finally:
        ctx.disconnect()
    assert ca_read(ioc.prefix + "CS:PUT:REFUSED", ioc.env).data[0] == refused0 + STORM
    log = ioc.log_path.read_text(errors="replace")
    # caproto's own INFO lines (client connects/disconnects) aside, the storm left one line:
    new = [line for line in log.splitlines()[lines0:] if "connected" not in line.lower()]
    assert "Traceback" not in log
    assert len(new) <= 2, new  # the first refusal at once; the rest in a 10 s summary
    assert "put refused (from " in log  # the first refusal of the interval was logged


def test_rate_limited_log_one_line_then_a_summary(caplog):
    now = [0.0]
    rate_log = RateLimitedLog(logging.getLogger("test.rate"), interval=10.0,
                              clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.rate"):
        for i in range(500):
            rate_log.note("refused puts", f"put refused {i}", detail=f"client{i % 2}")
        now[0] = 9.9
        rate_log.flush()
        assert [r.getMessage() for r in caplog.records] == ["put refused 0"]
        now[0] = 10.0
        rate_log.flush()
        rate_log.flush()
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["put refused 0", "499 more refused puts in the last 10 s "
                        "(most from client1: 250, client0: 249); last: put refused 499"]


def test_ophyd_signals_refuse_promptly_with_limits_and_enum_strings(ioc):
    """What an ophyd user gets: the IOC publishes DRVL/DRVH as control limits and the enum
    strings, so ``EpicsSignal(..., limits=True)`` and enum signals refuse before sending."""
    from ophyd import EpicsSignal
    from ophyd.utils.errors import LimitError

    rtemp = EpicsSignal(ioc.prefix + "CS0:RTEMP", name="rtemp", limits=True)
    turbo = EpicsSignal(ioc.prefix + "CS0:TURBO", name="turbo", string=True)
    for sig in (rtemp, turbo):
        sig.wait_for_connection(timeout=DEADLINE)
    start = time.monotonic()
    with pytest.raises(LimitError, match=r"outside of range: \[80.0, 400.0\]"):
        rtemp.set(999.0).wait(PROMPT)  # the status fails at once
    with pytest.raises(LimitError):
        rtemp.put(0.0, use_complete=True)
    with pytest.raises(ValueError, match="maybe is not in Enum"):
        turbo.set("maybe").wait(PROMPT)
    assert time.monotonic() - start < PROMPT
    assert rtemp.get() == 100.0
