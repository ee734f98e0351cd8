"""Lexer regexes generated from the token rules of :data:`soldrv.grammar.GRAMMAR_TEXT`.

Do not edit: regenerate with ``python -m soldrv.grammar`` (a test checks this file is
current). :class:`soldrv.grammar.Lexer` reads with them, so that compiling needs
neither parsimonious nor the grammar built.
"""

TOKEN = (
    '(?:(?>(?>[ \\t\\n\\f]+)|(?>;[^\\n]*\\n?))){0,}+(?>'
    '(?P<punct>(?>[=:{}/]))'
    "|(?P<charconst>(?>'\\\\?[\\s\\S]'))"
    "|(?P<badchar_const>(?>'\\\\?[\\s\\S]?))"
    '|(?P<hexnum>(?>0[xX][ \\t\\n\\v\\f\\r]*[+-]?(?:0[xX][0-9a-fA-F]*|[0-9a-fA-F]+)))'
    '|(?P<badhex>(?>0[xX]))'
    '|(?P<octnum>(?>0[0-7]+))'
    '|(?P<badoct>(?>0(?=[89])))'
    '|(?P<zero>0)'
    '|(?P<decnum>(?>[1-9][0-9]*))'
    '|(?P<ident>(?>[A-Za-z_][A-Za-z0-9_]{0,79}))'
    '|(?P<eof>(?!(?>[\\s\\S])))'
    '|(?P<badchar>(?>[\\s\\S]))'
    ')'
)
REST_OF_LINE = '(?>[^\\n]*)'
SET_POINT_ENTRY_CHAR = '(?>[ \\t\\n\\v\\f\\r]*([^ \\t\\n\\v\\f\\r])?)'
