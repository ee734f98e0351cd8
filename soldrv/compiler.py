"""solfmt: compile solenoid-cycle sources (.sol) into a :class:`~soldrv.program.Program`.

Pipeline: the parser reads tokens through :class:`soldrv.grammar.Lexer` and builds, per
mode, a time-sorted change list (one step per pattern character); at each mode's ``}`` the
optimizer moves constant time-0 changes into the init list and the resolution becomes a timer
count and iteration count. After all input files, the code generator emits the mode code, the
v4 string table and the header tables (the documentation's ".sft format" page).

Two behaviours:

* ``compat=True`` reproduces the reference compilers bit for bit (v3: QNX4 solfmt, v4: QNX6
  solfmt 2022), including their bugs.
* ``compat=False`` (default) fixes init-drop, the group shifted after ``^``, the leading-``^``
  shift, the missing SELECT of select-only modes (v3) and rejects mode 256 and values that
  would be cut to a byte. Each time the output differs from the reference compiler's, a
  :class:`~soldrv.errors.SolfmtWarning` of kind ``"differs"`` says so.

Entry points: :func:`compile_files`, :func:`compile_text`.
"""

from __future__ import annotations

import bisect
import functools
import gc
import os
import re
from collections.abc import Callable

from soldrv.errors import SolfmtError, SolfmtWarning, line_col
from soldrv.grammar import KEYWORDS, Lexer, Token
from soldrv.input_files import MAX_SOL_BYTES, read_regular_file
from soldrv.program import (
    SOL_DTOA,
    SOL_END_MODE,
    SOL_GOTO,
    SOL_MSWOK,
    SOL_MULT_STROBES,
    SOL_PROXY,
    SOL_SELECT,
    SOL_SET_TIME,
    SOL_STROBES,
    SOL_WAIT,
    SOL_WAITS,
    UNDEFINED_MODE,
    VERSION_3,
    VERSION_4,
    DtoADef,
    ModeInfo,
    Program,
    ProxyDef,
    SetPoint,
    Solenoid,
    dccc_string,
)

__all__ = ["CompileResult", "Compiler", "compile_files", "compile_text"]

_KEYWORDS = frozenset(KEYWORDS)
_C_SPACE = " \t\n\v\f\r"

# change types: the reference token codes, sorted descending within one time step
T_SWITCH = 94  # '^'
T_PROXY = 23
T_DTOA = 21
T_SOL = 12
_KIND_NAME = {T_SOL: "sol.", T_DTOA: "dtoa", T_PROXY: "proxy"}

SOL_OPEN = 0
SOL_CLOSE = 1

MAX_MODES = 256
MAX_ROUTINES = 10
MAX_DTOAS = 64
MAX_DTOA_SET_POINTS = 64
MAX_SET_POINTS = 4096
MAX_PROXIES = 256
MAX_PROXY_POINTS = 40
MAX_PRXY_PTS = 100
MAX_STATUS_ADDRS = 4
MODE_CODE_SIZE = 10000
MAX_SW = 64
MAX_STRINGS = 256
DCCC_MAX_CMD_BUF = 250
DEFAULT_STATUS_ADDRS = (0x408, 0x40A, 0x411, 0x413)


class Change:
    """One entry of a change list.

    At ``time`` (step; -1 = Initialize), ``kind`` (T_*), object index ``index`` and ``state``
    (solenoid: SOL_OPEN/SOL_CLOSE; DtoA/proxy: index of the set-point character in that object's
    list); ``pos`` is the source offset for messages (-1: none) in source ``src``.
    """

    __slots__ = ("time", "kind", "index", "state", "pos", "src")

    def __init__(self, time: int, kind: int, index: int, state: int, pos: int = -1,
                 src: Lexer | None = None) -> None:
        self.time = time
        self.kind = kind
        self.index = index
        self.state = state
        self.pos = pos
        self.src = src

    def same(self, other: Change) -> bool:
        """Return True if both would compile to the same code (the reference's duplicate test)."""
        return (self.time, self.kind, self.index, self.state) == (
            other.time,
            other.kind,
            other.index,
            other.state,
        )

    def __repr__(self) -> str:
        return f"Change(t={self.time}, kind={self.kind}, index={self.index}, state={self.state})"


def _sort_key(c: Change) -> tuple[int, int]:
    return c.time, -c.kind


def add_change(lst: list[Change], nc: Change) -> None:
    """Insert ``nc`` sorted by time, then descending kind, after equal keys.

    Drop it if it equals its predecessor (reference ``add_change``).
    """
    i = bisect.bisect_right(lst, (nc.time, -nc.kind), key=_sort_key)
    if i > 0 and lst[i - 1].same(nc):
        return
    lst.insert(i, nc)


# The records below are plain classes, not dataclasses: importing dataclasses costs about
# 10 ms at every start of solfmt (benchmarks/bench_solfmt.py measures the whole process).


class _Timeline:
    """Per-mode timeline state of one solenoid, DtoA or proxy (-1: none yet)."""

    __slots__ = ("last_time", "last_state", "first_state")

    def __init__(self) -> None:
        self.last_time = -1
        self.last_state = -1
        self.first_state = -1


class _SolDef:
    """A solenoid: name, open/close command numbers, status bit, timeline in this mode."""

    __slots__ = ("name", "open_cmd", "close_cmd", "status_bit", "tl")

    def __init__(self, name: str, open_cmd: int, close_cmd: int, status_bit: int) -> None:
        self.name = name
        self.open_cmd = open_cmd
        self.close_cmd = close_cmd
        self.status_bit = status_bit
        self.tl = _Timeline()


class _SetDef:
    """A DtoA or a Proxy.

    Name, set-point characters and their table indices (set-point index or proxy-id index), the DtoA
    address, the proxy ids, the timeline in this mode.
    """

    __slots__ = ("name", "chars", "indices", "address", "ids", "tl", "codes")

    def __init__(self, name: str) -> None:
        self.name = name
        self.chars: list[str] = []
        self.indices: list[int] = []
        self.address = 0
        self.ids: list[int] = []
        self.tl = _Timeline()
        self.codes: _PatternCodes | None = None  # built on first use

    def pattern_codes(self) -> _PatternCodes:
        """How to decode this object's pattern characters.

        A set-point character gives its index in the list (the last definition wins), ``^`` the
        switch; anything else (C blanks included) is fill.
        """
        if self.codes is None:
            self.codes = _PatternCodes(
                {ch: i for i, ch in enumerate(self.chars) if ch and ch not in _C_SPACE})
        return self.codes


