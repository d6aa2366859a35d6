"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def ipython_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own IPYTHONDIR, so nothing touches ~/.ipython or another test's files."""
    d = tmp_path / "ipython"
    d.mkdir()
    monkeypatch.setenv("IPYTHONDIR", str(d))
    return d
