"""The per-process serializer switch (``use_dill()`` / ``use_cloudpickle()``), without processes."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from ipcluster.error import SerializationError
from ipcluster.protocol import dillpickle, serialize

pytest.importorskip("dill")


@pytest.fixture(autouse=True)
def default_serializer() -> Iterator[None]:
    serialize.use_cloudpickle()
    try:
        yield
    finally:
        serialize.use_cloudpickle()


def locked_scale() -> Any:
    lock = threading.Lock()

    def scale(a: Any, k: int) -> Any:
        with lock:
            return a * k

    return scale


def round_trip(obj: Any, *, by_value: bool = False) -> Any:
    frames = serialize.serialize_object(obj, by_value=by_value)
    return serialize.deserialize_object(iter(frames)), len(frames)


def test_dill_pickles_what_cloudpickle_refuses_and_plain_pickle_still_goes_first() -> None:
    scale = locked_scale()
    with pytest.raises(SerializationError, match="_thread.lock"):
        serialize.serialize_object(scale, by_value=True)
    serialize.use_dill()
    assert serialize.serializer() == "dill"
    f, _ = round_trip(scale, by_value=True)
    array = np.arange(10_000, dtype=np.float64)
    (lock, copy), _ = round_trip((threading.Lock(), array))  # plain pickle refuses the lock
    assert lock.acquire(blocking=False) and np.array_equal(f(copy, 3), array * 3)
    _, nframes = round_trip((array, 3))
    assert nframes == 2  # what plain pickle takes still goes first: the array out of band


def test_dill_carries_the_globals_a_function_reads_not_its_module() -> None:
    serialize.use_dill()
    f = locked_scale()
    data = serialize.serialize_object(f, by_value=True)[0]
    assert b"SourceFileLoader" not in data and b"EncodedFile" not in data  # not this module's namespace
    assert serialize.loads(data)(2, 21) == 42


def test_each_unpickler_reads_the_other_sides_pickles() -> None:
    by_cloudpickle = serialize.serialize_object(lambda: "cp", by_value=True)[0]
    serialize.use_dill()
    by_dill = serialize.serialize_object(lambda: "dill", by_value=True)[0]
    assert serialize.loads(by_cloudpickle)() == "cp"
    serialize.use_cloudpickle()
    assert serialize.serializer() == "cloudpickle"
    assert serialize.loads(by_dill)() == "dill"  # dill's functions unpickle anywhere dill is installed


def test_a_pickle_only_dills_unpickler_reads_says_to_call_use_dill() -> None:
    dumps, _ = dillpickle.functions()
    data = dumps(sys.modules["__main__"].__dict__, None)  # dill refers to "your __main__"
    with pytest.raises(SerializationError, match=r"use_dill\(\)"):
        serialize.loads(data)
    serialize.use_dill()
    assert serialize.loads(data) is sys.modules["__main__"].__dict__


def test_without_dill_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dill", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install dill") as info:
        serialize.use_dill()
    assert sys.executable in str(info.value)
    assert serialize.serializer() == "cloudpickle"  # nothing switched


def test_a_switch_clears_the_caches_of_pickles() -> None:
    class Cache:
        cleared = 0

        def clear(self) -> None:
            self.cleared += 1

    cache = Cache()
    serialize.remember_cache(cache)
    serialize.use_dill()
    serialize.use_cloudpickle()
    assert cache.cleared == 2
