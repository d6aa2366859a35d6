"""Every message type on the wire, with the shape of its content.

``docs/protocol.md`` documents each type listed in :data:`MSG_TYPES`, and a test checks that the
two lists are the same. Channels:

- *client*: client DEALER <-> controller ROUTER. Requests whose header carries ``target`` (an engine
  id) or that are task types without one (load-balanced) are forwarded to an engine; the others are
  answered by the controller.
- *engine*: engine DEALER <-> controller ROUTER. Forwarded requests arrive prefixed by the client's
  identity, which the engine echoes on its reply; messages from the controller itself have none.
- *iopub*: engine PUB -> controller XSUB -> controller XPUB -> client SUB; also the controller's
  notifications. The first frame is a topic (``engine.<id>.<msg_type>`` or ``controller.<msg_type>``).
- *heartbeat*: raw ping bytes, controller PUB -> engine SUB -> engine DEALER -> controller ROUTER.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict


class ErrorContent(TypedDict):
    status: Literal["error", "aborted"]
    ename: str
    evalue: str
    traceback: str


# --- tasks: client -> (controller) -> engine -> (controller) -> client --------------------------
class ApplyRequest(TypedDict):
    """Call a function. Buffers: pickled function, pickled ``(args, kwargs)``, out-of-band buffers."""


class ApplyReply(TypedDict):
    """``status`` ok: buffers hold the pickled result. Error replies carry ErrorContent fields."""

    status: Literal["ok", "error", "aborted"]


class ExecuteRequest(TypedDict):
    code: str
    silent: bool
    store_history: NotRequired[bool]  # default: not silent


class ExecuteReply(TypedDict):
    status: Literal["ok", "error", "aborted"]
    execution_count: int


class ClearRequest(TypedDict):
    """Reset the engine's namespace."""


class ClearReply(TypedDict):
    status: Literal["ok", "error"]


class TaskMetadata(TypedDict, total=False):
    """Metadata of a task request (all optional); load-balancing fields are read by the scheduler,
    the others by the controller's task statistics (live views)."""

    after: list[str]
    follow: list[str]
    timeout: float | None
    retries: int
    targets: list[int] | None
    fn: str  # the function's name (a map's: the mapped function)
    label: str  # the view's label flag: the group the task is counted in
    map: int  # the map this task is a part of (numbered per client)
    items: int  # items of a map in this part (default 1)


class ReplyMetadata(TypedDict):
    """Metadata the engine puts on every reply."""

    engine_id: int
    engine_uuid: str
    started: float
    completed: float
    iopub_count: int  # iopub messages this request produced: the client waits for all of them
    status: str


# --- controller queries: client <-> controller ----------------------------------------------
class ConnectionRequest(TypedDict):
    pass


class ConnectionReply(TypedDict):
    status: str
    engines: dict[str, str]  # engine id (as text) -> uuid
    engine_info: dict[str, dict[str, Any]]  # engine id (as text) -> {uuid, pid, hostname}
    cluster_id: str
    task_scheme: str
    engine_timeout: float  # seconds a load-balanced task waits while no engine is registered (0: forever)
    max_frame_bytes: NotRequired[int]  # the largest frame the controller takes from a client (0: any)


class PingRequest(TypedDict, total=False):
    client: str  # the identity of the client's request socket (pings come over a socket of their own)
    closing: bool  # the client's last message, on its request socket: it is closing


class PingReply(TypedDict):
    status: str


class QueueRequest(TypedDict):
    targets: list[int] | None
    verbose: bool


class QueueReply(TypedDict):
    """One entry per engine id (as text): ``{"queue", "tasks", "completed"}``, plus ``unassigned``."""

    status: str


class TaskStatsRequest(TypedDict):
    """Task statistics changed after revision ``since`` (0: all that is kept)."""

    since: int


class TaskStatsReply(TypedDict):
    """``groups``: id -> ``{kind, name, fn, n, d, f, t}`` (items submitted, done, failed; first
    submission); ``engines``: engine id -> function -> ``[done, failed]`` (totals); ``failures``:
    the newest failed tasks, each with a bounded traceback. ``rev``: the ``since`` to ask next."""

    status: str
    rev: int
    groups: dict[str, dict[str, Any]]
    engines: dict[str, dict[str, list[int]]]
    failures: list[dict[str, Any]]


