"""``rc.history`` ("list of msg_ids": what this client submitted, in order), history indices
as jobs (``rc.wait([-1])``, ``rc.get_result(-1)``), and ``rc.hub_history()`` ("just like the
Client, the Hub has a history ... of all clients"; "any msg_id returned here is a valid
argument to get_result")."""

from __future__ import annotations

from typing import Any

from .target import IS_IPCLUSTER


def square(x: int) -> int:
    return x * x


def test_history_lists_submitted_msg_ids_in_order(rc: Any, lview: Any, dview: Any) -> None:
    first = lview.apply_async(square, 2)
    second = rc[:].apply_async(square, 3)
    assert rc.history[-3:] == first.msg_ids + second.msg_ids
    assert rc.wait([-1, -2, -3], timeout=20) is True
    assert rc.get_result(-3).get(timeout=20) == 4


def test_hub_history_has_this_clients_tasks(rc: Any, lview: Any) -> None:
    ar = lview.apply_async(square, 5)
    ar.get(timeout=20)
    hub = rc.hub_history()
    assert ar.msg_ids[0] in hub
    assert rc.get_result(hub[hub.index(ar.msg_ids[0])]).get(timeout=20) == 25


def test_purged_results_leave_rc_results(rc: Any, lview: Any) -> None:
    """``purge_local_results(jobs)``: "Clears the client caches of results and their metadata";
    ``purge_results`` purges the local and the hub's copies."""
    kept, local, both = (lview.apply_async(square, x) for x in (1, 2, 3))
    for ar in (kept, local, both):
        ar.get(timeout=20)
    cached = {kept.msg_ids[0], local.msg_ids[0], both.msg_ids[0]} <= set(rc.results)
    # ipyparallel 9.2 leaves rc.results empty for results an AsyncResult received; ipcluster keeps them
    assert cached or not IS_IPCLUSTER
    rc.purge_local_results(local)
    rc.purge_results(both)
    assert local.msg_ids[0] not in rc.results and local.msg_ids[0] not in rc.metadata
    assert both.msg_ids[0] not in rc.results
    if cached:
        assert rc.results[kept.msg_ids[0]] == 1
