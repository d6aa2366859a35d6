"""Turning Python objects into message buffers and back.

Pickle protocol 5 with out-of-band buffers: a numpy array or a bytes-like object larger than a few
KiB travels as its own ZeroMQ frame, pointing at the array's memory, so it is never copied in
Python on the way out, and on the way in it is rebuilt on top of the received frame (writable).

Plain ``pickle`` is tried first because it is the fastest; it stores functions and classes *by
reference*, which fails on an engine for anything defined interactively (``__main__``), as a
lambda, or as a closure. Those — and anything plain pickle refuses — go through cloudpickle, which
stores them by value. Detecting a ``__main__`` reference costs one substring search of the pickle.

The by-value pickler is a per-process choice, as in ipyparallel's ``serialize``: cloudpickle
(the default; :func:`use_cloudpickle`) or dill (:func:`use_dill`, see :mod:`.dillpickle`), which
also unpickles everything this process receives. ``view.use_dill()`` switches a client and its
engines together. Plain pickle stays first either way, so the switch costs nothing per task.
"""

from __future__ import annotations

import io
import pickle
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from ..error import SerializationError
from .codepickle import pickler_class

PICKLE_PROTOCOL = 5
#: buffers smaller than this are kept inside the pickle (a frame per tiny buffer costs more)
OOB_THRESHOLD = 4096


def dumps_by_value(obj: Any, buffer_callback: Any) -> bytes:
    """cloudpickle, keeping code objects' file names and source lines (see :mod:`.codepickle`)."""
    out = io.BytesIO()
    pickler_class()(out, protocol=PICKLE_PROTOCOL, buffer_callback=buffer_callback).dump(obj)
    return out.getvalue()


class _Cache(Protocol):
    def clear(self) -> None: ...


#: this process's by-value pickler and unpickler (see :func:`use_dill`)
_by_value: Callable[[Any, Any], bytes] = dumps_by_value
_loads: Callable[..., Any] = pickle.loads
_serializer = "cloudpickle"
#: caches of pickles made by the pickler in use (a client's function pickles), cleared on a switch
_caches: "weakref.WeakSet[Any]" = weakref.WeakSet()


def serializer() -> str:
    """What this process pickles by value and unpickles with: ``"cloudpickle"`` or ``"dill"``."""
    return _serializer


def use_dill() -> None:
    """Pickle by value with dill, and unpickle with it, in this process (ImportError naming
    ``pip install dill`` if it is missing)."""
    from .dillpickle import functions

    global _by_value, _loads, _serializer
    _by_value, _loads = functions()
    _serializer = "dill"
    _switched()


def use_cloudpickle() -> None:
    """Back to the default: plain pickle, cloudpickle for what it cannot pickle by reference."""
    global _by_value, _loads, _serializer
    _by_value, _loads, _serializer = dumps_by_value, pickle.loads, "cloudpickle"
    _switched()


def remember_cache(cache: _Cache) -> None:
    """Have ``cache.clear()`` called when the pickler changes (held weakly)."""
    _caches.add(cache)


def _switched() -> None:
    for cache in list(_caches):
        cache.clear()


