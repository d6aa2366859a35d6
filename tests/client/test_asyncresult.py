"""AsyncResult's state machine, driven by hand-made replies and output fed to the client's I/O
layer (no controller: the sockets point at a port nothing listens on)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ipcluster import error
from ipcluster.client import replies
from ipcluster.client._io import ClientIO
from ipcluster.client.asyncresult import AsyncMapResult, AsyncResult
from ipcluster.client.submit import Submitter
from ipcluster.client.task import Task
from ipcluster.protocol.serialize import serialize_result
from ipcluster.protocol.session import Session


class Harness:
    """Just what an AsyncResult needs of a Client, over a real ClientIO."""

    timeout = 5.0

    def __init__(self) -> None:
        self.session = Session(b"k")
        self._io = ClientIO(self.session, "tcp://127.0.0.1:9", "tcp://127.0.0.1:9")
        self.submitter = Submitter(self, self.session, self._io, [])  # type: ignore[arg-type]
        self.aborted: list[Any] = []
        self._n = 0

    def abort(self, jobs: Any, block: bool = False) -> None:
        self.aborted.append(jobs)

    def tasks(self, n: int, method: str = "apply") -> list[Task]:
        out = []
        for i in range(n):
            self._n += 1
            t = Task(f"m{self._n}", method, i, time.time())
            self._io.replies.pending[t.msg_id] = t
            out.append(t)
        return out

    def _in_loop(self, fn: Any, *args: Any) -> None:
        async def run() -> None:
            fn(*args)
            self._io.replies.notify()

        self._io.run(run(), 5)

    def reply(self, task: Task, value: Any = None, *, iopub: int = 0, content: dict[str, Any] | None = None,
              md: dict[str, Any] | None = None) -> None:
        meta = {"engine_id": task.target, "engine_uuid": "u", "started": time.time(), "completed": time.time(),
                "status": "ok", "iopub_count": iopub, **(md or {})}
        content = content or {"status": "ok"}
        buffers = serialize_result(value) if content["status"] == "ok" and task.method == "apply" else []
        parent = {"msg_id": task.msg_id, "msg_type": task.method + "_request"}
        _, frames = self.session.serialize(task.method + "_reply", content, parent=parent, metadata=meta,
                                           buffers=buffers)
        self._in_loop(self._io._on_dealer, frames)

    def output(self, task: Task, msg_type: str, content: dict[str, Any]) -> None:
        parent = {"msg_id": task.msg_id}
        _, frames = self.session.serialize(msg_type, content, parent=parent, metadata={"engine_id": task.target},
                                           idents=[f"engine.{task.target}.{msg_type}".encode()])
        self._in_loop(self._io._on_iopub, frames)

    def close(self) -> None:
        self._io.close()


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    try:
        yield harness
    finally:
        harness.close()


def test_result_waits_for_the_output_the_reply_announces(h: Harness) -> None:
    (t,) = h.tasks(1)
    ar = AsyncResult(h, t, fname="f")  # type: ignore[arg-type]
    assert not ar.ready() and ar.progress == 0
    h.output(t, "stream", {"name": "stdout", "text": "one\n"})
    h.reply(t, 42, iopub=2)
    assert not ar.ready()  # the reply came, one output is still on its way
    with pytest.raises(error.TimeoutError):
        ar.get(timeout=0)
    h.output(t, "display_data", {"data": {"text/plain": "x"}, "metadata": {}})
    assert ar.get(timeout=5) == 42 and ar.result() == 42
    assert ar.ready() and ar.successful() and ar.progress == 1
    assert ar.stdout == "one\n" and ar.outputs == [{"data": {"text/plain": "x"}, "metadata": {}}]
    assert ar.engine_id == 0 and ar.metadata["engine_id"] == 0 and ar["engine_id"] == 0
    assert ar.wall_time >= 0 and ar.serial_time >= 0 and ar.elapsed >= 0
    assert t.msg_id not in h._io.replies.pending and h._io.replies.finished[t.msg_id] is t


def test_timing_from_datetimes_and_floats_agrees(h: Harness) -> None:
    """ipyparallel's timestamps are datetimes; wall_time, serial_time and timedelta read them."""
    tasks = h.tasks(2)
    ar = AsyncResult(h, tasks)  # type: ignore[arg-type]
    for i, t in enumerate(tasks):
        t.submitted = 1000.0 + i
        h.reply(t, i, md={"started": 1001.0 + i, "completed": 1001.5 + 2 * i})
    assert ar.get(timeout=5) == [0, 1]
    assert all(isinstance(s, datetime.datetime) and s.tzinfo is not None for s in ar.submitted + ar.received)
    assert ar.serial_time == pytest.approx(0.5 + 1.5)
    assert ar.timedelta(ar.started, ar.completed) == pytest.approx(2.5)  # earliest start to latest end
    assert ar.timedelta(ar.submitted, ar.received) == pytest.approx(ar.wall_time)
    assert ar.timedelta(ar.started, ar.completed, start_key=max, end_key=min) == pytest.approx(-0.5)
    one = ar.split()[0]
    assert one.timedelta(one.started, one.completed) == pytest.approx(0.5)  # single datetimes
    assert ar.timedelta(1000.0, 1002.5) == 2.5  # epoch seconds still work


