"""Cluster cards from cluster files alone, without processes: batch engine sets counted from the
jobs their file records."""

from __future__ import annotations

import os
from pathlib import Path

from ipcluster.server.discovery import summarize


def test_a_batch_engine_set_is_counted_from_its_jobs_not_its_pids(tmp_path: Path) -> None:
    me = {"pid": os.getpid()}
    state = {
        "cluster": {"cluster_id": "b", "engine_launcher_class": "slurm"},
        "controller": {"processes": [me]},
        "engines": {
            "1": {"system": "slurm", "processes": [],
                  "jobs": {"jobs": {"41": ["running", "", None], "42": ["pending", "Resources", None],
                                    "40": ["cancelled", "", None]},
                           "engines": {"40": 8, "41": 2, "42": 2}}},
            "2": {"processes": [me, me]},  # a local set beside it
        },
    }
    card = summarize("p", tmp_path / "security" / "cluster-b.json", state)
    assert card["batch"] == "slurm"
    assert card["engine_sets"] == {"1": 4, "2": 2} and card["engines_requested"] == 6
    local = summarize("p", tmp_path / "cluster-c.json", {"cluster": {}, "controller": {"processes": [me]}})
    assert "batch" not in local
