"""In-process tests of the router: a real Router on real sockets, raw-socket peers."""

from __future__ import annotations

import asyncio
import os

import pytest
import zmq

from ipcluster.error import ProtocolError
from ipcluster.protocol.serialize import deserialize_result, serialize_result, unpack_apply
from ipcluster.protocol.session import DELIM

from .conftest import WAIT, Controller, apply_buffers


async def engine_answer(engine, result=None, status="ok") -> dict:
    """Receive one forwarded request on a fake engine and reply to it."""
    idents, req = await engine.recv()
    assert len(idents) == 1  # the client's identity
    if result is None and req["msg_type"] == "apply_request":
        f, args, kwargs = unpack_apply(req["buffers"])
        result = f(*args, **kwargs)
    await engine.send(req["msg_type"].replace("_request", "_reply"), {"status": status}, idents=idents,
                      parent=req["header"], buffers=serialize_result(result), metadata={"engine_id": 0})
    return req


async def test_connect_register_and_route_direct(controller: Controller) -> None:
    client = controller.peer("client")
    await client.send("connection_request")
    _, reply = await client.recv()
    assert reply["content"] == {"status": "ok", "engines": {}, "engine_info": {}, "cluster_id": "t",
                                "task_scheme": "leastload", "engine_timeout": 0.0, "max_frame_bytes": 0}
    engine, eid = await controller.engine(b"e-0")
    assert eid == 0
    h = await client.send("apply_request", buffers=apply_buffers(sum, [1, 2, 3]), target=0)
    req = await engine_answer(engine)
    assert req["header"] == h
    _, reply = await client.recv()
    assert reply["parent_header"]["msg_id"] == h["msg_id"]
    assert deserialize_result(reply["buffers"]) == 6
    # the record is kept and can be fetched again by another client
    other = controller.peer("client")
    await other.send("result_request", {"msg_ids": [h["msg_id"]]})
    _, res = await other.recv()
    assert res["content"]["completed"] == [h["msg_id"]]
    assert deserialize_result(res["buffers"]) == 6
    await other.send("history_request")
    _, hist = await other.recv()
    assert hist["content"]["history"] == [h["msg_id"]]


async def test_large_buffers_are_forwarded_whole(controller: Controller) -> None:
    client = controller.peer("client")
    engine, _ = await controller.engine(b"e-0")
    payload = bytes(range(256)) * 40_000  # 10 MB
    await client.send("apply_request", buffers=apply_buffers(len, payload), target=0)
    await engine_answer(engine, result=payload)
    _, reply = await client.recv()
    assert deserialize_result(reply["buffers"]) == payload


async def test_unknown_target_is_an_error_reply(controller: Controller) -> None:
    client = controller.peer("client")
    h = await client.send("apply_request", buffers=apply_buffers(), target=3)
    _, reply = await client.recv()
    assert reply["msg_type"] == "apply_reply" and reply["parent_header"]["msg_id"] == h["msg_id"]
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "NoEnginesError"


async def test_load_balanced_tasks_wait_for_an_engine_then_spread(controller: Controller) -> None:
    client = controller.peer("client")
    sent = [await client.send("apply_request", buffers=apply_buffers()) for _ in range(4)]
    e0, _ = await controller.engine(b"e-0")
    e1, _ = await controller.engine(b"e-1")
    # all four were queued before e1 existed, so e0 got them; new ones go to the idle engine
    more = await client.send("apply_request", buffers=apply_buffers())
    for _ in range(4):
        await engine_answer(e0)
    req = await engine_answer(e1)
    assert req["header"]["msg_id"] == more["msg_id"]
    got = {(await client.recv())[1]["parent_header"]["msg_id"] for _ in range(5)}
    assert got == {h["msg_id"] for h in [*sent, more]}


async def test_queue_status_counts(controller: Controller) -> None:
    client = controller.peer("client")
    engine, _ = await controller.engine(b"e-0")
    await client.send("apply_request", buffers=apply_buffers(), target=0)
    await client.send("apply_request", buffers=apply_buffers())
    await engine_answer(engine)
    await client.recv()
    await client.send("queue_request", {"targets": None, "verbose": False})
    _, reply = await client.recv()
    assert reply["content"]["0"] == {"queue": 0, "tasks": 1, "completed": 1}
    assert reply["content"]["unassigned"] == 0


