r"""Parsimonious grammar of the solenoid-cycle language (.sol).

Two layers share one :data:`GRAMMAR`:

* **Token rules** (``token``, ``rest_of_line``, ``set_point_entry_char``): what the reference
  lexer (``get_tokens.c``) reads at one position. The compiler (:mod:`soldrv.compiler`) pulls
  tokens through :class:`Lexer`, which matches these rules at the current offset, and parses
  by recursive descent, as the reference ``read_*.c`` files do. The Lexer matches them as
  Python regexes generated from the rules (:func:`lexer_table_source`, kept in
  :mod:`soldrv.lexer_table`; ``python -m soldrv.grammar`` regenerates it), so that compiling
  needs neither parsimonious nor the grammar built (:func:`grammar` builds it on first use).
* **Structure rules** (``file`` and the statements below it): a whole-file PEG with
  word-boundary keywords and named punctuation. :func:`parse` returns the
  parsimonious syntax tree (with offsets, see :func:`soldrv.errors.line_col`) of a
  well-formed file, or raises :class:`~soldrv.errors.SolfmtError` at the failing place
  (``Syntax error: expected ':', found '1'``). It accepts every file of the example corpus
  and the files the compiler accepts (a property test checks this on mutated corpus files),
  with one approximation: ``Initialize X:`` takes the first non-blank character as its value
  (the compiler skips fill characters until a valid code character). Names are not
  resolved, so some files parse and still fail to compile. It serves tools and tests that
  need the shape of a file without compiling it.

Why the compiler does not compile the whole-file tree: the language is context-sensitive in
ways a PEG cannot express, and the reference fails at exact places with exact messages that
a tree walk after a complete parse cannot reproduce:

1. A name's category (solenoid, DtoA, proxy, routine, undefined) is decided when the token
   is read, from the definitions *above* it; the same undefined word is ``Unexpected token
   in read_mode`` in a mode, ``Illegal token inside routine`` in a routine, ``Syntax Error
   in read_cmd`` at top level. A PEG parse would accept or reject the file before any
   symbol table exists.
2. Pattern lines are raw text decoded with the open/close characters in force *when the
   line is read*, and a routine body is re-read at each invocation with the timelines and
   characters current there; a single tree of the definition cannot carry either.
3. ``Initialize X: c`` consumes exactly one code character and resumes tokens after it;
   set-point names are single raw characters where ``;`` is not a comment.
4. The first error wins: the reference stops at the first bad token (a redefined name, a
   limit reached, an out-of-range value) even when the rest of the file is well formed, and
   its messages name that token's statement, not a grammar rule.

So the compiler reads tokens with the grammar's token rules (one source of truth for the
lexical syntax) and keeps the reference's recursive descent for the context; the
structure rules stay a syntax-only view of the same language.

Lexical rules: whitespace is space, TAB, LF, FF (CR is not); ``;`` comments run to the
end of the line but only where tokens are read; punctuation ``= : { } /``; numbers are hex
``0x..`` (read as C ``scanf("%x")`` reads what follows the ``0x``: blanks, then an optional
sign and an optional second ``0x`` prefix, see :func:`scanf_hex`), octal ``0..``, ``0`` or
decimal (never signed);
character constants ``'c'`` or ``'\c'`` (no escape translation); identifiers
``[A-Za-z_][A-Za-z0-9_]*``, at most 80 characters, case-insensitive.
"""

from __future__ import annotations

import re
from collections import namedtuple

from soldrv import lexer_table
from soldrv.errors import SolfmtError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (import cost)
if TYPE_CHECKING:  # parsimonious is imported when the grammar is first used
    from parsimonious.expressions import Expression
    from parsimonious.grammar import Grammar
    from parsimonious.nodes import Node

KEYWORDS = (
    "solenoid",
    "open",
    "close",
    "resolution",
    "mode",
    "initialize",
    "routine",
    "select",
    "status_bytes",
    "dtoa",
    "proxy",
    "command_set",
)
"""Reserved words (compared case-insensitively), in the reference lexer's order."""

