"""Runs the workloads for one system, inside that system's interpreter.

``python -m benchmarks.worker --system NAME --engines N --steps w1,w2,... [--quick]``

It reports on its standard output, one JSON object a line, and nothing else there: library
output is sent to stderr (fd 1 is pointed at fd 2 on start). Events::

    {"event": "hello", "system", "version", "python", "pid"}
    {"event": "begin", "step"}                      # the orchestrator's clock for that step starts
    {"event": "partial", "step", "metrics": {key: number}}   # kept if the step later fails
    {"event": "result", "step", "metrics": {key: number}, "samples", "extra"}
    {"event": "error", "step", "error": "Type: message", "traceback": text}
    {"event": "done"}

Steps are the workload ids of ``spec.WORKLOADS`` plus ``session-start`` / ``session-stop``
around the cluster that workloads 2-6 share. The orchestrator kills this process when a step
runs past its budget and starts another for the steps that remain.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from . import measure, spec, tasks
from .systems import System, load

_out = sys.stdout


def emit(event: str, **fields: Any) -> None:
    _out.write(json.dumps({"event": event, **fields}) + "\n")
    _out.flush()


class Runner:
    def __init__(self, system_cls: type[System], n: int, quick: bool, workdir: Path) -> None:
        self.system_cls = system_cls
        self.n = n
        self.quick = quick
        self.size = spec.sizes(quick)
        self.workdir = workdir
        self.fn = tasks.make()
        self.session: System | None = None
        self.idle: dict[str, float] = {}

    def deadline(self, step: str, share: float = 0.5) -> float:
        """When a repeated measurement should stop starting new repetitions."""
        return time.monotonic() + share * spec.budget(spec.BY_ID[step], self.quick)

    # -- steps -----------------------------------------------------------------------------------
    def w1(self) -> dict[str, Any]:
        starts, stops = [], []
        deadline = self.deadline("w1", 0.4)
        for _ in range(self.size.start_reps):
            system = self.system_cls(self.workdir)
            starts.append(measure.timed(lambda: system.start(self.n)))
            stops.append(measure.timed(system.stop))
            if time.monotonic() > deadline:
                break
        return {"start_s": measure.median(starts), "stop_s": measure.median(stops),
                "_samples": {"start_s": starts, "stop_s": stops}}

    def session_start(self) -> dict[str, Any]:
        system = self.system_cls(self.workdir)
        system.start(self.n, session=True)
        self.session = system
        ctrl, engines = system.controller_pids(), system.engine_pids()
        self.idle = {"controller_idle_rss_MB": measure.total(ctrl, measure.rss),
                     "engine_idle_rss_MB": measure.largest(engines, measure.rss)}
        return {"controller_pids": ctrl, "engine_pids": engines}

    def session_stop(self) -> dict[str, Any]:
        if self.session is not None:
            system, self.session = self.session, None
            system.stop()
        return {}

    def _system(self) -> System:
        if self.session is None:
            raise RuntimeError("the shared cluster did not start (see session-start)")
        return self.session

    def w2(self) -> dict[str, Any]:
        s, f = self._system(), self.fn.noop
        out: dict[str, Any] = {}
        for kind, call in (("direct", s.call_direct), ("lb", s.call_balanced)):
            for _ in range(self.size.rt_warmup):
                call(f)
            samples = []
            for _ in range(self.size.rt_calls):
                t0 = time.perf_counter_ns()
                call(f)
                samples.append((time.perf_counter_ns() - t0) / 1000)
            out[f"rt_{kind}_median_us"] = measure.median(samples)
            out[f"rt_{kind}_p99_us"] = measure.percentile(samples, 99)
            emit("partial", step="w2", metrics=dict(out))
        return out

    def w3(self) -> dict[str, Any]:
        s, n = self._system(), self.size.noop_tasks
        items = list(range(n))
        deadline = self.deadline("w3", 0.2)
        s.map(self.fn.noop1, items[:10])  # warm-up: the function reaches every process once
        maps = measure.repeat(lambda: s.map(self.fn.noop1, items), self.size.throughput_reps, deadline)
        emit("partial", step="w3", metrics={"map_tasks_per_s": n / measure.median(maps)})
        deadline = self.deadline("w3", 0.2)
        loops = measure.repeat(lambda: s.submit_many(self.fn.noop, n), self.size.throughput_reps, deadline)
        return {"map_tasks_per_s": n / measure.median(maps),
                "apply_async_tasks_per_s": n / measure.median(loops),
                "_samples": {"map_s": maps, "apply_async_s": loops}}

    def w4(self) -> dict[str, Any]:
        import numpy as np

        s = self._system()
        nbytes = self.size.array_bytes
        a = np.arange(nbytes // 8, dtype=np.float64)
        mb = a.nbytes / measure.MB
        out: dict[str, Any] = {}
        samples: dict[str, list[float]] = {}
        deadline = self.deadline("w4", 0.2)
        for push_name, push, pull_name, pull in (("push", s.push, "pull", s.pull),
                                                 ("scatter", s.scatter, "gather", s.gather)):
            pushes, pulls = [], []
            for _ in range(self.size.transfer_reps):
                pushes.append(measure.timed(lambda: push(a)))
                t0 = time.perf_counter()
                back = pull()
                pulls.append(time.perf_counter() - t0)
                if back.shape != a.shape or back[-1] != a[-1]:
                    raise AssertionError(f"{pull_name} returned the wrong array ({back.shape})")
                del back
                if time.monotonic() > deadline:
                    break
            deadline = self.deadline("w4", 0.2)
            out[f"{push_name}_MBps"] = mb / measure.median(pushes)
            out[f"{pull_name}_MBps"] = mb / measure.median(pulls)
            emit("partial", step="w4", metrics={k: v for k, v in out.items() if k.endswith("MBps")})
            samples[f"{push_name}_s"], samples[f"{pull_name}_s"] = pushes, pulls
        out["_samples"] = samples
        return out

    def w5(self) -> dict[str, Any]:
        s, k, secs = self._system(), self.size.cpu_tasks, self.size.cpu_seconds
        walls = measure.repeat(lambda: s.map(self.fn.busy, [secs] * k), self.size.cpu_reps,
                               self.deadline("w5", 0.5))
        return {"cpu_wall_s": measure.median(walls), "cpu_ideal_s": k * secs / self.n,
                "_samples": {"cpu_wall_s": walls}}

    def w6(self) -> dict[str, Any]:
        s = self._system()
        ctrl, engines = s.controller_pids(), s.engine_pids()
        if not ctrl:
            raise RuntimeError("found no controller process to measure")
        return {"controller_peak_rss_MB": measure.total(ctrl, measure.peak_rss),
                "engine_peak_rss_MB": measure.largest(engines, measure.peak_rss),
                **self.idle}

    def w7(self) -> dict[str, Any]:
        from . import scale

        return scale.run(self.size, self.workdir, self.deadline("w7", 0.8))


def _run_step(runner: Runner, step: str) -> None:
    emit("begin", step=step)
    method = getattr(runner, step.replace("-", "_"))
    try:
        result = method()
    except BaseException as e:  # noqa: BLE001 - report and go on to the next step
        if isinstance(e, KeyboardInterrupt):
            raise
        emit("error", step=step, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        return
    samples = result.pop("_samples", None)
    metrics = {k: v for k, v in result.items() if isinstance(v, (int, float))}
    extra = {k: v for k, v in result.items() if k not in metrics}
    emit("result", step=step, metrics=metrics, samples=samples, extra=extra)


def main(argv: list[str] | None = None) -> None:
    global _out
    p = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    p.add_argument("--system", required=True, help=f"one of {', '.join(spec.SYSTEMS)}, or ipcluster@REV")
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--steps", required=True, help="comma-separated step names")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)

    # keep fd 1 for our JSON lines; whatever libraries print goes to stderr
    _out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    workdir = Path(tempfile.mkdtemp(prefix=f"ipcb-{args.system}-"))
    os.environ["IPYTHONDIR"] = str(workdir / "ipython")
    runner: Runner | None = None
    try:
        system_cls = load(args.system)
        emit("hello", system=args.system, version=system_cls.version(), pid=os.getpid(),
             python=platform.python_version())
        runner = Runner(system_cls, args.engines, args.quick, workdir)
        for step in args.steps.split(","):
            _run_step(runner, step)
    except Exception as e:
        emit("error", step="setup", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    finally:
        if runner is not None and runner.session is not None:
            try:
                runner.session_stop()
            except Exception:
                traceback.print_exc()
        shutil.rmtree(workdir, ignore_errors=True)
        emit("done")


if __name__ == "__main__":
    main()
