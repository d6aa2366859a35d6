"""DirectView and AsyncResult against a real cluster."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

import ipcluster as ipp
from ipcluster import error


def test_views_select_engines(rc: ipp.Client) -> None:
    assert rc.ids == [0, 1] and len(rc) == 2
    assert rc[:].targets == [0, 1] or list(rc[:].targets) == [0, 1]
    assert rc[0].targets == 0
    assert rc[::2].apply_sync(lambda: 1) == [1]
    assert rc[[1]].apply_sync(lambda: 1) == [1]
    assert rc[:].block is False  # ipyparallel's default
    pids = rc[:].apply_sync(os.getpid)
    assert [rc.engine_info[e]["pid"] for e in (0, 1)] == pids  # as registered with the controller


def test_apply_runs_on_every_engine(rc: ipp.Client) -> None:
    pids = rc[:].apply_sync(os.getpid)
    assert len(set(pids)) == 2 and os.getpid() not in pids
    ar = rc[:].apply_async(lambda a, b=1: a + b, 2, b=3)
    assert ar.get(timeout=10) == [5, 5]
    assert rc[0].apply_sync(lambda: 7) == 7  # a single engine gives a single result


def test_map_partitions_in_order(rc: ipp.Client) -> None:
    assert rc[:].map_sync(lambda x: x * 2, range(11)) == [x * 2 for x in range(11)]
    assert rc[:].map_sync(lambda a, b: a + b, [1, 2, 3], [10, 20, 30]) == [11, 22, 33]
    amr = rc[:].map_async(lambda x: os.getpid(), range(4))
    assert len(set(amr.get(timeout=10))) == 2  # both engines got a part
    assert list(rc[:].imap(lambda x: -x, range(5))) == [0, -1, -2, -3, -4]


def test_push_pull_and_dict_access(rc: ipp.Client) -> None:
    dv = rc[:]
    dv.push({"a": 5, "b": "text"}, block=True)
    assert dv.pull("a", block=True) == [5, 5]
    assert dv.pull(["a", "b"], block=True) == [[5, "text"], [5, "text"]]
    dv["c"] = [1, 2]
    assert dv["c"] == [[1, 2], [1, 2]]
    assert rc[1].pull("b", block=True) == "text"
    with pytest.raises(error.CompositeError) as e:
        dv.pull("missing", block=True)
    assert "NameError" in str(e.value)


def test_scatter_gather_lists_and_arrays(rc: ipp.Client) -> None:
    dv = rc[:]
    dv.scatter("part", list(range(10)), block=True)
    assert dv.pull("part", block=True) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert dv.gather("part", block=True) == list(range(10))
    a = np.arange(1000.0)
    dv.scatter("arr", a, block=True)
    parts = dv.pull("arr", block=True)
    assert [p.shape for p in parts] == [(500,), (500,)]
    back = dv.gather("arr", block=True)
    assert isinstance(back, np.ndarray) and (back == a).all()


def test_large_array_round_trip(rc: ipp.Client) -> None:
    a = np.random.default_rng(0).random(2_000_000)  # 16 MB
    rc[0].push({"big": a}, block=True)
    assert rc[0].apply_sync(lambda: float(big.sum())) == pytest.approx(float(a.sum()))  # noqa: F821
    b = rc[0].pull("big", block=True)
    assert (b == a).all() and b.flags.writeable


def test_execute_run_and_references(rc: ipp.Client, tmp_path) -> None:
    dv = rc[:]
    dv.execute("x = 6 * 7", block=True)
    assert dv["x"] == [42, 42]
    script = tmp_path / "script.py"
    script.write_text("y = x + 1\n")
    dv.run(str(script), block=True)
    assert dv["y"] == [43, 43]
    assert dv.apply_sync(lambda v: v * 2, ipp.Reference("y")) == [86, 86]


def test_interactive_functions_see_the_engine_namespace(rc: ipp.Client) -> None:
    rc[:].push({"offset": 100}, block=True)

    @ipp.interactive
    def shift(v):
        return v + offset  # noqa: F821 - defined on the engines

    assert rc[:].apply_sync(shift, 1) == [101, 101]


def test_remote_and_parallel_decorators(rc: ipp.Client) -> None:
    dv = rc[:]

    @dv.remote(block=True)
    def getpid():
        import os

        return os.getpid()

    assert len(set(getpid())) == 2

    @dv.parallel(block=True)
    def double(chunk):
        return [c * 2 for c in chunk]

    assert double(list(range(6))) == [0, 2, 4, 6, 8, 10]

    @dv.parallel(block=True)
    def inc(x):
        return x + 1

    assert inc.map(range(5)) == [1, 2, 3, 4, 5]


def test_sync_imports(rc: ipp.Client) -> None:
    with rc[:].sync_imports(quiet=True):
        import json  # noqa: F401
    assert rc[:].apply_sync(lambda: json.dumps([1])) == ["[1]", "[1]"]  # noqa: F821


def test_async_result_api(rc: ipp.Client) -> None:
    ar = rc[:].apply_async(lambda: (print("hello"), __import__("time").sleep(0.2))[0])
    assert ar.wait(timeout=10) and ar.ready() and ar.successful()
    assert ar.get() == [None, None] and ar.result() == [None, None]
    assert ar.stdout == ["hello\n", "hello\n"]
    assert [m["engine_id"] for m in ar.metadata] == [0, 1]
    for md in ar.metadata:
        assert md["started"] <= md["completed"]
    assert ar.elapsed >= 0.2 and ar.wall_time >= 0.2 and ar.serial_time >= 0.4
    assert ar.progress == 2 and len(ar) == 2
    assert list(ar) == [None, None]
    slow = rc[0].apply_async(__import__("time").sleep, 3)
    with pytest.raises(error.TimeoutError):
        slow.get(timeout=0.1)
    assert not slow.ready()
    slow.wait(10)


def test_await_results(rc: ipp.Client) -> None:
    async def main():
        return await rc[0].apply_async(lambda: 9)

    assert asyncio.run(main()) == 9


def test_wait_interactive_reports_progress(rc: ipp.Client, capsys) -> None:
    amr = rc[:].map_async(lambda x: x, range(4))
    amr.wait_interactive(interval=0.05)
    assert amr.ready()
    assert "4/4" in capsys.readouterr().out


def test_display_outputs(rc: ipp.Client, capsys) -> None:
    ar = rc[:].execute("print('shown'); import sys; print('oops', file=sys.stderr)", block=True)
    ar.display_outputs()
    out, err = capsys.readouterr()
    assert out.count("shown") == 2 and "[stdout:0]" in out and "[stdout:1]" in out
    assert err.count("oops") == 2


def test_remote_errors_carry_the_engine_traceback(rc: ipp.Client) -> None:
    def fail():
        return 1 / 0

    with pytest.raises(error.RemoteError) as e:
        rc[0].apply_sync(fail)
    assert e.value.ename == "ZeroDivisionError" and "1 / 0" in e.value.traceback
    assert e.value.engine_id == 0
    with pytest.raises(error.CompositeError) as ce:
        rc[:].apply_sync(fail)
    assert len(ce.value.elist) == 2 and {x.engine_id for x in ce.value.elist} == {0, 1}
    assert "ZeroDivisionError" in "".join(ce.value.render_traceback())
    assert rc[:].apply_sync(lambda: "still fine") == ["still fine"] * 2


def test_unpicklable_argument_fails_locally(rc: ipp.Client) -> None:
    import threading

    lock = threading.Lock()
    with pytest.raises(error.SerializationError, match="lock"):
        rc[0].apply_async(id, lock)
    assert rc[0].apply_sync(lambda: 1) == 1


def test_controller_queries(rc: ipp.Client, shared) -> None:
    shared_cluster = shared[0]
    ar = rc[0].apply_async(lambda: 42)
    ar.get(timeout=10)
    status = rc.queue_status()
    assert set(status) >= {0, 1, "unassigned"}
    assert rc.result_status(ar.msg_ids)["completed"] == ar.msg_ids
    other = ipp.Client(url_file=str(shared_cluster.connection_file("client")))
    try:
        assert other.get_result(ar.msg_ids[0]).get(timeout=10) == 42
    finally:
        other.close()
    assert ar.msg_ids[0] in rc.hub_history()
    rc.purge_results(ar.msg_ids)
    assert ar.msg_ids[0] not in rc.hub_history()


def test_a_module_in_the_engines_working_folder_imports(rc: ipp.Client, tmp_path) -> None:
    """'' leads sys.path on engines, as in IPython kernels: after os.chdir(d), a function from a
    module in d (sent by reference) unpickles there."""
    import importlib
    import os
    import sys

    (tmp_path / "cwdmod_e2e.py").write_text("def triple(x):\n    return 3 * x\n")
    sys.path.insert(0, str(tmp_path))
    old = rc[0].apply_sync(os.getcwd)
    try:
        triple = importlib.import_module("cwdmod_e2e").triple
        assert rc[0].apply_sync(lambda: __import__("sys").path[0]) == ""
        rc[0].apply_sync(os.chdir, str(tmp_path))
        assert rc[0].apply_sync(triple, 2) == 6
    finally:
        rc[0].apply_sync(os.chdir, old)
        sys.path.remove(str(tmp_path))
        sys.modules.pop("cwdmod_e2e", None)
