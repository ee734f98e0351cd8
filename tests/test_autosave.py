"""Autosave of DEBUG, DISABLE, RRATE, RTEMP, PTIME, CTEMP, ERATE (sim_ioc.autosave).

Unit tests run real controller groups (no sockets) through restore and save; the integration
tests restart a ``cs800-sim-ioc`` subprocess with the same ``--autosave DIR``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os

import pytest

from ophyd_cs800 import protocol as P
from sim_ioc.autosave import (
    FILE_FORMAT,
    SETTINGS_FIELDS,
    Autosave,
    AutosaveError,
    decode_settings,
    default_directory,
    encode_settings,
    settings_path,
    write_atomically,
)
from sim_ioc.ioc import ControllerConfig, CS800ControllerGroup
from sim_ioc.process import IocProcess, SimIocProcess, ca_write, random_prefix
from tests.polling import poll, wait_for

DEFAULTS = {"DEBUG": "Warning", "DISABLE": "Enabled", "RRATE": 360.0, "RTEMP": 100.0,
            "PTIME": 10.0, "CTEMP": 100.0, "ERATE": 360.0}


def _group(prefix: str = "u:CS0:", cid: int = 411) -> CS800ControllerGroup:
    return CS800ControllerGroup(prefix, config=ControllerConfig(r="CS0:", cid=cid))


def _restore(group, directory) -> Autosave:
    saver = Autosave([group], directory)
    asyncio.run(saver.restore())
    return saver


# ---------------------------------------------------------------------- file format


def test_the_fields_are_those_of_the_synapps_request_file():
    assert SETTINGS_FIELDS == ("DEBUG", "DISABLE", "RRATE", "RTEMP", "PTIME", "CTEMP", "ERATE")


def test_cs800_ioc_default_directory_is_per_user_state(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_directory() == tmp_path / "ophyd-cs800" / "autosave"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert str(default_directory()).endswith("/.local/state/ophyd-cs800/autosave")


def test_file_name_per_controller_prefix(tmp_path):
    assert settings_path(tmp_path, "xxx:CS0:") == tmp_path / "xxx_CS0_settings.json"
    assert settings_path(tmp_path, "a/b:CS1:").name == "a_b_CS1_settings.json"


def test_encode_decode_round_trip():
    text = encode_settings("xxx:CS0:", 411, {**DEFAULTS, "RRATE": 123.0})
    data = json.loads(text)
    assert data["format"] == FILE_FORMAT and data["prefix"] == "xxx:CS0:"
    assert data["controller"] == 411
    assert decode_settings(text, "xxx:CS0:", 411) == {**DEFAULTS, "RRATE": 123.0}
    # a group with CID 0 (first heard) accepts its prefix's file whatever controller wrote it
    assert decode_settings(text, "xxx:CS0:", 0)["RRATE"] == 123.0


@pytest.mark.parametrize(("text", "prefix", "cid", "message"), [
    ("{not json", "xxx:CS0:", 411, "is not valid JSON"),
    ('{"some": "thing"}', "xxx:CS0:", 411, f"is not an {FILE_FORMAT} file"),
    (encode_settings("xxx:CS1:", 411, DEFAULTS), "xxx:CS0:", 411,
     "belongs to 'xxx:CS1:', not 'xxx:CS0:'"),
    (encode_settings("xxx:CS0:", 369, DEFAULTS), "xxx:CS0:", 411,
     "belongs to controller 369, not 411"),
    (encode_settings("xxx:CS0:", 411, DEFAULTS).replace('"version": 1', '"version": 9'),
     "xxx:CS0:", 411, "has version 9; this IOC reads version 1"),
])
def test_bad_or_foreign_files_are_refused_with_a_sentence(text, prefix, cid, message):
    with pytest.raises(AutosaveError) as info:
        decode_settings(text, prefix, cid, "F")
    assert str(info.value).startswith("F ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_atomic_write_leaves_no_temporary_file_and_replaces_the_old(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("old")
    write_atomically(path, "new\n")
    assert path.read_text() == "new\n"
    assert os.listdir(tmp_path) == ["s.json"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        write_atomically(path, None)  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["s.json"]


# ---------------------------------------------------------------------- restore / save


def test_save_then_restore_into_a_new_group(tmp_path):
    group = _group()
    saver = _restore(group, tmp_path / "new" / "dir")  # the directory is created
    assert saver.save_changed() == 0  # nothing changed: nothing written

    async def change():
        await group.disable.write("Disabled")
        await group.rrate.write(123)
        await group.debug.write("Info")

    asyncio.run(change())
    assert saver.save_changed() == 1
    assert saver.save_changed() == 0
    fresh = _group()
    _restore(fresh, tmp_path / "new" / "dir")
    assert Autosave.values(fresh) == {**DEFAULTS, "DISABLE": "Disabled", "RRATE": 123.0,
                                      "DEBUG": "Info"}
    assert fresh.disabled
    assert fresh.clog.level == logging.INFO  # DEBUG's putter ran on restore
    assert fresh.commands_sent == 0


def test_corrupt_file_keeps_defaults_logs_one_sentence_and_keeps_the_file(tmp_path, caplog):
    path = settings_path(tmp_path, "u:CS0:")
    path.write_bytes(b"\x00\xffgarbage")
    group = _group()
    with caplog.at_level(logging.WARNING, logger="sim_ioc.autosave"):
        saver = _restore(group, tmp_path)
    assert Autosave.values(group) == DEFAULTS
    [record] = caplog.records
    text = record.getMessage()
    assert text.startswith("autosave of u:CS0: refused: ")
    assert text.endswith("the defaults are kept and the file is renamed "
                         "u_CS0_settings.json.refused")
    assert "\n" not in text
    assert (tmp_path / "u_CS0_settings.json.refused").read_bytes() == b"\x00\xffgarbage"
    assert not path.exists()
    assert saver.save_changed() == 0


def test_foreign_file_is_refused(tmp_path, caplog):
    path = settings_path(tmp_path, "u:CS0:")
    path.write_text(encode_settings("u:CS0:", 369, {**DEFAULTS, "DISABLE": "Disabled"}))
    group = _group(cid=411)
    with caplog.at_level(logging.WARNING, logger="sim_ioc.autosave"):
        _restore(group, tmp_path)
    assert not group.disabled
    assert "belongs to controller 369, not 411" in caplog.text


def test_a_refused_value_keeps_its_default_and_the_others_are_restored(tmp_path, caplog):
    path = settings_path(tmp_path, "u:CS0:")
    path.write_text(encode_settings("u:CS0:", 411, {**DEFAULTS, "RRATE": 9999.0,
                                                    "PTIME": 30.0, "DEBUG": "Loud"}))
    group = _group()
    with caplog.at_level(logging.WARNING, logger="sim_ioc.autosave"):
        _restore(group, tmp_path)
    values = Autosave.values(group)
    assert values["RRATE"] == 360.0 and values["DEBUG"] == "Warning"
    assert values["PTIME"] == 30.0
    assert "u:CS0: autosaved RRATE=9999.0 refused (" in caplog.text
    assert "its default 360.0 is kept" in caplog.text


def test_unwritable_directory_is_a_sentence(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match=r"^the autosave directory .*file/sub cannot be created"):
        asyncio.run(Autosave([_group()], blocker / "sub").restore())


# ---------------------------------------------------------------------- the IOC, restarted


def _sim(prefix: str, directory, flavor: str = "fixed") -> SimIocProcess:
    # synapps: no --enable-comms, so DISABLE is the C IOC's boot value (Disabled) or the file's
    return SimIocProcess(prefix=prefix, speed=100.0, flavor=flavor, enable_comms=False,
                         extra_args=["--autosave", str(directory)])


def _commands_seen(ioc: SimIocProcess) -> tuple[int, int] | None:
    """The simulated controller's command counters (ids 1072 received, 1073 missed) in the
    last status datagram (None before the first one)."""
    data = bytes(ioc.read(f"{ioc.prefix}CS:status_packet").data)
    if not data:
        return None
    raw = P.decode_status(data).raw
    return raw[1072], raw[1073]


def _distinct_packets(ioc: SimIocProcess, n: int) -> list[P.StatusPacket]:
    """The next ``n`` distinct status datagrams the IOC shows (bounded wait)."""
    seen: dict[bytes, P.StatusPacket] = {}

    def more() -> bool:
        data = bytes(ioc.read(f"{ioc.prefix}CS:status_packet").data)
        if data:
            seen.setdefault(data, P.decode_status(data))
        return len(seen) >= n

    wait_for(more, f"{n} status datagrams", 30, interval=0.1)
    return list(seen.values())


@pytest.mark.integration
@pytest.mark.parametrize(("flavor", "disable", "restored"), [
    ("fixed", 1, "Disabled"),     # the case: comms off survives a restart
    ("synapps", 0, "Enabled"),    # the C IOC boots Disabled: the file's Enabled wins
])
def test_restart_restores_disable_and_rrate_and_sends_nothing(ioc_factory, tmp_path, flavor,
                                                              disable, restored):
    prefix = random_prefix("as")
    first = ioc_factory(_sim(prefix, tmp_path, flavor))
    cs0 = first.controller_prefix(0)
    ca_write(f"{cs0}DISABLE", 0, first.env)
    ca_write(f"{cs0}HOLD", 1, first.env)  # a command: the counter is seen to count
    seen: list = []
    assert poll(lambda: seen.append(_commands_seen(first)) or seen[-1] in ((1, 0), (0, 1)),
                20, interval=0.1), f"the simulator did not count HOLD: {seen[-20:]}"
    ca_write(f"{cs0}RRATE", 123, first.env)
    ca_write(f"{cs0}DISABLE", disable, first.env)
    path = settings_path(tmp_path, cs0)
    wait_for(lambda: path.exists() and f'"DISABLE": "{restored}"' in path.read_text()
             and '"RRATE": 123.0' in path.read_text(), "the saved file", 10, interval=0.05)
    assert first.stop() == 0

    second = ioc_factory(_sim(prefix, tmp_path, flavor))
    assert second.read(f"{cs0}DISABLE").data[0] == restored.encode()
    assert second.read(f"{cs0}RRATE").data[0] == 123
    # the new simulator's datagrams show no command received since it started
    assert [(p.raw[1072], p.raw[1073]) for p in _distinct_packets(second, 3)] == [(0, 0)] * 3
    assert f"DISABLE={restored} RRATE=123.0 " in second.log_text(20000)


@pytest.mark.integration
def test_corrupt_file_gives_the_sentence_and_the_defaults(ioc_factory, tmp_path):
    prefix = random_prefix("as")
    path = settings_path(tmp_path, f"{prefix}CS0:")
    path.write_text('{"format": "ophyd-cs800 autosave", "version": 1, "pre')
    ioc = ioc_factory(_sim(prefix, tmp_path))
    cs0 = ioc.controller_prefix(0)
    assert ioc.read(f"{cs0}DISABLE").data[0] == b"Enabled"
    assert ioc.read(f"{cs0}RRATE").data[0] == 360
    log = ioc.log_text(20000)
    assert (f"autosave of {cs0} refused: {path} is not valid JSON (") in log
    assert "; the defaults are kept and the file is renamed " in log
    assert path.with_name(path.name + ".refused").exists()
    # the IOC keeps serving and saves the next change into a fresh file
    ca_write(f"{cs0}PTIME", 42, ioc.env)
    wait_for(lambda: path.exists() and '"PTIME": 42.0' in path.read_text(), "the new file",
             10, interval=0.05)


@pytest.mark.integration
def test_cs800_ioc_restores_before_serving_and_sends_nothing(ioc_factory, tmp_path):
    """The hardware IOC: a command socket of our own sees no datagram at start."""
    import socket

    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.5)
    try:
        prefix = random_prefix("as")
        settings_path(tmp_path, f"{prefix}CS0:").write_text(
            encode_settings(f"{prefix}CS0:", 411, {**DEFAULTS, "RRATE": 123.0, "CTEMP": 150.0}))
        port = listener.getsockname()[1]
        ioc = ioc_factory(IocProcess(
            ["ioc", "--controller", f"CS0:411@127.0.0.1:{port}", "--status-port", "0",
             "--listen", "127.0.0.1", "--command-host", "127.0.0.1", "--autosave",
             str(tmp_path)], prefix=prefix))
        assert ioc.read(f"{prefix}CS0:RRATE").data[0] == 123
        assert ioc.read(f"{prefix}CS0:CTEMP").data[0] == 150
        with pytest.raises(TimeoutError):
            listener.recvfrom(64)  # nothing was sent to the controller
        ca_write(f"{prefix}CS0:HOLD", 1, ioc.env)  # the socket does hear a command
        assert P.decode_command(listener.recvfrom(64)[0]).command == P.CommandId.HOLD
    finally:
        listener.close()
