""".sft reading, writing, conversion and disassembly (spec §4), and the errors on corrupt files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from soldrv.program import (
    VERSION_2,
    VERSION_3,
    VERSION_4,
    CodeError,
    decode_instruction,
    decode_mode,
    timer_period_seconds,
)
from soldrv.sft import SftError, convert, disassemble, load_sft, read_sft, write_sft

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "sol_examples"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")


def sft_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(CORPUS.glob("ref_v*/*.sft")) + sorted(CORPUS.glob("*.sft"))


@needs_corpus
@pytest.mark.parametrize("path", sft_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_read_write_round_trip_and_dump_layout(path):
    data = path.read_bytes()
    prog = read_sft(data)
    assert write_sft(prog) == data
    assert prog.trailing_bytes == 0
    dis = path.with_name(path.name.replace(".sft", ".dis.txt"))
    if dis.exists():
        assert disassemble(prog) == dis.read_text()


@needs_corpus
def test_example_header_fields():
    prog = load_sft(CORPUS / "ref_v4" / "arp-hwv__TM__A@e81f155.ref.sft")
    assert prog.version == VERSION_4 and prog.command_set == "A"
    assert prog.strings == ["D50\n", "D51\n"]
    assert prog.mode_indices == [0, 5, 25, 45, 65, 85]
    assert prog.modes[1].timer_count == 16384 and prog.modes[5].select == 0
    ins = prog.mode_instructions(1)
    assert [i.name for i in ins][:3] == ["SET_TIME", "DTOA", "STROBES"]
    assert prog.strobe_commands(ins[2]) == [51]


@needs_corpus
@pytest.mark.parametrize(
    "stem",
    [
        "arp-das__drivers_soldrv__laser",
        "arp-das__drivers_soldrv__clo",
        "arp-das__drivers_soldrv__acats",
        "arp-hoxotope__TM__laser@b93458c",
    ],
)
def test_v3_converts_to_the_reference_v4(stem):
    v3 = read_sft((CORPUS / "ref_v3" / f"{stem}.ref.sft").read_bytes())
    v4 = (CORPUS / "ref_v4" / f"{stem}.ref.sft").read_bytes()
    assert write_sft(v3, 4) == v4
    assert write_sft(convert(read_sft(v4), 3)) == write_sft(v3)


def _tiny_v3() -> bytes:
    return bytes.fromhex(
        "00 03 41"  # version, command set
        "01 00 16 00 17 00 08 04 01 00"  # 1 solenoid
        "01 00 40 00 05 00"  # 1 set point
        "01 00 07"  # 1 proxy id (a byte)
        "02 00 ff ff 00 00"  # modes: 0 undefined, 1 at 0
        "09 00 02 00 40 00 16 01 00 17 04"  # 9 code bytes
    )


def test_tiny_file_fields():
    data = _tiny_v3()
    prog = read_sft(data)
    assert prog.proxy_ids == [7] and prog.set_points[0].address == 0x40
    assert prog.defined_modes() == [1] and not prog.is_defined(0) and not prog.is_defined(9)
    assert [i.name for i in prog.mode_instructions(1)] == [
        "SET_TIME",
        "STROBES",
        "WAIT",
        "STROBES",
        "END_MODE",
    ]
    assert prog.command_owner(0x17) == (0, False)


@needs_corpus
@pytest.mark.parametrize(
    "name", ["ref_v3/arp-hwv__TM__A@e81f155.ref.sft", "ref_v4/arp-hwv__TM__A@e81f155.ref.sft"]
)
def test_every_truncation_raises_sft_error(name):
    data = (CORPUS / name).read_bytes()
    for n in range(len(data)):
        with pytest.raises(SftError) as ei:
            read_sft(data[:n])
        msg = str(ei.value)
        assert "truncated" in msg and f"at offset {ei.value.offset}" in msg
        assert ei.value.offset <= n


def test_corrupt_files():
    good = _tiny_v3()
    with pytest.raises(SftError, match=r"version word 0x0500 at offset 0"):
        read_sft(b"\x00\x05" + good[2:])
    with pytest.raises(SftError, match=r"command_set byte 0x5A at offset 2"):
        read_sft(good[:2] + b"Z" + good[3:])
    bad_index = good.replace(bytes.fromhex("ff ff 00 00"), bytes.fromhex("ff ff 20 00"))
    with pytest.raises(SftError, match="mode 1 index 32"):
        read_sft(bad_index)
    v4 = bytearray(write_sft(read_sft(good), 4))
    v4[-2:] = b"\x30\x00"  # offset of string 0 points past the table
    with pytest.raises(SftError, match="NUL-terminated"):
        read_sft(bytes(v4))
    assert read_sft(good + b"xyz").trailing_bytes == 3


def test_version_2_files_are_read():
    data = bytes.fromhex("00 02 01 00 05 00 06 00 08 04 01 00 00 00 01 00 00 00 03 00 00 05 04")
    prog = read_sft(data)
    assert prog.version == VERSION_2 and prog.command_set == "A" and prog.proxy_ids == []
    assert prog.mode_instructions(0)[0].operands == (5,)
    with pytest.raises(CodeError, match="unknown opcode 10"):
        decode_instruction(bytes([10, 1, 1]), 0, VERSION_2)
    assert write_sft(prog, 3)[:3] == bytes.fromhex("00 03 41")
    with pytest.raises(SftError, match="only 0x0300 and 0x0400"):
        write_sft(prog)


def test_decode_errors_are_code_errors():
    with pytest.raises(CodeError, match="unknown opcode 77 at offset 1"):
        decode_instruction(bytes([7, 77]), 1, VERSION_3)
    with pytest.raises(CodeError, match="needs 3 bytes"):
        decode_instruction(bytes([2, 0]), 0, VERSION_3)
    with pytest.raises(CodeError, match="without END_MODE"):
        decode_mode(bytes([1, 1]), 0, VERSION_3)
    mult = decode_instruction(bytes([10, 2, 5, 6]), 0, VERSION_3)
    assert mult.operands == (5, 6) and mult.size == 4


def test_timer_period():
    assert timer_period_seconds(16384) == 1.0
    assert timer_period_seconds(0) == 4.0
    assert timer_period_seconds(5461, runtime_truncation=True) == pytest.approx(0.333007812)
    with pytest.raises(ValueError):
        timer_period_seconds(70000)


@needs_corpus
@pytest.mark.integration
def test_soldump_command(tmp_path):
    exe = shutil.which("soldump", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-c",
                             "from soldrv.cli import main_soldump as m; raise SystemExit(m())"]
    src = CORPUS / "ref_v4" / "arp-das__drivers_soldrv__laser.ref.sft"
    proc = subprocess.run([*cmd, str(src)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout == src.with_name(src.name.replace(".sft", ".dis.txt")).read_text()
    bad = tmp_path / "bad.sft"
    bad.write_bytes(src.read_bytes()[:40])
    proc = subprocess.run([*cmd, str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "truncated" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"soldump: {bad}: truncated .sft")


V2_FILE = bytes.fromhex("00 02 01 00 05 00 06 00 08 04 01 00 00 00 01 00 00 00 03 00 00 05 04")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated .sft: the version word needs 2 byte(s) at offset 0"),
        (b"\x7fELF\x02\x01", "not an .sft file: version word 0x457F at offset 0"),
        (V2_FILE[:-3], "truncated .sft: 3 bytes of mode code needs 3 byte(s) at offset 20"),
        (b"\x00\x04A" + b"\x00\x00" * 5, "truncated .sft: the string table size needs 2"),
    ],
)
def test_soldump_on_bad_files_says_one_sentence(tmp_path, capsys, data, message):
    from soldrv.cli import main_soldump

    path = tmp_path / "bad.sft"
    path.write_bytes(data)
    assert main_soldump([str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"soldump: {path}: {message}")
    assert len(err.strip().splitlines()) == 1


def test_soldump_dumps_a_v2_file(tmp_path, capsys):
    from soldrv.cli import main_soldump

    (tmp_path / "old.sft").write_bytes(V2_FILE)
    assert main_soldump([str(tmp_path / "old")]) == 0  # .sft is added to a bare name
    out, err = capsys.readouterr()
    assert err == ""
    assert out == (
        "version 0x0200  cmd_set 'A'\n"
        "solenoids (1): [open_cmd, close_cmd, status_addr, status_mask]\n"
        "    0: 5 6 0x0408 0x0001\n"
        "set_points (0): [address, value]\n"
        "proxy_ids (0): []\n"
        "mode_indices (1): 0\n"
        "mode_code bytes: 3\n"
        "trailing bytes: 0\n"
        "disassembly (offset opcode operands):\n"
        "mode 0:\n"
        "      0 STROBES 5\n"
        "      2 END_MODE\n"
    )
