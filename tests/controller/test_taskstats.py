"""Pure tests of the controller's task statistics: groups counted in items, per-engine counts by
function, bounded failures with tracebacks, and queries that return only what changed."""

from __future__ import annotations

import json

from ipcluster.controller import taskstats
from ipcluster.controller.db import MemoryStore
from ipcluster.controller.hub import Hub
from ipcluster.controller.schedulers import LeastLoad
from ipcluster.controller.taskstats import TaskStats, trim_traceback


def make_hub() -> Hub:
    hub = Hub(MemoryStore(), LeastLoad())
    for uuid in (b"a", b"b"):
        hub.register_engine(uuid)
    return hub


def submit(hub: Hub, n: int, md: dict, target: object = None, client: bytes = b"c") -> None:
    header = {"msg_id": f"m{n}", "msg_type": "apply_request"}
    if target is not None:
        header["target"] = target
    rec = hub.new_record(header, client, [b"frames"], md)
    if target is None:
        hub.submit_balanced(rec, md)
    else:
        hub.submit_direct(rec, target)


def reply(hub: Hub, uuid: bytes, n: int, status: str = "ok", **content: object) -> None:
    hub.finish(uuid, f"m{n}", [b"{}"] * 4, {"status": status, **content})


def test_a_chunked_map_counts_items_per_group_and_per_engine() -> None:
    hub = make_hub()
    for n, items in enumerate([10, 10, 5]):  # a map of 25 items in three parts
        submit(hub, n, {"fn": "work", "map": 1, **({"items": items} if items != 1 else {})})
    first = hub.stats.query(0)
    (gid, group), = first["groups"].items()
    assert gid.startswith("map:") and gid.endswith(":1")
    assert group == {"kind": "map", "name": "work", "fn": "work", "n": 25, "d": 0, "f": 0, "t": group["t"]}
    reply(hub, b"a", 0)
    reply(hub, b"b", 1, "error", ename="ValueError", evalue="bad item", traceback="Traceback\n  line\nValueError: bad item")
    later = hub.stats.query(first["rev"])
    assert later["groups"][gid]["d"] == 10 and later["groups"][gid]["f"] == 10
    assert later["engines"] == {"0": {"work": [10, 0]}, "1": {"work": [0, 10]}}
    (failure,) = later["failures"]
    assert failure["engine_id"] == 1 and failure["ename"] == "ValueError" and failure["evalue"] == "bad item"
    assert failure["traceback"].endswith("ValueError: bad item") and failure["group_id"] == gid
    assert failure["msg_id"] == "m1" and failure["fn"] == "work"
    # nothing changed: nothing but the next revision
    quiet = hub.stats.query(later["rev"])
    assert quiet == {"rev": later["rev"] + 1, "groups": {}, "engines": {}, "failures": []}


def test_groups_by_label_map_and_function() -> None:
    hub = make_hub()
    submit(hub, 0, {"fn": "f"})
    submit(hub, 1, {"fn": "f"}, target=0)  # direct or load-balanced: the same function's group
    submit(hub, 2, {"fn": "g", "label": "fit"})
    submit(hub, 3, {"fn": "h", "label": "fit"})
    submit(hub, 4, {"fn": "f", "map": 7})
    submit(hub, 5, {"fn": "f", "map": 7}, client=b"other")  # another client's map 7 is another map
    submit(hub, 6, {})  # an old client: counted as 'apply'
    groups = hub.stats.query(0)["groups"]
    assert {gid: (g["kind"], g["name"], g["n"]) for gid, g in groups.items()} == {
        "fn:f": ("fn", "f", 2),
        "label:fit": ("label", "fit", 2),
        f"map:{b'c'.hex()}:7": ("map", "f", 1),
        f"map:{b'other'.hex()}:7": ("map", "f", 1),
        "fn:apply": ("fn", "apply", 1),
    }


def test_retries_count_at_the_engine_but_the_group_counts_the_outcome() -> None:
    hub = make_hub()
    submit(hub, 1, {"fn": "flaky", "retries": 1})
    reply(hub, b"a", 1, "error", ename="OSError", evalue="once")  # retried on engine 1
    reply(hub, b"b", 1)
    out = hub.stats.query(0)
    assert out["groups"]["fn:flaky"] == {**out["groups"]["fn:flaky"], "n": 1, "d": 1, "f": 0}
    assert out["engines"] == {"0": {"flaky": [0, 1]}, "1": {"flaky": [1, 0]}}
    assert out["failures"] == []  # the task did not fail in the end