async def test_dead_engine_fails_its_tasks_and_is_announced(controller: Controller) -> None:
    sub = controller.sub()
    client = controller.peer("client")
    # wait until our subscription is in place
    while True:
        frames = await asyncio.wait_for(sub.recv_multipart(), WAIT)
        if frames[0] == b"controller.iopub_welcome":
            break
    controller.router.heart.misses = 2
    engine, eid = await controller.engine(b"e-0")  # never answers heartbeats
    h = await client.send("apply_request", buffers=apply_buffers(), target=eid)
    await engine.recv()
    _, reply = await client.recv()  # hb_period 0.1 s, 2 misses: well inside WAIT
    assert reply["parent_header"]["msg_id"] == h["msg_id"]
    assert reply["content"]["ename"] == "EngineError"
    topics = set()
    while b"controller.unregistration_notification" not in topics:
        topics.add((await asyncio.wait_for(sub.recv_multipart(), WAIT))[0])
    assert b"controller.registration_notification" in topics
    assert not controller.hub.engines


async def test_heartbeating_engine_stays_alive(controller: Controller) -> None:
    controller.router.heart.misses = 2
    engine, eid = await controller.engine(b"e-0")
    ping = controller.ctx.socket(zmq.SUB)
    ping.subscribe(b"")
    ping.connect(controller.urls["hb_ping"])
    pong = controller.ctx.socket(zmq.DEALER)
    pong.identity = b"e-0"
    pong.connect(controller.urls["hb_pong"])
    controller.peers += [ping, pong]
    for _ in range(6):  # 6 periods, beyond the 2 allowed misses
        await pong.send(await asyncio.wait_for(ping.recv(), WAIT))
    assert eid in controller.hub.engines


async def test_wrong_key_gets_auth_error_and_bad_frames_are_dropped(controller: Controller) -> None:
    intruder = controller.peer("client", key=b"wrong")
    await intruder.send("connection_request")
    frames = await asyncio.wait_for(intruder.sock.recv_multipart(), WAIT)
    with pytest.raises(ProtocolError, match="signature"):
        intruder.session.unpack(frames)
    _, msg = intruder.session.unpack(frames, verify=False)
    assert msg["msg_type"] == "auth_error" and "does not match" in msg["content"]["evalue"]
    raw = controller.ctx.socket(zmq.DEALER)
    raw.connect(controller.urls["client"])
    controller.peers.append(raw)
    await raw.send_multipart([b"garbage"])
    await raw.send_multipart([DELIM, b"sig", b"{not json", b"{}", b"{}", b"{}"])
    await raw.send_multipart([DELIM, b"x" * 200])
    client = controller.peer("client")
    await client.send("connection_request")
    _, reply = await client.recv()
    assert reply["content"]["status"] == "ok"


async def test_abort_and_purge(controller: Controller) -> None:
    client = controller.peer("client")
    queued = await client.send("apply_request", buffers=apply_buffers())  # no engines: stays queued
    await client.send("abort_request", {"msg_ids": None, "targets": None})
    replies = {}
    for _ in range(2):
        _, r = await client.recv()
        replies[r["msg_type"]] = r
    assert replies["apply_reply"]["content"]["status"] == "aborted"
    assert replies["apply_reply"]["parent_header"]["msg_id"] == queued["msg_id"]
    assert replies["abort_reply"]["content"]["status"] == "ok"
    await client.send("purge_request", {"msg_ids": "all", "engine_ids": []})
    await client.recv()
    await client.send("history_request")
    assert (await client.recv())[1]["content"]["history"] == []
    await client.send("result_request", {"msg_ids": ["nope"]})
    _, r = await client.recv()
    assert r["content"]["status"] == "error" and "nope" in r["content"]["evalue"]


async def test_engine_output_reaches_subscribers(controller: Controller) -> None:
    sub = controller.sub()
    while (await asyncio.wait_for(sub.recv_multipart(), WAIT))[0] != b"controller.iopub_welcome":
        pass
    pub = controller.ctx.socket(zmq.PUB)
    pub.connect(controller.urls["iopub_in"])
    controller.peers.append(pub)
    # the controller subscribes to everything; keep publishing until the connection is up
    from ipcluster.protocol.session import Session
    from .conftest import KEY
    s = Session(KEY)
    _, frames = s.serialize("stream", {"name": "stdout", "text": "hi\n"}, idents=[b"engine.0.stream"])
    got = None
    while got is None:
        await pub.send_multipart(frames)
        try:
            got = await asyncio.wait_for(sub.recv_multipart(), 0.05)
        except asyncio.TimeoutError:
            pass
    assert got[0] == b"engine.0.stream" and b"hi" in got[-1]


