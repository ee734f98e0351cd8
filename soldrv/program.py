"""The compiled solenoid-cycle program: the data model shared by solfmt, .sft I/O and the runner.

A :class:`Program` holds exactly what an ``.sft`` file stores (version, command set, solenoid
commands, D/A set points, proxy ids, mode indices, mode code and, for v4, the DCCC string table)
plus optional names and descriptions that only a ``.sol`` source can provide (solenoid names,
DtoA and proxy names with their set-point characters, per-mode resolution and description).

The mode code is a byte array of instructions (opcodes below). :func:`decode_instruction`
decodes one instruction at an offset; :func:`decode_mode` decodes a mode from its entry offset
to its ``END_MODE``; :meth:`Program.strobe_commands` turns a STROBES / MULT_STROBES
instruction into the list of discrete command numbers for every format version.

Timing: the timer base is 16384 Hz. ``SET_TIME c`` starts a periodic timer of ``c / 16384``
seconds; ``c == 0`` means 4 s (:func:`timer_period_seconds`).
"""

from __future__ import annotations

import re
from collections import namedtuple

# --- format versions -------------------------------------------------------------------------

VERSION_2 = 0x0200
"""1992 format: no command set, no proxies, no MULT_STROBES."""
VERSION_3 = 0x0300
"""QNX4 format (the 1992 design document): STROBES/MULT_STROBES carry command bytes."""
VERSION_4 = 0x0400
"""QNX6 format: STROBES/MULT_STROBES carry an index into the DCCC string table."""
VERSIONS = (VERSION_2, VERSION_3, VERSION_4)

UNDEFINED_MODE = 0xFFFF
"""Value of a mode index word for a mode that is not defined."""

TIMER_HZ = 16384
"""Timer base of SET_TIME counts, in counts per second."""

# --- opcodes -------------------------------------------------------------------------------

SOL_STROBES = 0
SOL_WAIT = 1
SOL_SET_TIME = 2
SOL_GOTO = 3
SOL_END_MODE = 4
SOL_WAITS = 5
SOL_SELECT = 6
SOL_MSWOK = 7
SOL_DTOA = 8
SOL_PROXY = 9
SOL_MULT_STROBES = 10

OPCODE_NAMES = {
    SOL_STROBES: "STROBES",
    SOL_WAIT: "WAIT",
    SOL_SET_TIME: "SET_TIME",
    SOL_GOTO: "GOTO",
    SOL_END_MODE: "END_MODE",
    SOL_WAITS: "WAITS",
    SOL_SELECT: "SELECT",
    SOL_MSWOK: "MSWOK",
    SOL_DTOA: "DTOA",
    SOL_PROXY: "PROXY",
    SOL_MULT_STROBES: "MULT_STROBES",
}
"""Opcode number -> mnemonic."""


class CodeError(ValueError):
    """Mode code that cannot be decoded (unknown opcode, or an operand past the end)."""


