"""apply_request, output capture, abort and clear on a real engine process."""

from __future__ import annotations

import asyncio
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ipcluster.protocol.serialize import pack_apply

from .conftest import CLIENT, Engine, result_of


def interactive(f: types.FunctionType) -> types.FunctionType:
    """What ``@ipcluster.interactive`` does: pretend ``f`` was defined in ``__main__``."""
    f.__module__ = "__main__"
    return f


def unpicklable_class() -> type:
    """A class (defined locally, so it travels by value) whose instances refuse pickling."""

    class Unpicklable:
        def __reduce__(self) -> object:
            raise TypeError("this object refuses to be pickled")

        def __repr__(self) -> str:
            return "<Unpicklable thing>"

    return Unpicklable


def ref(name: str) -> object:
    """What a client's ``Reference`` looks like to the engine (a local class: sent by value)."""

    class Ref:
        def __init__(self, name: str) -> None:
            self.__ipcluster_reference__ = name

    return Ref(name)


async def test_apply_lambda_closure_and_kwargs(engine: Engine) -> None:
    assert result_of(await engine.apply(lambda x, y=1: x * y, 6, y=7)) == 42
    offset = 100

    def add(x: int, *, more: int = 0) -> int:
        return x + offset + more

    assert result_of(await engine.apply(add, 1, more=10)) == 111
    assert result_of(await engine.apply(divmod, 17, 5)) == (3, 2)  # a builtin, by reference


async def test_apply_numpy_round_trip_zero_copy(engine: Engine) -> None:
    a = np.arange(1_000_000, dtype=np.float64)

    def inspect(arr: np.ndarray) -> tuple[bool, bool, np.ndarray]:
        # an out-of-band buffer is rebuilt over the received frame: no copy, still writable
        return bool(arr.flags.owndata), bool(arr.flags.writeable), arr * 2

    reply = await engine.apply(inspect, a)
    owndata, writeable, doubled = result_of(reply)
    assert not owndata
    assert writeable
    assert len(reply["buffers"]) == 2  # the pickle, then the array's memory as its own frame
    np.testing.assert_array_equal(doubled, a * 2)


async def test_apply_exception_is_an_error_reply(engine: Engine) -> None:
    def fail(n: int) -> None:
        raise ValueError(f"bad value {n}")

    reply = await engine.apply(fail, 5)
    content = reply["content"]
    assert content["status"] == "error"
    assert content["ename"] == "ValueError"
    assert content["evalue"] == "bad value 5"
    assert "in fail" in content["traceback"]
    assert 'raise ValueError(f"bad value {n}")' in content["traceback"]
    assert "kernel.py" not in content["traceback"]  # the engine's own frame is left out
    assert reply["metadata"]["status"] == "error"
    assert result_of(await engine.apply(abs, -3)) == 3  # and the engine lives on


async def test_apply_unpicklable_result(engine: Engine) -> None:
    reply = await engine.apply(unpicklable_class())
    content = reply["content"]
    assert content["status"] == "error"
    assert content["ename"] == "SerializationError"
    assert "Unpicklable thing" in content["evalue"]
    assert result_of(await engine.apply(len, "abc")) == 3


async def test_apply_sys_exit_does_not_stop_the_engine(engine: Engine) -> None:
    import sys

    reply = await engine.apply(sys.exit, 3)
    assert reply["content"]["ename"] == "SystemExit"
    assert result_of(await engine.apply(len, "ab")) == 2


async def test_interactive_functions_run_in_the_user_namespace(engine: Engine) -> None:
    @interactive
    def set_a(value: int) -> None:
        global a
        a = value  # type: ignore[name-defined]

    @interactive
    def get_a() -> int:
        return a  # type: ignore[name-defined]  # noqa: F821

    await engine.apply(set_a, 5)
    assert result_of(await engine.apply(get_a)) == 5
    # client-side globals the function captured still resolve (np here), behind the namespace
    np_sum = interactive(lambda: int(np.arange(4).sum()) + a)  # type: ignore[name-defined]  # noqa: F821
    assert result_of(await engine.apply(np_sum)) == 11
    assert result_of(await engine.apply(interactive(lambda: "np" in globals()))) is False


async def test_references_are_resolved(engine: Engine) -> None:
    @interactive
    def setup() -> None:
        global data
        data = [1, 2, 3]

    await engine.apply(setup)
    assert result_of(await engine.apply(len, ref("data"))) == 3
    assert result_of(await engine.apply(sorted, ref("data"), reverse=True)) == [3, 2, 1]
    reply = await engine.apply(len, ref("nothing"))
    assert reply["content"]["ename"] == "NameError"


