"""Launchers start and stop the processes of a cluster: one controller, sets of engines.

Backends are found by name in the ``ipcluster.launchers`` entry-point group, so a package can
add one (``--engines=slurm``) without changes here::

    [project.entry-points."ipcluster.launchers"]
    slurm = "mypackage.slurm:SlurmLauncher"
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from ..error import LauncherError
from .base import Launcher

GROUP = "ipcluster.launchers"

__all__ = ["GROUP", "Launcher", "find_launcher_class", "launcher_class_name", "launcher_names"]

# launchers that ship with ipcluster; pyproject registers them too, and this table only keeps a
# source checkout working when its installed metadata predates an entry point
_BUILTIN = {
    "local": "ipcluster.launchers.local:LocalLauncher",
    "ssh": "ipcluster.launchers.ssh:SSHEngineSetLauncher",
    "mpi": "ipcluster.launchers.mpi:MPIEngineSetLauncher",
}

# ipyparallel-style class names map to a registered name by dropping these suffixes
_SUFFIXES = ("enginesetlauncher", "controllerlauncher", "launcher")


def _registry() -> dict[str, str]:
    """Lower-cased launcher name -> ``module:Class``."""
    table = dict(_BUILTIN)
    table.update({ep.name.lower(): ep.value for ep in entry_points(group=GROUP)})
    return table


def launcher_names() -> list[str]:
    """Names of the registered launchers, sorted."""
    return sorted(_registry())


def _normalize(name: str) -> str:
    key = name.lower()
    for suffix in _SUFFIXES:
        if key.endswith(suffix) and key != suffix:
            return key[: -len(suffix)]
    return key


def find_launcher_class(name: str | type[Launcher]) -> type[Launcher]:
    """The launcher class for a registered name (``"local"``), an import path, or a class.

    Names are matched case-insensitively, and ipyparallel-style names (``"LocalEngineSetLauncher"``)
    resolve to the registered backend they name (``local``). An import path is
    ``"package.module.Class"`` or ``"package.module:Class"``.
    """
    if isinstance(name, type):
        if not issubclass(name, Launcher):
            raise LauncherError(f"{name!r} is not a Launcher subclass")
        return name
    registry = _registry()
    target = registry.get(name.lower()) or registry.get(_normalize(name))
    if target is None and ("." in name or ":" in name):
        target = name
    if target is not None:
        module, _, attr = target.partition(":") if ":" in target else target.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise LauncherError(f"cannot import launcher class {name!r}: {e}") from e
    else:
        available = ", ".join(launcher_names()) or "none"
        raise LauncherError(f"unknown launcher {name!r}; available launchers: {available}")
    if not (isinstance(cls, type) and issubclass(cls, Launcher)):
        raise LauncherError(f"{name!r} resolves to {cls!r}, which is not a Launcher subclass")
    return cls


def launcher_class_name(cls: type[Launcher]) -> str:
    """The registered name of ``cls`` if it has one, else its import path (``module:Class``)."""
    path = f"{cls.__module__}:{cls.__qualname__}"
    for name, value in _registry().items():
        if value == path:
            return name
    return path
