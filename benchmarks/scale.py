"""Workload 7: a real ipcluster controller with many simulated engines.

For each engine count (``sizes.sim_engines``, then 2) it starts a fresh controller
(``python -m ipcluster.controller``), starts the simulated engines (``benchmarks.simengine``, all
in one process, the same simulator for both counts), times their registration, then drives
load-balanced no-op tasks through the controller from a minimal client written against the
protocol (a DEALER that sends signed ``apply_request`` messages without a target and counts the
replies, keeping at most ``WINDOW`` outstanding). Only the controller differs between the two
counts, so the throughput ratio isolates how its scheduling scales with engines.
"""

from __future__ import annotations

import json
import math
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import measure
from .spec import Sizes

#: tasks in flight from the driver (a burst like an apply_async loop, bounded to keep memory flat)
WINDOW = 2000
#: simulated engines per simulator process
PER_PROCESS = 256


def _wait_for(paths: list[Path], proc: subprocess.Popen[Any], timeout: float) -> None:
    end = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if proc.poll() is not None:
            raise RuntimeError(f"the controller exited with code {proc.returncode} before writing its connection files")
        if time.monotonic() > end:
            raise TimeoutError(f"no connection files from the controller after {timeout} s")
        time.sleep(0.01)  # a deadline-bounded poll: the controller has no other signal of readiness


class Controller:
    def __init__(self, workdir: Path) -> None:
        self.profile = workdir / f"profile_scale_{time.monotonic_ns()}"
        self.log = open(self.profile.with_suffix(".log"), "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ipcluster.controller", f"--profile-dir={self.profile}",
             "--ip=127.0.0.1", "--log-level=WARN"],
            stdout=self.log, stderr=subprocess.STDOUT)
        sec = self.profile / "security"
        self.client_file, self.engine_file = sec / "ipcontroller-client.json", sec / "ipcontroller-engine.json"
        _wait_for([self.client_file, self.engine_file], self.proc, 30)
        # the files are written atomically, but both must be complete JSON
        self.client_info = json.loads(self.client_file.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Simulators:
    """The simulated engines, in ``ceil(n / PER_PROCESS)`` processes."""

    def __init__(self, engine_file: Path, n: int) -> None:
        counts = [PER_PROCESS] * (n // PER_PROCESS) + ([n % PER_PROCESS] if n % PER_PROCESS else [])
        self.procs = [
            subprocess.Popen([sys.executable, "-m", "benchmarks.simengine", f"--connection={engine_file}", f"--n={k}"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for k in counts]

    def register(self, timeout: float) -> float:
        """Tell every simulator to go; return the seconds until all engines were registered."""
        t0 = time.perf_counter()
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in self.procs:
            assert p.stdout is not None
            ready, _, _ = select.select([p.stdout], [], [], max(0.0, timeout - (time.perf_counter() - t0)))
            line = p.stdout.readline() if ready else ""
            if not line:
                raise TimeoutError(f"simulated engines not registered after {timeout} s (or the simulator died)")
            json.loads(line)
        return time.perf_counter() - t0

    def stop(self) -> None:
        for p in self.procs:
            assert p.stdin is not None
            try:
                p.stdin.close()
            except OSError:
                pass
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Driver:
    """A minimal protocol-level client: just enough to submit load-balanced tasks."""

    def __init__(self, info: dict[str, Any]) -> None:
        import zmq

        from ipcluster.protocol.serialize import pack_apply
        from ipcluster.protocol.session import Session

        from .tasks import make

        self.zmq = zmq
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.connect(f"{info['interface']}:{info['client_port']}")
        self.session = Session(info["key"].encode(), username="bench")
        self.bufs = pack_apply(make().noop, (), {})

    def engines(self) -> int:
        _, frames = self.session.serialize("connection_request", {})
        self.sock.send_multipart(frames)
        if not self.sock.poll(10_000):
            raise TimeoutError("the controller did not answer connection_request in 10 s")
        _, msg = self.session.unpack(self.sock.recv_multipart())
        return len(msg["content"]["engines"])

    def run(self, n: int) -> float:
        """Submit ``n`` load-balanced no-op tasks; return the seconds until all replies are in."""
        zmq, sock, s = self.zmq, self.sock, self.session
        sent = received = errors = 0
        t0 = time.perf_counter()
        while received < n:
            while sent < n and sent - received < WINDOW:
                _, frames = s.serialize("apply_request", {}, None, {}, self.bufs)
                sock.send_multipart(frames)
                sent += 1
            if not sock.poll(30_000):
                raise TimeoutError(f"no reply for 30 s ({received} of {n} tasks answered)")
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                for _, msg in s.unpack_all(frames):  # replies come in batches under load
                    received += 1
                    if msg["content"].get("status") != "ok":
                        errors += 1
        elapsed = time.perf_counter() - t0
        if errors:
            raise RuntimeError(f"{errors} of {n} simulated tasks failed")
        return elapsed

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def _throughput(workdir: Path, engines: int, size: Sizes, deadline: float) -> dict[str, float]:
    ctrl = Controller(workdir)
    sims = driver = None
    try:
        sims = Simulators(ctrl.engine_file, engines)
        register_s = sims.register(timeout=60)
        driver = Driver(ctrl.client_info)
        seen = driver.engines()
        if seen != engines:
            raise RuntimeError(f"the controller lists {seen} engines; {engines} registered")
        driver.run(min(size.sim_tasks, 200))  # warm-up
        times = []
        for _ in range(size.sim_reps):
            times.append(driver.run(size.sim_tasks))
            if time.monotonic() > deadline:
                break
        return {"register_s": register_s, "tasks_per_s": size.sim_tasks / measure.median(times),
                "controller_peak_rss_MB": measure.peak_rss(ctrl.proc.pid) / measure.MB}
    finally:
        if driver is not None:
            driver.close()
        if sims is not None:
            sims.stop()
        ctrl.stop()


def run(size: Sizes, workdir: Path, deadline: float) -> dict[str, Any]:
    half = time.monotonic() + (deadline - time.monotonic()) / 2
    many = _throughput(workdir, size.sim_engines, size, half)
    two = _throughput(workdir, 2, size, deadline)
    return {
        "register_s": many["register_s"],
        "lb_many_tasks_per_s": many["tasks_per_s"],
        "lb_two_tasks_per_s": two["tasks_per_s"],
        "lb_many_vs_two": many["tasks_per_s"] / two["tasks_per_s"],
        "controller_peak_rss_256_MB": many["controller_peak_rss_MB"],
        "sim_engines": size.sim_engines,
        "sim_processes": math.ceil(size.sim_engines / PER_PROCESS),
    }
