"""``rc.history`` ("list of msg_ids": what this client submitted, in order), history indices
as jobs (``rc.wait([-1])``, ``rc.get_result(-1)``), and ``rc.hub_history()`` ("just like the
Client, the Hub has a history ... of all clients"; "any msg_id returned here is a valid
argument to get_result")."""

from __future__ import annotations

from typing import Any


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
