"""Persistent task store: the in-memory store, with its finished records mirrored in an SQLite file.

The hub works on :class:`~.base.TaskRecord` objects in memory exactly as with
:class:`~.memory.MemoryStore`, whose bounds and culling rules this store shares (it extends that
class): at most ``max_records`` records, the oldest *finished* ones dropped first, pending ones
never; replies (and requests) kept within ``max_result_bytes``, oldest evicted first, and
``max_result_size`` each. The file holds what memory holds of finished tasks, no more: each
record's status, times, engine and header, and its reply while memory keeps it. Requests are not
written (they double the bytes written), so a task from before a restart cannot be resubmitted.

Nothing is written per task. Each change to a finished record (it completed, its reply was
evicted, it was dropped) only notes the msg_id in a dict. Every ``interval`` seconds
(:meth:`SQLiteStore.write_behind`) the noted records become rows, on the event loop, and one
writer thread writes them in one transaction, one batch at a time: while a batch is being
written, changes gather for the next. :meth:`SQLiteStore.close` writes the rest. A controller
killed with SIGKILL loses the last interval's completions; tasks still pending when the
controller stops are not in the file at all.

At start the file's records are read back into memory (:meth:`MemoryStore.load
<.memory.MemoryStore.load>`, which applies the bounds again), so a restarted controller answers
``result_request`` and ``history_request`` for tasks that finished before; nothing reads the
file afterwards.

One controller uses a file at a time: the store holds an exclusive ``flock`` on it while open,
and a second controller pointed at the same file fails at start with a message naming it.
The file is created owner-only (mode 0600): results may hold anything the tasks returned.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import stat
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from ...error import IPClusterError
from .base import TaskRecord
from .memory import MemoryStore

#: the columns of the task table, in order (a table with other columns is refused, not altered)
COLUMNS = ("msg_id", "msg_type", "client", "header", "engine_id", "submitted", "received", "status",
           "ename", "nbytes", "result_dropped", "reply")

SCHEMA = """CREATE TABLE IF NOT EXISTS {table} (
    msg_id TEXT PRIMARY KEY NOT NULL,
    msg_type TEXT NOT NULL,
    client BLOB NOT NULL,      -- the submitting client's ZeroMQ identity
    header TEXT NOT NULL,      -- the request's header, JSON
    engine_id INTEGER,
    submitted REAL NOT NULL,   -- seconds since the epoch
    received REAL NOT NULL,
    status TEXT,               -- ok, error, aborted
    ename TEXT,
    nbytes INTEGER NOT NULL,   -- size of the reply's frames
    result_dropped INTEGER NOT NULL,
    reply BLOB                 -- the reply's frames after the delimiter (pack_frames), while kept
)"""

#: seconds a query waits for SQLite's own lock (only this process uses the file: never long)
BUSY_TIMEOUT = 5.0


def pack_frames(frames: list[Any] | None) -> bytes | None:
    """Frames as one blob: their count, each length (little-endian), then their bytes."""
    if frames is None:
        return None
    n = len(frames)
    return struct.pack(f"<I{n}Q", n, *map(len, frames)) + b"".join(frames)


def unpack_frames(blob: bytes | None) -> list[bytes] | None:
    """The frames :func:`pack_frames` packed; ValueError when the blob is not such a packing."""
    if blob is None:
        return None
    try:
        (n,) = struct.unpack_from("<I", blob)
        lengths = struct.unpack_from(f"<{n}Q", blob, 4)
    except struct.error as e:
        raise ValueError(f"not a packing of frames: {e}") from None
    pos = 4 + 8 * n
    frames = []
    for length in lengths:
        frames.append(blob[pos:pos + length])
        pos += length
    if pos != len(blob):
        raise ValueError(f"frame lengths add up to {pos} bytes, the blob has {len(blob)}")
    return frames


def quote(name: str) -> str:
    """An SQL identifier: any table name works, ipyparallel's 'ipython-tasks' included."""
    return '"' + name.replace('"', '""') + '"'


