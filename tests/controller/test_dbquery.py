"""Pure tests of ``db_request``'s matcher and records (:mod:`ipcluster.controller.dbquery`)."""

from __future__ import annotations

from typing import Any

import pytest

from ipcluster.controller import dbquery
from ipcluster.controller.db import MemoryStore
from ipcluster.controller.dbquery import QueryError, compile_query
from ipcluster.controller.hub import Hub
from ipcluster.controller.schedulers import LeastLoad
from ipcluster.protocol.session import Session

SESSION = Session(b"key")


def matches(query: Any, record: dict[str, Any]) -> bool:
    return compile_query(query)(record.get)


REC = {"msg_id": "a", "submitted": 10.0, "completed": None, "engine_uuid": "e1", "n": 7, "tags": [1, 2, 3],
       "label": "fit-3"}


@pytest.mark.parametrize("query,expected", [
    ({}, True),
    ({"msg_id": "a"}, True),
    ({"msg_id": "b"}, False),
    ({"msg_id": {"$eq": "a"}}, True),
    ({"msg_id": {"$ne": "a"}}, False),
    ({"msg_id": {"$in": ["x", "a"]}}, True),
    ({"msg_id": {"$nin": ["x", "a"]}}, False),
    ({"submitted": {"$gt": 9.5, "$lt": 10.5}}, True),
    ({"submitted": {"$gte": 10.0, "$lte": 10.0}}, True),
    ({"submitted": {"$gt": 10.0}}, False),
    ({"completed": None}, True),
    ({"completed": {"$ne": None}}, False),
    ({"completed": {"$gt": 1.0}}, False),  # None compares with nothing
    ({"completed": {"$lt": 1.0}}, False),
    ({"msg_id": {"$gt": 1.0}}, False),  # a string and a number: does not hold, does not fail
    ({"n": {"$mod": [3, 1]}}, True),
    ({"n": {"$mod": [3, 0]}}, False),
    ({"tags": {"$all": [1, 3]}}, True),
    ({"tags": {"$all": [1, 4]}}, False),
    ({"msg_id": "a", "engine_uuid": "e2"}, False),  # every condition must hold
    ({"label": {"$glob": "fit-*"}}, True),
    ({"label": {"$glob": "fit"}}, False),
    ({"n": {"$glob": "*"}}, False),  # patterns match strings only
    ({"engine_uuid": {"$exists": True}}, True),
    ({"completed": {"$exists": False}}, True),  # None: as absent, as in ipyparallel
])
def test_operators(query: Any, expected: bool) -> None:
    assert matches(query, REC) is expected


@pytest.mark.parametrize("query,expected", [
    ({"nokey": 1}, False),
    ({"nokey": None}, True),
    ({"nokey": {"$ne": 1}}, True),
    ({"nokey": {"$ne": None}}, False),
    ({"nokey": {"$nin": [1]}}, True),
    ({"nokey": {"$in": [None]}}, True),
    ({"nokey": {"$exists": False}}, True),
    ({"nokey": {"$exists": True}}, False),
    ({"nokey": {"$lt": 5}}, False),
    ({"nokey": {"$gt": 5}}, False),
])
def test_a_key_a_record_lacks_is_none(query: Any, expected: bool) -> None:
    assert matches(query, REC) is expected