_KW_ALT = " / ".join(f'~r"{k}(?![A-Za-z0-9_])"i' for k in KEYWORDS)

GRAMMAR_TEXT = (
    r"""
    # ---------------- token layer (one reference token at a position) ----------------
    token        = skip tok
    skip         = (blanks / comment)*
    blanks       = ~r"[ \t\n\f]+"
    comment      = ~r";[^\n]*\n?"
    tok          = punct / charconst / badchar_const / hexnum / badhex / octnum / badoct
                 / zero / decnum / ident / eof / badchar
    punct        = ~r"[=:{}/]"
    charconst    = ~r"'\\?[\s\S]'"
    badchar_const = ~r"'\\?[\s\S]?"
    # what C scanf("%x") reads after the lexer's "0x": blanks, a sign, a second 0x prefix
    # (whose '0' alone is a complete number), hex digits
    hexnum       = ~r"0[xX][ \t\n\v\f\r]*[+-]?(?:0[xX][0-9a-fA-F]*|[0-9a-fA-F]+)"
    badhex       = ~r"0[xX]"
    octnum       = ~r"0[0-7]+"
    badoct       = ~r"0(?=[89])"
    zero         = "0"
    decnum       = ~r"[1-9][0-9]*"
    ident        = ~r"[A-Za-z_][A-Za-z0-9_]{0,79}"
    eof          = !~r"[\s\S]"
    badchar      = ~r"[\s\S]"

    # raw readers used after a ':' of a pattern line and inside set-point lists
    rest_of_line = ~r"[^\n]*"
    set_point_entry_char = ~r"[ \t\n\v\f\r]*([^ \t\n\v\f\r])?"

    # ---------------- structure layer (whole-file syntax) ----------------
    file         = (_ stmt)* _ eof
    _            = skip
    stmt         = cmdset / solenoid / openclose / resolution / status_bytes / dtoa
                 / proxy / routine / mode
    cmdset       = kw_command_set _ equals _ charconst
    solenoid     = kw_solenoid _ name _ number _ number _ number
    openclose    = (kw_open / kw_close) _ equals _ charconst
    resolution   = kw_resolution _ equals _ number _ slash _ number
    status_bytes = kw_status_bytes _ lbrace (_ number)* _ rbrace
    dtoa         = kw_dtoa _ name _ number _ lbrace set_point* ws_raw rbrace
    proxy        = kw_proxy _ name _ lbrace set_point* ws_raw rbrace
    set_point    = ws_raw spchar _ colon _ number
    spchar       = ~r"[^ \t\n\v\f\r}]"
    ws_raw       = ~r"[ \t\n\v\f\r]*"
    routine      = kw_routine _ name _ lbrace routine_body _ rbrace
    # the routine pre-scan checks only the first token(s) of a line and skips the rest
    routine_body = (_ routine_line)*
    routine_line = routine_init / patline / skipped_line
    routine_init = kw_initialize _ name _ colon rest_of_line
    skipped_line = (kw_initialize _ name / name) rest_of_line
    mode         = kw_mode _ number _ lbrace body (_ select)? _ rbrace
    body         = (_ body_item)*
    body_item    = initialize / patline / call
    patline      = name _ colon rest_of_line
    # Initialize takes one value character (here: the first non-blank one on the line),
    # then tokens resume: "Initialize A: O ; comment", "mode 3 { Initialize A: O }"
    initialize   = kw_initialize _ name _ colon init_value
    init_value   = ~r"[ \t\v\f\r]*[^\s^]"
    call         = name
    select       = kw_select _ number
    number       = hexnum / octnum / zero / decnum
    name         = !keyword ident
    equals       = "="
    colon        = ":"
    slash        = "/"
    lbrace       = "{"
    rbrace       = "}"
    keyword      = """
    + _KW_ALT
    + "\n"
    + "\n".join(f'    kw_{k} = ~r"{k}(?![A-Za-z0-9_])"i' for k in KEYWORDS)
    + "\n"
)
"""The grammar in parsimonious notation; :data:`GRAMMAR` is built from it on first use."""

