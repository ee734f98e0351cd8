r"""Parsimonious grammar of the solenoid-cycle language (.sol), spec §2 and §2.10.

Two layers share one :data:`GRAMMAR`:

* **Token rules** (``token``, ``rest_of_line``, ``set_point_entry_char``): what the reference
  lexer (``get_tokens.c``) reads at one position. The compiler (:mod:`soldrv.compiler`) pulls
  tokens through :class:`Lexer`, which matches these rules at the current offset. This keeps
  the context-sensitive parts of the language exact: define-before-use (names are classified
  when read), pattern lines and set-point names read as raw characters, routine bodies
  re-parsed at each use, and every reference error message at the token where the reference
  compiler stops.
* **Structure rules** (``file`` and the statements below it): the whole-file PEG of spec
  §2.10 with word-boundary keywords. :func:`parse` returns the parsimonious syntax tree (with
  offsets, see :func:`soldrv.errors.line_col`) of a well-formed file; it checks syntax only
  (no symbol table), and raises :class:`~soldrv.errors.SolfmtError` at the failing place.

Lexical rules (§2.1): whitespace is space, TAB, LF, FF (CR is not); ``;`` comments run to the
end of the line but only where tokens are read; punctuation ``= : { } /``; numbers are hex
``0x..`` (blanks allowed after ``0x``), octal ``0..``, ``0`` or decimal, never signed;
character constants ``'c'`` or ``'\c'`` (no escape translation); identifiers
``[A-Za-z_][A-Za-z0-9_]*``, at most 80 characters, case-insensitive.
"""

from __future__ import annotations

from dataclasses import dataclass

from parsimonious.exceptions import IncompleteParseError, ParseError
from parsimonious.grammar import Grammar
from parsimonious.nodes import Node

from soldrv.errors import SolfmtError

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

