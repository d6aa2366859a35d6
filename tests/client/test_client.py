"""The client against the fake controller of conftest.py: connecting, views, data movement and
failures, over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ipcluster as ipp
from ipcluster import error
from ipcluster.protocol.connection import write_private_json

from .conftest import FakeCluster


# -- connecting ------------------------------------------------------------------------------------
def test_connects_with_the_default_profile(fake: FakeCluster, ipython_dir: Path) -> None:
    write_private_json(ipython_dir / "profile_default" / "security" / "ipcontroller-client.json", fake.info)
    with ipp.Client(timeout=5) as rc:
        assert rc.ids == [0, 1] and len(rc) == 2
        assert rc._task_scheme == "fake" and rc.cluster is None
    assert rc._io.closed


def test_connection_info_dict_and_repr(fake: FakeCluster) -> None:
    rc = ipp.Client(connection_info=fake.info, timeout=5)
    try:
        assert "2 engines" in repr(rc)
        assert fake.subscriptions >= 1  # it waited for the iopub welcome
    finally:
        rc.close()
    assert "closed" in repr(rc)


def test_wrong_key_is_an_authentication_error(fake: FakeCluster, tmp_path: Path) -> None:
    bad = write_private_json(tmp_path / "bad.json", {**fake.info, "key": "not-the-key"})
    with pytest.raises(error.AuthenticationError, match="key .*does not match"):
        ipp.Client(str(bad), timeout=5)


def test_no_controller_is_a_timeout_naming_where(tmp_path: Path, fake: FakeCluster) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    info = {**fake.info, "client_port": port}
    path = write_private_json(tmp_path / "stale.json", info)
    t0 = time.monotonic()
    with pytest.raises(error.TimeoutError, match=f"127.0.0.1:{port}.*stale.json"):
        ipp.Client(str(path), timeout=0.3)
    assert time.monotonic() - t0 < 5


def test_missing_connection_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(error.IPClusterError, match="does not exist"):
        ipp.Client(str(tmp_path / "nope.json"))


# -- engines and views ----------------------------------------------------------------------------
def test_indexing_makes_direct_views(rc: ipp.Client) -> None:
    assert rc[:].targets == [0, 1] and rc[0].targets == 0 and rc[-1].targets == 1
    assert rc[::2].targets == [0] and rc[[1]].targets == [1]
    assert rc.direct_view().targets == "all" and rc[:].block is False
    assert rc.load_balanced_view().targets is None
    assert rc.load_balanced_view([1]).targets == [1]
    with pytest.raises(error.NoEnginesError):
        rc[5]
    with pytest.raises(TypeError):
        rc["a"]


def test_engine_notifications_update_ids_and_wake_waiters(rc: ipp.Client, fake: FakeCluster) -> None:
    fut = rc.wait_for_engines(3, timeout=10, block=False)
    assert not fut.done()
    fake.add_engine(2)
    fut.result(5)
    assert rc.ids == [0, 1, 2]
    fake.remove_engine(2)
    deadline = time.monotonic() + 5
    while rc.ids != [0, 1] and time.monotonic() < deadline:  # bounded poll of a notice
        rc._io.replies.wait_until(lambda: 2 not in rc._io.engines, 0.5)
    assert rc.ids == [0, 1]
    with pytest.raises(error.TimeoutError, match="2 engine"):
        rc.wait_for_engines(3, timeout=0.2)
    rc.wait_for_engines(2, timeout=1)


def test_wait_for_engines_defaults_to_what_its_maker_expects(rc: ipp.Client) -> None:
    with pytest.raises(ValueError, match="number of engines"):
        rc.wait_for_engines(timeout=0.2)
    rc.expected_engines = 2
    rc.wait_for_engines(timeout=1)
    rc.expected_engines = lambda: 3  # a Cluster passes its own count, asked at each wait
    with pytest.raises(error.TimeoutError, match="waited for 3"):
        rc.wait_for_engines(timeout=0.2)


def test_apply_on_one_all_and_load_balanced(rc: ipp.Client) -> None:
    assert rc[0].apply_sync(lambda: 7) == 7
    assert rc[:].apply_sync(lambda a, b=1: a + b, 2, b=3) == [5, 5]
    ar = rc[:].apply_async(os.getpid)
    assert ar.get(timeout=5) == [os.getpid()] * 2 and ar.get_dict() == {0: os.getpid(), 1: os.getpid()}
    lview = rc.load_balanced_view()
    assert lview.apply_sync(pow, 2, 10) == 1024
    ars = [lview.apply_async(lambda x: x * x, i) for i in range(20)]
    assert [a.get(timeout=5) for a in ars] == [i * i for i in range(20)]
    assert {a.engine_id for a in ars} == {0, 1}
    assert rc.wait(ars, timeout=5) and not rc.outstanding
    assert len(lview.history) == 21 and lview.outstanding == set()


def test_map_keeps_order(rc: ipp.Client) -> None:
    dv = rc[:]
    assert dv.map_sync(lambda x: x * 2, range(11)) == [x * 2 for x in range(11)]
    assert dv.map_sync(lambda a, b: a + b, [1, 2, 3], (10, 20, 30)) == [11, 22, 33]
    assert dv.map_sync(lambda x: x, []) == []
    assert dv.map_sync(float, np.arange(5)) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert list(dv.imap(lambda x: -x, range(5))) == [0, -1, -2, -3, -4]
    amr = dv.map_async(lambda x: x + 1, range(6))
    assert len(amr) == 6 and amr.get(timeout=5) == [1, 2, 3, 4, 5, 6] and amr[2] == 3
    lview = rc.load_balanced_view()
    assert lview.map_sync(lambda x: x * x, range(100)) == [x * x for x in range(100)]
    amr = lview.map_async(lambda x: x, range(30), chunksize=7, ordered=False)
    assert sorted(amr) == list(range(30)) and len(amr.msg_ids) == 5
    assert list(lview.imap(lambda x: -x, iter(range(50)), chunksize=3, max_outstanding=4)) == [-x for x in range(50)]
    assert sorted(lview.imap(abs, [-1, -2, -3], ordered=False)) == [1, 2, 3]


def test_map_of_an_interactive_function_sees_the_engine_namespace(rc: ipp.Client) -> None:
    dv = rc[:]
    dv.push({"offset": 100}, block=True)

    @ipp.interactive
    def shift(v):  # type: ignore[no-untyped-def]
        return v + offset  # type: ignore[name-defined]  # noqa: F821

    assert dv.map_sync(shift, [1, 2, 3, 4]) == [101, 102, 103, 104]
    assert rc.load_balanced_view().map_sync(shift, [5]) == [105]


def test_push_pull_and_dict_access(rc: ipp.Client) -> None:
    dv = rc[:]
    assert dv.push({"a": 5, "b": "text"}, block=True) == [None, None]
    assert dv.pull("a", block=True) == [5, 5]
    assert dv.pull(["a", "b"], block=True) == [[5, "text"], [5, "text"]]
    dv["c"] = [1, 2]
    assert dv["c"] == [[1, 2], [1, 2]] and dv.get("a") == [5, 5]
    dv.update({"d": 1})
    assert rc[1].pull("b", block=True) == "text"
    with pytest.raises(error.CompositeError, match="NameError"):
        dv.pull("missing", block=True)
    with pytest.raises(TypeError):
        dv.pull(3)
    assert dv.apply_sync(lambda v: v * 2, ipp.Reference("a")) == [10, 10]


def test_scatter_and_gather(rc: ipp.Client) -> None:
    dv = rc[:]
    assert dv.scatter("part", list(range(10)), block=True) is None
    assert dv.pull("part", block=True) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert dv.gather("part", block=True) == list(range(10))
    dv.scatter("one", [1, 2], flatten=True, block=True)
    assert dv["one"] == [1, 2]
    a = np.arange(1001.0)
    dv.scatter("arr", a).get(timeout=5)
    assert [p.shape for p in dv.pull("arr", block=True)] == [(501,), (500,)]
    back = dv.gather("arr").get(timeout=5)
    assert isinstance(back, np.ndarray) and (back == a).all()


def test_execute_run_and_clear(rc: ipp.Client, tmp_path: Path) -> None:
    dv = rc[:]
    ar = dv.execute("x = 6 * 7", block=True)
    assert ar.ready() and dv["x"] == [42, 42]
    result = dv.execute("x + 1", silent=False).get(timeout=5)
    assert [repr(r) for r in result] == ["Out[0:1]: 43", "Out[1:1]: 43"]
    script = tmp_path / "script.py"
    script.write_text("y = x + 1\n")
    dv.run(str(script), block=True)
    assert dv["y"] == [43, 43]
    with pytest.raises(error.CompositeError, match="ZeroDivisionError"):
        dv.execute("1 / 0", block=True)
    dv.clear(block=True)
    with pytest.raises(error.RemoteError, match="NameError"):
        rc[0].pull("x", block=True)


def test_output_and_metadata(rc: ipp.Client, fake: FakeCluster) -> None:
    def noisy() -> int:
        import sys

        print("hello")
        print("oops", file=sys.stderr)
        return 1

    ar = rc[:].apply_async(noisy)
    assert ar.get(timeout=5) == [1, 1]
    assert ar.stdout == ["hello\n", "hello\n"] and ar.stderr == ["oops\n", "oops\n"]
    assert [m["engine_id"] for m in ar.metadata] == [0, 1]
    for md in ar.metadata:
        assert md["submitted"] <= md["started"] <= md["completed"] <= md["received"]
        assert md["status"] == "ok" and md.msg_id in ar.msg_ids
    fake.iopub_after_reply = True  # output arriving after the reply is still waited for

    @ipp.interactive
    def show() -> str:
        print("late")
        _fake_display({"text/plain": "picture"})  # type: ignore[name-defined]  # noqa: F821
        return "done"

    for _ in range(5):
        ar = rc[0].apply_async(show)
        assert ar.get(timeout=5) == "done"
        assert ar.stdout == "late\n" and ar.outputs == [{"data": {"text/plain": "picture"}, "metadata": {}}]
    assert rc.metadata[ar.msg_ids[0]]["stdout"] == "late\n" and rc.results[ar.msg_ids[0]] == "done"
    completed = rc.metadata[ar.msg_ids[0]]["completed"]
    assert completed == ar.completed and completed.tzinfo is datetime.timezone.utc


def test_display_outputs_and_wait_interactive(rc: ipp.Client, capsys: pytest.CaptureFixture[str]) -> None:
    ar = rc[:].execute("print('shown'); import sys; print('oops', file=sys.stderr)", block=True)
    ar.display_outputs()
    out, err = capsys.readouterr()
    assert out.count("shown") == 2 and "[stdout:0]" in out and "[stdout:1]" in out and err.count("oops") == 2
    amr = rc[:].map_async(lambda x: x, range(4))
    amr.wait_interactive(interval=0.01)
    assert amr.ready() and "4/4" in capsys.readouterr().out


def test_remote_and_parallel_decorators(rc: ipp.Client) -> None:
    dv = rc[:]

    @dv.remote(block=True)
    def pid() -> int:
        return os.getpid()

    assert pid() == [os.getpid()] * 2

    @dv.parallel(block=True)
    def double(chunk: list[int]) -> list[int]:
        return [c * 2 for c in chunk]

    assert double(list(range(6))) == [0, 2, 4, 6, 8, 10]

    @dv.parallel(block=True)
    def inc(x: int) -> int:
        return x + 1

    assert inc.map(range(5)) == [1, 2, 3, 4, 5]

    @ipp.remote(rc.load_balanced_view(), block=False)
    def square(x: int) -> int:
        return x * x

    assert square(4).get(timeout=5) == 16


def test_sync_imports_runs_imports_on_the_engines(rc: ipp.Client, capsys: pytest.CaptureFixture[str]) -> None:
    with rc[:].sync_imports():
        import json as _json  # noqa: F401
        from os import path  # noqa: F401
    assert "importing json on engine(s)" in capsys.readouterr().out
    assert rc[:].apply_sync(ipp.interactive(lambda: json.dumps([1]) + str(path.sep))) == ["[1]/"] * 2  # noqa: F821


def test_await_and_executor(rc: ipp.Client) -> None:
    async def main() -> Any:
        return await rc[0].apply_async(lambda: 9)

    assert asyncio.run(main()) == 9
    with rc.load_balanced_view().executor as ex:
        assert ex.submit(pow, 2, 5).result(timeout=5) == 32
        assert list(ex.map(abs, [-1, -2, 3])) == [1, 2, 3]
    assert list(rc.executor().map(abs, [-4], timeout=5)) == [4]
    bview = rc.broadcast_view()
    assert bview.apply_sync(lambda: 3) == [3, 3]
    assert bview.execute("z = 1", block=True).ready() and rc[:]["z"] == [1, 1]


# -- failures ---------------------------------------------------------------------------------------
def test_remote_errors(rc: ipp.Client) -> None:
    def fail() -> float:
        return 1 / 0

    with pytest.raises(error.RemoteError) as e:
        rc[0].apply_sync(fail)
    assert e.value.ename == "ZeroDivisionError" and "1 / 0" in e.value.traceback and e.value.engine_id == 0
    with pytest.raises(error.CompositeError) as ce:
        rc[:].apply_sync(fail)
    assert {x.engine_id for x in ce.value.elist} == {0, 1}
    assert rc[:].apply_async(fail).get(return_exceptions=True)[0].ename == "ZeroDivisionError"
    amr = rc[:].map_async(lambda x: 1 / x, [1, 0, 2, 4], return_exceptions=True)
    values = amr.get(timeout=5)  # a failed part is one exception in place of its items
    assert isinstance(values[0], error.RemoteError) and values[1:] == [0.5, 0.25]


def test_unpicklable_argument_fails_before_sending(rc: ipp.Client, fake: FakeCluster) -> None:
    lock = threading.Lock()
    before = len(fake.received)
    with pytest.raises(error.SerializationError, match="argument 0 of id.*lock"):
        rc[0].apply_async(id, lock)
    with pytest.raises(error.SerializationError, match="keyword argument 'k'"):
        rc.load_balanced_view().apply_async(dict, k=lock)
    assert rc[0].apply_sync(lambda: 1) == 1
    assert fake.received[before:] == ["apply_request"]  # nothing was sent for the failed calls


def test_engine_death_fails_its_tasks(rc: ipp.Client, fake: FakeCluster) -> None:
    fake.hold = True
    ar = rc[1].apply_async(time.sleep, 30)
    other = rc[0].apply_async(lambda: "ok")
    fake.wait_received(ar, other)
    fake.remove_engine(1)
    with pytest.raises(error.EngineError, match="engine 1"):
        ar.get(timeout=5)
    fake.release()
    assert other.get(timeout=5) == "ok"


def test_abort_and_queue_status(rc: ipp.Client, fake: FakeCluster) -> None:
    fake.hold = True
    lview = rc.load_balanced_view()
    ars = [lview.apply_async(lambda: 1) for _ in range(4)]
    fake.wait_received(*ars)
    status = rc.queue_status()
    assert set(status) == {0, 1, "unassigned"} and status[0]["queue"] + status[1]["queue"] == 4
    assert rc.queue_status(0) == status[0]
    rc.abort(ars[0], block=True)
    with pytest.raises(error.TaskAborted):
        ars[0].get(timeout=5)
    ars[1].abort()
    with pytest.raises(error.TaskAborted):
        ars[1].get(timeout=5)
    assert not ars[2].ready() and rc.wait(ars[2:], timeout=0.05) is False
    fake.release()
    assert [a.get(timeout=5) for a in ars[2:]] == [1, 1]
    assert rc.wait(timeout=5)


def test_get_result_from_another_client_and_history(rc: ipp.Client, make_client: Any, fake: FakeCluster) -> None:
    ar = rc[0].apply_async(lambda: 42)
    ar.get(timeout=5)
    assert rc.result_status(ar.msg_ids)["completed"] == ar.msg_ids
    assert rc.result_status(ar.msg_ids, status_only=False)[ar.msg_ids[0]] == 42
    other = make_client()
    hub = other.get_result(ar.msg_ids[0])
    assert isinstance(hub, ipp.AsyncHubResult) and hub.get(timeout=5) == 42
    assert hub.metadata["engine_id"] == 0
    assert rc.get_result(ar.msg_ids[0]).get(timeout=5) == 42  # known locally
    # a task still running when asked for: polled until it finishes
    fake.hold = True
    pending = rc[1].apply_async(lambda: "later")
    fake.wait_received(pending)
    watched = other.get_result(pending.msg_ids, block=False)
    assert not watched.ready()
    fake.release()
    assert watched.get(timeout=5) == ["later"] and pending.get(timeout=5) == "later"
    assert ar.msg_ids[0] in rc.hub_history()
    rc.purge_results(ar.msg_ids)
    assert ar.msg_ids[0] not in rc.results
    with pytest.raises(error.ControllerError, match="no task"):
        other.get_result("unknown-id")
    with pytest.raises(ValueError):
        rc.purge_results()


def test_controller_disappearing_fails_outstanding_results(rc: ipp.Client, fake: FakeCluster) -> None:
    fake.hold = True
    ar = rc[0].apply_async(time.sleep, 30)
    lb = rc.load_balanced_view().apply_async(time.sleep, 30)
    fake.wait_received(ar, lb)
    fake.stop()
    with pytest.raises(error.ControllerError, match="lost the connection"):
        ar.get(timeout=10)
    with pytest.raises(error.ControllerError):
        lb.get(timeout=1)
    with pytest.raises(error.ControllerError):
        rc[0].apply_async(lambda: 1)
    with pytest.raises(error.ControllerError):
        rc.queue_status()


def test_closed_client_fails_what_it_waited_for(make_client: Any, fake: FakeCluster) -> None:
    rc = make_client()
    fake.hold = True
    ar = rc[0].apply_async(lambda: 1)
    fake.wait_received(ar)
    rc.close()
    with pytest.raises(error.IPClusterError, match="closed"):
        ar.get(timeout=5)
    with pytest.raises(error.IPClusterError, match="closed"):
        rc[0].apply_async(lambda: 1)
    rc.close()  # twice is fine


def test_shutdown_asks_the_controller(rc: ipp.Client, fake: FakeCluster) -> None:
    rc.shutdown(targets=[1], block=True)
    assert "shutdown_request" in fake.received
    rc._io.replies.wait_until(lambda: 1 not in rc._io.engines, 5)
    assert rc.ids == [0]


def test_flags(rc: ipp.Client) -> None:
    lview = rc.load_balanced_view()
    with lview.temp_flags(block=True, retries=2, timeout=3):
        assert lview.block and lview.retries == 2
        assert lview._metadata(None, None, None, None, None) == {"timeout": 3.0, "retries": 2}
    assert not lview.block and lview.retries == 0
    first = lview.apply_async(lambda: 1)
    lview.set_flags(after=[first], follow=ipp.Dependency([first], all=False))
    assert lview._metadata(None, None, None, None, [1]) == {
        "after": first.msg_ids, "targets": [1],
        "follow": {"msg_ids": first.msg_ids, "all": False, "success": True, "failure": False}}
    lview.set_flags(after=None, follow=None)
    with pytest.raises(KeyError):
        rc[:].set_flags(retries=1)
    with pytest.raises(ValueError):
        lview.set_flags(timeout=-1)
    assert first.get(timeout=5) == 1


def test_many_tasks_round_trip(rc: ipp.Client) -> None:
    lview = rc.load_balanced_view()
    ars = [lview.apply_async(pow, i, 2) for i in range(2000)]
    assert rc.wait(ars, timeout=20)
    assert [a.get() for a in ars[:3]] == [0, 1, 4] and ars[-1].get() == 1999**2
    big = np.random.default_rng(0).random(200_000)
    back = rc[0].apply_sync(lambda a: a * 2, big)
    assert (back == big * 2).all() and back.flags.writeable
    assert json.loads(rc[0].apply_sync(json.dumps, {"a": [1]})) == {"a": [1]}


def test_requests_name_their_function_label_map_and_items(rc: ipp.Client, fake: FakeCluster) -> None:
    """What the controller counts live progress by travels in the metadata the request has anyway."""
    def square(x: int) -> int:
        return x * x

    def sent(ar: Any) -> list[dict[str, Any]]:
        fake.wait_received(ar)
        return [fake.request_metadata[m] for m in ar.msg_ids]

    lview = rc.load_balanced_view()
    ar = lview.apply_async(square, 3)
    assert ar.get(timeout=5) == 9 and sent(ar) == [{"fn": "square"}]
    amr = lview.map_async(square, range(10), chunksize=4)
    assert amr.get(timeout=5) == [x * x for x in range(10)]
    parts = sent(amr)
    assert [md.get("items", 1) for md in parts] == [4, 4, 2]
    assert {md["fn"] for md in parts} == {"square"} and len({md["map"] for md in parts}) == 1
    again = sent(lview.map_async(square, range(3), chunksize=1, label="squares"))
    assert again[0]["map"] != parts[0]["map"] and {md["label"] for md in again} == {"squares"}
    assert "items" not in again[0]  # one item per part: nothing to say
    with lview.temp_flags(label="fit", retries=1):
        assert sent(lview.apply_async(square, 2)) == [{"fn": "square", "label": "fit", "retries": 1}]
    dview = rc[:]
    dview.set_flags(label="setup")
    assert [md["items"] for md in sent(dview.map_async(square, range(5)))] == [3, 2]
    assert sent(dview.apply_async(square, 1))[0] == {"fn": "square", "label": "setup"}
    assert sent(rc[0].execute("a = 1"))[0] == {"fn": "execute"}
    rc.wait(timeout=5)
