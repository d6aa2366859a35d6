"""Client, views and AsyncResult against a real cluster, as ipyparallel's documentation uses them.

Functions sent to engines import what they need inside their body: the two packages ship a
function's globals differently, and the tests must not depend on either way.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest

from .target import NAME, ipp


def getpid() -> int:
    import os

    return os.getpid()


def divide(a: float, b: float) -> float:
    return a / b


def square(x: int) -> int:
    return x * x


def slow(t: float) -> float:
    import time

    time.sleep(t)
    return t


def test_client_ids(rc: Any) -> None:
    assert rc.ids == [0, 1]
    assert len(rc) == 2


def test_direct_view_apply_returns_one_result_per_engine(dview: Any) -> None:
    pids = dview.apply_sync(getpid)
    assert isinstance(pids, list) and len(set(pids)) == 2


def test_single_engine_view_returns_the_value(rc: Any) -> None:
    assert isinstance(rc[0].apply_sync(getpid), int)


def test_push_pull_and_dict_access(dview: Any) -> None:
    dview.push({"a": 5, "b": "x"})
    assert dview.pull("a") == [5, 5]
    assert dview.pull(("a", "b")) == [[5, "x"], [5, "x"]]
    dview["c"] = 7
    assert dview["c"] == [7, 7]


def test_execute_runs_in_the_namespace(dview: Any) -> None:
    dview["a"] = 4
    dview.execute("b = a * 2")
    assert dview.pull("b") == [8, 8]


def test_scatter_gather(dview: Any) -> None:
    dview.scatter("x", list(range(10)))
    parts = dview.pull("x")
    assert sorted(len(p) for p in parts) == [5, 5]
    assert dview.gather("x") == list(range(10))


def test_reference_stands_for_an_engine_variable(dview: Any) -> None:
    dview["data"] = [1, 2, 3]
    assert dview.apply_sync(len, ipp.Reference("data")) == [3, 3]


def test_load_balanced_map(lview: Any) -> None:
    assert lview.map_sync(square, range(20)) == [x * x for x in range(20)]
    ar = lview.map_async(square, range(5))
    assert list(ar) == [0, 1, 4, 9, 16]


def test_map_on_a_direct_view(dview: Any) -> None:
    assert dview.map_sync(square, range(9)) == [x * x for x in range(9)]


def test_async_result_basics(lview: Any) -> None:
    ar = lview.apply_async(square, 7)
    assert ar.get(timeout=20) == 49
    assert ar.ready() and ar.successful()
    assert ar.get() == 49
    assert isinstance(ar.engine_id, int)
    assert ar.elapsed >= 0 and ar.wall_time >= 0 and ar.serial_time >= 0


def test_get_dict_is_keyed_by_engine_id(dview: Any) -> None:
    ar = dview.apply_async(getpid)
    d = ar.get_dict(timeout=20)
    assert sorted(d) == [0, 1]


def test_get_times_out_with_the_documented_error(lview: Any) -> None:
    ar = lview.apply_async(slow, 1.0)
    with pytest.raises(ipp.error.TimeoutError):
        ar.get(timeout=0.01)
    assert not ar.ready()
    assert ar.get(timeout=20) == 1.0


def test_metadata_keys(lview: Any) -> None:
    ar = lview.apply_async(print, "hello")
    ar.get(timeout=20)
    ar.wait_for_output(timeout=10)  # output may trail the result
    md = ar.metadata
    for key in ("msg_id", "submitted", "started", "completed", "received", "engine_id", "engine_uuid",
                "stdout", "stderr", "outputs", "status", "data", "after", "follow"):
        assert key in md, key
    assert md["engine_id"] == ar.engine_id
    assert ar.stdout == "hello\n"


def test_metadata_timestamps_are_aware_datetimes(lview: Any) -> None:
    """ipyparallel's timestamps are timezone-aware datetimes, in order, and the timing helpers
    take them. (ipyparallel's are in the local zone, ipcluster's in UTC: aware datetimes compare
    and subtract the same either way.)"""
    before = datetime.datetime.now(datetime.timezone.utc)
    ar = lview.apply_async(slow, 0.05)
    ar.get(timeout=20)
    after = datetime.datetime.now(datetime.timezone.utc)
    md = ar.metadata
    stamps = [md[key] for key in ("submitted", "started", "completed", "received")]
    for key, stamp in zip(("submitted", "started", "completed", "received"), stamps):
        assert isinstance(stamp, datetime.datetime), key
        assert stamp.utcoffset() is not None, key  # aware
        assert getattr(ar, key) == stamp, key  # ar.submitted, ar.started...
    assert before <= stamps[0] <= stamps[1] <= stamps[2] <= stamps[3] <= after
    ran = (md["completed"] - md["started"]).total_seconds()
    assert 0.05 <= ran < 10
    assert ar.timedelta(ar.submitted, ar.received) == pytest.approx(ar.wall_time, abs=1e-3)
    assert ar.timedelta(ar.started, ar.completed) == pytest.approx(ar.serial_time, abs=1e-3)
    assert ar.elapsed >= ran


def test_timedelta_of_a_multi_engine_result(dview: Any) -> None:
    ar = dview.apply_async(slow, 0.05)
    ar.get(timeout=20)
    assert len(ar.started) == 2 and all(isinstance(s, datetime.datetime) for s in ar.started)
    span = ar.timedelta(ar.started, ar.completed)  # the earliest start to the latest end
    assert span == pytest.approx((max(ar.completed) - min(ar.started)).total_seconds(), abs=1e-6)
    assert span >= max((c - s).total_seconds() for s, c in zip(ar.started, ar.completed)) >= 0.05


def test_remote_error_names_the_exception(lview: Any) -> None:
    ar = lview.apply_async(divide, 1, 0)
    with pytest.raises(ipp.error.RemoteError) as info:
        ar.get(timeout=20)
    assert info.value.ename == "ZeroDivisionError"
    assert "ZeroDivisionError" in info.value.traceback
    assert not ar.successful()


def test_composite_error_from_several_engines(dview: Any) -> None:
    with pytest.raises(ipp.error.CompositeError) as info:
        dview.apply_sync(divide, 1, 0)
    err = info.value
    assert len(err.elist) == 2
    with pytest.raises(ipp.error.RemoteError) as one:
        err.raise_exception()
    assert one.value.ename == "ZeroDivisionError"


def test_remote_and_parallel_decorators(dview: Any) -> None:
    @dview.remote(block=True)
    def pid() -> int:
        import os

        return os.getpid()

    assert len(set(pid())) == 2

    @dview.parallel(block=True)
    def double(xs: Any) -> Any:  # called with a chunk of the sequence
        return [2 * x for x in xs]

    assert double(range(6)) == [0, 2, 4, 6, 8, 10]

    @dview.parallel(block=True)
    def inc(x: int) -> int:  # .map: called with each element
        return x + 1

    assert inc.map(range(4)) == [1, 2, 3, 4]


def test_require_imports_on_the_engine(lview: Any) -> None:
    @ipp.require("os")
    @ipp.interactive  # as if typed at the prompt, as in the documentation's example
    def cwd() -> str:
        return os.getcwd()  # noqa: F821 (imported on the engine by @require)

    assert isinstance(lview.apply_sync(cwd), str)


def test_dependencies_after(lview: Any) -> None:
    first = lview.apply_async(slow, 0.2)
    with lview.temp_flags(after=[first]):
        second = lview.apply_async(time.time)
    finished_second = second.get(timeout=20)
    assert first.ready()  # "after": it could not start before the first one finished
    assert finished_second >= first.metadata["completed"].timestamp()


def test_executor_futures(lview: Any) -> None:
    ex = lview.executor
    fut = ex.submit(square, 3)
    assert fut.result(timeout=20) == 9
    assert list(ex.map(square, range(4))) == [0, 1, 4, 9]


def test_wait_for_engines_and_wait(rc: Any, lview: Any) -> None:
    rc.wait_for_engines(2, timeout=10)
    ars = [lview.apply_async(square, i) for i in range(4)]
    assert rc.wait(ars, timeout=20)
    assert [ar.get() for ar in ars] == [0, 1, 4, 9]


def test_cluster_object_knows_its_engines(cluster: Any) -> None:
    c, rc = cluster
    assert c.n == 2
    assert str(c.profile_dir)


# --- documented behaviour ipcluster lacks ---------------------------------------------


def path_head() -> str:
    import sys

    return sys.path[0]


def test_engine_sys_path_starts_with_cwd(dview: Any) -> None:
    assert dview.apply_sync(path_head) == ["", ""]


def test_async_result_split(dview: Any) -> None:
    ar = dview.apply_async(square, 3)
    parts = ar.split()
    assert [p.get(timeout=20) for p in parts] == [9, 9]


def test_async_result_join(rc: Any) -> None:
    ars = [rc[i].apply_async(square, i + 2) for i in (0, 1)]
    joined = ipp.AsyncResult.join(*ars)
    assert joined.get(timeout=20) == [4, 9]


def test_imap_iterator_cancel(lview: Any) -> None:
    it = lview.imap(square, range(4))
    assert next(it) == 0
    it.cancel()


def test_client_wait_interactive(rc: Any, lview: Any) -> None:
    lview.apply_async(square, 1)
    rc.wait_interactive(timeout=20)


def test_view_serialization_switches(dview: Any) -> None:
    dview.use_cloudpickle()
    assert dview.apply_sync(lambda: 3) == [3, 3]
    dview.use_pickle()


def locked_increment() -> Any:
    """A closure over a lock: cloudpickle (and ipyparallel's canning) refuse it, dill does not."""
    import threading

    lock = threading.Lock()

    def increment(x: int) -> int:
        with lock:
            return x + 1

    return increment


def new_lock() -> Any:
    import threading

    return threading.Lock()


def test_view_use_dill_sends_what_cloudpickle_cannot(dview: Any) -> None:
    pytest.importorskip("dill")
    increment = locked_increment()
    with pytest.raises(Exception):  # noqa: B017 (each package words it its own way)
        dview.apply_sync(increment, 1)
    dview.use_dill()
    try:
        assert dview.apply_sync(increment, 1) == [2, 2]
        locks = dview.apply_sync(new_lock)  # the engines pickle their results with dill too
        assert len(locks) == 2 and all(lock.acquire(blocking=False) for lock in locks)
        assert dview.apply_sync(lambda: 3) == [3, 3]
    finally:
        dview.use_pickle()
    assert dview.apply_sync(lambda: 4) == [4, 4]
    with pytest.raises(Exception):  # noqa: B017
        dview.apply_sync(increment, 1)


def test_view_register_joblib_backend(lview: Any) -> None:
    joblib = pytest.importorskip("joblib")
    lview.register_joblib_backend(name="compat-view")
    with joblib.parallel_backend("compat-view"):
        assert joblib.Parallel(n_jobs=2)(joblib.delayed(square)(i) for i in range(4)) == [0, 1, 4, 9]


def test_joblib_backend_class(lview: Any) -> None:
    """``<pkg>.joblib.IPythonParallelBackend(view=...)`` is a joblib backend on that view."""
    joblib = pytest.importorskip("joblib")
    import importlib

    backend = importlib.import_module(f"{NAME}.joblib").IPythonParallelBackend(view=lview)
    with joblib.parallel_backend(backend):
        out = joblib.Parallel(n_jobs=2)(joblib.delayed(getpid)() for _ in range(6))
    import os

    assert os.getpid() not in out


def test_client_become_dask_makes_the_engines_dask_workers(rc: Any) -> None:
    """``rc.become_dask()`` returns a ``distributed.Client`` whose workers are the engines;
    ``rc.stop_dask()`` stops them and the scheduler, and the engines go on working."""
    distributed = pytest.importorskip("distributed")
    import os

    engine_pids = sorted(rc[:].apply_sync(getpid))
    dask_client = rc.become_dask(scheduler_args={"dashboard": False})
    try:
        assert isinstance(dask_client, distributed.Client)
        dask_client.wait_for_workers(2, timeout=20)
        assert sorted(dask_client.run(os.getpid).values()) == engine_pids  # in the engine processes
        assert dask_client.submit(square, 7).result(timeout=20) == 49
        assert [f.result(timeout=20) for f in dask_client.map(square, range(5))] == [0, 1, 4, 9, 16]
    finally:
        rc.stop_dask()
        dask_client.close()
    assert rc[:].apply_sync(square, 3) == [9, 9]
    assert callable(rc.become_distributed) and callable(rc.stop_distributed)  # the older names


def reject_if(reject: bool, exc: type) -> str:
    if reject:
        raise exc("this engine lacks what the task needs")
    return "ran"


def test_task_reject_error_with_retries_runs_elsewhere(rc: Any, lview: Any) -> None:
    """"If not, the task should raise [TaskRejectError]. For the task to be retried on another
    engine, the task should be created with the retries argument" (ipyparallel.error)."""
    rc[0]["_reject"] = True
    rc[1]["_reject"] = False
    with lview.temp_flags(retries=1):
        ars = [lview.apply_async(reject_if, ipp.Reference("_reject"), ipp.error.TaskRejectError) for _ in range(4)]
    assert [ar.get(timeout=20) for ar in ars] == ["ran"] * 4
    assert {ar.engine_id for ar in ars} == {1}


def test_remote_and_parallel_function_classes(dview: Any, lview: Any) -> None:
    """``ipp.RemoteFunction(view, f, block=None, **flags)`` and ``ipp.ParallelFunction(view, f,
    dist="b", block=None, **flags)``, what ``@view.remote`` and ``@view.parallel`` make."""
    rf = ipp.RemoteFunction(dview, square, block=True)
    assert rf(3) == [9, 9]
    pf = ipp.ParallelFunction(lview, square, block=True)
    assert pf.map(range(4)) == [0, 1, 4, 9]
    assert isinstance(lview.executor, ipp.ViewExecutor)