async def test_resubmit_runs_a_finished_task_again(controller: Controller) -> None:
    client = controller.peer("client")
    engine, _ = await controller.engine(b"e-0")
    h = await client.send("apply_request", buffers=apply_buffers(sum, [4, 5]))
    await engine_answer(engine)
    await client.recv()
    await client.send("resubmit_request", {"msg_ids": [h["msg_id"]]})
    req = await engine_answer(engine)
    assert req["header"]["msg_id"] != h["msg_id"] and req["header"]["msg_type"] == "apply_request"
    replies = {}
    for _ in range(2):
        _, r = await client.recv()
        replies[r["msg_type"]] = r
    new_id = replies["resubmit_reply"]["content"]["resubmitted"][h["msg_id"]]
    assert replies["apply_reply"]["parent_header"]["msg_id"] == new_id == req["header"]["msg_id"]
    assert deserialize_result(replies["apply_reply"]["buffers"]) == 9


async def test_timeout_answers_the_client_and_drops_the_late_reply(controller: Controller) -> None:
    client = controller.peer("client")
    engine, _ = await controller.engine(b"e-0")
    h = await client.send("apply_request", buffers=apply_buffers(), metadata={"timeout": 0.05})
    idents, req = await engine.recv()  # the engine holds on to it
    _, reply = await client.recv()
    assert reply["content"]["ename"] == "TaskTimeout" and reply["parent_header"]["msg_id"] == h["msg_id"]
    _, abort = await engine.recv()  # the engine is told to drop it if it has not started
    assert abort["msg_type"] == "abort_request" and abort["content"]["msg_ids"] == [h["msg_id"]]
    await engine.send("apply_reply", {"status": "ok"}, idents=idents, parent=req["header"],
                      buffers=serialize_result(1))
    h2 = await client.send("apply_request", buffers=apply_buffers(), target=0)
    await engine_answer(engine)
    _, reply = await client.recv()  # the late reply was not forwarded: this is the next one
    assert reply["parent_header"]["msg_id"] == h2["msg_id"]


async def test_broadcast_reaches_every_engine_once(controller: Controller) -> None:
    client = controller.peer("client")
    engines = [(await controller.engine(f"e-{i}".encode()))[0] for i in range(3)]
    h = await client.send("apply_request", buffers=apply_buffers(len, b"xyz"), target=[0, 1, 2])
    for e in engines:
        assert (await engine_answer(e))["header"]["msg_id"] == h["msg_id"]
    replies = [(await client.recv())[1] for _ in engines]
    assert {r["parent_header"]["msg_id"] for r in replies} == {h["msg_id"]}
    assert [deserialize_result(r["buffers"]) for r in replies] == [3, 3, 3]


async def test_signal_goes_to_the_engines_control_socket(controller: Controller) -> None:
    client = controller.peer("client")
    engine, eid = await controller.engine(b"e-0")
    ctl = controller.peer("engine", b"e-0.ctl")
    await ctl.sock.send_multipart([b"hello"])  # the router drops it, and now knows the socket
    for _ in range(500):  # bounded: the router handles it within a few loop turns
        if controller.router.rejects["engine"].total:
            break
        await asyncio.sleep(0.01)
    await client.send("signal_request", {"signum": 2, "targets": [eid]})
    _, msg = await ctl.recv()
    assert msg["msg_type"] == "signal_request" and msg["content"] == {"signum": 2}
    _, reply = await client.recv()
    assert reply["msg_type"] == "signal_reply" and reply["content"]["status"] == "ok"
    _, e2 = await controller.engine(b"e-1")  # registered, but no control socket
    await client.send("signal_request", {"signum": 2, "targets": [e2]})
    _, reply = await client.recv()
    assert reply["content"]["status"] == "error" and "control channel of engine(s) [1]" in reply["content"]["evalue"]


