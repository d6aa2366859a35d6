"""``Client.become_dask`` / ``stop_dask`` with real processes: the engines are the workers, the
scheduler runs in the controller, and stopping leaves no dask thread or process behind."""

from __future__ import annotations

import operator
import sys
from typing import Any

import psutil
import pytest

import ipcluster as ipp
from ipcluster import error

distributed = pytest.importorskip("distributed")


def thread_names() -> list[str]:
    import threading

    return sorted(t.name for t in threading.enumerate())


def worker_address() -> str | None:
    from ipcluster.protocol.daskworker import worker_address

    return worker_address()


def hide_distributed() -> None:
    import sys

    sys.modules["distributed"] = None  # type: ignore[assignment]  # `import distributed` now fails


def unhide_distributed() -> None:
    import sys

    if sys.modules.get("distributed", 0) is None:
        del sys.modules["distributed"]


def children(cluster: ipp.Cluster) -> list[Any]:
    """The cluster processes' children, but multiprocessing's resource tracker: a process that
    started a child by "spawn" (as dask's nanny does) keeps one for as long as it lives."""
    found = [c for pid in cluster.running_pids() for c in psutil.Process(pid).children(recursive=True)]
    return [c for c in found if "resource_tracker" not in " ".join(c.cmdline())]


def test_become_and_stop_dask_twice_leave_nothing_behind(shared: tuple[ipp.Cluster, ipp.Client]) -> None:
    cluster, rc = shared
    controller = psutil.Process(cluster.running_pids()[0])
    view = rc[:]
    view.block = True
    engine_threads = view.apply_sync(thread_names)
    mine = set(thread_names())
    controller_threads = []
    for _ in range(2):
        dask_client = rc.become_dask(scheduler_args={"dashboard": False}, dashboard=False)
        workers = dask_client.scheduler_info()["workers"]
        assert sorted(workers) == sorted(view.apply_sync(worker_address))  # registered before it returned
        assert dask_client.scheduler.address.startswith("tcp://127.0.0.1:")  # on the controller's interface
        assert all(w["nthreads"] == 1 for w in workers.values())
        assert dask_client.submit(operator.mul, 6, 7).result(timeout=20) == 42
        rc.stop_dask()
        assert dask_client.status == "closed"
        assert view.apply_sync(worker_address) == [None, None]
        assert view.apply_sync(thread_names) == engine_threads  # the worker, its loop and pool are gone
        assert children(cluster) == []
        assert set(thread_names()) <= mine  # the distributed.Client's thread too
        controller_threads.append(controller.num_threads())
    # the scheduler's thread and loop went with it; what distributed keeps per process (an idle
    # offload thread) was made the first time, so a second round adds nothing
    assert controller_threads[1] <= controller_threads[0]
    assert view.apply_sync(operator.add, 1, 2) == [3, 3]


def test_an_engine_without_distributed_is_named_and_nothing_is_left_started(
        shared: tuple[ipp.Cluster, ipp.Client]) -> None:
    cluster, rc = shared
    rc[0].apply_sync(hide_distributed)
    try:
        with pytest.raises(error.CompositeError) as info:
            rc.become_dask(scheduler_args={"dashboard": False}, dashboard=False)
        [err] = info.value.elist
        assert err.ename == "ImportError" and "pip install distributed" in err.evalue
        assert err.engine_info["engine_id"] == 0
    finally:
        rc[0].apply_sync(unhide_distributed)
    assert rc[:].apply_sync(worker_address) == [None, None]  # engine 1's worker was stopped again
    assert rc._dask._query("stop_dask_request", {}) == {"status": "ok", "stopped": False}  # and the scheduler


def test_a_client_without_distributed_says_so_before_asking(rc: ipp.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    sent = len(rc.history)
    with pytest.raises(ImportError, match=r"this client .*pip install distributed"):
        rc.become_dask()
    assert len(rc.history) == sent


@pytest.mark.slow
def test_nanny_workers_are_child_processes_and_stop_with_it(shared: tuple[ipp.Cluster, ipp.Client]) -> None:
    cluster, rc = shared
    dask_client = rc.become_dask(nanny=True, scheduler_args={"dashboard": False}, dashboard=False)
    try:
        dask_client.wait_for_workers(2, timeout=30)
        pids = set(dask_client.run(lambda: __import__("os").getpid()).values())
        assert pids == {c.pid for c in children(cluster)} and len(pids) == 2  # not the engines: their children
    finally:
        rc.stop_dask()
    assert children(cluster) == []  # the nanny waited for its worker process to exit
