"""Skip a test whose tool is missing, except in CI (IPCLUSTER_REQUIRE_INFRA=1), where that is a failure."""

from __future__ import annotations

import os
import shutil

import pytest


def require(ok: bool, what: str) -> None:
    if ok:
        return
    if os.environ.get("IPCLUSTER_REQUIRE_INFRA") == "1":
        pytest.fail(f"{what} is missing, and IPCLUSTER_REQUIRE_INFRA=1 says it must be here")
    pytest.skip(f"{what} is missing")


def require_node() -> str:
    node = shutil.which("node")
    require(node is not None, "node (Node.js)")
    assert node is not None
    return node


def require_chromium() -> str:
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    require(chromium is not None, "chromium (Debian package 'chromium')")
    try:
        import playwright  # noqa: F401
    except ImportError:
        require(False, "the Python package playwright")
    assert chromium is not None
    return chromium
