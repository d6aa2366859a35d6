"""``rc.db_query`` on a real cluster: by label, by msg_id, by time, with keys, and bad queries."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

import ipcluster as ipp
from ipcluster import error


def square(x: int) -> int:
    return x * x


def wait_for_file(path: str) -> bool:
    """Runs on an engine: until the test creates ``path`` (a bounded poll, 20 s at most)."""
    import os
    import time
    deadline = time.monotonic() + 20
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_labelled_map_is_found_by_its_label(rc: ipp.Client) -> None:
    lview = rc.load_balanced_view()
    before = datetime.datetime.now(datetime.timezone.utc)
    lview.map_sync(square, range(3))  # unlabelled: not found below
    amr = lview.map_async(square, range(8), chunksize=2, label="dbq-squares")
    assert amr.get(timeout=20) == [x * x for x in range(8)]
    recs = rc.db_query({"label": "dbq-squares"})
    assert [r["msg_id"] for r in recs] == amr.msg_ids  # exactly its tasks, oldest first
    uuids = {info["uuid"] for info in rc.engine_info.values()}
    for rec in recs:
        assert rec["label"] == "dbq-squares" and rec["engine_uuid"] in uuids and rec["queue"] == "task"
        assert before <= rec["submitted"] <= rec["started"] <= rec["completed"]
        assert rec["completed"].tzinfo is not None and rec["result_content"]["status"] == "ok"
        assert rec["header"]["msg_type"] == "apply_request" and isinstance(rec["header"]["date"], datetime.datetime)
        assert "buffers" not in rec and "result_buffers" not in rec
    by_engine = rc.db_query({"label": "dbq-squares", "engine_uuid": recs[0]["engine_uuid"]}, keys=["engine_uuid"])
    assert {r["engine_uuid"] for r in by_engine} == {recs[0]["engine_uuid"]}
    assert rc.db_query({"label": "no such label"}) == []


def test_by_msg_id_with_keys_and_times(rc: ipp.Client, tmp_path: Path) -> None:
    dview = rc[:]
    ar = dview.apply_async(square, 3)
    ar.get(timeout=20)
    go = tmp_path / "go"
    pending = rc.load_balanced_view().apply_async(wait_for_file, str(go))
    try:
        ids = [*ar.msg_ids, *pending.msg_ids]
        recs = rc.db_query({"msg_id": {"$in": ids}}, keys=["msg_id", "completed"])
        assert [sorted(r) for r in recs] == [["completed", "msg_id"]] * 3
        done = {r["msg_id"]: r["completed"] for r in recs}
        assert done[pending.msg_ids[0]] is None and all(done[m] for m in ar.msg_ids)
        finished = rc.db_query({"msg_id": {"$in": ids}, "completed": {"$ne": None}}, "queue")
        assert [r["msg_id"] for r in finished] == ar.msg_ids and {r["queue"] for r in finished} == {"mux"}
        first = min(done[m] for m in ar.msg_ids)
        later = rc.db_query({"msg_id": {"$in": ids}, "completed": {"$gt": first}}, keys="msg_id")
        assert [r["msg_id"] for r in later] == [m for m in ar.msg_ids if done[m] > first]
        naive = first.astimezone().replace(tzinfo=None)  # local time, as ipyparallel takes it
        assert len(rc.db_query({"msg_id": {"$in": ids}, "completed": {"$gte": naive}}, keys="msg_id")) == 2
        (rec,) = rc.db_query({"msg_id": ar.msg_ids[0]}, keys=["result_buffers", "buffers"])
        assert len(rec["result_buffers"]) == 1 and len(rec["buffers"]) >= 2
    finally:
        go.touch()
    assert pending.get(timeout=20) is True
    (rec,) = rc.db_query({"msg_id": pending.msg_ids[0]}, keys="completed")
    assert rec["completed"] is not None


def test_bad_queries_raise_a_clear_error(rc: ipp.Client) -> None:
    with pytest.raises(error.ControllerError, match=r"unknown query operator '\$regex'"):
        rc.db_query({"msg_id": {"$regex": "x"}})
    with pytest.raises(error.ControllerError, match=r"\$in \(on 'msg_id'\) takes a list"):
        rc.db_query({"msg_id": {"$in": 5}})
    with pytest.raises(error.ControllerError, match="a query is a dict"):
        rc.db_query("msg_id")  # type: ignore[arg-type]
    assert rc.db_query({"msg_id": "none such"}) == []  # the client still works
