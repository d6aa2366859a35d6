"""Hostile and malformed input to a real Router on real sockets (in-process).

Unsigned input is refused, counted and logged at a bounded rate; signed but malformed requests
are answered with an error; engine output that does not verify is not forwarded; replays are
refused.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
import zmq

from ipcluster.protocol.session import AUTH_ERRORS, BATCH, DELIM, Session, auth_error

from .conftest import KEY, WAIT, Controller, apply_buffers
from .test_router import engine_answer


def signed(session: Session, header: object, content: bytes = b"{}") -> list[bytes]:
    """A signed message with a header of our choosing (which Session.serialize would not make)."""
    return session.pack(orjson.dumps(header), b"{}", b"{}", content)


async def test_unsigned_shapes_are_refused_without_tracebacks(controller: Controller,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    raw = controller.ctx.socket(zmq.DEALER)
    raw.connect(controller.urls["client"])
    controller.peers.append(raw)
    shapes = [[BATCH, b"x"], [BATCH, DELIM], [BATCH], [DELIM], [b"a", BATCH, b"\xff" * 60], [DELIM, b"\0" * 31],
              [DELIM, b"\0" * 80], [BATCH, b"\0" * 100, b"{"], [b"\xff\xfe", DELIM, b"x" * 64, b"y"]]
    for frames in shapes:
        await raw.send_multipart(frames)
    client = controller.peer("client")
    await client.send("connection_request")
    _, reply = await client.recv()
    assert reply["content"]["status"] == "ok"
    assert controller.router.rejects["client"].total >= len(shapes) - 1  # [BATCH] alone is an empty batch
    assert "Traceback" not in caplog.text and "handler failed" not in caplog.text
    # the peer is told once that its signature is wrong, as bytes it recognises without parsing
    frames = await asyncio.wait_for(raw.recv_multipart(), WAIT)
    assert auth_error(frames) and frames[-1] == AUTH_ERRORS["client"]


async def test_refusals_are_logged_at_a_bounded_rate(controller: Controller, caplog: pytest.LogCaptureFixture) -> None:
    raw = controller.ctx.socket(zmq.DEALER)
    raw.connect(controller.urls["client"])
    controller.peers.append(raw)
    for i in range(2000):
        await raw.send_multipart([BATCH, b"%d" % i] if i % 2 else [DELIM, b"\0" * 60])
    session = Session(KEY)
    await raw.send_multipart(session.serialize("connection_request")[1])  # answered after the garbage
    while True:
        frames = await asyncio.wait_for(raw.recv_multipart(), WAIT)
        if not auth_error(frames):
            assert session.unpack(frames)[1]["msg_type"] == "connection_reply"
            break
    rejects = controller.router.rejects["client"]
    assert rejects.total == 2000
    lines = [r for r in caplog.records if "client port" in r.getMessage()]
    assert len(lines) <= rejects.first + 3


@pytest.mark.parametrize("header, content, why", [
    ({"msg_id": 5, "msg_type": "connection_request"}, b"{}", "string msg_id"),
    ({"msg_id": "m-1", "msg_type": "no_such_request", "date": time.time()}, b"{}", "does not handle"),
    ({"msg_id": "m-2", "msg_type": "history_request", "date": time.time()}, b"[1, 2]", "JSON objects"),
    ({"msg_id": "m-3", "msg_type": "history_request", "date": time.time()}, b"{not json", "not valid JSON"),
    ({"msg_id": "m-4", "date": time.time()}, b"{}", "string msg_id or msg_type"),
    ([1, 2], b"{}", "not a JSON object"),
])
async def test_signed_malformed_requests_get_an_error_reply(controller: Controller, header: object,
                                                            content: bytes, why: str) -> None:
    client = controller.peer("client")
    await client.sock.send_multipart(signed(client.session, header, content))
    _, reply = await client.recv()
    assert reply["content"]["status"] == "error"
    assert why in reply["content"]["evalue"]
    if isinstance(header, dict) and header.get("msg_type") == "no_such_request":
        assert reply["msg_type"] == "no_such_reply"
    if isinstance(header, dict) and header.get("msg_id") == 5:
        assert reply["parent_header"]["msg_id"] == 5


@pytest.mark.parametrize("metadata, why", [(b"[1]", "not a JSON object"), (b"{oops", "not valid JSON")])
async def test_a_task_whose_metadata_does_not_decode_is_answered(controller: Controller, metadata: bytes,
                                                                 why: str) -> None:
    client = controller.peer("client")
    header = client.session.msg_header("apply_request")  # load-balanced: the controller reads its metadata
    await client.sock.send_multipart(client.session.pack(orjson.dumps(header), b"{}", metadata, b"{}"))
    _, reply = await client.recv()
    assert reply["msg_type"] == "apply_reply" and reply["parent_header"]["msg_id"] == header["msg_id"]
    assert reply["content"]["status"] == "error" and why in reply["content"]["evalue"]


async def test_engine_with_the_wrong_key_gets_auth_error(controller: Controller) -> None:
    intruder = controller.peer("engine", b"e-bad", key=b"wrong")
    await intruder.send("registration_request", {"uuid": "e-bad", "hostname": "h", "pid": 1})
    frames = await asyncio.wait_for(intruder.sock.recv_multipart(), WAIT)
    assert "engine's key does not match" in (auth_error(frames) or "")
    assert b"e-bad" not in {e.uuid for e in controller.hub.engines.values()}


async def welcomed_sub(controller: Controller) -> zmq.asyncio.Socket:
    sub = controller.sub()
    while (await asyncio.wait_for(sub.recv_multipart(), WAIT))[0] != b"controller.iopub_welcome":
        pass
    return sub


async def test_unsigned_engine_output_is_not_forwarded(controller: Controller) -> None:
    sub = await welcomed_sub(controller)
    pub = controller.ctx.socket(zmq.PUB)
    pub.connect(controller.urls["iopub_in"])
    controller.peers.append(pub)
    good = Session(KEY).serialize("stream", {"name": "stdout", "text": "good\n"}, idents=[b"engine.0.stream"])[1]
    wrong = Session(b"wrong").serialize("stream", {"name": "stdout", "text": "forged\n"},
                                        idents=[b"engine.0.stream"])[1]
    unsigned = Session(b"").serialize("stream", {"name": "stdout", "text": "unsigned\n"},
                                      idents=[b"engine.0.stream"])[1]
    rejects = controller.router.rejects["iopub engine"]
    got = None
    while got is None:  # a PUB drops what it sends before the connection is up: send until one arrives
        await pub.send_multipart(wrong)
        await pub.send_multipart(unsigned)
        await pub.send_multipart([b"engine.0.stream", b"garbage"])
        await pub.send_multipart(good)
        try:
            got = await asyncio.wait_for(sub.recv_multipart(), 0.05)
        except asyncio.TimeoutError:
            pass
    assert b"good" in got[-1]
    assert rejects.total >= 3
    with pytest.raises(asyncio.TimeoutError):  # nothing else was forwarded
        while True:
            frames = await asyncio.wait_for(sub.recv_multipart(), 0.2)
            assert b"good" in frames[-1]


async def test_a_replayed_request_is_refused_after_its_record_is_purged(controller: Controller) -> None:
    client = controller.peer("client")
    engine, _ = await controller.engine(b"e-0")
    header = client.session.msg_header("apply_request", target=0)
    _, frames = client.session.serialize("apply_request", buffers=apply_buffers(), header=header)
    await client.sock.send_multipart(frames)
    await engine_answer(engine)
    await client.recv()
    await client.send("purge_request", {"msg_ids": "all", "engine_ids": []})
    assert (await client.recv())[1]["content"]["status"] == "ok"
    assert controller.hub.store.get(header["msg_id"]) is None
    await client.sock.send_multipart(frames)  # the captured request, again
    _, reply = await client.recv()
    assert reply["msg_type"] == "apply_reply" and reply["content"]["status"] == "error"
    assert "already used" in reply["content"]["evalue"]
    with pytest.raises(zmq.Again):
        await engine.sock.recv_multipart(zmq.NOBLOCK)  # it did not reach the engine
    assert controller.hub.store.get(header["msg_id"]) is None


async def test_a_replayed_or_stale_shutdown_is_refused(controller: Controller) -> None:
    client = controller.peer("client")
    old = client.session.msg_header("shutdown_request")
    old["date"] -= 3600  # captured an hour ago
    await client.sock.send_multipart(client.session.serialize("shutdown_request", header=old)[1])
    _, reply = await client.recv()
    assert reply["content"]["status"] == "error" and "replay_window" in reply["content"]["evalue"]
    ahead = client.session.msg_header("shutdown_request")
    ahead["date"] += 3600
    await client.sock.send_multipart(client.session.serialize("shutdown_request", header=ahead)[1])
    _, reply = await client.recv()
    assert reply["content"]["status"] == "error" and "clock_skew" in reply["content"]["evalue"]
    assert not controller.router.stopped.is_set()
    # a fresh one is served once; the same bytes again are refused (the router has not stopped
    # serving between them: a stopped router would not answer)
    fresh = client.session.serialize("signal_request", {"signum": 2, "targets": []})[1]
    await client.sock.send_multipart(fresh)
    assert (await client.recv())[1]["content"]["status"] == "ok"
    await client.sock.send_multipart(fresh)
    _, reply = await client.recv()
    assert reply["content"]["status"] == "error" and "already used" in reply["content"]["evalue"]


async def test_a_replayed_registration_is_refused(controller: Controller) -> None:
    engine = controller.peer("engine", b"e-0")
    _, frames = engine.session.serialize("registration_request", {"uuid": "e-0", "hostname": "h", "pid": 1})
    await engine.sock.send_multipart(frames)
    _, reply = await engine.recv()
    assert reply["content"]["status"] == "ok"
    await engine.send("unregistration_request", {"id": reply["content"]["id"]})
    rejects = controller.router.rejects["engine"]
    for _ in range(500):  # bounded poll: nothing answers an unregistration
        if not controller.hub.engines:
            break
        await asyncio.sleep(0.01)
    thief = controller.peer("engine", b"thief")  # someone who captured the registration
    await thief.sock.send_multipart(frames)
    _, refusal = await thief.recv()  # an engine whose clock is off learns why it is refused
    assert refusal["content"]["status"] == "error" and "already used" in refusal["content"]["evalue"]
    assert not controller.hub.engines and rejects.by_reason.get("replayed or stale") == 1
