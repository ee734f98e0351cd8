"""Sphinx directives that generate reference pages from the code, so the docs cannot drift.

``command-options``
    The options of one command of ``[project.scripts]``, taken from the very
    :class:`argparse.ArgumentParser` its entry point builds: the entry point is called with an
    empty command line while ``ArgumentParser.parse_args`` is replaced by a hook that hands
    the parser over and stops. (``solfmt`` and ``soldump`` follow the reference compiler's
    hand-written command line; their ``--help`` text is shown instead.)

``protocol-table``
    The alarm codes and the run-mode and phase enumerations of :mod:`ophyd_cs800.protocol`.

``pv-table``
    The PV tables of a controller group, built from the IOC's own tables
    (:data:`sim_ioc.pvs.STATUS_PVS`, :mod:`sim_ioc.records`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

DISTRIBUTION = "ophyd-cs800"


class _Captured(Exception):
    """Raised by the ``parse_args`` hook to carry the parser out of an entry point."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


@contextlib.contextmanager
def _capturing_parsers() -> Iterator[None]:
    original = argparse.ArgumentParser.parse_args

    def hook(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Captured(self)

    argparse.ArgumentParser.parse_args = hook  # type: ignore[method-assign]
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]


def entry_point(script: str) -> Callable[..., Any]:
    """Return the function behind console script ``script`` of this distribution."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="console_scripts", name=script):
        if ep.dist is None or ep.dist.name.replace("_", "-") == DISTRIBUTION:
            module, _, attr = ep.value.partition(":")
            return getattr(importlib.import_module(module), attr)
    raise LookupError(f"{script} is not a console script of {DISTRIBUTION} (is it installed?)")


def command_parser(script: str) -> argparse.ArgumentParser | None:
    """Return the argparse parser the entry point of ``script`` builds, or None if it uses none."""
    main = entry_point(script)
    with _capturing_parsers(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        try:
            main([])
        except _Captured as captured:
            return captured.parser
    return None


def command_help_text(script: str) -> str:
    """Return what ``script --help`` prints (for commands without an argparse parser)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        with contextlib.suppress(SystemExit):
            entry_point(script)(["--help"])
    return out.getvalue().strip()


def _option_term(action: argparse.Action) -> str:
    if not action.option_strings:
        return action.metavar or action.dest
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    metavar = action.metavar or (
        "{" + ",".join(map(str, action.choices)) + "}" if action.choices else action.dest.upper())
    return ", ".join(f"{opt} {metavar}" for opt in action.option_strings)


def _option_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help:
        return ""
    formatter = parser._get_formatter()
    return " ".join(formatter._expand_help(action).split())


def _paragraph(text: str) -> nodes.paragraph:
    return nodes.paragraph(text, text)


