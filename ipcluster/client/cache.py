"""The client's cache of finished tasks: what ``rc.results``, ``rc.metadata`` and
``rc.get_result`` find here without asking the controller.

The cache is bounded twice, oldest first: by the number of tasks (``Client.results_cache_size``)
and by the bytes of their results (``Client.results_cache_max_bytes``). A result's size is the
total length of the buffers it was unpickled from, which the reply already carries: for a small
result that is one ``len``, and the accounting adds a few attribute updates to each finished
task, no object. Those bytes are what the result keeps alive: a numpy array is rebuilt on top of
its buffer, without a copy. A large result from an engine on this host lives in a shared-memory
file the client mapped and unlinked (:mod:`ipcluster.protocol.shm`): it counts in ``/dev/shm``'s
usage but shows in no listing there, only in the client's mappings, and in its RSS only once
touched. The cache tells those bytes apart (``shm_bytes`` in :meth:`ResultCache.info`).

Eviction only drops the cache's reference to a task. A result the user still holds (the value
itself, or an AsyncResult, which holds its tasks) stays valid: the buffers under it, mapped file
included, are freed when its last reference goes. An evicted msg_id is simply absent, as if purged
with ``purge_local_results``: ``rc.get_result`` asks the controller for it again (which keeps only
small results: a large one is gone unless the user holds it).

All of it runs on the client's I/O thread, which finishes tasks; user threads get there through
:func:`on_io_thread`.
"""

from __future__ import annotations

import logging
import mmap
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from traitlets import HasTraits, Integer, TraitError, observe, validate

from .task import Task

if TYPE_CHECKING:
    from ._io import ClientIO

log = logging.getLogger(__name__)

T = TypeVar("T")

#: at most one log line about evictions per this many seconds
EVICTION_LOG_INTERVAL = 10.0


def mapped_nbytes(buffers: list[Any]) -> int:
    """Bytes of ``buffers`` that are views of a memory mapping (a shared-memory file)."""
    return sum(len(b) for b in buffers if type(b) is memoryview and type(b.obj) is mmap.mmap)


class ResultCache:
    """Finished tasks by msg_id, in the order they finished, within two bounds.

    ``maxsize`` bounds the number of tasks and ``max_bytes`` the total of their results'
    ``Task.nbytes``; past either, the oldest tasks are dropped (a task larger than ``max_bytes``
    on its own is not kept at all). Reads (``get``, ``in``, iteration) are those of a dict.
    """

    def __init__(self, maxsize: int, max_bytes: int) -> None:
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        self.get = self._tasks.get  # the dict's own method: lookups cost what a dict's do
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.nbytes = 0  # bytes of the kept tasks' results
        self.evictions = 0  # tasks dropped to stay within the bounds (purges are not counted)
        self.evicted_bytes = 0
        self._log_after = 0.0  # monotonic time before which evictions are not logged
        self._logged = (0, 0)  # evictions and evicted_bytes as of the last line
        self._for_bytes = False  # whether an eviction since that line was for the byte bound

    def __getitem__(self, msg_id: str) -> Task:
        return self._tasks[msg_id]

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._tasks

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def items(self) -> list[tuple[str, Task]]:
        return list(self._tasks.items())

    def add(self, task: Task) -> None:
        """Keep ``task`` as the newest, then drop the oldest past the bounds.

        Once per finished task, so it does only what it must: the usual turnover (one task in,
        the oldest out) stays inline, and shared-memory bytes are summed only when asked for.
        """
        tasks = self._tasks
        msg_id = task.msg_id
        if msg_id in tasks:  # a broadcast's engines share one msg_id: the last one is kept
            self.discard(msg_id)
        tasks[msg_id] = task
        self.nbytes += task.nbytes
        if self.nbytes > self.max_bytes:
            self._evict()
        elif len(tasks) > self.maxsize:
            n = tasks.popitem(False)[1].nbytes
            self.nbytes -= n
            self.evicted_bytes += n
            self.evictions += 1
            if not self.evictions & 0xFF:  # the clock is read once per 256 such evictions
                self._report()

    def discard(self, msg_id: str) -> Task | None:
        """Forget one task (purges go this way, as evictions do); the task, if it was kept."""
        task = self._tasks.pop(msg_id, None)
        if task is not None:
            self.nbytes -= task.nbytes
        return task

    def clear(self) -> None:
        self._tasks.clear()
        self.nbytes = 0

    def resize(self, maxsize: int | None = None, max_bytes: int | None = None) -> None:
        """New bounds; what is over them goes at once."""
        if maxsize is not None:
            self.maxsize = maxsize
        if max_bytes is not None:
            self.max_bytes = max_bytes
        self._evict()

    def _evict(self) -> None:
        tasks = self._tasks
        if self.nbytes > self.max_bytes:
            self._for_bytes = True
            newest = tasks[next(reversed(tasks))]
            if newest.nbytes > self.max_bytes:  # over the bound on its own: not kept, and
                self.discard(newest.msg_id)    # nothing else goes for it
                self.evicted_bytes += newest.nbytes
                self.evictions += 1
        while tasks and (len(tasks) > self.maxsize or self.nbytes > self.max_bytes):
            n = tasks.popitem(False)[1].nbytes
            self.nbytes -= n
            self.evicted_bytes += n
            self.evictions += 1
        self._report()

    def _report(self) -> None:
        """Log the evictions since the last line, unless a line went out less than
        :data:`EVICTION_LOG_INTERVAL` seconds ago."""
        count, freed = self.evictions - self._logged[0], self.evicted_bytes - self._logged[1]
        now = time.monotonic()
        if not count or now < self._log_after:
            return
        self._log_after = now + EVICTION_LOG_INTERVAL
        self._logged = (self.evictions, self.evicted_bytes)
        # INFO when results went for their bytes (the controller keeps no large result, so only
        # what the user holds is left of them); DEBUG for the routine turnover of the count
        log.log(logging.INFO if self._for_bytes else logging.DEBUG,
                "results cache: evicted %d result(s), %d bytes, oldest first (now %d results, %d "
                "of at most %d bytes; at most one such line per %.0f s)",
                count, freed, len(self._tasks), self.nbytes, self.max_bytes, EVICTION_LOG_INTERVAL)
        self._for_bytes = False

    def info(self) -> dict[str, int]:
        """Counts and bytes of what is kept, the bounds, and what was evicted so far."""
        return {
            "results": len(self._tasks),
            "bytes": self.nbytes,
            "shm_bytes": sum(t.shm_nbytes for t in self._tasks.values()),
            "max_results": self.maxsize,
            "max_bytes": self.max_bytes,
            "evictions": self.evictions,
            "evicted_bytes": self.evicted_bytes,
        }


