"""Fixtures for the launcher and Cluster tests: every test must leave no process behind."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest


@pytest.fixture(autouse=True)
def no_leaked_children() -> Iterator[None]:
    """Fail a test that leaves a child process of this interpreter running (and kill it)."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    leaked = [p for p in me.children(recursive=True) if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE]
    for p in leaked:
        p.kill()
    psutil.wait_procs(leaked, timeout=5)
    assert not leaked, f"test left processes running: {leaked}"
