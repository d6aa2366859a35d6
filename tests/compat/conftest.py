"""Fixtures of the compatibility suite: a real 2-engine cluster of the package under test."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .target import ipp


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One cluster for the whole suite, started as ipyparallel's docs start one:
    ``ipp.Cluster(n=2)``, then ``start_and_connect_sync()``."""
    root = tmp_path_factory.mktemp("compat")
    (root / "ipython").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IPYTHONDIR", str(root / "ipython"))  # the engines' too: nothing under ~
        with started(root / "profile") as (c, rc):
            yield c, rc


@contextmanager
def started(profile_dir: Path) -> Iterator[tuple[Any, Any]]:
    """A 2-engine cluster in ``profile_dir`` and its client, stopped on the way out."""
    c = ipp.Cluster(n=2, profile_dir=str(profile_dir), log_level=logging.WARNING)
    rc = c.start_and_connect_sync()
    try:
        rc.wait_for_engines(2, timeout=30)
        yield c, rc
    finally:
        rc.close()
        c.stop_cluster_sync()


@pytest.fixture
def rc(cluster: Any) -> Iterator[Any]:
    client = cluster[1]
    yield client
    client[:].clear(block=True)


@pytest.fixture
def dview(rc: Any) -> Any:
    view = rc[:]
    view.block = True
    return view


@pytest.fixture
def lview(rc: Any) -> Any:
    return rc.load_balanced_view()


@pytest.fixture
def profile_dir(cluster: Any) -> Path:
    return Path(cluster[0].profile_dir)
