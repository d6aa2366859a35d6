"""The engine's parts that need no process: output batching, namespaces, function cache, signals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

import ipcluster
from ipcluster.engine import iopub as iopub_mod
from ipcluster.engine.interrupts import Interrupts
from ipcluster.engine.iopub import IOPub
from ipcluster.engine.running_loop import hide_running_loop, restore_running_loop
from ipcluster.engine.namespace import FunctionCache, clear_namespace, make_user_module, rebind, resolve_references
from ipcluster.engine.streams import Flusher, OutStream
from ipcluster.protocol.serialize import pack_apply
from ipcluster.protocol.session import Session

log = logging.getLogger("test-engine")


class FakeXPub:
    """Records what IOPub sends; reports a subscription once ``subscribed`` is set."""

    def __init__(self, subscribed: bool = True) -> None:
        self.subscribed = subscribed
        self.sent: list[list[Any]] = []
        self.sent_event = threading.Event()
        self.closed = False

    def send_multipart(self, frames: list[Any]) -> None:
        self.sent.append(frames)
        self.sent_event.set()

    def recv(self, flags: int = 0) -> bytes:
        if self.subscribed:
            self.subscribed = False  # one subscription message, as a real XPUB gives
            return b"\x01"
        raise zmq.Again()

    def close(self, linger: int = 0) -> None:
        self.closed = True


@pytest.fixture
def session() -> Session:
    return Session(b"key")


def make_iopub(session: Session, sock: FakeXPub, hold: float = 2.0) -> IOPub:
    return IOPub(sock, session, 7, Interrupts(log, lambda: None), log, hold)  # type: ignore[arg-type]


def decoded(session: Session, sock: FakeXPub) -> list[tuple[bytes, str, dict[str, Any]]]:
    out = []
    for frames in sock.sent:
        _, msg = session.unpack(frames[1:])
        out.append((frames[0], msg["msg_type"], msg["content"]))
    return out


def test_stream_batching_and_count(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = FakeXPub()
    io = make_iopub(session, sock)
    clock = [100.0]
    monkeypatch.setattr(iopub_mod.time, "monotonic", lambda: clock[0])
    io.begin({"msg_id": "req-1"})
    io.write("stdout", "a\n")  # first newline after a quiet spell: sent at once
    io.write("stdout", "b\n")  # within 50 ms of the last send: batched
    clock[0] += 0.01
    io.write("stdout", "c")
    io.write("stderr", "oops\n")  # the other stream: stdout's pending text goes first
    io.publish("display_data", {"data": {"text/plain": "x"}, "metadata": {}})
    io.write("stdout", "tail")
    assert io.end() == 5
    msgs = decoded(session, sock)
    assert [(m[1], m[2].get("text")) for m in msgs] == [
        ("stream", "a\n"),
        ("stream", "b\nc"),
        ("stream", "oops\n"),
        ("display_data", None),
        ("stream", "tail"),
    ]
    assert msgs[0][0] == b"engine.7.stream" and msgs[3][0] == b"engine.7.display_data"
    _, first = session.unpack(sock.sent[0][1:])
    assert first["parent_header"] == {"msg_id": "req-1"} and first["metadata"] == {"engine_id": 7}
    io.write("stdout", "after\n")  # between requests: no parent
    io.flush()
    _, last = session.unpack(sock.sent[-1][1:])
    assert last["parent_header"] == {}


def test_large_output_is_sent_in_64k_pieces(session: Session) -> None:
    sock = FakeXPub()
    io = make_iopub(session, sock)
    io.begin({"msg_id": "big"})
    for _ in range(100):
        io.write("stdout", "x" * 1000)  # no newline at all
    count = io.end()
    texts = [m[2]["text"] for m in decoded(session, sock)]
    assert count == len(texts) == 2
    assert len(texts[0]) >= iopub_mod.MAX_PENDING and "".join(texts) == "x" * 100_000


def test_output_is_held_until_the_subscription_arrives(session: Session) -> None:
    sock = FakeXPub(subscribed=False)
    io = make_iopub(session, sock)
    io.begin({"msg_id": "early"})
    io.publish("display_data", {"data": {}, "metadata": {}})
    io.write("stdout", "hello\n")
    assert sock.sent == [] and io.has_pending.is_set()  # held; the flusher will retry
    sock.subscribed = True
    io.flush()
    assert [m[1] for m in decoded(session, sock)] == ["display_data", "stream"]
    assert io.end() == 2


def test_held_output_goes_out_after_the_hold_timeout(session: Session) -> None:
    sock = FakeXPub(subscribed=False)
    io = make_iopub(session, sock, hold=0.0)
    io.publish("clear_output", {"wait": False})
    assert len(sock.sent) == 1


def test_flusher_sends_pending_text(session: Session) -> None:
    sock = FakeXPub()
    io = make_iopub(session, sock)
    flusher = Flusher(io, interval=0.01)
    flusher.start()
    try:
        stream = OutStream(io, "stdout", None)
        stream.write("no newline")
        assert sock.sent_event.wait(5)  # the flusher sends it within its interval
        assert decoded(session, sock)[0][2] == {"name": "stdout", "text": "no newline"}
    finally:
        flusher.stop()
    assert not flusher.is_alive()


def test_outstream_is_a_text_file(session: Session) -> None:
    io = make_iopub(session, FakeXPub())
    stream = OutStream(io, "stderr", sys.__stderr__)
    assert stream.writable() and not stream.isatty()
    assert stream.fileno() == sys.__stderr__.fileno()
    with pytest.raises(TypeError):
        stream.write(b"bytes")  # type: ignore[arg-type]
    print("via print", file=stream)
    stream.writelines(["a", "b"])


def test_rebind_prefers_the_user_namespace() -> None:
    ns = make_user_module().__dict__
    captured = {"__name__": "__main__", "helper": len, "shadowed": "client"}
    src = "def f(x):\n    global out\n    out = x\n    return helper(x), shadowed\n"
    exec(src, captured)
    f = captured["f"]
    ns["shadowed"] = "engine"
    g = rebind(f, ns)
    assert g("abc") == (3, "engine")  # helper from the client's capture, shadowed from the engine
    assert ns["out"] == "abc" and "helper" not in ns
    assert rebind(len, ns) is len  # not a __main__ function: unchanged


def test_references(monkeypatch: pytest.MonkeyPatch) -> None:
    class Ref:
        def __init__(self, name: str) -> None:
            self.__ipcluster_reference__ = name

    ns = {"a": 1, "b": 2}
    args, kwargs = resolve_references((Ref("a"), 5, [Ref("b")]), {"k": Ref("b")}, ns)
    assert args[:2] == (1, 5) and isinstance(args[2][0], Ref)  # not recursive
    assert kwargs == {"k": 2}
    with pytest.raises(NameError, match="'c'"):
        resolve_references((Ref("c"),), {}, ns)


def test_clear_namespace_keeps_builtins() -> None:
    ns = make_user_module().__dict__
    ns["x"] = 1
    clear_namespace(ns)
    assert "x" not in ns and ns["__name__"] == "__main__" and "__builtins__" in ns
    assert "__spec__" in ns and "__loader__" in ns and "__package__" in ns  # multiprocessing reads __spec__


def test_function_cache_reuses_functions() -> None:
    ns = make_user_module().__dict__
    cache = FunctionCache(ns, size=2)

    def counter(acc: list[int] = []) -> int:  # noqa: B006 - the point of the test
        acc.append(1)
        return len(acc)

    counter.__module__ = "__main__"
    f1, args, kwargs = cache.load(pack_apply(counter, (), {}))
    f2, _, _ = cache.load(pack_apply(counter, (), {}))
    assert f1 is f2 and f1.__globals__ is ns
    assert (f1(), f2()) == (1, 2)  # one function, as if defined on the engine
    cache.clear()
    f3, _, _ = cache.load(pack_apply(counter, (), {}))
    assert f3 is not f1 and f3() == 1
    # arguments with out-of-band buffers: not cached, still correct
    a = np.arange(10_000)
    f4, (arr,), _ = cache.load(pack_apply(counter, (a,), {}))
    assert (arr == a).all()
    for fn in (abs, len, sorted):  # the cache stays bounded
        cache.load(pack_apply(fn, ([1],), {}))
    assert len(cache._cache) == 2


def test_sigint_is_deferred_during_a_send() -> None:
    intr = Interrupts(log, lambda: None)
    intr.install()
    try:
        intr.armed = True
        intr.deferred = 1
        os.kill(os.getpid(), signal.SIGINT)  # handled at the next bytecode boundary: remembered
        assert intr.pending is KeyboardInterrupt
        intr.deferred = 0
        with pytest.raises(KeyboardInterrupt):
            intr.raise_pending()
        intr.disarm()
        os.kill(os.getpid(), signal.SIGINT)  # idle: ignored
    finally:
        intr.uninstall()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_user_code_sees_no_running_loop_while_the_engine_hides_it() -> None:
    """Guards engine/running_loop.py, the one use of asyncio's private _set_running_loop."""

    async def engine() -> str:
        loop = asyncio.get_running_loop()
        hide_running_loop()
        try:
            with pytest.raises(RuntimeError):
                asyncio.get_running_loop()
            return asyncio.run(asyncio.sleep(0, "ran"))  # what user code does, as in a script
        finally:
            restore_running_loop(loop)
            assert asyncio.get_running_loop() is loop

    assert asyncio.run(engine()) == "ran"


def test_only_running_loop_touches_asyncio_privates() -> None:
    root = Path(ipcluster.__file__).parent
    users = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if "_set_running_loop" in p.read_text())
    assert users == ["engine/running_loop.py"]