async def test_user_code_may_run_its_own_event_loop(engine: Engine) -> None:
    def run_a_loop() -> int:
        async def answer() -> int:
            await asyncio.sleep(0)
            return 42

        return asyncio.run(answer())

    assert result_of(await engine.apply(run_a_loop)) == 42


async def test_stream_output_and_iopub_count(engine: Engine) -> None:
    import sys

    def chatty() -> str:
        for i in range(3):
            print("line", i)
        print("to stderr", file=sys.stderr)
        print("back on stdout")
        return "done"

    c = engine.controller
    first = await engine.apply(chatty)
    assert result_of(first) == "done"
    count = first["metadata"]["iopub_count"]
    msg_id = first["parent_header"]["msg_id"]
    msgs = await c.iopub_for(msg_id, count)
    # a later request's output follows on the same PUB: once it is in, nothing of the first is missing
    second = await engine.apply(print, "second")
    await c.iopub_for(second["parent_header"]["msg_id"], second["metadata"]["iopub_count"])
    assert len([m for m in c.iopub_seen if m["parent_header"].get("msg_id") == msg_id]) == count
    assert all(m["msg_type"] == "stream" for m in msgs)
    assert all(m["metadata"] == {"engine_id": engine.id} for m in msgs)
    names = [m["content"]["name"] for m in msgs]
    text = {n: "".join(m["content"]["text"] for m in msgs if m["content"]["name"] == n) for n in set(names)}
    assert text["stdout"] == "line 0\nline 1\nline 2\nback on stdout\n"
    assert text["stderr"] == "to stderr\n"
    # batched, but the interleaving of the two streams is kept
    assert [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n] == ["stdout", "stderr", "stdout"]


async def test_output_streams_live_during_a_long_task(engine: Engine, tmp_path: Path) -> None:
    gate = tmp_path / "go"

    def slow(gate: str) -> None:
        import os
        import time

        print("start", end="")  # no newline: only the flusher thread sends it while we wait
        deadline = time.monotonic() + 20
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)
        print("end")

    c = engine.controller
    header = await engine.request("apply_request", {}, pack_apply(slow, (str(gate),), {}))
    msgs = await c.iopub_for(header["msg_id"], 1)  # the task is still running: it waits for the gate
    assert msgs[0]["content"]["text"] == "start"
    gate.touch()
    reply = await c.reply_to(header["msg_id"])
    assert reply["metadata"]["iopub_count"] == 2


async def test_output_from_a_thread_after_the_request(engine: Engine) -> None:
    def later() -> None:
        threading.Timer(0.2, print, ("from a timer",)).start()

    c = engine.controller
    await engine.apply(later)
    async with asyncio.timeout(5):
        while True:
            topic, msg = await c.next_iopub()
            if msg["msg_type"] == "stream" and "from a timer" in msg["content"]["text"]:
                break
    assert msg["parent_header"] == {}
    assert topic == f"engine.{engine.id}.stream".encode()


async def start_blocker(engine: Engine, seconds: float) -> dict:
    """Send a task that prints, then sleeps; return its header once it is running."""

    def block() -> None:
        print("blocking", flush=True)
        time.sleep(seconds)

    header = await engine.request("apply_request", {}, pack_apply(block, (), {}))
    await engine.controller.iopub_for(header["msg_id"], 1)
    return header


async def test_abort_queued_tasks(engine: Engine) -> None:
    """Tasks queued behind a running one are aborted by an abort_request that arrives meanwhile,
    and a task aborted before it arrives is aborted when it does."""
    c = engine.controller
    blocker = await start_blocker(engine, 0.3)
    queued = [await engine.request("apply_request", {}, pack_apply(abs, (-i,), {})) for i in range(4)]
    await c.send([engine.identity], "abort_request", {"msg_ids": [queued[1]["msg_id"], queued[3]["msg_id"], "later"]})
    header = c.session.msg_header("apply_request")
    header["msg_id"] = "later"
    _, frames = c.session.serialize(
        "apply_request", {}, buffers=pack_apply(abs, (-2,), {}), header=header, idents=[engine.identity, CLIENT]
    )
    await c.router.send_multipart(frames)

    assert (await c.reply_to(blocker["msg_id"]))["content"]["status"] == "ok"
    contents = [(await c.reply_to(h["msg_id"]))["content"] for h in queued]
    assert [x["status"] for x in contents] == ["ok", "aborted", "ok", "aborted"]
    assert contents[1]["ename"] == "TaskAborted"
    later = await c.reply_to("later")
    assert later["content"]["status"] == "aborted"
    assert later["metadata"]["status"] == "aborted" and later["metadata"]["iopub_count"] == 0
    assert result_of(await engine.apply(abs, -9)) == 9
    assert not c.replies  # every task was answered exactly once