async def test_batches_are_split_and_replies_batched(controller: Controller) -> None:
    client = controller.peer("client")
    engine, _ = await controller.engine(b"e-0")
    headers, packets = [], []
    for n in range(3):
        header = client.session.msg_header("apply_request", target=0)
        _, frames = client.session.serialize("apply_request", buffers=apply_buffers(abs, -n), header=header)
        headers.append(header)
        packets.append(frames[1])
    await client.sock.send_multipart(client.session.batch([], packets))
    frames = await asyncio.wait_for(engine.sock.recv_multipart(), WAIT)
    requests = engine.session.unpack_all(frames)
    assert [m["header"]["msg_id"] for _, m in requests] == [h["msg_id"] for h in headers]
    assert frames[1] == b"<IDS|BATCH>"  # the three came in one batch and leave as one
    replies = []
    for idents, req in requests:
        f, args, kwargs = unpack_apply(req["buffers"])
        _, out = engine.session.serialize("apply_reply", {"status": "ok"}, req["header"],
                                          {"engine_id": 0}, serialize_result(f(*args)), idents=idents)
        replies.append(out[2])
    await engine.sock.send_multipart(engine.session.batch([idents[0]], replies))
    got = [await client.recv() for _ in range(3)]
    assert [deserialize_result(m["buffers"]) for _, m in got] == [0, 1, 2]


async def queued_count(client) -> int:
    await client.send("queue_request", {"targets": None, "verbose": False})
    _, reply = await client.recv()
    return reply["content"]["unassigned"]


async def test_pings_are_answered_and_a_closing_client_loses_its_queue(controller: Controller) -> None:
    leaving, staying = controller.peer("client", b"leaving"), controller.peer("client", b"staying")
    for _ in range(3):
        await leaving.send("apply_request", buffers=apply_buffers())  # no engines: they stay queued
    await staying.send("apply_request", buffers=apply_buffers())
    await leaving.send("ping_request")
    _, pong = await leaving.recv()
    assert pong["msg_type"] == "ping_reply" and pong["content"] == {"status": "ok"}
    assert controller.hub.pinged.keys() == {b"leaving"}
    assert await queued_count(staying) == 4
    await leaving.send("ping_request", {"closing": True})
    kinds = [(await leaving.recv())[1]["msg_type"] for _ in range(4)]
    assert sorted(kinds) == ["apply_reply"] * 3 + ["ping_reply"]  # its tasks closed as aborted
    assert await queued_count(staying) == 1
    assert b"leaving" not in controller.hub.pinged


async def test_a_silent_client_loses_its_queue_and_starved_tasks_fail(controller: Controller) -> None:
    controller.router.client_timeout = 0.3
    silent, quiet = controller.peer("client", b"silent"), controller.peer("client", b"quiet")
    dropped = await silent.send("apply_request", buffers=apply_buffers())
    pinger = controller.peer("client")  # pings come over a socket of their own, naming the client
    await pinger.send("ping_request", {"client": "silent"})
    await pinger.recv()
    kept = await quiet.send("apply_request", buffers=apply_buffers())  # never pings: never taken for gone
    _, reply = await silent.recv()  # its pings stopped: the controller closes its task on the next beats
    assert reply["parent_header"]["msg_id"] == dropped["msg_id"] and reply["content"]["status"] == "aborted"
    assert await queued_count(quiet) == 1
    controller.router.engine_timeout = 0.2
    _, reply = await quiet.recv()  # no engine for 0.2 s: the task fails instead of waiting for ever
    assert reply["parent_header"]["msg_id"] == kept["msg_id"]
    assert reply["content"]["ename"] == "NoEnginesError" and "engine_timeout" in reply["content"]["evalue"]


async def test_task_stats_count_a_named_map_and_keep_its_failure(controller: Controller) -> None:
    """The metadata a client sends names the map, its function and each part's items; the engine's
    error reply gives the failure its traceback. Asked with task_stats_request, not published."""
    client = controller.peer("client")
    engine, eid = await controller.engine(b"e-0")
    md = {"fn": "square", "label": "squares"}
    await client.send("apply_request", buffers=apply_buffers(), metadata={**md, "items": 3})
    await client.send("apply_request", buffers=apply_buffers(), metadata={**md, "items": 2}, target=eid)
    await engine_answer(engine)
    idents, req = await engine.recv()
    tb = "Traceback (most recent call last):\n  File \"<cell>\", line 2, in square\nValueError: no 13"
    await engine.send("apply_reply", {"status": "error", "ename": "ValueError", "evalue": "no 13", "traceback": tb},
                      idents=idents, parent=req["header"], metadata={"engine_id": eid})
    for _ in range(2):
        await client.recv()
    await client.send("task_stats_request", {"since": 0})
    _, reply = await client.recv()
    stats = reply["content"]
    assert reply["msg_type"] == "task_stats_reply" and stats["status"] == "ok"
    group = stats["groups"]["label:squares"]
    assert (group["n"], group["d"], group["f"], group["fn"]) == (5, 3, 2, "square")
    assert stats["engines"] == {str(eid): {"square": [3, 2]}}
    (failure,) = stats["failures"]
    assert failure["traceback"] == tb and failure["engine_id"] == eid and failure["msg_id"] == req["header"]["msg_id"]
    await client.send("task_stats_request", {"since": stats["rev"]})
    _, reply = await client.recv()
    assert reply["content"]["groups"] == {} and reply["content"]["failures"] == []


