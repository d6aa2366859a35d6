"""The client's record of one request sent to an engine, and what users see of it.

A :class:`Task` is created in the caller's thread before its request is sent and filled in by
the I/O thread as the reply and the request's output arrive. It has ``__slots__`` and, once
finished, no reference to its :class:`~ipcluster.client.asyncresult.AsyncResult` (the only
cycle, task -> result -> task, is broken when the task completes), so a million finished
tasks cost neither a garbage-collector pass nor much memory. The metadata dict users read
(``ar.metadata``, ``rc.metadata[msg_id]``) is built from it on demand: times are kept as epoch
seconds (floats) and become ``datetime`` objects only there.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from ..error import (
    DependencyTimeout,
    EngineError,
    ImpossibleDependency,
    InvalidDependency,
    NoEnginesError,
    RemoteError,
    TaskAborted,
    TaskKilledEngines,
    TaskRejected,
    TaskTimeout,
)
from ..protocol.datapub import decode_data

#: metadata keys, as ipyparallel names them (``ar.stdout``, ``ar.engine_id``, ...)
METADATA_KEYS = (
    "msg_id",
    "submitted",
    "started",
    "completed",
    "received",
    "engine_uuid",
    "engine_id",
    "follow",
    "after",
    "status",
    "execute_input",
    "execute_result",
    "error",
    "stdout",
    "stderr",
    "outputs",
    "data",
)

#: sentinel in Task.sent: "send with a zmq MessageTracker"
TRACK = object()


class Task:
    """One request to one engine (for a broadcast, one engine's share of it)."""

    __slots__ = (
        "msg_id",
        "method",  # "apply", "execute" or "clear"
        "target",  # engine id asked for, or None (load-balanced)
        "submitted",  # epoch seconds
        "request_md",  # metadata sent with the request (after/follow), or None
        "owner",  # the AsyncResult (or a list of them) waiting for this task, until it finishes
        "sent",  # False, True, TRACK or a zmq.MessageTracker
        "reply_md",  # metadata of the reply
        "content",  # content of the reply
        "received",  # epoch seconds when the reply arrived
        "value",  # the result, or the exception when failed
        "nbytes",  # bytes of the buffers the value was unpickled from (what it may keep alive)
        "shm_nbytes",  # of which mapped from a shared-memory file
        "failed",
        "expected",  # iopub messages to wait for (-1 until the reply says)
        "seen",  # iopub messages seen
        "stdout",  # list of str, or None
        "stderr",
        "outputs",  # list of display_data contents, or None
        "execute_input",
        "execute_result",
        "error",  # content of an iopub ``error`` message
        "data",  # dict merged from data_message (ipcluster.datapub), or None
        "done",
        "timer",  # asyncio handle: stop waiting for output
        "on_stream",  # callback(task, name, text, engine_id) for stream output as it arrives, or None
    )

    def __init__(self, msg_id: str, method: str, target: int | None, submitted: float,
                 request_md: dict[str, Any] | None = None) -> None:
        self.msg_id = msg_id
        self.method = method
        self.target = target
        self.submitted = submitted
        self.request_md = request_md
        self.owner: Any = None
        self.sent: Any = False
        self.reply_md: dict[str, Any] | None = None
        self.content: dict[str, Any] | None = None
        self.received = 0.0
        self.value: Any = None
        self.nbytes = 0
        self.shm_nbytes = 0
        self.failed = False
        self.expected = -1
        self.seen = 0
        self.stdout: list[str] | None = None
        self.stderr: list[str] | None = None
        self.outputs: list[dict[str, Any]] | None = None
        self.execute_input: str | None = None
        self.execute_result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.data: dict[str, Any] | None = None
        self.done = False
        self.timer: Any = None
        self.on_stream: Callable[[Task, str, str, Any], None] | None = None

    def __repr__(self) -> str:
        state = "done" if self.done else "pending"
        return f"<Task {self.msg_id} {self.method} engine={self.engine_id} {state}>"

    # -- what the reply told ----------------------------------------------------------------
    @property
    def engine_id(self) -> int | None:
        md = self.reply_md
        if md is not None and md.get("engine_id") is not None:
            return int(md["engine_id"])
        return self.target

    def stamp(self, key: str) -> float | None:
        md = self.reply_md
        value = md.get(key) if md is not None else None
        return float(value) if value is not None else None

    # -- output arriving on iopub -----------------------------------------------------------
    def add_output(self, msg_type: str, content: dict[str, Any], engine_id: Any = None) -> None:
        if msg_type == "stream":
            text = content.get("text", "")
            if self.on_stream is not None:
                self.on_stream(self, content.get("name", "stdout"), text, engine_id)
            if content.get("name") == "stderr":
                if self.stderr is None:
                    self.stderr = []
                self.stderr.append(text)
            else:
                if self.stdout is None:
                    self.stdout = []
                self.stdout.append(text)
        elif msg_type == "display_data":
            if self.outputs is None:
                self.outputs = []
            self.outputs.append({"data": content.get("data", {}), "metadata": content.get("metadata", {})})
        elif msg_type == "execute_result":
            self.execute_result = content
        elif msg_type == "execute_input":
            self.execute_input = content.get("code")
        elif msg_type == "error":
            self.error = content
        elif msg_type == "clear_output":
            self.stdout = self.stderr = self.outputs = None
        elif msg_type == "data_message":  # publish_data() on the engine
            self.data = {**(self.data or {}), **decode_data(content)}

    def text(self, name: str) -> str:
        parts = self.stdout if name == "stdout" else self.stderr
        return "".join(parts) if parts else ""

    def metadata(self) -> "Metadata":
        """Everything known about the task, as ipyparallel's metadata dict."""
        md = self.reply_md or {}
        req = self.request_md or {}
        return Metadata(
            msg_id=self.msg_id,
            submitted=_when(self.submitted),
            started=_when(md.get("started")),
            completed=_when(md.get("completed")),
            received=_when(self.received or None),
            engine_uuid=md.get("engine_uuid"),
            engine_id=self.engine_id,
            follow=_ids(req.get("follow")),
            after=_ids(req.get("after")),
            status=md.get("status", self.content.get("status") if self.content else None),
            execute_input=self.execute_input,
            execute_result=self.execute_result,
            error=self.error,
            stdout=self.text("stdout"),
            stderr=self.text("stderr"),
            outputs=list(self.outputs or ()),
            data=dict(self.data or {}),
        )


def _when(stamp: Any) -> datetime | None:
    """Epoch seconds as ipyparallel shows them: an aware UTC ``datetime`` (None stays None)."""
    return None if stamp is None else datetime.fromtimestamp(float(stamp), timezone.utc)


def _ids(dep: Any) -> list[str]:
    if not dep:
        return []
    if isinstance(dep, dict):
        return list(dep.get("msg_ids", []))
    return list(dep)


class Metadata(dict):
    """A task's metadata: a dict whose keys also read as attributes (``md.engine_id``)."""

    __slots__ = ()

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


class ExecuteReply:
    """The result of ``view.execute(code)`` on one engine: shows the value of the last line.

    Indexing and attributes read the task's metadata (``reply['stdout']``, ``reply.engine_id``).
    """

    def __init__(self, msg_id: str, content: dict[str, Any], metadata: Metadata) -> None:
        self.msg_id = msg_id
        self._content = content
        self.metadata = metadata

    @property
    def execution_count(self) -> int | None:
        return self._content.get("execution_count")

    def __getitem__(self, key: str) -> Any:
        return self.metadata[key]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_") or key not in METADATA_KEYS:
            raise AttributeError(key)
        return self.metadata[key]

    def _data(self) -> dict[str, Any]:
        result = self.metadata.get("execute_result") or {}
        return result.get("data") or {}

    def _prompt(self) -> str:
        return f"Out[{self.metadata.get('engine_id')}:{self.execution_count}]: "

    def __repr__(self) -> str:
        text = self._data().get("text/plain")
        if text is None:
            return f"<ExecuteReply[{self.execution_count}]>"
        return self._prompt() + text

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any] | None:
        data = dict(self._data())
        if not data:
            return None
        if "text/plain" in data:
            data["text/plain"] = self._prompt() + data["text/plain"]
        return data


