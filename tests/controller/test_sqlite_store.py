"""Pure tests of the persistent task store: an SQLite file under tmp_path, no processes."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from ipcluster.controller.db import MemoryStore, SQLiteStore, TaskRecord, TaskStore
from ipcluster.controller.db.sqlite import pack_frames, unpack_frames
from ipcluster.controller.hub import Hub
from ipcluster.controller.schedulers import LeastLoad
from ipcluster.error import IPClusterError

REQUEST = [b"<IDS|MSG>", b"sig", b'{"msg_id": "x"}', b"{}", b"{}", b"{}"]


def reply(body: bytes = b"result") -> list[bytes]:
    return [b"sig", b'{"msg_type": "apply_reply"}', b"{}", b"{}", b'{"status": "ok"}', body]


def record(n: int, request: list[bytes] | None = None) -> TaskRecord:
    return TaskRecord(f"m{n}", "apply_request", b"client-1", {"msg_id": f"m{n}", "msg_type": "apply_request"},
                      engine_id=n % 2, submitted=100.0 + n, request=request)


def finish(store: TaskStore, n: int, size: int, received: float) -> TaskRecord:
    """Complete task ``m<n>`` with a one-frame reply of ``size`` bytes."""
    rec = store.get(f"m{n}")
    assert rec is not None
    rec.status = "ok"
    store.complete(rec, [b"x" * size], received)
    return rec


def rows(path: Path, table: str = "ipcluster_tasks") -> dict[str, tuple]:
    """What the file holds, read through a connection of its own: msg_id -> (status, reply, result_dropped)."""
    db = sqlite3.connect(path)
    try:
        return {r[0]: r[1:] for r in db.execute(f'SELECT msg_id, status, reply, result_dropped FROM "{table}"')}
    finally:
        db.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "security" / "tasks.db"


@pytest.fixture
def opened(path: Path) -> Iterator[Callable[..., SQLiteStore]]:
    """Open stores on ``path``; every one still open is closed at the end."""
    stores: list[SQLiteStore] = []

    def open_store(**kw: int) -> SQLiteStore:
        stores.append(SQLiteStore(path, **kw))
        return stores[-1]

    yield open_store
    for s in stores:
        s.close()


def test_a_finished_record_survives_reopening_field_for_field(path: Path, opened: Callable[..., SQLiteStore]) -> None:
    store = opened()
    rec = record(1, REQUEST)
    rec.status, rec.ename = "error", "ZeroDivisionError"
    store.add(rec)
    store.complete(rec, reply(), 123.5)
    store.close()
    again = opened()
    got = again.get("m1")
    assert got is not None and got is not rec
    for field in ("msg_id", "msg_type", "client", "header", "engine_id", "submitted", "received", "status", "ename",
                  "nbytes", "result_dropped", "reply"):
        assert getattr(got, field) == getattr(rec, field), field
    assert rec.request == REQUEST and got.request is None  # requests are not written: no resubmit after a restart
    assert got.completed and again.history() == ["m1"] and len(again) == 1


def test_nothing_is_written_per_task_only_per_flush(path: Path, opened: Callable[..., SQLiteStore]) -> None:
    store = opened()
    for n in range(3):
        store.add(record(n))
        finish(store, n, 10, 200.0 + n)
    assert rows(path) == {} and store.unwritten == 3
    assert store.flush() == 3  # one transaction for the three
    assert sorted(rows(path)) == ["m0", "m1", "m2"] and store.unwritten == 0
    assert store.flush() == 0


def test_pending_records_are_not_written_and_history_keeps_submission_order(
        path: Path, opened: Callable[..., SQLiteStore]) -> None:
    store = opened()
    recs = [record(n) for n in range(4)]
    for r in recs:
        store.add(r)
    store.complete(recs[2], reply(), 300.0)  # finished out of order
    store.complete(recs[0], reply(), 301.0)
    store.close()
    assert sorted(rows(path)) == ["m0", "m2"]  # m1 and m3 were pending: not in the file
    again = opened()
    assert again.history() == ["m0", "m2"]
    again.add(record(9))
    assert again.history() == ["m0", "m2", "m9"]  # new tasks come after the ones from before


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_both_stores_cull_by_the_same_rules(kind: str, path: Path) -> None:
    """The oldest *finished* record goes first, pending ones never; buffers oldest first."""
    store: TaskStore = MemoryStore(max_records=4, max_result_bytes=250) if kind == "memory" \
        else SQLiteStore(path, max_records=4, max_result_bytes=250)
    try:
        recs = [record(n) for n in range(8)]
        for r in recs[:4]:
            store.add(r)
        finish(store, 2, 100, 1.0)
        finish(store, 0, 100, 2.0)
        finish(store, 2, 100, 3.0)  # a retry: now the newest
        assert recs[0].reply is not None and recs[2].reply is not None
        finish(store, 1, 100, 4.0)  # 300 bytes > 250: the oldest kept reply (m0's) goes
        assert recs[0].reply is None and recs[0].result_dropped and recs[0].status == "ok"
        for r in recs[4:]:  # four more pending: the three finished records go, m0, m2, m1
            store.add(r)
        assert store.history() == ["m3", "m4", "m5", "m6", "m7"]
        assert store.drop(["m3"]) == []  # pending: kept
        store.close()
        if kind == "sqlite":
            assert rows(path) == {}  # everything finished was culled: the file mirrors memory
    finally:
        store.close()


def test_the_file_mirrors_evicted_buffers_and_records(path: Path, opened: Callable[..., SQLiteStore]) -> None:
    store = opened(max_records=3, max_result_bytes=250)
    for n in range(3):
        store.add(record(n))
        finish(store, n, 100, 10.0 + n)
    store.flush()
    on_disk = rows(path)
    assert on_disk["m0"] == ("ok", None, 1)  # its reply was evicted: status and times stay
    assert on_disk["m2"] == ("ok", pack_frames([b"x" * 100]), 0)
    store.add(record(3))  # a fourth record: the oldest finished (m0) leaves memory and file
    store.flush()
    assert sorted(rows(path)) == ["m1", "m2"]


def test_reopening_with_smaller_bounds_culls_the_file(path: Path, opened: Callable[..., SQLiteStore]) -> None:
    store = opened()
    for n in range(5):
        store.add(record(n, REQUEST))
        finish(store, n, 100, 10.0 + n)
    store.close()
    small = opened(max_records=3, max_result_bytes=250)  # 100 bytes each (requests are not written): two fit
    assert small.history() == ["m2", "m3", "m4"] and small.loaded == 3
    assert [m for m in small.history() if small.get(m).reply is not None] == ["m3", "m4"]  # type: ignore[union-attr]
    on_disk = rows(path)
    assert sorted(on_disk) == ["m2", "m3", "m4"] and on_disk["m2"] == ("ok", None, 1)
    small.close()
    tiny = opened(max_result_size=50)  # a reply of 100 bytes is now too big to keep at all
    assert all(tiny.get(m).result_dropped for m in tiny.history())  # type: ignore[union-attr]
    tiny.close()
    assert [r[1] for r in rows(path).values()] == [None, None, None]


def test_dropping_deletes_from_the_file(path: Path, opened: Callable[..., SQLiteStore]) -> None:
    store = opened()
    for n in range(3):
        store.add(record(n))
        finish(store, n, 10, 10.0 + n)
    store.flush()
    assert store.drop(["m1", "nope"]) == ["m1"]
    store.close()
    assert sorted(rows(path)) == ["m0", "m2"]
    assert opened().history() == ["m0", "m2"]


def test_the_file_and_its_folder_are_owner_only(path: Path, opened: Callable[..., SQLiteStore]) -> None:
    store = opened()
    store.add(record(1))
    finish(store, 1, 10, 1.0)
    store.flush()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for f in path.parent.iterdir():  # tasks.db and SQLite's -wal and -shm beside it
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_a_file_readable_by_others_is_tightened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    loose = tmp_path / "loose.db"
    loose.touch(mode=0o644)
    os.chmod(loose, 0o644)
    with caplog.at_level(logging.WARNING):
        SQLiteStore(loose).close()
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    assert "readable by others" in caplog.text and str(loose) in caplog.text


def test_a_file_that_is_not_a_database_is_refused_by_name(tmp_path: Path) -> None:
    bad = tmp_path / "tasks.db"
    bad.write_bytes(b"this is not SQLite " * 200)
    with pytest.raises(IPClusterError, match=rf"{bad}.*not a database"):
        SQLiteStore(bad)
    folder = tmp_path / "folder.db"
    folder.mkdir()
    with pytest.raises(IPClusterError, match=rf"{folder}"):
        SQLiteStore(folder)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_refused_by_name(tmp_path: Path) -> None:
    locked = tmp_path / "tasks.db"
    SQLiteStore(locked).close()
    os.chmod(locked, 0)
    with pytest.raises(IPClusterError, match=str(locked)):
        SQLiteStore(locked)


def test_a_table_of_another_shape_is_refused_not_altered(path: Path) -> None:
    path.parent.mkdir(mode=0o700)
    db = sqlite3.connect(path)
    db.execute('CREATE TABLE "ipython-tasks" (msg_id text PRIMARY KEY, header dict text, buffers bufs blob)')
    db.execute("""INSERT INTO "ipython-tasks" VALUES ('a', '{}', NULL)""")
    db.commit()
    db.close()
    with pytest.raises(IPClusterError, match=r"table 'ipython-tasks' .*tasks.db has other columns"):
        SQLiteStore(path, table="ipython-tasks")
    SQLiteStore(path).close()  # ipcluster's own table beside it is fine
    db = sqlite3.connect(path)
    assert db.execute('SELECT * FROM "ipython-tasks"').fetchall() == [("a", "{}", None)]
    db.close()


def test_a_damaged_row_is_refused_by_name(path: Path, opened: Callable[..., SQLiteStore]) -> None:
    store = opened()
    store.add(record(1))
    finish(store, 1, 10, 1.0)
    store.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE ipcluster_tasks SET reply = x'0102'")
    db.commit()
    db.close()
    with pytest.raises(IPClusterError, match=rf"cannot read the task store {path}"):
        SQLiteStore(path)


def test_one_file_serves_one_controller_at_a_time(path: Path, opened: Callable[..., SQLiteStore]) -> None:
    first = opened()
    with pytest.raises(IPClusterError, match=rf"{path} is in use by another controller"):
        SQLiteStore(path)
    first.close()
    opened().close()  # free again once the first is closed


def test_a_failed_write_is_logged_once_and_does_not_raise(path: Path, opened: Callable[..., SQLiteStore],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    store = opened()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE ipcluster_tasks")  # the file changed behind the store's back
    db.commit()
    db.close()
    for n in range(2):
        store.add(record(n))
        finish(store, n, 10, 1.0)
        with caplog.at_level(logging.ERROR):
            assert store.flush() == 0
    assert caplog.text.count("could not write") == 1 and str(path) in caplog.text
    assert store.get("m1") is not None  # memory still serves it


async def test_write_behind_writes_on_a_thread_one_batch_at_a_time(path: Path,
                                                                   opened: Callable[..., SQLiteStore]) -> None:
    store = opened()
    loop = asyncio.get_running_loop()
    written: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    started = asyncio.Event()
    release = threading.Event()
    write = store._write

    def slow_write(gone: list, rows: list) -> int:  # the writer thread, held until released
        loop.call_soon_threadsafe(started.set)
        release.wait(5)
        n = write(gone, rows)
        loop.call_soon_threadsafe(written.put_nowait, (threading.current_thread().name, n))
        return n

    store._write = slow_write  # type: ignore[method-assign]
    writer = asyncio.create_task(store.write_behind(0.01))
    try:
        store.add(record(1))
        finish(store, 1, 10, 1.0)
        await asyncio.wait_for(started.wait(), 5)  # the timer handed the batch over; the loop goes on
        assert store.unwritten == 0
        store.add(record(2))
        finish(store, 2, 10, 2.0)
        assert store.flush_soon() is None and store.unwritten == 1  # one batch in flight at a time
        release.set()
        name, n = await asyncio.wait_for(written.get(), 5)
        assert name.startswith("ipcluster-task-store") and n == 1
        assert await asyncio.wait_for(written.get(), 5) == (name, 1)  # the next tick took the rest
        assert sorted(rows(path)) == ["m1", "m2"]
    finally:
        release.set()
        writer.cancel()


def test_frames_pack_and_unpack() -> None:
    frames = [b"", b"abc", zmq.Frame(b"z" * 70_000), memoryview(b"mv")]
    assert unpack_frames(pack_frames(frames)) == [b"", b"abc", b"z" * 70_000, b"mv"]
    assert pack_frames(None) is None and unpack_frames(None) is None
    for bad in (b"", b"\x02\x00\x00\x00", pack_frames([b"abc"])[:-1]):  # type: ignore[index]
        with pytest.raises(ValueError):
            unpack_frames(bad)


def test_a_hub_on_a_reopened_store_knows_the_tasks_from_before(path: Path, opened: Callable[..., SQLiteStore]) -> None:
    hub = Hub(opened(), LeastLoad())
    hub.register_engine(b"e")
    rec = hub.new_record({"msg_id": "old", "msg_type": "apply_request"}, b"c", list(REQUEST))
    hub.submit_balanced(rec, {})
    hub.finish(b"e", "old", reply(), {"status": "ok"})
    hub.store.close()
    hub = Hub(opened(), LeastLoad())
    hub.register_engine(b"e2")
    assert hub.store.get("old").completed  # type: ignore[union-attr]
    waiting = hub.new_record({"msg_id": "new", "msg_type": "apply_request"}, b"c", list(REQUEST))
    actions = hub.submit_balanced(waiting, {"after": ["old"]})  # met by the task from before
    assert [a.record.msg_id for a in actions] == ["new"]
