"""``db_request``: task records matched by a MongoDB-style query, as ipyparallel's ``db_query``.

A query is a dict of record keys to either a value (the key must equal it) or a dict of
operators (``{"$gt": 1.5e9, "$ne": None}``); every condition must hold. The operators are those
ipyparallel documents for its in-memory and SQLite stores: ``$lt $gt $lte $gte $ne $eq $in $nin
$all $mod $exists``, and ``$glob`` (a shell pattern, as ipyparallel 9.2's in-memory store has it).
As there, a key a record does not have is None, and ``$exists`` asks whether a key is other
than None (``{"started": {"$exists": False}}``: the tasks that have not started). A comparison
with None, or between values of different kinds (a string and a number), does not hold, rather
than fail. Times are epoch seconds here, to the microsecond: the client turns the datetimes of
a query into floats before sending, and the floats of the reply back into datetimes, so a time
it got back finds its record again.

The query is checked before any record is looked at, so an unknown operator or a malformed
query is an error reply naming it (:class:`QueryError`, a ValueError), whatever the store holds.

Matching reads :class:`~.db.base.TaskRecord` objects in memory (the SQLite store keeps its
records in memory too), through :class:`RecordView`, which computes each key on demand: only a
query or ``keys`` naming the request's or the reply's parts decodes the frames kept for them.
Nothing here is on a task's path: :meth:`.queries.Queries.db_request` checks a query on the
event loop and runs :func:`find` in a worker thread.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..protocol.session import DELIM, Session
from .db.base import TaskRecord

#: the keys of a record, as ipyparallel 9.2's TaskRecord dicts have them
KEYS = ("msg_id", "header", "metadata", "content", "buffers", "submitted", "client_uuid", "engine_uuid",
        "started", "completed", "resubmitted", "received", "result_header", "result_metadata",
        "result_content", "result_buffers", "queue", "execute_input", "execute_result", "error",
        "stdout", "stderr", "label")
#: returned only when ``keys`` names them, as ipyparallel does
BUFFER_KEYS = ("buffers", "result_buffers")
DEFAULT_KEYS = tuple(k for k in KEYS if k not in BUFFER_KEYS)

_UNREAD: Any = object()  # a kept request or reply not decoded yet


class QueryError(ValueError):
    """A query that cannot be evaluated: an unknown operator, or a malformed argument."""


def _cmp(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def test(value: Any, arg: Any) -> bool:
        if value is None or arg is None:
            return False
        try:
            return bool(op(value, arg))
        except TypeError:  # values of different kinds: the condition does not hold
            return False
    return test


def _eq(value: Any, arg: Any) -> bool:
    return bool(value == arg)


class _Members:
    """The argument of ``$in``/``$nin``: a set where the items allow it (a ``$in`` of 10,000
    msg_ids costs one lookup per record), a list for the others."""

    __slots__ = ("hashable", "others")

    def __init__(self, items: list[Any]) -> None:
        self.hashable: set[Any] = set()
        self.others: list[Any] = []
        for item in items:
            try:
                self.hashable.add(item)
            except TypeError:
                self.others.append(item)

    def __contains__(self, value: Any) -> bool:
        try:
            if value in self.hashable:
                return True
        except TypeError:  # an unhashable value equals no hashable item
            pass
        return any(value == item for item in self.others)


def _in(value: Any, arg: Any) -> bool:
    return value in arg


def _all(value: Any, arg: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(a in value for a in arg)


def _mod(value: Any, arg: Any) -> bool:
    divisor, remainder = arg
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value % divisor == remainder


def _exists(value: Any, arg: Any) -> bool:
    return (value is not None) == bool(arg)


def _glob(value: Any, arg: Any) -> bool:
    return isinstance(value, str) and fnmatch.fnmatchcase(value, arg)


#: operator -> test of a record's value against the operator's argument
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "$lt": _cmp(lambda v, a: v < a),
    "$gt": _cmp(lambda v, a: v > a),
    "$lte": _cmp(lambda v, a: v <= a),
    "$gte": _cmp(lambda v, a: v >= a),
    "$eq": _eq,
    "$ne": lambda v, a: not _eq(v, a),
    "$in": _in,
    "$nin": lambda v, a: not _in(v, a),
    "$all": _all,
    "$mod": _mod,
    "$exists": _exists,
    "$glob": _glob,
}


def _check(key: str, op: str, arg: Any) -> None:
    if op not in OPERATORS:
        raise QueryError(f"unknown query operator {op!r} (on {key!r}); known: {' '.join(OPERATORS)}")
    if op in ("$in", "$nin", "$all") and not isinstance(arg, list):
        raise QueryError(f"{op} (on {key!r}) takes a list, not {arg!r}")
    if op == "$mod" and not (isinstance(arg, list) and len(arg) == 2
                             and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in arg)
                             and arg[0] != 0):
        raise QueryError(f"$mod (on {key!r}) takes [divisor, remainder] with a divisor other than 0, not {arg!r}")
    if op == "$glob" and not isinstance(arg, str):
        raise QueryError(f"$glob (on {key!r}) takes a pattern (a string), not {arg!r}")


Matcher = Callable[[Callable[[str], Any]], bool]


def compile_query(query: Any) -> Matcher:
    """A test of records for ``query``: it takes a function from a key to the record's value
    (None for a key it does not have). Raises :class:`QueryError` for an unknown operator or malformed query."""
    if not isinstance(query, dict):
        raise QueryError(f"a query is a dict of record keys to values or operators, not {type(query).__name__}")
    tests: list[tuple[str, Callable[[Any, Any], bool], Any]] = []
    for key, cond in query.items():
        if not isinstance(key, str):
            raise QueryError(f"query keys are record keys (strings), not {key!r}")
        if key.startswith("$"):
            raise QueryError(f"unknown query operator {key!r} at the top level (operators go inside a key's dict)")
        if isinstance(cond, dict) and any(isinstance(k, str) and k.startswith("$") for k in cond):
            for op, arg in cond.items():
                _check(key, op, arg)
                tests.append((key, OPERATORS[op], _Members(arg) if op in ("$in", "$nin") else arg))
        else:
            tests.append((key, _eq, cond))

    def match(get: Callable[[str], Any]) -> bool:
        return all(test(get(key), arg) for key, test, arg in tests)
    return match


def check_keys(keys: Any) -> tuple[str, ...]:
    """The keys to return (``msg_id`` always first); ``None`` or empty (as in ipyparallel): all
    but the buffers. An unknown key is a QueryError naming it."""
    if not keys:
        return DEFAULT_KEYS
    if isinstance(keys, str):
        keys = [keys]
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise QueryError(f"keys is a list of record keys, not {keys!r}")
    unknown = [k for k in keys if k not in _GETTERS]
    if unknown:
        raise QueryError(f"unknown record key(s) {', '.join(map(repr, unknown))} in keys; known: {' '.join(KEYS)}")
    return ("msg_id", *dict.fromkeys(k for k in keys if k != "msg_id"))


class RecordView:
    """One record's keys, computed on demand (the kept frames are decoded at most once).

    Times are epoch seconds. ``completed`` is when the controller received the reply (it is
    ``received``); ``started`` comes from the reply's metadata while the reply is kept. The
    request's parts (``content``, ``metadata``, ``buffers``) are there while the request is kept
    (for resubmission), the reply's while the reply is; a finished task whose reply was not kept
    still has ``result_content`` ``{"status", "ename"}``.
    """

    __slots__ = ("rec", "session", "engine_uuids", "_request", "_reply")

    def __init__(self, rec: TaskRecord, session: Session, engine_uuids: Mapping[int, bytes]) -> None:
        self.rec = rec
        self.session = session
        self.engine_uuids = engine_uuids
        self._request: Any = _UNREAD
        self._reply: Any = _UNREAD

    def request(self) -> dict[str, Any] | None:
        if self._request is _UNREAD:
            req = self.rec.request
            self._request = None if req is None else self.session.unpack(req, verify=False)[1]
        return self._request  # type: ignore[no-any-return]

    def reply(self) -> dict[str, Any] | None:
        if self._reply is _UNREAD:
            rep = self.rec.reply
            self._reply = None if rep is None else self.session.unpack([DELIM, *rep], verify=False)[1]
        return self._reply  # type: ignore[no-any-return]

    def _from_request(self, part: str) -> Any:
        req = self.request()
        return None if req is None else req[part]

    def _from_reply(self, part: str) -> Any:
        rep = self.reply()
        return None if rep is None else rep[part]

    def get(self, key: str) -> Any:
        getter = _GETTERS.get(key)
        return None if getter is None else getter(self)


def _time(t: Any) -> float | None:
    """Epoch seconds to the microsecond: what the client's datetimes hold, so that a time it got
    back compares equal to the record's (the client rounds the datetimes of a query alike)."""
    return None if t is None else round(float(t), 6)


