"""Client pieces that need no sockets: partitioning, references, decorators, dependencies, the
function-pickle cache, metadata timestamps."""

from __future__ import annotations

import datetime
import pickle
import types

import numpy as np
import pytest

import ipcluster as ipp
from ipcluster.client import map as partitioning
from ipcluster.client.dependency import Dependency, dependent, render_dependency, required
from ipcluster.client.funcpickle import FunctionPickleCache
from ipcluster.client.namespace import in_user_namespace, interactive
from ipcluster.client.remotefunction import ParallelFunction, RemoteFunction, getname
from ipcluster.client.task import Task
from ipcluster.error import UnmetDependency


# -- partitioning ------------------------------------------------------------------------------
@pytest.mark.parametrize("n,q", [(10, 3), (3, 5), (0, 2), (7, 7), (100, 8)])
def test_bounds_cover_everything_in_contiguous_balanced_parts(n: int, q: int) -> None:
    parts = [partitioning.bounds(n, p, q) for p in range(q)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    sizes = [hi - lo for lo, hi in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_split_lists_ranges_tuples_and_skips_empty_parts() -> None:
    assert partitioning.split([list(range(5))], 2) == [(0, ([0, 1, 2],)), (1, ([3, 4],))]
    assert partitioning.split([range(3)], 2) == [(0, (range(0, 2),)), (1, (range(2, 3),))]
    assert partitioning.split([(1, 2)], 4) == [(0, ((1,),)), (1, ((2,),))]
    # several sequences: cut to the shortest, as builtin map
    assert partitioning.split([[1, 2, 3], "ab"], 2) == [(0, ([1], "a")), (1, ([2], "b"))]
    # iterables without len become lists
    assert partitioning.split([(x for x in range(4))], 2) == [(0, ([0, 1],)), (1, ([2, 3],))]


def test_array_parts_are_views() -> None:
    a = np.arange(10.0)
    parts = partitioning.split([a], 3)
    assert [len(p[1][0]) for p in parts] == [4, 3, 3]
    assert all(np.shares_memory(p[1][0], a) for p in parts)
    assert (partitioning.join([p[1][0] for p in parts]) == a).all()


def test_chunks_and_auto_chunksize() -> None:
    assert partitioning.chunks([range(5)], 2) == [(range(0, 2),), (range(2, 4),), (range(4, 5),)]
    assert list(partitioning.iter_chunks([iter(range(5)), "abcde"], 2)) == [
        ([0, 1], ["a", "b"]), ([2, 3], ["c", "d"]), ([4], ["e"])]
    assert list(partitioning.iter_chunks([[]], 3)) == []
    assert partitioning.auto_chunksize(0, 2) == 1
    assert partitioning.auto_chunksize(10, 2) == 1
    assert partitioning.auto_chunksize(100_000, 2) == 1563
    assert partitioning.auto_chunksize(40, 2) == 1  # fewer items than 32 per engine: one each


def test_join_and_flatten() -> None:
    assert partitioning.flatten([[1, 2], [3], []]) == [1, 2, 3]
    assert partitioning.join([[1], (2, 3)]) == [1, 2, 3]
    assert partitioning.join([1, 2]) == [1, 2]  # not sequences: the parts themselves
    assert partitioning.join([]) == []


def test_map_chunk_accepts_a_pickled_function() -> None:
    assert partitioning.map_chunk(pickle.dumps(abs), [-1, -2]) == [1, 2]
    assert partitioning.call_part(len, [1, 2, 3]) == 3


# -- references and interactive functions --------------------------------------------------------
def test_reference_carries_the_name_and_pickles_small() -> None:
    ref = ipp.Reference("data")
    assert ref.__ipcluster_reference__ == "data" and ref.name == "data"
    assert pickle.loads(pickle.dumps(ref)) == ref
    assert "data" in repr(ref)
    with pytest.raises(TypeError):
        ipp.Reference(3)  # type: ignore[arg-type]


def test_interactive_marks_main_and_in_user_namespace_rebinds(monkeypatch: pytest.MonkeyPatch) -> None:
    def f() -> object:
        return value  # type: ignore[name-defined]  # noqa: F821

    assert interactive(f) is f and f.__module__ == "__main__"
    user = types.ModuleType("__main__")
    user.__dict__["value"] = 42
    monkeypatch.setitem(__import__("sys").modules, "__main__", user)
    assert in_user_namespace(f)() == 42
    assert in_user_namespace(len) is len


# -- decorators ------------------------------------------------------------------------------------
class RecordingView:
    block = False

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def _really_apply(self, f, args, kwargs, block=None, **flags):  # type: ignore[no-untyped-def]
        self.calls.append(("apply", f, args, kwargs, block, flags))
        return "ar"

    def _parallel(self, f, sequences, kwargs, elementwise, block=None, **options):  # type: ignore[no-untyped-def]
        self.calls.append(("parallel", f, sequences, elementwise, block, options))
        return "amr"


def test_remote_and_parallel_decorators_call_the_view() -> None:
    view = RecordingView()

    @ipp.remote(view, block=True, retries=2)
    def f(x: int) -> int:
        return x

    assert isinstance(f, RemoteFunction) and f.__name__ == "f"
    assert f(1, ) == "ar"
    assert view.calls[-1] == ("apply", f.func, (1,), {}, True, {"retries": 2})

    @ipp.parallel(view)
    def g(xs: list[int]) -> list[int]:
        return xs

    assert isinstance(g, ParallelFunction)
    assert g([1, 2]) == "amr" and view.calls[-1][3] is False and view.calls[-1][4] is False
    assert g.map([1, 2]) == "amr" and view.calls[-1][3] is True
    with pytest.raises(ValueError):
        ipp.parallel(view, dist="r")(g.func)
    assert getname(g.func) == "g" and getname(object()) == "object"


# -- dependencies -----------------------------------------------------------------------------------
def test_dependency_check_and_wire_form() -> None:
    class AR:
        msg_ids = ["c"]

    dep = Dependency(["a", "b"])
    assert dep.check({"a", "b"}) and not dep.check({"a"})
    assert dep.render() == ["a", "b"]
    anyone = Dependency(["a", "b"], all=False)
    assert anyone.check({"b"}) and not anyone.check(set())
    on_failure = Dependency(["a"], success=False, failure=True)
    assert on_failure.check(set(), {"a"}) and not on_failure.check({"a"})
    assert on_failure.unreachable({"a"}) and not on_failure.unreachable(set(), {"a"})
    assert on_failure.render() == {"msg_ids": ["a"], "all": True, "success": False, "failure": True}
    assert pickle.loads(pickle.dumps(on_failure)).as_dict() == on_failure.as_dict()
    assert render_dependency([AR(), "d"]) == ["c", "d"]
    assert render_dependency(None) == []
    with pytest.raises(ValueError):
        Dependency(["a"], success=False, failure=False)
    with pytest.raises(TypeError):
        render_dependency(3.5)


def test_depend_and_require_wrap_the_function() -> None:
    never = ipp.depend(lambda: False)(lambda: 1)
    always = ipp.depend(lambda x: x, True)(lambda: 2)
    assert isinstance(never, dependent)
    with pytest.raises(UnmetDependency):
        never()
    assert always() == 2

    def uses_json() -> str:
        return json.dumps(1)  # type: ignore[name-defined]  # noqa: F821

    wrapped = ipp.require("json", scale=3)(uses_json)
    assert isinstance(wrapped, required) and wrapped.modules == ["json"]
    g = dict(uses_json.__globals__)
    try:
        assert wrapped() == "1"
    finally:
        uses_json.__globals__.clear()
        uses_json.__globals__.update(g)
    with pytest.raises(UnmetDependency):
        ipp.require("no_such_module_anywhere")(lambda: 1)()
    wrapped_again = pickle.loads(pickle.dumps(ipp.require("json")(len)))
    assert wrapped_again([1]) == 1


# -- the function pickle cache -------------------------------------------------------------------------
def _main(f):  # type: ignore[no-untyped-def]
    f.__module__ = "__main__"
    return f


def test_pickle_cache_reuses_until_something_the_function_reads_changes() -> None:
    cache = FunctionPickleCache()
    ns: dict = {"__builtins__": __builtins__, "K": 1}
    exec("def f(x):\n    return x + K\n", ns)
    f = _main(ns["f"])
    first = cache.dumps(f)
    assert cache.dumps(f) == first and len(cache._entries) == 1
    ns["K"] = 2  # a global it reads changed: pickled afresh, with the new value
    second = cache.dumps(f)
    assert second != first
    assert pickle.loads(second[0])(1) == 3
    f.__defaults__ = (5,)
    assert pickle.loads(cache.dumps(f)[0])() == 7


def test_pickle_cache_skips_mutable_globals_and_dead_functions() -> None:
    cache = FunctionPickleCache()
    ns: dict = {"__builtins__": __builtins__, "data": [1]}
    exec("def f():\n    return len(data)\n", ns)
    f = _main(ns["f"])
    cache.dumps(f)
    assert cache._entries == {}  # a list can change in place: never cached
    ns["data"].append(2)
    assert pickle.loads(cache.dumps(f)[0])() == 2
    g = _main(lambda: 1)
    cache.dumps(g)
    assert len(cache._entries) == 1
    del g
    assert cache._entries == {}
    assert pickle.loads(cache.dumps(len)[0]) is len  # by reference: not cached, still right


def test_pickle_cache_forgets_everything_when_the_pickler_changes() -> None:
    pytest.importorskip("dill")
    from ipcluster.protocol import serialize

    cache = FunctionPickleCache()
    g = _main(lambda: 1)
    by_cloudpickle = cache.dumps(g)
    assert len(cache._entries) == 1
    serialize.use_dill()
    try:
        assert cache._entries == {}  # a cloudpickle pickle is not what a dill process sends
        assert cache.dumps(g) != by_cloudpickle and b"dill" in cache.dumps(g)[0]
    finally:
        serialize.use_cloudpickle()
    assert cache._entries == {} and cache.dumps(g) == by_cloudpickle


# -- metadata ---------------------------------------------------------------------------------------
def test_metadata_times_are_aware_utc_datetimes_built_from_the_floats_kept() -> None:
    t = Task("m0", "apply", 0, 100.25)
    assert t.metadata()["started"] is None and t.metadata()["received"] is None  # no reply yet
    t.reply_md = {"engine_id": 0, "started": 100.5, "completed": 101.75, "status": "ok"}
    t.received = 102.0
    md = t.metadata()
    utc = datetime.timezone.utc
    for key, stamp in (("submitted", 100.25), ("started", 100.5), ("completed", 101.75), ("received", 102.0)):
        assert type(md[key]) is datetime.datetime and md[key].tzinfo is utc, key
        assert md[key] == datetime.datetime.fromtimestamp(stamp, utc) and md[key].timestamp() == stamp, key
    assert md["completed"] - md["started"] == datetime.timedelta(seconds=1.25)
    assert md["submitted"].isoformat() == "1970-01-01T00:01:40.250000+00:00"
    assert t.stamp("started") == 100.5 and t.submitted == 100.25  # kept as floats


def test_task_metadata_and_outputs() -> None:
    t = Task("m1", "apply", 0, 10.0, {"after": ["x"]})
    t.add_output("stream", {"name": "stdout", "text": "a"})
    t.add_output("stream", {"name": "stdout", "text": "b\n"})
    t.add_output("stream", {"name": "stderr", "text": "oops"})
    t.add_output("display_data", {"data": {"text/plain": "d"}, "metadata": {}})
    t.reply_md = {"engine_id": 1, "started": 11.0, "completed": 12.0, "status": "ok"}
    md = t.metadata()
    assert md.stdout == "ab\n" and md["stderr"] == "oops" and md["engine_id"] == 1
    assert md["outputs"] == [{"data": {"text/plain": "d"}, "metadata": {}}]
    assert (md["completed"] - md["started"]).total_seconds() == 1.0 and md["after"] == ["x"]
    t.add_output("clear_output", {"wait": False})
    assert t.text("stdout") == "" and t.metadata()["outputs"] == []


def test_adaptive_chunks_grow_for_cheap_items_and_shrink_for_slow_ones() -> None:
    from ipcluster.client.map import AdaptiveChunks, iter_chunks

    sizer = AdaptiveChunks(target=0.01, largest=64)
    sizes = []
    for _ in range(10):
        sizes.append(sizer())
        sizer.observe(sizer(), 1e-5 * sizer())  # 10 µs per item: far below the target
    assert sizes[:4] == [1, 2, 4, 8] and sizer() == 64  # doubling, capped
    sizer.observe(64, 5.0)  # suddenly slow: halve, not collapse
    assert sizer() == 32
    sizer.observe(3, 100.0)  # a short last chunk is ignored
    assert sizer() == 32
    chunks = list(iter_chunks(([1, 2, 3, 4, 5], "abcde"), sizer))
    assert chunks == [([1, 2, 3, 4, 5], ["a", "b", "c", "d", "e"])]


def test_activating_a_view_finds_the_magics_through_the_registry_they_fill(monkeypatch: pytest.MonkeyPatch) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from ipcluster.client import activation
    from ipcluster.error import IPClusterError

    monkeypatch.setattr(InteractiveShell, "_instance", None)  # a shell an earlier test made is not "running"
    with pytest.raises(IPClusterError, match="running IPython"):  # no IPython here: the magics say so
        activation.activate(object())
    assert activation._activator is not None, "loading the magics registered how to activate a view"


def test_composite_error_shows_tb_limit_tracebacks() -> None:
    from ipcluster import error

    errs = [error.RemoteError("ValueError", f"bad {i}", f"Traceback:\n  line {i}\nValueError: bad {i}",
                              {"engine_id": i}) for i in range(3)]
    ce = error.CompositeError("one or more exceptions", errs)
    ce.tb_limit = 1
    text = "\n".join(ce.render_traceback())
    assert "line 0" in text and "line 1" not in text and "2 more traceback(s)" in text
    ce.tb_limit = 3
    text = "\n".join(ce.render_traceback())
    assert all(f"line {i}" in text for i in range(3)) and "more traceback" not in text
    assert all(f"[{i}:apply]: Traceback:" in text for i in range(3))
    assert "line 2" in "\n".join(ce.render_traceback(2)) and "line 0" not in "\n".join(ce.render_traceback(2))
