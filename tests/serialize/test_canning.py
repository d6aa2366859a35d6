"""ipcluster.serialize beyond what ipyparallel documents (the documented part is in tests/compat)."""

from __future__ import annotations

import pickle

import pytest

from ipcluster.serialize import CannedArray, can, deserialize_object, serialize_object, uncan

np = pytest.importorskip("numpy")


def roundtrip(obj):
    out, rest = deserialize_object(serialize_object(obj))
    assert rest == []
    return out


def test_padded_structured_dtype_roundtrips() -> None:
    dtype = np.dtype({"names": ["x", "y"], "formats": ["i4", "f8"], "offsets": [0, 8], "itemsize": 24})
    a = np.zeros(4, dtype=dtype)
    a["y"] = 1.5
    b = roundtrip(a)
    assert b.dtype == dtype and (b["y"] == 1.5).all()


def test_array_subclasses_are_left_to_pickle() -> None:
    m = np.ma.masked_array([1, 2, 3], mask=[0, 1, 0])
    assert not isinstance(can(m), CannedArray)
    back = roundtrip(m)
    assert isinstance(back, np.ma.MaskedArray) and back.mask.tolist() == [False, True, False]


def test_non_contiguous_and_zero_dimensional_arrays() -> None:
    t = np.arange(6).reshape(2, 3).T
    assert (uncan(can(t)) == t).all()
    z = np.array(5)
    assert uncan(can(z)).shape == () and uncan(can(z)) == 5


def test_canned_array_shares_memory_until_pickled() -> None:
    a = np.arange(10_000)
    bufs = serialize_object(a)
    assert np.shares_memory(np.frombuffer(bufs[-1], dtype=a.dtype), a)  # no copy on the way out
    c = can(a)
    back = uncan(pickle.loads(pickle.dumps(c)))  # a still attached buffer travels inside the pickle
    assert (back == a).all()


def test_received_frames_are_used_without_copy() -> None:
    zmq = pytest.importorskip("zmq")
    a = np.arange(5000, dtype="float64")
    frames = [zmq.Frame(bytes(b)) for b in serialize_object(a)]  # as a socket hands them over
    back, rest = deserialize_object(frames)
    assert rest == [] and (back == a).all()


def test_deserialize_needs_a_pickle() -> None:
    with pytest.raises(ValueError):
        deserialize_object([])
