"""``python -m benchmarks``: run every workload for ipcluster and its peers, one system at a time."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from . import report, spec, supervise, venvs

REPO = Path(__file__).resolve().parent.parent


def _list(text: str, known: tuple[str, ...], what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in items if x not in known]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(bad) or '(none)'}; choose from {', '.join(known)}")
    return items


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure ipcluster against ipyparallel, dask.distributed and Ray on this machine. "
                    "Peers are installed into their own virtualenvs under the cache folder.")
    p.add_argument("--engines", type=int, default=2, help="engines (workers) per cluster (default 2)")
    p.add_argument("--peers", default=",".join(spec.SYSTEMS),
                   type=lambda t: _list(t, spec.SYSTEMS, "system"),
                   help="comma-separated systems to run, ipcluster included (default: all of %(default)s)")
    p.add_argument("--workloads", default=",".join(spec.BY_ID),
                   type=lambda t: _list(t, tuple(spec.BY_ID), "workload"),
                   help="comma-separated workloads (default: all of %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="every workload once at tiny sizes (a smoke test, not a measurement)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for results.json, results.md, chart.png and logs/ "
                        "(default: <cache-dir>/results/<date-time>)")
    p.add_argument("--cache-dir", type=Path, default=venvs.default_cache_dir(),
                   help="where the peers' virtualenvs live (default: %(default)s)")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart (and so matplotlib)")
    p.add_argument("--baseline", metavar="REV", default=None,
                   help="also run ipcluster as it was at git revision REV (e.g. HEAD, main~3), "
                        "as the peer 'ipcluster@REV': its ratio column compares this checkout with it")
    p.add_argument("--no-install", action="store_true",
                   help="do not create missing peer virtualenvs; report those peers as unavailable")
    args = p.parse_args(argv)
    if args.engines < 1:
        p.error("--engines must be at least 1")
    if args.baseline:
        args.peers.append(spec.BASELINE_PREFIX + args.baseline)
    return args


def baseline_tree(rev: str, into: Path) -> Path:
    """The files of ``rev`` (``git archive``) under ``into``, importable as ``ipcluster``."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev],
                             capture_output=True, timeout=120)
    if archive.returncode != 0:
        raise venvs.PeerUnavailable(f"git archive {rev} failed: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True, timeout=120)
    return into


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model or platform.processor(),
            "memory_GB": round(psutil.virtual_memory().total / 1e9, 1),
            "platform": platform.platform(), "python": platform.python_version()}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out: Path = (args.out or args.cache_dir / "results" / stamp).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": "python -m benchmarks " + " ".join(argv),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "engines": args.engines, "quick": args.quick, "workloads": args.workloads,
        "machine": machine(), "systems": {},
        "metrics": {m.key: {"label": m.label, "unit": m.unit, "better": m.better, "workload": w.id}
                    for w in spec.WORKLOADS for m in w.metrics},
    }
    print(f"ipcluster benchmarks: {args.engines} engines on {results['machine']['cpus']} CPUs; "
          f"systems {', '.join(args.peers)}{' (quick)' if args.quick else ''}; results in {out}", flush=True)

    # peers import the harness through a folder holding only it, never ipcluster's source tree
    shim = Path(tempfile.mkdtemp(prefix="ipcb-path-"))
    (shim / "benchmarks").symlink_to(REPO / "benchmarks", target_is_directory=True)
    scratch = Path(tempfile.mkdtemp(prefix="ipcb-run-"))
    t0 = time.monotonic()
    try:
        for name in args.peers:
            entry: dict[str, Any] = {}
            results["systems"][name] = entry
            if name == "ipcluster":
                python, pythonpath, extra_env = sys.executable, str(REPO), {}
            elif name.startswith(spec.BASELINE_PREFIX):
                rev = name[len(spec.BASELINE_PREFIX):]
                try:
                    tree = baseline_tree(rev, scratch / "baseline")
                except venvs.PeerUnavailable as e:
                    entry.update(status="unavailable", reason=str(e))
                    print(f"[{name}] unavailable: {e}", flush=True)
                    continue
                # this harness (shim) with that revision's ipcluster
                python, pythonpath, extra_env = sys.executable, f"{shim}{os.pathsep}{tree}", {}
            else:
                try:
                    if args.no_install and not (args.cache_dir / "venvs" / name / venvs.MARKER).exists():
                        raise venvs.PeerUnavailable("not installed and --no-install given")
                    env = venvs.ensure_peer(name, args.cache_dir, log=lambda m: print(m, flush=True))
                except venvs.PeerUnavailable as e:
                    entry.update(status="unavailable", reason=str(e))
                    print(f"[{name}] unavailable: {e}", flush=True)
                    continue
                python, pythonpath = str(env.python), str(shim)
                venv_dir = str(env.python.parent.parent)
                extra_env = {"VIRTUAL_ENV": venv_dir,
                             "PATH": f"{venv_dir}/bin{os.pathsep}{os.environ.get('PATH', '')}"}
                entry["requirements"] = env.requirements
            print(f"[{name}] running", flush=True)
            steps = supervise.steps_for(name, args.workloads)
            entry.update(status="ok", **supervise.run_system(
                name, python, pythonpath, steps, engines=args.engines, quick=args.quick,
                log_path=out / "logs" / f"{name}.log", workdir=scratch / name, extra_env=extra_env,
                echo=lambda m: print(m, flush=True)))
            (out / "results.json").write_text(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(shim, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    results["elapsed_s"] = time.monotonic() - t0

    text = report.table(results)
    notes = report.unavailable(results) + report.failures(results)
    md = [f"Command: `{results['command']}`  ", f"Date: {results['date']}  ",
          f"Machine: {results['machine']['cpus']} CPUs ({results['machine']['cpu_model']}), "
          f"{results['machine']['memory_GB']} GB, Python {results['machine']['python']}  ",
          "Versions: " + ", ".join(f"{n} {s.get('version', '?')}" for n, s in results["systems"].items()
                                   if s.get("status") == "ok"),
          "", report.LEGEND, "", text]
    if args.quick:
        md[4:4] = ["", "**--quick: every workload once at tiny sizes; a smoke test, not a measurement.**"]
    if notes:
        md += ["", *(f"- {n}" for n in notes)]
    (out / "results.md").write_text("\n".join(md) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    png = None if args.no_chart else report.chart(results, out / "chart.png")
    print()
    print(report.LEGEND)
    print(text)
    for n in notes:
        print("  " + n)
    print(f"\nwrote {out / 'results.json'}, {out / 'results.md'}" + (f", {png}" if png else ""), flush=True)
    ipc = results["systems"].get("ipcluster", {})
    if any(r.get("status") != "ok" for r in ipc.get("steps", {}).values()):
        sys.exit(1)