def test_output_before_the_reply_counts(h: Harness) -> None:
    (t,) = h.tasks(1)
    ar = AsyncResult(h, t)  # type: ignore[arg-type]
    h.output(t, "stream", {"name": "stderr", "text": "warn"})
    h.reply(t, "v", iopub=1)
    assert ar.get(timeout=5) == "v" and ar.stderr == "warn"


def test_missing_output_is_given_up_after_a_bound(h: Harness, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(replies, "OUTPUT_GRACE", 0.05)
    (t,) = h.tasks(1)
    ar = AsyncResult(h, t)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="ipcluster.client.replies"):
        h.reply(t, 1, iopub=3)
        assert ar.get(timeout=5) == 1
    assert "not waiting for the rest" in caplog.text


@pytest.mark.parametrize(
    "content,md,exc",
    [
        ({"status": "error", "ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": "tb"}, {},
         error.RemoteError),
        ({"status": "error", "ename": "EngineError", "evalue": "engine 0 died", "traceback": ""},
         {"engine_uuid": None}, error.EngineError),
        ({"status": "aborted", "ename": "TaskAborted", "evalue": "", "traceback": ""}, {}, error.TaskAborted),
        ({"status": "error", "ename": "TaskTimeout", "evalue": "late", "traceback": ""}, {"engine_uuid": None},
         error.TaskTimeout),
    ],
)
def test_error_replies_raise_the_matching_error(h: Harness, content: dict[str, Any], md: dict[str, Any],
                                                exc: type[Exception]) -> None:
    (t,) = h.tasks(1)
    ar = AsyncResult(h, t)  # type: ignore[arg-type]
    meta = dict(md)
    if meta.get("engine_uuid", "u") is None:  # a reply the controller made: no engine fields
        meta = {"engine_id": 0}
        content = dict(content)
        h._in_loop(h._io._on_dealer, h.session.serialize(
            "apply_reply", content, parent={"msg_id": t.msg_id}, metadata=meta)[1])
    else:
        h.reply(t, content=content, md=meta)
    with pytest.raises(exc) as info:
        ar.get(timeout=5)
    assert type(info.value) is exc
    assert not ar.successful()
    if exc is error.RemoteError:
        assert info.value.engine_id == 0 and info.value.traceback == "tb"


def test_several_failures_make_a_composite_error(h: Harness) -> None:
    tasks = h.tasks(3)
    ar = AsyncResult(h, tasks, fname="f")  # type: ignore[arg-type]
    failure = {"status": "error", "ename": "ValueError", "evalue": "bad", "traceback": ""}
    h.reply(tasks[0], 1)
    h.reply(tasks[1], content=failure)
    h.reply(tasks[2], content=failure)
    with pytest.raises(error.CompositeError) as info:
        ar.get(timeout=5)
    assert [e.engine_id for e in info.value.elist] == [1, 2]
    values = ar.get(return_exceptions=True)
    assert values[0] == 1 and all(isinstance(v, error.RemoteError) for v in values[1:])
    with pytest.raises(error.CompositeError):
        ar[1]
    assert ar[0] == 1


def test_infrastructure_failures_are_raised_as_themselves(h: Harness) -> None:
    tasks = h.tasks(2)
    ar = AsyncResult(h, tasks)  # type: ignore[arg-type]
    h._in_loop(h._io._fail_all, error.ControllerError("gone"))
    with pytest.raises(error.ControllerError):
        ar.get(timeout=5)
    assert h._io.replies.pending == {}


