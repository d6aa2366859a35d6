"""Runs one system's worker subprocess and holds every step to its time budget.

The worker announces each step before it starts (``begin``); if the step's result does not
arrive within its budget, the worker and everything it started are killed, the step is recorded
as ``timeout``, and a fresh worker carries on with the steps that remain. Processes are found by
descent from the worker and by an environment token that every process it starts inherits (Ray's
and dask's daemons may be re-parented); only processes carrying this run's token are ended.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import psutil

from . import spec

TOKEN_VAR = "IPCLUSTER_BENCH_TOKEN"
#: seconds for a worker to import its system and say hello
HELLO_TIMEOUT = 120.0
MAX_WORKERS = 5


def step_budget(step: str, quick: bool) -> float:
    if step.startswith("session-"):
        return spec.QUICK_SESSION_BUDGET if quick else spec.SESSION_BUDGET
    return spec.budget(spec.BY_ID[step], quick)


def steps_for(system: str, workloads: list[str]) -> list[str]:
    """The worker's step list: w1, then the shared cluster around workloads 2-6, then w7."""
    chosen = [spec.BY_ID[w] for w in workloads]
    chosen = [w for w in chosen if spec.is_ipcluster(system) or not w.ipcluster_only]
    steps = [w.id for w in chosen if not w.session and w.id != "w7"]
    session = [w.id for w in chosen if w.session]
    if session:
        steps += ["session-start", *session, "session-stop"]
    steps += [w.id for w in chosen if w.id == "w7"]
    return steps


def _ours(token: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.environ().get(TOKEN_VAR) == token:
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def kill_tree(root: int | None, token: str, grace: float = 5.0) -> int:
    """End the worker ``root``, its descendants and any process carrying ``token``; return how many."""
    procs: dict[int, psutil.Process] = {}
    if root is not None:
        try:
            r = psutil.Process(root)
            procs[r.pid] = r
            for c in r.children(recursive=True):
                procs[c.pid] = c
        except psutil.Error:
            pass
    for p in _ours(token):
        procs[p.pid] = p
    for p in procs.values():
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(list(procs.values()), timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)
    return len(procs)


def run_system(
    name: str,
    python: str,
    pythonpath: str,
    steps: list[str],
    *,
    engines: int,
    quick: bool,
    log_path: Path,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run ``steps`` for one system; return ``{"version", "python", "steps": {step: record}}``.

    A record is ``{"status": "ok", "metrics", "samples", "extra", "seconds"}`` or
    ``{"status": "error" | "timeout", "error", "metrics", "seconds"}``, whose ``metrics`` are
    those the step reported (``partial`` events) before it failed.
    """
    token = uuid.uuid4().hex
    env = dict(os.environ, PYTHONPATH=pythonpath, RAY_USAGE_STATS_ENABLED="0", **(extra_env or {}))
    env[TOKEN_VAR] = token
    out: dict[str, Any] = {"steps": {}}
    records: dict[str, Any] = out["steps"]
    remaining = list(steps)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        for attempt in range(MAX_WORKERS):
            if not remaining:
                break
            if attempt and "session-start" not in remaining:
                # a new worker needs its own shared cluster for the session workloads that remain
                at = next((i for i, s in enumerate(remaining) if s in spec.BY_ID and spec.BY_ID[s].session), None)
                if at is not None:
                    remaining.insert(at, "session-start")
                    out.setdefault("restarts", []).append({"before": remaining[at + 1]})
            argv = [python, "-m", "benchmarks.worker", "--system", name, "--engines", str(engines),
                    "--steps", ",".join(remaining), *(["--quick"] if quick else [])]
            log.write(f"\n$ {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                                    env=env, cwd=workdir, start_new_session=True)
            lines: queue.Queue[bytes | None] = queue.Queue()

            def read(stream: Any = proc.stdout) -> None:
                for line in stream:
                    lines.put(line)
                lines.put(None)

            threading.Thread(target=read, daemon=True).start()
            current: str | None = None
            partial: dict[str, Any] = {}
            started = time.monotonic()
            fatal = False
            while True:
                limit = step_budget(current, quick) if current else HELLO_TIMEOUT
                try:
                    line = lines.get(timeout=max(0.0, limit - (time.monotonic() - started)))
                except queue.Empty:
                    if current is None:
                        echo(f"  [{name}] worker gave no sign of life in {limit:.0f} s")
                        for s in remaining:
                            records[s] = {"status": "error", "error": "worker did not start", "seconds": None}
                        remaining.clear()
                    else:
                        echo(f"  [{name}] {current}: timeout after {limit:.0f} s; restarting the worker")
                        _dump_stacks(proc.pid, log)
                        records[current] = {"status": "timeout", "error": f"over its {limit:.0f} s budget",
                                            "metrics": partial, "seconds": time.monotonic() - started}
                        remaining.remove(current)
                    break
                if line is None:  # the worker exited
                    code = proc.wait()
                    if current is not None:
                        records[current] = {"status": "error", "seconds": time.monotonic() - started,
                                            "metrics": partial,
                                            "error": f"worker exited with code {code} during the step (see {log_path})"}
                        remaining.remove(current)
                    elif remaining and not fatal:
                        echo(f"  [{name}] worker exited with code {code}")
                        for s in remaining:
                            records[s] = {"status": "error", "error": f"worker exited with code {code}", "seconds": None}
                        remaining.clear()
                    break
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                kind = ev.get("event")
                if kind == "hello":
                    out.update(version=ev.get("version"), python=ev.get("python"))
                elif kind == "begin":
                    current, started = ev["step"], time.monotonic()
                    partial = {}
                elif kind == "partial":
                    partial.update(ev.get("metrics", {}))
                elif kind in ("result", "error"):
                    step = ev["step"]
                    elapsed = time.monotonic() - started
                    if step == "setup":  # the worker could not even load the system
                        echo(f"  [{name}] setup failed: {ev['error']}")
                        for s in remaining:
                            records[s] = {"status": "error", "error": ev["error"], "seconds": None}
                        remaining.clear()
                        fatal = True
                        continue
                    if kind == "result":
                        records[step] = {"status": "ok", "metrics": ev.get("metrics", {}),
                                         "samples": ev.get("samples"), "extra": ev.get("extra"), "seconds": elapsed}
                        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in ev.get("metrics", {}).items())
                        echo(f"  [{name}] {step} ({elapsed:.1f} s) {shown}")
                    else:
                        records[step] = {"status": "error", "error": ev["error"], "metrics": partial,
                                         "traceback": ev.get("traceback"), "seconds": elapsed}
                        echo(f"  [{name}] {step}: error: {ev['error']}")
                    if step in remaining:
                        remaining.remove(step)
                    current = None
                    started = time.monotonic()
                    if not remaining:
                        # give the worker a short while to stop its clusters and say done
                        started = time.monotonic() - HELLO_TIMEOUT + 60
            kill_tree(proc.pid, token)
            proc.wait()
        for s in remaining:
            records[s] = {"status": "error", "error": f"not run: {MAX_WORKERS} workers used up", "seconds": None}
    return out


def _dump_stacks(pid: int, log: Any) -> None:
    """Write the stuck worker's Python stacks to its log, when py-spy is installed."""
    spy = shutil.which("py-spy")
    if spy is None:
        return
    log.write(f"\n--- py-spy dump of the worker (pid {pid}) at its timeout ---\n".encode())
    log.flush()
    try:
        subprocess.run([spy, "dump", "--pid", str(pid)], stdout=log, stderr=log, timeout=30)
    except (subprocess.TimeoutExpired, OSError):
        pass


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