class ResultRequest(TypedDict):
    msg_ids: list[str]
    status_only: bool


class ResultReply(TypedDict):
    """``results`` maps msg_id to ``{header, content, metadata, nbuffers}``; buffers follow in
    the order of ``completed``."""

    status: str
    pending: list[str]
    completed: list[str]
    results: dict[str, Any]


class DbRequest(TypedDict):
    """``query``: record key -> value, or ``{operator: argument}``; ``keys``: the keys to return
    (None: all but the buffers). Times are epoch seconds."""

    query: dict[str, Any]
    keys: list[str] | None


class DbReply(TypedDict):
    """``records``: the matching records' keys; ``buffer_lens``/``result_buffer_lens``: per
    record, how many of the buffers that follow are its request's/result's (None: not asked)."""

    status: str
    records: list[dict[str, Any]]
    buffer_lens: list[int] | None
    result_buffer_lens: list[int] | None


class PurgeRequest(TypedDict):
    msg_ids: list[str] | Literal["all"]
    engine_ids: list[int]


class PurgeReply(TypedDict):
    status: str


class HistoryRequest(TypedDict):
    pass


class HistoryReply(TypedDict):
    status: str
    history: list[str]


class AbortRequest(TypedDict):
    """Client -> controller, and controller -> engines. ``msg_ids`` None aborts everything queued."""

    msg_ids: list[str] | None
    targets: NotRequired[list[int] | None]
    running: NotRequired[bool]  # also interrupt those of msg_ids that engines are running


class AbortReply(TypedDict):
    status: str


class ResubmitRequest(TypedDict):
    """Run finished tasks again as new tasks; their replies go to the asking client."""

    msg_ids: list[str]


class ResubmitReply(TypedDict):
    status: str
    resubmitted: dict[str, str]  # old msg_id -> new msg_id


class SignalRequest(TypedDict):
    """Client -> controller: send ``signum`` to ``targets`` (None: all engines). Controller ->
    an engine's control socket (identity ``<uuid>.ctl``), which signals its own process."""

    signum: int
    targets: NotRequired[list[int] | None]


class SignalReply(TypedDict):
    status: str


class EngineDiedRequest(TypedDict):
    """Client -> controller: the process of engine ``id`` (``pid``) exited; what a Cluster that
    saw it exit reports, so the controller need not wait for missed heartbeats."""

    id: int | None  # None: the engine of that pid on hostname
    pid: int
    hostname: NotRequired[str]
    reason: str


class EngineDiedReply(TypedDict):
    status: str
    declared: bool  # False: that engine (with that pid) was not registered any more
    id: int | None  # the engine's id, as the controller knew it


class ShutdownRequest(TypedDict):
    """Client -> controller: stop ``targets`` (None: all engines); ``hub`` also stops the controller.
    Controller -> engine: exit."""

    targets: NotRequired[list[int] | None]
    hub: NotRequired[bool]


class ShutdownReply(TypedDict):
    status: str


class BecomeDaskRequest(TypedDict):
    """Client -> controller (``Client.become_dask``): start a dask.distributed Scheduler in the
    controller process, unless one runs; ``scheduler_args`` go to ``distributed.Scheduler``."""

    port: int  # 0: any free port
    scheduler_args: dict[str, Any]


class BecomeDaskReply(TypedDict):
    status: str
    address: str  # the scheduler's, e.g. "tcp://10.0.0.5:8786", as engines and clients reach it


class StopDaskRequest(TypedDict):
    """Client -> controller (``Client.stop_dask``): stop the Scheduler, if one runs."""


class StopDaskReply(TypedDict):
    status: str
    stopped: bool  # whether one was running


class AuthError(TypedDict):
    """Sent unsigned by the controller to a peer whose message signature did not verify."""

    evalue: str


# --- engine registration: engine <-> controller -------------------------------------------
class RegistrationRequest(TypedDict):
    uuid: str
    hostname: str
    pid: int
    data_url: NotRequired[str]
    id: NotRequired[int]  # a restarted engine asks for its predecessor's id