GRAMMAR = Grammar(
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
    hexnum       = ~r"0[xX][ \t\n\v\f\r]*[0-9a-fA-F]+"
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

    # ---------------- structure layer (spec 2.10) ----------------
    file         = (_ stmt)* _ eof
    _            = skip
    stmt         = cmdset / solenoid / openclose / resolution / status_bytes / dtoa
                 / proxy / routine / mode
    cmdset       = kw_command_set _ "=" _ charconst
    solenoid     = kw_solenoid _ name _ number _ number _ number
    openclose    = (kw_open / kw_close) _ "=" _ charconst
    resolution   = kw_resolution _ "=" _ number _ "/" _ number
    status_bytes = kw_status_bytes _ "{" (_ number)* _ "}"
    dtoa         = kw_dtoa _ name _ number _ "{" set_point* ws_raw "}"
    proxy        = kw_proxy _ name _ "{" set_point* ws_raw "}"
    set_point    = ws_raw spchar _ ":" _ number
    spchar       = ~r"[^ \t\n\v\f\r}]"
    ws_raw       = ~r"[ \t\n\v\f\r]*"
    routine      = kw_routine _ name _ "{" body _ "}"
    mode         = kw_mode _ number _ "{" body (_ select)? _ "}"
    body         = (_ body_item)*
    body_item    = initialize / patline / call
    patline      = name _ ":" rest_of_line
    initialize   = kw_initialize _ name _ ":" rest_of_line
    call         = name
    select       = kw_select _ number
    number       = hexnum / octnum / zero / decnum
    name         = !keyword ident
    keyword      = """
    + _KW_ALT
    + "\n"
    + "\n".join(f'    kw_{k} = ~r"{k}(?![A-Za-z0-9_])"i' for k in KEYWORDS)
    + "\n"
)


@dataclass(frozen=True)
class Token:
    """One token read by :class:`Lexer`.

    ``kind`` is the grammar rule that matched: ``punct``, ``charconst``, ``hexnum``,
    ``octnum``, ``zero``, ``decnum``, ``ident``, ``eof`` or one of the error kinds
    ``badchar_const``, ``badhex``, ``badoct``, ``badchar``. ``start``/``end`` are offsets of
    the token text (comments and blanks before it excluded).
    """

    kind: str
    text: str
    start: int
    end: int

    @property
    def value(self) -> int:
        """Numeric value of a number token, or the character code of a char constant."""
        if self.kind == "hexnum":
            return int(self.text[2:].lstrip(" \t\n\v\f\r"), 16)
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
        """True if this is the punctuation token ``ch`` (one of ``= : { } /``)."""
        return self.kind == "punct" and self.text == ch

    @property
    def keyword(self) -> str | None:
        """The reserved word (lower case) this identifier spells, or None."""
        if self.kind != "ident":
            return None
        low = self.text.lower()
        return low if low in KEYWORDS else None


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

_C_SPACE = " \t\n\v\f\r"
_TOKEN_RULE = GRAMMAR["token"]
_REST_RULE = GRAMMAR["rest_of_line"]
_SPCHAR_RULE = GRAMMAR["set_point_entry_char"]


class Lexer:
    """Reads tokens and raw text of one .sol source with the grammar's token rules.

    ``pos`` is the current offset; it can be saved and restored (routine bodies are re-read
    from their saved offset at each use). Lexical errors raise :class:`SolfmtError` located
    at the bad token.
    """

    def __init__(self, text: str, filename: str = "<string>"):
        self.text = text
        self.filename = filename
        self.pos = 0
        self.last: Token | None = None

    def error(self, message: str, pos: int | None = None) -> SolfmtError:
        """Return a SolfmtError at ``pos`` (default: the start of the last token)."""
        if pos is None:
            pos = self.last.start if self.last is not None else self.pos
        return SolfmtError.at(message, self.filename, self.text, pos)

    def next(self) -> Token:
        """Read the next token (skipping blanks and comments); raise on a lexical error."""
        node = _TOKEN_RULE.match(self.text, self.pos)
        tok_node = node.children[1].children[0]
        kind = tok_node.expr_name
        tok = Token(kind, tok_node.text, tok_node.start, tok_node.end)
        self.pos = node.end
        self.last = tok
        if kind in LEX_ERRORS:
            raise self.error(LEX_ERRORS[kind], tok.start)
        if tok.is_number and tok.value > INT_MAX:
            # C scanf into an int would overflow: undefined in the reference, an error here
            raise self.error(_OVERFLOW_ERRORS[kind], tok.start)
        return tok

    def rest_of_line(self) -> tuple[str, int]:
        """Read raw characters up to (and consuming) the next LF or EOF.

        Returns (text without the LF, offset of its first character).
        """
        node = _REST_RULE.match(self.text, self.pos)
        start = self.pos
        self.pos = node.end
        if self.pos < len(self.text):
            self.pos += 1  # the LF
        return node.text, start

    def set_point_char(self) -> tuple[str | None, int]:
        """Skip C-isspace characters and read one raw character (None at EOF).

        Used for the set-point names of DtoA and Proxy lists, where ``;`` is not a comment.
        Returns (character or None, its offset).
        """
        node = _SPCHAR_RULE.match(self.text, self.pos)
        self.pos = node.end
        if not node.text or node.text[-1] in _C_SPACE:
            return None, node.end
        return node.text[-1], node.end - 1


def parse(text: str, filename: str = "<string>") -> Node:
    """Parse a whole .sol text with the structure rules and return the syntax tree.

    Syntax only: names are not resolved, routine calls are not expanded. Raises
    :class:`SolfmtError` (file:line:column) where the text stops matching the grammar.
    """
    try:
        return GRAMMAR["file"].parse(text)
    except IncompleteParseError as e:
        raise SolfmtError.at("Syntax error (text not matched by the grammar)", filename, text,
                             e.pos) from None
    except ParseError as e:
        rule = e.expr.name if e.expr is not None and e.expr.name else "statement"
        raise SolfmtError.at(f"Syntax error (expected {rule})", filename, text, e.pos) from None


def statements(tree: Node) -> list[tuple[str, Node]]:
    """Return (statement rule name, node) for every top-level statement of a :func:`parse` tree."""
    out = []
    for item in tree.children[0].children:
        stmt = item.children[1].children[0]
        out.append((stmt.expr_name, stmt))
    return out
