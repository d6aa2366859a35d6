"""Turns the results into a table of medians with ipcluster/peer ratios, and a PNG chart."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import spec

BETTER = {"lower": "lower", "higher": "higher", "info": "-"}

LEGEND = ("Medians. `ratio` columns are ipcluster / peer. For rows marked *lower*, lower is better "
          "(a ratio below 1 favours ipcluster); for rows marked *higher*, higher is better "
          "(a ratio above 1 favours ipcluster).")


def fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def value(results: dict[str, Any], system: str, workload: str, key: str) -> float | str:
    """A metric's median, or a short word saying why there is none."""
    s = results["systems"].get(system)
    if s is None:
        return "-"
    if s.get("status") == "unavailable":
        return "unavailable"
    if not spec.is_ipcluster(system) and spec.BY_ID[workload].ipcluster_only:
        return "n/a"
    rec = s.get("steps", {}).get(workload)
    if rec is None:
        return "-"
    v = (rec.get("metrics") or {}).get(key)
    if isinstance(v, (int, float)):
        return v  # a step that failed later may still have measured this
    return rec["status"] if rec["status"] != "ok" else "-"


def rows(results: dict[str, Any]) -> list[tuple[spec.Workload, spec.Metric]]:
    ran = set()
    for s in results["systems"].values():
        ran.update(s.get("steps", {}))
    return [(w, m) for w in spec.WORKLOADS if w.id in ran for m in w.metrics]


def table(results: dict[str, Any]) -> str:
    """The results as a Markdown table (it reads as plain text in a terminal too)."""
    systems = list(results["systems"])
    peers = [s for s in systems if s != "ipcluster"]
    ratio_cols = peers if "ipcluster" in systems else []
    head = ["workload", "metric", "unit", "better", *systems, *(f"ratio vs {p}" for p in ratio_cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w, m in rows(results):
        cells = [w.id, m.label, m.unit, BETTER[m.better]]
        vals = {s: value(results, s, w.id, m.key) for s in systems}
        cells += [fmt(v) if isinstance(v, (int, float)) else v for v in vals.values()]
        for p in ratio_cols:
            a, b = vals["ipcluster"], vals[p]
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b and m.better != "info":
                r = a / b
                cells.append(f"{r:.2f}" if r < 100 else fmt(r))
            else:
                cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def unavailable(results: dict[str, Any]) -> list[str]:
    return [f"{name}: unavailable: {s.get('reason')}" for name, s in results["systems"].items()
            if s.get("status") == "unavailable"]


def failures(results: dict[str, Any]) -> list[str]:
    out = []
    for name, s in results["systems"].items():
        for step, rec in s.get("steps", {}).items():
            if rec.get("status") != "ok":
                out.append(f"{name} {step}: {rec['status']}: {rec.get('error', '')}")
        for r in s.get("restarts", []):
            out.append(f"{name}: the shared cluster was started again before {r['before']} (after a failed "
                       "step); w6 memory covers only what ran on the new one")
    return out


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        # the one install the harness makes into this environment (see README of benchmarks)
        print("[report] installing matplotlib into this environment for the chart", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"], check=False)
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def chart(results: dict[str, Any], path: Path) -> Path | None:
    """One bar chart per compared metric, the systems side by side; returns the path or None."""
    try:
        plt = _pyplot()
    except Exception as e:  # no chart is not worth failing the run over
        print(f"[report] no chart: {type(e).__name__}: {e}", flush=True)
        return None
    systems = list(results["systems"])
    metrics = [(w, m) for w, m in rows(results) if m.better != "info"]
    if not metrics:
        return None
    cols = 4
    nrows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
    colors = {"ipcluster": "#d62728", "ipyparallel": "#1f77b4", "dask": "#ff7f0e", "ray": "#2ca02c"}
    for ax, (w, m) in zip(axes.flat, metrics):
        vals = [value(results, s, w.id, m.key) for s in systems]
        xs = [s for s, v in zip(systems, vals) if isinstance(v, (int, float)) and v > 0]
        ys = [v for v in vals if isinstance(v, (int, float)) and v > 0]
        ax.bar(xs, ys, color=[colors.get(s, "grey") for s in xs])
        if ys and max(ys) / min(ys) > 30:
            ax.set_yscale("log")
        arrow = "lower is better" if m.better == "lower" else "higher is better"
        ax.set_title(f"{w.id}: {m.label}\n({m.unit}, {arrow})", fontsize=8)
        ax.tick_params(labelsize=7)
        if m.key == "cpu_wall_s":  # the ideal wall time, for comparison
            ideal = [value(results, s, w.id, "cpu_ideal_s") for s in systems]
            ideal = [v for v in ideal if isinstance(v, (int, float))]
            if ideal:
                ax.axhline(ideal[0], color="black", linestyle="--", linewidth=0.8, label="ideal")
                ax.legend(fontsize=6)
        for x, y in zip(xs, ys):
            ax.annotate(fmt(y), (x, y), ha="center", va="bottom", fontsize=6)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    meta = results.get("machine", {})
    fig.suptitle(f"ipcluster vs peers: {results.get('engines')} engines, {meta.get('cpus')} CPUs"
                 + (" (--quick)" if results.get("quick") else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
