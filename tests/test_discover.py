"""Controller discovery: the identification codec, the simulator's announcements, cs800-discover.

Unit tests of the pure codec and of the collector, then real UDP on loopback: simulated
controllers (in-process and ``cs800-sim``) announcing themselves to free ports, found by
:func:`sim_ioc.discover.discover` and by ``python -m sim_ioc.discover`` as a subprocess.
"""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polling import wait_for

from ophyd_cs800 import protocol as P
from sim_ioc import discover as D
from sim_ioc.clock import ScaledClock
from sim_ioc.controller import SimulatedCS800
from sim_ioc.process import free_port
from sim_ioc.status_server import ephemeral_port_range, open_status_socket
from sim_ioc.udp_sim import SimulatorServer

REPO = Path(__file__).resolve().parents[1]
#: The dump of a real CS800 at APS 19-ID (spec section 1.1): no NetBIOS name, MAC as text.
APS_DUMP = b"\xff" * 15 + b"\r\n" + b"00-00-0C-01-01-AB"
MAC_RE = re.compile(r"^[0-9A-F]{2}(-[0-9A-F]{2}){5}$")
SUBPROCESS_TIMEOUT = 60.0  # generous: the machine is shared


# ------------------------------------------------------------------------------ codec
def test_real_aps_dump_decodes_to_no_name_and_its_mac():
    assert len(APS_DUMP) == 34
    ident = P.decode_identification(APS_DUMP)
    assert ident == P.Identification(name=None, mac="00-00-0C-01-01-AB")
    assert P.controller_number_from_mac(ident.mac) == 427  # 0x01AB, the 19-ID controller
    assert P.encode_identification("00-00-0c-01-01-ab") == APS_DUMP


def test_netbios_name_in_the_first_16_bytes_as_oxford_words_it():
    data = b"CRYO 19ID".ljust(15) + b"\x00" + b"\n" + b"00-00-0c-01-04-bd"
    assert len(data) == 34
    assert P.decode_identification(data) == P.Identification("CRYO 19ID", "00-00-0C-01-04-BD")


def test_longer_datagram_takes_name_from_the_start_and_mac_from_the_end():
    data = b"CS800" + b"\xff" * 10 + b"\r\n" + b"\x00" * 10 + b"00-00-0C-01-01-9B"
    assert P.decode_identification(data) == P.Identification("CS800", "00-00-0C-01-01-9B")


def test_mac_words_of_the_bcsb_capture():
    assert P.mac_from_words(0x0000, 0x0C01, 0x04BD) == "00-00-0C-01-04-BD"
    assert P.mac_to_words("00:00:0c:01:04:bd") == (0x0000, 0x0C01, 0x04BD)
    assert P.controller_number_from_mac("00-00-0C-01-04-BD") == 1213
    assert P.mac_for_controller(1213) == "00-00-0C-01-04-BD"
    assert P.mac_for_controller(427) == "00-00-0C-01-01-AB"
    assert P.mac_for_controller(0) == "00-00-0C-01-00-00"
    assert P.mac_for_controller(65535) == "00-00-0C-01-FF-FF"
    for bad in (True, -1, 65536, 411.0):
        with pytest.raises(ValueError, match="controller number must be an integer 0..65535"):
            P.mac_for_controller(bad)


@pytest.mark.parametrize("name", [None, "", "A", "CRYO-19ID", "MY CRYO", "ABCDEFGHIJKLMNO"])
@pytest.mark.parametrize("mac", ["00-00-0C-01-01-AB", "a0:b1:c2:d3:e4:f5"])
def test_encode_decode_round_trip(name, mac):
    data = P.encode_identification(mac, name)
    assert len(data) == 34 and data[15:17] == b"\r\n"
    assert data[:15] == (name or "").encode().ljust(15, b"\xff")
    assert P.decode_identification(data) == P.Identification(
        name or None, mac.replace(":", "-").upper())


