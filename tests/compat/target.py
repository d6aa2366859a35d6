"""The one indirection of the compatibility suite: which package is under test.

``COMPAT_TARGET=ipyparallel`` (in a virtualenv with ipyparallel 9.2, see
``run_against_ipyparallel.sh``) runs the very same tests against ipyparallel, which proves they
encode ipyparallel's documented behaviour rather than our guess at it. Default: ipcluster.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import pytest

NAME: str = os.environ.get("COMPAT_TARGET", "ipcluster")
IS_IPCLUSTER = NAME == "ipcluster"

#: the package under test, used as ``ipp`` as in ipyparallel's documentation
ipp: ModuleType = importlib.import_module(NAME)


def sub(path: str) -> ModuleType:
    """``sub("serialize.canning")`` imports ``<target>.serialize.canning``."""
    return importlib.import_module(f"{NAME}.{path}")


def gap(reason: str) -> Any:
    """Mark a documented ipyparallel behaviour that ipcluster does not have yet.

    The test still runs: it must fail on ipcluster (strict, so it flips to an error the day the
    gap is closed and the mark must go) and pass on ipyparallel.
    """
    return pytest.mark.xfail(IS_IPCLUSTER, strict=True, reason=f"issue 12: {reason}")
