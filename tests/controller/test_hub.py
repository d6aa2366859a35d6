"""Pure tests of the controller's state: hub, scheduler, heartbeat bookkeeping, record store."""

from __future__ import annotations

from collections import OrderedDict

import pytest

from ipcluster.controller.db import MemoryStore, TaskRecord
from ipcluster.controller.heartbeat import HeartMonitor
from ipcluster.controller.decisions import Assign, Fail
from ipcluster.controller.hub import Hub
from ipcluster.controller.schedulers import SCHEMES, LeastLoad


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


def rec(hub: Hub, n: int, msg_type: str = "apply_request") -> TaskRecord:
    return hub.new_record(header(n, msg_type), b"c", [b"frames"])


def placed(actions: list) -> list[tuple[str, int]]:
    return [(a.record.msg_id, a.engine.id) for a in actions if isinstance(a, Assign)]


def failed(actions: list) -> list[tuple[str, str]]:
    return [(a.record.msg_id, type(a.error).__name__) for a in actions if isinstance(a, Fail)]


def reply(hub: Hub, uuid: bytes, n: int, status: str = "ok", ename: str | None = None) -> list:
    content = {"status": status, **({"ename": ename} if ename else {})}
    r, forward, actions = hub.finish(uuid, f"m{n}", [b"{}"] * 4, content)
    return actions


def test_direct_task_to_unknown_engine_is_an_error() -> None:
    hub = make_hub()
    hub.register_engine(b"a")
    actions = hub.submit_direct(rec(hub, 1), 7)
    assert failed(actions) == [("m1", "NoEnginesError")]
    assert "engine 7 is not registered" in str(actions[0].error)


def test_least_load_spreads_tasks_and_queues_without_engines() -> None:
    hub = make_hub()
    assert hub.submit_balanced(rec(hub, 0), {}) == [] and len(hub.unassigned) == 1
    hub.register_engine(b"a")
    hub.register_engine(b"b")
    assert placed(hub.drain_unassigned()) == [("m0", 0)]
    picks = [placed(hub.submit_balanced(rec(hub, n), {}))[0][1] for n in range(1, 4)]
    assert picks == [1, 0, 1]
    assert hub.scheduler.loads == {0: 2, 1: 2}
    reply(hub, b"a", 0)
    assert hub.scheduler.loads == {0: 1, 1: 2}
    assert hub.queue_status() == {"0": {"queue": 0, "tasks": 1, "completed": 1},
                                  "1": {"queue": 0, "tasks": 2, "completed": 0}, "unassigned": 0}


def test_high_water_mark_holds_tasks_back_for_late_engines() -> None:
    hub = Hub(MemoryStore(), LeastLoad(hwm=2))
    hub.register_engine(b"a")
    got = [placed(hub.submit_balanced(rec(hub, n), {})) for n in range(5)]
    assert [g[0][1] if g else None for g in got] == [0, 0, None, None, None]
    hub.register_engine(b"b")  # joins mid-run and gets the queued work
    assert placed(hub.drain_unassigned()) == [("m2", 1), ("m3", 1)]
    assert placed(reply(hub, b"a", 0)) == [("m4", 0)]


def test_balanced_task_respects_allowed_targets() -> None:
    hub = make_hub()
    for u in (b"a", b"b"):
        hub.register_engine(u)
    assert placed(hub.submit_balanced(rec(hub, 1), {"targets": [1]})) == [("m1", 1)]
    assert placed(hub.submit_balanced(rec(hub, 2), {"targets": [1]})) == [("m2", 1)]
    assert failed(hub.submit_balanced(rec(hub, 3), {"targets": [5]})) == [("m3", "NoEnginesError")]


def test_engine_loss_retries_or_fails_its_tasks() -> None:
    hub = make_hub()
    hub.register_engine(b"a")
    hub.submit_direct(rec(hub, 1), 0)
    hub.submit_balanced(rec(hub, 2), {})
    hub.submit_balanced(rec(hub, 3), {"retries": 1})
    hub.submit_direct(rec(hub, 4), 0)
    reply(hub, b"a", 4)
    hub.register_engine(b"b")
    info, actions = hub.unregister_engine(b"a")
    assert info.id == 0
    assert sorted(failed(actions)) == [("m1", "EngineError"), ("m2", "EngineError")]
    assert placed(actions) == [("m3", 1)]
    assert hub.store.get("m3").retries == 0
    assert hub.unregister_engine(b"a") is None