def _engine_uuid(v: RecordView) -> str | None:
    uuid = v.engine_uuids.get(v.rec.engine_id) if v.rec.engine_id is not None else None
    if uuid is not None:
        return uuid.decode("utf-8", "replace")
    md = v._from_reply("metadata")  # an engine gone since: its reply says who it was, if kept
    return None if not md else md.get("engine_uuid")


def _result_content(v: RecordView) -> Any:
    content = v._from_reply("content")
    if content is None and v.rec.completed:
        return {"status": v.rec.status, "ename": v.rec.ename}
    return content


def _label(v: RecordView) -> Any:
    tag = v.rec.tag
    return None if tag is None else tag[0].label


def _started(v: RecordView) -> Any:
    md = v._from_reply("metadata")
    return None if not md else _time(md.get("started"))


_GETTERS: dict[str, Callable[[RecordView], Any]] = {
    "msg_id": lambda v: v.rec.msg_id,
    "header": lambda v: v.rec.header,
    "metadata": lambda v: v._from_request("metadata"),
    "content": lambda v: v._from_request("content"),
    "buffers": lambda v: v._from_request("buffers"),
    "submitted": lambda v: _time(v.rec.submitted),
    "client_uuid": lambda v: v.rec.client.decode("utf-8", "replace"),
    "engine_uuid": _engine_uuid,
    "started": _started,
    "completed": lambda v: _time(v.rec.received),
    "resubmitted": lambda v: None,
    "received": lambda v: _time(v.rec.received),
    "result_header": lambda v: v._from_reply("header"),
    "result_metadata": lambda v: v._from_reply("metadata"),
    "result_content": _result_content,
    "result_buffers": lambda v: v._from_reply("buffers"),
    "queue": lambda v: "task" if v.rec.balanced else "mux",
    "execute_input": lambda v: None,
    "execute_result": lambda v: None,
    "error": lambda v: None,
    "stdout": lambda v: None,
    "stderr": lambda v: None,
    "label": _label,
}
assert set(_GETTERS) == set(KEYS)