_grammar: Grammar | None = None


def grammar() -> Grammar:
    """Return the parsimonious :class:`~parsimonious.grammar.Grammar` of :data:`GRAMMAR_TEXT`.

    Built (and parsimonious imported) on the first call, about 35 ms; later calls return it.
    """
    global _grammar
    if _grammar is None:
        from parsimonious.grammar import Grammar

        _grammar = Grammar(GRAMMAR_TEXT)
    return _grammar


def __getattr__(name: str) -> Grammar:
    """``GRAMMAR`` is built lazily (module attribute access builds it once)."""
    if name == "GRAMMAR":
        return grammar()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Token(namedtuple("_TokenFields", "kind text start end")):
    """One token read by :class:`Lexer`.

    ``kind`` is the grammar rule that matched: ``punct``, ``charconst``, ``hexnum``,
    ``octnum``, ``zero``, ``decnum``, ``ident``, ``eof`` or one of the error kinds
    ``badchar_const``, ``badhex``, ``badoct``, ``badchar``. ``start``/``end`` are offsets of
    the token text (comments and blanks before it excluded). A named tuple: cheap to make.
    Fields: ``kind: str``, ``text: str``, ``start: int``, ``end: int``.
    """

    __slots__ = ()

    @property
    def value(self) -> int:
        """Numeric value of a number token, or the character code of a char constant."""
        if self.kind == "hexnum":
            return scanf_hex(self.text)
        if self.kind == "octnum":
            return int(self.text, 8)
        if self.kind == "zero":
            return 0
        if self.kind == "decnum":
            return int(self.text)
        if self.kind == "charconst":
            return ord(self.text[-2])
        raise ValueError(f"token {self.text!r} ({self.kind}) has no numeric value")

    @property
    def is_number(self) -> bool:
        """True for hex, octal, zero and decimal tokens."""
        return self.kind in ("hexnum", "octnum", "zero", "decnum")

    def is_punct(self, ch: str) -> bool:
        """Return True if this is the punctuation token ``ch`` (one of ``= : { } /``)."""
        return self.kind == "punct" and self.text == ch

    @property
    def keyword(self) -> str | None:
        """The reserved word (lower case) this identifier spells, or None."""
        if self.kind != "ident":
            return None
        low = self.text.lower()
        return low if low in KEYWORDS else None


_C_SPACE = " \t\n\v\f\r"
"""The C ``isspace`` characters (scanf skips them; the lexer's blanks exclude VT and CR)."""


def _hex_parts(text: str) -> tuple[int, str]:
    """Split a ``hexnum`` token into (sign, hex digits without the prefixes; may be "")."""
    body = text[2:].lstrip(_C_SPACE)
    sign = 1
    if body[:1] in "+-" and body:
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body[:2] in ("0x", "0X"):
        body = body[2:]
    return sign, body


def scanf_hex(text: str) -> int:
    """Value of a ``hexnum`` token as the reference lexer gets it.

    ``0x`` then ``fscanf("%x")`` into a C ``int`` (glibc semantics, checked against ``sscanf``).

    scanf skips blanks, takes a sign and a second ``0x`` prefix, then hex digits:
    ``0x0x12`` is 18, ``0x+7`` is 7, ``0x0x`` alone is 0 (the ``0`` of the prefix is the
    number), and ``0x-1`` is -1: the unsigned conversion gives 0xFFFFFFFF, which the ``int``
    holds as -1, so a 16-bit word of the .sft gets 0xFFFF and a v3 code byte 0xFF.
    Magnitudes above :data:`INT_MAX` are refused by the lexer before this is used.
    """
    sign, digits = _hex_parts(text)
    return sign * int(digits or "0", 16)


