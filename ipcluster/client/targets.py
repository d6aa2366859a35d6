"""Engine ids from what users pass as ``targets``: pure, so it is tested without a cluster."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ..error import NoEnginesError


def resolve_targets(targets: Any, engines: Collection[int]) -> list[int]:
    """Engine ids from ``'all'``/None, an id (negative: from the end), a slice of the sorted
    ids, or a list/range of ids, checked against the registered ``engines``."""
    if targets is None or targets == "all":
        if not engines:
            raise NoEnginesError("no engines are registered with the controller")
        return sorted(engines)
    if isinstance(targets, bool):
        raise TypeError("targets cannot be a bool")
    if isinstance(targets, int):
        if targets < 0:
            ids = sorted(engines)
            if not ids:
                raise NoEnginesError("no engines are registered with the controller")
            targets = ids[targets]
        if targets not in engines:
            raise NoEnginesError(f"engine {targets} is not registered (registered: {sorted(engines)})")
        return [targets]
    if isinstance(targets, slice):
        ids = sorted(engines)[targets]
        if not ids:
            raise NoEnginesError(f"no registered engines in {targets} (registered: {sorted(engines)})")
        return ids
    if isinstance(targets, (list, tuple, range, set)):
        out = []
        for t in targets:
            if isinstance(t, bool) or not isinstance(t, int):
                raise TypeError(f"engine ids are ints, not {t!r}")
            if t not in engines:
                raise NoEnginesError(f"engine {t} is not registered (registered: {sorted(engines)})")
            out.append(t)
        if not out:
            raise NoEnginesError("no engines in an empty targets list")
        return out
    raise TypeError(f"targets must be 'all', an int, a slice or a list of ints, not {targets!r}")
