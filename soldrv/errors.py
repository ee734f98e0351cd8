"""Errors and warnings of the solfmt compiler, located as ``file:line:column``."""

from __future__ import annotations

from dataclasses import dataclass


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
    """Return the text of the line holding offset ``pos`` (without its LF, CR shown as \\r)."""
    pos = max(0, min(pos, len(text)))
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    if end < 0:
        end = len(text)
    return text[start:end].replace("\r", "\\r")


class SolfmtError(Exception):
    """A fatal error in a .sol source: ``file:line:column: message`` plus the offending line.

    Attributes: ``filename``, ``line`` and ``column`` (1-based; 0 when not tied to a place),
    ``message`` (the reference compiler's message text, e.g. ``"Unknown Character"``) and
    ``text`` (the source line, or "").
    """

    def __init__(
        self,
        message: str,
        filename: str = "<string>",
        line: int = 0,
        column: int = 0,
        text: str = "",
    ):
        self.message = message
        self.filename = filename
        self.line = line
        self.column = column
        self.text = text
        super().__init__(self.__str__())

    @classmethod
    def at(cls, message: str, filename: str, source: str, pos: int) -> SolfmtError:
        """Build an error located at character offset ``pos`` of ``source``."""
        line, col = line_col(source, pos)
        return cls(message, filename, line, col, source_line(source, pos))

    def __str__(self) -> str:
        if not self.line:
            return f"{self.filename}: {self.message}"
        head = f"{self.filename}:{self.line}:{self.column}: {self.message}"
        if not self.text:
            return head
        caret = " " * (max(self.column, 1) - 1) + "^"
        return f"{head}\n    {self.text}\n    {caret}"


@dataclass(frozen=True)
class SolfmtWarning:
    """A non-fatal diagnostic: where (file, line, column; 0 if none) and what (``message``).

    ``kind`` names the class: ``"reference"`` (the reference compiler prints it too, e.g.
    proxy-id reuse or an irrational resolution) or ``"differs"`` (the default behaviour
    differs from the reference compiler here, naming the bug it fixes).
    """

    message: str
    filename: str = ""
    line: int = 0
    column: int = 0
    kind: str = "reference"

    def __str__(self) -> str:
        where = f"{self.filename}:{self.line}:{self.column}: " if self.line else (
            f"{self.filename}: " if self.filename else ""
        )
        return f"{where}warning: {self.message}"
