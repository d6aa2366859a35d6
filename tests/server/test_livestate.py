"""The panel's live state, without processes: samples in, views and compact deltas out."""

from __future__ import annotations

import json

from ipcluster.server.livestate import ClusterLive, TabStream, diff, merge


def qs(**engines: tuple[int, int]) -> dict[str, object]:
    """A queue_status() reply: engine id -> (queued, completed)."""
    out: dict[str, object] = {k.lstrip("e"): {"queue": q, "tasks": 0, "completed": d} for k, (q, d) in engines.items()}
    out["unassigned"] = 0
    return out


def test_diff_holds_only_changes_and_merge_restores() -> None:
    old = {"a": {"x": 1, "y": [1, 2]}, "b": 2, "gone": {"z": 1}}
    new = {"a": {"x": 1, "y": [1, 3]}, "b": 2, "c": {"k": "v"}}
    delta = diff(old, new)
    assert delta == {"a": {"y": [1, 3]}, "c": {"k": "v"}, "gone": None}
    assert merge(old, delta) == new
    assert diff(new, new) == {}


def test_engine_states_and_elapsed() -> None:
    live = ClusterLive()
    live.sample(100.0, qs(e0=(0, 0), e1=(2, 0)))
    view = live.view()
    assert view["counts"] == {"idle": 1, "busy": 1, "dead": 0}
    assert view["engines"]["1"] == {"s": "busy", "q": 2, "d": 0, "e": 0}
    live.sample(103.4, qs(e0=(0, 0), e1=(2, 0)))
    assert live.view()["engines"]["1"]["e"] == 3  # whole seconds busy with the same task
    live.sample(104.0, qs(e0=(0, 0)))  # engine 1 unregistered
    assert live.view()["counts"] == {"idle": 1, "busy": 0, "dead": 1}
    assert "1" not in live.view()["engines"]


def test_progress_throughput_and_eta_of_a_burst() -> None:
    live = ClusterLive()
    live.sample(0.0, qs(e0=(0, 5), e1=(0, 5)))  # earlier work is not part of a new burst
    assert live.view()["progress"] == {"outstanding": 0, "rate": 0.0}
    live.sample(1.0, qs(e0=(50, 5), e1=(50, 5)))
    live.sample(2.0, qs(e0=(40, 15), e1=(40, 15)))
    live.sample(3.0, qs(e0=(30, 25), e1=(30, 25)))
    progress = live.view()["progress"]
    assert progress["done"] == 40 and progress["total"] == 100 and progress["outstanding"] == 60
    assert progress["rate"] == 13.3  # 40 tasks over the 3 s of samples in the window
    assert progress["eta"] == 4.5  # 60 left at 40/3 a second
    live.sample(4.0, qs(e0=(0, 55), e1=(0, 55)))
    assert "done" not in live.view()["progress"]  # burst over
    assert live.view()["completed"] == 100


def test_stream_has_completions_per_engine_per_tick() -> None:
    live = ClusterLive()
    live.sample(0.0, qs(e0=(1, 0), e1=(1, 0)))
    live.sample(0.5, qs(e0=(1, 3), e1=(1, 0)))
    live.sample(1.0, qs(e0=(0, 4), e1=(0, 2)))
    ticks = live.stream_since(0)
    # without task statistics the stream counts tasks, under one 'function'
    assert [t[2] for t in ticks] == [{"0": {"0": 3}}, {"0": {"0": 1, "1": 2}}]
    assert live.view()["fns"] == ["tasks"]
    assert live.stream_since(ticks[0][0]) == ticks[1:]


def test_delta_of_a_busy_256_engine_cluster_is_small() -> None:
    """At 256 engines, one tick in which 8 engines finish a task changes 8 engines' entries, not 256."""
    live = ClusterLive()
    engines = {f"e{i}": (1, 0) for i in range(256)}
    live.sample(0.0, qs(**engines))
    before = live.view()
    engines.update({f"e{i}": (1, 1) for i in range(8)})
    live.sample(0.5, qs(**engines))
    delta = diff(before, live.view())
    assert len(delta["engines"]) == 8
    assert len(json.dumps(delta)) < 600
    assert len(json.dumps(live.view())) > 10 * len(json.dumps(delta))


def test_tab_stream_sends_a_snapshot_then_deltas_then_nothing() -> None:
    tab = TabStream()
    view = {"clusters": {"p:a": {"state": "running", "engines_registered": 1}}, "live": {}}
    assert tab.message(view, {}) == {"t": "snapshot", **view}
    assert tab.message(view, {}) is None  # nothing changed: nothing is sent
    later = {"clusters": {"p:a": {"state": "running", "engines_registered": 2}}, "live": {}}
    assert tab.message(later, {}) == {"t": "delta", "clusters": {"p:a": {"engines_registered": 2}}}
    gone = {"clusters": {}, "live": {}}
    assert tab.message(gone, {}) == {"t": "delta", "clusters": {"p:a": None}}
    tab.reset()  # shown again after being hidden
    assert tab.message(gone, {})["t"] == "snapshot"


def test_tab_stream_sends_each_stream_tick_once() -> None:
    tab = TabStream()
    view: dict[str, object] = {"clusters": {}, "live": {}}
    ticks = [[1, 0.5, {"0": 1}], [2, 1.0, {"1": 2}]]
    assert tab.message(view, {"p:a": ticks})["stream"] == {"p:a": ticks}
    assert tab.message(view, {"p:a": ticks}) is None
    more = [*ticks, [3, 1.5, {"0": 4}]]
    assert tab.message(view, {"p:a": more}) == {"t": "delta", "stream": {"p:a": [[3, 1.5, {"0": 4}]]}}
