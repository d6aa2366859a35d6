"""The client's cache of finished results (ipcluster.client.cache): its two bounds, what it
reports, and that eviction leaves held results (shared-memory mappings included) valid."""

from __future__ import annotations

import gc
import logging
import os
import pickle
from typing import Any

import numpy as np
import pytest

from ipcluster.client import cache as cachemod
from ipcluster.client.cache import ResultCache, mapped_nbytes
from ipcluster.client.task import Task
from ipcluster.protocol import shm

MB = 1 << 20


def task(msg_id: str, nbytes: int = 0, value: Any = None) -> Task:
    t = Task(msg_id, "apply", 0, 0.0)
    t.nbytes, t.value, t.done = nbytes, value, True
    return t


# -- the cache itself (pure) -----------------------------------------------------------------------
def test_the_oldest_go_first_past_the_count() -> None:
    c = ResultCache(maxsize=3, max_bytes=1 << 30)
    for i in range(5):
        c.add(task(f"t{i}", nbytes=10))
    assert list(c) == ["t2", "t3", "t4"] and "t0" not in c and c.get("t1") is None
    assert c.info() == {"results": 3, "bytes": 30, "shm_bytes": 0, "max_results": 3, "max_bytes": 1 << 30,
                        "evictions": 2, "evicted_bytes": 20}


def test_the_oldest_go_first_past_the_bytes() -> None:
    c = ResultCache(maxsize=100, max_bytes=250)
    c.add(task("small", nbytes=0))  # an error or an execute reply: no bytes, but still the oldest
    for i in range(3):
        c.add(task(f"t{i}", nbytes=100))
    assert list(c) == ["t1", "t2"] and c.nbytes == 200
    assert c.evictions == 2 and c.evicted_bytes == 100
    c.add(task("huge", nbytes=251))  # over the bound on its own: not kept, and nothing goes for it
    assert list(c) == ["t1", "t2"] and c.nbytes == 200 and c.evicted_bytes == 351
    c.add(task("t3", nbytes=50))  # exactly at the bound: nothing goes
    assert list(c) == ["t1", "t2", "t3"] and c.nbytes == 250
    c.add(task("t4", nbytes=1))
    assert list(c) == ["t2", "t3", "t4"] and c.nbytes == 151


def test_purges_and_replacements_keep_the_byte_count() -> None:
    c = ResultCache(maxsize=10, max_bytes=1000)
    c.add(task("a", 100))
    c.add(task("b", 200))
    c.add(task("a", 300))  # a broadcast's engines share one msg_id: the last one is kept, once
    assert list(c) == ["b", "a"] and c.nbytes == 500 and c["a"].nbytes == 300
    assert c.discard("b") is not None and c.discard("b") is None and c.nbytes == 300
    c.clear()
    assert len(c) == 0 and c.nbytes == 0 and c.evictions == 0  # purges are not evictions
    for i in range(4):
        c.add(task(f"t{i}", 100))
    c.resize(max_bytes=150)  # a lower bound applies at once
    assert list(c) == ["t3"] and c.info()["max_bytes"] == 150 and c.evictions == 3
    c.resize(maxsize=0)
    assert len(c) == 0 and c.nbytes == 0


def test_evictions_are_logged_at_a_bounded_rate(caplog: pytest.LogCaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(cachemod.time, "monotonic", lambda: now[0])
    caplog.set_level(logging.DEBUG, logger="ipcluster.client.cache")
    c = ResultCache(maxsize=10, max_bytes=10_000)
    for i in range(5000):  # the turnover of tiny results: at most one DEBUG line per interval
        c.add(task(f"t{i}", 1))
    lines = [r for r in caplog.records if r.name == "ipcluster.client.cache"]
    assert len(lines) == 1 and lines[0].levelno == logging.DEBUG
    c.add(task("big", 9_999))  # evicts for its bytes: counted now, logged once the interval is over
    assert len([r for r in caplog.records if r.name == "ipcluster.client.cache"]) == 1
    now[0] += cachemod.EVICTION_LOG_INTERVAL
    c.add(task("big2", 9_999))
    last = caplog.records[-1]
    assert last.levelno == logging.INFO and "bytes" in last.getMessage()
    assert c.evictions == 5000 - 10 + 10 + 1


def shm_mappings(folder: str) -> int:
    """Bytes this process has mapped from files of ``folder`` (unlinked ones included)."""
    total = 0
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith(folder + "/"):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                total += end - start
    return total


@pytest.fixture
def shm_folder() -> Any:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else ""
    folder = shm.make_folder(base)
    if not folder:
        pytest.skip("no writable /dev/shm")
    try:
        yield folder
    finally:
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)


def test_a_held_result_stays_valid_after_eviction_and_its_memory_goes_with_it(shm_folder: str) -> None:
    """As a large result from an engine on this host arrives: its buffers in a shared-memory file,
    mapped and unlinked (protocol.shm), the array rebuilt on them without a copy."""
    a = np.arange(2 * MB // 8, dtype=np.float64)  # 2 MB
    oob: list[pickle.PickleBuffer] = []
    head = pickle.dumps(a, 5, buffer_callback=oob.append)
    name = shm.write(shm_folder, [oob[0].raw()])
    bufs = shm.take(shm_folder, name, [a.nbytes])
    assert os.listdir(shm_folder) == []  # no file to see, only the mapping
    held = pickle.loads(head, buffers=bufs)
    t = task("big", nbytes=len(head) + a.nbytes, value=held)
    t.shm_nbytes = mapped_nbytes(bufs)
    assert t.shm_nbytes == a.nbytes and mapped_nbytes([memoryview(head)]) == 0
    del bufs
    c = ResultCache(maxsize=10, max_bytes=3 * MB)
    c.add(t)
    assert c.info()["shm_bytes"] == a.nbytes and shm_mappings(shm_folder) >= a.nbytes
    del t
    c.add(task("next", nbytes=2 * MB))  # evicts "big"
    assert "big" not in c and c.info()["shm_bytes"] == 0 and c.evictions == 1
    gc.collect()
    assert shm_mappings(shm_folder) >= a.nbytes  # the user still holds it: still mapped, and intact
    assert (held == a).all()
    held[0] = -1.0  # still the user's own, writable copy-on-write pages
    assert held[0] == -1.0
    del held
    assert shm_mappings(shm_folder) == 0  # the last reference went: so did the memory
