"""The documentation: the wire spec matches the code, and the Sphinx site builds without warnings."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ipcluster.protocol.messages import MSG_TYPES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BUILD_TIMEOUT = 120  # seconds; the build takes a few seconds


def documented_msg_types() -> list[str]:
    """Every `name` in a level-3 heading of docs/protocol.md (one heading may name several)."""
    names: list[str] = []
    for line in (DOCS / "protocol.md").read_text().splitlines():
        if line.startswith("### "):
            names.extend(re.findall(r"`([^`]+)`", line))
    return names


def test_every_msg_type_is_documented() -> None:
    missing = sorted(set(MSG_TYPES) - set(documented_msg_types()))
    assert not missing, f"docs/protocol.md has no '### `name`' heading for: {missing}"


def test_every_documented_msg_type_exists() -> None:
    names = documented_msg_types()
    unknown = sorted(set(names) - set(MSG_TYPES))
    assert not unknown, f"docs/protocol.md documents msg_types missing from MSG_TYPES: {unknown}"
    twice = sorted({n for n in names if names.count(n) > 1})
    assert not twice, f"docs/protocol.md documents these msg_types more than once: {twice}"


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT + 30)
def test_sphinx_build_has_no_warnings(tmp_path: Path) -> None:
    for module in ("sphinx", "myst_parser"):
        if importlib.util.find_spec(module) is None:
            if os.environ.get("CI"):
                pytest.fail(f"{module} is not installed: CI installs the 'docs' extra (pip install -e '.[test,docs]')")
            pytest.skip(f"{module} is not installed (pip install -e '.[docs]')")
    cmd = [
        sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
        "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html"),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT, cwd=tmp_path, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, f"sphinx-build failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    assert (tmp_path / "html" / "index.html").exists()
    assert (tmp_path / "html" / "configuration.html").exists()
