"""The load-balanced view with real engines: schemes, flags, dependencies, retries, executor."""

from __future__ import annotations

import datetime
import os
import random
import signal
import time

import pytest

import ipcluster as ipp
from ipcluster import error

MILLISECOND = datetime.timedelta(milliseconds=1)


def test_map_and_apply(rc: ipp.Client) -> None:
    lview = rc.load_balanced_view()
    assert lview.apply_sync(lambda x: x + 1, 1) == 2
    assert lview.map_sync(lambda x: x * x, range(1000)) == [x * x for x in range(1000)]
    amr = lview.map_async(lambda x: x, range(100), chunksize=7, ordered=False)
    assert sorted(amr.get(timeout=20)) == list(range(100))
    assert list(lview.imap(lambda x: -x, range(50), chunksize=5)) == [-x for x in range(50)]
    pids = set(lview.map_sync(lambda x: (__import__("time").sleep(0.01), os.getpid())[1], range(20), chunksize=1))
    assert len(pids) == 2  # both engines got work


def test_targets_flag(rc: ipp.Client) -> None:
    lview = rc.load_balanced_view(targets=[1])
    assert set(lview.map_sync(lambda x: os.getpid(), range(10), chunksize=1)) == {rc[1].apply_sync(os.getpid)}
    lview = rc.load_balanced_view()
    with lview.temp_flags(targets=[0]):
        assert lview.apply_sync(os.getpid) == rc[0].apply_sync(os.getpid)


def test_timeout_and_retries(rc: ipp.Client) -> None:
    lview = rc.load_balanced_view()
    with lview.temp_flags(timeout=0.2), pytest.raises(error.TaskTimeout):
        lview.apply_sync(time.sleep, 3)
    rc[:].push({"tries": 0}, block=True)

    @ipp.interactive
    def flaky():
        global tries
        tries += 1
        if tries < 2:
            raise RuntimeError("first try fails")
        return tries

    with lview.temp_flags(retries=3, targets=[0]):
        assert lview.apply_sync(flaky) == 2


def test_after_and_follow(rc: ipp.Client) -> None:
    lview = rc.load_balanced_view()
    first = lview.apply_async(time.sleep, 0.3)
    with lview.temp_flags(after=[first]):
        second = lview.apply_async(time.time)
    assert second.get(timeout=10) >= first.metadata["completed"].timestamp() - 0.01
    with lview.temp_flags(follow=[second]):
        assert lview.apply_sync(os.getpid) == rc[second.engine_id].apply_sync(os.getpid)
    bad = lview.apply_async(lambda: 1 / 0)
    with lview.temp_flags(after=[bad]):
        dependent = lview.apply_async(lambda: "never")
    with pytest.raises(error.ImpossibleDependency):
        dependent.get(timeout=10)
    with lview.temp_flags(after=ipp.Dependency([bad], success=False, failure=True)):
        assert lview.apply_sync(lambda: "after failure") == "after failure"


def test_random_dag_runs_in_a_valid_order(rc: ipp.Client) -> None:
    rng = random.Random(3)
    n = 200
    parents = {i: sorted(rng.sample(range(i), min(i, rng.randint(0, 3)))) for i in range(n)}
    lview = rc.load_balanced_view()
    results = {}
    for i in range(n):
        with lview.temp_flags(after=[results[p] for p in parents[i]]):
            results[i] = lview.apply_async(lambda: __import__("time").time())
    done = {i: ar.get(timeout=60) for i, ar in results.items()}
    for i, ps in parents.items():
        for p in ps:
            assert results[p].metadata["completed"] <= results[i].metadata["started"] + MILLISECOND, (p, i)
    assert len(done) == n


def test_functional_dependencies(rc: ipp.Client) -> None:
    lview = rc.load_balanced_view()

    @ipp.require("json")
    def uses_json():
        return json.dumps(1)  # noqa: F821 - imported by require

    assert lview.apply_sync(uses_json) == "1"

    @ipp.require("no_such_module_anywhere")
    def impossible():
        return 1

    with pytest.raises(error.ImpossibleDependency):
        lview.apply_sync(impossible)

    @ipp.depend(lambda: False)
    def never():
        return 1

    with pytest.raises(error.ImpossibleDependency):
        lview.apply_sync(never)