def test_failed_task_with_retries_runs_again_elsewhere() -> None:
    hub = make_hub()
    hub.register_engine(b"a")
    hub.register_engine(b"b")
    assert placed(hub.submit_balanced(rec(hub, 1), {"retries": 1})) == [("m1", 0)]
    r, forward, actions = hub.finish(b"a", "m1", [b"{}"] * 4, {"status": "error", "ename": "ValueError"})
    assert not forward and placed(actions) == [("m1", 1)]
    r, forward, actions = hub.finish(b"b", "m1", [b"{}"] * 4, {"status": "error", "ename": "ValueError"})
    assert forward and actions == [] and r.completed and not r.succeeded


def test_unmet_functional_dependency_tries_every_engine_then_gives_up() -> None:
    hub = make_hub()
    for u in (b"a", b"b"):
        hub.register_engine(u)
    hub.submit_balanced(rec(hub, 1), {})
    r, forward, actions = hub.finish(b"a", "m1", [b"{}"] * 4, {"status": "error", "ename": "UnmetDependency"})
    assert not forward and placed(actions) == [("m1", 1)]
    r, forward, actions = hub.finish(b"b", "m1", [b"{}"] * 4, {"status": "error", "ename": "UnmetDependency"})
    assert not forward and failed(actions) == [("m1", "ImpossibleDependency")]


def test_after_dependencies_hold_tasks_until_met() -> None:
    hub = make_hub()
    hub.register_engine(b"a")
    hub.submit_balanced(rec(hub, 1), {})
    hub.submit_balanced(rec(hub, 2), {})
    assert hub.submit_balanced(rec(hub, 3), {"after": ["m1", "m2"]}) == []
    assert hub.submit_balanced(rec(hub, 4), {"after": {"msg_ids": ["m1", "m2"], "all": False}}) == []
    assert hub.queue_status()["unassigned"] == 2
    assert placed(reply(hub, b"a", 1)) == [("m4", 0)]  # any: one done is enough
    assert placed(reply(hub, b"a", 2)) == [("m3", 0)]
    # a failed dependency makes a success-only dependent impossible; failure=True accepts it
    hub.submit_balanced(rec(hub, 5), {})
    hub.submit_balanced(rec(hub, 6), {"after": ["m5"]})
    hub.submit_balanced(rec(hub, 7), {"after": {"msg_ids": ["m5"], "success": False, "failure": True}})
    actions = reply(hub, b"a", 5, "error", "ZeroDivisionError")
    assert failed(actions) == [("m6", "ImpossibleDependency")] and placed(actions) == [("m7", 0)]
    assert failed(hub.submit_balanced(rec(hub, 8), {"after": ["nope"]})) == [("m8", "ImpossibleDependency")]
    assert failed(hub.submit_balanced(rec(hub, 9), {"after": [1, 2]})) == [("m9", "InvalidDependency")]


def test_follow_runs_where_the_dependency_ran() -> None:
    hub = make_hub()
    for u in (b"a", b"b"):
        hub.register_engine(u)
    hub.submit_balanced(rec(hub, 1), {"targets": [1]})
    reply(hub, b"b", 1)
    for n in (2, 3, 4):
        assert placed(hub.submit_balanced(rec(hub, n), {"follow": ["m1"]})) == [(f"m{n}", 1)]
    hub.unregister_engine(b"b")
    assert failed(hub.submit_balanced(rec(hub, 5), {"follow": ["m1"]})) == [("m5", "ImpossibleDependency")]


