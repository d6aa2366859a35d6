"""What the controller counts of its tasks for live views: progress per group, completions per
engine and function, and the last failures.

A *group* is what a person watching a cluster thinks of as one piece of work: a labelled set of
tasks (the views' ``label`` flag), one ``map`` (every part of it), or else every plain call of
one function. The client names them in the request metadata it sends anyway (``fn``, and
``label``, ``map``, ``items`` when they apply); a map's part counts as its ``items`` (its chunk
length), so progress is in items, not messages.

Plain state fed by the hub, with no sockets and no clock of its own: the hot path adds a few
counter increments per task, and nothing is sent per task. A live view asks with
``task_stats_request`` at most a few times a second, giving the revision it saw last, and gets
only what changed since (see :meth:`TaskStats.query`). Everything here is bounded: groups,
function names, engines (dropped when they go) and the ring of failures.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

#: groups kept; beyond, the oldest finished one is forgotten (or the oldest, if none has finished)
GROUP_LIMIT = 128
#: distinct function names counted; later ones are counted as OTHER
FUNCTION_LIMIT = 64
OTHER = "(other)"
#: failures kept for live views (the newest)
FAILURE_LIMIT = 16
#: how much of a failure is kept: its message, and the first and last lines of its traceback
EVALUE_CHARS = 300
TRACEBACK_HEAD = 6
TRACEBACK_TAIL = 14
TRACEBACK_CHARS = 4000
NAME_CHARS = 80

#: the function name of a request that does not say
DEFAULT_FN = {"apply_request": "apply", "execute_request": "execute"}

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Group:
    """Items submitted, done and failed in one group; ``rev`` is the revision of its last change."""

    __slots__ = ("id", "kind", "name", "label", "fn", "submitted", "done", "failed", "started", "rev")

    def __init__(self, gid: str, kind: str, name: str, fn: str, started: float, rev: int,
                 label: str | None = None) -> None:
        self.id = gid  # label:<label>, fn:<name> or map:<client>:<n>
        self.kind = kind  # "label" | "map" | "fn"
        self.name = name
        self.label = label  # the whole label of a labelled group (name may be cut short); db_request reads it
        self.fn = fn
        self.submitted = 0
        self.done = 0
        self.failed = 0  # failed or aborted
        self.started = started
        self.rev = rev

    @property
    def finished(self) -> bool:
        return self.done + self.failed >= self.submitted

    def view(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "fn": self.fn, "n": self.submitted, "d": self.done,
                "f": self.failed, "t": round(self.started, 3)}


#: what the hub keeps on a task's record: its group, its function name and its item count
Tag = tuple[Group, str, int]


def trim_traceback(tb: Any) -> str:
    """A traceback (text or list of lines, maybe with terminal colours) as bounded plain text:
    its first and last lines, the middle elided."""
    text = "\n".join(tb) if isinstance(tb, list) else str(tb or "")
    text = _ANSI.sub("", text).rstrip("\n")
    lines = text.split("\n")
    if len(lines) > TRACEBACK_HEAD + TRACEBACK_TAIL + 1:
        skipped = len(lines) - TRACEBACK_HEAD - TRACEBACK_TAIL
        lines = [*lines[:TRACEBACK_HEAD], f"... ({skipped} lines) ...", *lines[-TRACEBACK_TAIL:]]
        text = "\n".join(lines)
    if len(text) > TRACEBACK_CHARS:
        half = TRACEBACK_CHARS // 2
        text = f"{text[:half]}\n...\n{text[-half:]}"
    return text


class TaskStats:
    """Counts of the controller's tasks, answered as changes since a revision.

    The hub calls :meth:`submitted` for each new task (returning the :data:`Tag` it keeps on the
    record) and :meth:`answered` for each reply an engine sends and each answer the controller
    makes itself (engine lost, aborted, timed out), saying whether the outcome is final.
    """

    def __init__(self) -> None:
        self.rev = 1
        self.groups: dict[tuple[Any, ...], Group] = {}
        self.functions: dict[str, str] = {}  # the names counted (interned, bounded)
        # engine id -> function name -> [done, failed, rev]: what the engine itself replied
        self.engines: dict[int, dict[str, list[int]]] = {}
        self.failures: deque[dict[str, Any]] = deque(maxlen=FAILURE_LIMIT)
        self._failure_seq = 0
        # tags of one item, shared by records: by function name; (label, fn); (client, map number)
        self._plain: dict[Any, Tag] = {}
        self._labelled: dict[Any, Tag] = {}
        self._mapped: dict[Any, Tag] = {}

    # -- events (the hub's hot path) -----------------------------------------------------------
    def submitted(self, msg_type: str, metadata: dict[str, Any], client: bytes, now: float, parts: int = 1) -> Tag:
        """A new task (``parts`` > 1: a broadcast to that many engines); its tag for the record.

        The tags of one item are cached and shared by the records (per function, label or map):
        the common case costs a few dict lookups and no allocation."""
        fn = metadata.get("fn")
        label = metadata.get("label")
        if label is None:
            mapno = metadata.get("map")
            if mapno is None:
                cache, ckey = self._plain, fn
            else:
                cache, ckey = self._mapped, (client, mapno)
        else:
            cache, ckey = self._labelled, (label, fn)
        try:
            tag = cache.get(ckey)
        except TypeError:  # an unhashable value: ignore what it says
            cache, ckey, tag = self._plain, None, None
        if tag is None:
            tag = self._tag(msg_type, metadata, client, now)
            if len(cache) >= 4 * GROUP_LIMIT:
                cache.clear()
            cache[ckey] = tag
        group = tag[0]
        group.rev = self.rev
        items = metadata.get("items")
        if items is None:
            group.submitted += parts
            return tag
        if type(items) is not int or items < 0:
            items = 1
        group.submitted += items * parts  # a broadcast: each engine's part counts
        return (group, tag[1], items)

    def _tag(self, msg_type: str, metadata: dict[str, Any], client: bytes, now: float) -> Tag:
        """The tag of one item of a task with this metadata, its group made if new."""
        fn = metadata.get("fn")
        fn = self._function(fn if type(fn) is str else DEFAULT_FN.get(msg_type, "apply"))
        label = metadata.get("label")
        if label is not None:
            key: tuple[Any, ...] = ("label", str(label))
        else:
            mapno = metadata.get("map")
            key = ("map", client, mapno) if type(mapno) is int else ("fn", fn)
        group = self.groups.get(key)
        if group is None:
            group = self._new_group(key, fn, now)
        return (group, fn, 1)

    def answered(self, tag: Tag, engine_id: int | None, status: str, content: dict[str, Any],
                 msg_id: str = "", now: float = 0.0, final: bool = True, ran: bool = True) -> None:
        """A task was answered, with a reply of this ``status`` and ``content``: by engine
        ``engine_id``, or (``ran`` False) by the controller on its behalf (engine lost, aborted,
        timed out). What an engine answered is counted for it (the task stream's counts; a task
        retried elsewhere counts where it failed); with ``final``, the outcome is the group's.
        Failures (not aborts) are kept with their traceback, which is in ``content``, decoded
        already for the status."""
        group, fn, items = tag
        ok = status == "ok"
        if ran and engine_id is not None and (ok or content.get("ename") != "UnmetDependency"):
            counts = self.engines.get(engine_id)
            if counts is None:
                counts = self.engines[engine_id] = {}
            entry = counts.get(fn)
            if entry is None:
                entry = counts[fn] = [0, 0, 0]
            entry[0 if ok else 1] += items
            entry[2] = self.rev
        if not final:
            return
        if ok:
            group.done += items
        else:
            group.failed += items
            if status == "error":
                self._failure(group, fn, content, engine_id, msg_id, now)
        group.rev = self.rev

    def engine_gone(self, engine_id: int) -> None:
        self.engines.pop(engine_id, None)

    # -- the query ----------------------------------------------------------------------------
    def query(self, since: int = 0) -> dict[str, Any]:
        """What changed after revision ``since`` (0: everything kept), and the revision to ask
        from next time: ``{"rev", "groups": {id: ...}, "engines": {id: {fn: [done, failed]}},
        "failures": [...]}``. Counts are totals, so a reader that misses a query loses nothing."""
        rev = self.rev
        groups = {g.id: g.view() for g in self.groups.values() if g.rev > since}
        engines: dict[str, dict[str, list[int]]] = {}
        for eid, counts in self.engines.items():
            changed = {fn: [c[0], c[1]] for fn, c in counts.items() if c[2] > since}
            if changed:
                engines[str(eid)] = changed
        failures = [{k: v for k, v in f.items() if k != "rev"} for f in self.failures if f["rev"] > since]
        self.rev += 1
        return {"rev": rev, "groups": groups, "engines": engines, "failures": failures}

    # -- helpers ------------------------------------------------------------------------------
    def _function(self, fn: str) -> str:
        known = self.functions.get(fn)
        if known is not None:
            return known
        if len(self.functions) >= FUNCTION_LIMIT:
            return OTHER
        name = fn[:NAME_CHARS]
        self.functions[fn] = name
        return name

    def _new_group(self, key: tuple[Any, ...], fn: str, now: float) -> Group:
        if len(self.groups) >= GROUP_LIMIT:
            victim = next((k for k, g in self.groups.items() if g.finished), None)
            del self.groups[victim if victim is not None else next(iter(self.groups))]
            for cache in (self._plain, self._labelled, self._mapped):
                cache.clear()  # they may hold tags of the forgotten group
        kind = key[0]
        if kind == "map":
            gid, name = f"map:{key[1].hex()}:{key[2]}", fn
        else:
            name = key[1][:NAME_CHARS]
            gid = f"{kind}:{name}"
        group = self.groups[key] = Group(gid, kind, name, fn, now, self.rev, key[1] if kind == "label" else None)
        return group

    def _failure(self, group: Group, fn: str, content: dict[str, Any], engine_id: int | None,
                 msg_id: str, now: float) -> None:
        self._failure_seq += 1
        self.failures.append({
            "rev": self.rev,
            "seq": self._failure_seq,
            "time": round(now, 3),
            "engine_id": engine_id,
            "msg_id": msg_id,
            "group_id": group.id,
            "group": group.name,
            "kind": group.kind,
            "fn": fn,
            "ename": str(content.get("ename") or "Error")[:NAME_CHARS],
            "evalue": str(content.get("evalue") or "")[:EVALUE_CHARS],
            "traceback": trim_traceback(content.get("traceback")),
        })