class CommandOptions(SphinxDirective):
    """``.. command-options:: cs800-ioc``: usage, description and every option of a command."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        """Build the usage block, the description and the list of options."""
        script = self.arguments[0]
        parser = command_parser(script)
        if parser is None:
            text = command_help_text(script)
            return [nodes.literal_block(text, text)]
        usage = parser.format_usage().strip()
        result: list[nodes.Node] = [nodes.literal_block(usage, usage)]
        if parser.description:
            result.append(_paragraph(" ".join(parser.description.split())))
        items = nodes.definition_list()
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            term = nodes.term()
            term += nodes.literal(_option_term(action), _option_term(action))
            definition = nodes.definition()
            definition += _paragraph(_option_help(parser, action) or "(no description)")
            items += nodes.definition_list_item("", term, definition)
        result.append(items)
        return result


def _table(header: Sequence[str], rows: Sequence[Sequence[str]],
           widths: Sequence[int]) -> nodes.table:
    table = nodes.table()
    group = nodes.tgroup(cols=len(header))
    table += group
    for w in widths:
        group += nodes.colspec(colwidth=w)

    def row(cells: Sequence[str]) -> nodes.row:
        r = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            entry += _paragraph(cell)
            r += entry
        return r

    thead = nodes.thead()
    thead += row(header)
    group += thead
    tbody = nodes.tbody()
    for cells in rows:
        tbody += row(cells)
    group += tbody
    return table


def status_pv_rows() -> list[list[str]]:
    """One row per status PV of a controller group: name, record, id, units, range, what."""
    from sim_ioc.pvs import STATUS_PVS

    rows = []
    for pv in STATUS_PVS:
        limits = f"{pv.low:g} .. {pv.high:g}" if pv.high != pv.low else ""
        states = ", ".join(pv.enum_strings)
        rows.append([pv.suffix, pv.record, str(pv.pid), pv.units, limits or states, pv.doc])
    return rows


def record_rows() -> list[list[str]]:
    """Return the 86 records of ``Oxford_CS800.db``, grouped by what they are."""
    from sim_ioc import records as R
    from sim_ioc.pvs import STATUS_PVS

    groups = [
        ("control", R.CONTROL_RECORDS),
        ("status", tuple(pv.suffix for pv in STATUS_PVS)),
        ("command parameter", tuple(R.PARAM_ESLO) + ("TURBO",)),
        ("action", R.ACTION_RECORDS),
        ("byte-split helper", R.HELPER_RECORDS),
        ("asyn command port", (R.COMMAND_PORT_RECORD,)),
    ]
    listed = [name for _, names in groups for name in names]
    assert sorted(listed) == sorted(R.C_IOC_RECORDS), "record groups out of date"
    return [[kind, str(len(names)), " ".join(names)] for kind, names in groups]


class PvTable(SphinxDirective):
    """``.. pv-table:: status`` (every status PV) or ``.. pv-table:: records`` (the 86)."""

    required_arguments = 1
    option_spec = {"class": directives.class_option}

    def run(self) -> list[nodes.Node]:
        """Build the table named by the argument."""
        kind = self.arguments[0]
        if kind == "status":
            return [_table(["PV", "record", "id", "units", "display range / states", "what"],
                           status_pv_rows(), [14, 8, 6, 8, 18, 40])]
        if kind == "records":
            from sim_ioc.records import C_IOC_RECORDS

            rows = record_rows()
            total = f"{len(C_IOC_RECORDS)} records per controller, after $(P)$(R):"
            return [_paragraph(total), _table(["kind", "count", "records"], rows, [18, 6, 70])]
        raise self.error(f"pv-table: unknown table {kind!r}; use 'status' or 'records'")


class ProtocolTable(SphinxDirective):
    """``.. protocol-table:: alarms`` (or ``run-modes``, ``phases``) from the protocol module."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        """Build the table named by the argument."""
        from ophyd_cs800 import protocol as P

        kind = self.arguments[0]
        if kind == "alarms":
            rows = [[str(a.code), str(a.level), a.text, a.description]
                    for a in P.ALARMS.values()]
            return [_table(["code", "level", "text", "meaning"], rows, [6, 6, 30, 50])]
        if kind in ("run-modes", "phases"):
            enum, strings = ((P.RunMode, P.RUN_MODE_STRINGS) if kind == "run-modes"
                             else (P.Phase, P.PHASE_STRINGS))
            rows = [[str(member.value), member.name, strings[member.value]] for member in enum]
            return [_table(["value", "name in Python", "PV string"], rows, [8, 20, 20])]
        raise self.error(f"protocol-table: unknown table {kind!r}; use alarms, run-modes "
                         "or phases")


#: ``|TEMP - target|``: an absolute value written in plain text (docstrings are read with
#: ``help()`` too); reStructuredText would take it for a substitution reference.
_ABSOLUTE_VALUE = re.compile(r"(?<![`|])\|([A-Za-z_][^|`\n]*? [-+] [^|`\n]*?)\|(?![`|])")


def literal_absolute_values(app: Sphinx, what: str, name: str, obj: Any, options: Any,
                            lines: list[str]) -> None:
    """``autodoc-process-docstring`` hook: show ``|a - b|`` in docstrings as literal text."""
    for i, line in enumerate(lines):
        lines[i] = _ABSOLUTE_VALUE.sub(r"``|\1|``", line)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directives and the docstring hook."""
    app.connect("autodoc-process-docstring", literal_absolute_values)
    app.add_directive("command-options", CommandOptions)
    app.add_directive("pv-table", PvTable)
    app.add_directive("protocol-table", ProtocolTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
