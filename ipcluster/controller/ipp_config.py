"""ipyparallel's names for the controller's task-store options, so that an old
``ipcontroller_config.py`` keeps working:

- ``c.HubFactory.db_class``: "DictDB", "SQLiteDB", "NoDB" (or their dotted paths) -> ``ControllerApp.db_class``;
- ``c.SQLiteDB.location`` and ``.filename`` (default: the profile folder and 'tasks.db', as in
  ipyparallel) -> ``ControllerApp.sqlite_file``; ``c.SQLiteDB.table`` -> ``ControllerApp.sqlite_table``;
- ``c.DictDB.record_limit`` -> ``ControllerApp.max_records``; ``c.DictDB.size_limit`` -> ``max_result_bytes``.

An option set under ``ControllerApp`` as well wins (the command-line flags ``--sqlitedb``,
``--dictdb`` and ``--nodb`` set ``ControllerApp.db_class``). Other options of these sections have
no equivalent and are named in a warning.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import ControllerApp

#: section -> {ipyparallel option: ControllerApp trait}
RENAMES: dict[str, dict[str, str]] = {
    "HubFactory": {"db_class": "db_class"},
    "SQLiteDB": {"table": "sqlite_table"},
    "DictDB": {"record_limit": "max_records", "size_limit": "max_result_bytes"},
}


def apply(app: "ControllerApp") -> None:
    """Set ``app``'s traits from ipyparallel's sections of its config."""
    config = app.config
    ours: Any = config.ControllerApp if config._has_section("ControllerApp") else {}

    def take(trait: str, value: Any, source: str) -> None:
        if trait in ours:
            app.log.warning("%s is ignored: ControllerApp.%s is set as well, and wins", source, trait)
        else:
            setattr(app, trait, value)

    for section, renames in RENAMES.items():
        if not config._has_section(section):
            continue
        for key, value in config[section].items():
            if key in renames:
                take(renames[key], value, f"{section}.{key}")
            elif not (section == "SQLiteDB" and key in ("filename", "location")):
                app.log.warning("%s.%s (an ipyparallel option) has no equivalent in ipcluster and is ignored",
                                section, key)
        if section == "SQLiteDB" and ("filename" in config[section] or "location" in config[section]):
            location = config[section].get("location") or app.profile_dir
            filename = config[section].get("filename") or "tasks.db"
            take("sqlite_file", os.path.join(location, filename), "SQLiteDB.filename/location")