class _PatternCodes:
    """Decoding of one object's pattern characters.

    ``codes`` maps a character to its state (``^`` to -2; a character not in it is fill), ``runs``
    finds each run of one state character (fill in between allowed: ``__:__:__`` is one run of six
    steps) and each single ``^`` of a line, so that fill and repeated states, most of a pattern
    line, are skipped at C speed instead of being looked at one by one.
    """

    __slots__ = ("codes", "runs")

    def __init__(self, states: dict[str, int]) -> None:
        self.codes = {**states, "^": -2}  # '^' is the switch whatever the state characters
        chars = "".join(re.escape(ch) for ch in states if ch != "^")
        fill = "[^" + chars + r"\^]"
        # a state character, then (fill, the same character) again and again; or a '^'
        run = f"([{chars}])(?:{fill}*+\\1)*+|" if chars else ""
        self.runs = re.compile(run + r"\^")


class _Routine:
    """A routine: its name, the source it is defined in and the offset after its ``{``."""

    __slots__ = ("name", "lexer", "pos")

    def __init__(self, name: str, lexer: Lexer, pos: int) -> None:
        self.name = name
        self.lexer = lexer
        self.pos = pos


class _Mode:
    """One mode being read, then compiled.

    Init and cycle change lists, successor (``next_mode``, -1: none), cycle ``length`` in steps,
    resolution, timer ``count`` and ``iters``, and where it is (source text, offset of the closing
    brace).
    """

    __slots__ = ("number", "init", "cycle", "last_of", "steps", "next_mode", "length", "res",
                 "count", "iters", "filename", "text", "pos")

    def __init__(self, number: int, filename: str = "", text: str = "") -> None:
        self.number = number
        self.init: list[Change] = []
        self.cycle: list[Change] = []  # in reading order until the '}'
        self.last_of: dict[tuple[int, int], Change] = {}  # (time, kind) -> last change
        self.steps: set[int] = set()  # times >= 1 that have a change
        self.next_mode = -1
        self.length = 0
        self.res = (1, 1)
        self.count = 0
        self.iters = 1
        self.filename = filename
        self.text = text
        self.pos = 0

    @property
    def defined(self) -> bool:
        return bool(self.init or self.cycle or self.next_mode >= 0)


class CompileResult:
    """Result of a compilation: the ``program`` and the ``warnings`` (SolfmtWarning list).

    ``verbose_text`` holds what the reference ``solfmt -v`` prints on stdout before
    ``Output written to file``: the optimizer notes, the solenoid/DtoA/proxy tables and a
    description of every defined mode, in the reference layout (ends with a newline).
    """

    __slots__ = ("program", "warnings", "verbose_text")

    def __init__(self, program: Program, warnings: list[SolfmtWarning],
                 verbose_text: str = "") -> None:
        self.program = program
        self.warnings = warnings
        self.verbose_text = verbose_text

    def __repr__(self) -> str:
        """Show the result with the size of its code, not the code itself."""
        return (f"CompileResult(program=<{len(self.program.code)} code bytes>, "
                f"warnings={self.warnings!r})")


