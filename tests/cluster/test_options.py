"""Cluster options: how many engines a start makes, and where the options show up (pure, no processes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from traitlets.config import Config

from ipcluster.cli.commands import IPClusterStart
from ipcluster.cluster import Cluster, resolve_engine_count


@pytest.mark.parametrize(("n", "expected"), [(None, os.cpu_count() or 1), (0, 0), (3, 3)])
def test_engine_count_rule(n: int | None, expected: int) -> None:
    assert resolve_engine_count(n) == expected


def test_engine_count_zero_means_the_controller_alone(tmp_path: Path) -> None:
    c = Cluster(profile_dir=str(tmp_path), n=0, load_profile=False)
    assert c.engine_count() == 0  # not one per core, as `n or cpu_count()` made it
    assert c.engine_count(2) == 2  # an explicit count wins over the option
    assert Cluster(profile_dir=str(tmp_path), load_profile=False).engine_count() == (os.cpu_count() or 1)


def test_options_are_configured_and_listed_as_cluster(tmp_path: Path) -> None:
    """The launch options live on a HasTraits base; they must still read as ``Cluster.<name>``."""
    config = Config({"Cluster": {"n": 0, "engine_timeout": 7.0, "controller_ip": "0.0.0.0"}})
    c = Cluster(profile_dir=str(tmp_path), config=config)
    assert (c.n, c.engine_timeout, c.controller_ip) == (0, 7.0, "0.0.0.0")
    # --help-all lists a class only if it declares a configurable trait of its own
    assert Cluster.class_own_traits(config=True), "Cluster would vanish from --help-all"
    app = IPClusterStart()
    assert Cluster in list(app._classes_with_config_traits())
    help_text = Cluster.class_get_help()
    for name in ("n", "engine_launcher_class", "stop_timeout", "profile", "cluster_id"):
        assert f"--Cluster.{name}=" in help_text


def test_ipyparallel_launcher_aliases(tmp_path: Path) -> None:
    c = Cluster(profile_dir=str(tmp_path), engines="mpi", controller="local", load_profile=False)
    assert (c.engine_launcher_class, c.controller_launcher_class) == ("mpi", "local")