def test_timeout_and_abort_of_waiting_tasks() -> None:
    hub = make_hub()
    hub.submit_balanced(rec(hub, 1), {"timeout": 1.5})
    assert hub.store.get("m1").timeout == 1.5
    expired = hub.expire("m1")
    assert failed(expired) == [("m1", "TaskTimeout")]
    hub.fail(expired[0].record, [b"{}"] * 4, "error", "TaskTimeout")
    assert hub.expire("m1") == []
    hub.submit_balanced(rec(hub, 2), {})
    hub.submit_balanced(rec(hub, 3), {"after": ["m2"]})
    assert sorted(failed(hub.abort(None))) == [("m2", "TaskAborted"), ("m3", "TaskAborted")]
    for a in hub.abort(None):
        hub.fail(a.record, [b"{}"] * 4, "aborted", "TaskAborted")
    assert not hub.queued() and not hub.waiting and not hub.dependents


def test_tasks_taken_out_of_the_queue_are_skipped_and_the_queue_compacts() -> None:
    """Aborting queued tasks marks them; they never reach an engine, and new work is not
    held behind them (a removal from the middle of the queue each would be quadratic)."""
    hub = Hub(MemoryStore(), LeastLoad(hwm=1))
    hub.register_engine(b"a")
    assert placed(hub.submit_balanced(rec(hub, 0), {})) == [("m0", 0)]
    for n in range(1, 201):
        assert hub.submit_balanced(rec(hub, n), {}) == []
    aborted = hub.abort([f"m{n}" for n in range(1, 201) if n != 150])
    for a in aborted:
        hub.fail(a.record, [b"{}"] * 4, "aborted", "TaskAborted")
    assert [r.msg_id for r in hub.queued()] == ["m150"]
    assert len(hub.unassigned) < 100  # compacted once most of it was stale
    assert hub.queue_status()["unassigned"] == 1
    _, _, actions = hub.finish(b"a", "m0", [b"{}"] * 4, {"status": "ok"})
    assert placed(actions) == [("m150", 0)]  # the aborted ones before it were skipped
    _, _, actions = hub.finish(b"a", "m150", [b"{}"] * 4, {"status": "ok"})
    assert actions == [] and hub.queue_status()["unassigned"] == 0
    assert placed(hub.submit_balanced(rec(hub, 300), {})) == [("m300", 0)]
    assert hub.submit_balanced(rec(hub, 301), {}) == []  # engine 0 is full
    for a in hub.abort(["m301"]):
        hub.fail(a.record, [b"{}"] * 4, "aborted", "TaskAborted")
    hub.register_engine(b"b")
    assert placed(hub.submit_balanced(rec(hub, 302), {})) == [("m302", 1)]  # not queued behind a stale one


def test_broadcast_waits_for_every_engine() -> None:
    hub = make_hub()
    for u in (b"a", b"b"):
        hub.register_engine(u)
    assert placed(hub.submit_direct(rec(hub, 1), [0, 1])) == [("m1", 0), ("m1", 1)]
    r, forward, _ = hub.finish(b"a", "m1", [b"{}"] * 4, {"status": "ok"})
    assert forward and not r.completed
    r, forward, _ = hub.finish(b"b", "m1", [b"{}"] * 4, {"status": "ok"})
    assert forward and r.completed


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_every_scheme_uses_all_engines_and_respects_limits(scheme: str) -> None:
    sched = SCHEMES[scheme](hwm=2, seed=1)
    for eid in range(4):
        sched.add_engine(eid)
    counts = {eid: 0 for eid in range(4)}
    for _ in range(8):
        eid = sched.pick()
        assert eid is not None
        sched.assigned(eid)
        counts[eid] += 1
    assert sched.pick() is None  # every engine at the high-water mark
    assert all(c == 2 for c in counts.values())
    sched.finished(2)
    assert sched.pick() == 2
    assert sched.pick(allowed={0, 1}) is None
    sched.finished(0)
    assert sched.pick(allowed={0, 1}) == 0 and sched.pick(exclude={0, 2}) is None


def test_store_bounds_result_bytes_and_keeps_metadata() -> None:
    store = MemoryStore(max_result_bytes=100, max_result_size=60)
    recs = [TaskRecord(f"m{i}", "apply_request", b"c", {}) for i in range(4)]
    for r in recs:
        store.add(r)
    store.complete(recs[0], [b"x" * 50], 1.0)
    store.complete(recs[1], [b"x" * 40], 1.0)
    assert store.kept_bytes == 90
    store.complete(recs[2], [b"x" * 30], 1.0)  # evicts the oldest
    assert recs[0].reply is None and recs[0].result_dropped and recs[0].completed
    assert store.kept_bytes == 70
    store.complete(recs[3], [b"x" * 61], 1.0)  # too big to keep at all
    assert recs[3].result_dropped and store.kept_bytes == 70


