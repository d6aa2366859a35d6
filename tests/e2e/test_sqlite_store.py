"""The SQLite task store with real processes: results outlive the client that submitted them and
the controller that routed them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import ipcluster as ipp
from ipcluster import error

from .conftest import start, stop

#: results larger than 10 kB are routed but not kept: their status and times still are
ARGS = ["--sqlitedb", "--ControllerApp.max_result_size=10000"]


def test_results_outlive_their_client_and_a_controller_restart(tmp_path: Path) -> None:
    cluster, rc = start(tmp_path, controller_args=ARGS)
    try:
        lview = rc.load_balanced_view()
        with lview.temp_flags(label="stored"):
            ok = lview.apply_async(pow, 2, 10)
        ars = {"ok": ok, "bad": lview.apply_async(divmod, 1, 0),
               "big": lview.apply_async(bytes, 20_000), "purged": lview.apply_async(pow, 3, 3)}
        ids = {name: ar.msg_ids[0] for name, ar in ars.items()}
        for ar in ars.values():
            ar.wait(timeout=20)
        assert ars["ok"].get() == 1024 and len(ars["big"].get()) == 20_000
        rc.purge_results(ids["purged"])
        rc.close()
        other = cluster.connect_client_sync()  # a new client: the results come from the controller
        try:
            assert other.get_result(ids["ok"]).get(timeout=10) == 1024
            assert [r["msg_id"] for r in other.db_query({"label": "stored"}, keys="label")] == [ids["ok"]]
        finally:
            other.close()
    finally:
        stop(cluster, rc)

    db = tmp_path / "profile" / "security" / "tasks.db"
    assert db.exists()
    cluster, rc = start(tmp_path, n=1, controller_args=ARGS)  # a new controller on the same profile
    try:
        assert rc.get_result(ids["ok"]).get(timeout=10) == 1024
        with pytest.raises(error.RemoteError) as info:
            rc.get_result(ids["bad"]).get(timeout=10)
        assert info.value.ename == "ZeroDivisionError"
        with pytest.raises(error.IPClusterError, match="did not keep the result"):
            rc.get_result(ids["big"]).get(timeout=10)
        status = rc.result_status([ids["ok"], ids["bad"], ids["big"]])
        assert status["pending"] == [] and sorted(status["completed"]) == sorted([ids["ok"], ids["bad"], ids["big"]])
        recs = {r["msg_id"]: r for r in rc.db_query({"msg_id": {"$in": list(ids.values())}})}
        assert sorted(recs) == sorted([ids["ok"], ids["bad"], ids["big"]])
        assert recs[ids["ok"]]["result_content"] == {"status": "ok"} and recs[ids["ok"]]["started"] is not None
        assert recs[ids["bad"]]["result_content"]["ename"] == "ZeroDivisionError"
        assert recs[ids["big"]]["result_header"] is None and recs[ids["big"]]["result_content"]["status"] == "ok"
        assert all(r["completed"] and r["label"] is None and r["content"] is None for r in recs.values())
        history = rc.hub_history()
        assert {ids["ok"], ids["bad"], ids["big"]} <= set(history) and ids["purged"] not in history
        with pytest.raises(Exception, match=ids["purged"]):
            rc.result_status([ids["purged"]])  # purged before the restart: gone from the file too
        assert rc.load_balanced_view().apply_sync(pow, 2, 3) == 8  # and the new controller works
    finally:
        stop(cluster, rc)


def test_a_task_store_that_is_not_a_database_stops_the_controller_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "broken.db"
    bad.write_bytes(b"not SQLite at all " * 100)
    cluster = ipp.Cluster(n=1, profile_dir=str(tmp_path / "profile"), log_level="WARN",
                          controller_args=["--sqlitedb", f"--ControllerApp.sqlite_file={bad}"])
    with pytest.raises(error.ProcessExited, match=rf"{bad}.*not a database"):
        cluster.start_controller_sync()
    cluster.stop_cluster_sync()
    assert cluster.running_pids() == []
    with pytest.raises(sqlite3.DatabaseError):  # left as it was, for its owner to look at
        sqlite3.connect(bad).execute("SELECT * FROM sqlite_master").fetchall()
