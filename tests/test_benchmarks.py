"""Smoke test of the performance harness: every workload runs once at tiny size and yields numbers.

It runs ``python -m benchmarks --quick --peers ipcluster`` as a user would (a subprocess, with a
timeout), so the harness cannot rot unnoticed; the real measurements are not part of the suite.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import spec

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(110)
def test_quick_run_measures_every_workload(tmp_path: Path) -> None:
    out = tmp_path / "results"
    # the chart needs matplotlib, which the harness would pip-install: only draw it if present
    has_mpl = importlib.util.find_spec("matplotlib") is not None
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--peers", "ipcluster", "--out", str(out),
         *([] if has_mpl else ["--no-chart"])],
        cwd=REPO, capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, f"harness failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    results = json.loads((out / "results.json").read_text())
    steps = results["systems"]["ipcluster"]["steps"]
    missing = []
    for w in spec.WORKLOADS:
        rec = steps.get(w.id, {})
        for m in w.metrics:
            v = rec.get("metrics", {}).get(m.key)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                missing.append(f"{w.id}.{m.key}: {rec.get('status')} {rec.get('error', '')}".strip())
    assert not missing, "workloads without a number:\n" + "\n".join(missing)
    assert (out / "results.md").read_text().count("| w") >= len(spec.METRICS)
    if has_mpl:
        assert (out / "chart.png").stat().st_size > 0


@pytest.mark.timeout(60)
def test_floor_tool_measures_each_relay() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.floor", "--calls", "50"],
                          cwd=REPO, capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == ["tcp", "tcp", "ipc", "ipc"]
    assert all(0 < float(r[-1]) < 1e6 for r in rows)


@pytest.mark.timeout(90)
def test_baseline_revision_runs_beside_this_checkout(tmp_path: Path) -> None:
    """``--baseline HEAD`` runs the committed ipcluster as a peer, with a ratio column for it."""
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--peers", "ipcluster", "--baseline", "HEAD",
         "--workloads", "w2", "--no-chart", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=75,
    )
    assert proc.returncode == 0, f"harness failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    results = json.loads((out / "results.json").read_text())
    base = results["systems"]["ipcluster@HEAD"]
    assert base["status"] == "ok" and base["steps"]["w2"]["status"] == "ok", base
    assert base["steps"]["w2"]["metrics"]["rt_direct_median_us"] > 0
    assert "ratio vs ipcluster@HEAD" in (out / "results.md").read_text()