def test_store_bounds_records_but_never_drops_pending() -> None:
    store = MemoryStore(max_records=3)
    recs = [TaskRecord(f"m{i}", "apply_request", b"c", {}) for i in range(3)]
    for r in recs:
        store.add(r)
    store.complete(recs[1], [b"{}"], 1.0)
    store.add(TaskRecord("m3", "apply_request", b"c", {}))
    assert store.history() == ["m0", "m2", "m3"]
    assert store.drop(["m0"]) == []  # pending: kept


def test_store_evicts_the_oldest_finished_and_keeps_pending_beyond_the_bound() -> None:
    store = MemoryStore(max_records=4)
    recs = [TaskRecord(f"m{i}", "apply_request", b"c", {}) for i in range(10)]
    for r in recs[:4]:
        store.add(r)
    store.complete(recs[2], [b"{}"], 1.0)
    store.complete(recs[0], [b"{}"], 2.0)
    store.complete(recs[2], [b"{}"], 3.0)  # finished again (a retry): now the newest
    for r in recs[4:]:  # six more pending: only the two finished ones can go, m0 first
        store.add(r)
    assert store.history() == [f"m{i}" for i in (1, 3, 4, 5, 6, 7, 8, 9)]
    assert store.get("m0") is None and store.get("m2") is None
    store.complete(recs[5], [b"{}"], 4.0)
    store.add(TaskRecord("m10", "apply_request", b"c", {}))
    assert store.get("m5") is None and len(store) == 8  # pending records are never dropped
    assert store.drop(["m5", "m1"]) == []  # gone already / pending


def test_store_past_its_bound_with_pending_tasks_does_constant_work_per_record() -> None:
    """A map queuing more tasks than ``max_records`` used to rescan every record per new one
    (25,000 queued tasks: minutes of controller time before any task ran)."""
    store = MemoryStore(max_records=100)
    looked_at = 0

    class Counting(OrderedDict):  # type: ignore[type-arg]
        def items(self):  # type: ignore[no-untyped-def]
            nonlocal looked_at
            for item in super().items():
                looked_at += 1
                yield item

    store._records = Counting()
    for i in range(5000):
        store.add(TaskRecord(f"m{i}", "apply_request", b"c", {}))
    assert len(store) == 5000 and looked_at == 0


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


def test_high_water_mark_adapts_to_task_time() -> None:
    sched = LeastLoad(hwm=64, queue_time=0.01)
    assert sched.hwm == 2  # shallow until tasks have been timed
    for _ in range(50):
        sched.observe(50e-6)  # tiny tasks: queue deep, up to the ceiling
    assert sched.hwm == 64
    for _ in range(100):
        sched.observe(0.05)  # long tasks: two at a time
    assert sched.hwm == 2
    fixed = LeastLoad(hwm=1)
    fixed.observe(1e-6)
    assert fixed.hwm == 1  # a limit of 1 or 2 is the user's choice, kept as given
    assert LeastLoad(hwm=0).hwm == 0  # unlimited stays unlimited


def test_back_to_back_completions_time_the_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([10.0, 10.004, 10.008, 10.012])
    monkeypatch.setattr("ipcluster.controller.hub.time.monotonic", lambda: next(clock))
    hub = Hub(MemoryStore(), LeastLoad(hwm=64, queue_time=0.01))
    hub.register_engine(b"a")
    for n in range(4):
        hub.submit_balanced(rec(hub, n), {})
    for n in range(3):
        reply(hub, b"a", n)
    assert hub.scheduler._task_time == pytest.approx(0.004)
    assert hub.scheduler.hwm == 2  # 10 ms of 4 ms tasks


