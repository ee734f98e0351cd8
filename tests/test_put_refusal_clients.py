"""A put the IOC refuses reaches the client at once as an error (issue 10, item 7).

Integration: the session ``cs800-sim-ioc`` (``cs800_sim_ioc``) over loopback Channel Access,
with :func:`ophyd_cs800.install_put_error_fix` installed. Clients: caproto's threading client,
ophyd's caproto control layer (this process) and ophyd's pyepics control layer (a child
process: the control layer is chosen once per process).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time

import pytest
from caproto import ChannelType
from polling import wait_for

from ophyd_cs800 import ca_put_errors
from ophyd_cs800.ca_put_errors import PutRefusedError, install_put_error_fix

pytestmark = pytest.mark.integration

PROMPT = 2.0  # s: a refusal must come well before the 4-5 s (or here 10 s) timeouts
WAIT = 10.0  # s: the timeouts given to the clients, so that a timeout cannot pass for PROMPT
LOGGER = "ophyd_cs800.ca_put_errors"
RANGE = "CS0:RTEMP 999 K is out of range: allowed 80 to 400 K; nothing was sent"
ENUM = "CS0:TURBO accepts only 'Off', 'On' (or index 0..1), got 7; nothing was changed"
TEXT = "CS0:RTEMP needs a number, got 'abc'; nothing was changed"

#: (PV suffix, value, caproto data type or None for native, words of the IOC's sentence)
REFUSED = [
    pytest.param("CS0:RTEMP", 999.0, None, RANGE, id="range"),
    pytest.param("CS0:TURBO", 7, None, ENUM, id="enum-index"),
    pytest.param("CS0:RTEMP", "abc", ChannelType.STRING, TEXT, id="text-to-number"),
]


@pytest.fixture(scope="module", autouse=True)
def fix_installed():
    return install_put_error_fix()


@pytest.fixture(scope="module")
def ca_context(cs800_sim_ioc):
    from caproto.threading.client import Context

    ctx = Context()
    try:
        yield ctx
    finally:
        ctx.disconnect()


@pytest.fixture(scope="module")
def rtemp_restored(cs800_sim_ioc):
    """RTEMP of the session IOC, written back after the module."""
    from ophyd import EpicsSignal

    sig = EpicsSignal(cs800_sim_ioc.prefix + "CS0:RTEMP", name="rtemp")
    sig.wait_for_connection(timeout=WAIT)
    before = sig.get()
    yield before
    sig.put(before, wait=True, timeout=WAIT)


def caproto_pv(ctx, ioc, suffix):
    pv, = ctx.get_pvs(ioc.prefix + suffix, timeout=WAIT)
    pv.wait_for_connection(timeout=WAIT)
    return pv


def timed(call):
    """Run ``call``; return (the exception it raised, seconds it took)."""
    start = time.monotonic()
    with pytest.raises(PutRefusedError) as info:
        call()
    return info.value, time.monotonic() - start


@pytest.mark.parametrize(("suffix", "value", "data_type", "words"), REFUSED)
def test_caproto_write_wait_raises_the_sentence(cs800_sim_ioc, ca_context, rtemp_restored,
                                                caplog, suffix, value, data_type, words):
    pv = caproto_pv(ca_context, cs800_sim_ioc, suffix)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        error, took = timed(lambda: pv.write([value], wait=True, timeout=WAIT,
                                             data_type=data_type))
    assert not [r for r in caplog.records if r.name == LOGGER]  # raised, not logged too
    assert took < PROMPT
    assert words in str(error)
    assert str(error).startswith("put refused by the IOC: " + cs800_sim_ioc.prefix)
    assert error.pvname == cs800_sim_ioc.prefix + suffix
    assert error.status == ca_put_errors.ECA_PUTFAIL
    assert "Python exception" not in str(error)


def test_caproto_accepted_write_is_unchanged(cs800_sim_ioc, ca_context, rtemp_restored):
    import caproto as ca

    pv = caproto_pv(ca_context, cs800_sim_ioc, "CS0:RTEMP")
    response = pv.write([151.5], wait=True, timeout=WAIT)
    assert isinstance(response, ca.WriteNotifyResponse)
    assert pv.read(timeout=WAIT).data[0] == 151.5


def test_caproto_write_callback_gets_the_error_response(cs800_sim_ioc, ca_context,
                                                        rtemp_restored, caplog):
    import caproto as ca

    pv = caproto_pv(ca_context, cs800_sim_ioc, "CS0:RTEMP")
    got = []
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        start = time.monotonic()
        pv.write([999.0], wait=False, callback=got.append)
        wait_for(lambda: got, "the write callback", timeout=WAIT)
        took = time.monotonic() - start
        pv.write([152.0], wait=False, callback=got.append)
        wait_for(lambda: len(got) == 2, "the second write callback", timeout=WAIT)
    assert took < PROMPT
    refused, accepted = got
    assert isinstance(refused, ca.ErrorResponse) and refused.status.code_with_severity != 1
    assert isinstance(accepted, ca.WriteNotifyResponse)
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        f"put refused by the IOC: {cs800_sim_ioc.prefix}{RANGE}"]


def test_caproto_write_without_notify_is_logged(cs800_sim_ioc, ca_context, rtemp_restored,
                                                caplog):
    """Nobody waits for a plain write; its refusal is logged (as libca prints one)."""
    pv = caproto_pv(ca_context, cs800_sim_ioc, "CS0:TURBO")
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        pv.write([7], wait=False, notify=False)
        wait_for(lambda: any(ENUM in r.getMessage() for r in caplog.records),
                   "the refusal logged", timeout=PROMPT)


@pytest.fixture(scope="module")
def ophyd_signals(cs800_sim_ioc, rtemp_restored):
    from ophyd import EpicsSignal

    sigs = {suffix: EpicsSignal(cs800_sim_ioc.prefix + suffix, name=suffix.lower(),
                                put_complete=True, write_timeout=WAIT)
            for suffix in ("CS0:RTEMP", "CS0:TURBO")}
    for sig in sigs.values():
        sig.wait_for_connection(timeout=WAIT)
    return sigs


OPHYD_REFUSED = [param for param in REFUSED if param.id != "text-to-number"]


@pytest.mark.parametrize(("suffix", "value", "data_type", "words"), OPHYD_REFUSED)
def test_ophyd_set_fails_its_status_with_the_sentence(ophyd_signals, caplog, suffix, value,
                                                      data_type, words):
    sig = ophyd_signals[suffix]
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        status = sig.set(value)
        error, took = timed(lambda: status.wait(WAIT))
    assert not [r for r in caplog.records if r.name == LOGGER]  # the status says it
    assert took < PROMPT
    assert words in str(error)
    assert status.done and not status.success


@pytest.mark.parametrize(("suffix", "value", "data_type", "words"), OPHYD_REFUSED)
def test_ophyd_put_use_complete_wait_raises(ophyd_signals, suffix, value, data_type, words):
    sig = ophyd_signals[suffix]
    error, took = timed(lambda: sig.put(value, use_complete=True, wait=True, timeout=WAIT))
    assert took < PROMPT
    assert words in str(error)


def test_ophyd_put_use_complete_without_wait_logs_and_stays_incomplete(ophyd_signals,
                                                                       caplog):
    """``put(v, use_complete=True)`` does not wait (pyepics semantics): it returns at once;
    the refusal is logged and the PV's ``put_complete`` never turns True."""
    sig = ophyd_signals["CS0:RTEMP"]
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        sig.put(999.0, use_complete=True)
        wait_for(lambda: any(RANGE in r.getMessage() for r in caplog.records),
                   "the refusal logged", timeout=PROMPT)
    assert sig._write_pv.put_complete is False


