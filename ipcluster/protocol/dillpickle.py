"""dill as this process's by-value pickler (``view.use_dill()``; see :mod:`.serialize`).

dill pickles more than cloudpickle does: closures over locks, open files, weak references and
more. Functions are pickled with dill's ``recurse`` setting: a function by value carries the
globals its code reads, as with cloudpickle, rather than its whole module's namespace (which may
hold anything, a test runner's captured ``sys.stdout`` included) or a reference to "the
``__main__`` of whoever unpickles it"; the engine then runs it in its namespace as it does any
function defined interactively (:func:`~.interactive.rebind`).

What dill pickles is unpickled by dill (some of its pickles refer to ``__builtin__.__main__``,
which only its unpickler resolves), so a process that pickles with dill unpickles with dill too;
dill reads plain pickles and cloudpickle's as well.

dill pickles a numpy array inside the pickle (a copy), its own way; that happens only to
arrays inside an object plain pickle refused, since plain pickle is still tried first.

dill is optional. :func:`functions` raises an ImportError naming ``pip install dill`` (and the
interpreter that lacks it) when it is missing.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from typing import Any

PICKLE_PROTOCOL = 5

Dumps = Callable[[Any, Any], bytes]
Loads = Callable[..., Any]


def _dill() -> Any:
    try:
        import dill
    except ImportError as e:
        raise ImportError(
            f"use_dill() needs the dill package, which {sys.executable} does not have: pip install dill"
        ) from e
    return dill


def _main() -> Any:
    """The ``__main__`` module now (an engine installs its namespace there after dill may have
    been imported, and dill would otherwise keep the one it saw at import)."""
    return sys.modules["__main__"]


def functions() -> tuple[Dumps, Loads]:
    """``(dumps, loads)`` working as :mod:`.serialize` calls them: ``dumps(obj, buffer_callback)``
    with out-of-band buffers, ``loads(data, buffers=...)`` on any buffer."""
    dill = _dill()

    def dumps(obj: Any, buffer_callback: Any) -> bytes:
        out = io.BytesIO()
        pickler = dill.Pickler(out, protocol=PICKLE_PROTOCOL, buffer_callback=buffer_callback, recurse=True)
        pickler._main = _main()
        pickler.dump(obj)
        return out.getvalue()

    def loads(data: Any, *, buffers: Any = ()) -> Any:
        unpickler = dill.Unpickler(io.BytesIO(data), buffers=buffers)
        unpickler._main = _main()
        return unpickler.load()

    return dumps, loads
