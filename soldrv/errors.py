"""Errors and warnings of the solfmt compiler, located as ``file:line:column``."""

from __future__ import annotations

from collections import namedtuple


def line_col(text: str, pos: int) -> tuple[int, int]:
    """Return the 1-based (line, column) of character offset ``pos`` in ``text``.

    Lines are counted by LF, as the reference compiler does. ``pos`` beyond the end gives the
    position just after the last character.
    """
    pos = max(0, min(pos, len(text)))
    line = text.count("\n", 0, pos) + 1
    start = text.rfind("\n", 0, pos) + 1
    return line, pos - start + 1


def source_line(text: str, pos: int) -> str:
    """Return the raw text of the line holding offset ``pos`` (without its LF)."""
    pos = max(0, min(pos, len(text)))
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    if end < 0:
        end = len(text)
    return text[start:end]


SHOW_WIDTH = 100
"""Longest excerpt of a source line shown under an error message, in characters."""


def render_line(line: str, column: int) -> tuple[str, int]:
    r"""Return (printable excerpt of ``line``, 0-based display offset of 1-based ``column``).

    TABs are expanded to 8-column stops, CR is shown as ``\r`` and other control or
    non-printable characters as ``\xNN``, so the excerpt is safe for a terminal and a caret
    at the returned offset sits under the character of ``column``. A line longer than
    :data:`SHOW_WIDTH` is cut to a window around that character, marked with ``...``.
    """
    window = 4 * SHOW_WIDTH
    if len(line) > 2 * window:
        # a very long line (a 4.8 MB pattern line): only a raw window around the column is
        # rendered (and cut again below), never the whole line; TAB stops count from it
        lo = max(0, min(column - 1, len(line)) - window)
        return render_line(line[lo:column - 1 + window], column - lo)
    shown: list[str] = []
    width = 0
    caret = None
    for i, ch in enumerate(line):
        if i == column - 1:
            caret = width
        if ch == "\t":
            piece = " " * (8 - width % 8)
        elif ch == "\r":
            piece = "\\r"
        elif not ch.isprintable():
            piece = f"\\x{ord(ch):02x}"
        else:
            piece = ch
        shown.append(piece)
        width += len(piece)
    if caret is None:
        caret = width + max(0, column - 1 - len(line))
    text = "".join(shown)
    if len(text) > SHOW_WIDTH:
        # cut on whole pieces (never inside an escape) to a window around the caret
        lo = max(0, min(caret - SHOW_WIDTH // 2, len(text) - SHOW_WIDTH))
        kept: list[str] = []
        first = None
        pos = 0
        for piece in shown:
            if pos >= lo and pos + len(piece) <= lo + SHOW_WIDTH:
                if first is None:
                    first = pos
                kept.append(piece)
            pos += len(piece)
        first = lo if first is None else first
        body = "".join(kept)
        prefix = "..." if first > 0 else ""
        suffix = "..." if first + len(body) < len(text) else ""
        text = prefix + body + suffix
        caret = caret - first + len(prefix)
    return text, caret


class SolfmtError(Exception):
    """A fatal error in a .sol source: ``file:line:column: message`` plus the offending line.

    Attributes: ``filename``, ``line`` and ``column`` (1-based; 0 when not tied to a place),
    ``message`` (the reference compiler's message text, e.g. ``"Unknown Character"``),
    ``text`` (the raw source line, or "") and ``hint`` (an extra sentence on how to fix it,
    or ""). ``str()`` gives the message line, the source line made printable
    (:func:`render_line`) with a caret under the column, then the hint. ``warnings`` holds
    the :class:`SolfmtWarning` list given before the error (filled by the compiler).
    """

    def __init__(
        self,
        message: str,
        filename: str = "<string>",
        line: int = 0,
        column: int = 0,
        text: str = "",
        hint: str = "",
    ):
        self.message = message
        self.filename = filename
        self.line = line
        self.column = column
        self.text = text
        self.hint = hint
        self.warnings: list[SolfmtWarning] = []
        super().__init__(self.__str__())

    @classmethod
    def at(cls, message: str, filename: str, source: str, pos: int, hint: str = "") -> SolfmtError:
        """Build an error located at character offset ``pos`` of ``source``."""
        line, col = line_col(source, pos)
        return cls(message, filename, line, col, source_line(source, pos), hint)

    def __str__(self) -> str:
        """Format as ``file:line:col: message``, then the source line with a caret and the note."""
        if not self.line:
            head = f"{self.filename}: {self.message}"
        else:
            head = f"{self.filename}:{self.line}:{self.column}: {self.message}"
            if self.text:
                shown, caret = render_line(self.text, max(self.column, 1))
                head += f"\n    {shown}\n    {' ' * caret}^"
        if self.hint:
            head += f"\n    note: {self.hint}"
        return head


class SolfmtWarning(
    namedtuple("_WarningFields", "message filename line column kind",
               defaults=("", 0, 0, "reference"))
):
    """A non-fatal diagnostic: where (file, line, column; 0 if none) and what (``message``).

    ``kind`` names the class: ``"reference"`` (the reference compiler prints it too, e.g.
    proxy-id reuse or an irrational resolution), ``"differs"`` (the default behaviour
    differs from the reference compiler here, naming the bug it fixes) or ``"inexact"``
    (default mode only: the output is the reference's, but not what the source asks for,
    e.g. a resolution of 10000/1 s that becomes 2501 x 65509/16384 s per step).
    An immutable named tuple (``message``, ``filename``, ``line``, ``column``, ``kind``).
    """

    __slots__ = ()

    def __str__(self) -> str:
        """Format as ``file:line:col: warning: message`` (the location left out when unknown)."""
        where = f"{self.filename}:{self.line}:{self.column}: " if self.line else (
            f"{self.filename}: " if self.filename else ""
        )
        return f"{where}warning: {self.message}"
