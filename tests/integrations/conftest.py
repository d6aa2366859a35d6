"""Real 2-engine clusters for the integration modules (joblib, bind_kernel)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import ipcluster as ipp

from ..e2e.conftest import start, stop


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ipp.Cluster, ipp.Client]]:
    cluster, rc = start(tmp_path_factory.mktemp("integrations"))
    try:
        yield cluster, rc
    finally:
        stop(cluster, rc)


@pytest.fixture
def rc(cluster: tuple[ipp.Cluster, ipp.Client]) -> Iterator[ipp.Client]:
    client = cluster[1]
    client.wait_for_engines(2, timeout=20)
    yield client
    client[:].clear(block=True)
