"""Reply routing: which task each reply and output message belongs to, and finishing tasks.

Everything here runs on the client's I/O thread (:mod:`._io` receives and calls in), except
:meth:`Replies.wait_until`, which user threads call. It holds the table of outstanding tasks
(filled by the :class:`~.submit.Submitter` before each send) and the cache of finished ones.

A task finishes when its reply has come *and* all the output (stdout, displays) the reply says
the task produced (``iopub_count``), or :data:`OUTPUT_GRACE` seconds after the reply if some
never comes. Finishing resolves the AsyncResult(s) waiting for it, which wakes their waiters
through the future's own condition: no thread polls.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..error import IPClusterError
from ..protocol.serialize import deserialize_result
from ..protocol.session import DIRECT_MIN, Message
from .cache import ResultCache, mapped_nbytes
from .task import Broadcast, ExecuteReply, Task, task_error

log = logging.getLogger(__name__)

#: seconds to wait, after a reply, for output the reply says is still on its way
OUTPUT_GRACE = 2.0
#: replies kept for requests not known yet (a resubmitted task answered before its id is known)
MAX_ORPHANS = 1000


class Replies:
    """The outstanding and finished tasks of one client, and how replies finish them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, cache_size: int = 1024, cache_bytes: int = 1 << 30) -> None:
        self.loop = loop
        self.pending: dict[str, Task | Broadcast] = {}
        self.finished = ResultCache(cache_size, cache_bytes)
        self.cond = threading.Condition()  # notified after each batch of finished tasks
        self.waiters = 0
        self._orphans: OrderedDict[str, Message] = OrderedDict()

    # -- replies -------------------------------------------------------------------------------
    def on_reply(self, msg: Message) -> None:
        """A task's reply: record it; finish the task once its output is complete too."""
        parent_id = msg["parent_header"].get("msg_id")
        entry = self.pending.get(parent_id)
        md = msg["metadata"]
        if entry is None:
            if len(self._orphans) >= MAX_ORPHANS:
                self._orphans.popitem(last=False)  # bounded: the oldest orphan goes first
            self._orphans[parent_id] = msg
            log.debug("reply to unknown request %s", parent_id)
            return
        if isinstance(entry, Broadcast):
            found = entry.tasks.get(md.get("engine_id"))
            if found is None or found.done:
                log.warning("broadcast reply from unexpected engine %s", md.get("engine_id"))
                return
            task = found
        else:
            task = entry
        content = msg["content"]
        task.received = time.time()
        task.reply_md = md
        task.content = content
        if content.get("status") == "ok":
            if task.method == "apply":
                bufs = msg["buffers"]
                try:
                    task.value = deserialize_result(bufs)
                    n = len(bufs[0]) if len(bufs) == 1 else sum(map(len, bufs))
                    task.nbytes = n  # what the value may keep alive (see .cache)
                    if n >= DIRECT_MIN:  # only results this large come through shared memory
                        task.shm_nbytes = mapped_nbytes(bufs)
                except Exception as e:
                    task.value = IPClusterError(f"could not unpickle the result of {task.msg_id}: {type(e).__name__}: {e}")
                    task.value.__cause__ = e
                    task.failed = True
        else:
            task.value = task_error(task, content, md)
            task.failed = True
        expected = md.get("iopub_count") or 0
        task.expected = expected
        if task.seen >= expected:
            self.complete(task)
        else:
            task.timer = self.loop.call_later(OUTPUT_GRACE, self._give_up_output, task)

    def on_output(self, msg: Message) -> None:
        """An engine's output (iopub) for a task; output after the task finished is kept too."""
        parent_id = msg["parent_header"].get("msg_id")
        entry = self.pending.get(parent_id)
        if entry is None:
            entry = self.finished.get(parent_id)  # output after we stopped waiting for it
            if entry is None:
                return
        if isinstance(entry, Broadcast):
            found = entry.tasks.get(msg["metadata"].get("engine_id"))
            if found is None:
                return
            task = found
        else:
            task = entry
        task.add_output(msg["msg_type"], msg["content"], msg["metadata"].get("engine_id"))
        task.seen += 1
        if not task.done and 0 <= task.expected <= task.seen:
            self.complete(task)

    def _give_up_output(self, task: Task) -> None:
        task.timer = None
        if not task.done:
            log.warning(
                "task %s: got %d of %d output messages %.1f s after its reply; not waiting for the rest",
                task.msg_id, task.seen, task.expected, OUTPUT_GRACE,
            )
            self.complete(task)
            self.notify()

    def take_orphan(self, msg_id: str) -> Message | None:
        """The reply that came before ``msg_id`` was known here, if any."""
        return self._orphans.pop(msg_id, None)

    # -- finishing -----------------------------------------------------------------------------
    def complete(self, task: Task) -> None:
        """Finish ``task``: out of the pending table, into the cache, its results told."""
        if task.timer is not None:
            task.timer.cancel()
            task.timer = None
        entry = self.pending.get(task.msg_id)
        if entry is task:
            del self.pending[task.msg_id]
        elif type(entry) is Broadcast and all(t.done or t is task for t in entry.tasks.values()):
            del self.pending[task.msg_id]
        if task.method == "execute" and not task.failed:
            task.value = ExecuteReply(task.msg_id, task.content or {}, task.metadata())
        task.done = True
        self.finished.add(task)
        owner = task.owner
        if owner is not None:
            task.owner = None
            if type(owner) is list:
                for ar in owner:
                    ar._task_done(task)
            else:
                owner._task_done(task)

    def fail_task(self, task: Task, err: Exception) -> None:
        if task.done:
            return
        task.value = err
        task.failed = True
        task.expected = 0
        self.complete(task)

    def fail_request(self, msg_id: str, err: Exception) -> None:
        """Fail the (non-broadcast) task of ``msg_id``, if it is outstanding."""
        task = self.pending.get(msg_id)
        if type(task) is Task:
            self.fail_task(task, err)
            self.notify()

    def fail_all(self, err: Exception) -> None:
        """Fail every outstanding task (the controller is gone, the client closed...)."""
        for entry in list(self.pending.values()):
            tasks = list(entry.tasks.values()) if isinstance(entry, Broadcast) else [entry]
            for task in tasks:
                self.fail_task(task, err)
        self.notify()

    def attach(self, ar: Any, task: Task) -> bool:
        """Make ``ar`` wait for ``task`` too; False when the task is already finished."""
        if task.done:
            return False
        owner = task.owner
        if owner is None:
            task.owner = ar
        elif type(owner) is list:
            owner.append(ar)
        else:
            task.owner = [owner, ar]
        return True

    # -- waiting from user threads -------------------------------------------------------------
    def notify(self) -> None:
        """Wake the threads in :meth:`wait_until` (after each batch of messages)."""
        if self.waiters:
            with self.cond:
                self.cond.notify_all()

    def wait_until(self, done: Callable[[], bool], timeout: float | None) -> bool:
        """Block until ``done()`` (checked after each batch of messages) or the timeout."""
        if done():
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            self.waiters += 1
            try:
                while not done():
                    if deadline is None:
                        self.cond.wait(1.0)  # a bound, not a tick: notify() wakes it
                    else:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return False
                        self.cond.wait(remaining)
                return True
            finally:
                self.waiters -= 1


class TaskMapping(Mapping):  # type: ignore[type-arg]
    """A read-only view of a client's task records by msg_id (``rc.results``, ``rc.metadata``):
    ``getter(task)`` of the finished ones, and of the pending ones with ``include_pending``."""

    def __init__(self, replies: Replies, getter: Callable[[Task], Any], include_pending: bool) -> None:
        self._replies = replies
        self._get = getter
        self._pending = include_pending

    def _task(self, msg_id: str) -> Task | None:
        task = self._replies.finished.get(msg_id)
        if task is None and self._pending:
            entry = self._replies.pending.get(msg_id)
            task = next(iter(entry.tasks.values()), None) if isinstance(entry, Broadcast) else entry
        return task

    def __getitem__(self, msg_id: str) -> Any:
        task = self._task(msg_id)
        if task is None:
            raise KeyError(msg_id)
        return self._get(task)

    def __contains__(self, msg_id: object) -> bool:
        return isinstance(msg_id, str) and self._task(msg_id) is not None

    def _keys(self) -> list[str]:
        keys = list(self._replies.finished)
        if self._pending:
            keys += [k for k in list(self._replies.pending) if k not in self._replies.finished]
        return keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())
