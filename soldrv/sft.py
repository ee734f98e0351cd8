"""Reading, writing and disassembling ``.sft`` files (compiled solenoid-cycle programs).

Layout (every word 2 bytes little-endian): version word; command_set byte (v3, v4);
n_solenoids + {open_cmd, close_cmd, status_addr, status_mask} words; n_set_points +
{address, value} words; n_proxy_ids word + one byte per id (v3, v4); n_modes + mode index
words (0xFFFF = undefined); n_code_bytes word + the mode code; v4 only: string table
(word total_bytes, the NUL-terminated strings, word n_strings, n_strings offset words).

* :func:`read_sft` / :func:`load_sft` give a :class:`~soldrv.program.Program` for v2, v3, v4.
* :func:`write_sft` / :func:`save_sft` write v3 or v4 (v3 is the default for programs that do
  not say otherwise); a program can be converted between v3 and v4 (:func:`convert`).
* :func:`disassemble` returns a readable dump (header tables, string table, mode code).

Every malformed input raises :class:`SftError` with a sentence naming what was wrong and the
byte offset.
"""

from __future__ import annotations

import copy
import os

from soldrv.input_files import MAX_SFT_BYTES, read_regular_file
from soldrv.program import (
    OPCODE_NAMES,
    SOL_GOTO,
    SOL_MULT_STROBES,
    SOL_STROBES,
    UNDEFINED_MODE,
    VERSION_3,
    VERSION_4,
    VERSIONS,
    CodeError,
    Instruction,
    Program,
    SetPoint,
    Solenoid,
    dccc_string,
    decode_all,
    decode_instruction,
    parse_dccc_string,
)

__all__ = [
    "SftError",
    "read_sft",
    "load_sft",
    "write_sft",
    "save_sft",
    "convert",
    "disassemble",
    "format_instruction",
    "describe_strings",
]


class SftError(ValueError):
    """A malformed or truncated .sft file, or a program that cannot be written in a format.

    ``offset`` is the byte offset where the problem was found (None when not applicable).
    """

    def __init__(self, message: str, offset: int | None = None):
        super().__init__(message)
        self.offset = offset