@pytest.mark.parametrize("query,message", [
    ({"msg_id": {"$regex": "a"}}, r"unknown query operator '\$regex' \(on 'msg_id'\)"),
    ({"msg_id": {"$in": "abc"}}, r"\$in \(on 'msg_id'\) takes a list"),
    ({"msg_id": {"$nin": 5}}, r"\$nin .* takes a list"),
    ({"n": {"$mod": [0, 1]}}, r"\$mod .* divisor other than 0"),
    ({"n": {"$mod": 3}}, r"\$mod .* \[divisor, remainder\]"),
    ({"label": {"$glob": 3}}, r"\$glob .* takes a pattern"),
    ({"$or": [{"msg_id": "a"}]}, r"unknown query operator '\$or' at the top level"),
    ({"n": {"$gt": 1, "lt": 2}}, r"unknown query operator 'lt'"),
    ("msg_id", r"a query is a dict"),
    ([], r"a query is a dict"),
])
def test_bad_queries_name_what_is_wrong_before_any_record_is_read(query: Any, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        compile_query(query)
    with pytest.raises(ValueError, match=message):  # a QueryError is a ValueError
        dbquery.find([], query, None, SESSION, {})


def test_keys_are_checked_and_msg_id_always_comes_first() -> None:
    assert dbquery.check_keys(None) == dbquery.check_keys([]) == dbquery.DEFAULT_KEYS
    assert "buffers" not in dbquery.DEFAULT_KEYS and "result_buffers" not in dbquery.DEFAULT_KEYS
    assert dbquery.check_keys(["completed", "msg_id", "completed"]) == ("msg_id", "completed")
    assert dbquery.check_keys("label") == ("msg_id", "label")
    with pytest.raises(QueryError, match="keys is a list"):
        dbquery.check_keys([1])
    with pytest.raises(QueryError, match="unknown record key.*'colour'"):
        dbquery.check_keys(["completed", "colour"])


def hub_with_tasks() -> tuple[Hub, list[str]]:
    """Three tasks on engine b"e0": a labelled pair (one finished with a kept reply, one
    pending) and an unlabelled finished one whose reply the store did not keep."""
    hub = Hub(MemoryStore(max_result_size=900), LeastLoad())
    hub.register_engine(b"e0")
    ids = []
    for n, label in enumerate(["fit", "fit", None]):
        md = {"fn": "f", **({"label": label} if label else {})}
        header, frames = SESSION.serialize("apply_request", {}, metadata=md, buffers=[b"fn", b"args"])
        rec = hub.new_record(header, b"client-1", request=frames, metadata=md)
        hub.submit_direct(rec, 0)
        ids.append(rec.msg_id)
    ok_md = {"engine_uuid": "e0", "started": 5.0, "completed": 6.0}
    _, reply = SESSION.serialize("apply_reply", {"status": "ok"}, metadata=ok_md, buffers=[b"result"])
    hub.finish(b"e0", ids[0], reply[1:], {"status": "ok"})
    _, big = SESSION.serialize("apply_reply", {"status": "error", "ename": "ZeroDivisionError"},
                               metadata=ok_md, buffers=[b"x" * 2000])
    hub.finish(b"e0", ids[2], big[1:], {"status": "error", "ename": "ZeroDivisionError"})
    return hub, ids


def find(hub: Hub, query: Any, keys: Any = None) -> tuple[dict[str, Any], list[Any]]:
    store = hub.store
    return dbquery.find(map(store.get, store.history()), query, keys, SESSION,  # type: ignore[arg-type]
                        {e: i.uuid for e, i in hub.engines.items()})


def test_records_of_the_store_by_label_time_and_state() -> None:
    hub, ids = hub_with_tasks()
    content, bufs = find(hub, {"label": "fit"})
    assert [r["msg_id"] for r in content["records"]] == ids[:2] and bufs == []
    assert content["buffer_lens"] is None and content["result_buffer_lens"] is None
    done, pending = content["records"]
    assert set(done) == set(dbquery.DEFAULT_KEYS)
    assert done["engine_uuid"] == "e0" and done["client_uuid"] == "client-1" and done["queue"] == "mux"
    assert done["started"] == 5.0 and done["completed"] == done["received"] >= done["submitted"]
    assert done["result_content"] == {"status": "ok"} and done["result_metadata"]["completed"] == 6.0
    assert done["metadata"] == {"fn": "f", "label": "fit"} and done["content"] == {}
    assert pending["completed"] is None and pending["started"] is None and pending["result_content"] is None
    assert [r["msg_id"] for r in find(hub, {"completed": {"$ne": None}})[0]["records"]] == [ids[0], ids[2]]
    assert [r["msg_id"] for r in find(hub, {"completed": None})[0]["records"]] == [ids[1]]
    t = done["completed"]
    assert [r["msg_id"] for r in find(hub, {"completed": {"$gt": t}})[0]["records"]] == [ids[2]]
    assert find(hub, {"label": None}, ["label"])[0]["records"] == [{"msg_id": ids[2], "label": None}]


def test_a_result_not_kept_still_has_its_status_and_buffers_come_only_when_asked() -> None:
    hub, ids = hub_with_tasks()
    (rec,) = find(hub, {"msg_id": ids[2]})[0]["records"]
    assert rec["result_content"] == {"status": "error", "ename": "ZeroDivisionError"}
    assert rec["result_header"] is None and rec["started"] is None
    content, bufs = find(hub, {"msg_id": {"$in": ids}}, ["result_buffers", "buffers"])
    assert list(content["records"][0]) == ["msg_id"]
    assert content["result_buffer_lens"] == [1, 0, 0] and content["buffer_lens"] == [2, 2, 2]
    assert [bytes(b) for b in bufs] == [b"fn", b"args", b"result", b"fn", b"args", b"fn", b"args"]


def test_a_gone_engine_is_named_by_its_kept_reply() -> None:
    hub, ids = hub_with_tasks()
    hub.unregister_engine(b"e0")
    recs = find(hub, {}, ["engine_uuid"])[0]["records"]
    assert [r["engine_uuid"] for r in recs] == ["e0", None, None]  # the last reply was not kept


def test_candidates_are_the_named_records_or_all_oldest_first() -> None:
    hub, ids = hub_with_tasks()
    store = hub.store
    assert [r.msg_id for r in dbquery.candidates({"msg_id": {"$in": [ids[2], "nope", ids[0]]}}, store.get,
                                                 store.history)] == [ids[0], ids[2]]
    assert [r.msg_id for r in dbquery.candidates({"msg_id": ids[1]}, store.get, store.history)] == [ids[1]]
    for query in ({}, {"msg_id": {"$in": ids, "$ne": ids[0]}}, {"msg_id": {"$nin": ids}}, {"label": "fit"}):
        assert [r.msg_id for r in dbquery.candidates(query, store.get, store.history)] == ids


def test_in_takes_unhashable_items_too() -> None:
    assert matches({"tags": {"$in": [[1, 2, 3], "x"]}}, REC)
    assert not matches({"tags": {"$nin": [[1, 2, 3]]}}, REC)
    assert matches({"n": {"$in": [{"a": 1}, 7]}}, REC)