@pytest.mark.parametrize(("data", "name"), [
    (b"\x80" + APS_DUMP[1:], "\\x80"),
    (b"A\x01B" + APS_DUMP[3:], "A\\x01B"),
    (b"AB\xffCD" + APS_DUMP[5:], "AB\\xffCD"),
    (b"CRYO-19ID\x00" + APS_DUMP[10:], "CRYO-19ID"),
])
def test_odd_name_bytes_are_shown_escaped_and_never_lose_the_mac(data, name):
    assert P.decode_identification(data) == P.Identification(name, "00-00-0C-01-01-AB")


@pytest.mark.parametrize("tail", [b"\r\n", b"\x00", b"\xff\xff", b" \r\n\x00"])
def test_trailing_padding_after_the_mac_is_ignored(tail):
    assert P.decode_identification(APS_DUMP + tail) == P.Identification(
        None, "00-00-0C-01-01-AB")


def test_the_33_byte_layout_of_oxfords_wording_decodes():
    """Oxford: the NetBIOS name in the first 16 bytes, the MAC after it (no CR LF)."""
    data = b"CRYO-19ID".ljust(16, b" ") + b"00-00-0C-01-01-AB"
    assert len(data) == P.MIN_IDENTIFICATION_LEN == 33
    assert P.decode_identification(data) == P.Identification("CRYO-19ID", "00-00-0C-01-01-AB")
    assert P.decode_identification(b"\xff" * 16 + b"00-00-0C-01-01-AB").name is None


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        (b"", ["too short: 0 bytes, need at least 33", "found nothing"]),
        (APS_DUMP[:-2], ["too short: 32 bytes", "FF FF FF", "0D 0A 30 30 2D"]),
        (APS_DUMP[:-1] + b"G", ["bad MAC address", "six dash-separated hex pairs",
                                "41 47", "b'00-00-0C-01-01-AG'"]),
        (b"\xff" * 17 + b"00:00:0C:01:01:AB", ["bad MAC address", "3A", "00:00:0C:01:01:AB"]),
        (b"\xff" * 17 + b"000-0C-01-01-AB-0", ["bad MAC address", "000-0C-01-01-AB-0"]),
        (b"\xff" * 17 + b"00-00-0C-01-01-A\x80", ["bad MAC address", "41 80"]),
        (b"\xff" * 17 + b" 0-00-0C-01-01-AB", ["bad MAC address", "20 30 2D"]),
        (APS_DUMP[:20] + b"\xff" * 20, ["too short: 40 bytes (20 without trailing padding)"]),
    ],
)
def test_malformed_identification_names_the_problem_and_the_bytes(data, fragments):
    with pytest.raises(P.ProtocolError) as err:
        P.decode_identification(data)
    assert err.value.reason == "identification"
    assert isinstance(err.value, ValueError)
    for fragment in fragments:
        assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("mac", "name", "fragment"),
    [
        ("00-00-0C-01-01-AB", "ABCDEFGHIJKLMNOP", "at most 15 printable ASCII"),
        ("00-00-0C-01-01-AB", "Kryo-\u00c4", "at most 15 printable ASCII"),
        ("00-00-0C-01-01-AB", "tab\there", "at most 15 printable ASCII"),
        ("00-00-0C-01-01-AB", " lead", "without leading or trailing spaces"),
        ("00-00-0C-01-01", None, "six hex pairs"),
        ("00-00-0C-01-01-AG", None, "six hex pairs"),
        ("00-00:0C-01-01-AB", None, "six hex pairs"),
    ],
)
def test_encode_identification_refuses_what_cannot_be_sent(mac, name, fragment):
    with pytest.raises(ValueError, match=fragment):
        P.encode_identification(mac, name)


@pytest.mark.parametrize("cid", [-1, 65536, "411", 4.0])
def test_mac_for_controller_refuses_numbers_that_do_not_fit_two_bytes(cid):
    with pytest.raises(ValueError, match="0..65535"):
        P.mac_for_controller(cid)


def test_mac_helpers_refuse_bad_input():
    with pytest.raises(ValueError, match="six hex pairs"):
        P.controller_number_from_mac("not a mac")
    with pytest.raises(ValueError, match="16-bit word"):
        P.mac_from_words(0, 0x10000, 1)