LEX_ERRORS = {
    "badchar_const": "Character Constant Requires Two Apostrophes",
    "badhex": "Hex Number Syntax Error",
    "badoct": "Octal Number Syntax Error",
    "badchar": "Unknown Character",
}
"""Token kinds that are lexical errors -> the reference error message."""

INT_MAX = 2**31 - 1
"""Largest number the reference lexer stores (C int); larger numbers are syntax errors."""

_OVERFLOW_ERRORS = {
    "hexnum": "Hex Number Syntax Error",
    "octnum": "Octal Number Syntax Error",
    "decnum": "Decimal Number Syntax Error",
}

def _too_big(tok: Token) -> bool:
    """Return True if number token ``tok`` exceeds :data:`INT_MAX`.

    Checked on the digits first, so that a number with thousands of digits is never converted.
    """
    if tok.kind == "zero":
        return False
    digits = _hex_parts(tok.text)[1] if tok.kind == "hexnum" else tok.text
    if len(digits.lstrip("0")) > 11:
        return True
    return abs(tok.value) > INT_MAX


def _lex_hint(text: str) -> str:
    """Return a sentence on how to fix the lexical error on ``text``.

    ``""`` when there is nothing to add.
    """
    if text == "\r":
        return ("a CR (carriage return) is only allowed inside pattern lines, comments and "
                "set-point lists; if the file has DOS/Windows line endings, convert them to "
                "LF (e.g. dos2unix)")
    if text == "#":
        return "comments start with ';' (to the end of the line)"
    return ""


_NEGATIVE_HEX_HINT = (
    "numbers are never negative; the reference compiler (and --compat) reads a signed hex "
    "number such as 0x-1 with C scanf as -1 and writes it as 0xFFFF (0xFF in a v3 code byte)"
)

LEXER_RULES = ("token", "rest_of_line", "set_point_entry_char")
"""The token-layer rules :class:`Lexer` reads with (as regexes of :mod:`soldrv.lexer_table`)."""

_TOKEN_RE = re.compile(lexer_table.TOKEN)
_REST_RE = re.compile(lexer_table.REST_OF_LINE)
_SPCHAR_RE = re.compile(lexer_table.SET_POINT_ENTRY_CHAR)
_TOKEN_MATCH = _TOKEN_RE.match
_NUMBER_KINDS = frozenset(("hexnum", "octnum", "zero", "decnum"))
_new_token = tuple.__new__  # Token(...) without the keyword handling of namedtuple's __new__


