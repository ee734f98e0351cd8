"""Command-line entry points ``solfmt`` (compile .sol -> .sft) and ``soldump`` (dump an .sft).

``solfmt [-v] [--format 3|4] [--compat] file... [-oOUT]`` writes the v4 (QNX6) format unless
``--format 3`` asks for the v3 (QNX4) one, and otherwise follows the reference command
line: options may come anywhere and only their second character counts (``-v``/``-V``,
``-oNAME`` with the name attached); input names without an extension get ``.sol``; the output
defaults to the first input with its extension replaced by ``.sft``; ``-o`` names without an
extension get ``.sft``; several inputs are read one after another with shared state. On
success it prints ``Output written to file NAME``. Errors go to stderr as
``file:line:column: message`` with the offending line (made printable) and a caret, and the
exit status is 1. The output is written only when everything compiled, atomically (a
temporary file renamed over it, so no partial file is ever left), and never over an input.

Inputs are read with :func:`soldrv.input_files.read_regular_file`: regular files of bounded
size only, so a FIFO or a device is refused at once instead of blocking or flooding.

``soldump FILE`` prints the header tables, the v4 string table and a disassembly of the mode
code of an .sft file (a .sol file is compiled first, ``--format``/``--compat`` apply).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from collections.abc import Callable

# The compiler, the .sft codec and the error classes are imported where they are used, so
# that ``solfmt --help`` and ``soldump x.sft`` load only what they need (import cost matters
# for a command run from scripts and Makefiles; benchmarks/bench_solfmt.py measures it).

USAGE = ("usage: solfmt [-v] [--format 3|4] [--compat] file... [-oOUT]   "
         "(--format 4, the QNX6 .sft, is the default)")


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
    """Apply the reference input naming: add ``.sol`` when ``arg`` has no extension."""
    return arg if _ext_index(arg) else arg + ".sol"


def default_output(input_path: str) -> str:
    """Return the reference default output.

    The input name with its extension replaced by ``.sft``.
    """
    k = _ext_index(input_path)
    return (input_path[:k] if k else input_path) + ".sft"


def output_name(arg: str) -> str:
    """Apply the reference ``-o`` naming: add ``.sft`` when ``arg`` has no extension."""
    return arg if _ext_index(arg) else arg + ".sft"


class _Args:
    def __init__(self) -> None:
        self.verbose = False
        self.compat = False
        self.version = 4  # the current reference compiler (QNX6 solfmt) writes v4
        self.inputs: list[str] = []
        self.raw_inputs: list[str] = []
        self.output: str | None = None


class _Help(Exception):
    pass


def _format_value(argv: list[str], i: int, arg: str) -> tuple[int, int]:
    """Parse ``--format N`` / ``--format=N`` at ``argv[i-1]``; return (version, next index)."""
    if arg == "--format":
        if i >= len(argv):
            raise ValueError("--format needs a value: 3 or 4")
        val = argv[i]
        i += 1
    else:
        val = arg.split("=", 1)[1]
    if val not in ("3", "4"):
        raise ValueError(f"--format {val}: the .sft format must be 3 or 4")
    return int(val), i


def _parse_args(argv: list[str], tool: str = "solfmt") -> _Args:
    """Parse a solfmt (or, with ``tool="soldump"``, soldump) command line; ValueError if bad."""
    a = _Args()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--compat":
            a.compat = True
        elif arg == "--format" or arg.startswith("--format="):
            a.version, i = _format_value(argv, i, arg)
        elif arg in ("-h", "--help"):
            raise _Help()
        elif arg.startswith("-") and tool == "solfmt":
            # the reference looks at the 2nd character only; "-" alone is no switch either
            flag = arg[1:2]
            if flag and flag in "vV":
                a.verbose = True
            elif flag and flag in "oO":
                if len(arg) == 2:
                    raise ValueError("-o needs the output name attached, e.g. -ocycle.sft")
                a.output = output_name(arg[2:])
            else:
                raise ValueError(f"{arg}: Undefined Switch")
        elif arg.startswith("-"):
            raise ValueError(f"{arg}: Undefined Switch")
        else:
            a.raw_inputs.append(arg)
            a.inputs.append(input_name(arg))
    if a.output is None and a.inputs:
        a.output = default_output(a.inputs[0])
    return a


def _same_file(a: str, b: str) -> bool:
    """Return True if paths ``a`` and ``b`` name the same existing file."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def write_output(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` without ever leaving a partial file behind.

    A regular file is written to a temporary file in the same directory and renamed over
    ``path`` (a symbolic link is followed; the mode of an existing file is kept, a new file
    gets 0666 minus the umask). A device or FIFO (``/dev/null``, ``/dev/stdout``) is written
    directly, and so is an existing writable file in a directory where no temporary file
    can be created. Raises OSError (e.g. IsADirectoryError, FileNotFoundError) on failure.
    """
    target = os.path.realpath(path) if os.path.islink(path) else path
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if os.path.exists(target) and not os.path.isfile(target):
        with open(target, "wb") as f:
            f.write(data)
        return
    if os.path.exists(target):
        mode = stat.S_IMODE(os.stat(target).st_mode)
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        fd, tmp = _create_temporary(os.path.dirname(target) or ".")
    except PermissionError:
        if not (os.path.isfile(target) and os.access(target, os.W_OK)):
            raise
        # a writable file in a directory we may not create files in: write it in place
        with open(target, "wb") as f:
            f.write(data)
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _create_temporary(directory: str) -> tuple[int, str]:
    """Create a new file ``.solfmt-PID-N.tmp`` (mode 0600) in ``directory``; return (fd, path).

    Like ``tempfile.mkstemp`` (exclusive creation, never follows an existing name) without
    its import cost. Raises OSError (PermissionError, FileNotFoundError, ...) on failure.
    """
    for n in range(1000):
        path = os.path.join(directory, f".solfmt-{os.getpid()}-{n}.tmp")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", directory)


def _lenient_stdout() -> None:
    """Never fail on printing a name or set-point character the terminal cannot encode."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(ValueError, OSError):
            reconfigure(errors="backslashreplace")


