"""A real IPython shell with the ipcluster extension loaded, and a real 2-engine cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell

import ipcluster as ipp

from ..e2e.conftest import start, stop


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ipp.Cluster, ipp.Client]]:
    cluster, rc = start(tmp_path_factory.mktemp("magics"))
    try:
        yield cluster, rc
    finally:
        stop(cluster, rc)


@pytest.fixture(scope="module")
def shell() -> InteractiveShell:
    ip = InteractiveShell.instance()
    ip.run_cell("%load_ext ipcluster")
    return ip


@pytest.fixture
def ip(shell: InteractiveShell, cluster) -> Iterator[InteractiveShell]:
    cluster_, rc = cluster
    rc.wait_for_engines(2, timeout=20)
    shell.user_ns["rc"] = rc
    rc.activate()
    yield shell
    magics = shell.magics_manager.magics["line"]["autopx"].__self__
    if magics._autopx:  # a failed test must not leave every later cell going to the engines
        magics.autopx("")
    rc[:].clear(block=True)
    shell.run_cell("%pxconfig --block --stream --targets all --no-verbose --progress-after 5")