_NAME_FIELDS = st.one_of(
    st.binary(min_size=16, max_size=18),
    st.text(alphabet=[chr(c) for c in (*range(0x20, 0x7F), 0x00, 0x0D, 0x0A, 0x80, 0xFF)],
            min_size=16, max_size=18).map(lambda t: t.encode("latin-1")),
)
_MAC_FIELDS = st.tuples(
    st.lists(st.text(alphabet="0123456789abcdefABCDEFG", min_size=2, max_size=2),
             min_size=6, max_size=6),
    st.sampled_from("-:"),
).map(lambda t: t[1].join(t[0]).encode())


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=80), st.tuples(_NAME_FIELDS, _MAC_FIELDS).map(b"".join)))
def test_random_bytes_give_an_identification_or_a_protocol_error(data):
    try:
        ident = P.decode_identification(data)
    except P.ProtocolError as exc:
        assert exc.reason == "identification" and str(exc)
        return
    assert MAC_RE.match(ident.mac)
    assert ident.name is None or (ident.name.isprintable() and ident.name.isascii()
                                  and ident.name == ident.name.strip())


@given(st.integers(0, 65535),
       st.text(alphabet=[chr(c) for c in range(0x20, 0x7F)], max_size=15)
       .filter(lambda s: s == s.strip(" ")))
def test_generated_controllers_round_trip(cid, name):
    mac = P.mac_for_controller(cid)
    assert P.controller_number_from_mac(mac) == cid
    assert P.mac_from_words(*P.mac_to_words(mac)) == mac
    assert P.decode_identification(P.encode_identification(mac, name)) == P.Identification(
        name or None, mac)


# ------------------------------------------------------------------------------ simulator model
@pytest.mark.parametrize("layout", ["928", "long"])
def test_simulated_controller_sends_its_mac_in_1311_to_1313(layout):
    clock = ScaledClock(1.0)
    ctl = SimulatedCS800(427, clock, layout=layout)
    assert ctl.mac == "00-00-0C-01-01-AB" and ctl.name is None
    assert P.decode_identification(ctl.identification_datagram()) == P.Identification(
        None, "00-00-0C-01-01-AB")
    pkt = P.decode_status(ctl.status_datagram())
    assert [pkt.get_raw(i) for i in (1311, 1312, 1313)] == [0x0000, 0x0C01, 427]
    other = SimulatedCS800(411, clock, layout=layout, mac="02:00:5e:10:20:30", name="CRYO1")
    pkt = P.decode_status(other.status_datagram())
    assert [pkt.get_raw(i) for i in (1311, 1312, 1313)] == [0x0200, 0x5E10, 0x2030]
    assert P.decode_identification(other.identification_datagram()) == P.Identification(
        "CRYO1", "02-00-5E-10-20-30")


@pytest.mark.parametrize(("kw", "fragment"), [
    ({"mac": "00-00-0C-01"}, "six hex pairs"),
    ({"name": "a name that is too long"}, "at most 15"),
])
def test_simulated_controller_refuses_a_bad_mac_or_name(kw, fragment):
    with pytest.raises(ValueError, match=fragment):
        SimulatedCS800(411, ScaledClock(1.0), **kw)


def test_simulator_server_refuses_a_bad_id_to():
    ctl = SimulatedCS800(411, ScaledClock(1.0))
    with pytest.raises(ValueError, match="id_to must be"):
        SimulatorServer([ctl], id_to=("127.0.0.1", 0))


# ------------------------------------------------------------------------------ collector
def _status(cid, *, firmware=115, mode=P.RunMode.RUN, phase=P.Phase.RAMP, temp_ck=18742,
            mac_words=None):
    words = mac_words if mac_words is not None else P.mac_to_words(P.mac_for_controller(cid))
    raw = {1004: firmware, 1028: cid, 1051: temp_ck, 1053: int(mode), 1054: int(phase),
           1311: words[0], 1312: words[1], 1313: words[2]}
    return P.encode_status(raw)


