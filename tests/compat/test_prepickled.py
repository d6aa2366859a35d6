"""``ipp.PrePickled(obj)``: "a wrapper for a pre-pickled object, used for pre-emptively pickling
re-used objects to avoid pickling the same object several times". The engine's function gets the
object itself."""

from __future__ import annotations

from typing import Any

import pytest

from .target import ipp, sub

np = pytest.importorskip("numpy")


def describe(x: Any) -> tuple[str, float]:
    return type(x).__name__, float(x.sum())


def test_prepickled_argument_arrives_as_the_object(dview: Any, lview: Any) -> None:
    arr = np.arange(100_000.0)
    pp = ipp.PrePickled(arr)
    assert dview.apply_sync(describe, pp) == [("ndarray", float(arr.sum()))] * 2
    ars = [lview.apply_async(describe, pp) for _ in range(4)]  # the same bytes, sent four times
    assert [ar.get(timeout=20) for ar in ars] == [("ndarray", float(arr.sum()))] * 4


def test_prepickled_small_object(dview: Any) -> None:
    assert dview.apply_sync(len, ipp.PrePickled({"a": 1, "b": 2})) == [2, 2]


def test_prepickled_under_serialize() -> None:
    assert sub("serialize").PrePickled is ipp.PrePickled