def test_ophyd_accepted_puts_are_unchanged(ophyd_signals):
    rtemp, turbo = ophyd_signals["CS0:RTEMP"], ophyd_signals["CS0:TURBO"]
    rtemp.set(153.0).wait(WAIT)
    rtemp.put(154.0, use_complete=True, wait=True)
    turbo.set(0).wait(WAIT)
    rtemp.put(155.0, use_complete=True)
    wait_for(lambda: rtemp._write_pv.put_complete, "put completion", timeout=WAIT)
    assert rtemp.get(use_monitor=False) == 155.0


def test_ophyd_text_to_a_number_fails_before_sending(ophyd_signals):
    """ophyd's caproto layer converts on the client: a prompt ValueError, nothing sent."""
    with pytest.raises(ValueError, match="could not convert string to float"):
        ophyd_signals["CS0:RTEMP"].put("abc", use_complete=True, wait=True)


PYEPICS_CHILD = textwrap.dedent("""
    import json, logging, sys, time
    import ophyd
    ophyd.set_cl("pyepics")
    from ophyd import EpicsSignal
    from ophyd_cs800 import install_put_error_fix
    parts = install_put_error_fix()
    prefix = sys.argv[1]
    out = {"parts": parts}
    sigs = {s: EpicsSignal(prefix + s, name=s.lower(), put_complete=True, write_timeout=10)
            for s in ("CS0:RTEMP", "CS0:TURBO")}
    for sig in sigs.values():
        sig.wait_for_connection(timeout=10)

    logged = []
    handler = logging.Handler()
    handler.emit = logged.append
    logging.getLogger("ophyd_cs800.ca_put_errors").addHandler(handler)

    def attempt(name, call):
        start = time.monotonic()
        try:
            call()
            out[name] = ["ok", "", time.monotonic() - start]
        except Exception as exc:
            out[name] = [type(exc).__name__, str(exc), time.monotonic() - start]

    attempt("set-range", lambda: sigs["CS0:RTEMP"].set(999.0).wait(10))
    attempt("set-enum", lambda: sigs["CS0:TURBO"].set(7).wait(10))
    attempt("put-range", lambda: sigs["CS0:RTEMP"].put(999.0, use_complete=True, wait=True))
    out["logged-while-waiting"] = len(logged)
    sigs["CS0:RTEMP"].put(998.0, use_complete=True)  # returns at once; the refusal is logged
    deadline = time.monotonic() + 10
    while not logged and time.monotonic() < deadline:
        time.sleep(0.01)
    out["logged"] = [r.getMessage() for r in logged]
    attempt("set-ok", lambda: sigs["CS0:RTEMP"].set(156.0).wait(10))
    attempt("put-ok", lambda: sigs["CS0:RTEMP"].put(157.0, use_complete=True, wait=True))
    out["value"] = float(sigs["CS0:RTEMP"].get(use_monitor=False))
    print(json.dumps(out))
""")


