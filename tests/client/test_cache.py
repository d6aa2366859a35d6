"""The client's cache of finished results (ipcluster.client.cache): its two bounds, what it
reports, that eviction leaves held results (shared-memory mappings included) valid, and the
Client's options, against the fake controller of conftest.py."""

from __future__ import annotations

import gc
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from traitlets import TraitError
from traitlets.config import Config

import ipcluster as ipp
from ipcluster.client import cache as cachemod
from ipcluster.client.cache import ResultCache, mapped_nbytes
from ipcluster.client.task import Task
from ipcluster.protocol import shm

from ..shmmaps import mapped_from
from .conftest import FakeCluster

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
    assert c.info()["shm_bytes"] == a.nbytes and mapped_from(shm_folder) >= a.nbytes
    del t
    c.add(task("next", nbytes=2 * MB))  # evicts "big"
    assert "big" not in c and c.info()["shm_bytes"] == 0 and c.evictions == 1
    gc.collect()
    assert mapped_from(shm_folder) >= a.nbytes  # the user still holds it: still mapped, and intact
    assert (held == a).all()
    held[0] = -1.0  # still the user's own, writable copy-on-write pages
    assert held[0] == -1.0
    del held
    assert mapped_from(shm_folder) == 0  # the last reference went: so did the memory


# -- the Client's options and view of it (fake controller) -----------------------------------------
def test_negative_bounds_are_clear_errors(make_client: Any) -> None:
    with pytest.raises(TraitError, match=r"results_cache_max_bytes is a number of bytes, 0 or more; got -1"):
        make_client(results_cache_max_bytes=-1)
    rc = make_client()
    with pytest.raises(TraitError, match=r"results_cache_size is a number of results, 0 or more; got -5"):
        rc.results_cache_size = -5
    with pytest.raises(TraitError):
        rc.results_cache_max_bytes = 1.5  # a number of bytes is whole
    with pytest.raises(TraitError):
        rc.results_cache_max_bytes = "1 GiB"
    rc.results_cache_max_bytes = 300e6  # an integral float is taken
    assert rc.results_cache_max_bytes == 300_000_000 and rc.cache_info()["max_bytes"] == 300_000_000
    rc.results_cache_max_bytes = 1 << 30
    assert rc.cache_info()["max_bytes"] == rc.results_cache_max_bytes == 1 << 30
    assert rc.cache_info()["max_results"] == rc.results_cache_size == 1024


def test_bounds_come_from_config_and_keyword_arguments(make_client: Any) -> None:
    cfg = Config({"Client": {"results_cache_max_bytes": 12345, "results_cache_size": 7}})
    rc = make_client(config=cfg)
    assert rc.results_cache_max_bytes == 12345 and rc.results_cache_size == 7
    assert rc.cache_info()["max_bytes"] == 12345 and rc.cache_info()["max_results"] == 7
    rc = make_client(results_cache_max_bytes=0)
    assert rc.cache_info()["max_bytes"] == 0


def test_an_evicted_result_behaves_as_a_purged_one(rc: ipp.Client, fake: FakeCluster) -> None:
    e0 = rc[0]
    ars = [e0.apply_async(lambda i: np.full(MB // 8, float(i)), i) for i in range(4)]  # 1 MB each
    values = [ar.get(timeout=5) for ar in ars]
    ids = [ar.msg_ids[0] for ar in ars]
    info = rc.cache_info()
    assert info["results"] == 4 and 4 * MB < info["bytes"] < 4 * MB + 4096 and info["shm_bytes"] == 0
    assert info["evictions"] == 0
    rc.results_cache_max_bytes = 2 * MB + 4096  # room for two: the two oldest go at once
    info = rc.cache_info()
    assert info["results"] == 2 and info["evictions"] == 2 and 2 * MB < info["bytes"] <= 2 * MB + 4096
    assert ids[0] not in rc.results and ids[0] not in rc.metadata and ids[2] in rc.results
    assert (rc.results[ids[3]] == 3.0).all()
    # what the user holds is intact: the values and the AsyncResults
    assert all((v == float(i)).all() for i, v in enumerate(values))
    assert (ars[0].get(timeout=5) == 0.0).all() and ars[0].metadata["engine_id"] == 0
    # get_result asks the controller for an evicted msg_id, as for a purged one
    asked = fake.received.count("result_request")
    again = rc.get_result(ids[0], block=True)
    assert (again == 0.0).all() and fake.received.count("result_request") == asked + 1
    rc.get_result(ids[3], block=True)  # still kept: not asked
    assert fake.received.count("result_request") == asked + 1
    rc.purge_local_results("all")
    assert rc.cache_info()["results"] == 0 and rc.cache_info()["bytes"] == 0


def test_a_closed_client_still_answers(make_client: Any) -> None:
    rc = make_client()
    rc[0].apply_sync(lambda: b"x" * 100)
    rc.close()
    assert rc.cache_info()["results"] == 1 and rc.cache_info()["bytes"] > 100
    rc.purge_local_results("all")
    assert rc.cache_info()["bytes"] == 0


def test_a_cluster_passes_its_config_to_its_clients(fake: FakeCluster, tmp_path: Path) -> None:
    # the fake wrote its connection file where a Cluster with this profile dir looks for it
    cluster = ipp.Cluster(profile_dir=str(tmp_path), cluster_id="", controller_timeout=5,
                          config=Config({"Client": {"results_cache_max_bytes": 4321}}))
    assert cluster.connection_file("client") == fake.connection_file
    rc = cluster.connect_client_sync()
    try:
        assert rc.results_cache_max_bytes == 4321 and rc.cache_info()["max_bytes"] == 4321
    finally:
        rc.close()
