"""The panel's view of a cluster's work from the controller's task statistics, without processes:
progress per map and label in items, the stream by function with failures, recent failures,
and how small the websocket's deltas stay."""

from __future__ import annotations

import json
from typing import Any

from ipcluster.server import livetasks
from ipcluster.server.livestate import ClusterLive, TabStream, diff, merge


def qs(n: int = 2, queued: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {str(i): {"queue": queued, "tasks": 0, "completed": 0} for i in range(n)}
    out["unassigned"] = 0
    return out


def stats(rev: int, groups: dict | None = None, engines: dict | None = None, failures: list | None = None) -> dict:
    return {"rev": rev, "groups": groups or {}, "engines": engines or {}, "failures": failures or []}


def group(n: int, d: int, f: int = 0, name: str = "squares", kind: str = "label", fn: str = "square") -> dict:
    return {"kind": kind, "name": name, "fn": fn, "n": n, "d": d, "f": f, "t": 0.0}


def failure(seq: int, ename: str = "ValueError", gid: str = "label:squares", engine: int = 1) -> dict:
    return {"seq": seq, "time": 100.0 + seq, "engine_id": engine, "msg_id": f"m{seq}", "group_id": gid,
            "group": "squares", "kind": "label", "fn": "square", "ename": ename, "evalue": f"bad {seq}",
            "traceback": f"Traceback (most recent call last):\n  in square\n{ename}: bad {seq}"}


def test_a_labelled_map_shows_items_done_rate_and_eta_then_done_then_goes() -> None:
    live = ClusterLive()
    # the first reply is the baseline: a map that finished before anyone watched is not shown
    live.sample(0.0, qs(), task_stats=stats(1, {"map:ab:1": group(50, 50, kind="map", name="old")},
                                            {"0": {"old": [50, 0]}}))
    assert live.view()["groups"] == {} and live.stream_since(0) == []
    live.sample(1.0, qs(queued=1), task_stats=stats(2, {"label:squares": group(100, 0)}))
    live.sample(2.0, qs(queued=1), task_stats=stats(3, {"label:squares": group(100, 40)}))
    (gid, view), = live.view()["groups"].items()
    assert view == {"name": "squares", "kind": "label", "fn": "square", "n": 100, "d": 40, "rate": 40.0, "eta": 1.5}
    before = live.view()
    live.sample(2.5, qs(queued=1), task_stats=stats(4, {"label:squares": group(100, 60, 1)}))
    delta = diff(before, live.view())
    assert delta["groups"] == {gid: {"d": 60, "f": 1, "rate": 40.7, "eta": 1.0}}
    live.sample(3.0, qs(), task_stats=stats(5, {"label:squares": group(100, 99, 1)}))
    assert live.view()["groups"][gid] == {"name": "squares", "kind": "label", "fn": "square", "n": 100, "d": 99,
                                          "f": 1, "done": True}
    live.sample(3.0 + livetasks.GROUP_LINGER_S + 1, qs(), task_stats=stats(6))
    assert live.view()["groups"] == {}


def test_the_stream_is_coloured_by_function_with_failures_apart() -> None:
    live = ClusterLive()
    live.sample(0.0, qs(), task_stats=stats(1, engines={"0": {"load": [5, 0]}}))  # baseline
    live.sample(0.5, qs(), task_stats=stats(2, engines={"0": {"load": [8, 0], "fit": [1, 0]}, "1": {"fit": [2, 1]}}))
    live.sample(1.0, qs(), task_stats=stats(3))  # nothing new: no tick
    live.sample(1.5, qs(), task_stats=stats(4, engines={"1": {"fit": [4, 1]}}))
    fns = live.view()["fns"]
    assert fns == ["load", "fit"]  # in order of appearance: colours stay put
    ticks = live.stream_since(0)
    assert [t[2:] for t in ticks] == [
        [{"0": {"0": 3}, "1": {"0": 1, "1": 2}}, {"1": 1}],  # engine 1 failed one 'fit'
        [{"1": {"1": 2}}],
    ]
    assert live.stream_since(ticks[0][0]) == ticks[1:]


def test_recent_failures_keep_their_traceback_and_repeats_are_counted() -> None:
    live = ClusterLive()
    live.sample(0.0, qs(), task_stats=stats(1))
    live.sample(0.5, qs(), task_stats=stats(2, {"label:squares": group(10, 2, 3)},
                                            failures=[failure(1), failure(2), failure(3, "KeyError")]))
    failures = live.view()["failures"]
    assert len(failures) == 2
    first, second = failures.values()
    assert first["n"] == "ValueError" and first["c"] == 2 and first["e"] == 1 and first["v"] == "bad 1"
    assert first["tb"].endswith("ValueError: bad 1") and first["g"] == "squares"
    assert first["gid"] == next(iter(live.view()["groups"]))  # the group it belongs to
    assert second["n"] == "KeyError" and "c" not in second
    live.sample(1.0, qs(), task_stats=stats(3, failures=[failure(i, f"E{i}") for i in range(4, 20)]))
    assert len(live.view()["failures"]) == livetasks.FAILURES_SHOWN  # the newest distinct ones


def test_a_tab_is_sent_each_failure_once_and_nothing_when_nothing_changed() -> None:
    live, tab = ClusterLive(), TabStream()
    live.sample(0.0, qs(), task_stats=stats(1))
    assert tab.message({"clusters": {}, "live": {"p:a": live.view()}}, {"p:a": live.stream_since(0)})["t"] == "snapshot"
    live.sample(0.5, qs(), task_stats=stats(2, {"label:squares": group(10, 2, 1)}, {"1": {"square": [2, 1]}},
                                            [failure(1)]))
    msg = tab.message({"clusters": {}, "live": {"p:a": live.view()}}, {"p:a": live.stream_since(0)})
    assert msg is not None and msg["t"] == "delta"
    (fid, sent), = msg["live"]["p:a"]["failures"].items()
    assert sent["tb"].startswith("Traceback") and msg["stream"]["p:a"][0][3] == {"1": 1}
    view = merge({"p:a": {}}, msg["live"])["p:a"]
    assert view["fns"] == ["square"]
    live.sample(1.0, qs(), task_stats=stats(3))
    # the group's rate decays as time passes with nothing finished; nothing else changes
    msg = tab.message({"clusters": {}, "live": {"p:a": live.view()}}, {"p:a": live.stream_since(0)})
    assert msg is None or set(msg["live"]["p:a"]) == {"groups"}
    for t in range(2, 40):  # the rate falls to 0 within its window; then nothing changes, nothing is sent
        live.sample(t * 0.5, qs(), task_stats=stats(t + 2))
        tab.message({"clusters": {}, "live": {"p:a": live.view()}}, {"p:a": live.stream_since(0)})
    live.sample(20.5, qs(), task_stats=stats(42))
    assert tab.message({"clusters": {}, "live": {"p:a": live.view()}}, {"p:a": live.stream_since(0)}) is None


def test_a_restarted_controller_starts_the_view_again() -> None:
    live = ClusterLive()
    live.sample(0.0, qs(), task_stats=stats(1))
    live.sample(0.5, qs(), task_stats=stats(9, {"label:squares": group(10, 2)}))
    assert live.tasks.rev == 9
    live.sample(1.0, qs(), task_stats=stats(1, {"fn:f": group(3, 0, kind="fn", name="f", fn="f")}))
    assert live.tasks.rev == 1 and [g["name"] for g in live.view()["groups"].values()] == ["f"]


def test_a_busy_256_engine_cluster_with_three_functions_sends_little() -> None:
    live = ClusterLive()
    fns = ("load", "fit", "score")
    live.sample(0.0, qs(256, 1), task_stats=stats(1))
    totals = {str(e): {fn: [0, 0] for fn in fns} for e in range(256)}
    tab = TabStream()
    tab.message({"clusters": {}, "live": {"p:a": live.view()}}, {"p:a": live.stream_since(0)})
    sizes = []
    for tick in range(1, 11):
        changed = {}
        for e in range(0, 256, 8):  # a 32nd of the engines finish something each tick
            fn = fns[(e + tick) % 3]
            totals[str(e)][fn][0] += 1
            changed[str(e)] = {fn: totals[str(e)][fn]}
        groups = {"label:fit": group(10_000, 32 * tick, name="fit", fn="fit")}
        live.sample(tick * 0.5, qs(256, 1), task_stats=stats(tick + 1, groups, changed))
        msg = tab.message({"clusters": {}, "live": {"p:a": live.view()}}, {"p:a": live.stream_since(0)})
        assert msg is not None
        # what the task statistics add (the engines' own entries are the queue status's)
        added = {k: v for k, v in msg["live"]["p:a"].items() if k != "engines"}, msg["stream"]
        sizes.append(len(json.dumps(added, separators=(",", ":"))))
    assert max(sizes) < 600, sizes  # 32 engines' cells and one group's counters, not 256 engines
