"""A profile's config file for one process role, read as ipyparallel users write it.

``ipcontroller_config.py`` and ``ipengine_config.py`` in the profile folder are loaded by the
controller and the engine at start-up, after the command line is parsed (it names the profile)
and before it is parsed again (so a flag still wins over the file). Files written for
ipyparallel configure its application classes, ``c.IPController.location = ...`` and
``c.IPEngine....``; their traits that ipcluster's application has under the same name are
applied to it (``ControllerApp``, ``EngineApp``), and a few renamed ones are translated.
Sections for other classes (``c.InteractiveShell.colors = ...``) reach the components built
with the application as their parent. (Imports nothing of ipcluster.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from traitlets.config import Application, Config

#: (ipyparallel section, key) -> (this app's trait, conversion)
Renames = dict[tuple[str, str], tuple[str, Callable[[Any], Any]]]

#: ipyparallel's controller options that have another name or class here (ipcontroller_config.py)
CONTROLLER_RENAMES: Renames = {
    ("TaskScheduler", "scheme_name"): ("task_scheme", str),
    ("TaskScheduler", "hwm"): ("hwm", int),
    ("HeartMonitor", "period"): ("ping", float),  # milliseconds, as --ping
}
#: ipyparallel's engine options that have another name here (ipengine_config.py)
ENGINE_RENAMES: Renames = {
    ("IPEngine", "url_file"): ("connection_file", str),
}


def load_profile_config(app: Application, path: Path, argv: list[str], legacy: str, renames: Renames) -> bool:
    """Load the config file at ``path`` into ``app`` if it exists; return whether it did.

    ``legacy`` is ipyparallel's class name for ``app`` (its same-named traits are taken over);
    ``renames`` translate the traits that have another name here. ``argv`` is parsed again
    afterwards, so the command line wins over the file.
    """
    if not path.is_file():
        return False
    app.load_config_file(path.name, path=str(path.parent))
    name = type(app).__name__
    taken = Config()
    if legacy in app.config:
        for key, value in app.config[legacy].items():
            if app.has_trait(key) and app.trait_metadata(key, "config"):
                taken[name][key] = value
    for (section, key), (trait, convert) in renames.items():
        if section in app.config and key in app.config[section]:
            taken[name][trait] = convert(app.config[section][key])
    if taken:
        app.update_config(taken)
    app.parse_command_line(argv)
    return True


def profile_of_connection_file(path: Path) -> Path | None:
    """The profile folder that holds ``path`` in its ``security/`` folder, else None."""
    parent = path.expanduser().resolve().parent
    return parent.parent if parent.name == "security" else None

