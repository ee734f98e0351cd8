"""The lexer regexes in soldrv/lexer_table.py are generated from the grammar's token rules and
read exactly what those rules read (parsimonious stays the one description of the syntax)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soldrv import grammar, lexer_table

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "sol_examples"
TABLE = Path(grammar.__file__).with_name("lexer_table.py")


def test_lexer_table_is_current():
    assert TABLE.read_text() == grammar.lexer_table_source(), (
        "soldrv/lexer_table.py is out of date: run python -m soldrv.grammar"
    )


def _by_grammar(text: str, pos: int) -> tuple[str, int, int, int]:
    """(kind, token start, token end, end) read by the parsimonious token rule at ``pos``."""
    node = grammar.GRAMMAR["token"].match(text, pos)
    tok = node.children[1].children[0]
    return tok.expr_name, tok.start, tok.end, node.end


def _by_table(text: str, pos: int) -> tuple[str, int, int, int]:
    m = grammar._TOKEN_RE.match(text, pos)
    return m.lastgroup, m.start(m.lastgroup), m.end(m.lastgroup), m.end()


def _raw(rule: str, regex, text: str, pos: int) -> tuple[int, int]:
    node = grammar.GRAMMAR[rule].match(text, pos)
    m = regex.match(text, pos)
    return (node.end, m.end())


# characters that matter to the token rules, plus a few that do not
ALPHABET = " \t\n\v\f\r;=:{}/'\\0123456789abcdefxXgG_+-^#é"


@settings(max_examples=300, deadline=None)
@given(st.text(ALPHABET, max_size=40), st.data())
def test_table_reads_what_the_grammar_reads(text, data):
    pos = data.draw(st.integers(0, len(text)))
    assert _by_table(text, pos) == _by_grammar(text, pos)
    rest = _raw("rest_of_line", grammar._REST_RE, text, pos)
    spchar = _raw("set_point_entry_char", grammar._SPCHAR_RE, text, pos)
    assert rest[0] == rest[1] and spchar[0] == spchar[1]


@pytest.mark.parametrize(
    "text",
    ["0x0x12 ", "0x-1", "0x+7;c", "0x 0X1f", "0x0x", "0x0xg", "0x-", "0x- 1", "00x5", "08",
     "'a'", "'\\''", "'ab", "; only a comment", "", "N" * 85],
)
def test_table_and_grammar_agree_on_tricky_tokens(text):
    pos = 0
    while True:  # every token of the text, until the end
        got = _by_table(text, pos)
        assert got == _by_grammar(text, pos)
        if got[0] == "eof" or got[3] == pos:
            break
        pos = got[3]


def test_table_and_grammar_agree_on_every_corpus_token():
    files = sorted(CORPUS.glob("*.sol"))
    if not files:
        pytest.skip(f"solenoid corpus not found at {CORPUS}")
    for path in files:
        text = path.read_bytes().decode("latin-1")
        pos = 0
        while True:  # token by token (pattern lines read as tokens: every kind appears)
            got = _by_table(text, pos)
            assert got == _by_grammar(text, pos), (path.name, pos)
            if got[0] == "eof":
                break
            pos = got[3]


def test_compiling_imports_neither_parsimonious_nor_builds_the_grammar():
    code = ("import sys; from soldrv.compiler import compile_text; "
            "compile_text('solenoid A 1 2 3\\nmode 0 {\\n A: O_\\n}\\n'); "
            "import soldrv.grammar as g; "
            "print('parsimonious' in sys.modules, g._grammar is None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.split() == ["False", "True"]
    assert lexer_table.TOKEN.startswith("(?:")
