"""The Cluster object's launchers and state file, as ipyparallel's Cluster API documents them:
``cluster.controller`` and ``cluster.engines`` (engine-set id -> launcher), ``engine_set`` ("the
first engine set"), ``stop_engine(engine_id)`` ("stop one engine"), ``cluster_file``,
``write_cluster_file()``, ``remove_cluster_file()``, ``update_cluster_file()`` and
``Cluster.from_file()``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import started
from .target import ipp


@pytest.fixture
def own(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """A cluster of its own: these tests stop engines."""
    with started(tmp_path / "profile") as (c, rc):
        yield c, rc


def test_controller_engines_and_engine_set(own: tuple[Any, Any]) -> None:
    c, _ = own
    assert c.controller is not None
    assert len(c.engines) == 1
    (engine_set_id,) = c.engines
    assert c.engine_set is c.engines[engine_set_id]


def test_stop_engine_is_a_coroutine_method() -> None:
    """Documented, but ipyparallel 9.2's raises NotImplementedError ("How do we find an engine by
    id?"); ipcluster's works (tests/cluster/test_enginectl.py)."""
    import inspect

    assert inspect.iscoroutinefunction(ipp.Cluster.stop_engine)
    assert list(inspect.signature(ipp.Cluster.stop_engine).parameters) == ["self", "engine_id"]


def test_cluster_file_methods(own: tuple[Any, Any]) -> None:
    c, _ = own
    cluster_file = Path(c.cluster_file)
    assert cluster_file.exists()  # a running cluster records itself
    c.remove_cluster_file()
    assert not cluster_file.exists()
    c.write_cluster_file()
    assert cluster_file.exists()
    loaded = ipp.Cluster.from_file(str(cluster_file))
    assert (loaded.cluster_id, Path(loaded.profile_dir)) == (c.cluster_id, Path(c.profile_dir))
    c.remove_cluster_file()
    c.update_cluster_file()  # still running: written again
    assert cluster_file.exists()
