"""The client's results cache bounds what large results leave behind: a loop of 100 MB pulls from
a real engine on this host, through shared memory, dropping each result, holds no more than the
bound in /dev/shm and does not slow down (the issue: 40 such pulls kept 4 GB in
/dev/shm, unseen in the client's RSS, and pulls slowed down fivefold)."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from ..shmmaps import mapped_from
from .conftest import start, stop
from .test_datachannel import mapped

MB = 1 << 20
SIZE = 100_000_000  # bytes of the array pulled
BOUND = 300_000_000  # the cache's bound in this test: two such results (and a bit) fit
PULLS = 50


def owned(folder: str) -> int:
    """The cluster's bytes in shared memory: files in its folder, and those mapped here."""
    files = sum(os.stat(os.path.join(folder, n)).st_size for n in os.listdir(folder))
    return files + mapped_from(folder)


def test_a_loop_of_large_pulls_stays_within_the_bound_and_does_not_slow_down(tmp_path: Path) -> None:
    cluster, rc = start(tmp_path, n=1)
    try:
        folder = json.loads(cluster.connection_file("client").read_text())["shm"]
        assert folder.startswith("/dev/shm/")
        rc.results_cache_max_bytes = BOUND
        e0 = rc[0]
        e0.execute(f"import numpy as np; a = np.arange({SIZE // 8}, dtype=np.float64); w = np.ones({MB})",
                   block=True)
        # Results come through shared memory once the engine can address the client on the data
        # channel (its connection's handshake): pull a small one until they do.
        deadline = time.monotonic() + 30
        while not mapped(e0.pull("w", block=True)):
            assert time.monotonic() < deadline, "results never came through shared memory"
        rc.purge_local_results("all")
        times, peaks = [], []
        for i in range(PULLS):
            t0 = time.perf_counter()
            b = e0.pull("a", block=True)
            times.append(time.perf_counter() - t0)
            assert b.nbytes == SIZE and mapped(b)  # every pull on the fast path: /dev/shm has room
            del b
            peaks.append(owned(folder))
            info = rc.cache_info()
            assert info["bytes"] <= BOUND and info["results"] == min(i + 1, 2)
            # what the cache says it holds in shared memory is what is mapped (pages rounded up)
            assert info["shm_bytes"] <= mapped_from(folder) <= info["shm_bytes"] + 2 * 4096
        info = rc.cache_info()
        assert info["evictions"] == PULLS - 2 and info["evicted_bytes"] > (PULLS - 2) * SIZE
        assert max(peaks) <= BOUND, f"/dev/shm held {max(peaks)} bytes, over the bound of {BOUND}"
        # A result the user holds outlives its eviction: still mapped, intact, freed when dropped.
        held = e0.pull("a", block=True)
        held_id = rc.history[-1]
        for _ in range(3):
            e0.pull("a", block=True)
        assert held_id not in rc.results and mapped(held)
        assert owned(folder) >= 3 * SIZE  # two in the cache, and the one held
        assert (held[:: 1 << 16] == np.arange(0, SIZE // 8, 1 << 16)).all() and held[-1] == SIZE // 8 - 1
        del held
        assert owned(folder) <= BOUND
        # Speed: the pulls did not slow down as they went. Without the bound, every pull from
        # about the thirteenth on took 6x the first ones here. But this VM is shared, and memory
        # it frees may go back to the host and be slow to touch again (docs/performance.md, w4
        # variance), so a run of several pulls can take 3-8x the others while nothing is wrong.
        # A lasting slowdown moves the fastest quarter of the late pulls; a passing one does not.
        first = statistics.median(times[:3])
        late = sorted(times[-20:])[len(times[-20:]) // 4]
        shown = ", ".join(f"{t * 1e3:.0f}" for t in times)
        print(f"pulls of {SIZE} bytes: first 3 median {first * 1e3:.1f} ms, last 20's fastest quarter "
              f"{late * 1e3:.1f} ms, last 10 median {statistics.median(times[-10:]) * 1e3:.1f} ms; "
              f"/dev/shm peak {max(peaks)} bytes")
        assert late <= 2 * first + 0.05, f"pulls slowed down (ms: {shown})"
    finally:
        stop(cluster, rc)