def timer_period_seconds(count: int, *, runtime_truncation: bool = False) -> float:
    """Return the tick period in seconds for a SET_TIME ``count`` (units of 1/16384 s).

    ``count == 0`` means 4 s. With ``runtime_truncation=True`` the sub-second part is cut to
    a multiple of 1/1024 s, as both reference runtimes do (1/3 s becomes 0.333007812 s).

    Raises
    ------
    ValueError
        For a count outside 0..65535.
    """
    if not 0 <= count <= 0xFFFF:
        raise ValueError(f"SET_TIME count {count} is outside 0..65535")
    if count == 0:
        return 4.0
    if not runtime_truncation:
        return count / TIMER_HZ
    whole = count // TIMER_HZ
    nanos = ((count % TIMER_HZ) // 16) * 1953125 // 2
    return whole + nanos / 1e9


# --- instructions ------------------------------------------------------------------------------


class Instruction(namedtuple("_InstructionFields", "offset opcode operands size")):
    """One decoded mode-code instruction (an immutable named tuple).

    ``offset`` is its byte offset in the mode code, ``size`` its length in bytes and
    ``operands`` the decoded operand values:

    * STROBES: ``(command,)`` in v2/v3, ``(string_index,)`` in v4;
    * MULT_STROBES: ``(cmd1, cmd2, ...)`` in v3, ``(string_index,)`` in v4;
    * SET_TIME: ``(count,)``; GOTO: ``(absolute_offset,)``; WAITS: ``(n,)``;
      SELECT: ``(mode,)``; DTOA: ``(set_point_index,)``; PROXY: ``(proxy_index,)``;
    * WAIT, END_MODE, MSWOK: ``()``.

    Fields: ``offset: int``, ``opcode: int``, ``operands: tuple[int, ...]``, ``size: int``.
    """

    __slots__ = ()

    @property
    def name(self) -> str:
        """Mnemonic of the opcode, e.g. ``"SET_TIME"``."""
        return OPCODE_NAMES.get(self.opcode, f"OP{self.opcode}")

    @property
    def next_offset(self) -> int:
        """Offset of the instruction that follows this one."""
        return self.offset + self.size


def decode_instruction(code: bytes, offset: int, version: int = VERSION_3) -> Instruction:
    """Decode the instruction at ``offset`` of ``code`` for the given format ``version``.

    Raises
    ------
    CodeError
        For an unknown opcode (including MULT_STROBES in v2) or an instruction that runs past
        the end of ``code`` (a CodeError is a ValueError).
    """
    n = len(code)
    if not 0 <= offset < n:
        raise CodeError(f"instruction offset {offset} is outside the mode code (0..{n - 1})")
    op = code[offset]

    def need(k: int) -> None:
        if offset + k > n:
            raise CodeError(
                f"{OPCODE_NAMES.get(op, op)} at offset {offset} needs {k} bytes, "
                f"only {n - offset} left in the mode code"
            )

    if op in (SOL_WAIT, SOL_END_MODE, SOL_MSWOK):
        return Instruction(offset, op, (), 1)
    if op in (SOL_SET_TIME, SOL_GOTO):
        need(3)
        return Instruction(offset, op, (code[offset + 1] | code[offset + 2] << 8,), 3)
    if op in (SOL_STROBES, SOL_WAITS, SOL_SELECT, SOL_DTOA, SOL_PROXY):
        need(2)
        return Instruction(offset, op, (code[offset + 1],), 2)
    if op == SOL_MULT_STROBES and version >= VERSION_3:
        if version >= VERSION_4:
            need(2)
            return Instruction(offset, op, (code[offset + 1],), 2)
        need(2)
        count = code[offset + 1]
        need(2 + count)
        return Instruction(offset, op, tuple(code[offset + 2 : offset + 2 + count]), 2 + count)
    raise CodeError(f"unknown opcode {op} at offset {offset} (version 0x{version:04X})")


def decode_mode(code: bytes, offset: int, version: int = VERSION_3) -> list[Instruction]:
    """Decode instructions linearly from ``offset`` up to and including the first END_MODE.

    This is the code one mode was compiled to (GOTO targets inside it are not followed).
    Raises :class:`CodeError` on an undecodable byte or when the code ends without END_MODE.
    """
    out: list[Instruction] = []
    while True:
        if offset >= len(code):
            raise CodeError(f"mode code ends at offset {offset} without END_MODE")
        ins = decode_instruction(code, offset, version)
        out.append(ins)
        if ins.opcode == SOL_END_MODE:
            return out
        offset = ins.next_offset


def decode_all(code: bytes, version: int = VERSION_3) -> list[Instruction]:
    """Decode the whole mode code from offset 0 to its end (compiled code is contiguous).

    Raises
    ------
    CodeError
        When a byte does not decode.
    """
    out: list[Instruction] = []
    offset = 0
    while offset < len(code):
        ins = decode_instruction(code, offset, version)
        out.append(ins)
        offset = ins.next_offset
    return out


_DCCC_RE = re.compile(r"^([DM])(\d+(?:,\d+)*)\n$")


def parse_dccc_string(text: str) -> list[int]:
    r"""Return the command numbers of a v4 DCCC string (``"D51\n"`` or ``"M1,3,5\n"``).

    Raises
    ------
    ValueError
        If the text is not of that form.
    """
    m = _DCCC_RE.match(text)
    if not m:
        raise ValueError(f"DCCC string {text!r} is not 'D<n>\\n' or 'M<n>,<n>,...\\n'")
    nums = [int(x) for x in m.group(2).split(",")]
    if m.group(1) == "D" and len(nums) != 1:
        raise ValueError(f"DCCC string {text!r}: a D command takes one number")
    return nums


def dccc_string(commands: list[int] | tuple[int, ...]) -> str:
    r"""Return the v4 DCCC text for a strobe group: ``D<n>\n`` for one, ``M<a>,<b>..\n`` else."""
    if len(commands) == 1:
        return f"D{commands[0]}\n"
    return "M" + ",".join(str(c) for c in commands) + "\n"


# --- tables ------------------------------------------------------------------------------


class _Factory:
    """A :class:`_Record` field default made fresh for each instance (``_Factory(list)``)."""

    __slots__ = ("make",)

    def __init__(self, make: type) -> None:
        self.make = make


_REQUIRED = object()


class _Record:
    """Base of the table classes below.

    What ``@dataclass`` would give them (an ``__init__`` taking the fields of ``_FIELDS`` by
    position or keyword, field-wise ``==``, a readable repr), without importing :mod:`dataclasses`,
    which costs about 10 ms at every start of ``solfmt`` and ``soldrv``. ``_FIELDS`` holds (name,
    default) pairs in order.
    """

    _FIELDS: tuple[tuple[str, object], ...] = ()
    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value, like a dataclass

    def __init__(self, *args: object, **kwargs: object) -> None:
        cls = type(self).__name__
        if len(args) > len(self._FIELDS):
            raise TypeError(f"{cls}() takes at most {len(self._FIELDS)} positional arguments")
        for i, (name, default) in enumerate(self._FIELDS):
            if i < len(args):
                if name in kwargs:
                    raise TypeError(f"{cls}() got multiple values for argument {name!r}")
                value = args[i]
            elif name in kwargs:
                value = kwargs.pop(name)
            elif default is _REQUIRED:
                raise TypeError(f"{cls}() missing required argument: {name!r}")
            elif isinstance(default, _Factory):
                value = default.make()
            else:
                value = default
            setattr(self, name, value)
        if kwargs:
            raise TypeError(f"{cls}() got an unexpected keyword argument {next(iter(kwargs))!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n, _ in self._FIELDS)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n, _ in self._FIELDS)
        return f"{type(self).__qualname__}({inner})"


class Solenoid(_Record):
    """A strobed two-command device.

    ``open_cmd``/``close_cmd`` are discrete command numbers; ``status_addr``/``status_mask``
    locate its status bit (stored in the file, never used by a runtime). ``name`` and
    ``status_bit`` are known only when compiled from a .sol ("" / None after reading an .sft).
    """

    open_cmd: int
    close_cmd: int
    status_addr: int
    status_mask: int
    name: str
    status_bit: int | None
    _FIELDS = (("open_cmd", _REQUIRED), ("close_cmd", _REQUIRED), ("status_addr", _REQUIRED),
               ("status_mask", _REQUIRED), ("name", ""), ("status_bit", None))


class SetPoint(_Record):
    """One D/A set point: write ``value`` to subbus ``address`` (address 0 = status word).

    ``dtoa`` (DtoA name) and ``char`` (its pattern character) are known only from a .sol.
    """

    address: int
    value: int
    dtoa: str
    char: str
    _FIELDS = (("address", _REQUIRED), ("value", _REQUIRED), ("dtoa", ""), ("char", ""))


class DtoADef(_Record):
    """A DtoA from the .sol: ``name``, subbus ``address`` and ``points`` (char, set-point index)."""

    name: str
    address: int
    points: list[tuple[str, int]]
    _FIELDS = (("name", _REQUIRED), ("address", _REQUIRED), ("points", _Factory(list)))


class ProxyDef(_Record):
    """A Proxy from the .sol: ``name`` and ``points`` (char, proxy id, index in proxy_ids)."""

    name: str
    points: list[tuple[str, int, int]]
    _FIELDS = (("name", _REQUIRED), ("points", _Factory(list)))


class ModeInfo(_Record):
    """What is known about one defined mode.

    ``offset`` is the entry point in the mode code. ``timer_count`` is the SET_TIME operand
    (None for a mode without cycle), ``iterations`` the WAIT multiplier per step,
    ``resolution`` the (numerator, denominator) in seconds per step, ``cycle_steps`` the cycle
    length in steps and ``select`` the successor mode, when known. ``description`` is a
    human-readable text (from the compiler's ``-v`` output when compiled from a .sol).
    """

    number: int
    offset: int
    timer_count: int | None
    iterations: int
    resolution: tuple[int, int] | None
    cycle_steps: int | None
    select: int | None
    description: str
    _FIELDS = (("number", _REQUIRED), ("offset", _REQUIRED), ("timer_count", None),
               ("iterations", 1), ("resolution", None), ("cycle_steps", None),
               ("select", None), ("description", ""))

    @property
    def step_seconds(self) -> float | None:
        """Nominal duration of one timer tick in seconds (None without a cycle)."""
        if self.timer_count is None:
            return None
        return timer_period_seconds(self.timer_count)


class Program(_Record):
    r"""A compiled solenoid-cycle program (the content of an .sft file, plus .sol names).

    Fields stored in an .sft:

    * ``version``: 0x0200, 0x0300 or 0x0400 (decides the meaning of STROBES operands).
    * ``command_set``: one character ``'A'``..``'J'`` (not stored in v2; 'A' then).
    * ``solenoids``: list of :class:`Solenoid` in definition order.
    * ``set_points``: list of :class:`SetPoint`, the global D/A set-point table.
    * ``proxy_ids``: distinct proxy ids (0..255), indexed by PROXY operands.
    * ``mode_indices``: entry offset per mode number, :data:`UNDEFINED_MODE` if undefined.
    * ``code``: the mode code bytes.
    * ``strings``: v4 DCCC string table (``"D51\n"``, ``"M1,3\n"``), indexed by STROBES
      operands; empty for v2/v3.

    Extra information (not stored in the file): ``dtoas``, ``proxies`` (definitions with
    names), ``modes`` (mode number -> :class:`ModeInfo`; filled from the code when read from
    an .sft), ``source`` (file names) and ``trailing_bytes`` (ignored bytes after the end of
    a file that was read).
    """

    version: int
    command_set: str
    solenoids: list[Solenoid]
    set_points: list[SetPoint]
    proxy_ids: list[int]
    mode_indices: list[int]
    code: bytes
    strings: list[str]
    dtoas: list[DtoADef]
    proxies: list[ProxyDef]
    modes: dict[int, ModeInfo]
    source: list[str]
    trailing_bytes: int
    _FIELDS = (("version", VERSION_3), ("command_set", "A"), ("solenoids", _Factory(list)),
               ("set_points", _Factory(list)), ("proxy_ids", _Factory(list)),
               ("mode_indices", _Factory(list)), ("code", b""), ("strings", _Factory(list)),
               ("dtoas", _Factory(list)), ("proxies", _Factory(list)),
               ("modes", _Factory(dict)), ("source", _Factory(list)), ("trailing_bytes", 0))

    # -- queries ------------------------------------------------------------------

    def is_defined(self, mode: int) -> bool:
        """Return True if ``mode`` has code (index present and not 0xFFFF). Any int is accepted."""
        return 0 <= mode < len(self.mode_indices) and self.mode_indices[mode] != UNDEFINED_MODE

    def defined_modes(self) -> list[int]:
        """Numbers of all defined modes, ascending."""
        return [m for m in range(len(self.mode_indices)) if self.is_defined(m)]

    def mode_offset(self, mode: int) -> int:
        """Entry offset of ``mode`` in :attr:`code`; KeyError if the mode is not defined."""
        if not self.is_defined(mode):
            raise KeyError(f"mode {mode} is not defined")
        return self.mode_indices[mode]

    def decode(self, offset: int) -> Instruction:
        """Decode the instruction at ``offset`` (see :func:`decode_instruction`)."""
        return decode_instruction(self.code, offset, self.version)

    def mode_instructions(self, mode: int) -> list[Instruction]:
        """Instructions of ``mode`` from its entry up to its END_MODE (KeyError if undefined)."""
        return decode_mode(self.code, self.mode_offset(mode), self.version)

    def strobe_commands(self, ins: Instruction) -> list[int]:
        """Discrete command numbers sent by a STROBES or MULT_STROBES instruction.

        v2/v3 carry the numbers in the code; v4 carries a string index that is looked up in
        :attr:`strings` and parsed. Raises ValueError for another opcode or a bad index.
        """
        if ins.opcode not in (SOL_STROBES, SOL_MULT_STROBES):
            raise ValueError(f"{ins.name} at offset {ins.offset} is not a strobe instruction")
        if self.version < VERSION_4:
            return list(ins.operands)
        idx = ins.operands[0]
        if idx >= len(self.strings):
            raise ValueError(
                f"{ins.name} at offset {ins.offset} names string {idx}, "
                f"the table has {len(self.strings)}"
            )
        return parse_dccc_string(self.strings[idx])

    def solenoid_label(self, index: int) -> str:
        """Name of solenoid ``index``, or ``"sol<index>"`` when the name is unknown."""
        name = self.solenoids[index].name
        return name or f"sol{index}"

    def command_owner(self, command: int) -> tuple[int, bool] | None:
        """Return (solenoid index, True for open / False for close) for a command number.

        The first solenoid with that command wins; None if no solenoid uses it.
        """
        for i, s in enumerate(self.solenoids):
            if s.open_cmd == command:
                return i, True
            if s.close_cmd == command:
                return i, False
        return None

    def fill_mode_info(self) -> None:
        """Fill :attr:`modes` from the code for every defined mode not already described.

        Takes timer_count from the first SET_TIME and select from SELECT. Modes whose code
        does not decode are left out (the runner reports them when it reaches them).
        """
        for m in self.defined_modes():
            if m in self.modes:
                continue
            info = ModeInfo(number=m, offset=self.mode_indices[m])
            try:
                instrs = self.mode_instructions(m)
            except CodeError:
                continue
            for ins in instrs:
                if ins.opcode == SOL_SET_TIME and info.timer_count is None:
                    info.timer_count = ins.operands[0]
                elif ins.opcode == SOL_SELECT:
                    info.select = ins.operands[0]
            self.modes[m] = info
