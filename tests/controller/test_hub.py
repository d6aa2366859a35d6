"""Pure tests of the controller's state: hub, scheduler, heartbeat bookkeeping, record store."""

from __future__ import annotations

import pytest

from ipcluster.controller.db import MemoryStore, TaskRecord
from ipcluster.controller.heartbeat import HeartMonitor
from ipcluster.controller.hub import Hub
from ipcluster.controller.schedulers import LeastLoad
from ipcluster.error import NoEnginesError


def make_hub(**kw: int) -> Hub:
    return Hub(MemoryStore(**kw), LeastLoad())


def header(n: int, msg_type: str = "apply_request") -> dict:
    return {"msg_id": f"m{n}", "msg_type": msg_type}


def test_engines_get_consecutive_ids_and_duplicates_are_refused() -> None:
    hub = make_hub()
    assert [hub.register_engine(u).id for u in (b"a", b"b", b"c")] == [0, 1, 2]
    with pytest.raises(ValueError, match="already registered"):
        hub.register_engine(b"a")
    hub.unregister_engine(b"b")
    assert sorted(hub.engines) == [0, 2]
    assert hub.register_engine(b"d").id == 3  # ids are never reused


def test_direct_task_to_unknown_engine_is_an_error() -> None:
    hub = make_hub()
    hub.register_engine(b"a")
    with pytest.raises(NoEnginesError, match="engine 7 is not registered"):
        hub.assign_direct(hub.new_record(header(1), b"c"), 7)


def test_least_load_spreads_tasks_and_queues_without_engines() -> None:
    hub = make_hub()
    q = hub.assign_balanced(hub.new_record(header(0), b"c"), None, ["frames"])
    assert q is None and len(hub.unassigned) == 1
    hub.register_engine(b"a")
    hub.register_engine(b"b")
    given = hub.drain_unassigned()
    assert [(q.record.msg_id, info.id) for q, info in given] == [("m0", 0)]
    picks = [hub.assign_balanced(hub.new_record(header(n), b"c"), None, []).id for n in range(1, 4)]
    assert picks == [1, 0, 1]
    assert hub.scheduler.loads == {0: 2, 1: 2}
    hub.finish(b"a", "m0", [b"{}"] * 4, [])
    assert hub.scheduler.loads == {0: 1, 1: 2}
    assert hub.queue_status() == {"0": {"queue": 0, "tasks": 1, "completed": 1},
                                  "1": {"queue": 0, "tasks": 2, "completed": 0}, "unassigned": 0}


def test_balanced_task_respects_allowed_targets() -> None:
    hub = make_hub()
    for u in (b"a", b"b"):
        hub.register_engine(u)
    assert hub.assign_balanced(hub.new_record(header(1), b"c"), frozenset({1}), []).id == 1
    assert hub.assign_balanced(hub.new_record(header(2), b"c"), frozenset({1}), []).id == 1
    with pytest.raises(NoEnginesError):
        hub.assign_balanced(hub.new_record(header(3), b"c"), frozenset({5}), [])


def test_unregistering_returns_unfinished_tasks() -> None:
    hub = make_hub()
    hub.register_engine(b"a")
    hub.assign_direct(hub.new_record(header(1), b"c"), 0)
    hub.assign_balanced(hub.new_record(header(2), b"c"), None, [])
    hub.assign_direct(hub.new_record(header(3), b"c"), 0)
    hub.finish(b"a", "m3", [b"{}"] * 4, [])
    info, lost = hub.unregister_engine(b"a")
    assert info.id == 0 and sorted(r.msg_id for r in lost) == ["m1", "m2"]
    assert hub.unregister_engine(b"a") is None


def test_abort_unassigned() -> None:
    hub = make_hub()
    for n in range(3):
        hub.assign_balanced(hub.new_record(header(n), b"c"), None, [])
    assert [r.msg_id for r in hub.abort_unassigned(["m1"])] == ["m1"]
    assert [q.record.msg_id for q in hub.unassigned] == ["m0", "m2"]
    assert len(hub.abort_unassigned(None)) == 2 and not hub.unassigned


def test_store_bounds_result_bytes_and_keeps_metadata() -> None:
    store = MemoryStore(max_result_bytes=100, max_result_size=60)
    recs = [TaskRecord(f"m{i}", "apply_request", b"c", {}) for i in range(4)]
    for r in recs:
        store.add(r)
    store.complete(recs[0], [b"{}"] * 4, [b"x" * 50], 1.0)
    store.complete(recs[1], [b"{}"] * 4, [b"x" * 40], 1.0)
    assert store.kept_bytes == 90
    store.complete(recs[2], [b"{}"] * 4, [b"x" * 30], 1.0)  # evicts the oldest
    assert recs[0].buffers is None and recs[0].result_dropped and recs[0].completed
    assert store.kept_bytes == 70
    store.complete(recs[3], [b"{}"] * 4, [b"x" * 61], 1.0)  # too big to keep at all
    assert recs[3].result_dropped and store.kept_bytes == 70


def test_store_bounds_records_but_never_drops_pending() -> None:
    store = MemoryStore(max_records=3)
    recs = [TaskRecord(f"m{i}", "apply_request", b"c", {}) for i in range(3)]
    for r in recs:
        store.add(r)
    store.complete(recs[1], [b"{}"] * 4, [], 1.0)
    store.add(TaskRecord("m3", "apply_request", b"c", {}))
    assert store.history() == ["m0", "m2", "m3"]
    assert store.drop(["m0"]) == []  # pending: kept


def test_heart_declares_silent_engines_dead() -> None:
    heart = HeartMonitor(misses=2)
    heart.add(b"a")
    heart.add(b"b")
    for _ in range(2):  # b may miss two pings in a row...
        heart.pong(b"a", heart.next_ping())
        assert heart.dead() == []
    heart.pong(b"a", heart.next_ping())
    heart.pong(b"a", b"garbage")  # ignored
    assert heart.dead() == [b"b"]  # ...but not a third