class _Reader:
    """Cursor over the bytes of an .sft file that raises SftError on truncation."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise SftError(
                f"truncated .sft: {what} needs {n} byte(s) at offset {self.pos}, "
                f"but the file ends at {len(self.data)}",
                self.pos,
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def word(self, what: str) -> int:
        b = self._take(2, what)
        return b[0] | b[1] << 8

    def byte(self, what: str) -> int:
        return self._take(1, what)[0]

    def raw(self, n: int, what: str) -> bytes:
        return self._take(n, what)


def read_sft(data: bytes) -> Program:
    """Parse the bytes of an .sft file (v2, v3 or v4) into a :class:`Program`.

    Parameters
    ----------
    data : bytes
        The whole content of the .sft file.

    Returns
    -------
    Program
        Names are unknown in an .sft, so solenoid names are "" (see Program.solenoid_label).
        ``Program.modes`` is filled from the code (timer count, select). Bytes after the end
        of the last field are ignored and counted in ``trailing_bytes``.

    Raises
    ------
    SftError
        For an unknown version word, a bad command_set, truncation, a mode index outside the
        code, or a malformed v4 string table.
    """
    r = _Reader(bytes(data))
    version = r.word("the version word")
    if version not in VERSIONS:
        raise SftError(
            f"not an .sft file: version word 0x{version:04X} at offset 0 is not "
            "0x0200, 0x0300 or 0x0400",
            0,
        )
    prog = Program(version=version)
    if version >= VERSION_3:
        at = r.pos
        cs = r.byte("the command_set byte")
        if not ord("A") <= cs <= ord("J"):
            raise SftError(f"command_set byte 0x{cs:02X} at offset {at} is not 'A'..'J'", at)
        prog.command_set = chr(cs)
    n = r.word("n_solenoids")
    for i in range(n):
        vals = [r.word(f"solenoid {i} of {n}") for _ in range(4)]
        prog.solenoids.append(Solenoid(*vals))
    n = r.word("n_set_points")
    for i in range(n):
        addr = r.word(f"set point {i} of {n}")
        prog.set_points.append(SetPoint(addr, r.word(f"set point {i} of {n}")))
    if version >= VERSION_3:
        n = r.word("n_proxy_ids")
        prog.proxy_ids = list(r.raw(n, f"{n} proxy ids"))
    n = r.word("n_modes")
    index_at = r.pos
    prog.mode_indices = [r.word(f"mode index {i} of {n}") for i in range(n)]
    n_code = r.word("n_code_bytes")
    prog.code = r.raw(n_code, f"{n_code} bytes of mode code")
    for m, idx in enumerate(prog.mode_indices):
        if idx != UNDEFINED_MODE and idx >= n_code:
            raise SftError(
                f"mode {m} index {idx} (at offset {index_at + 2 * m}) is outside the "
                f"{n_code}-byte mode code",
                index_at + 2 * m,
            )
    if version >= VERSION_4:
        prog.strings = _read_strings(r)
    prog.trailing_bytes = len(r.data) - r.pos
    prog.fill_mode_info()
    return prog


def _read_strings(r: _Reader) -> list[str]:
    total = r.word("the string table size")
    start = r.pos
    blob = r.raw(total, f"{total} bytes of string table")
    n = r.word("n_strings")
    strings = []
    for i in range(n):
        at = r.pos
        off = r.word(f"string offset {i} of {n}")
        end = blob.find(b"\0", off) if off < total else -1
        if end < 0:
            raise SftError(
                f"string {i} offset {off} (at file offset {at}) does not point to a "
                f"NUL-terminated string inside the {total}-byte table at offset {start}",
                at,
            )
        strings.append(blob[off:end].decode("latin-1"))
    return strings


def load_sft(path: str | os.PathLike[str]) -> Program:
    """Read an .sft file from ``path`` (see :func:`read_sft`).

    Parameters
    ----------
    path : str or os.PathLike
        The .sft file.

    Returns
    -------
    Program
        The program, with ``source`` set to ``[path]``.

    Raises
    ------
    OSError
        If the file cannot be read, is not a regular file (a FIFO or device is refused at
        once) or is larger than :data:`~soldrv.input_files.MAX_SFT_BYTES`.
    SftError
        If its content is malformed (the message then starts with the file name).
    """
    data = read_regular_file(path, MAX_SFT_BYTES, "an .sft file")
    try:
        prog = read_sft(data)
    except SftError as e:
        raise SftError(f"{os.fspath(path)}: {e}", e.offset) from None
    prog.source = [os.fspath(path)]
    return prog


def _w(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise SftError(f"{what} = {value} does not fit in a 16-bit word")
    return bytes((value & 0xFF, value >> 8))


def write_sft(program: Program, version: int | None = None) -> bytes:
    """Return the .sft bytes of ``program``.

    Parameters
    ----------
    program : Program
        The program to encode.
    version : int or None, optional
        3, 4, 0x0300 or 0x0400 (None: the program's own version, which must be v3 or v4). If
        it differs from ``program.version`` the code is converted first (:func:`convert`).

    Returns
    -------
    bytes
        The content of the .sft file.

    Raises
    ------
    SftError
        For v2 output, a value that does not fit its field, or code that cannot be converted.
    """
    v = program.version if version is None else _norm_version(version)
    if v not in (VERSION_3, VERSION_4):
        raise SftError(f"cannot write version 0x{v:04X}: only 0x0300 and 0x0400 are written")
    if v != program.version:
        program = convert(program, v)
    out = bytearray(_w(v, "version"))
    cs = program.command_set
    if len(cs) != 1 or not "A" <= cs <= "J":
        raise SftError(f"command_set {cs!r} is not one of 'A'..'J'")
    out.append(ord(cs))
    out += _w(len(program.solenoids), "n_solenoids")
    for s in program.solenoids:
        for name in ("open_cmd", "close_cmd", "status_addr", "status_mask"):
            out += _w(getattr(s, name), name)
    out += _w(len(program.set_points), "n_set_points")
    for sp in program.set_points:
        out += _w(sp.address, "set point address") + _w(sp.value, "set point value")
    out += _w(len(program.proxy_ids), "n_proxy_ids")
    for pid in program.proxy_ids:
        if not 0 <= pid <= 255:
            raise SftError(f"proxy id {pid} does not fit in a byte")
        out.append(pid)
    out += _w(len(program.mode_indices), "n_modes")
    for idx in program.mode_indices:
        out += _w(idx, "mode index")
    out += _w(len(program.code), "n_code_bytes") + bytes(program.code)
    if v == VERSION_4:
        blob = bytearray()
        offsets = []
        for string in program.strings:
            offsets.append(len(blob))
            blob += string.encode("latin-1") + b"\0"
        out += _w(len(blob), "string table size") + blob + _w(len(offsets), "n_strings")
        for off in offsets:
            out += _w(off, "string offset")
    return bytes(out)


def save_sft(program: Program, path: str | os.PathLike[str], version: int | None = None) -> None:
    """Write ``program`` to ``path`` (see :func:`write_sft`).

    Parameters
    ----------
    program : Program
        The program to write.
    path : str or os.PathLike
        The .sft file to create or replace.
    version : int or None, optional
        The .sft version, as for :func:`write_sft`.

    Raises
    ------
    OSError
        If the file cannot be written.
    SftError
        As for :func:`write_sft`.
    """
    data = write_sft(program, version)
    with open(path, "wb") as f:
        f.write(data)


def _norm_version(version: int) -> int:
    if version in (2, 3, 4):
        return version << 8
    if version in VERSIONS:
        return version
    raise SftError(f"unknown .sft version {version!r}: use 3 or 4")


def convert(program: Program, version: int) -> Program:
    """Return a copy of ``program`` re-encoded for ``version`` (3/4 or 0x0300/0x0400).

    STROBES and MULT_STROBES operands are translated between command bytes (v3) and the v4
    string table (built in order of first use, as the reference compiler does); GOTO
    targets and mode indices are relocated.

    Parameters
    ----------
    program : Program
        The program to convert (left unchanged).
    version : int
        3, 4, 0x0300 or 0x0400.

    Returns
    -------
    Program
        A new program in ``version`` (a deep copy when it is already in that version).

    Raises
    ------
    SftError
        If the code does not decode, a command does not fit a v3 byte, or the v4 table would
        exceed 256 strings.
    """
    v = _norm_version(version)
    if v == program.version:
        return copy.deepcopy(program)
    if v not in (VERSION_3, VERSION_4):
        raise SftError(f"cannot convert to version 0x{v:04X}")
    try:
        instrs = decode_all(program.code, program.version)
    except CodeError as e:
        raise SftError(f"cannot convert: {e}") from None
    strings: list[str] = []
    pieces: list[tuple[Instruction, bytearray]] = []
    for ins in instrs:
        if ins.opcode in (SOL_STROBES, SOL_MULT_STROBES):
            try:
                cmds = program.strobe_commands(ins)
            except ValueError as e:
                raise SftError(f"cannot convert: {e}") from None
            op = SOL_STROBES if len(cmds) == 1 else SOL_MULT_STROBES
            if v == VERSION_4:
                text = dccc_string(cmds)
                if text not in strings:
                    strings.append(text)
                idx = strings.index(text)
                if idx > 255:
                    raise SftError("cannot convert: more than 256 strings in the v4 table")
                body = bytearray((op, idx))
            else:
                if any(not 0 <= c <= 255 for c in cmds) or len(cmds) > 255:
                    raise SftError(f"cannot convert: command(s) {cmds} do not fit v3 bytes")
                body = bytearray((op, cmds[0])) if op == SOL_STROBES else bytearray(
                    (op, len(cmds), *cmds)
                )
        else:
            body = bytearray(program.code[ins.offset : ins.next_offset])
        pieces.append((ins, body))
    relocate: dict[int, int] = {}
    pos = 0
    for ins, body in pieces:
        relocate[ins.offset] = pos
        pos += len(body)
    relocate[len(program.code)] = pos
    code = bytearray()
    for ins, body in pieces:
        if ins.opcode == SOL_GOTO:
            target = relocate.get(ins.operands[0])
            if target is None:
                raise SftError(f"cannot convert: GOTO at {ins.offset} jumps into an instruction")
            body = bytearray((SOL_GOTO, target & 0xFF, target >> 8))
        code += body
    new = copy.deepcopy(program)
    new.version = v
    new.code = bytes(code)
    new.strings = strings if v == VERSION_4 else []
    new.mode_indices = [
        i if i == UNDEFINED_MODE else relocate.get(i, i) for i in program.mode_indices
    ]
    for info in new.modes.values():
        info.offset = relocate.get(info.offset, info.offset)
    return new


# --- disassembly -----------------------------------------------------------------------------


def format_instruction(program: Program, ins: Instruction) -> str:
    r"""One disassembly line (without offset) for ``ins``, e.g. ``STROBES 0 'D50\n'``."""
    name = OPCODE_NAMES.get(ins.opcode, f"OP{ins.opcode}")
    if ins.opcode in (SOL_STROBES, SOL_MULT_STROBES) and program.version >= VERSION_4:
        idx = ins.operands[0]
        text = repr(program.strings[idx]) if idx < len(program.strings) else "<bad index>"
        return f"{name} {idx} {text}"
    if ins.opcode == SOL_MULT_STROBES:
        return f"{name} n={len(ins.operands)} [{', '.join(map(str, ins.operands))}]"
    return " ".join([name, *map(str, ins.operands)])


def disassemble(program: Program) -> str:
    """Return a readable dump of ``program``: header tables, string table, mode code.

    The layout follows the corpus ``*.ref.dis.txt`` files. Undecodable bytes are shown as
    ``?? 0xNN`` rather than raising.
    """
    p = program
    lines = [f"version 0x{p.version:04X}  cmd_set '{p.command_set}'"]
    lines.append(f"solenoids ({len(p.solenoids)}): [open_cmd, close_cmd, status_addr, status_mask]")
    for i, s in enumerate(p.solenoids):
        extra = f"   {s.name}" if s.name else ""
        lines.append(
            f"{i:5d}: {s.open_cmd} {s.close_cmd} 0x{s.status_addr:04X} 0x{s.status_mask:04X}"
            + extra
        )
    lines.append(f"set_points ({len(p.set_points)}): [address, value]")
    for i, sp in enumerate(p.set_points):
        extra = f"   {sp.dtoa}:{sp.char}" if sp.dtoa else ""
        lines.append(f"{i:5d}: 0x{sp.address:04X} {sp.value}" + extra)
    lines.append(f"proxy_ids ({len(p.proxy_ids)}): [{', '.join(map(str, p.proxy_ids))}]")
    lines.append(
        f"mode_indices ({len(p.mode_indices)}): "
        + " ".join("-" if i == UNDEFINED_MODE else str(i) for i in p.mode_indices)
    )
    lines.append(f"mode_code bytes: {len(p.code)}")
    if p.version >= VERSION_4:
        lines.append(f"string table ({len(p.strings)}):")
        for i, string in enumerate(p.strings):
            lines.append(f"{i:5d}: {string!r}")
    lines.append(f"trailing bytes: {p.trailing_bytes}")
    lines.append("disassembly (offset opcode operands):")
    starts: dict[int, list[int]] = {}
    for m, idx in enumerate(p.mode_indices):
        if idx != UNDEFINED_MODE:
            starts.setdefault(idx, []).append(m)
    offset = 0
    code = p.code
    while offset < len(code):
        for m in starts.get(offset, []):
            lines.append(f"mode {m}:")
        try:
            ins = decode_instruction(code, offset, p.version)
        except CodeError:
            lines.append(f"{offset:7d} ?? 0x{code[offset]:02X}")
            offset += 1
            continue
        lines.append(f"{offset:7d} {format_instruction(p, ins)}")
        offset = ins.next_offset
    return "\n".join(lines) + "\n"


def describe_strings(program: Program) -> list[list[int]]:
    """Return the command lists of every v4 string (ValueError on a malformed string)."""
    return [parse_dccc_string(s) for s in program.strings]