class CacheOptions(HasTraits):
    """The bounds of a Client's cache of finished results, configured as ``Client``
    (``c.Client.results_cache_max_bytes``), given as keyword arguments (``Client(...,
    results_cache_max_bytes=300 << 20)``) or set on a client at any time (what is over a new
    bound goes at once)."""

    _io: "ClientIO"  # the client's, set by Client.__init__
    timeout: float

    results_cache_size = Integer(
        1024,
        config=True,
        help="""Most finished results this client keeps, by msg_id, for ``rc.results``, ``rc.metadata``
        and ``rc.get_result``; past it the oldest are evicted first. A result you still hold (its
        value or its AsyncResult) stays valid whatever this is. See also results_cache_max_bytes.""",
    )
    results_cache_max_bytes = Integer(
        1 << 30,
        config=True,
        help="""Bytes of finished results this client keeps, at most, for ``rc.results`` and
        ``rc.get_result``. A result counts the bytes of the buffers it was unpickled from (what a
        numpy array rebuilt on them keeps alive). Past the bound the oldest results are evicted
        first, and a result larger than it on its own is not kept. Eviction only drops the
        cache's reference: a result you hold (its value or its AsyncResult) stays valid, and its
        memory goes when you drop it. The controller keeps only small results
        (ControllerApp.max_result_size), so a large one, once evicted, cannot be fetched again by
        msg_id. Large results from engines on this host are files in shared memory (/dev/shm)
        mapped into the client: they count like any other, and ``rc.cache_info()`` shows how many
        of the kept bytes they are.

        The default, 1 GiB, keeps the last ten 100 MB arrays at hand. It also bounds what a loop
        of large pulls leaves behind to half of /dev/shm's usual size (half of memory) on a
        machine with 4 GB, and much less on bigger ones. That matters beyond memory: an engine
        hands a result over in shared memory only while /dev/shm has twice its size free, and
        sends it over the slower socket otherwise. A fixed size, rather than a fraction of
        memory, behaves the same on every host. 0 keeps no result that has data (errors and
        execute replies are still kept).""",
    )

    @validate("results_cache_size", "results_cache_max_bytes")
    def _not_negative(self, proposal: Any) -> int:
        value = proposal["value"]
        name = proposal["trait"].name
        if value < 0:
            unit = "a number of bytes" if name.endswith("_bytes") else "a number of results"
            raise TraitError(f"{type(self).__name__}.{name} is {unit}, 0 or more; got {value!r}")
        return int(value)

    def cache_info(self) -> dict[str, int]:
        """What this client keeps of finished results, for ``rc.results`` and ``rc.get_result``.

        Returns a dict: ``results`` (how many are kept), ``bytes`` (of their results' buffers),
        ``shm_bytes`` (of those bytes, how many are mapped from shared-memory files: /dev/shm's
        usage counts them, but no file there shows them, nor the client's RSS until touched),
        ``max_results`` and ``max_bytes`` (the bounds), ``evictions`` and ``evicted_bytes`` (what
        the bounds have dropped so far, oldest first; purges are not counted).
        """
        return on_io_thread(self._io, self._io.replies.finished.info, self.timeout)

    @observe("results_cache_size", "results_cache_max_bytes")
    def _cache_bounds_changed(self, change: Any) -> None:
        io = getattr(self, "_io", None)  # None while __init__ takes them from its arguments
        if io is not None:
            cache, size, max_bytes = io.replies.finished, self.results_cache_size, self.results_cache_max_bytes
            on_io_thread(io, lambda: cache.resize(size, max_bytes), self.timeout)


def on_io_thread(io: "ClientIO", fn: Callable[[], T], timeout: float) -> T:
    """``fn()`` on the client's I/O thread, which owns the task tables, from any thread; at once
    when the client is closed (nothing changes them then) or on the I/O thread itself."""
    if io.closed or threading.current_thread() is io.loop_thread.thread:
        return fn()

    async def call() -> T:
        return fn()

    return io.run(call(), timeout)  # type: ignore[no-any-return]