def test_executor_and_broadcast(rc: ipp.Client) -> None:
    with rc.load_balanced_view().executor as ex:
        assert ex.submit(pow, 2, 5).result(timeout=10) == 32
        assert list(ex.map(abs, [-1, -2, 3])) == [1, 2, 3]
        assert list(ex.map(abs, range(-5, 5), chunksize=3)) == [abs(x) for x in range(-5, 5)]
    with rc[:].executor as ex:
        assert ex.submit(lambda: 1).result(timeout=10) == [1, 1]
        with pytest.raises(TypeError, match="no chunksize"):
            ex.map(abs, [1], chunksize=2)
    bview = rc.broadcast_view()
    assert bview.apply_sync(lambda: 3) == [3, 3]
    assert len(set(bview.apply_sync(os.getpid))) == 2


def test_resubmit_and_abort(rc: ipp.Client) -> None:
    lview = rc.load_balanced_view()
    ar = lview.apply_async(lambda: 5)
    ar.get(timeout=10)
    again = rc.resubmit(ar)
    assert again.get(timeout=10) == 5 and again.msg_ids != ar.msg_ids
    blockers = [lview.apply_async(time.sleep, 1) for _ in range(2 * 4)]
    queued = lview.apply_async(lambda: "should not run")
    rc.abort(queued)
    with pytest.raises(error.TaskAborted):
        queued.get(timeout=10)
    for b in blockers:
        b.get(timeout=20)


def test_engine_killed_mid_map_every_result_exactly_once(own) -> None:
    cluster, rc = own
    victim = rc[1].apply_sync(os.getpid)
    lview = rc.load_balanced_view()

    def work(x):
        import time

        time.sleep(0.002)
        return x

    amr = lview.map_async(work, range(1000), chunksize=1, retries=1)
    while amr.progress < 100:
        amr.wait(0.05)
    os.kill(victim, signal.SIGKILL)
    assert amr.get(timeout=60) == list(range(1000))


def test_a_map_queuing_more_tasks_than_the_record_store_holds(tmp_path) -> None:
    """More tasks queued than ``max_records``: every result arrives, and finished records make room."""
    from .conftest import start, stop

    cluster, rc = start(tmp_path, controller_args=["--ControllerApp.max_records=300"])
    try:
        amr = rc.load_balanced_view().map_async(lambda x: x * 2, range(3000), chunksize=1)
        assert amr.get(timeout=60) == [x * 2 for x in range(3000)]
        after = rc.load_balanced_view().apply_async(lambda: "after")
        assert after.get(timeout=10) == "after"
        history = rc.hub_history()  # a new record evicts the oldest finished ones
        assert len(history) == 300 and history[-1] == after.msg_ids[0]
    finally:
        stop(cluster, rc)


@pytest.mark.parametrize("scheme", ["leastload", "lru", "twobin", "weighted", "plainrandom"])
def test_every_scheme_runs_a_map_on_all_engines(scheme: str, tmp_path) -> None:
    from .conftest import start, stop

    cluster, rc = start(tmp_path, controller_args=[f"--scheme={scheme}"])
    try:
        lview = rc.load_balanced_view()
        out = lview.map_sync(lambda x: (__import__("time").sleep(0.005), __import__("os").getpid(), x),
                             range(60), chunksize=1)
        assert [x for _, _, x in out] == list(range(60))
        assert len({pid for _, pid, _ in out}) == 2
    finally:
        stop(cluster, rc)


def test_engines_joining_mid_run_get_work(tmp_path) -> None:
    from .conftest import start, stop

    cluster, rc = start(tmp_path, n=1)
    try:
        lview = rc.load_balanced_view()
        amr = lview.map_async(lambda x: (__import__("time").sleep(0.02), __import__("os").getpid())[1],
                              range(200), chunksize=1)
        cluster.start_engines_sync(1)
        rc.wait_for_engines(2, timeout=30)
        pids = amr.get(timeout=60)
        assert len(set(pids)) == 2  # the late engine took part of the queue
        late = rc[1].apply_sync(__import__("os").getpid)
        assert pids.count(late) >= 20
    finally:
        stop(cluster, rc)


def test_imap_chunks_cheap_items_and_spreads_slow_ones(rc: ipp.Client) -> None:
    lview = rc.load_balanced_view()
    assert sum(lview.imap(lambda x: x, range(200_000))) == sum(range(200_000))  # seconds, not minutes
    slow = lambda x: (__import__("time").sleep(0.02), __import__("os").getpid())[1]  # noqa: E731
    assert len(set(lview.imap(slow, range(20), ordered=False))) == 2