class RegistrationReply(TypedDict):
    status: str
    id: int
    hb_period: float
    max_frame_bytes: NotRequired[int]  # the largest frame the controller takes from an engine (0: any)


class UnregistrationRequest(TypedDict):
    id: int


# --- iopub -----------------------------------------------------------------------------------
class Stream(TypedDict):
    name: Literal["stdout", "stderr"]
    text: str


class DisplayData(TypedDict):
    data: dict[str, Any]
    metadata: dict[str, Any]
    transient: NotRequired[dict[str, Any]]


class ExecuteInput(TypedDict):
    code: str
    execution_count: int


class ExecuteResult(TypedDict):
    data: dict[str, Any]
    metadata: dict[str, Any]
    execution_count: int


class Error(TypedDict):
    ename: str
    evalue: str
    traceback: list[str]


class ClearOutput(TypedDict):
    wait: bool


class DataMessage(TypedDict):
    """``publish_data(dict)`` on an engine (see :mod:`.datapub`): the dict, pickled, base64."""

    data: str


class IopubWelcome(TypedDict):
    """Published by the controller each time a client subscribes to iopub: once a client has seen
    it, output published after that reaches the client."""


class RegistrationNotification(TypedDict):
    id: int
    uuid: str
    pid: int
    hostname: str


class UnregistrationNotification(TypedDict):
    id: int
    uuid: str


#: identity of an engine's control socket (signals, controller loss): the engine uuid plus this
CONTROL_SUFFIX = b".ctl"

#: request types the controller forwards to an engine (``target`` in the header) or schedules
TASK_REQUESTS = frozenset({"apply_request", "execute_request"})
ENGINE_REQUESTS = TASK_REQUESTS | {"clear_request"}

MSG_TYPES: dict[str, type] = {
    "apply_request": ApplyRequest,
    "apply_reply": ApplyReply,
    "execute_request": ExecuteRequest,
    "execute_reply": ExecuteReply,
    "clear_request": ClearRequest,
    "clear_reply": ClearReply,
    "connection_request": ConnectionRequest,
    "connection_reply": ConnectionReply,
    "ping_request": PingRequest,
    "ping_reply": PingReply,
    "queue_request": QueueRequest,
    "queue_reply": QueueReply,
    "task_stats_request": TaskStatsRequest,
    "task_stats_reply": TaskStatsReply,
    "result_request": ResultRequest,
    "result_reply": ResultReply,
    "db_request": DbRequest,
    "db_reply": DbReply,
    "purge_request": PurgeRequest,
    "purge_reply": PurgeReply,
    "history_request": HistoryRequest,
    "history_reply": HistoryReply,
    "abort_request": AbortRequest,
    "abort_reply": AbortReply,
    "resubmit_request": ResubmitRequest,
    "resubmit_reply": ResubmitReply,
    "signal_request": SignalRequest,
    "signal_reply": SignalReply,
    "engine_died_request": EngineDiedRequest,
    "engine_died_reply": EngineDiedReply,
    "shutdown_request": ShutdownRequest,
    "shutdown_reply": ShutdownReply,
    "become_dask_request": BecomeDaskRequest,
    "become_dask_reply": BecomeDaskReply,
    "stop_dask_request": StopDaskRequest,
    "stop_dask_reply": StopDaskReply,
    "auth_error": AuthError,
    "registration_request": RegistrationRequest,
    "registration_reply": RegistrationReply,
    "unregistration_request": UnregistrationRequest,
    "stream": Stream,
    "display_data": DisplayData,
    "execute_input": ExecuteInput,
    "execute_result": ExecuteResult,
    "error": Error,
    "clear_output": ClearOutput,
    "data_message": DataMessage,
    "iopub_welcome": IopubWelcome,
    "registration_notification": RegistrationNotification,
    "unregistration_notification": UnregistrationNotification,
}


def reply_type(request_type: str) -> str:
    """``apply_request`` -> ``apply_reply``."""
    return request_type[: -len("_request")] + "_reply"
