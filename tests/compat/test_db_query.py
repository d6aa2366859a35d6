"""``rc.db_query(query, keys=None)``, from ipyparallel's "IPython's Task Database": "a
dictionary query object, with keys from the TaskRecord key list, and values of either exact
values to test, or MongoDB queries"; "the default is to retrieve all keys excluding the request
and result buffers"; it "returns a list of TaskRecord dicts"; "the msg_id key will always be
included, whether requested or not". The operators are those the docs list for the emulated
stores: $lt, $gt, $lte, $gte, $ne, $in, $nin, $all, $mod, $exists."""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest

#: TaskRecord keys the docs list, which every record has (buffers only when asked)
DOCUMENTED = {"msg_id", "header", "content", "submitted", "client_uuid", "engine_uuid", "started",
              "completed", "resubmitted", "result_header", "result_content", "queue", "stdout", "stderr"}


def square(x: int) -> int:
    return x * x


def settled(rc: Any, msg_ids: list[str], keys: Any = None) -> list[dict[str, Any]]:
    """The records of finished tasks, once the controller shows them all completed.

    ipyparallel's Hub records a completion after the reply has gone to the client, so a query
    just after ``get()`` may find a task not completed yet, or not recorded at all: poll, up to
    10 s (the last resort of the style guide; ipcluster records the reply before forwarding it,
    so there the first query is the last)."""
    deadline = time.monotonic() + 10
    while True:
        recs = rc.db_query({"msg_id": {"$in": msg_ids}}, keys=keys)
        if len(recs) == len(msg_ids) and all(r.get("completed") for r in recs):
            return recs
        assert time.monotonic() < deadline, f"not all completed in the controller's records: {recs}"
        time.sleep(0.02)


def test_records_by_msg_id_have_the_documented_keys(rc: Any, lview: Any) -> None:
    ar = lview.map_async(square, range(4), chunksize=1)
    assert ar.get(timeout=20) == [0, 1, 4, 9]
    recs = settled(rc, ar.msg_ids)
    assert isinstance(recs, list) and sorted(r["msg_id"] for r in recs) == sorted(ar.msg_ids)
    for rec in recs:
        assert DOCUMENTED <= set(rec)
        assert "buffers" not in rec and "result_buffers" not in rec
        assert rec["queue"] == "task" and rec["resubmitted"] is None
        assert rec["header"]["msg_id"] == rec["msg_id"]
        assert rec["result_content"]["status"] == "ok"
        for key in ("submitted", "started", "completed"):
            assert isinstance(rec[key], datetime.datetime) and rec[key].tzinfo is not None
        assert rec["submitted"] <= rec["started"] <= rec["completed"]
        assert rec["engine_uuid"] == ar.metadata[ar.msg_ids.index(rec["msg_id"])]["engine_uuid"]
    assert {r["client_uuid"] for r in recs} == {rc.session.session}
    # a plain value alone: ipyparallel 9.2's in-memory store compares every plain value with the
    # query's last value (docs/migrating.md), so {"client_uuid": u, "msg_id": {...}} finds nothing there
    mine = rc.db_query({"client_uuid": rc.session.session}, keys="client_uuid")
    assert set(ar.msg_ids) <= {r["msg_id"] for r in mine}


def test_keys_select_and_msg_id_always_comes(rc: Any, dview: Any) -> None:
    ar = rc[:].apply_async(square, 3)
    ar.get(timeout=20)
    recs = settled(rc, ar.msg_ids, keys=["completed"])
    assert sorted(sorted(r) for r in recs) == [["completed", "msg_id"]] * 2
    assert {r["msg_id"] for r in rc.db_query({"msg_id": ar.msg_ids[0]}, keys="engine_uuid")} == {ar.msg_ids[0]}
    (rec,) = rc.db_query({"msg_id": ar.msg_ids[0]}, keys=["result_buffers", "buffers"])
    assert isinstance(rec["result_buffers"], list) and len(rec["result_buffers"]) == 1
    assert isinstance(rec["buffers"], list) and rec["buffers"]


def test_operators_and_datetimes(rc: Any, lview: Any) -> None:
    ar = lview.map_async(square, range(3), chunksize=1)
    ar.get(timeout=20)
    ids = ar.msg_ids
    q = {"msg_id": {"$in": ids}}
    recs = {r["msg_id"]: r for r in settled(rc, ids)}
    assert len(rc.db_query({**q, "completed": {"$ne": None}})) == 3
    assert rc.db_query({**q, "completed": None}) == []
    assert [r["msg_id"] for r in rc.db_query({"msg_id": {"$nin": ids[1:]}, **{"completed": {"$ne": None}}},
                                               keys="msg_id") if r["msg_id"] in ids] == ids[:1]
    assert [r["msg_id"] for r in rc.db_query({"msg_id": {"$eq": ids[0]}}, keys="msg_id")] == ids[:1]
    latest = max(r["completed"] for r in recs.values())
    assert [r["msg_id"] for r in rc.db_query({**q, "completed": {"$gte": latest}}, keys="msg_id")] == \
        [m for m, r in recs.items() if r["completed"] == latest]
    assert len(rc.db_query({**q, "completed": {"$lte": latest}}, keys="msg_id")) == 3
    earliest = min(r["completed"] for r in recs.values())
    assert [r["msg_id"] for r in rc.db_query({**q, "completed": {"$lt": latest, "$gte": earliest}}, keys="msg_id")] \
        == [m for m, r in recs.items() if r["completed"] < latest]
    assert len(rc.db_query({**q, "submitted": {"$lte": latest}}, keys="msg_id")) == 3
    naive = latest.astimezone().replace(tzinfo=None)  # a naive datetime is local time
    assert len(rc.db_query({**q, "completed": {"$gte": naive}}, keys="msg_id")) == 1
    hour_ago = datetime.datetime.now() - datetime.timedelta(hours=1)
    assert len(rc.db_query({**q, "submitted": {"$gte": hour_ago}, "started": {"$lt": latest}}, keys="msg_id")) == 3
    # not $gt: ipyparallel 9.2's in-memory store answers it as $lt (docs/migrating.md)
    uuid = recs[ids[0]]["engine_uuid"]
    assert {r["engine_uuid"] for r in rc.db_query({**q, "engine_uuid": uuid}, keys="engine_uuid")} == {uuid}
    assert len(rc.db_query({**q, "engine_uuid": {"$exists": True}}, keys="msg_id")) == 3
    assert rc.db_query({**q, "no_such_key": 1}) == []  # a key records lack equals nothing
    assert len(rc.db_query({**q, "no_such_key": {"$exists": False}}, keys="msg_id")) == 3


def test_records_by_label(rc: Any, lview: Any) -> None:
    amr = lview.map_async(square, range(4), chunksize=1, label="compat-db-label")
    amr.get(timeout=20)
    other = lview.map_async(square, range(2), chunksize=1)
    other.get(timeout=20)
    settled(rc, amr.msg_ids + other.msg_ids)
    recs = rc.db_query({"label": "compat-db-label"}, keys=["label", "completed"])
    assert sorted(r["msg_id"] for r in recs) == sorted(amr.msg_ids)
    assert {r["label"] for r in recs} == {"compat-db-label"} and all(r["completed"] for r in recs)


def test_an_unknown_operator_is_an_error_naming_it(rc: Any) -> None:
    with pytest.raises(Exception, match=r"\$foo"):
        rc.db_query({"msg_id": {"$foo": 1}})
    assert rc.db_query({"msg_id": "no such task"}) == []  # the client still answers