class Compiler:
    """One solfmt run: feed sources with :meth:`read_source`, then call :meth:`finish`.

    ``version`` is 3 or 4 (0x0300/0x0400 accepted); ``compat`` selects bit-exact reference
    behaviour. State (names, modes, resolution, open/close characters) is shared between
    sources, as with several input files on the reference command line.
    """

    def __init__(self, version: int = 3, compat: bool = False):
        v = version << 8 if version in (3, 4) else version
        if v not in (VERSION_3, VERSION_4):
            raise ValueError(f"unknown output version {version!r}: use 3 or 4")
        self.version = v
        self.compat = compat
        self.max_solenoids = 64 if v == VERSION_4 else 32
        self.cmd_set = "A"
        self.solenoids: list[_SolDef] = []
        self.dtoas: list[_SetDef] = []
        self.proxies: list[_SetDef] = []
        self.routines: list[_Routine] = []
        self.names: dict[str, tuple[str, int]] = {}  # lower-case name -> (category, index)
        self.code_floor = 0  # code bytes the stored modes need at least
        self._sol_codes: dict[tuple[str, str], _PatternCodes] = {}
        self.set_points: list[tuple[int, int, str, str]] = []
        self.proxy_ids: list[int] = []
        self.modes: dict[int, _Mode] = {}
        self.res = (1, 1)
        self.open_char = "O"
        self.close_char = "_"
        self.status_addrs = list(DEFAULT_STATUS_ADDRS)
        self.warnings: list[SolfmtWarning] = []
        self.verbose_lines: list[str] = []
        self.sources: list[str] = []
        self.lx: Lexer = Lexer("", "<none>")
        self._call_site = ""  # "R, called by mode 3 at f.sol:7:2" while a routine is inlined

    # ------------------------------------------------------------------ helpers

    def _err(self, message: str, pos: int | None = None) -> SolfmtError:
        return self.lx.error(message, pos)

    def _warn(self, message: str, pos: int | None, kind: str, lx: Lexer | None = None) -> None:
        lx = lx or self.lx
        if pos is None:
            self.warnings.append(SolfmtWarning(message, lx.filename, 0, 0, kind))
            return
        line, col = line_col(lx.text, pos)
        self.warnings.append(SolfmtWarning(message, lx.filename, line, col, kind))

    def _differs(self, message: str, pos: int | None = None, lx: Lexer | None = None) -> None:
        self._warn(message + " [differs from the reference compiler; --compat matches it]",
                   pos, "differs", lx)

    def classify(self, tok: Token) -> tuple[str, int]:
        """Classify a token like the reference lexer.

        ('keyword', 0) with the word in ``tok.keyword``, ('sol'|'routine'|'dtoa'|'proxy', index),
        ('undefined', 0) for an unknown identifier, or (token kind, 0) for anything else.
        """
        if tok.kind != "ident":
            return tok.kind, 0
        low = tok.text.lower()
        if low in _KEYWORDS:
            return "keyword", 0
        # names are unique across the categories (a definition needs an undefined name)
        return self.names.get(low, ("undefined", 0))

    def _define(self, cat: str, table: list, obj: object) -> None:
        """Append ``obj`` (with a ``name``) to ``table`` and record its name as ``cat``."""
        self.names[obj.name.lower()] = (cat, len(table))  # type: ignore[attr-defined]
        table.append(obj)

    def _expect_number(self, message: str) -> int:
        tok = self.lx.next()
        if not tok.is_number:
            raise self._err(message)
        return tok.value

    def _check_word(self, value: int, what: str) -> int:
        """Check that ``value`` (the last token) fits the 16-bit word it is written to.

        The reference writes only the low 16 bits; compat mode does the same, the default
        mode stops with an error at the number.
        """
        if value > 0xFFFF and not self.compat:
            raise self._err(
                f"{what} {value} does not fit in a 16-bit word (0..65535); the reference "
                "compiler silently keeps only its low 16 bits"
            )
        return value

    # ------------------------------------------------------------------ top level

    def read_source(self, text: str, filename: str = "<string>") -> None:
        """Parse one source text (shared state with earlier sources).

        Raises SolfmtError at the first fatal error.
        """
        self.lx = Lexer(text, filename, self.compat)
        self.sources.append(filename)
        while True:
            tok = self.lx.next()
            if tok.kind == "eof":
                return
            kw = tok.keyword
            if kw == "command_set":
                if not self.lx.next().is_punct("="):
                    raise self._err("Command_Set Statement Requires '='")
                t2 = self.lx.next()
                if t2.kind != "charconst":
                    raise self._err("Command_Set Statement Requires '='")
                val = t2.value
                if not ord("A") <= val <= ord("J"):
                    raise self._err("Command_Set Value Out of Range")
                self.cmd_set = chr(val)
            elif kw == "solenoid":
                self._read_solenoid()
            elif kw in ("open", "close"):
                if not self.lx.next().is_punct("="):
                    raise self._err("Open/Close Statement Syntax Error")
                t2 = self.lx.next()
                if t2.kind != "charconst":
                    raise self._err("Open/Close Statement Syntax Error")
                ch = chr(t2.value)
                if kw == "open":
                    self.open_char = ch
                else:
                    self.close_char = ch
            elif kw == "resolution":
                if not self.lx.next().is_punct("="):
                    raise self._err("Expected '=' after 'resolution'")
                num = self._expect_number("Expected <number> after 'resolution ='")
                if not self.lx.next().is_punct("/"):
                    raise self._err("Need Slash in resolution")
                den = self._expect_number("Need Number after slash")
                self.res = (num, den)
            elif kw == "mode":
                self._read_mode()
            elif kw == "routine":
                self._read_routine()
            elif kw == "status_bytes":
                self._read_status_bytes()
            elif kw == "dtoa":
                self._read_dtoa()
            elif kw == "proxy":
                self._read_proxy()
            else:
                raise self._err("Syntax Error in read_cmd")

    def _read_solenoid(self) -> None:
        if len(self.solenoids) == self.max_solenoids:
            hint = ("the v3 (QNX4) .sft format holds at most 32 solenoids; --format 4 (QNX6) "
                    "allows 64") if self.version == VERSION_3 else ""
            raise self.lx.error("Too Many Solenoids Defined", hint=hint)
        tok = self.lx.next()
        cat, _ = self.classify(tok)
        if cat == "sol":
            raise self._err("Attempted Redefinition of Solenoid")
        if cat != "undefined":
            raise self._err("Solenoid Name Error")
        name = tok.text
        open_cmd = self._check_word(
            self._expect_number("Solenoid Open Command Missing"), "Solenoid open command"
        )
        close_cmd = self._check_word(
            self._expect_number("Solenoid Close Command Missing"), "Solenoid close command"
        )
        bit = self._expect_number("Solenoid Status Bit Definition Missing")
        if not 0 <= bit < 32:
            raise self._err("Solenoid Status Bit Out of Range")
        self._define("sol", self.solenoids, _SolDef(name, open_cmd, close_cmd, bit))

    def _read_status_bytes(self) -> None:
        if not self.lx.next().is_punct("{"):
            raise self._err("Expected '{' after 'status_bytes'")
        i = 0
        tok = self.lx.next()
        while tok.is_number:
            if i == MAX_STATUS_ADDRS:
                raise self._err("Maximum of 4 status addresses")
            self.status_addrs[i] = self._check_word(tok.value, "Status address")
            i += 1
            tok = self.lx.next()
        if not tok.is_punct("}"):
            raise self._err("Expected '}' after status addresses")

    def _read_set_list(self, obj: _SetDef, limit: int, what: str, is_proxy: bool) -> None:
        """Read ``c:value`` entries up to ``}`` (raw set-point characters)."""
        colon_msg = f"{what} needs ':'"
        value_msg = "Proxy Value Missing" if is_proxy else "DtoA Set Point Value Missing"
        for _ in range(limit):
            ch, cpos = self.lx.set_point_char()
            if ch == "}":
                self.lx.pos = cpos  # unget
                break
            if not self.lx.next().is_punct(":"):
                raise self._err(colon_msg)
            tok = self.lx.next()
            if not tok.is_number:
                raise self._err(value_msg)
            value = tok.value
            if not is_proxy:
                self._check_word(value, "DtoA set-point value")
            obj.chars.append(ch if ch is not None else "")
            if is_proxy:
                if len(self.proxy_ids) >= MAX_PRXY_PTS:
                    raise self._err("Too many proxy points")
                if not 0 <= value <= 255:
                    raise self._err(f"Invalid proxy ID {value}")
                if value in self.proxy_ids:
                    self._warn(f"Reuse of Proxy ID {value}", tok.start, "reference")
                    obj.indices.append(self.proxy_ids.index(value))
                else:
                    self.proxy_ids.append(value)
                    obj.indices.append(len(self.proxy_ids) - 1)
                obj.ids.append(value)
            else:
                if len(self.set_points) >= MAX_SET_POINTS:
                    raise self._err("Too many set points")
                obj.indices.append(len(self.set_points))
                self.set_points.append((obj.address, value, obj.name, ch or ""))
        if not self.lx.next().is_punct("}"):
            raise self._err(f"{what} needs '}}'")

    def _read_named_set(self, is_proxy: bool) -> _SetDef:
        table = self.proxies if is_proxy else self.dtoas
        label = "Proxy" if is_proxy else "DtoA"
        if len(table) == (MAX_PROXIES if is_proxy else MAX_DTOAS):
            raise self._err("Too Many proxies Defined" if is_proxy else "Too Many DtoAs Defined")
        tok = self.lx.next()
        cat, _ = self.classify(tok)
        if cat == ("proxy" if is_proxy else "dtoa"):
            raise self._err(f"Attempted Redefinition of {label}")
        if cat != "undefined":
            raise self._err(f"{label} Name Error")
        return _SetDef(tok.text)

    def _read_dtoa(self) -> None:
        obj = self._read_named_set(False)
        obj.address = self._check_word(self._expect_number("DtoA Addresss Missing"),
                                       "DtoA address")
        if not self.lx.next().is_punct("{"):
            raise self._err("DtoA Set Point Definition needs '{'")
        self._read_set_list(obj, MAX_DTOA_SET_POINTS, "DtoA Set Point Definition", False)
        self._define("dtoa", self.dtoas, obj)

    def _read_proxy(self) -> None:
        obj = self._read_named_set(True)
        if not self.lx.next().is_punct("{"):
            raise self._err("Proxy Definition needs '{'")
        self._read_set_list(obj, MAX_PROXY_POINTS, "Proxy Definition", True)
        self._define("proxy", self.proxies, obj)

    def _read_routine(self) -> None:
        tok = self.lx.next()
        if self.classify(tok)[0] != "undefined":
            raise self._err("Routine expected name")
        if len(self.routines) == MAX_ROUTINES:
            raise self._err("Too many routines")
        name = tok.text
        if not self.lx.next().is_punct("{"):
            raise self._err("Routine expected {")
        self._define("routine", self.routines, _Routine(name, self.lx, self.lx.pos))
        # pre-scan (routines.c): only the first token of each line is checked
        while True:
            tok = self.lx.next()
            cat, _ = self.classify(tok)
            if tok.keyword == "initialize":
                c2, _ = self.classify(self.lx.next())
                if c2 not in ("sol", "dtoa", "proxy"):
                    raise self._err("Illegal token following Initialize")
                self.lx.rest_of_line()
            elif cat in ("sol", "dtoa", "proxy"):
                self.lx.rest_of_line()
            elif tok.is_punct("}"):
                return
            else:
                raise self._err("Illegal token inside routine")

    # ------------------------------------------------------------------ modes

    def _obj(self, cat: str, idx: int) -> _SolDef | _SetDef:
        if cat == "sol":
            return self.solenoids[idx]
        return self.dtoas[idx] if cat == "dtoa" else self.proxies[idx]

    def _pattern_codes(self, cat: str, obj: _SolDef | _SetDef) -> _PatternCodes:
        """How ``obj``'s pattern characters decode (:class:`_PatternCodes`).

        Solenoids use the open/close characters in force now.
        """
        if cat != "sol":
            return obj.pattern_codes()  # type: ignore[union-attr]
        key = (self.open_char, self.close_char)
        codes = self._sol_codes.get(key)
        if codes is None:
            states = {self.close_char: SOL_CLOSE}
            states[self.open_char] = SOL_OPEN  # open wins when both are the same character
            codes = self._sol_codes[key] = _PatternCodes(states)
        return codes

    def _read_mode(self) -> None:
        tok = self.lx.next()
        if not tok.is_number:
            raise self._err("Mode requires number")
        mn = tok.value
        if mn < 0 or mn > MAX_MODES or (mn == MAX_MODES and not self.compat):
            raise self._err("Mode number out of range")
        if mn in self.modes and self.modes[mn].defined:
            raise self._err(f"Attempted Redefinition of mode {mn}")
        if not self.lx.next().is_punct("{"):
            raise self._err("Mode requires Left Brace")
        mode = _Mode(mn, filename=self.lx.filename, text=self.lx.text)
        kinds = ((self.solenoids, T_SOL), (self.dtoas, T_DTOA), (self.proxies, T_PROXY))
        for table, _k in kinds:
            for obj in table:
                obj.tl = _Timeline()
        try:
            self._read_mode_body(mode)
        except SolfmtError as e:
            if self._call_site and not e.hint:
                e.hint = f"in routine {self._call_site}"
            raise
        self._end_mode(mode)

    def _read_mode_body(self, mode: _Mode) -> None:
        """Read a mode body up to its ``}`` (or ``select N }``), inlining routine calls."""
        kind_of = {"sol": T_SOL, "dtoa": T_DTOA, "proxy": T_PROXY}
        saved: tuple[Lexer, int] | None = None
        self._call_site = ""
        while True:
            tok = self.lx.next()
            cat, idx = self.classify(tok)
            kw = tok.text.lower() if cat == "keyword" else None
            if kw == "initialize":
                tok2 = self.lx.next()
                cat2, idx2 = self.classify(tok2)
                if cat2 not in ("sol", "dtoa", "proxy"):
                    raise self._err("Initialize requires solenoid, DtoA or Proxy name")
                if not self.lx.next().is_punct(":"):
                    raise self._err("Initialize <name>: - ':' needed")
                obj = self._obj(cat2, idx2)
                state = self._init_char(cat2, obj)
                add_change(mode.init, Change(-1, kind_of[cat2], idx2, state, tok2.start, self.lx))
            elif cat in ("sol", "dtoa", "proxy"):
                if not self.lx.next().is_punct(":"):
                    raise self._err("<name>: - Missing the ':'")
                self._pattern(mode, cat, idx, kind_of[cat])
            elif cat == "routine":
                if saved is not None:
                    raise self._err("Nested routines are not supported")
                saved = (self.lx, self.lx.pos)
                r = self.routines[idx]
                line, col = line_col(self.lx.text, tok.start)
                self._call_site = (
                    f"{r.name}, called by mode {mode.number} at {self.lx.filename}:{line}:{col}"
                )
                if r.lexer is not self.lx:
                    if self.compat:
                        # read_mod.c seeks the *current* file to the routine's saved offset
                        # (one FILE at a time): the text there is read as the body, and past
                        # the end of the file it reads EOF -> "Unexpected token in read_mode"
                        self.lx.pos = r.pos
                        continue
                    self._differs(
                        f"routine {r.name} is defined in {r.lexer.filename} and read from "
                        "there (the reference compiler re-reads its byte offset in "
                        f"{self.lx.filename})",
                        tok.start,
                    )
                self.lx = r.lexer
                self.lx.pos = r.pos
            elif kw == "select":
                if saved is not None:
                    raise self._err("Select within routine is illegal")
                mode.next_mode = self._expect_number("Select expects mode number")
                if not self.lx.next().is_punct("}"):
                    raise self._err("Select must be last command in mode")
                break
            elif tok.is_punct("}"):
                if saved is not None:
                    self.lx, self.lx.pos = saved
                    saved = None
                    self._call_site = ""
                    continue
                break
            else:
                raise self._err("Unexpected token in read_mode")

    def _end_mode(self, mode: _Mode) -> None:
        """At a mode's ``}``: check the cycle lengths, optimize, store the mode."""
        mn = mode.number
        kinds = ((self.solenoids, T_SOL), (self.dtoas, T_DTOA), (self.proxies, T_PROXY))
        close_pos = self.lx.last.start  # type: ignore[union-attr]
        mode.pos = close_pos
        length = -1
        for table, k in kinds:
            for obj in table:
                if obj.tl.last_time == -1:
                    continue
                if length == -1:
                    length = obj.tl.last_time
                elif obj.tl.last_time != length:
                    raise self._err(
                        f"Mode {mn} has ambiguous cycle lengths ({_KIND_NAME[k]} {obj.name})",
                        close_pos,
                    )
        mode.length = length + 1
        mode.res = self.res
        mode.cycle.sort(key=_sort_key)  # stable: the order add_change would have given
        mode.last_of.clear()
        if not self.compat and mode.length == 0 and all(c.kind == T_SWITCH for c in mode.cycle):
            mode.cycle.clear()  # only leading '^' (fixed semantics): nothing to cycle
        self._optimize(mode)
        if mn == MAX_MODES:
            # compat: the reference accepts mode 256 but never compiles it (off-by-one)
            return
        self.modes[mn] = mode
        self.code_floor += len(mode.steps)

    def _init_char(self, cat: str, obj: _SolDef | _SetDef) -> int:
        """Scan raw characters of the current line for the first code (Initialize)."""
        text = self.lx.text
        i = self.lx.pos
        codes = self._pattern_codes(cat, obj).codes
        while i < len(text) and text[i] != "\n":
            code = codes.get(text[i], -1)
            if code == -2:
                break
            if code >= 0:
                self.lx.pos = i + 1
                return code
            i += 1
        raise self._err("Initialize <name>:<valving char> - No <valving char>", min(i, len(text)))

    def _pattern(self, mode: _Mode, cat: str, idx: int, kind: int) -> None:
        """Decode one pattern line after its ':' into timeline changes."""
        obj = self._obj(cat, idx)
        tl = obj.tl
        line, start = self.lx.rest_of_line()
        t = tl.last_time
        leading_fixed = False
        decode = self._pattern_codes(cat, obj)
        codes = decode.codes
        for m in decode.runs.finditer(line):  # runs of one state character, or a '^'
            j = m.start()
            c = line[j]
            code = codes[c]
            if code == -2:
                if t == -1:
                    if self.compat:
                        t = 0
                    else:
                        if not leading_fixed:
                            self._differs(
                                f"mode {mode.number}: leading '^' on {obj.name}: the switch is "
                                "placed at the cycle start instead of shifting the pattern by "
                                "one step",
                                start + j,
                            )
                        leading_fixed = True
                        self._add_step(mode, 0, T_SWITCH, 0, 0, start + j)
                        continue
                self._add_step(mode, t + 1, T_SWITCH, 0, 0, start + j)
                continue
            if t == -1:
                t = 0
            else:
                t += 1
            if code != tl.last_state:  # only the first character of a run can change it
                self._add_step(mode, t, kind, idx, code, start + j)
                if tl.first_state == -1:
                    tl.first_state = code
                tl.last_state = code
            t += m.group().count(c) - 1  # one step per state character of the run
        tl.last_time = t

    def _add_step(self, mode: _Mode, time: int, kind: int, index: int, state: int,
                  pos: int) -> None:
        """Add a change to the mode's cycle as reference ``add_change`` does.

        A change equal to the last one of the same time and kind is dropped; sorted at the ``}``.
        Stop with ``Mode Code Table exceeded`` here, where the mode's code outgrows the table:
        each time step with a change costs at least one byte, so a huge mode fails at once.
        """
        key = (time, kind)
        last = mode.last_of.get(key)
        if last is not None and last.index == index and last.state == state:
            return
        change = Change(time, kind, index, state, pos, self.lx)
        mode.last_of[key] = change
        mode.cycle.append(change)
        if time >= 1 and time not in mode.steps:
            mode.steps.add(time)
            room = MODE_CODE_SIZE - self.code_floor
            if len(mode.steps) > room and mode.number != MAX_MODES:
                raise SolfmtError.at(
                    "Mode Code Table exceeded", self.lx.filename, self.lx.text, pos,
                    f"mode {mode.number} changes something at more than {room} time steps "
                    f"and each takes at least one byte of the {MODE_CODE_SIZE}-byte code table"
                    + (" left by the modes before it" if self.code_floor else ""),
                )

    def _optimize(self, mode: _Mode) -> None:
        """Move constant time-0 changes to init; compute the timer count."""
        if not mode.init and not mode.cycle:
            return
        if mode.next_mode < 0:
            kept: list[Change] = []
            moving = True
            for ch in mode.cycle:
                if moving and ch.time != 0:
                    moving = False
                if moving and ch.kind != T_SWITCH:
                    obj = self._obj({T_SOL: "sol", T_DTOA: "dtoa", T_PROXY: "proxy"}[ch.kind],
                                    ch.index)
                    if obj.tl.first_state == obj.tl.last_state:
                        label = {T_SOL: "Solenoid", T_DTOA: "DtoA", T_PROXY: "Proxy"}[ch.kind]
                        self.verbose_lines.append(
                            f"Mode {mode.number}, {label} {obj.name} requires cycle optimization"
                        )
                        add_change(mode.init, ch)
                        continue
                kept.append(ch)
            mode.cycle = kept
        if not mode.cycle:
            return
        num, den = mode.res
        if den == 0:
            raise self._err("Resolution denominator is 0 (division by zero)", mode.pos)
        count = _c_div(16384 * num, den)  # negative only from a compat 0x-N
        if count == 0 and not self.compat:
            # the reference writes SET_TIME 0, which both runtimes read as 4 s steps
            raise self._err(
                f"Mode {mode.number} resolution {num}/{den} s is shorter than one timer count "
                "(1/16384 s); the reference compiler would silently make 4 s steps",
                mode.pos,
            )
        iters = 1
        if count > 0x10000:
            # optimize.c: for (ti = count/0x10000 + 1; ti < 1000; ti++) if (count % ti == 0)
            # break; if (ti == 1000) fatal. Only a search that *reaches* 1000 fails: from
            # about 4000/1 on, the start value is above 1000, the loop never runs and ti
            # keeps it although it need not divide count (10000/1: 2501 iterations of
            # 65509 counts, 9999.88 s per step). A Python for/else (and a first reading of
            # the algorithm) counted that empty loop as a failure; the C code is the authority
            # and both modes follow it (the default mode warns that the step is inexact).
            ti = count // 0x10000 + 1
            while ti < 1000 and count % ti != 0:
                ti += 1
            if ti == 1000:
                raise self._err("Solfmt - Can't deal with long resolution", mode.pos)
            iters = ti
            if count % ti != 0 and not self.compat:
                self._warn(
                    f"Mode {mode.number} resolution {num}/{den} s is not a whole number of "
                    f"timer periods: each step is {ti} x {count // ti}/16384 s = "
                    f"{ti * (count // ti) / 16384:.6g} s (as in the reference compiler)",
                    mode.pos,
                    "inexact",
                )
            count //= ti
            self.verbose_lines.append(
                f"   Mode {mode.number} resolution requires {ti} iterations"
            )
        if (16384 * num) % den != 0:
            self._warn(
                f"Mode {mode.number} resolution is irrational mod 16384: "
                f"Actual resolution will be {count}/16384",
                mode.pos,
                "reference",
            )
        mode.count = count
        mode.iters = iters

    # ------------------------------------------------------------------ code generation

    def finish(self) -> CompileResult:
        """Generate the mode code and tables; return the :class:`CompileResult`.

        Raises SolfmtError for code-generation limits (code table size, v4 string table,
        bytes that do not fit in compat-free mode, a compat construct the reference cannot
        compile).
        """
        gen = _CodeGen(self)
        program = gen.run()
        describe = self._describe()
        for m, info in program.modes.items():
            info.description = describe.get(m, "")
        # the reference layout: optimizer notes (printed while parsing), then describe():
        # the tables, and each mode as "\nMode ...\n" ... "\n"
        text = "".join(line + "\n" for line in self.verbose_lines)
        text += self._describe_header() + "\n"
        text += "".join("\n" + block + "\n" for block in describe.values())
        return CompileResult(program, self.warnings, text)

    def _describe_header(self) -> str:
        out = ["Solenoids defined are:"]
        for s in self.solenoids:
            out.append(
                f"  {s.name}    open: {s.open_cmd}  close: {s.close_cmd}  status:  {s.status_bit}"
            )
        out.append("DtoAs defined are:")
        for d in self.dtoas:
            out.append(f"  {d.name}")
            for ch, k in zip(d.chars, d.indices, strict=True):
                addr, val = self.set_points[k][:2]
                out.append(f"    {ch}    addr: {addr:x}  value: {val:x}")
        out.append("Proxies defined are:")
        for p in self.proxies:
            out.append(f"  {p.name}")
            for ch, k in zip(p.chars, p.indices, strict=True):
                out.append(f"    {ch}    ID: {self.proxy_ids[k]} index: {k}")
        return "\n".join(out)

    def _change_text(self, ch: Change) -> str:
        if ch.kind == T_SWITCH:
            return "    Mode switch OK"
        if ch.kind == T_SOL:
            s = self.solenoids[ch.index]
            return f"    Solenoid {s.name} " + ("opened" if ch.state == SOL_OPEN else "closed")
        if ch.kind == T_DTOA:
            d = self.dtoas[ch.index]
            return f"    DtoA {d.name} to set point {d.chars[ch.state]}"
        p = self.proxies[ch.index]
        return f"    Proxy {p.name} to state {p.chars[ch.state]}"

    def _describe(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for m in sorted(self.modes):
            mode = self.modes[m]
            if not mode.defined:
                continue
            lines = [
                f"Mode {m} is defined with length {mode.length} at resolution "
                f"{mode.res[0]}/{mode.res[1]}"
            ]
            if mode.init:
                lines += ["", "  Initializations:"]
                lines += [self._change_text(c) for c in mode.init]
                lines.append("")
            if mode.cycle:
                lines.append("  Cycle:" if mode.next_mode < 0 else "  Commands:")
                lines += [f"{self._change_text(c)} at t={c.time}" for c in mode.cycle]
            if mode.next_mode >= 0:
                lines.append(f"    Select mode {mode.next_mode} at t={mode.length}")
            if not mode.cycle and mode.next_mode < 0:
                lines.append("  This mode has no cycle.")
            out[m] = "\n".join(lines) + "\n"
        return out


class _CodeGen:
    """Emits mode code for a parsed :class:`Compiler` (reference ``compile.c``/``output.c``)."""

    def __init__(self, comp: Compiler):
        self.c = comp
        self.code = bytearray()
        self.strings: list[str] = []
        self.mode: _Mode | None = None
        self.where: Change | None = None  # the change being emitted, for value errors

    def _err(self, message: str, at_change: bool = False) -> SolfmtError:
        """Error located at the change being emitted (``at_change``) or at the mode's ``}``."""
        w = self.where
        if at_change and w is not None and w.src is not None and w.pos >= 0:
            return SolfmtError.at(message, w.src.filename, w.src.text, w.pos)
        m = self.mode
        if m is None:
            return SolfmtError(message, self.c.lx.filename)
        return SolfmtError.at(message, m.filename, m.text, m.pos)

    def byte(self, x: int, what: str = "value") -> None:
        if len(self.code) >= MODE_CODE_SIZE:
            raise self._err("Mode Code Table exceeded")
        if not 0 <= x <= 255:
            if self.c.version == VERSION_4:
                raise self._err("Mode code value out of range: string table overflow?", True)
            if not self.c.compat:
                raise self._err(
                    f"Mode code value out of range: {what} {x} does not fit in a byte "
                    "(the v3 reference compiler silently keeps only its low byte)",
                    True,
                )
        self.code.append(x & 0xFF)

    def waits(self, n: int) -> None:
        while n > 255:
            self.byte(SOL_WAITS)
            self.byte(255)
            n -= 255
        if n == 1:
            self.byte(SOL_WAIT)
        elif n > 1:
            self.byte(SOL_WAITS)
            self.byte(n)

    def string_index(self, text: str) -> int:
        if text not in self.strings:
            if len(self.strings) >= MAX_STRINGS:
                raise self._err("Mode code value out of range: string table overflow?")
            self.strings.append(text)
        return self.strings.index(text)

    def group(self, lst: list[Change], i: int) -> int:
        """Emit the changes of ``lst`` at the time of ``lst[i]``; return the next index."""
        c = self.c
        t0 = lst[i].time
        n = len(lst)
        while i < n and lst[i].time == t0:
            ch = lst[i]
            self.where = ch
            if ch.kind == T_SOL:
                j = i
                while j < n and lst[j].kind == T_SOL and lst[j].time == t0:
                    j += 1
                cmds = []
                for k in range(i, j):
                    s = c.solenoids[lst[k].index]
                    cmds.append(s.open_cmd if lst[k].state == SOL_OPEN else s.close_cmd)
                i = j
                self.strobes(cmds)
            elif ch.kind == T_DTOA:
                self.byte(SOL_DTOA)
                self.byte(c.dtoas[ch.index].indices[ch.state], "set-point index")
                i += 1
            elif ch.kind == T_PROXY:
                self.byte(SOL_PROXY)
                self.byte(c.proxies[ch.index].indices[ch.state], "proxy index")
                i += 1
            else:
                # the reference compile_one() never advances past a '^' node: it hangs
                raise self._err(
                    f"Mode {self.mode.number if self.mode else '?'}: two mode switches with no "
                    "change between them; the reference compiler loops forever here"
                )
        self.where = None
        return i

    def _check_dccc_buffer(self, cmds: list[int]) -> None:
        r"""Check the 250-byte buffer.

        The reference builds ``M<a>,<b>,...\n`` in a 250-byte buffer: a number that does not fit is
        ``DCCC command string overflow``, no room left for the LF and NUL is ``... overflow #2``.
        """
        space = DCCC_MAX_CMD_BUF
        for cmd in cmds:
            space -= 1  # 'M' or ','
            nb = len(str(cmd))
            if space <= 0 or nb >= space:
                raise self._err("DCCC command string overflow")
            space -= nb
        if space < 2:
            raise self._err("DCCC command string overflow #2")

    def strobes(self, cmds: list[int]) -> None:
        if self.c.version == VERSION_3:
            if len(cmds) == 1:
                self.byte(SOL_STROBES)
            else:
                self.byte(SOL_MULT_STROBES)
                self.byte(len(cmds), "strobe count")
            for cmd in cmds:
                self.byte(cmd, "solenoid command")
            return
        if len(cmds) > MAX_SW:
            raise self._err("Arbitrary limit MAX_SW reached in compile.c")
        if len(cmds) == 1 and cmds[0] >= 256:
            if self.c.compat:
                raise self._err(
                    f"Solenoid command {cmds[0]} overflows the reference string cache (256)",
                    True,
                )
            w = self.where
            self.c._differs(
                f"solenoid command {cmds[0]} >= 256 (the reference compiler's string cache "
                "overflows here)",
                w.pos if w is not None else None,
                w.src if w is not None else None,
            )
        text = dccc_string(cmds)
        if len(cmds) > 1:
            self._check_dccc_buffer(cmds)
        self.byte(SOL_STROBES if len(cmds) == 1 else SOL_MULT_STROBES)
        self.byte(self.string_index(text), "string index")

    def run(self) -> Program:
        c = self.c
        indices: list[int] = []
        infos: dict[int, ModeInfo] = {}
        for m in range(MAX_MODES):
            mode = c.modes.get(m)
            if mode is None or not mode.defined:
                indices.append(UNDEFINED_MODE)
                continue
            self.mode = mode
            indices.append(len(self.code))
            infos[m] = ModeInfo(
                number=m,
                offset=len(self.code),
                timer_count=(mode.count & 0xFFFF) if mode.cycle else None,
                iterations=mode.iters,
                resolution=mode.res,
                cycle_steps=mode.length,
                select=mode.next_mode if mode.next_mode >= 0 else None,
            )
            self.emit_mode(mode)
        while indices and indices[-1] == UNDEFINED_MODE:
            indices.pop()
        sols = []
        for s in c.solenoids:
            bit = s.status_bit
            mask = 1 << (8 + bit % 8) if bit >= 16 else 1 << (bit % 8)
            sols.append(
                Solenoid(
                    self._word(s.open_cmd, f"solenoid {s.name} open command"),
                    self._word(s.close_cmd, f"solenoid {s.name} close command"),
                    self._word(c.status_addrs[bit // 8], "status address"),
                    mask,
                    s.name,
                    bit,
                )
            )
        sps = [
            SetPoint(self._word(a, f"DtoA {d} address"), self._word(v, f"DtoA {d} value"), d, ch)
            for a, v, d, ch in c.set_points
        ]
        self.mode = None
        prog = Program(
            version=c.version,
            command_set=c.cmd_set,
            solenoids=sols,
            set_points=sps,
            proxy_ids=list(c.proxy_ids),
            mode_indices=indices,
            code=bytes(self.code),
            strings=self.strings if c.version == VERSION_4 else [],
            dtoas=[
                DtoADef(d.name, d.address, list(zip(d.chars, d.indices, strict=True)))
                for d in c.dtoas
            ],
            proxies=[
                ProxyDef(p.name, list(zip(p.chars, p.ids, p.indices, strict=True)))
                for p in c.proxies
            ],
            modes=infos,
            source=list(c.sources),
        )
        return prog

    def _word(self, value: int, what: str) -> int:
        if 0 <= value <= 0xFFFF:
            return value
        if self.c.compat:
            return value & 0xFFFF
        raise self._err(f"{what} = {value} does not fit in a 16-bit word (0..65535)")

    def emit_mode(self, mode: _Mode) -> None:
        c = self.c
        # init: the reference emits only the first time group (init-drop bug)
        if mode.init:
            i = self.group(mode.init, 0)
            if i < len(mode.init) and not c.compat:
                # the fix sends the rest too, except what the first group already sent
                sent = {(ch.kind, ch.index, ch.state) for ch in mode.init[:i]}
                rest = [ch for ch in mode.init[i:] if (ch.kind, ch.index, ch.state) not in sent]
                if rest:
                    lost = ", ".join(c._change_text(ch).split(maxsplit=1)[1] for ch in rest)
                    c._differs(
                        f"mode {mode.number}: initialization also sends {lost} (init-drop "
                        "bug: the reference compiler drops it)",
                        rest[0].pos,
                        rest[0].src,
                    )
                j = 0
                while j < len(rest):
                    j = self.group(rest, j)
        cyc = mode.cycle
        if cyc:
            self.byte(SOL_SET_TIME)
            self.byte(mode.count & 0xFF)
            self.byte((mode.count >> 8) & 0xFF)
            cycle_start = len(self.code)
            time = 0
            i = 0
            while i < len(cyc):
                self.waits((cyc[i].time - time) * mode.iters)
                time = cyc[i].time
                if cyc[i].kind == T_SWITCH:
                    self.byte(SOL_MSWOK)
                    i += 1
                    if i >= len(cyc):
                        break
                    if cyc[i].time != time and not c.compat:
                        if cyc[i].kind == T_SWITCH:
                            self.c._differs(
                                f"mode {mode.number}: two mode switches with no change between "
                                "them (the reference compiler loops forever here)",
                                cyc[i].pos,
                                cyc[i].src,
                            )
                        else:
                            self.c._differs(
                                f"mode {mode.number}: changes at step {cyc[i].time} are emitted "
                                f"at step {cyc[i].time} (group-shift bug: the reference compiler "
                                f"fires them at the '^' of step {time})",
                                cyc[i].pos,
                                cyc[i].src,
                            )
                        continue
                i = self.group(cyc, i)
            self.waits((mode.length - time) * mode.iters)
            if mode.next_mode >= 0:
                self.byte(SOL_SELECT)
                self.byte(mode.next_mode, "select mode number")
            else:
                self.byte(SOL_GOTO)
                self.byte(cycle_start & 0xFF)
                self.byte((cycle_start >> 8) & 0xFF)
        elif mode.next_mode >= 0:
            if c.version == VERSION_4 or not c.compat:
                if c.version == VERSION_3:
                    self.c._differs(
                        f"mode {mode.number}: select-only mode gets SELECT {mode.next_mode} "
                        "(the v3 reference compiler emits only END_MODE)",
                        mode.pos,
                        _lexer_for(mode),
                    )
                self.byte(SOL_SELECT)
                self.byte(mode.next_mode, "select mode number")
        self.byte(SOL_END_MODE)


def _without_gc(fn: Callable[..., CompileResult]) -> Callable[..., CompileResult]:
    """Run ``fn`` with the cyclic garbage collector paused (and restore it after).

    A compilation allocates tens of thousands of small objects and builds no garbage cycles
    worth collecting; in a fresh ``solfmt`` process the small heap makes the collector run
    its full passes over and over, which doubled the time of compiling HFEMS.
    """

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> CompileResult:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return wrapper


def _c_div(a: int, b: int) -> int:
    """C integer division (truncates toward zero; Python's ``//`` floors)."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _lexer_for(mode: _Mode) -> Lexer:
    lx = Lexer(mode.text, mode.filename)
    return lx


def _read_text(path: str | os.PathLike[str]) -> str:
    return read_regular_file(path, MAX_SOL_BYTES, "a .sol source").decode("latin-1")


@_without_gc
def compile_files(
    paths: list[str | os.PathLike[str]] | tuple[str | os.PathLike[str], ...],
    compat: bool = False,
    version: int = 3,
) -> CompileResult:
    """Compile one or more .sol files (shared state, in order) into a Program.

    Parameters
    ----------
    paths : list or tuple of str or os.PathLike
        The .sol sources, read in this order.
    compat : bool, optional
        Select bit-exact reference behaviour.
    version : int, optional
        3 or 4: the .sft format the code is generated for.

    Returns
    -------
    CompileResult
        The program, the warnings and the verbose text.

    Raises
    ------
    SolfmtError
        On any fatal error in the sources, and for an OSError from reading (as "Cannot open
        file"); the warnings given before the error are in its ``warnings`` attribute.
    """
    comp = Compiler(version, compat)
    try:
        for p in paths:
            name = os.fspath(p)
            try:
                text = _read_text(p)
            except OSError as e:
                raise SolfmtError(f"Cannot open file {name}: {e.strerror or e}",
                                  "solfmt") from None
            comp.read_source(text, name)
        return comp.finish()
    except SolfmtError as e:
        e.warnings = list(comp.warnings)
        raise


@_without_gc
def compile_text(
    text: str,
    filename: str = "<string>",
    compat: bool = False,
    version: int = 3,
) -> CompileResult:
    """Compile .sol source ``text`` (see :func:`compile_files`).

    Parameters
    ----------
    text : str
        The .sol source.
    filename : str, optional
        The name messages give the source.
    compat : bool, optional
        As for :func:`compile_files`.
    version : int, optional
        As for :func:`compile_files`.

    Returns
    -------
    CompileResult
        As for :func:`compile_files`.

    Raises
    ------
    SolfmtError
        On bad input; the warnings given before the error are in its ``warnings`` attribute.
    """
    comp = Compiler(version, compat)
    try:
        comp.read_source(text, filename)
        return comp.finish()
    except SolfmtError as e:
        e.warnings = list(comp.warnings)
        raise
