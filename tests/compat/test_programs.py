"""Whole programs written for ipyparallel (tests/compat/programs/), run with only the import
changed: ``ipyparallel`` becomes the package under test, nothing else in the text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .target import NAME, gap

PROGRAMS = Path(__file__).parent / "programs"


def run_program(name: str, tmp_path: Path) -> str:
    text = (PROGRAMS / name).read_text().replace("ipyparallel", NAME)
    script = tmp_path / name
    script.write_text(text)
    # IPYTHONDIR is this test's own (tests/conftest.py), so the default profile is private
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90, cwd=tmp_path,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout


def test_task_farm_with_dependencies_futures_and_executor(tmp_path: Path) -> None:
    assert "taskfarm ok" in run_program("taskfarm.py", tmp_path)


def test_px_in_an_ipython_shell(tmp_path: Path) -> None:
    out = run_program("px_shell.py", tmp_path)
    assert "engine says 42" in out and "px ok" in out


def test_joblib_on_the_engines(tmp_path: Path) -> None:
    pytest.importorskip("joblib")
    assert "joblib ok" in run_program("joblib_farm.py", tmp_path)
