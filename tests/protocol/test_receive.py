"""The shared receive step (protocol/receive.py), on in-process sockets."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from ipcluster.protocol.receive import Handlers, drain, messages
from ipcluster.protocol.session import Session

log = logging.getLogger("test-receive")


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket[Any], zmq.Socket[Any]]]:
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.bind("inproc://receive")
    b.connect("inproc://receive")
    try:
        yield a, b
    finally:
        a.close(linger=0)
        b.close(linger=0)
        ctx.term()


def packets(session: Session, n: int) -> list[Any]:
    return [session.serialize("apply_reply", {"status": "ok", "i": i})[1][-1] for i in range(n)]


def test_drain_splits_batches_and_survives_a_failing_handler(pair: Any, caplog: pytest.LogCaptureFixture) -> None:
    a, b = pair
    s = Session(b"k")
    b.send_multipart(s.batch((), packets(s, 3)))
    b.send_multipart(s.serialize("apply_reply", {"status": "ok", "i": 3})[1])
    got: list[int] = []

    def handle(frames: list[Any]) -> None:
        i = s.unpack(frames)[1]["content"]["i"]
        got.append(i)
        if i == 1:
            raise ValueError("one bad message")

    a.poll(1000)
    with caplog.at_level(logging.ERROR, logger="test-receive"):
        while drain(a, handle, 1, log):  # a limit of 1: the caller comes back for the rest
            pass
    assert got == [0, 1, 2, 3]
    assert "one bad message" in caplog.text


def test_drain_reports_when_it_stopped_at_its_limit(pair: Any) -> None:
    a, b = pair
    for i in range(3):
        b.send(b"%d" % i)
    a.poll(1000)
    seen: list[bytes] = []
    assert drain(a, lambda f: seen.append(f[0].bytes), 2, log, batches=False)
    assert not drain(a, lambda f: seen.append(f[0].bytes), 2, log, batches=False, lock=threading.Lock())
    assert seen == [b"0", b"1", b"2"]


def test_messages_of_a_plain_message_is_the_message() -> None:
    s = Session(b"k")
    frames = s.serialize("apply_reply", {})[1]
    assert messages(frames) == [frames]
    assert len(messages(s.batch((b"peer",), packets(s, 2)))) == 2


def test_answer_turns_errors_into_error_replies() -> None:
    def ok(x: int) -> tuple[dict[str, Any], list[Any]]:
        return {"x": x}, [b"buf"]

    def broken(x: int) -> tuple[dict[str, Any], list[Any]]:
        raise KeyError("no such task")

    handlers = Handlers({"ok_request": ok, "broken_request": broken}, "the test", log)
    assert handlers.answer("ok_request", 1) == ({"x": 1, "status": "ok"}, [b"buf"])
    content, buffers = handlers.answer("broken_request", 1)
    assert content["status"] == "error" and content["ename"] == "KeyError" and buffers == []
    content, _ = handlers.answer("other_request")
    assert content["ename"] == "NotImplementedError" and "the test does not handle other_request" in content["evalue"]
