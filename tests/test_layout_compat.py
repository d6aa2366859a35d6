"""The import direction, for the modules that exist under ipyparallel's paths.

Kept apart from test_layout.py (same probe) so that the compatibility modules can be added and
reviewed on their own. Users import these on clients and on engines alike, so none of them may
drag a role, or numpy, IPython and ipykernel, in with it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_layout import ABOVE, ROLES, loaded, modules_after_import

CASES = {
    "ipcluster.serialize": [*ROLES, *ABOVE, "ipcluster.launchers", "numpy", "IPython"],
    "ipcluster.serialize.canning": [*ROLES, *ABOVE, "numpy", "IPython"],
    "ipcluster.util": [*ROLES, *ABOVE, "IPython"],
    "ipcluster.datapub": [*ROLES, *ABOVE, "IPython"],
    "ipcluster.protocol.datapub": [*ROLES, *ABOVE],
    "ipcluster.engine.bind": ["ipcluster.client", "ipcluster.controller", *ABOVE, "ipykernel", "IPython"],
    "ipcluster.joblib": ["ipcluster.engine", "ipcluster.controller", *ABOVE],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_compat_modules_import_one_way(name: str, tmp_path: Path) -> None:
    modules = modules_after_import(name, tmp_path)
    forbidden = {pkg: loaded(modules, pkg) for pkg in CASES[name]}
    forbidden = {pkg: mods for pkg, mods in forbidden.items() if mods}
    assert not forbidden, f"import {name} also imported {forbidden}"