def test_leastload_buckets_agree_with_the_loads() -> None:
    """The bucketed pick always returns an engine of the lowest load under the limit (or None
    when every engine is at it), through any sequence of joins, leaves and assignments."""
    import random

    rnd = random.Random(7)
    sched = LeastLoad(hwm=4)
    sched.hwm = 4  # as observe() would set it for short tasks
    engines: list[int] = []
    for step in range(5000):
        op = rnd.random()
        if op < 0.05 or not engines:
            eid = step
            sched.add_engine(eid)
            engines.append(eid)
        elif op < 0.08 and len(engines) > 1:
            sched.remove_engine(engines.pop(rnd.randrange(len(engines))))
        elif op < 0.55:
            eid = sched.pick()
            loads = sched.loads
            below = [e for e in engines if loads[e] < 4]
            if eid is None:
                assert not below
            else:
                assert loads[eid] == min(loads[e] for e in below)
                sched.assigned(eid)
        else:
            busy = [e for e in engines if sched.loads[e]]
            if busy:
                sched.finished(rnd.choice(busy))
        assert sum(len(b) for b in sched._levels) == len(engines)


def test_the_last_of_a_repeated_option_wins() -> None:
    """``ipcontroller --log-level=20 --log-level=10`` is not an error: the last value wins, so a
    user's ``controller_args`` override the options a Cluster passes first."""
    from ipcluster._argv import last_option_wins

    argv = ["--log-level=20", "--ip=127.0.0.1", "--log_level=10", "--flag", "pos", "--ip=0.0.0.0"]
    assert last_option_wins(argv) == ["--log_level=10", "--flag", "pos", "--ip=0.0.0.0"]
    assert last_option_wins([]) == []


def test_a_gone_client_loses_its_queued_tasks_not_its_running_ones() -> None:
    hub = make_hub()
    hub.register_engine(b"e")
    hub.scheduler.hwm = 1
    mine = [hub.new_record(header(n), b"dead", [b"f"]) for n in range(5)]
    other = hub.new_record(header(9), b"alive", [b"f"])
    assert placed(hub.submit_balanced(mine[0], {})) == [("m0", 0)]  # given to the engine: it runs on
    for r in [*mine[1:], other]:
        assert hub.submit_balanced(r, {}) == []
    hub.pinged[b"dead"], hub.pinged[b"alive"] = 1.0, 5.0
    assert hub.silent_clients(before=3.0) == [b"dead"]
    actions = hub.client_gone(b"dead")
    assert failed(actions) == [(f"m{n}", "TaskAborted") for n in range(1, 5)]
    assert {a.status for a in actions} == {"aborted"}
    for a in actions:
        hub.fail(a.record, [b"{}"] * 4, a.status, "TaskAborted")
    assert hub.queue_status()["unassigned"] == 1  # only the live client's task waits
    assert b"dead" not in hub.pinged
    # the running task finishes and is kept; the queue then moves to the live client's task
    r, forward, actions = hub.finish(b"e", "m0", [b"{}"] * 4, {"status": "ok"})
    assert forward and r is not None and r.completed
    assert placed(actions) == [("m9", 0)]


def test_a_gone_client_keeps_its_queue_when_told_to() -> None:
    hub = make_hub()
    hub.submit_balanced(hub.new_record(header(1), b"c", [b"f"]), {})
    assert hub.client_gone(b"c", drop_queued=False) == []
    assert hub.queue_status()["unassigned"] == 1


def test_tasks_starved_of_engines_fail_after_the_engine_timeout() -> None:
    hub = make_hub()
    t0 = hub.no_engines_since
    assert t0 is not None
    old, new = (hub.new_record(header(n), b"c", [b"f"]) for n in (1, 2))
    old.submitted, new.submitted = t0, t0 + 8
    for r in (old, new):
        hub.submit_balanced(r, {})
    assert hub.starved(t0 + 5, timeout=10) == []  # not yet
    assert hub.starved(t0 + 50, timeout=0) == []  # 0: never
    assert failed(hub.starved(t0 + 11, timeout=10)) == [("m1", "NoEnginesError")]  # the younger one waits on
    hub.register_engine(b"e")
    assert hub.no_engines_since is None and hub.starved(t0 + 100, timeout=10) == []
    hub.unregister_engine(b"e")
    assert hub.no_engines_since is not None  # the clock starts again when the last engine goes


