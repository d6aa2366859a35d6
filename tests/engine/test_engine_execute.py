"""execute_request through the engine's IPython shell, and interrupting it."""

from __future__ import annotations

import asyncio
import re
import signal

import zmq

from ipcluster.protocol.session import Message

from .conftest import Engine, result_of

ANSI = re.compile(r"\x1b\[[0-9;]*m")


async def output_of(engine: Engine, reply: Message) -> list[Message]:
    return await engine.controller.iopub_for(reply["parent_header"]["msg_id"], reply["metadata"]["iopub_count"])


async def test_execute_result_bundle_and_shared_namespace(engine: Engine) -> None:
    reply = await engine.execute("a = 5\na * 2")
    assert reply["msg_type"] == "execute_reply"
    assert reply["content"] == {"status": "ok", "execution_count": 1}
    msgs = await output_of(engine, reply)
    assert [m["msg_type"] for m in msgs] == ["execute_input", "execute_result"]
    assert msgs[0]["content"] == {"code": "a = 5\na * 2", "execution_count": 1}
    assert msgs[1]["content"]["data"] == {"text/plain": "10"}
    assert msgs[1]["content"]["execution_count"] == 1
    # apply sees what execute defined, in the same namespace
    get_a = lambda: a  # type: ignore[name-defined]  # noqa: E731, F821
    get_a.__module__ = "__main__"
    assert result_of(await engine.apply(get_a)) == 5
    assert (await engine.execute("a"))["content"]["execution_count"] == 2


async def test_display_data_has_the_html_bundle(engine: Engine) -> None:
    code = (
        "class Fancy:\n"
        "    def _repr_html_(self):\n"
        "        return '<i>fancy</i>'\n"
        "    def __repr__(self):\n"
        "        return 'Fancy()'\n"
        "from IPython.display import display\n"
        "print('before')\n"
        "display(Fancy())\n"
        "Fancy()\n"
    )
    reply = await engine.execute(code)
    assert reply["content"]["status"] == "ok"
    msgs = await output_of(engine, reply)
    assert [m["msg_type"] for m in msgs] == ["execute_input", "stream", "display_data", "execute_result"]
    display = msgs[2]["content"]
    assert display["data"] == {"text/plain": "Fancy()", "text/html": "<i>fancy</i>"}
    assert display["metadata"] == {} and display["transient"] == {}
    assert msgs[3]["content"]["data"]["text/html"] == "<i>fancy</i>"


async def test_execute_error(engine: Engine) -> None:
    reply = await engine.execute("def f():\n    1/0\nf()")
    content = reply["content"]
    assert content["status"] == "error"
    assert content["ename"] == "ZeroDivisionError"
    assert content["execution_count"] == 1
    assert "1/0" in ANSI.sub("", content["traceback"])
    msgs = await output_of(engine, reply)
    assert [m["msg_type"] for m in msgs] == ["execute_input", "error"]
    error = msgs[1]["content"]
    assert error["ename"] == "ZeroDivisionError" and error["evalue"] == "division by zero"
    assert isinstance(error["traceback"], list) and error["traceback"]
    syntax = (await engine.execute("1 +"))["content"]
    assert syntax["status"] == "error" and syntax["ename"] == "SyntaxError"
    assert (await engine.execute("1 + 1"))["content"]["status"] == "ok"


async def test_magics(engine: Engine) -> None:
    reply = await engine.execute("%timeit -n1 -r1 pass")
    assert reply["content"]["status"] == "ok", reply["content"]
    text = "".join(m["content"]["text"] for m in await output_of(engine, reply) if m["msg_type"] == "stream")
    assert "per loop" in text
    reply = await engine.execute("%time x = sum(range(10))\nx")
    assert reply["content"]["status"] == "ok"
    msgs = await output_of(engine, reply)
    assert "Wall time" in "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
    assert msgs[-1]["content"]["data"] == {"text/plain": "45"}


async def test_silent_execute_publishes_no_input_or_result(engine: Engine) -> None:
    reply = await engine.execute("b = 3\nb", silent=True)
    assert reply["content"]["status"] == "ok"
    assert reply["metadata"]["iopub_count"] == 0
    assert (await engine.execute("b"))["content"]["execution_count"] == 1  # silent cells do not count


async def test_top_level_await(engine: Engine) -> None:
    reply = await engine.execute("import asyncio\nawait asyncio.sleep(0.01)\n'awaited'")
    assert reply["content"]["status"] == "ok", reply["content"]
    msgs = await output_of(engine, reply)
    assert msgs[-1]["content"]["data"] == {"text/plain": "'awaited'"}


async def test_sigint_interrupts_running_code(engine: Engine) -> None:
    c = engine.controller
    header = await engine.request(
        "execute_request", {"code": "import time\nprint('sleeping', flush=True)\ntime.sleep(30)", "silent": False}
    )
    msgs = await c.iopub_for(header["msg_id"], 2)  # execute_input, then the print: user code runs
    assert msgs[1]["content"]["text"] == "sleeping\n"
    engine.proc.send_signal(signal.SIGINT)
    reply = await c.reply_to(header["msg_id"], timeout=10)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    # the engine lives on, and ignores SIGINT while idle
    engine.proc.send_signal(signal.SIGINT)
    assert (await engine.execute("'alive'"))["content"]["status"] == "ok"
    assert engine.proc.poll() is None


async def test_sigint_interrupts_apply(engine: Engine) -> None:
    c = engine.controller
    header = await engine.start_sleeping()
    engine.proc.send_signal(signal.SIGINT)
    reply = await c.reply_to(header["msg_id"])
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert result_of(await engine.apply(abs, -4)) == 4


async def test_signal_request_on_the_control_channel_interrupts(engine: Engine) -> None:
    """The controller's signal_request reaches the control thread while the main thread is busy."""

    c = engine.controller
    header = await engine.start_sleeping()
    c.router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an unknown identity raises instead of dropping
    _, frames = c.session.serialize("signal_request", {"signum": int(signal.SIGINT)}, idents=[engine.identity + b".ctl"])
    async with asyncio.timeout(10):
        while True:  # the control socket connects right after registration; it is surely up by now
            try:
                await c.router.send_multipart(frames)
                break
            except zmq.ZMQError as e:
                assert e.errno == zmq.EHOSTUNREACH
                await asyncio.sleep(0.01)
    reply = await c.reply_to(header["msg_id"])
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert result_of(await engine.apply(abs, -4)) == 4


async def test_sigint_interrupts_a_cell_awaiting(engine: Engine) -> None:
    c = engine.controller
    code = "import asyncio\nprint('waiting', flush=True)\nawait asyncio.sleep(30)"
    header = await engine.request("execute_request", {"code": code, "silent": False})
    await c.iopub_for(header["msg_id"], 2)  # execute_input, then the print
    engine.proc.send_signal(signal.SIGINT)
    reply = await c.reply_to(header["msg_id"])
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert (await engine.execute("'alive'"))["content"]["status"] == "ok"