class Lexer:
    """Reads tokens and raw text of one .sol source with the grammar's token rules.

    ``pos`` is the current offset; it can be saved and restored (routine bodies are re-read
    from their saved offset at each use). Lexical errors raise :class:`SolfmtError` located
    at the bad token. With ``compat`` a signed hex number (``0x-1``) has the value C
    ``scanf`` gives it (-1); without, a negative one is a ``Hex Number Syntax Error``.
    """

    def __init__(self, text: str, filename: str = "<string>", compat: bool = False):
        self.text = text
        self.filename = filename
        self.compat = compat
        self.pos = 0
        self.last: Token | None = None

    def error(self, message: str, pos: int | None = None, hint: str = "") -> SolfmtError:
        """Return a SolfmtError at ``pos`` (default: the start of the last token)."""
        if pos is None:
            pos = self.last.start if self.last is not None else self.pos
        return SolfmtError.at(message, self.filename, self.text, pos, hint)

    def next(self) -> Token:
        """Read the next token (skipping blanks and comments); raise on a lexical error."""
        text = self.text
        m = _TOKEN_MATCH(text, self.pos)
        # the token pattern ends in catch-all alternatives: it always matches a named group
        assert m is not None and m.lastgroup is not None
        kind = m.lastgroup
        start, end = m.span(kind)
        tok = _new_token(Token, (kind, text[start:end], start, end))
        self.pos = end
        self.last = tok
        if kind in LEX_ERRORS:
            hint = _lex_hint(tok.text)
            if tok.start == 0 and self.text.startswith("\xef\xbb\xbf"):
                hint = ("the file starts with a UTF-8 byte-order mark (BOM); save it without "
                        "one")
            raise self.error(LEX_ERRORS[kind], tok.start, hint)
        if kind in _NUMBER_KINDS and _too_big(tok):
            # C scanf into an int would overflow: undefined in the reference, an error here
            raise self.error(_OVERFLOW_ERRORS[kind], tok.start,
                             f"numbers must not exceed {INT_MAX} (a C int)")
        if kind == "hexnum" and not self.compat and tok.value < 0:
            raise self.error("Hex Number Syntax Error", tok.start, _NEGATIVE_HEX_HINT)
        return tok

    def rest_of_line(self) -> tuple[str, int]:
        """Read raw characters up to (and consuming) the next LF or EOF.

        Returns (text without the LF, offset of its first character).
        """
        m = _REST_RE.match(self.text, self.pos)
        assert m is not None  # matches the empty string too
        start = self.pos
        self.pos = m.end()
        if self.pos < len(self.text):
            self.pos += 1  # the LF
        return m.group(), start

    def set_point_char(self) -> tuple[str | None, int]:
        """Skip C-isspace characters and read one raw character (None at EOF).

        Used for the set-point names of DtoA and Proxy lists, where ``;`` is not a comment.
        Returns (character or None, its offset).
        """
        m = _SPCHAR_RE.match(self.text, self.pos)
        assert m is not None  # matches the empty string too
        text = m.group()
        self.pos = end = m.end()
        if not text or text[-1] in _C_SPACE:
            return None, end
        return text[-1], end - 1


_NUMBER = "a number (decimal, 0-octal or 0x-hex)"
_EXPECTED = {
    "number": _NUMBER,
    "hexnum": _NUMBER,
    "octnum": _NUMBER,
    "zero": _NUMBER,
    "decnum": _NUMBER,
    "charconst": "a character constant such as 'O'",
    "name": "a name",
    "ident": "a name",
    "select": "'}' to end the mode",
    "rbrace": "'}'",
    "lbrace": "'{'",
    "colon": "':'",
    "equals": "'='",
    "slash": "'/'",
    "body_item": "a pattern line (NAME: ...), Initialize or a routine name",
    "init_value": "the value character of Initialize on the same line",
    "file": "a statement (solenoid, DtoA, Proxy, open, close, resolution, status_bytes, "
    "Command_Set, routine or mode)",
    "eof": "a statement or the end of the file",
}
"""Grammar rule -> what :func:`parse` says was expected where it failed."""


def _found(text: str, pos: int) -> str:
    """Return the text at ``pos`` for a syntax message.

    The next word or character, or end of file.
    """
    rest = text[pos:].lstrip(" \t\n\f")
    if not rest:
        return "end of file"
    word = rest.split(None, 1)[0][:20]
    return repr(word)


def parse(text: str, filename: str = "<string>") -> Node:
    """Parse a whole .sol text with the structure rules and return the syntax tree.

    Syntax only: names are not resolved, routine calls are not expanded, so a file can
    parse and still fail to compile (an undefined name, a routine whose pre-scan fails).

    Parameters
    ----------
    text : str
        The .sol source.
    filename : str, optional
        The name messages give the source.

    Returns
    -------
    parsimonious.nodes.Node
        The syntax tree.

    Raises
    ------
    SolfmtError
        With file:line:column, where the text stops matching the grammar, e.g.
        ``Syntax error: expected a number (...), found 'x'``.
    """
    from parsimonious.exceptions import IncompleteParseError, ParseError

    try:
        return grammar()["file"].parse(text)
    except (IncompleteParseError, ParseError) as e:
        rule = e.expr.name if e.expr is not None else ""
        found = _found(text, e.pos)
        if rule in _EXPECTED:
            message = f"Syntax error: expected {_EXPECTED[rule]}, found {found}"
        else:
            message = f"Syntax error: unexpected {found}"
        raise SolfmtError.at(message, filename, text, e.pos) from None