def test_failures_the_controller_answers_count_too() -> None:
    hub = make_hub()
    submit(hub, 1, {"fn": "slow"}, target=0)
    submit(hub, 2, {"fn": "slow"}, target=1)
    info, actions = hub.unregister_engine(b"a")  # engine 0 dies with task m1
    (fail,) = actions
    rec = fail.record
    content = {"status": "error", "ename": "EngineError", "evalue": "engine 0 went away", "traceback": ""}
    hub.fail_part(rec, content, 0)  # what Router.answer_error does
    hub.fail(rec, [b"{}"] * 4, "error", "EngineError")
    out = hub.stats.query(0)
    assert out["groups"]["fn:slow"]["f"] == 1 and out["groups"]["fn:slow"]["n"] == 2
    assert [(f["ename"], f["engine_id"]) for f in out["failures"]] == [("EngineError", 0)]
    assert "0" not in out["engines"]  # counts of engines that are gone are dropped
    aborted = {"status": "aborted", "ename": "TaskAborted", "evalue": "", "traceback": ""}
    hub.fail_part(hub.store.get("m2"), aborted, 1)
    out = hub.stats.query(out["rev"])
    assert out["groups"]["fn:slow"]["f"] == 2 and out["failures"] == []  # an abort is not a failure to read about


def test_a_broadcast_counts_one_item_per_engine() -> None:
    hub = make_hub()
    submit(hub, 1, {"fn": "setup"}, target=[0, 1])
    reply(hub, b"a", 1)
    reply(hub, b"b", 1)
    out = hub.stats.query(0)
    assert (out["groups"]["fn:setup"]["n"], out["groups"]["fn:setup"]["d"]) == (2, 2)
    assert out["engines"] == {"0": {"setup": [1, 0]}, "1": {"setup": [1, 0]}}


def test_every_table_is_bounded() -> None:
    stats = TaskStats()
    for n in range(taskstats.GROUP_LIMIT + 50):
        tag = stats.submitted("apply_request", {"fn": f"f{n % 200}", "map": n}, b"c", float(n))
        if n % 2 == 0:
            stats.answered(tag, 0, "error", {"ename": "E", "evalue": "x" * 1000, "traceback": "t\n" * 500}, f"m{n}", 1.0)
    assert len(stats.groups) == taskstats.GROUP_LIMIT
    assert len(stats.functions) == taskstats.FUNCTION_LIMIT
    assert stats.submitted("apply_request", {"fn": "brand-new"}, b"c", 0.0)[1] == taskstats.OTHER
    out = stats.query(0)
    assert len(out["failures"]) == taskstats.FAILURE_LIMIT
    assert all(len(f["evalue"]) == taskstats.EVALUE_CHARS for f in out["failures"])
    assert all(len(f["traceback"]) <= taskstats.TRACEBACK_CHARS + 10 for f in out["failures"])
    # finished groups were forgotten first: the unfinished (odd) maps are all still there
    unfinished = [n for n in range(taskstats.GROUP_LIMIT + 50) if n % 2]
    assert {("map", b"c", n) for n in unfinished} <= set(stats.groups)
    assert len(json.dumps(out)) < 100_000


def test_tracebacks_keep_their_first_and_last_lines_without_colours() -> None:
    lines = [f"\x1b[0;31mline {i}\x1b[0m" for i in range(100)]
    text = trim_traceback(lines)
    kept = text.split("\n")
    assert kept[0] == "line 0" and kept[-1] == "line 99" and "\x1b" not in text
    assert kept[taskstats.TRACEBACK_HEAD] == f"... ({100 - taskstats.TRACEBACK_HEAD - taskstats.TRACEBACK_TAIL} lines) ..."
    assert trim_traceback("short\ntraceback\n") == "short\ntraceback"
    assert trim_traceback(None) == ""


def test_two_readers_each_get_every_change() -> None:
    stats = TaskStats()
    tag = stats.submitted("apply_request", {"fn": "f"}, b"c", 0.0)
    a = stats.query(0)
    b = stats.query(0)
    stats.answered(tag, 0, "ok", {})
    a2 = stats.query(a["rev"])
    b2 = stats.query(b["rev"])
    for out in (a2, b2):
        assert out["groups"]["fn:f"]["d"] == 1 and out["engines"] == {"0": {"f": [1, 0]}}