def _run_tool(tool: str, usage: str, run: Callable[[_Args], int],
              argv: list[str] | None) -> int:
    """Parse the command line of ``tool`` and call ``run`` with it; return the exit status.

    Whatever happens the user gets one message and no traceback: usage errors (status 1),
    ``-h`` (usage, status 0), Ctrl-C, an unexpected exception (reported as an internal
    error) and a reader of stdout that went away (``soldump x.sft | head``: quiet, status 1).
    """
    args = sys.argv[1:] if argv is None else argv
    if "--version" in args:  # the shared helper of every command's --version
        from ophyd_cs800.version import version_line
        print(version_line(tool))
        return 0
    _lenient_stdout()
    try:
        try:
            a = _parse_args(args, tool)
        except _Help:
            print(usage)
            return 0
        except ValueError as e:
            print(f"{tool}: {e}\n{usage}", file=sys.stderr)
            return 1
        status = run(a)
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return status
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print(f"{tool}: interrupted", file=sys.stderr)
        return 1
    except Exception as e:  # a bug in the tool: still no traceback for the user
        print(f"{tool}: internal error ({type(e).__name__}: {e}); please report it with the "
              "input file", file=sys.stderr)
        return 1


def main_solfmt(argv: list[str] | None = None) -> int:
    """Run ``solfmt``; return the exit status (0 ok, 1 error). ``argv`` excludes the program.

    The output file is written only after the whole compilation succeeded, atomically (no
    partial file), and never over one of the input files.
    """
    return _run_tool("solfmt", USAGE, _solfmt, argv)


def _solfmt(a: _Args) -> int:
    from soldrv.compiler import compile_files
    from soldrv.errors import SolfmtError
    from soldrv.sft import SftError, disassemble, write_sft

    if not a.inputs:
        print(f"solfmt: no input file\n{USAGE}", file=sys.stderr)
        return 1
    assert a.output is not None
    for name in a.inputs:
        if _same_file(a.output, name):
            print(f'solfmt: output file "{a.output}" is the input file {name}; '
                  "refusing to overwrite the source (choose another -o name)", file=sys.stderr)
            return 1
    try:
        result = compile_files(a.inputs, compat=a.compat, version=a.version)
        for w in result.warnings:
            print(w, file=sys.stderr)
        data = write_sft(result.program)
    except (SolfmtError, SftError) as e:
        for w in getattr(e, "warnings", []):
            print(w, file=sys.stderr)
        print(e, file=sys.stderr)
        return 1
    try:
        write_output(a.output, data)
    except OSError as e:
        print(f'solfmt: Cannot open output file "{a.output}": {e.strerror or e}', file=sys.stderr)
        return 1
    # the reference prints the -v text before writing; the file is written first here so
    # that a closed pipe (solfmt -v x.sol | head) cannot lose it
    if a.verbose:
        print(result.verbose_text, end="")
        if a.version == 4:  # the v4 reference also dumps the tables
            print(disassemble(result.program), end="")
    print(f"Output written to file {a.output}")
    return 0


SOLDUMP_USAGE = ("usage: soldump file.sft   (or: soldump file.sol [--format 3|4] [--compat]; "
                 "format 4 by default)")


def main_soldump(argv: list[str] | None = None) -> int:
    """Run ``soldump FILE [--format 3|4] [--compat]``; print the dump; return the exit status.

    FILE is an .sft (``.sft`` is added when the name has no extension and does not exist) or
    a .sol, which is compiled first (its warnings go to stderr). Errors go to stderr as one
    ``soldump: ...`` message with exit status 1.
    """
    return _run_tool("soldump", SOLDUMP_USAGE, _soldump, argv)


def _soldump(a: _Args) -> int:
    from soldrv.errors import SolfmtError
    from soldrv.sft import SftError, disassemble, load_sft

    if len(a.raw_inputs) != 1:
        print(f"soldump: exactly one file expected\n{SOLDUMP_USAGE}", file=sys.stderr)
        return 1
    path = a.raw_inputs[0]
    if not _ext_index(path) and not os.path.exists(path):
        path += ".sft"
    try:
        if path.lower().endswith(".sol"):
            from soldrv.compiler import compile_files

            result = compile_files([path], compat=a.compat, version=a.version)
            for w in result.warnings:
                print(w, file=sys.stderr)
            prog = result.program
        else:
            prog = load_sft(path)
    except OSError as e:
        print(f"soldump: cannot read {path}: {e.strerror or e}", file=sys.stderr)
        return 1
    except SftError as e:
        print(f"soldump: {e}", file=sys.stderr)
        return 1
    except SolfmtError as e:
        for w in e.warnings:
            print(w, file=sys.stderr)
        print(e if e.line else f"soldump: {e.message}", file=sys.stderr)
        return 1
    print(disassemble(prog), end="")
    return 0