def test_collector_pairs_identification_and_status_of_real_units():
    d = D.Discovery()
    # unit A: status and identification from different source ports; matched by MAC
    assert d.status_datagram(_status(411), ("192.168.0.144", 30304))
    assert d.identification_datagram(P.encode_identification(P.mac_for_controller(411), "CS-A"),
                                      ("192.168.0.144", 30303))
    d.status_datagram(_status(411, temp_ck=18700), ("192.168.0.144", 30304))
    # unit B: no MAC words in its status (0xFFFE): the only controller of its IP
    d.status_datagram(_status(369, mode=P.RunMode.STARTUP_OK, phase=P.Phase.HOLD,
                              mac_words=(P.NOT_AVAILABLE,) * 3), ("192.168.0.10", 1024))
    d.identification_datagram(APS_DUMP, ("192.168.0.10", 1025))
    # unit C: heard only on the identification port
    d.identification_datagram(P.encode_identification("00-00-0C-01-04-BD"), ("192.168.0.9", 7))
    # malformed datagrams on both ports
    assert not d.status_datagram(b"\xaa\xab\x00", ("192.168.0.50", 1))
    corrupt = bytearray(_status(1))
    corrupt[-4] ^= 0xFF  # checksum high byte
    assert not d.status_datagram(bytes(corrupt), ("192.168.0.50", 1))
    assert not d.identification_datagram(b"hello", ("192.168.0.51", 2))
    found = d.found()
    assert [f.ip for f in found] == ["192.168.0.9", "192.168.0.10", "192.168.0.144"]
    c, b, a = found
    assert a == D.Found(
        ip="192.168.0.144", port=30304, controller=411, controller_from_mac=411,
        mac="00-00-0C-01-01-9B", name="CS-A", firmware=115, run_mode="Run", phase="Ramp",
        temp_k=187.0, status_bytes=8 + 4 * 8, status_datagrams=2, id_datagrams=1)
    assert (b.controller, b.mac, b.controller_from_mac, b.run_mode, b.phase) == (
        369, "00-00-0C-01-01-AB", 427, "Startup OK", None)  # the MAC hint is only a hint
    assert (c.controller, c.controller_guess, c.mac, c.status_datagrams, c.id_datagrams) == (
        None, 1213, "00-00-0C-01-04-BD", 0, 1)
    assert d.malformed == {"status short": 1, "status checksum": 1, "identification": 1}
    assert d.malformed_from == {"192.168.0.50": 2, "192.168.0.51": 1}
    assert d.last_malformed.startswith("identification datagram from 192.168.0.51:2: "
                                       "identification datagram too short: 5 bytes")
    assert D.ioc_command(found) == (
        "cs800-ioc --prefix xxx: --controller CS0:1213@192.168.0.9 "
        "--controller CS1:369@192.168.0.10 --controller CS2:411@192.168.0.144")
    table = D.format_table(found).splitlines()
    assert table[0].split()[:3] == ["IP", "CTRL", "MAC"]
    assert table[1].split() == ["192.168.0.9", "1213?", "00-00-0C-01-04-BD", "-", "-", "-",
                                "-", "-", "0", "1"]
    assert table[3].split() == ["192.168.0.144", "411", "00-00-0C-01-01-9B", "CS-A", "115",
                                "Run", "Ramp", "187.00", "K", "2", "1"]


def test_collector_keeps_simulators_behind_one_ip_apart():
    d = D.Discovery()
    for cid, port in ((412, 40002), (411, 40001)):
        d.status_datagram(_status(cid, mac_words=(P.NOT_AVAILABLE,) * 3), ("127.0.0.1", port))
        d.identification_datagram(P.encode_identification(P.mac_for_controller(cid)),
                                  ("127.0.0.1", port))
    found = d.found()
    assert [(f.controller, f.port, f.mac) for f in found] == [
        (411, 40001, "00-00-0C-01-01-9B"), (412, 40002, "00-00-0C-01-01-9C")]
    assert D.ioc_command(found, "bl:") == (
        "cs800-ioc --prefix bl: --controller CS0:411@127.0.0.1:40001 "
        "--controller CS1:412@127.0.0.1:40002")