def test_map_result_iterates_in_order_or_as_parts_finish(h: Harness) -> None:
    tasks = h.tasks(3)
    amr = AsyncMapResult(h, tasks, fname="f", chunk_sizes=[2, 2, 1])  # type: ignore[arg-type]
    assert len(amr) == 5 and amr.progress == 0
    h.reply(tasks[2], [4])
    assert amr.progress == 1
    unordered = AsyncMapResult(h, h.tasks(2), ordered=False, chunk_sizes=[1, 1])  # type: ignore[arg-type]
    h.reply(unordered._tasks[1], ["second"])
    it = iter(unordered)
    assert next(it) == "second"
    h.reply(unordered._tasks[0], ["first"])
    assert next(it) == "first"
    h.reply(tasks[0], [0, 1])
    h.reply(tasks[1], [2, 3])
    assert list(amr) == [0, 1, 2, 3, 4] and amr.get(timeout=5) == [0, 1, 2, 3, 4] and amr[3] == 3


def test_callbacks_futures_and_await(h: Harness) -> None:
    (t,) = h.tasks(1)
    ar = AsyncResult(h, t)  # type: ignore[arg-type]
    seen: list[Any] = []
    ar.add_done_callback(lambda f: seen.append(f.result()))
    assert isinstance(ar, concurrent.futures.Future)

    async def main() -> Any:
        waiter = asyncio.ensure_future(_awaited(ar))
        await asyncio.sleep(0)
        h.reply(t, "done")
        return await asyncio.wait_for(waiter, 5)

    assert asyncio.run(main()) == "done"
    assert seen == ["done"]
    assert concurrent.futures.wait([ar], timeout=1).done == {ar}


async def _awaited(ar: AsyncResult) -> Any:
    return await ar


def test_timeouts_are_ipcluster_and_builtin_timeout_errors(h: Harness) -> None:
    (t,) = h.tasks(1)
    ar = AsyncResult(h, t)  # type: ignore[arg-type]
    with pytest.raises(error.TimeoutError):
        ar.get(timeout=0.01)
    with pytest.raises(TimeoutError):
        ar.result(timeout=0.01)
    assert ar.wait(0.01) is False
    ar.cancel()  # asks the controller to abort; the future itself stays pending
    assert h.aborted and not ar.cancelled()
    h.reply(t, None)
    assert ar.wait(5) is True


def test_execute_results_show_the_last_value(h: Harness) -> None:
    (t,) = h.tasks(1, method="execute")
    ar = AsyncResult(h, t, fname="execute")  # type: ignore[arg-type]
    h.output(t, "execute_result", {"data": {"text/plain": "6"}, "metadata": {}, "execution_count": 3})
    h.reply(t, content={"status": "ok", "execution_count": 3}, iopub=1)
    reply = ar.get(timeout=5)
    assert repr(reply) == "Out[0:3]: 6" and reply.execution_count == 3
    assert reply["engine_id"] == 0 and reply.execute_result["data"] == {"text/plain": "6"}


def test_stream_output_prints_what_arrives_while_inside(h: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    """Output so far on entering, then each piece as the I/O thread receives it, headed by the
    engine that the output message names (a load-balanced task has no target); none after."""
    (t,) = h.tasks(1)
    t.target = None
    ar = AsyncResult(h, t)  # type: ignore[arg-type]

    def output(name: str, text: str) -> None:
        _, frames = h.session.serialize("stream", {"name": name, "text": text}, parent={"msg_id": t.msg_id},
                                        metadata={"engine_id": 3}, idents=[b"engine.3.stream"])
        h._in_loop(h._io._on_iopub, frames)

    output("stdout", "early\n")
    with ar.stream_output():
        assert capsys.readouterr().out == "[stdout:?] early\n"  # no reply yet: the engine is not known
        output("stdout", "late\n")
        output("stderr", "two\nlines\n")
        captured = capsys.readouterr()
        assert (captured.out, captured.err) == ("[stdout:3] late\n", "[stderr:3] \ntwo\nlines\n")
    output("stdout", "after\n")
    assert capsys.readouterr().out == ""
    assert t.on_stream is None and ar.stdout == "early\nlate\nafter\n"
