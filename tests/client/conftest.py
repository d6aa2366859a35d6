"""A fake controller with in-process engines, speaking the wire protocol, for client tests.

``FakeCluster`` binds a ROUTER (client port) and an XPUB (iopub port) on 127.0.0.1, writes the
client connection file and serves from one thread: it answers controller queries, runs
``apply_request``/``execute_request``/``clear_request`` in-process in a per-engine namespace, and
publishes their output on iopub with the ``iopub_count`` the real engine reports. Tests steer it
through :meth:`FakeCluster.call` (run a function in its thread) and a few switches:

- ``hold``: queue task requests instead of running them (for abort, timeouts, queue_status).
- ``iopub_after_reply``: publish a task's output after its reply instead of before.
- ``extra_iopub``: claim this many more iopub messages than were sent (output never completes).
- ``mute_pings``: leave the client's pings unanswered (a hung controller, as the client sees it).
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import itertools
import queue
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import zmq

from ipcluster.client.namespace import in_user_namespace
from ipcluster.error import wrap_exception
from ipcluster.protocol.connection import write_private_json
from ipcluster.protocol.serialize import serialize_result, unpack_apply
from ipcluster.protocol.receive import messages
from ipcluster.protocol.session import AUTH_ERRORS, DELIM, Session, new_key


class FakeCluster:
    """Controller and ``n`` engines in one thread of the test process."""

    def __init__(self, directory: Path, n: int = 2, key: bytes | None = None) -> None:
        self.key = key or new_key()
        self.session = Session(self.key)
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.linger = 0
        self.client_port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.pub = self.ctx.socket(zmq.XPUB)
        self.pub.linger = 0
        self.pub.setsockopt(zmq.XPUB_VERBOSE, 1)  # every client's subscription, as the real one
        self.iopub_port = self.pub.bind_to_random_port("tcp://127.0.0.1")
        self._wake_rx = self.ctx.socket(zmq.PAIR)
        self._wake_rx.bind(f"inproc://fake-wake-{id(self)}")
        self._wake_tx = self.ctx.socket(zmq.PAIR)
        self._wake_tx.connect(f"inproc://fake-wake-{id(self)}")
        self._wake_lock = threading.Lock()
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self.engines: dict[int, str] = {}
        self.namespaces: dict[int, dict[str, Any]] = {}
        for eid in range(n):
            self._add_engine(eid)
        self._rr = itertools.count()
        self.hold = False
        self.iopub_after_reply = False
        self.extra_iopub = 0
        self.mute_pings = False
        self.held: list[tuple[bytes, dict[str, Any], int]] = []
        self.records: dict[str, dict[str, Any]] = {}  # msg_id -> record
        self.history: list[str] = []
        self.request_metadata: dict[str, dict[str, Any]] = {}  # msg_id -> the request's metadata
        self.received: list[str] = []  # msg_types, in arrival order
        self._arrived = threading.Condition()  # notified as each task request is recorded
        self.subscriptions = 0
        self.errors: list[BaseException] = []
        self._stopping = False
        self.info = {
            "key": self.key.decode(),
            "signature_scheme": "hmac-sha256",
            "interface": "tcp://127.0.0.1",
            "client_port": self.client_port,
            "iopub_port": self.iopub_port,
            "cluster_id": "",
        }
        self.connection_file = write_private_json(directory / "security" / "ipcontroller-client.json", self.info)
        self.thread = threading.Thread(target=self._serve, name="fake-controller", daemon=True)
        self.thread.start()

    # -- control from tests ------------------------------------------------------------------
    def call(self, fn: Callable[[], Any], timeout: float = 5) -> Any:
        """Run ``fn`` in the fake's thread and return its result."""
        fut: Future[Any] = Future()
        self._calls.put((fn, fut))
        self._wake()
        return fut.result(timeout)

    def wait_received(self, *ars: Any, timeout: float = 5) -> None:
        """Wait until the task requests behind ``ars`` (AsyncResults) have reached the fake.

        A client sends bursts of small requests in batches from its I/O thread, so a request
        made just before may still be on its way: a round trip through ``call`` does not prove
        that it arrived.
        """
        msg_ids = [m for ar in ars for m in ar.msg_ids]
        with self._arrived:
            if not self._arrived.wait_for(lambda: all(m in self.records for m in msg_ids), timeout):
                missing = [m for m in msg_ids if m not in self.records]
                raise AssertionError(f"requests {missing} did not reach the fake controller in {timeout} s")

    def _wake(self) -> None:
        with self._wake_lock:
            try:
                self._wake_tx.send(b"", zmq.NOBLOCK)
            except zmq.Again:  # plenty of wake-ups queued already
                pass

    def stop(self) -> None:
        """Close the controller's sockets (clients see it disappear) and end the thread."""
        if self._stopping:
            return
        self._stopping = True
        self._wake()
        self.thread.join(5)
        assert not self.thread.is_alive(), "the fake controller did not stop"
        self._wake_tx.close(linger=0)
        self.ctx.term()

    def add_engine(self, eid: int) -> None:
        self.call(lambda: (self._add_engine(eid), self._notify("registration_notification", eid)))

    def remove_engine(self, eid: int) -> None:
        """The engine dies: its held tasks get EngineError replies, then a notice goes out."""
        self.call(lambda: self._kill(eid))

    def release(self) -> None:
        """Run the held task requests."""

        def run() -> None:
            self.hold = False
            held, self.held = self.held, []
            for client, msg, eid in held:
                self._run_task(client, msg, eid)

        self.call(run)

    # -- the serving thread -----------------------------------------------------------------
    def _serve(self) -> None:
        poller = zmq.Poller()
        for sock in (self.router, self.pub, self._wake_rx):
            poller.register(sock, zmq.POLLIN)
        try:
            while not self._stopping:
                events = dict(poller.poll(200))
                if self._wake_rx in events:
                    while self._wake_rx.poll(0):
                        self._wake_rx.recv()
                    while not self._calls.empty():
                        fn, fut = self._calls.get()
                        try:
                            fut.set_result(fn())
                        except BaseException as e:
                            fut.set_exception(e)
                if self.pub in events:
                    while self.pub.poll(0):
                        frame = self.pub.recv()
                        if frame[:1] == b"\x01":
                            self.subscriptions += 1
                            self._publish_controller("iopub_welcome", {})
                if self.router in events:
                    while not self._stopping and self.router.poll(0):
                        frames = self.router.recv_multipart()
                        try:
                            self._on_client(frames)
                        except Exception as e:  # keep serving; the fixture reports it
                            self.errors.append(e)
        finally:
            for sock in (self.router, self.pub, self._wake_rx):
                sock.close(linger=0)

    def _on_client(self, received: list[bytes]) -> None:
        for frames in messages(received):  # a client batches bursts of small requests
            self._on_message(frames)

    def _on_message(self, frames: list[bytes]) -> None:
        client = frames[0]
        try:
            _, msg = self.session.unpack(frames)
        except Exception:
            # unsigned on purpose, as the real controller: the client must learn why it is refused
            self.router.send_multipart([client, DELIM, AUTH_ERRORS["client"]])
            return
        msg_type = msg["msg_type"]
        if msg_type == "ping_request":  # the client's heartbeat: answered unless muted, never recorded
            if not self.mute_pings:
                _, out = self.session.serialize("ping_reply", {"status": "ok"}, parent=msg["header"], idents=[client])
                self.router.send_multipart(out)
            return
        self.received.append(msg_type)
        header = msg["header"]
        if msg_type in ("apply_request", "execute_request", "clear_request"):
            self.history.append(msg["msg_id"])
            self.request_metadata[msg["msg_id"]] = msg["metadata"]
            with self._arrived:
                self.records[msg["msg_id"]] = {"completed": False, "submitted": header.get("date")}
                self._arrived.notify_all()
            target = header.get("target")
            if isinstance(target, list):
                for eid in target:
                    self._route(client, msg, eid)
            elif target is None:
                allowed = msg["metadata"].get("targets") or sorted(self.engines)
                self._route(client, msg, allowed[next(self._rr) % len(allowed)])
            else:
                self._route(client, msg, int(target))
            return
        handler = getattr(self, "_q_" + msg_type.removesuffix("_request"), None)
        try:
            if handler is None:
                raise ValueError(f"unknown request {msg_type}")
            content, buffers = handler(msg["content"])
            content.setdefault("status", "ok")
        except Exception as e:
            content, buffers = {"status": "error", "ename": type(e).__name__, "evalue": str(e), "traceback": ""}, []
        reply_type = msg_type.removesuffix("_request") + "_reply"
        _, out = self.session.serialize(reply_type, content, parent=header, buffers=buffers, idents=[client])
        self.router.send_multipart(out, copy=False)

    def _route(self, client: bytes, msg: dict[str, Any], eid: int) -> None:
        if eid not in self.engines:
            self._answer_error(client, msg, eid, "EngineError", f"engine {eid} is not registered")
        elif self.hold:
            self.held.append((client, msg, eid))
        else:
            self._run_task(client, msg, eid)

    # -- engines ------------------------------------------------------------------------------
    def _add_engine(self, eid: int) -> None:
        self.engines[eid] = uuid.uuid4().hex
        ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        ns["_fake_display"] = lambda data: self._output("display_data", {"data": data, "metadata": {}})
        self.namespaces[eid] = ns

    def _notify(self, msg_type: str, eid: int) -> None:
        self._publish_controller(msg_type, {"id": eid, "uuid": self.engines.get(eid, "")})

    def _kill(self, eid: int) -> None:
        keep = []
        for client, msg, target in self.held:
            if target == eid:
                self._answer_error(client, msg, eid, "EngineError", f"engine {eid} died")
            else:
                keep.append((client, msg, target))
        self.held = keep
        self._notify("unregistration_notification", eid)
        self.engines.pop(eid, None)

    def _publish_controller(self, msg_type: str, content: dict[str, Any]) -> None:
        _, frames = self.session.serialize(msg_type, content, idents=[f"controller.{msg_type}".encode()])
        self.pub.send_multipart(frames)

    def _answer_error(self, client: bytes, msg: dict[str, Any], eid: int, ename: str, evalue: str,
                      status: str = "error") -> None:
        content = {"status": status, "ename": ename, "evalue": evalue, "traceback": ""}
        reply_type = msg["msg_type"].removesuffix("_request") + "_reply"
        md = {"engine_id": eid, "status": status, "completed": time.time()}
        _, out = self.session.serialize(reply_type, content, parent=msg["header"], metadata=md, idents=[client])
        self.router.send_multipart(out)
        self.records[msg["msg_id"]] = {"completed": True, "header": {"msg_type": reply_type}, "content": content,
                                       "metadata": md, "buffers": [], "submitted": msg["header"].get("date")}

    _current: tuple[int, dict[str, Any], list[tuple[str, dict[str, Any]]]] | None = None

    def _output(self, msg_type: str, content: dict[str, Any]) -> None:
        assert self._current is not None
        self._current[2].append((msg_type, content))

    @contextlib.contextmanager
    def _engine_context(self, eid: int, msg: dict[str, Any]) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        outputs: list[tuple[str, dict[str, Any]]] = []
        self._current = (eid, msg["header"], outputs)
        out, err = io.StringIO(), io.StringIO()
        saved_main = sys.modules["__main__"]
        # on an engine the user namespace is the __main__ module's dict: make it so while running
        sys.modules["__main__"] = _NamespaceModule(self.namespaces[eid])
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                yield outputs
        finally:
            sys.modules["__main__"] = saved_main
            self._current = None
            if out.getvalue():
                outputs.insert(0, ("stream", {"name": "stdout", "text": out.getvalue()}))
            if err.getvalue():
                outputs.append(("stream", {"name": "stderr", "text": err.getvalue()}))

    def _run_task(self, client: bytes, msg: dict[str, Any], eid: int) -> None:
        msg_type = msg["msg_type"]
        ns = self.namespaces[eid]
        started = time.time()
        buffers: list[Any] = []
        info = {"engine_id": eid, "engine_uuid": self.engines[eid], "method": msg_type.removesuffix("_request")}
        with self._engine_context(eid, msg) as outputs:
            try:
                if msg_type == "apply_request":
                    f, args, kwargs = unpack_apply(msg["buffers"])
                    f = in_user_namespace(f)  # as an engine does: its namespace first, then what f captured
                    args = tuple(ns[a.__ipcluster_reference__] if hasattr(a, "__ipcluster_reference__") else a
                                 for a in args)
                    buffers = serialize_result(f(*args, **kwargs))
                    content: dict[str, Any] = {"status": "ok"}
                elif msg_type == "execute_request":
                    content = self._execute(msg["content"]["code"], ns, outputs)
                else:
                    keep = {k: ns[k] for k in ("__name__", "__builtins__", "_fake_display")}
                    ns.clear()
                    ns.update(keep)
                    content = {"status": "ok"}
            except Exception:
                content = wrap_exception(info)
                if msg_type == "execute_request":
                    outputs.append(("error", {"ename": content["ename"], "evalue": content["evalue"],
                                              "traceback": content["traceback"].splitlines()}))
        md = {"engine_id": eid, "engine_uuid": self.engines[eid], "started": started, "completed": time.time(),
              "status": content["status"], "iopub_count": len(outputs) + self.extra_iopub}
        reply_type = msg_type.removesuffix("_request") + "_reply"
        if not self.iopub_after_reply:
            self._publish_outputs(eid, msg, outputs)
        _, out = self.session.serialize(reply_type, content, parent=msg["header"], metadata=md, buffers=buffers,
                                        idents=[client])
        self.router.send_multipart(out, copy=False)
        if self.iopub_after_reply:
            self._publish_outputs(eid, msg, outputs)
        self.records[msg["msg_id"]] = {"completed": True, "header": {"msg_type": reply_type}, "content": content,
                                       "metadata": md, "buffers": buffers, "submitted": msg["header"].get("date"),
                                       "received": time.time()}

    def _publish_outputs(self, eid: int, msg: dict[str, Any], outputs: list[tuple[str, dict[str, Any]]]) -> None:
        for msg_type, content in outputs:
            _, frames = self.session.serialize(msg_type, content, parent=msg["header"], metadata={"engine_id": eid},
                                               idents=[f"engine.{eid}.{msg_type}".encode()])
            self.pub.send_multipart(frames)

    def _execute(self, code: str, ns: dict[str, Any], outputs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        tree = ast.parse(code)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, "<cell>", "exec"), ns)
        if last is not None:
            value = eval(compile(last, "<cell>", "eval"), ns)
            if value is not None:
                outputs.append(("execute_result", {"data": {"text/plain": repr(value)}, "metadata": {},
                                                   "execution_count": 1}))
        return {"status": "ok", "execution_count": 1}

    # -- controller queries -------------------------------------------------------------------
    def _q_connection(self, c: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        return {"engines": {str(k): v for k, v in self.engines.items()}, "cluster_id": "", "task_scheme": "fake"}, []

    def _q_queue(self, c: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        targets = c.get("targets") or sorted(self.engines)
        out: dict[str, Any] = {}
        for eid in targets:
            n = sum(1 for _, _, t in self.held if t == eid)
            out[str(eid)] = {"queue": n, "tasks": 0, "completed": 0}
        out["unassigned"] = 0
        return out, []

    def _q_result(self, c: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        pending, completed, results, buffers = [], [], {}, []
        for msg_id in c["msg_ids"]:
            rec = self.records.get(msg_id)
            if rec is None:
                raise KeyError(f"no task with msg_id {msg_id!r}")
            if not rec["completed"]:
                pending.append(msg_id)
                continue
            completed.append(msg_id)
            if not c.get("status_only"):
                results[msg_id] = {"header": rec["header"], "content": rec["content"], "metadata": rec["metadata"],
                                   "nbuffers": len(rec["buffers"]), "submitted": rec["submitted"],
                                   "received": rec.get("received")}
                buffers.extend(rec["buffers"])
        return {"pending": pending, "completed": completed, "results": results}, buffers

    def _q_history(self, c: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        return {"history": list(self.history)}, []

    def _q_purge(self, c: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        ids = c["msg_ids"]
        if ids == "all":
            ids = [m for m, r in self.records.items() if r["completed"]]
        for msg_id in ids:
            self.records.pop(msg_id, None)
        return {}, []

    def _q_abort(self, c: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        ids = c.get("msg_ids")
        keep = []
        for client, msg, eid in self.held:
            if ids is None or msg["msg_id"] in ids:
                self._answer_error(client, msg, eid, "TaskAborted", "aborted", status="aborted")
            else:
                keep.append((client, msg, eid))
        self.held = keep
        return {}, []

    def _q_shutdown(self, c: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        for eid in list(c.get("targets") or self.engines):
            self._kill(eid)
        return {}, []


class _NamespaceModule(types.ModuleType):
    """A module whose ``__dict__`` lookups go to an engine namespace (what ``sys.modules
    ["__main__"].__dict__`` is on a real engine)."""

    def __init__(self, ns: dict[str, Any]) -> None:
        super().__init__("__main__")
        self._ns = ns

    def __getattribute__(self, name: str) -> Any:
        if name == "__dict__":
            return object.__getattribute__(self, "_ns")
        return super().__getattribute__(name)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeCluster]:
    cluster = FakeCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()
    assert not cluster.errors, f"the fake controller failed: {cluster.errors!r}"


@pytest.fixture
def make_client(fake: FakeCluster) -> Iterator[Callable[..., Any]]:
    from ipcluster.client import Client

    clients: list[Any] = []

    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("timeout", 5)
        c = Client(str(fake.connection_file), **kwargs)
        clients.append(c)
        return c

    try:
        yield make
    finally:
        for c in clients:
            c.close()


@pytest.fixture
def rc(make_client: Callable[..., Any]) -> Any:
    return make_client()
