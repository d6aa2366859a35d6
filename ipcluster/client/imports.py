"""``DirectView.sync_imports``: imports that run locally and on the engines."""

from __future__ import annotations

import builtins
import contextlib
import sys
import types
from collections.abc import Iterator
from typing import Any

from .namespace import import_names


@contextlib.contextmanager
def sync_imports(view: Any, local: bool = True, quiet: bool = False) -> Iterator[None]:
    """Every ``import`` statement written in the ``with`` block also runs on the view's engines.

    Only statements of the block itself count (imports that modules do while loading are not
    repeated remotely). With ``local=False`` a module missing here still gets imported remotely
    (the local name is then bound to an empty placeholder module). Remote ImportErrors are
    raised when the block ends.
    """
    frame = sys._getframe(2)  # the frame running the with-statement (generator, __enter__, caller)
    original = builtins.__import__
    results: list[Any] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()

    def hooked(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        if sys._getframe(1) is not frame or level != 0:
            return original(name, globals, locals, fromlist, level)
        try:
            module = original(name, globals, locals, fromlist, level)
        except ImportError:
            if local:
                raise
            module = types.ModuleType(name)
        key = (name, tuple(fromlist or ()))
        if key not in seen:
            seen.add(key)
            if not quiet:
                if fromlist:
                    print(f"importing {', '.join(fromlist)} from {name} on engine(s)")
                else:
                    print(f"importing {name} on engine(s)")
            results.append(view.apply_async(import_names, name, list(fromlist or ())))
        return module

    builtins.__import__ = hooked
    try:
        yield
    finally:
        builtins.__import__ = original
    for ar in results:
        ar.get()
