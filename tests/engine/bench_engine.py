"""How much time an engine spends per request (not collected by pytest: run it directly).

    python tests/engine/bench_engine.py [N]

Starts a real engine against the test suite's fake controller and reports, for a no-op apply
of a builtin (sent by reference) and of a ``__main__`` lambda (sent by value, rebound to the
user namespace, as from a notebook):

- *round trip*: one request at a time, wall-clock time per request (both processes' work plus
  two loopback hops);
- *queued*: N requests queued behind a task that sleeps, so the engine finds them all waiting
  (as under load): wall-clock time per reply, and CPU time per request of the engine's main
  thread (its Python work) and of the whole process (adding ZeroMQ's I/O thread), from /proc.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ipcluster.protocol.serialize import pack_apply  # noqa: E402
from tests.engine.conftest import CLIENT, FakeController, start_engine  # noqa: E402


def cpu_seconds(proc: psutil.Process) -> tuple[float, float]:
    """(main thread, whole process) CPU seconds."""
    t = proc.cpu_times()
    main = next(th for th in proc.threads() if th.id == proc.pid)
    return main.user_time + main.system_time, t.user + t.system


async def bench(n: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    c = FakeController(tmp)
    c.start()
    c.write_file()
    t0 = time.perf_counter()
    e = start_engine(c, tmp)
    await e.register()
    print(f"engine registered {1000 * (time.perf_counter() - t0):.0f} ms after Popen")
    proc = psutil.Process(e.proc.pid)
    noop = lambda: None  # noqa: E731
    cases = {"builtin (by reference)": (abs, (0,)), "__main__ lambda (by value)": (noop, ())}
    try:
        for label, (f, args) in cases.items():
            buffers = pack_apply(f, args, {})
            for _ in range(200):  # warm up (imports cloudpickle on the engine, etc.)
                await e.request("apply_request", {}, buffers)
                await c.recv()
            # round trips
            m = min(n, 2000)
            t = time.perf_counter()
            for _ in range(m):
                await e.request("apply_request", {}, buffers)
                await c.recv()
            rt = (time.perf_counter() - t) / m
            # queued: all requests wait behind a sleeping task
            frames = [
                c.session.serialize("apply_request", {}, buffers=buffers, idents=[e.identity, CLIENT])[1]
                for _ in range(n)
            ]
            blocker = pack_apply(time.sleep, (0.5,), {})
            await e.request("apply_request", {}, blocker)
            for fr in frames:
                await c.router.send_multipart(fr, copy=False)
            await c.recv(timeout=30)  # the blocker's reply
            main0, all0 = cpu_seconds(proc)
            t = time.perf_counter()
            got = 0
            while got < n:  # replies come in batches while tasks are queued
                frs = await c.router.recv_multipart(copy=False)
                got += len(c.session.unpack_all(frs))
            wall = (time.perf_counter() - t) / n
            main1, all1 = cpu_seconds(proc)
            assert c.session.unpack_all(frs)[-1][1]["content"]["status"] == "ok"
            print(
                f"{label:28s} round trip {rt * 1e6:5.0f} µs | queued: {wall * 1e6:4.0f} µs/reply, engine CPU "
                f"{(main1 - main0) / n * 1e6:5.1f} µs/request in its main thread, {(all1 - all0) / n * 1e6:5.1f} in all"
            )
    finally:
        e.proc.kill()
        e.proc.wait()
        await c.close()


if __name__ == "__main__":
    asyncio.run(bench(int(sys.argv[1]) if len(sys.argv) > 1 else 20000))