async def test_abort_all(engine: Engine) -> None:
    c = engine.controller
    blocker = await start_blocker(engine, 0.3)
    queued = [await engine.request("execute_request", {"code": "1", "silent": False}) for _ in range(3)]
    await c.send([engine.identity], "abort_request", {"msg_ids": None})
    assert (await c.reply_to(blocker["msg_id"]))["content"]["status"] == "ok"
    for h in queued:
        reply = await c.reply_to(h["msg_id"])
        assert reply["msg_type"] == "execute_reply"
        assert reply["content"]["status"] == "aborted"
    assert result_of(await engine.apply(abs, -1)) == 1  # later tasks run


async def test_clear_resets_the_namespace(engine: Engine) -> None:
    @interactive
    def define() -> None:
        global x
        x = 1

    await engine.apply(define)
    assert result_of(await engine.apply(interactive(lambda: "x" in globals()))) is True
    header = await engine.request("clear_request", {})
    reply = await engine.controller.reply_to(header["msg_id"])
    assert reply["msg_type"] == "clear_reply"
    assert reply["content"] == {"status": "ok"}
    assert result_of(await engine.apply(interactive(lambda: "x" in globals()))) is False
    assert result_of(await engine.apply(interactive(lambda: len("still has builtins")))) == 18
    await engine.execute("y = 2")  # with an IPython shell, clear is the shell's reset
    header = await engine.request("clear_request", {})
    assert (await engine.controller.reply_to(header["msg_id"]))["content"] == {"status": "ok"}
    still_a_module = interactive(lambda: [k in globals() for k in ("y", "__spec__", "__package__")])
    assert result_of(await engine.apply(still_a_module)) == [False, True, True]  # multiprocessing's spawn reads __spec__


async def test_display_from_apply_publishes_a_bundle(engine: Engine) -> None:
    def show() -> str:
        from IPython.display import HTML, display

        display(HTML("<b>hi</b>"))
        return "shown"

    reply = await engine.apply(show)
    assert result_of(reply) == "shown"
    msgs = await engine.controller.iopub_for(reply["parent_header"]["msg_id"], reply["metadata"]["iopub_count"])
    displays = [m for m in msgs if m["msg_type"] == "display_data"]
    assert len(displays) == 1
    assert displays[0]["content"]["data"]["text/html"] == "<b>hi</b>"
    assert "text/plain" in displays[0]["content"]["data"]


async def test_unknown_request_gets_an_error_reply(engine: Engine) -> None:
    header = await engine.request("frobnicate_request", {})
    reply = await engine.controller.reply_to(header["msg_id"])
    assert reply["msg_type"] == "frobnicate_reply"
    assert reply["content"]["status"] == "error"


async def test_signed_request_that_does_not_unpack_is_answered(engine: Engine) -> None:
    """The controller routes on the header alone; the engine answers a task whose content is not
    a JSON object with an error reply, so its client does not wait for ever."""
    import orjson

    from ipcluster.protocol.session import DELIM

    session = engine.controller.session
    header = session.msg_header("apply_request")
    frames = session.pack(orjson.dumps(header), b"{}", b"{}", b"[1]")
    await engine.controller.router.send_multipart([engine.identity, CLIENT, *frames], copy=False)
    assert frames[0] == DELIM
    reply = await engine.controller.reply_to(header["msg_id"])
    assert reply["msg_type"] == "apply_reply" and reply["content"]["status"] == "error"
    assert "JSON objects" in reply["content"]["evalue"]
    assert result_of(await engine.apply(len, [1, 2])) == 2  # and it goes on serving


async def test_a_result_larger_than_the_controller_takes_is_answered_as_an_error(
        engine_factory: Callable[..., Engine]) -> None:
    """The controller's registration_reply gives its frame limit (max_engine_frame_bytes): the
    engine answers with an error instead of sending a frame the controller would drop."""
    e = engine_factory("--EngineApp.data_channel=False")
    await e.register(max_frame_bytes=1 << 20)
    reply = await e.apply(bytes, 2 << 20)
    assert reply["content"]["status"] == "error"
    assert "max_engine_frame_bytes" in reply["content"]["evalue"]
    assert result_of(await e.apply(bytes, 1 << 19)) == bytes(1 << 19)  # under the limit: as usual
