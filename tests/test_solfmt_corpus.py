"""solfmt against the reference corpus: byte-identical .sft in compat mode, expected errors,
default-mode differences only where a listed bug is hit (each with its warning), and the same
through the real ``solfmt`` command line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from soldrv.compiler import compile_files
from soldrv.errors import SolfmtError
from soldrv.grammar import parse, statements
from soldrv.sft import write_sft

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "sol_examples"
HOXSLP = "arp-hoxotope__hoxslp.generated.sol"

needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"solenoid corpus not found at {CORPUS}"
)


def corpus_inputs(stem: str) -> list[Path]:
    """Input files of one corpus build (laser@b93458c needs the slp-generated file first)."""
    main = CORPUS / f"{stem}.sol"
    if stem == "arp-hoxotope__TM__laser@b93458c":
        return [CORPUS / HOXSLP, main]
    return [main]


def corpus_stems() -> list[str]:
    """Stems of every buildable corpus .sol (the slp-generated include is not built alone)."""
    if not CORPUS.is_dir():
        return []
    return sorted(p.stem for p in CORPUS.glob("*.sol") if p.name != HOXSLP)


def ref_cases(kind: str) -> list[tuple[str, int]]:
    """(stem, version) pairs with a reference .sft (kind 'sft') or an expected error ('err')."""
    out = []
    for stem in corpus_stems():
        for v in (3, 4):
            name = f"{stem}.ref.sft" if kind == "sft" else f"{stem}.expected_error.txt"
            if (CORPUS / f"ref_v{v}" / name).exists():
                out.append((stem, v))
    return out


def ref_bytes(stem: str, version: int) -> bytes:
    return (CORPUS / f"ref_v{version}" / f"{stem}.ref.sft").read_bytes()


# Where the default (fixed) mode differs from the reference, and the bug that causes it.
EXPECTED_DIFFERENCES = {
    ("arp-das__drivers_soldrv__acats", 3): ["init-drop"],
    ("arp-das__drivers_soldrv__acats", 4): ["init-drop"],
    ("arp-halogen__TM__Hal@dd0d7df", 3): ["init-drop", "select-only"],
    ("arp-halogen__TM__Hal@dd0d7df", 4): ["init-drop"],
    ("arp-halogen__TM__Hal@ccae941", 3): ["select-only"],
    ("arp-hwv__TM__A@e81f155", 3): ["select-only"],
}


def test_corpus_has_the_expected_cases():
    if not CORPUS.is_dir():
        pytest.skip(f"solenoid corpus not found at {CORPUS}")
    assert len(ref_cases("sft")) == 16
    assert len(ref_cases("err")) == 4


@needs_corpus
@pytest.mark.parametrize(("stem", "version"), ref_cases("sft"))
def test_compat_output_is_byte_identical(stem, version):
    result = compile_files(corpus_inputs(stem), compat=True, version=version)
    assert write_sft(result.program) == ref_bytes(stem, version)
    assert not [w for w in result.warnings if w.kind == "differs"]


@needs_corpus
@pytest.mark.parametrize(
    ("sol", "golden"),
    [
        ("hfems__TM__HFEMS@c01fc82.sol", "hfems__TM__HFEMS@f8ae9d6.sft"),
        ("hfems__TM__HFEMS@2e2b08d.sol", "hfems__TM__HFEMS@60b7b39.sft"),
    ],
)
@pytest.mark.parametrize("compat", [True, False])
def test_committed_hfems_sft_files_are_reproduced(sol, golden, compat):
    result = compile_files([CORPUS / sol], compat=compat, version=4)
    assert write_sft(result.program) == (CORPUS / golden).read_bytes()
    assert len(result.program.solenoids) == 64
    assert result.program.modes[4].iterations == 16  # Resolution 60/1 -> 16 x 3.75 s


@needs_corpus
@pytest.mark.parametrize(("stem", "version"), ref_cases("err"))
@pytest.mark.parametrize("compat", [True, False])
def test_expected_errors(stem, version, compat):
    expected = (CORPUS / f"ref_v{version}" / f"{stem}.expected_error.txt").read_text().strip()
    where, message = expected.split(" - ", 1)
    line = int(where.rsplit(":", 1)[1])
    with pytest.raises(SolfmtError) as ei:
        compile_files(corpus_inputs(stem), compat=compat, version=version)
    err = ei.value
    assert (err.message, err.line) == (message, line)
    assert err.filename.endswith(f"{stem}.sol")
    assert str(err).startswith(f"{err.filename}:{line}:{err.column}: {message}")


@needs_corpus
@pytest.mark.parametrize(("stem", "version"), ref_cases("sft"))
def test_default_mode_differs_only_on_listed_bugs(stem, version):
    result = compile_files(corpus_inputs(stem), compat=False, version=version)
    differs = [w for w in result.warnings if w.kind == "differs"]
    same = write_sft(result.program) == ref_bytes(stem, version)
    bugs = EXPECTED_DIFFERENCES.get((stem, version), [])
    assert same == (not bugs)
    for bug in bugs:
        assert any(bug in w.message for w in differs), (bug, [str(w) for w in differs])
    for w in differs:
        assert any(bug in w.message for bug in bugs), str(w)


@needs_corpus
@pytest.mark.parametrize("stem", ["arp-hoxotope__hoxslp.generated", *corpus_stems()])
def test_whole_file_grammar_parses_every_corpus_file(stem):
    """The parsimonious grammar of spec 2.10 accepts every real file (syntax only: the
    HFEMS@38f00f5 stray words are names for the grammar, the compiler rejects them)."""
    path = CORPUS / f"{stem}.sol"
    text = path.read_bytes().decode("latin-1")
    tree = parse(text, path.name)
    kinds = [k for k, _ in statements(tree)]
    assert kinds.count("mode") == text.lower().count("\nmode ") + text.lower().count("\n\tmode ")
    assert "mode" in kinds or stem.startswith("arp-hoxotope__hoxslp")


@needs_corpus
def test_init_drop_fix_restores_the_lost_halogen_initialization():
    """Hal@dd0d7df mode 0 loses `Sol1S0 :Z` in the reference; the default mode keeps it and
    then matches what the later fix in the source (Initialize Sol1S0 :Z) produces."""
    old = compile_files([CORPUS / "arp-halogen__TM__Hal@dd0d7df.sol"], version=4).program
    ref = compile_files([CORPUS / "arp-halogen__TM__Hal@dd0d7df.sol"], compat=True, version=4)
    sol1s0 = next(d for d in old.dtoas if d.name == "Sol1S0")
    z_index = dict(sol1s0.points)["Z"]
    mode0 = old.mode_instructions(0)
    assert any(i.name == "DTOA" and i.operands == (z_index,) for i in mode0)
    mode0_ref = ref.program.mode_instructions(0)
    assert not any(i.name == "DTOA" and i.operands == (z_index,) for i in mode0_ref)


# ------------------------------------------------------------------ the real command line


def _solfmt(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("solfmt", path=str(Path(sys.executable).parent))
    cmd = (
        [exe]
        if exe
        else [
            sys.executable,
            "-c",
            "from soldrv.cli import main_solfmt as m; raise SystemExit(m())",
        ]
    )
    return subprocess.run(cmd + args, cwd=cwd, capture_output=True, text=True, timeout=120)


@needs_corpus
@pytest.mark.integration
@pytest.mark.parametrize("version", [3, 4])
def test_cli_compat_reproduces_every_reference_file(tmp_path, version):
    procs = []
    for stem, v in ref_cases("sft"):
        if v != version:
            continue
        out = tmp_path / f"{stem}.sft"
        args = ["--compat", "--format", str(version)]
        args += [str(p) for p in corpus_inputs(stem)] + [f"-o{out}"]
        procs.append((stem, out, _solfmt(args, tmp_path)))
    for stem, out, proc in procs:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().endswith(f"Output written to file {out}")
        assert out.read_bytes() == ref_bytes(stem, version), stem


@needs_corpus
@pytest.mark.integration
@pytest.mark.parametrize(("stem", "version"), ref_cases("err"))
def test_cli_expected_errors(tmp_path, stem, version):
    expected = (CORPUS / f"ref_v{version}" / f"{stem}.expected_error.txt").read_text().strip()
    where, message = expected.split(" - ", 1)
    shutil.copy(CORPUS / f"{stem}.sol", tmp_path / f"{stem}.sol")
    proc = _solfmt(["--compat", f"--format={version}", f"{stem}.sol"], tmp_path)
    assert proc.returncode == 1
    assert f"{where}:" in proc.stderr and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / f"{stem}.sft").exists()


@needs_corpus
@pytest.mark.integration
def test_cli_default_names_multiple_inputs_and_verbose(tmp_path):
    """Reference naming: no extension -> .sol; output = first input with .sft; -o without
    extension gets .sft; several inputs share state; -v describes every mode."""
    shutil.copy(CORPUS / HOXSLP, tmp_path / "hoxslp.sol")
    shutil.copy(CORPUS / "arp-hoxotope__TM__laser@b93458c.sol", tmp_path / "laser.sol")
    proc = _solfmt(["--compat", "hoxslp", "laser"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Output written to file hoxslp.sft" in proc.stdout
    ref4 = ref_bytes("arp-hoxotope__TM__laser@b93458c", 4)
    assert (tmp_path / "hoxslp.sft").read_bytes() == ref4  # --format 4 is the default
    proc = _solfmt(
        ["-v", "hoxslp.sol", "-olaser", "--compat", "laser.sol", "--format", "3"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "Output written to file laser.sft" in proc.stdout
    assert (tmp_path / "laser.sft").read_bytes() == ref_bytes("arp-hoxotope__TM__laser@b93458c", 3)
    assert "Mode 1 is defined with length" in proc.stdout
    assert "Proxies defined are:\n  Etalon\n    O    ID: 1 index: 0" in proc.stdout


@needs_corpus
@pytest.mark.integration
def test_cli_default_mode_prints_the_difference_warning(tmp_path):
    shutil.copy(CORPUS / "arp-halogen__TM__Hal@dd0d7df.sol", tmp_path / "Hal.sol")
    proc = _solfmt(["Hal.sol", "--format", "4"], tmp_path)
    assert proc.returncode == 0
    assert "Hal.sol:" in proc.stderr and "init-drop" in proc.stderr
    assert "Sol1S0" in proc.stderr


@pytest.mark.integration
def test_cli_usage_errors(tmp_path):
    proc = _solfmt(["-x", "a.sol"], tmp_path)
    assert proc.returncode == 1 and "Undefined Switch" in proc.stderr
    proc = _solfmt(["--format", "5", "a.sol"], tmp_path)
    assert proc.returncode == 1 and "must be 3 or 4" in proc.stderr
    proc = _solfmt(["missing"], tmp_path)
    assert proc.returncode == 1 and "Cannot open file missing.sol" in proc.stderr
    assert "Traceback" not in proc.stderr