def _describe(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."


def serialize_object(obj: Any, buffers: list[Any] | None = None, *, by_value: bool = False) -> list[Any]:
    """Pickle ``obj``; return ``[pickle, *out_of_band_buffers]``.

    ``by_value=True`` forces cloudpickle (used for the function of an apply request).
    Raises SerializationError naming the object when it cannot be pickled at all.
    """
    oob: list[Any] = []

    def keep(buf: pickle.PickleBuffer) -> bool:
        raw = buf.raw()
        if raw.nbytes < OOB_THRESHOLD:
            return True  # serialize in-band
        oob.append(raw)
        return False

    data: bytes | None = None
    if not by_value:
        try:
            data = pickle.dumps(obj, PICKLE_PROTOCOL, buffer_callback=keep)
        except Exception:
            data = None
        else:
            if b"__main__" in data:
                data = None
        if data is None:
            oob.clear()
    if data is None:
        try:
            data = _by_value(obj, keep)
        except Exception as e:
            raise SerializationError(f"cannot serialize {_describe(obj)}: {type(e).__name__}: {e}") from e
    out = buffers if buffers is not None else []
    out.append(data)
    out.extend(oob)
    return out


def _view(frame: Any) -> Any:
    """A buffer view of a received frame, without copying (zmq.Frame exposes ``.buffer``)."""
    buf = getattr(frame, "buffer", None)
    return buf if buf is not None else frame


def deserialize_object(frames: Iterator[Any]) -> Any:
    """Unpickle the next object from an iterator of frames, consuming its out-of-band buffers."""
    data = next(frames)
    try:
        return _loads(_view(data), buffers=(_view(b) for b in frames))
    except ModuleNotFoundError as e:
        _check_dill(e)
        raise


def _load_one(it: Iterator[Any]) -> Any:
    data = next(it)
    try:
        return _loads(_view(data), buffers=_LazyBuffers(it))
    except ModuleNotFoundError as e:
        _check_dill(e)
        raise


def loads(data: Any, buffers: Iterable[Any] = ()) -> Any:
    """Unpickle ``data`` (and its out-of-band ``buffers``) with this process's unpickler."""
    try:
        return _loads(data, buffers=buffers)
    except ModuleNotFoundError as e:
        _check_dill(e)
        raise


def _check_dill(e: ModuleNotFoundError) -> None:
    """Raise a SerializationError that says what to do when ``e`` means the pickle came from dill
    (a function from ``__main__`` refers to ``__builtin__.__main__``) and this process does not
    unpickle with it."""
    if e.name == "__builtin__" and _serializer != "dill":
        raise SerializationError(
            "this was pickled with dill (use_dill()), but this process unpickles without it: "
            "call use_dill() here too (view.use_dill() switches a client and the view's engines)") from e


class _LazyBuffers:
    """Feeds pickle exactly as many out-of-band buffers as it asks for, leaving the rest."""

    __slots__ = ("_it",)

    def __init__(self, it: Iterator[Any]) -> None:
        self._it = it

    def __iter__(self) -> "_LazyBuffers":
        return self

    def __next__(self) -> Any:
        return _view(next(self._it))


def pack_apply(f: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> list[Any]:
    """Buffers of an ``apply_request``: the function (by value), then ``(args, kwargs)``."""
    if not callable(f):
        raise TypeError(f"apply needs a callable, got {_describe(f)}")
    bufs = serialize_object(f, by_value=_needs_value(f))
    serialize_object((tuple(args), dict(kwargs)), bufs)
    return bufs


def _needs_value(f: Any) -> bool:
    """Functions importable by name on the engine go by reference; others by value."""
    module = getattr(f, "__module__", None)
    qualname = getattr(f, "__qualname__", "")
    return module in (None, "__main__") or "<" in qualname


def unpack_apply(frames: Sequence[Any]) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """Inverse of :func:`pack_apply` (on the engine)."""
    it = iter(frames)
    f = _load_one(it)
    args, kwargs = _load_one(it)
    return f, args, kwargs


def serialize_result(obj: Any) -> list[Any]:
    return serialize_object(obj)


def deserialize_result(frames: Sequence[Any]) -> Any:
    return _load_one(iter(frames))


def nbytes(frames: Iterable[Any]) -> int:
    """Total payload size of buffers (for stores that bound memory by bytes)."""
    total = 0
    for f in frames:
        total += f.nbytes if hasattr(f, "nbytes") else len(f)
    return total


def _unpickle_prepickled(frames: list[Any]) -> Any:
    return deserialize_object(iter(frames))


class PrePickled:
    """An object pickled once, when wrapped, and sent as those bytes every time after.

    ipyparallel's ``PrePickled``: for an argument reused in many calls
    (``view.apply(f, PrePickled(big))``), so the work of pickling it is done once. The engine
    receives the object itself, not the wrapper. Large buffers (numpy arrays) stay out of band,
    pointing at the original's memory, which must not change while the wrapper is in use.
    """

    def __init__(self, obj: Any) -> None:
        data, *oob = serialize_object(obj)
        self.frames: list[Any] = [data, *(pickle.PickleBuffer(b) for b in oob)]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_unpickle_prepickled, (self.frames,))

    def __repr__(self) -> str:
        return f"<PrePickled: {nbytes(memoryview(f) for f in self.frames)} bytes>"
