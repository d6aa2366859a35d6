"""``<pkg>.serialize`` and ``<pkg>.util`` as ipyparallel documents them (pure: no cluster).

Documented contract: ``serialize_object(obj, buffer_threshold=1024, item_threshold=64)`` returns
a list of sendable buffers, data of at least ``buffer_threshold`` bytes pulled out of the pickle;
``deserialize_object(buffers, g=None)`` returns ``(obj, remaining_buffers)``; ``can`` prepares an
object for pickling and ``uncan(obj, g=None)`` inverts it.
"""

from __future__ import annotations

import datetime
import functools
import pickle

import pytest

from .target import sub

np = pytest.importorskip("numpy")
serialize = sub("serialize")
canning = sub("serialize.canning")
util = sub("util")


def roundtrip(obj, g=None):
    obj2, rest = serialize.deserialize_object(serialize.serialize_object(obj), g)
    assert rest == []
    return obj2


@pytest.mark.parametrize("obj", [1, 2.5, "text", None, [1, "a"], (1, 2), {"a": [1, 2]}, {1, 2}, b"x" * 10])
def test_plain_objects_roundtrip(obj) -> None:
    assert roundtrip(obj) == obj


def test_large_array_travels_as_its_own_buffer() -> None:
    a = np.arange(10_000, dtype="float64")
    bufs = serialize.serialize_object(a)
    assert len(bufs) >= 2
    assert any(memoryview(b).nbytes == a.nbytes for b in bufs[1:])
    b = roundtrip(a)
    assert b.dtype == a.dtype and b.shape == a.shape and (b == a).all()


def test_small_array_stays_in_the_pickle() -> None:
    assert len(serialize.serialize_object(np.arange(4))) == 1


def test_buffer_threshold_decides_what_is_pulled_out() -> None:
    data = b"y" * 5000
    assert len(serialize.serialize_object(data)) == 2
    assert len(serialize.serialize_object(data, buffer_threshold=10_000)) == 1


def test_arrays_in_a_short_container_are_pulled_out() -> None:
    obj = {"a": np.zeros(1000), "b": np.ones(1000)}
    assert len(serialize.serialize_object(obj)) == 3
    back = roundtrip(obj)
    assert (back["a"] == 0).all() and (back["b"] == 1).all()


def test_deserialize_returns_the_buffers_it_did_not_use() -> None:
    first = serialize.serialize_object([np.arange(2000), "x"])
    second = serialize.serialize_object({"k": np.ones(3000)})
    obj, rest = serialize.deserialize_object(first + second)
    assert obj[1] == "x" and (obj[0] == np.arange(2000)).all()
    assert len(rest) == len(second)
    obj2, rest2 = serialize.deserialize_object(rest)
    assert (obj2["k"] == 1).all() and rest2 == []


def test_structured_and_object_arrays() -> None:
    s = np.zeros(3, dtype=[("x", "i4"), ("y", "f8")])
    assert roundtrip(s).dtype == s.dtype
    o = np.array([1, "a", None], dtype=object)
    assert list(roundtrip(o)) == [1, "a", None]


def test_lambda_and_closure_roundtrip() -> None:
    k = 3
    assert roundtrip(lambda x: x + 1)(1) == 2
    assert roundtrip(lambda x: x * k)(2) == 6


def test_partial_roundtrip() -> None:
    p = roundtrip(functools.partial(pow, 2))
    assert isinstance(p, functools.partial) and p(10) == 1024


def test_can_wraps_what_pickle_cannot_store() -> None:
    assert isinstance(serialize.can(np.arange(3)), canning.CannedArray)
    assert isinstance(serialize.can(functools.partial(pow, 2)), canning.CannedPartial)
    assert isinstance(serialize.can(lambda: 1), canning.CannedFunction)
    assert isinstance(serialize.can(b"abc"), canning.CannedBytes)
    for plain in (5, "s", [1], {"a": 1}, str):
        assert serialize.can(plain) is plain


