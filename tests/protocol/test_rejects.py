"""Refused messages are counted and logged at a bounded rate (pure)."""

from __future__ import annotations

import logging

import orjson
import pytest

from ipcluster.protocol.rejects import Rejects
from ipcluster.protocol.session import (AUTH_ERRORS, DELIM, BadSignature, MalformedMessage, Session,
                                        auth_error)

log = logging.getLogger("test-rejects")


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_first_lines_then_one_summary_per_period(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    r = Rejects(log, "port X", first=3, period=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test-rejects"):
        for i in range(100_000):
            clock.t = i * 0.001  # 100 s of 1,000 refusals a second
            r.refuse("BadSignature" if i % 2 else "ProtocolError", "x" * 1000)
    assert r.total == 100_000 and r.by_reason == {"BadSignature": 50_000, "ProtocolError": 50_000}
    lines = caplog.records
    assert len(lines) <= 3 + 1 + 11  # the first three, the notice, a summary every 10 s
    assert all(len(line.getMessage()) < 400 for line in lines)  # details are cut
    assert "refused" in lines[-1].getMessage() and "in all" in lines[-1].getMessage()
    before = len(caplog.records)
    r.summarise()
    assert len(caplog.records) - before == 1


def test_no_summary_without_new_refusals(caplog: pytest.LogCaptureFixture) -> None:
    r = Rejects(log, "port Y", first=1, period=1.0, clock=Clock())
    with caplog.at_level(logging.WARNING, logger="test-rejects"):
        r.refuse("a")
        r.summarise()
    assert len(caplog.records) == 2  # the line and the notice; nothing unlogged to summarise


def test_session_errors_say_whether_the_message_was_signed() -> None:
    s = Session(b"k")
    with pytest.raises(BadSignature):
        Session(b"other").peek(s.serialize("x")[1])
    for header, why in (({"msg_id": 1, "msg_type": "x"}, "string msg_id"), ([], "JSON object")):
        with pytest.raises(MalformedMessage, match=why):
            s.peek(s.pack(orjson.dumps(header), b"{}", b"{}", b"{}"))
    frames = s.pack(orjson.dumps({"msg_id": "a", "msg_type": "x"}), b"{}", b"{}", b"7")
    with pytest.raises(MalformedMessage, match="JSON objects") as e:
        s.unpack(frames)
    assert e.value.header == {"msg_id": "a", "msg_type": "x"}


def test_auth_error_is_recognised_by_its_bytes() -> None:
    assert "client's key" in (auth_error([b"id", DELIM, AUTH_ERRORS["client"]]) or "")
    assert "engine's key" in (auth_error([DELIM, AUTH_ERRORS["engine"]]) or "")
    forged = Session(b"").serialize("auth_error", {"evalue": "anything"})[1]
    assert auth_error(forged) is None
    assert auth_error([DELIM, b"\0" * len(AUTH_ERRORS["client"])]) is None


async def test_a_summary_follows_a_flood_that_stopped() -> None:
    import asyncio

    summary = asyncio.Event()

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "more message(s)" in record.getMessage():
                summary.set()

    handler = Catch()
    log.addHandler(handler)
    try:
        r = Rejects(log, "port Z", first=2, period=0.05)
        for _ in range(5):  # two logged, three counted, then silence
            r.refuse("BadSignature")
        await asyncio.wait_for(summary.wait(), 5)  # bounded: due after one period
    finally:
        log.removeHandler(handler)
    assert r.total == 5