async def test_a_replacement_asking_for_a_live_engines_id_waits_until_it_is_declared_dead(
        controller: Controller) -> None:
    controller.router.heart.misses = 2
    old, eid = await controller.engine(b"old")  # never answers heartbeats: declared dead after ~0.3 s
    new = controller.peer("engine", b"new")
    await new.send("registration_request", {"uuid": "new", "hostname": "h", "pid": os.getpid(), "id": eid})
    _, reply = await new.recv()
    assert reply["content"] == {"status": "ok", "id": eid, "hb_period": 0.1, "max_frame_bytes": 0}
    assert controller.hub.engines[eid].uuid == b"new"
    stranger = controller.peer("engine", b"stranger")
    await stranger.send("registration_request", {"uuid": "stranger", "hostname": "h", "pid": 1, "id": 99})
    _, reply = await stranger.recv()
    assert reply["content"]["status"] == "error" and "never given out" in reply["content"]["evalue"]


async def test_a_held_registration_is_refused_while_the_id_holder_lives(controller: Controller) -> None:
    controller.router.heart.misses = 1000  # the holder is never declared dead
    _, eid = await controller.engine(b"alive")
    new = controller.peer("engine", b"new")
    await new.send("registration_request", {"uuid": "new", "hostname": "h", "pid": os.getpid(), "id": eid})
    held = controller.router.care.held

    async def until_held() -> None:  # a bounded poll: the hold has no event of its own
        while eid not in held:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(until_held(), WAIT)
    euuid, content, header, _ = held[eid]  # its deadline, hb_period * (misses + 2), is 100 s away: move it
    held[eid] = (euuid, content, header, 0.0)
    _, reply = await new.recv()
    assert reply["content"]["ename"] == "EngineIdTaken" and "still alive" in reply["content"]["evalue"]
    assert controller.hub.engines[eid].uuid == b"alive"


async def test_a_reported_engine_death_is_declared_at_once_and_its_task_answered(controller: Controller) -> None:
    client = controller.peer("client")
    e0, _ = await controller.engine(b"e-0")
    e1, _ = await controller.engine(b"e-1")
    h = await client.send("apply_request", buffers=apply_buffers(), metadata={"retries": 1, "targets": [0]})
    await e0.recv()  # engine 0 has it
    await client.send("engine_died_request", {"id": 0, "pid": 1, "reason": "killed by SIGKILL"})
    _, reply = await client.recv()
    assert reply["content"] == {"status": "ok", "declared": False, "id": 0}  # a stale report: another pid
    await client.send("engine_died_request", {"id": 0, "pid": os.getpid(), "reason": "killed by SIGKILL"})
    _, reply = await client.recv()  # the retry can only go to engine 0, which is gone: impossible
    replies = [reply, (await client.recv())[1]]
    by_type = {r["msg_type"]: r for r in replies}
    assert by_type["engine_died_reply"]["content"] == {"status": "ok", "declared": True, "id": 0}
    assert by_type["apply_reply"]["parent_header"]["msg_id"] == h["msg_id"]
    assert sorted(controller.hub.engines) == [1]


async def test_a_death_reported_by_pid_alone_finds_the_engines_id_even_once_it_is_gone(
        controller: Controller) -> None:
    client = controller.peer("client")
    await controller.engine(b"e-0")
    e1 = controller.peer("engine", b"e-1")
    await e1.send("registration_request", {"uuid": "e-1", "hostname": "h", "pid": 4242})
    assert (await e1.recv())[1]["content"]["id"] == 1
    report = {"id": None, "pid": 4242, "hostname": "h", "reason": "killed by SIGKILL"}
    await client.send("engine_died_request", report)
    _, reply = await client.recv()
    assert reply["content"] == {"status": "ok", "declared": True, "id": 1}
    await client.send("engine_died_request", report)  # declared dead already: the hub still knows the id
    _, reply = await client.recv()
    assert reply["content"] == {"status": "ok", "declared": False, "id": 1}
    await client.send("engine_died_request", {**report, "hostname": "elsewhere"})
    _, reply = await client.recv()
    assert reply["content"] == {"status": "ok", "declared": False, "id": None}