def test_canned_array_attributes() -> None:
    c = serialize.can(np.arange(6, dtype="int32").reshape(2, 3))
    assert c.shape == (2, 3)
    assert np.dtype(c.dtype) == np.dtype("int32")
    assert c.pickled is False
    assert len(c.buffers) == 1 and memoryview(c.buffers[0]).nbytes == 24


def test_canned_objects_pickle_with_plain_pickle() -> None:
    canned = serialize.can(lambda: 42)
    assert serialize.uncan(pickle.loads(pickle.dumps(canned)))() == 42


def test_uncan_inverts_can() -> None:
    assert list(serialize.uncan(serialize.can(np.arange(3)))) == [0, 1, 2]
    assert serialize.uncan(serialize.can(b"abc")) == b"abc"
    assert serialize.uncan(5) == 5
    assert list(serialize.uncan({"a": serialize.can(np.arange(2))})["a"]) == [0, 1]


def test_interactive_class_is_canned_and_rebuilt() -> None:
    ns: dict = {}
    exec("class A:\n    x = 1\n    def double(self):\n        return 2 * self.x\n", ns)
    A = ns["A"]
    A.__module__ = "__main__"
    canned = serialize.can(A)
    assert isinstance(canned, canning.CannedClass)
    A2 = serialize.uncan(canned)
    assert A2.__name__ == "A" and A2().double() == 2


def test_importable_class_is_left_alone() -> None:
    import collections

    assert serialize.can(collections.OrderedDict) is collections.OrderedDict


def test_uncan_rebuilds_interactive_functions_in_g() -> None:
    ns: dict = {"__name__": "__main__"}
    exec("def f():\n    return value * 2\n", ns)
    f = ns["f"]
    g = {"value": 21}
    obj, _ = serialize.deserialize_object(serialize.serialize_object(f), g)
    assert obj() == 42


def test_pack_and_unpack_apply_message() -> None:
    bufs = serialize.pack_apply_message(max, (np.arange(5000), 3), {"key": None})
    f, args, kwargs = serialize.unpack_apply_message(bufs)
    assert f is max
    assert (args[0] == np.arange(5000)).all() and args[1] == 3
    assert kwargs == {"key": None}


def test_canned_object_keys_and_hook() -> None:
    class Holder:
        pass

    h = Holder()
    h.f = lambda: 7
    c = canning.CannedObject(h, keys=["f"])
    back = serialize.uncan(c)
    assert back.f() == 7


def test_istype_is_strict() -> None:
    class MyList(list):
        pass

    assert canning.istype([], list)
    assert not canning.istype(MyList(), list)


# --- util --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("tcp://*:10101",), "tcp://127.0.0.1:10101"),
        (("tcp://0.0.0.0:10101",), "tcp://127.0.0.1:10101"),
        (("tcp://0.0.0.0:10101", "10.9.8.7"), "tcp://10.9.8.7:10101"),
        (("tcp://*:5", "localhost"), "tcp://127.0.0.1:5"),
        (("tcp://10.1.1.1:5",), "tcp://10.1.1.1:5"),
        (("tcp://0.0.0.0:5", "127.0.0.1"), "tcp://127.0.0.1:5"),
        (("ipc:///tmp/x",), "ipc:///tmp/x"),
    ],
)
def test_disambiguate_url(args, expected) -> None:
    assert util.disambiguate_url(*args) == expected


def test_utc_is_a_utc_tzinfo() -> None:
    assert util.utc.utcoffset(None) == datetime.timedelta(0)
    assert datetime.datetime(2024, 1, 1, tzinfo=util.utc).utcoffset() == datetime.timedelta(0)


def test_interactive_marks_a_function_as_defined_in_main() -> None:
    def f():
        return 1

    g = util.interactive(f)
    assert g.__module__ == "__main__" and g() == 1