def candidates(query: Any, get: Callable[[str], TaskRecord | None],
               history: Callable[[], list[str]]) -> list[TaskRecord]:
    """The records a query can match, oldest first: those it names by ``msg_id`` (a value, or
    ``$in`` alone), else all of them."""
    cond = query.get("msg_id") if isinstance(query, dict) else None
    if isinstance(cond, dict) and list(cond) == ["$in"] and isinstance(cond["$in"], list):
        names = cond["$in"]
    elif isinstance(cond, str):
        names = [cond]
    else:
        return [r for r in map(get, history()) if r is not None]
    found = {m: r for m in names if isinstance(m, str) and (r := get(m)) is not None}
    return sorted(found.values(), key=lambda r: r.submitted)


def find(records: Iterable[TaskRecord], query: Any, keys: Any, session: Session,
         engine_uuids: Mapping[int, bytes]) -> tuple[dict[str, Any], list[Any]]:
    """The ``db_reply`` for ``query`` over ``records`` (in their order): ``{"records": [...],
    "buffer_lens", "result_buffer_lens"}`` (per record, how many of the message's buffers are its
    request's and its result's, or None when ``keys`` did not ask for them), and the buffers."""
    match = compile_query(query)
    wanted = check_keys(keys)
    scalar = [k for k in wanted if k not in BUFFER_KEYS]
    want_bufs, want_rbufs = "buffers" in wanted, "result_buffers" in wanted
    out: list[dict[str, Any]] = []
    buffers: list[Any] = []
    buffer_lens: list[int] | None = [] if want_bufs else None
    result_buffer_lens: list[int] | None = [] if want_rbufs else None
    for rec in records:
        view = RecordView(rec, session, engine_uuids)
        if not match(view.get):
            continue
        out.append({k: view.get(k) for k in scalar})
        for lens, key in ((buffer_lens, "buffers"), (result_buffer_lens, "result_buffers")):
            if lens is not None:
                bufs = view.get(key) or []
                lens.append(len(bufs))
                buffers.extend(bufs)
    return {"records": out, "buffer_lens": buffer_lens, "result_buffer_lens": result_buffer_lens}, buffers
