"""Code objects pickled by value keep their file name, and bring their source lines along.

A function defined in a notebook cell, a lambda or a closure travels by value (cloudpickle). Two
things then break its remote traceback:

- cloudpickle 3.1.3 and later rewrite every pickled code object's ``co_filename`` to
  ``<dynamic-code>``, so the traceback no longer says where the code came from;
- the engine has no copy of the source: a cell exists only in the client's ``linecache``, and a
  module file may not exist on the engine's host at all. Without the source, the traceback shows
  file and line number but not the failing line.

So code objects are pickled here instead of by cloudpickle: ``marshal`` (what ``.pyc`` files are
made of) keeps every field, the file name included, and nested code objects with it. Beside it
travel the source lines that the function spans, read from the client's ``linecache`` (which holds
IPython's cells) when they are at most :data:`MAX_SOURCE_BYTES`. The engine puts them into its own
``linecache`` under the same file name, so ``traceback`` prints them as for any local file. A
file the engine can read itself is left to ``linecache`` as usual.

This costs nothing per task in a loop: the client reuses a function's pickle while the function
is unchanged (:mod:`ipcluster.client.funcpickle`), and the engine reuses the unpickled function.
"""

from __future__ import annotations

import linecache
import marshal
import os
import types
from collections import ChainMap
from collections.abc import Callable, Iterator
from typing import Any

#: source lines larger than this (bytes) stay behind; the traceback then names file and line only
MAX_SOURCE_BYTES = 16 * 1024
#: file names whose lines this module put into the engine's linecache, oldest first (bounded)
MAX_FILES = 2000

_registered: dict[str, None] = {}


def _code_tree(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_tree(const)


def source_span(code: types.CodeType) -> tuple[int, list[str]] | None:
    """``(first line number, lines)`` of the source ``code`` was compiled from, if cheap to get.

    The span runs from the first line of the definition to the last line any instruction of the
    code, or of code nested in it, comes from. ``None`` when the source is not in ``linecache``
    (nor a readable file) or is larger than :data:`MAX_SOURCE_BYTES`.
    """
    filename = code.co_filename
    if not filename or filename == "<dynamic-code>":
        return None
    lines = linecache.getlines(filename)
    if not lines:
        return None
    first = code.co_firstlineno
    last = first
    for c in _code_tree(code):
        for _start, _end, line in c.co_lines():
            if line is not None and line > last:
                last = line
    span = lines[first - 1 : last]
    if not span or sum(map(len, span)) > MAX_SOURCE_BYTES:
        return None
    return first, span


def register_source(filename: str, first: int, span: list[str]) -> None:
    """Make ``linecache`` on this process return ``span`` for lines ``first`` onwards of ``filename``.

    Entries that ``linecache`` or IPython made themselves (a file read from disk, a cell of this
    process's own shell) are never touched, and a real file this process can read is read from
    disk instead. Several functions from one cell or file fill in one entry.
    """
    entry = linecache.cache.get(filename)
    if filename not in _registered:
        if entry is not None or (not filename.startswith("<") and os.path.exists(filename)):
            return
        lines: list[str] = []
    else:
        lines = list(entry[2]) if entry is not None and len(entry) == 4 else []
    end = first - 1 + len(span)
    if len(lines) < end:
        lines.extend("\n" for _ in range(end - len(lines)))
    lines[first - 1 : end] = span
    # mtime None: linecache.checkcache() keeps the entry (it cannot be re-read from disk)
    linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
    _registered.pop(filename, None)
    _registered[filename] = None
    while len(_registered) > MAX_FILES:
        old = next(iter(_registered))
        del _registered[old]
        linecache.cache.pop(old, None)


def load_code(data: bytes, source: tuple[str, int, list[str]] | None) -> types.CodeType:
    """Unpickle a code object made by :func:`reduce_code` (runs on the engine)."""
    code = marshal.loads(data)
    if source is not None:
        register_source(*source)
    if not isinstance(code, types.CodeType):
        raise TypeError(f"expected a code object, unmarshalled {type(code).__name__}")
    return code


def reduce_code(code: types.CodeType) -> tuple[Any, ...]:
    """Pickle ``code`` whole (file name included) with its source lines, for :func:`load_code`."""
    try:
        data = marshal.dumps(code)
    except ValueError:  # a constant marshal cannot write (code built by hand): cloudpickle's way
        return _fallback_reduce(code)
    span = source_span(code)
    source = None if span is None else (code.co_filename, span[0], span[1])
    return load_code, (data, source)


def _fallback_reduce(code: types.CodeType) -> tuple[Any, ...]:
    reducer = _cloudpickle_code_reducer()
    if reducer is None:
        raise ValueError(f"cannot pickle code object {code.co_name!r}")
    result: tuple[Any, ...] = reducer(code)
    return result


def _cloudpickle_code_reducer() -> Callable[[types.CodeType], tuple[Any, ...]] | None:
    import cloudpickle

    table = getattr(cloudpickle.Pickler, "dispatch_table", None) or {}
    reducer: Callable[[types.CodeType], tuple[Any, ...]] | None = table.get(types.CodeType)
    return reducer


_pickler_class: Any = None


def pickler_class() -> Any:
    """``cloudpickle.Pickler`` with code objects pickled by :func:`reduce_code` (built on first use)."""
    global _pickler_class
    if _pickler_class is None:
        import copyreg

        import cloudpickle

        base = getattr(cloudpickle.Pickler, "dispatch_table", None) or copyreg.dispatch_table

        class Pickler(cloudpickle.Pickler):  # type: ignore[misc]
            dispatch_table = ChainMap({types.CodeType: reduce_code}, base)

        _pickler_class = Pickler
    return _pickler_class
