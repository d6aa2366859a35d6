"""``serialize_object`` / ``deserialize_object``: an object as a list of sendable buffers.

The documented ipyparallel contract: ``serialize_object(obj)`` returns a list whose first item
is a pickle and whose other items are raw data buffers (a numpy array's memory, a large
``bytes``), so a transport sends them as separate frames without copying them into the pickle;
``deserialize_object(buffers, g=None)`` consumes what one object needs from the front of the list
and returns ``(obj, remaining_buffers)``, so several objects can share one list.

How it is built here: the object (and, for a short list, tuple or dict, each of its items) is
canned (:mod:`.canning`); data of at least ``buffer_threshold`` bytes is taken out of the wrappers
and appended after the pickle; the rest is pickled by :func:`ipcluster.protocol.serialize.
serialize_object` (plain pickle, cloudpickle for what lives in ``__main__``), whose own protocol-5
out-of-band buffers (arrays nested deeper than the canning looked) come right after the pickle.
The layout is [pickle, protocol-5 buffers..., canned data buffers...].
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from typing import Any

from ..protocol import serialize as _wire
from .canning import CannedObject, can, uncan, uncan_dict, uncan_sequence

__all__ = [
    "PICKLE_PROTOCOL",
    "deserialize_object",
    "pack_apply_message",
    "serialize_object",
    "unpack_apply_message",
]

PICKLE_PROTOCOL = _wire.PICKLE_PROTOCOL

#: containers whose items serialize_object cans one by one (sets are left whole: their order
#: after unpickling need not match, and the data buffers are matched up by order)
_ENTERED = (list, tuple)


def _nbytes(buf: Any) -> int:
    return memoryview(buf).nbytes


def _view(buf: Any) -> Any:
    """A received ``zmq.Frame`` exposes its memory as ``.buffer``; anything else is used as is."""
    inner = getattr(buf, "buffer", None)
    return inner if inner is not None else buf


def _can_top(obj: Any, item_threshold: int) -> Any:
    if type(obj) in _ENTERED and len(obj) < item_threshold:
        return type(obj)(can(item) for item in obj)
    if type(obj) is dict and len(obj) < item_threshold:
        return {k: can(v) for k, v in obj.items()}
    return can(obj)


def _wrappers(canned: Any) -> Iterator[CannedObject]:
    """The canned wrappers at the top of ``canned``, in a fixed order."""
    if isinstance(canned, CannedObject):
        yield canned
    elif type(canned) in _ENTERED:
        for item in canned:
            if isinstance(item, CannedObject):
                yield item
    elif type(canned) is dict:
        for item in canned.values():
            if isinstance(item, CannedObject):
                yield item


def serialize_object(obj: Any, buffer_threshold: int = 1024, item_threshold: int = 64) -> list[Any]:
    """Serialize ``obj`` into a list of sendable buffers.

    Parameters
    ----------
    obj:
        The object to serialize.
    buffer_threshold:
        Data buffers of at least this many bytes travel as their own item of the list instead
        of inside the pickle (no copy is made of them).
    item_threshold:
        Lists, tuples and dicts with fewer items than this have each item canned (so arrays in
        them travel as buffers); longer ones are pickled whole.

    Returns
    -------
    list
        ``[pickle, *buffers]``; give it to :func:`deserialize_object`.
    """
    canned = _can_top(obj, item_threshold)
    taken: list[Any] = []
    for wrapper in _wrappers(canned):
        for i, buf in enumerate(wrapper.buffers):
            if _nbytes(buf) >= buffer_threshold:
                taken.append(buf)
                wrapper.buffers[i] = None
    frames = _wire.serialize_object(canned)
    frames.extend(taken)
    return frames


class _Counting:
    """Hands pickle the out-of-band buffers it asks for, one at a time, and counts them."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = items
        self.used = 0

    def __iter__(self) -> "_Counting":
        return self

    def __next__(self) -> Any:
        if self.used >= len(self.items):
            raise StopIteration
        self.used += 1
        return _view(self.items[self.used - 1])


def deserialize_object(buffers: Sequence[Any], g: dict[str, Any] | None = None) -> tuple[Any, list[Any]]:
    """Rebuild an object made by :func:`serialize_object` from the front of ``buffers``.

    Parameters
    ----------
    buffers:
        A list of bytes-like objects (or received ``zmq.Frame``); the first is the pickle.
    g:
        The namespace interactively defined functions are rebuilt in (their globals).

    Returns
    -------
    (obj, remaining)
        The object, and the buffers it did not use (the next object's, if any).
    """
    items = list(buffers)
    if not items:
        raise ValueError("deserialize_object needs at least one buffer (the pickle)")
    rest = _Counting(items[1:])
    canned = _wire.loads(_view(items[0]), buffers=rest)
    remaining = items[1 + rest.used :]
    for wrapper in _wrappers(canned):
        for i, buf in enumerate(wrapper.buffers):
            if buf is None:
                if not remaining:
                    raise ValueError("deserialize_object: fewer buffers than the pickle says")
                wrapper.buffers[i] = _view(remaining.pop(0))
    if type(canned) in _ENTERED:
        obj = uncan_sequence(canned, g)
    elif type(canned) is dict:
        obj = uncan_dict(canned, g)
    else:
        obj = uncan(canned, g)
    return obj, remaining


def pack_apply_message(
    f: Any, args: Sequence[Any], kwargs: dict[str, Any], buffer_threshold: int = 1024, item_threshold: int = 64
) -> list[Any]:
    """Pack a function and its arguments as buffers: ``[f, info, *arg_buffers, *kwarg_buffers]``.

    ``info`` (a pickle) says how many buffers each argument took. Every argument is canned on
    its own, but containers in them are not entered. Unpack with :func:`unpack_apply_message`.
    """
    f_bufs = serialize_object(f, buffer_threshold, item_threshold)
    arg_bufs = [serialize_object(a, buffer_threshold, 0) for a in args]
    keys = sorted(kwargs)
    kw_bufs = [serialize_object(kwargs[k], buffer_threshold, 0) for k in keys]
    info = {
        "nf": len(f_bufs),
        "narg_bufs": [len(b) for b in arg_bufs],
        "kw_keys": keys,
        "nkw_bufs": [len(b) for b in kw_bufs],
    }
    out = [f_bufs[0], pickle.dumps(info, PICKLE_PROTOCOL), *f_bufs[1:]]
    for bufs in (*arg_bufs, *kw_bufs):
        out.extend(bufs)
    return out


def unpack_apply_message(
    bufs: Sequence[Any], g: dict[str, Any] | None = None, copy: bool = True
) -> tuple[Any, list[Any], dict[str, Any]]:
    """Inverse of :func:`pack_apply_message`: ``(f, args, kwargs)``. ``copy`` is accepted for
    compatibility; buffers are never copied here."""
    items = list(bufs)
    info = pickle.loads(_view(items[1]))
    f, _ = deserialize_object([items[0], *items[2 : 1 + info["nf"]]], g)
    pos = 1 + info["nf"]
    args = []
    for n in info["narg_bufs"]:
        value, _ = deserialize_object(items[pos : pos + n], g)
        args.append(value)
        pos += n
    kwargs = {}
    for key, n in zip(info["kw_keys"], info["nkw_bufs"]):
        kwargs[key], _ = deserialize_object(items[pos : pos + n], g)
        pos += n
    return f, args, kwargs
