"""In-memory task store, bounded in records and in result bytes.

Replies (and the requests kept for resubmission) are kept only while they fit in
``max_result_bytes`` (oldest evicted first) and only up to ``max_result_size`` each: the controller
must not grow with the data it routes. A task's status and times outlive its reply; fetching an
evicted result says so instead of hanging.

Records beyond ``max_records`` are evicted oldest-finished first, from an index of finished
records kept in completion order: a flood of queued tasks (more pending than ``max_records``)
costs O(1) per new record, where a scan for finished records would cost O(records) each.
Pending records are never evicted.

These rules are the persistent store's too (:mod:`.sqlite` extends this class): it is told of
each change to a finished record through :meth:`MemoryStore._changed` and of each record that
leaves through :meth:`MemoryStore._forgotten`, and mirrors them in its file.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from .base import TaskRecord, TaskStore


class MemoryStore(TaskStore):
    def __init__(self, max_records: int = 100_000, max_result_bytes: int = 64 << 20,
                 max_result_size: int = 1 << 20) -> None:
        self.max_records = max_records
        self.max_result_bytes = max_result_bytes
        self.max_result_size = max_result_size
        self._records: OrderedDict[str, TaskRecord] = OrderedDict()  # submission order
        self._finished: OrderedDict[str, None] = OrderedDict()  # finished msg_ids, oldest completion first
        self._kept: OrderedDict[str, int] = OrderedDict()  # msg_id -> bytes of kept buffers
        self._kept_bytes = 0

    # -- what a persistent store hears of (nothing here) -----------------------------------------
    def _changed(self, record: TaskRecord) -> None:
        """A finished record changed (it completed, or its buffers were evicted)."""

    def _forgotten(self, msg_id: str) -> None:
        """A record left the store (evicted beyond ``max_records``, or dropped)."""

    # -- the interface -------------------------------------------------------------------------
    def add(self, record: TaskRecord) -> None:
        self._records[record.msg_id] = record
        if len(self._records) > self.max_records:
            self._evict_records()

    def get(self, msg_id: str) -> TaskRecord | None:
        return self._records.get(msg_id)

    def complete(self, record: TaskRecord, reply: list[Any], received: float) -> None:
        record.received = received
        self._finished[record.msg_id] = None
        self._finished.move_to_end(record.msg_id)  # a resubmitted or retried task finishes again
        record.nbytes = sum(map(len, reply))
        self._keep(record, reply)
        self._changed(record)

    def load(self, records: Iterable[TaskRecord]) -> None:
        """Take back finished records (read from a file by a persistent store), as if they had
        completed in order of ``received``; then apply the bounds, which may have shrunk since
        they were written. Call it before any other record is added."""
        recs = [r for r in records if r.received is not None]
        for rec in sorted(recs, key=lambda r: r.submitted):
            self._records[rec.msg_id] = rec
        for rec in sorted(recs, key=lambda r: r.received or 0.0):
            self._finished[rec.msg_id] = None
            reply, rec.reply = rec.reply, None
            had_request = rec.request is not None
            self._keep(rec, reply)
            if (reply is not None and rec.reply is None) or (had_request and rec.request is None):
                self._changed(rec)  # over a bound that shrank: the file drops it too
        if len(self._records) > self.max_records:
            self._evict_records()

    def _keep(self, record: TaskRecord, reply: list[Any] | None) -> None:
        """Keep a finished record's reply and request as far as the byte bounds allow."""
        size = 0
        if reply is not None:
            if record.nbytes > self.max_result_size:
                record.result_dropped = True
                record.reply = None
            else:
                record.reply = reply
                size = record.nbytes
        if record.request is not None:
            req_size = sum(map(len, record.request))
            if req_size > self.max_result_size:
                record.request = None
            else:
                size += req_size
        if record.reply is None and record.request is None:
            return
        self._forget_buffers(record.msg_id)  # a resubmitted or retried task completes again
        self._kept[record.msg_id] = size
        self._kept_bytes += size
        while self._kept_bytes > self.max_result_bytes and self._kept:
            old_id, old_size = self._kept.popitem(last=False)
            self._kept_bytes -= old_size
            old = self._records.get(old_id)
            if old is not None:
                old.request = None
                if old.reply is not None:
                    old.reply = None
                    old.result_dropped = True
                self._changed(old)

    def _forget_buffers(self, msg_id: str) -> None:
        size = self._kept.pop(msg_id, None)
        if size is not None:
            self._kept_bytes -= size

    def _evict_records(self) -> None:
        """Drop the oldest *finished* records until within bounds (pending ones are never dropped)."""
        finished = self._finished
        for _ in range(min(len(self._records) - self.max_records, len(finished))):
            msg_id, _ = finished.popitem(last=False)
            del self._records[msg_id]
            self._forget_buffers(msg_id)
            self._forgotten(msg_id)

    def drop(self, msg_ids: Iterable[str]) -> list[str]:
        dropped = []
        for msg_id in msg_ids:
            rec = self._records.get(msg_id)
            if rec is None or not rec.completed:
                continue
            del self._records[msg_id]
            self._finished.pop(msg_id, None)
            self._forget_buffers(msg_id)
            self._forgotten(msg_id)
            dropped.append(msg_id)
        return dropped

    def history(self) -> list[str]:
        return list(self._records)

    def completed_ids(self, engine_ids: Iterable[int] | None = None) -> list[str]:
        wanted = None if engine_ids is None else set(engine_ids)
        return [m for m, r in self._records.items()
                if r.completed and (wanted is None or r.engine_id in wanted)]

    def __len__(self) -> int:
        return len(self._records)

    @property
    def kept_bytes(self) -> int:
        return self._kept_bytes
