"""Splitting sequences into contiguous parts for engines, and joining the results back.

Parts are slices of the input: a numpy array's parts are views of it (pickled as out-of-band
buffers, so scattering an array copies nothing in Python), a ``range``'s parts are ranges.
Anything that cannot be sliced (a generator, a set) is made a list first.

:func:`~ipcluster.protocol.interactive.map_chunk` is what an engine runs for one part of a
``map``; it is importable by name, so it travels as a reference, not by value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

# what an engine runs for one part of a map: pickled by reference, so it lives in protocol/
from ..protocol.interactive import call_part, map_chunk

__all__ = ["call_part", "map_chunk"]  # besides the helpers below


def is_array(obj: Any) -> bool:
    """Is ``obj`` a numpy array? (without importing numpy)"""
    return type(obj).__module__ == "numpy" and type(obj).__name__ == "ndarray"


def as_sequence(obj: Any) -> Any:
    """``obj`` itself when it can be sliced and measured, else ``list(obj)``."""
    if isinstance(obj, (list, tuple, range, str, bytes)) or is_array(obj):
        return obj
    if isinstance(obj, (dict, set, frozenset)) or not (hasattr(obj, "__getitem__") and hasattr(obj, "__len__")):
        return list(obj)
    return obj


def bounds(n: int, p: int, q: int) -> tuple[int, int]:
    """Start and end of the ``p``-th of ``q`` contiguous parts of ``n`` items (the first
    ``n % q`` parts get one item more)."""
    base, extra = divmod(n, q)
    lo = p * base + min(p, extra)
    return lo, lo + base + (1 if p < extra else 0)


def partition(seq: Any, p: int, q: int) -> Any:
    """The ``p``-th of ``q`` contiguous parts of ``seq``."""
    lo, hi = bounds(len(seq), p, q)
    return seq[lo:hi]


def prepare(sequences: Sequence[Any]) -> tuple[list[Any], int]:
    """Make each input sliceable; return them and the common length (the shortest, as ``map``)."""
    if not sequences:
        raise ValueError("map needs at least one sequence")
    seqs = [as_sequence(s) for s in sequences]
    return seqs, min(len(s) for s in seqs)


def split(sequences: Sequence[Any], nparts: int) -> list[tuple[int, tuple[Any, ...]]]:
    """``nparts`` contiguous parts of the zipped sequences, as ``(part index, per-sequence
    slices)``; empty parts are left out."""
    seqs, n = prepare(sequences)
    out = []
    for p in range(nparts):
        lo, hi = bounds(n, p, nparts)
        if hi > lo:
            out.append((p, tuple(s[lo:hi] for s in seqs)))
    return out


def chunks(sequences: Sequence[Any], chunksize: int) -> list[tuple[Any, ...]]:
    """Consecutive parts of ``chunksize`` items of the zipped sequences."""
    seqs, n = prepare(sequences)
    return [tuple(s[lo : lo + chunksize] for s in seqs) for lo in range(0, n, chunksize)]


def iter_chunks(sequences: Sequence[Any], chunksize: "int | Callable[[], int]") -> Iterator[tuple[list[Any], ...]]:
    """Like :func:`chunks` for iterables of unknown length, read lazily. ``chunksize`` may be a
    callable, asked before each chunk (see :class:`AdaptiveChunks`)."""
    iters = [iter(s) for s in sequences]
    size_of = chunksize if callable(chunksize) else (lambda: chunksize)
    while True:
        size = size_of()
        columns: list[list[Any]] = [[] for _ in iters]
        for _ in range(size):
            try:
                row = [next(it) for it in iters]
            except StopIteration:
                break
            for col, item in zip(columns, row):
                col.append(item)
        if not columns or not columns[0]:
            return
        yield tuple(columns)
        if len(columns[0]) < size:
            return


class AdaptiveChunks:
    """Chunk sizes for an ``imap`` whose items' cost is unknown: start with one item per task and
    steer towards ``target`` seconds of engine time per chunk (doubling or halving at most per
    step), so cheap items travel thousands to a message and slow ones one at a time."""

    def __init__(self, target: float = 0.01, largest: int = 4096) -> None:
        self.size = 1
        self.target = target
        self.largest = largest

    def __call__(self) -> int:
        return self.size

    def observe(self, items: int, seconds: float) -> None:
        """A chunk of ``items`` took ``seconds`` on its engine."""
        if items < self.size:
            return  # the short last chunk says little
        ideal = items * self.target / max(seconds, 1e-6)
        self.size = max(1, min(self.largest, int(min(max(ideal, self.size / 2), self.size * 2))))


#: load-balanced tasks per engine a map is cut into when the user gives no chunksize
TASKS_PER_ENGINE = 32


def auto_chunksize(n: int, nengines: int) -> int:
    """Items per load-balanced task when the user gave none: about ``TASKS_PER_ENGINE`` tasks
    per engine. Engines finish at most one task apart, so the balance is within about 3% of an
    engine's share (with 8 per engine, 40 tasks of 50 ms on 2 engines went as 14 tasks of 150
    ms and took 1.05 s instead of 1.0), while a long map of small items still costs a few
    messages per engine. Maps of fewer items than that send one item per task."""
    if n <= 0:
        return 1
    return max(1, -(-n // (max(nengines, 1) * TASKS_PER_ENGINE)))


def flatten(parts: Sequence[Any]) -> list[Any]:
    """Results of a map, one list per part, as one list."""
    out: list[Any] = []
    for part in parts:
        out.extend(part)
    return out


def join(parts: Sequence[Any]) -> Any:
    """Reassemble parts made by :func:`partition`: arrays are concatenated with numpy, lists and
    tuples into one list; anything else comes back as the list of parts."""
    if not parts:
        return []
    if all(is_array(p) for p in parts):
        import numpy

        return numpy.concatenate(parts)
    if all(isinstance(p, (list, tuple, range)) or is_array(p) for p in parts):
        return flatten(parts)
    return list(parts)
