"""One engine at a time on a real cluster: ``Cluster.stop_engine`` (ipcluster/cluster/enginectl.py)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from ipcluster import Cluster


def test_stop_engine_stops_that_engine_only(tmp_path: Path) -> None:
    c = Cluster(n=2, profile_dir=str(tmp_path / "profile"), log_level=logging.WARNING, stop_timeout=5)
    rc = c.start_and_connect_sync()
    try:
        rc.wait_for_engines(2, timeout=30)
        pids = rc[:].apply_sync(os.getpid)
        c.stop_engine_sync(1)
        assert c.engine_set is not None and sorted(c.engine_set.running_pids) == [pids[0]]
        deadline = time.monotonic() + 30
        while 1 in rc.ids:  # the unregistration notice updates rc.ids: a bounded poll on it
            assert time.monotonic() < deadline, rc.ids
            time.sleep(0.02)
        assert rc.ids == [0] and rc[0].apply_sync(os.getpid) == pids[0]
        assert sorted(c.running_pids()) == sorted([*c.controller.running_pids, pids[0]])  # type: ignore[union-attr]
    finally:
        rc.close()
        c.stop_cluster_sync()
    assert c.running_pids() == []