def statements(tree: Node) -> list[tuple[str, Node]]:
    """Return (statement rule name, node) for every top-level statement of a :func:`parse` tree."""
    out = []
    for item in tree.children[0].children:
        stmt = item.children[1].children[0]
        out.append((stmt.expr_name, stmt))
    return out


# ---------------------------------------------------------------- the lexer table


def _regex_of(expr: Expression) -> str:
    """Return a Python regex matching exactly what parsimonious expression ``expr`` matches.

    PEG semantics are kept: a parsimonious regex or ordered choice never gives back what it
    matched (atomic groups), quantifiers are possessive. Rule references are already
    resolved in a built grammar.
    """
    from parsimonious.expressions import Literal, Lookahead, OneOf, Quantifier, Regex, Sequence

    if isinstance(expr, Regex):
        flags = expr.re.flags & (re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE)
        pattern = expr.re.pattern
        inline = "".join(f for f, bit in (("i", re.IGNORECASE), ("m", re.MULTILINE),
                                           ("s", re.DOTALL), ("x", re.VERBOSE)) if flags & bit)
        return f"(?>(?{inline}:{pattern}))" if inline else f"(?>{pattern})"
    if isinstance(expr, Literal):
        return re.escape(expr.literal)
    if isinstance(expr, Sequence):
        return "".join(_regex_of(m) for m in expr.members)
    if isinstance(expr, OneOf):
        return "(?>" + "|".join(_regex_of(m) for m in expr.members) + ")"
    if isinstance(expr, Lookahead):
        return ("(?!" if expr.negativity else "(?=") + _regex_of(expr.members[0]) + ")"
    if isinstance(expr, Quantifier):
        hi = "" if expr.max == float("inf") else str(expr.max)
        return f"(?:{_regex_of(expr.members[0])}){{{expr.min},{hi}}}+"
    raise TypeError(f"no regex for grammar expression {expr!r}")


def lexer_table_source() -> str:
    """Return the text of :mod:`soldrv.lexer_table`, derived from the token rules of the grammar.

    ``TOKEN`` is ``token = skip tok`` with one named group per alternative of ``tok`` (the
    group that matched is the token kind); ``REST_OF_LINE`` and ``SET_POINT_ENTRY_CHAR`` are
    the raw readers. Regenerate with ``python -m soldrv.grammar`` after editing the token
    rules; a test fails while the file is out of date.
    """
    g = grammar()
    skip, tok = g["token"].members
    # one piece per line in the file: the skip, then each alternative as a named group
    token = [_regex_of(skip) + "(?>"]
    token += [("|" if i else "") + f"(?P<{m.name}>{_regex_of(m)})"
              for i, m in enumerate(tok.members)]
    token.append(")")
    table = {
        "TOKEN": token,
        "REST_OF_LINE": [_regex_of(g["rest_of_line"])],
        "SET_POINT_ENTRY_CHAR": [_regex_of(g["set_point_entry_char"])],
    }
    if set(re.compile("".join(token)).groupindex) != {m.name for m in tok.members}:
        raise ValueError("a token rule regex has a capture group: use (?:...)")
    lines = [
        '"""Lexer regexes generated from the token rules of :data:`soldrv.grammar.GRAMMAR_TEXT`.',
        "",
        "Do not edit: regenerate with ``python -m soldrv.grammar`` (a test checks this file is",
        "current). :class:`soldrv.grammar.Lexer` reads with them, so that compiling needs",
        "neither parsimonious nor the grammar built.",
        '"""',
        "",
    ]
    for name, pieces in table.items():
        if len(pieces) == 1:
            lines.append(f"{name} = {pieces[0]!r}")
        else:
            lines += [f"{name} = ("] + [f"    {p!r}" for p in pieces] + [")"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from pathlib import Path

    target = Path(__file__).with_name("lexer_table.py")
    target.write_text(lexer_table_source())
    print(f"wrote {target}")