def test_pyepics_layer_refusals_fail_promptly(cs800_sim_ioc, rtemp_restored):
    """ophyd's pyepics layer (libca) in a child process: failed statuses and raised puts;
    libca passes the status, not the IOC's text."""
    pytest.importorskip("epics")
    env = {**os.environ, **cs800_sim_ioc.env}
    proc = subprocess.run([sys.executable, "-c", PYEPICS_CHILD, cs800_sim_ioc.prefix],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["parts"]["pyepics"] is True
    for case in ("set-range", "set-enum", "put-range"):
        kind, text, took = out[case]
        assert kind == "PutRefusedError", out[case]
        assert "put refused by the IOC" in text and "CA status 160" in text
        assert took < PROMPT
    assert out["logged-while-waiting"] == 0  # raised or failed a status: not logged too
    assert len(out["logged"]) == 1 and "put refused by the IOC" in out["logged"][0]
    assert out["set-ok"][0] == "ok" and out["put-ok"][0] == "ok"
    assert out["value"] == 157.0


def test_install_is_idempotent_and_the_device_installs_it():
    from caproto.threading import client
    from ophyd import signal

    from ophyd_cs800 import CS800

    write, setter = client.PV.write, signal.EpicsSignal.set
    assert install_put_error_fix()["caproto"] is True
    assert (client.PV.write, signal.EpicsSignal.set) == (write, setter)  # not wrapped twice
    cs0 = CS800("nowhere:CS0:", name="cs0")
    try:
        assert getattr(client.PV.write, ca_put_errors._MARK) is True
    finally:
        cs0.destroy()


def test_an_unexpected_function_is_left_alone_and_logged_once(caplog):
    """A part is patched whole or not at all; one unexpected function skips it (logged once)."""
    class Owner:
        @staticmethod
        def read(data):
            return data

        @staticmethod
        def write(data):
            return data

    originals = (Owner.read, Owner.write)
    patches = [(Owner, "read", lambda func: True, lambda func: func),
               (Owner, "write", lambda func: False, lambda func: func)]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(2):
            assert not ca_put_errors._patch_all("test-part", patches)
    assert (Owner.read, Owner.write) == originals
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 1
    assert messages[0].startswith("put-refusal fix not installed for test-part: ")
    assert "Owner.write is not the function it was written for" in messages[0]


def test_environment_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv(ca_put_errors.ENV_SWITCH, "0")
    assert install_put_error_fix() == {}


def test_ophyd_set_without_put_completion_logs_the_refusal(cs800_sim_ioc, rtemp_restored,
                                                           caplog):
    """Without put completion ophyd's ``set`` waits for the readback (its rule); the refusal
    of the plain write is logged at once."""
    from ophyd import EpicsSignal
    from ophyd.utils.errors import WaitTimeoutError

    sig = EpicsSignal(cs800_sim_ioc.prefix + "CS0:RTEMP", name="rtemp_plain")
    sig.wait_for_connection(timeout=WAIT)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        status = sig.set(999.0, timeout=1.0)
        wait_for(lambda: any(RANGE in r.getMessage() for r in caplog.records),
                 "the refusal logged", timeout=PROMPT)
    with pytest.raises((WaitTimeoutError, TimeoutError)):
        status.wait(WAIT)