def test_collector_survives_a_codec_bug(monkeypatch):
    def broken(data):
        raise RuntimeError("codec bug")

    d = D.Discovery()
    monkeypatch.setattr(P, "decode_status", broken)
    assert not d.status_datagram(_status(411), ("10.0.0.1", 1))
    assert d.malformed == {"status RuntimeError": 1} and d.found() == []


# ------------------------------------------------------------------------------ UDP on loopback
def _two_free_ports():
    first = free_port()
    second = first
    while second == first:
        second = free_port()
    return first, second


def _junk_sender(ports, stop):
    """Send malformed datagrams to both ports every 50 ms until ``stop`` is set (bounded)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(2000):
            if stop.wait(0.05):
                return
            s.sendto(b"\xaa\xab\x00\x04\x01\x02\x03\x04\x00\x00\xab\xaa", ("127.0.0.1", ports[0]))
            s.sendto(b"\xff" * 17 + b"not-a-mac-address", ("127.0.0.1", ports[1]))


@pytest.mark.integration
def test_discover_finds_two_simulated_controllers_despite_junk():
    status_port, id_port = _two_free_ports()

    async def main():
        clock = ScaledClock(50.0)
        ctls = [SimulatedCS800(411, clock, seed=1),
                SimulatedCS800(412, clock, seed=2, layout="long", firmware=153, name="CRYO2")]
        server = SimulatorServer(ctls, status_to=("127.0.0.1", status_port),
                                 id_to=("127.0.0.1", id_port))
        collector = D.Discovery()
        stop = threading.Event()
        async with server:
            junk = asyncio.create_task(asyncio.to_thread(_junk_sender, (status_port, id_port),
                                                         stop))
            try:
                found = await asyncio.to_thread(
                    D.discover, listen="127.0.0.1", status_port=status_port, id_port=id_port,
                    duration=1.5, collector=collector)
            finally:
                stop.set()
                await junk
            ports = server.command_ports
            assert all(n >= 1 for n in server.id_sent.values())
        return found, collector, ports

    found, collector, ports = asyncio.run(main())
    assert [(f.ip, f.port, f.controller, f.mac, f.name, f.firmware, f.status_bytes)
            for f in found] == [
        ("127.0.0.1", ports[411], 411, "00-00-0C-01-01-9B", None, 115, 928),
        ("127.0.0.1", ports[412], 412, "00-00-0C-01-01-9C", "CRYO2", 153, 1236),
    ]
    for f in found:
        assert f.status_datagrams >= 2 and f.id_datagrams >= 1
        assert f.run_mode in P.RUN_MODE_STRINGS and 250.0 < f.temp_k < 330.0
    assert D.ioc_command(found) == (
        f"cs800-ioc --prefix xxx: --controller CS0:411@127.0.0.1:{ports[411]} "
        f"--controller CS1:412@127.0.0.1:{ports[412]}")
    assert collector.malformed["status checksum"] >= 1
    assert collector.malformed["identification"] >= 1
    assert collector.malformed_from["127.0.0.1"] == collector.malformed_total


@pytest.mark.integration
def test_listener_shares_the_status_port_with_an_ioc_socket():
    ioc = open_status_socket("127.0.0.1", 0)
    try:
        with D.Listener("127.0.0.1", ioc.getsockname()[1], 0) as listener:
            assert listener.status_port == ioc.getsockname()[1]
            low, _ = ephemeral_port_range()
            assert 0 < listener.id_port < low  # port 0: chosen below the ephemeral range
    finally:
        ioc.close()


def _run_cli(*args, timeout=SUBPROCESS_TIMEOUT):
    return subprocess.run([sys.executable, "-m", "sim_ioc.discover", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.integration
def test_cli_against_cs800_sim_subprocess(tmp_path):
    status_port, id_port = _two_free_ports()
    log = tmp_path / "sim.log"
    with log.open("w") as out:
        sim = subprocess.Popen(
            [sys.executable, "-m", "sim_ioc.sim_cli", "--cid", "411", "--cid", "412",
             "--status-to", f"127.0.0.1:{status_port}", "--id-to", f"127.0.0.1:{id_port}",
             "--command-port", "0", "--speed", "50"],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        text = wait_for(lambda: "controller 412 -> commands" in log.read_text()
                        and log.read_text(), "cs800-sim to start", 30.0)
        assert f"identification to 127.0.0.1:{id_port}" in text
        ports = {int(c): int(p) for c, p in re.findall(r"controller (\d+) -> commands on "
                                                       r"127\.0\.0\.1:(\d+)", text)}
        common = ["--listen", "127.0.0.1", "--status-port", str(status_port),
                  "--id-port", str(id_port), "--time", "1"]
        res = _run_cli(*common, "--json")
        assert res.returncode == 0, res.stderr
        rows = json.loads(res.stdout)
        assert [(r["controller"], r["port"], r["mac"], r["firmware"]) for r in rows] == [
            (411, ports[411], "00-00-0C-01-01-9B", 115),
            (412, ports[412], "00-00-0C-01-01-9C", 115)]
        assert all(r["id_datagrams"] >= 1 and r["status_datagrams"] >= 1 for r in rows)
        assert f"UDP {status_port} (status) and {id_port} (identification)" in res.stderr
        res = _run_cli(*common, "--prefix", "bl1:")
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert lines[0].split()[:4] == ["IP", "CTRL", "MAC", "NAME"]
        assert lines[1].split()[:3] == ["127.0.0.1", "411", "00-00-0C-01-01-9B"]
        assert lines[-1] == (f"cs800-ioc --prefix bl1: --controller CS0:411@127.0.0.1:"
                             f"{ports[411]} --controller CS1:412@127.0.0.1:{ports[412]}")
    finally:
        os.killpg(sim.pid, signal.SIGTERM)
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(sim.pid, signal.SIGKILL)
            sim.wait(10)


@pytest.mark.integration
def test_cli_exits_1_with_a_sentence_when_nothing_is_heard():
    status_port, id_port = _two_free_ports()
    res = _run_cli("--listen", "127.0.0.1", "--status-port", str(status_port),
                   "--id-port", str(id_port), "--time", "0.5", "--json")
    assert res.returncode == 1
    assert json.loads(res.stdout) == []
    last = res.stderr.strip().splitlines()[-1]
    assert last == (f"cs800-discover: no CS800 heard on UDP {status_port}/{id_port} in 0.5 s "
                    f"on 127.0.0.1; is this host on the controllers' subnet, and does the "
                    f"firewall let UDP {id_port} and {status_port} in?")


@pytest.mark.integration
def test_main_with_port_0_prints_the_ports_it_bound(capsys):
    assert D.main(["--listen", "127.0.0.1", "--status-port", "0", "--id-port", "0",
                   "--time", "0.2"]) == 1
    err = capsys.readouterr().err
    m = re.search(r"UDP (\d+) \(status\) and (\d+) \(identification\)", err)
    assert m and 0 not in {int(m[1]), int(m[2])} and m[1] != m[2]
    assert f"no CS800 heard on UDP {m[1]}/{m[2]} in 0.2 s" in err


@pytest.mark.integration
def test_main_exits_1_with_one_line_when_a_port_is_taken(capsys):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))  # exclusive: no SO_REUSEADDR
        port = taken.getsockname()[1]
        assert D.main(["--listen", "127.0.0.1", "--id-port", str(port), "--status-port", "0",
                       "--time", "0.2"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        f"cs800-discover: cannot bind the CS800 identification socket to 127.0.0.1:{port}: "
        f"Address already in use"]


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--time", "-1"], "time must be a number of seconds > 0"),
    (["--time", "soon"], "time must be a number of seconds > 0"),
    (["--listen", "my-host"], "expected an IPv4 address"),
    (["--status-port", "70000"], "port must be 0..65535"),
    (["--status-port", "5000", "--id-port", "5000"], "must differ"),
    (["--frobnicate"], "unrecognized arguments"),
])
def test_main_bad_arguments_exit_2(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        D.main(argv)
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err
