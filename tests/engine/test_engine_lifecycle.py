"""An engine process joining, beating, and leaving a (fake) controller."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ipcluster.protocol.connection import write_private_json
from ipcluster.protocol.serialize import pack_apply
from ipcluster.protocol.session import AUTH_ERRORS, DELIM, Session

from .conftest import WAIT, Engine, FakeController, result_of


async def test_registration(engine_factory: Callable[..., Engine]) -> None:
    e = engine_factory()
    content = await e.register(engine_id=3)
    assert content["pid"] == e.proc.pid
    assert content["uuid"].encode() == e.identity
    assert content["hostname"]
    reply = await e.apply(os.getpid)
    assert result_of(reply) == e.proc.pid
    md = reply["metadata"]
    assert md["engine_id"] == 3 and md["engine_uuid"] == content["uuid"] and md["status"] == "ok"
    assert md["started"] <= md["completed"]
    assert reply["idents"] == [e.identity, b"client-0"]  # the client identity is echoed


async def test_first_output_of_a_new_engine_is_not_lost(engine_factory: Callable[..., Engine]) -> None:
    """Output published before the IOPub subscription reaches the engine is held, not dropped."""
    e = engine_factory()
    await e.register()
    reply = await e.apply(print, "first words")
    assert reply["metadata"]["iopub_count"] == 1
    (msg,) = await e.controller.iopub_for(reply["parent_header"]["msg_id"], 1)
    assert msg["content"] == {"name": "stdout", "text": "first words\n"}


async def test_registration_refused_exits_nonzero(engine_factory: Callable[..., Engine]) -> None:
    e = engine_factory()
    idents, msg = await e.controller.recv()
    await e.controller.send(
        idents, "registration_reply", {"status": "error", "ename": "ValueError", "evalue": "no room here"},
        parent=msg["header"],
    )
    assert await e.wait_exit() != 0
    assert "no room here" in e.stderr()


async def test_auth_error_exits_nonzero(engine_factory: Callable[..., Engine]) -> None:
    """A controller with another key answers with an unsigned auth_error: the engine says so."""
    e = engine_factory()
    identity, *_ = await e.controller.router.recv_multipart()  # a registration it cannot verify
    await e.controller.router.send_multipart([identity, DELIM, AUTH_ERRORS["engine"]])
    assert await e.wait_exit() != 0
    assert "refused our signature: message signature did not verify: the engine's key" in e.stderr()


async def test_missing_connection_file_exits_nonzero(tmp_path: Path) -> None:
    t0 = time.monotonic()
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ipcluster.engine", f"--file={tmp_path / 'nope.json'}", "--timeout=0.3"],
        capture_output=True,
        timeout=WAIT,
    )
    assert proc.returncode != 0
    assert b"nope.json" in proc.stderr and b"does not exist" in proc.stderr
    assert time.monotonic() - t0 < WAIT


async def test_waits_for_connection_file_in_profile(controller: FakeController, tmp_path: Path) -> None:
    """--profile-dir/--cluster-id: the file may appear after the engine starts."""
    profile = tmp_path / "profile_x"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipcluster.engine", f"--profile-dir={profile}", "--cluster-id=abc", "--timeout=20"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        write_private_json(profile / "security" / "ipcontroller-abc-engine.json", controller.info)
        idents, msg = await controller.recv()
        assert msg["msg_type"] == "registration_request"
        assert msg["content"]["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait(WAIT)


async def test_registration_timeout_exits_nonzero(engine_factory: Callable[..., Engine]) -> None:
    e = engine_factory("--timeout=0.5")
    _, msg = await e.controller.recv()  # never answered
    assert msg["msg_type"] == "registration_request"
    assert await e.wait_exit() != 0
    assert "did not answer" in e.stderr()


async def test_heartbeat_is_echoed(engine: Engine) -> None:
    c = engine.controller
    async with asyncio.timeout(WAIT):
        while True:  # the controller pings periodically; the first pings may precede the SUB
            await c.hb_ping.send(b"\x00\x00\x00\x00\x00\x00\x00\x07")
            if await c.hb_pong.poll(100):
                break
    ident, ping = await c.hb_pong.recv_multipart()
    assert ident == engine.identity
    assert ping == b"\x00\x00\x00\x00\x00\x00\x00\x07"


async def test_heartbeat_answers_while_python_is_busy(engine: Engine, tmp_path: Path) -> None:
    gate = tmp_path / "go"

    def spin(gate: str) -> None:  # pure Python: holds the GIL except at switch intervals
        import os
        import time

        print("busy", flush=True)
        deadline = time.monotonic() + 20
        while not os.path.exists(gate) and time.monotonic() < deadline:
            pass

    c = engine.controller
    header = await engine.request("apply_request", {}, pack_apply(spin, (str(gate),), {}))
    await c.iopub_for(header["msg_id"], 1)  # the engine is busy
    async with asyncio.timeout(WAIT):
        while True:
            await c.hb_ping.send(b"busy-ping")
            if await c.hb_pong.poll(100):
                break
    assert (await c.hb_pong.recv_multipart())[1] == b"busy-ping"
    gate.touch()
    reply = await c.reply_to(header["msg_id"])
    assert reply["content"]["status"] == "ok"


async def test_shutdown_request_unregisters_and_exits_zero(engine: Engine) -> None:
    c = engine.controller
    await c.send([engine.identity], "shutdown_request", {})
    idents, msg = await c.recv()
    assert msg["msg_type"] == "unregistration_request"
    assert msg["content"] == {"id": engine.id}
    assert await engine.wait_exit() == 0


async def test_sigterm_unregisters_and_exits_zero(engine: Engine) -> None:
    assert result_of(await engine.apply(abs, -1)) == 1  # serving: its handlers are installed
    engine.proc.send_signal(signal.SIGTERM)
    _, msg = await engine.controller.recv()
    assert msg["msg_type"] == "unregistration_request"
    assert await engine.wait_exit() == 0


async def test_controller_gone_engine_exits(engine_factory: Callable[..., Engine]) -> None:
    e = engine_factory("--controller-timeout=0.5")
    await e.register()
    assert result_of(await e.apply(int, "7")) == 7
    e.controller.router.close(linger=0)  # the controller dies
    t0 = time.monotonic()
    code = await e.wait_exit()
    assert code != 0
    assert time.monotonic() - t0 < 5
    assert "unreachable" in e.stderr()


async def test_controller_gone_while_user_code_runs(engine_factory: Callable[..., Engine]) -> None:
    """The running code is interrupted: an engine never outlives its controller for long."""

    e = engine_factory("--controller-timeout=0.5")
    await e.register()
    await e.start_sleeping()
    e.controller.router.close(linger=0)
    t0 = time.monotonic()
    assert await e.wait_exit() != 0
    assert time.monotonic() - t0 < 5
    assert "unreachable" in e.stderr()


async def test_sigterm_while_user_code_runs(engine: Engine) -> None:
    c = engine.controller
    header = await engine.start_sleeping()
    engine.proc.send_signal(signal.SIGTERM)
    reply = await c.reply_to(header["msg_id"])
    assert reply["content"]["ename"] == "Terminated"
    _, msg = await c.recv()
    assert msg["msg_type"] == "unregistration_request"
    assert await engine.wait_exit() == 0


async def test_bad_signature_is_dropped(engine: Engine) -> None:
    c = engine.controller
    header, frames = Session(b"not-the-key").serialize("apply_request", {}, idents=[engine.identity, b"client-0"])
    await c.router.send_multipart(frames)
    await c.router.send_multipart([engine.identity, b"garbage", b"no delimiter"])
    reply = await engine.apply(sum, [1, 2, 3])
    assert result_of(reply) == 6
    assert header["msg_id"] not in c.replies
    assert "the engine refused a message: BadSignature" in engine.stderr()


def test_engine_imports_stay_light() -> None:
    """Starting an engine imports neither the client, the controller, nor IPython."""
    code = (
        "import sys, ipcluster.engine.app, ipcluster.engine.kernel\n"
        "bad = [m for m in ('ipcluster.client', 'ipcluster.controller', 'IPython', 'ipykernel', 'cloudpickle')"
        " if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=WAIT)
