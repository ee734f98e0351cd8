"""Packaging: the sdist holds what its own tests, examples and docs need; every command
has ``--version``; the license metadata is an SPDX expression with its file."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python >= 3.11")

import ophyd_cs800  # noqa: E402
from ophyd_cs800.version import package_version, version_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]


def test_version_matches_metadata():
    assert package_version() == importlib.metadata.version("ophyd-cs800")
    assert package_version() == PYPROJECT["project"]["version"]
    assert ophyd_cs800.__version__ == package_version()


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_command_prints_its_version(script):
    """``cs800-ioc --version`` etc., through the installed console script itself."""
    exe = Path(sys.executable).with_name(script)
    if not exe.exists():
        pytest.skip(f"{script} is not installed beside {sys.executable}")
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == version_line(script) + "\n"
    assert proc.stdout.split() == [script, "(ophyd-cs800)", package_version()]


def test_license_is_an_spdx_expression_with_its_file():
    meta = importlib.metadata.metadata("ophyd-cs800")
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert "LICENSE" in (meta.get_all("License-File") or [])
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026, ophyd-cs800 developers" in text


def test_classifiers_name_the_tested_python():
    classifiers = PYPROJECT["project"]["classifiers"]
    assert "Programming Language :: Python :: 3.11" in classifiers


#: Files the unpacked sdist must hold so that its tests, examples and docs work.
SDIST_MUST_HOLD = (
    "LICENSE", "README.md", "pyproject.toml", "MANIFEST.in",
    "tests/conftest.py", "tests/polling.py", "tests/test_packaging.py",
    "examples/solenoid_tutorial.sol", "examples/cs800_session.py",
    "benchmarks/bench_ramp.py",
    "docs/conf.py", "docs/index.md", "docs/_ext/cs800_docs.py",
    "ophyd_cs800/py.typed", "sim_ioc/py.typed", "soldrv/py.typed",
    "ophyd_cs800/version.py",
)


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    """Build the sdist with the PEP 517 hook of the installed setuptools (no network)."""
    out = tmp_path_factory.mktemp("sdist")
    code = ("import sys; from setuptools import build_meta; "
            "print(build_meta.build_sdist(sys.argv[1]))")
    proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def sdist_names(sdist) -> list[str]:
    """The files of the sdist, relative to its top directory."""
    top = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as tar:
        return [m.name.removeprefix(top + "/") for m in tar.getmembers() if m.isfile()]


@pytest.mark.slow
def test_sdist_holds_tests_examples_benchmarks_and_docs(sdist_names):
    missing = [f for f in SDIST_MUST_HOLD if f not in sdist_names]
    assert not missing, f"missing from the sdist: {missing}"
    tests_in_repo = {f"tests/{p.name}" for p in (ROOT / "tests").glob("*.py")}
    assert tests_in_repo <= set(sdist_names)
    examples_in_repo = {f"examples/{p.name}" for p in (ROOT / "examples").iterdir()
                        if p.is_file()}
    assert examples_in_repo <= set(sdist_names)


@pytest.mark.slow
def test_sdist_holds_no_build_output_or_caches(sdist_names):
    junk = [f for f in sdist_names
            if f.startswith(("docs/_build/", ".venv/")) or "__pycache__" in f
            or f.endswith((".pyc", ".pyo"))]
    assert not junk, junk


@pytest.mark.slow
def test_tests_run_from_the_unpacked_sdist(sdist, tmp_path):
    """The unpacked sdist's own conftest, polling helper and tests collect and pass."""
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    top = tmp_path / sdist.name.removesuffix(".tar.gz")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_protocol.py", "tests/test_packaging.py::test_version_matches_metadata"],
        cwd=top, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]  # e.g. "349 passed in 2.23s"
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) > 300, summary
    assert not re.search(r"\d+ (failed|errors?)\b", summary), summary
