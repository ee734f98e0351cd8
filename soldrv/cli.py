"""Command-line entry points ``solfmt`` (compile .sol -> .sft) and ``soldump`` (dump an .sft).

``solfmt [-v] [--format 3|4] [--compat] file... [-oOUT]`` follows the reference command
line: options may come anywhere and only their second character counts (``-v``/``-V``,
``-oNAME`` with the name attached); input names without an extension get ``.sol``; the output
defaults to the first input with its extension replaced by ``.sft``; ``-o`` names without an
extension get ``.sft``; several inputs are read one after another with shared state. On
success it prints ``Output written to file NAME``. Errors go to stderr as
``file:line:column: message`` with the offending line, and the exit status is 1.

``soldump FILE`` prints the header tables, the v4 string table and a disassembly of the mode
code of an .sft file (a .sol file is compiled first, ``--format``/``--compat`` apply).
"""

from __future__ import annotations

import os
import sys

from soldrv.compiler import compile_files
from soldrv.errors import SolfmtError
from soldrv.sft import SftError, disassemble, load_sft, write_sft

USAGE = "usage: solfmt [-v] [--format 3|4] [--compat] file... [-oOUT]"


def _ext_index(name: str) -> int:
    """Index of the extension dot as the reference computes it (0 = no extension)."""
    exp = 0
    for j, ch in enumerate(name):
        if ch == "/":
            exp = 0
        elif ch == ".":
            exp = j
    return exp


def input_name(arg: str) -> str:
    """Reference input naming: add ``.sol`` when ``arg`` has no extension."""
    return arg if _ext_index(arg) else arg + ".sol"


def default_output(input_path: str) -> str:
    """Reference default output: the input name with its extension replaced by ``.sft``."""
    k = _ext_index(input_path)
    return (input_path[:k] if k else input_path) + ".sft"


def output_name(arg: str) -> str:
    """Reference ``-o`` naming: add ``.sft`` when ``arg`` has no extension."""
    return arg if _ext_index(arg) else arg + ".sft"


class _Args:
    def __init__(self) -> None:
        self.verbose = False
        self.compat = False
        self.version = 3
        self.inputs: list[str] = []
        self.output: str | None = None


def _parse_args(argv: list[str]) -> _Args:
    a = _Args()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--compat":
            a.compat = True
        elif arg == "--format" or arg.startswith("--format="):
            if arg == "--format":
                if i >= len(argv):
                    raise ValueError("--format needs a value: 3 or 4")
                val = argv[i]
                i += 1
            else:
                val = arg.split("=", 1)[1]
            if val not in ("3", "4"):
                raise ValueError(f"--format {val}: the .sft format must be 3 or 4")
            a.version = int(val)
        elif arg in ("-h", "--help"):
            raise _Help()
        elif arg.startswith("-") and len(arg) > 1:
            flag = arg[1]
            if flag in "vV":
                a.verbose = True
            elif flag in "oO":
                if len(arg) == 2:
                    raise ValueError("-o needs the output name attached, e.g. -ocycle.sft")
                a.output = output_name(arg[2:])
            else:
                raise ValueError(f"{arg}: Undefined Switch")
        else:
            name = input_name(arg)
            a.inputs.append(name)
    if a.output is None and a.inputs:
        a.output = default_output(a.inputs[0])
    return a


class _Help(Exception):
    pass


def main_solfmt(argv: list[str] | None = None) -> int:
    """Run ``solfmt``; return the exit status (0 ok, 1 error). ``argv`` excludes the program."""
    args = sys.argv[1:] if argv is None else argv
    try:
        a = _parse_args(args)
    except _Help:
        print(USAGE)
        return 0
    except ValueError as e:
        print(f"solfmt: {e}\n{USAGE}", file=sys.stderr)
        return 1
    if not a.inputs:
        print(f"solfmt: no input file\n{USAGE}", file=sys.stderr)
        return 1
    try:
        result = compile_files(a.inputs, compat=a.compat, version=a.version)
        for w in result.warnings:
            print(w, file=sys.stderr)
        data = write_sft(result.program)
        if a.verbose:
            print(result.verbose_text)
            if a.version == 4:  # the v4 reference also dumps the tables
                print(disassemble(result.program), end="")
    except (SolfmtError, SftError) as e:
        print(e, file=sys.stderr)
        return 1
    except Exception as e:  # a bug in solfmt: still no traceback for the user
        print(f"solfmt: internal error ({type(e).__name__}: {e}); please report it with the "
              "input file", file=sys.stderr)
        return 1
    assert a.output is not None
    try:
        with open(a.output, "wb") as f:
            f.write(data)
    except OSError as e:
        print(f'solfmt: Cannot open output file "{a.output}": {e.strerror or e}', file=sys.stderr)
        return 1
    print(f"Output written to file {a.output}")
    return 0


def main_soldump(argv: list[str] | None = None) -> int:
    """Run ``soldump FILE [--format 3|4] [--compat]``; print the dump; return the exit status.

    FILE is an .sft (``.sft`` is added when the name has no extension and does not exist) or
    a .sol, which is compiled first. Errors go to stderr with exit status 1.
    """
    args = sys.argv[1:] if argv is None else argv
    try:
        a = _parse_args(args)
    except _Help:
        print("usage: soldump file.sft   (or file.sol [--format 3|4] [--compat])")
        return 0
    except ValueError as e:
        print(f"soldump: {e}", file=sys.stderr)
        return 1
    names = [x for x in args if not x.startswith("-") and x not in ("3", "4")]
    if len(names) != 1:
        print("usage: soldump file.sft   (exactly one file)", file=sys.stderr)
        return 1
    path = names[0]
    if not _ext_index(path) and not os.path.exists(path):
        path += ".sft"
    try:
        if path.lower().endswith(".sol"):
            prog = compile_files([path], compat=a.compat, version=a.version).program
        else:
            prog = load_sft(path)
    except OSError as e:
        print(f"soldump: cannot read {path}: {e.strerror or e}", file=sys.stderr)
        return 1
    except (SftError, SolfmtError) as e:
        print(f"soldump: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug in soldump: still no traceback for the user
        print(f"soldump: internal error ({type(e).__name__}: {e})", file=sys.stderr)
        return 1
    print(disassemble(prog), end="")
    return 0