#: errors the controller reports on a task's behalf, rebuilt as their local class
_CONTROLLER_ERRORS: dict[str, type[Exception]] = {
    cls.__name__: cls
    for cls in (TaskTimeout, ImpossibleDependency, DependencyTimeout, InvalidDependency, TaskRejected, NoEnginesError,
                TaskKilledEngines)
}


class Broadcast:
    """Pending broadcast: one msg_id answered by several engines, told apart by ``engine_id``."""

    __slots__ = ("msg_id", "tasks")

    def __init__(self, msg_id: str, tasks: dict[int, Task]) -> None:
        self.msg_id = msg_id
        self.tasks = tasks


def task_error(task: Task, content: dict[str, Any], md: dict[str, Any]) -> Exception:
    """The exception for an error or aborted reply."""
    ename = content.get("ename") or "Error"
    evalue = content.get("evalue") or ""
    info = dict(content.get("engine_info") or {})
    info.setdefault("engine_id", md.get("engine_id", task.target))
    if md.get("engine_uuid"):
        info.setdefault("engine_uuid", md["engine_uuid"])
    info.setdefault("method", task.method)
    err: Exception
    if content.get("status") == "aborted" or ename == "TaskAborted":
        err = TaskAborted(evalue or f"task {task.msg_id} was aborted before it ran")
    elif ename == "EngineError":
        err = EngineError(evalue or f"engine {info.get('engine_id')} went away before finishing task {task.msg_id}")
    elif ename in _CONTROLLER_ERRORS and "engine_uuid" not in md:
        err = _CONTROLLER_ERRORS[ename](evalue)
    else:
        return RemoteError.from_content(content, info)
    err.engine_info = info  # type: ignore[attr-defined]
    return err