# -- supervision: a restarted engine keeps its id; a task that kills engines stops being retried ----
def test_a_dead_engines_id_can_be_asked_for_and_only_that() -> None:
    from ipcluster.controller.decisions import EngineIdTaken

    hub = make_hub()
    for u in (b"a", b"b"):
        hub.register_engine(u)
    with pytest.raises(EngineIdTaken, match="held by a registered engine"):
        hub.register_engine(b"a2", requested_id=0)
    with pytest.raises(ValueError, match="never given out"):
        hub.register_engine(b"x", requested_id=7)
    hub.unregister_engine(b"a", died=True)
    assert hub.register_engine(b"a2", requested_id=0).id == 0
    assert hub.engines[0].uuid == b"a2"
    assert hub.register_engine(b"c").id == 2  # asking for an old id does not move the counter


def test_a_task_that_kills_engines_fails_at_the_kill_limit() -> None:
    from ipcluster.error import EngineError, TaskKilledEngines

    hub = Hub(MemoryStore(), LeastLoad(), task_kill_limit=2)
    for u in (b"a", b"b", b"c"):
        hub.register_engine(u)
    r = rec(hub, 1)
    [first] = hub.submit_balanced(r, {"retries": 5})
    first_engine = first.engine
    _, actions = hub.unregister_engine(first_engine.uuid, died=True)
    [again] = actions
    assert isinstance(again, Assign) and r.killed == [first_engine.id] and r.retries == 4
    _, actions = hub.unregister_engine(again.engine.uuid, died=True)
    [fail] = actions
    assert isinstance(fail, Fail) and isinstance(fail.error, TaskKilledEngines)
    assert isinstance(fail.error, EngineError)
    assert f"engines {first_engine.id}, {again.engine.id}" in str(fail.error) and "task_kill_limit = 2" in str(fail.error)


def two_engines_with_tasks(n: int, targets: list[int]) -> tuple[Hub, list[TaskRecord]]:
    """A hub (task_kill_limit 1) with engines 0 and 1 and ``n`` load-balanced tasks with retries."""
    hub = Hub(MemoryStore(), LeastLoad(), task_kill_limit=1)
    hub.register_engine(b"a")
    hub.register_engine(b"b")
    recs = [rec(hub, i) for i in range(n)]
    for r in recs:
        hub.submit_balanced(r, {"retries": 3, "targets": targets})
    return hub, recs


def test_an_engine_that_unregistered_charges_no_task() -> None:
    hub, recs = two_engines_with_tasks(4, [0])
    hub.unregister_engine(b"a", died=False)  # it unregistered: nobody is charged
    assert all(r.killed is None for r in recs)


def test_the_oldest_unanswered_task_is_the_one_charged() -> None:
    from ipcluster.error import TaskKilledEngines

    hub, recs = two_engines_with_tasks(3, [0, 1])
    on_a = [m for m in hub.engines[0].tasks]
    _, actions = hub.unregister_engine(b"a", died=True)
    fails = [a for a in actions if isinstance(a, Fail)]
    assert [f.record.msg_id for f in fails] == on_a[:1]
    assert isinstance(fails[0].error, TaskKilledEngines)
    assert all(hub.store.get(m).killed is None for m in on_a[1:])  # type: ignore[union-attr]


def test_the_running_task_is_the_first_unanswered_one_on_its_engine() -> None:
    from ipcluster.error import TaskAborted

    hub = make_hub()
    hub.register_engine(b"a")
    first, second = rec(hub, 1), rec(hub, 2)
    hub.submit_balanced(first, {})
    hub.submit_balanced(second, {})
    assert hub.running_on(first) is hub.engines[0] and hub.running_on(second) is None  # queued behind
    [(fail, info)] = hub.abort_running(["m1", "m2", "nope"])
    assert fail.record is first and info.id == 0 and isinstance(fail.error, TaskAborted)
    assert fail.status == "aborted" and "while it ran on engine 0" in str(fail.error)
    direct = rec(hub, 3)
    hub.submit_direct(direct, 0)
    assert hub.running_on(first) is None  # direct and load-balanced tasks outstanding: unknown