def _row(rec: TaskRecord) -> tuple[Any, ...]:
    return (rec.msg_id, rec.msg_type, rec.client, orjson.dumps(rec.header).decode(), rec.engine_id, rec.submitted,
            rec.received, rec.status, rec.ename, rec.nbytes, int(rec.result_dropped), pack_frames(rec.reply))


def _record(row: tuple[Any, ...]) -> TaskRecord:
    msg_id, msg_type, client, header, engine_id, submitted, received, status, ename, nbytes, dropped, reply = row
    return TaskRecord(str(msg_id), str(msg_type), bytes(client), orjson.loads(header), engine_id=engine_id,
                      submitted=float(submitted), received=float(received), status=status, ename=ename,
                      nbytes=int(nbytes), result_dropped=bool(dropped), reply=unpack_frames(reply))


class SQLiteStore(MemoryStore):
    """A :class:`MemoryStore` whose finished records are also written to ``path`` (see the module).

    Raises :class:`~ipcluster.error.IPClusterError`, naming the file, when it cannot be created,
    read or locked, is not an SQLite database, or holds a table of that name with other columns.
    """

    def __init__(self, path: str | os.PathLike[str], table: str = "ipcluster_tasks", *,
                 max_records: int = 100_000, max_result_bytes: int = 64 << 20, max_result_size: int = 1 << 20,
                 write_timeout: float = 60.0, log: logging.Logger | None = None) -> None:
        super().__init__(max_records, max_result_bytes, max_result_size)
        self.path = Path(path)
        self.table = table
        self.write_timeout = write_timeout
        self.log = log or logging.getLogger(__name__)
        self._dirty: dict[str, TaskRecord | None] = {}  # msg_id -> record to write, or None: delete it
        self._failing = 0  # records lost to failed writes since the last one that worked (writer thread)
        # one thread writes, one batch at a time: SQLite's own work (pages, WAL) runs off the event
        # loop, and releases the GIL while it does
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="ipcluster-task-store")
        self._in_flight: Future[int] | None = None
        self._lock_fd = _create_and_lock(self.path)
        try:
            self._db = self._connect()
            try:
                self.load(self._read())
            except (sqlite3.Error, ValueError, KeyError, TypeError, AttributeError) as e:
                self._db.close()
                raise IPClusterError(f"cannot read the task store {self.path}: {e}; move the file aside "
                                     "or choose another (ControllerApp.sqlite_file)") from e
        except BaseException:
            self._writer.shutdown()
            os.close(self._lock_fd)
            raise
        self.loaded = len(self)
        self.flush()  # what bounds that shrank since the file was written culled

    # -- the file --------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")  # reads the header first: a non-database fails here
                db.execute("PRAGMA synchronous=NORMAL")  # a commit survives the process, not the OS, crashing
                columns = [r[1] for r in db.execute(f"PRAGMA table_info({quote(self.table)})")]
                if not columns:
                    db.execute(SCHEMA.format(table=quote(self.table)))
                elif tuple(columns) != COLUMNS:
                    raise IPClusterError(
                        f"table {self.table!r} of the task store {self.path} has other columns than ipcluster's "
                        f"({', '.join(columns)}): written by ipyparallel or another version? Choose another "
                        "table (ControllerApp.sqlite_table) or file (ControllerApp.sqlite_file)")
            except BaseException:
                db.close()
                raise
        except sqlite3.Error as e:
            raise IPClusterError(f"cannot use {self.path} as the controller's task store: {e}; move the file aside "
                                 "or choose another (ControllerApp.sqlite_file)") from e
        return db

    def _read(self) -> list[TaskRecord]:
        cols = ", ".join(COLUMNS)
        return [_record(row) for row in self._db.execute(f"SELECT {cols} FROM {quote(self.table)}")]

    # -- what the memory store tells us ---------------------------------------------------------
    def _changed(self, record: TaskRecord) -> None:
        self._dirty[record.msg_id] = record

    def _forgotten(self, msg_id: str) -> None:
        self._dirty[msg_id] = None

    @property
    def unwritten(self) -> int:
        """Records changed since the last batch was taken for writing."""
        return len(self._dirty)

    def _take(self) -> tuple[list[tuple[str]], list[tuple[Any, ...]]]:
        """The changes since the last batch, as rows (built here: records change on this thread)."""
        dirty, self._dirty = self._dirty, {}
        gone = [(m,) for m, r in dirty.items() if r is None]
        rows = [_row(r) for r in dirty.values() if r is not None]
        return gone, rows

    def _write(self, gone: list[tuple[str]], rows: list[tuple[Any, ...]]) -> int:
        """On the writer thread: one transaction; returns the records written.

        A failed write (disk full, file removed) is logged as an error and its changes are lost,
        never retried forever: memory keeps serving them while the controller runs.
        """
        table = quote(self.table)
        db = self._db
        try:
            db.execute("BEGIN")
            try:
                if gone:
                    db.executemany(f"DELETE FROM {table} WHERE msg_id = ?", gone)
                if rows:
                    db.executemany(f"INSERT OR REPLACE INTO {table} ({', '.join(COLUMNS)}) "
                                   f"VALUES ({', '.join('?' * len(COLUMNS))})", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            if not self._failing:
                self.log.error("could not write %d task record(s) to %s: %s; they are kept in memory only "
                               "(further failures are counted, not logged)", len(gone) + len(rows), self.path, e)
            self._failing += len(gone) + len(rows)
            return 0
        if self._failing:
            self.log.warning("writing to the task store %s works again; %d record change(s) were not written",
                             self.path, self._failing)
            self._failing = 0
        return len(gone) + len(rows)

    def flush_soon(self) -> Future[int] | None:
        """Hand the changes so far to the writer thread, unless it is still writing the previous
        batch (then they wait for the next call, in a larger batch); the write's future, or None."""
        if not self._dirty or (self._in_flight is not None and not self._in_flight.done()):
            return None
        self._in_flight = self._writer.submit(self._write, *self._take())
        return self._in_flight

    def flush(self) -> int:
        """Write every change so far, waiting for it (up to ``write_timeout`` seconds); returns the
        records written by this call."""
        if self._in_flight is not None:
            self._in_flight.result(self.write_timeout)
        if not self._dirty:
            return 0
        self._in_flight = self._writer.submit(self._write, *self._take())
        return self._in_flight.result(self.write_timeout)

    async def write_behind(self, interval: float) -> None:
        """Hand changes to the writer thread every ``interval`` seconds until cancelled (:meth:`close`
        writes the rest). The event loop never waits for the file."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.flush_soon()
            except Exception:  # a record that cannot become a row must not end the writing
                self.log.exception("task store %s: could not prepare a batch of records; it is not written", self.path)

    def close(self) -> None:
        """Write what is left and release the file (and its lock)."""
        if self._lock_fd < 0:
            return
        try:
            n = self.flush()
            self.log.debug("task store %s: wrote %d record(s) on close", self.path, n)
            self._writer.shutdown(wait=True)
            self._db.close()
        except TimeoutError:
            self.log.error("task store %s: the last write took longer than %s s; records of the last moments "
                           "may be missing from it", self.path, self.write_timeout)
        finally:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _create_and_lock(path: Path) -> int:
    """Create ``path`` owner-only if missing (its folder too, 0700), tighten a looser existing
    file to 0600, and take an exclusive lock on it; returns the locked descriptor."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as e:
        raise IPClusterError(f"cannot open the task store {path}: {e.strerror}") from e
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise IPClusterError(f"the task store {path} is not a regular file")
        if mode & 0o077:
            logging.getLogger(__name__).warning("task store %s was readable by others (mode %o): now 0600",
                                                path, mode & 0o777)
            os.fchmod(fd, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IPClusterError(
                f"the task store {path} is in use by another controller (one file serves one controller at a time): "
                "stop that one, or give this one another file (ControllerApp.sqlite_file)") from None
    except BaseException:
        os.close(fd)
        raise
    return fd
