"""Package layout: imports flow one way, and only `ipcluster` is installed at the top level.

Each check imports in a fresh interpreter started outside the repository, so it sees the installed
package and nothing this test process has already imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("ipcluster.controller", "ipcluster.engine", "ipcluster.client")
ABOVE = ("ipcluster.cluster", "ipcluster.cli", "ipcluster.server")  # these drive the roles; nothing below imports them

PROBE = """
import importlib, importlib.util, json, sys
name = sys.argv[1]
if importlib.util.find_spec(name) is None:
    print(json.dumps({"missing": True}))
else:
    importlib.import_module(name)
    print(json.dumps({"missing": False, "modules": sorted(sys.modules)}))
"""


def modules_after_import(name: str, cwd: Path) -> list[str]:
    """The modules loaded by `import name` in a fresh interpreter; skip while `name` does not exist."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, name], capture_output=True, text=True, timeout=60, cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"import {name} failed:\n{proc.stderr[-4000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not result["missing"], f"{name} does not exist (renamed? update the import-direction cases)"
    return result["modules"]


def loaded(modules: list[str], package: str) -> list[str]:
    return [m for m in modules if m == package or m.startswith(package + ".")]


# module to import -> packages it must not pull in
CASES = {
    "ipcluster": [*ROLES, *ABOVE, "ipcluster.launchers", "IPython"],
    "ipcluster.protocol.session": [*ROLES, *ABOVE, "ipcluster.launchers"],
    "ipcluster.protocol.serialize": [*ROLES, *ABOVE, "ipcluster.launchers"],
    "ipcluster.protocol.connection": [*ROLES, *ABOVE, "ipcluster.launchers"],
    "ipcluster.controller": ["ipcluster.engine", "ipcluster.client", *ABOVE],
    "ipcluster.controller.app": ["ipcluster.engine", "ipcluster.client", *ABOVE],
    "ipcluster.engine": ["ipcluster.controller", "ipcluster.client", *ABOVE],
    "ipcluster.engine.app": ["ipcluster.controller", "ipcluster.client", *ABOVE],
    "ipcluster.client": ["ipcluster.controller", "ipcluster.engine", *ABOVE],
    "ipcluster.launchers.local": [*ROLES, *ABOVE],
    # the Jupyter Server extension drives Cluster (and a Client, lazily), never a role or the CLI
    "ipcluster.server.handlers": ["ipcluster.controller", "ipcluster.engine", "ipcluster.cli"],
    "ipcluster.server.manager": ["ipcluster.controller", "ipcluster.engine", "ipcluster.cli"],
    # the panel's state model is plain data: no process, socket or Jupyter code
    "ipcluster.server.livestate": [*ROLES, "ipcluster.cluster", "ipcluster.launchers", "jupyter_server", "zmq"],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_imports_flow_one_way(name: str, tmp_path: Path) -> None:
    modules = modules_after_import(name, tmp_path)
    forbidden = {pkg: loaded(modules, pkg) for pkg in CASES[name]}
    forbidden = {pkg: mods for pkg, mods in forbidden.items() if mods}
    assert not forbidden, f"import {name} also imported {forbidden}"


def test_only_ipcluster_is_a_top_level_package(tmp_path: Path) -> None:
    # every package setuptools installs (including remapped folders such as magics/) is under ipcluster.
    setuptools_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = setuptools_cfg.get("packages", [])
    names = [*packages, *setuptools_cfg.get("package-dir", {})]
    assert all(n == "ipcluster" or n.startswith("ipcluster.") for n in names), names

    # At run time, from outside the checkout: each of those packages resolves, and no other folder
    # of the repository (magics/, tests/, ...) is importable under its own name.
    others = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name != "ipcluster")
    code = (
        "import importlib.util, json, sys\n"
        "def where(name):\n"
        "    spec = importlib.util.find_spec(name)\n"
        "    return None if spec is None else (spec.origin or list(spec.submodule_search_locations or [''])[0])\n"
        "print(json.dumps({n: where(n) for n in sys.argv[1:]}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *packages, *others],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    unresolved = [n for n in packages if found[n] is None]
    assert not unresolved, f"declared in pyproject.toml but not importable: {unresolved}"
    # a name may belong to another installed distribution; it is ours if it resolves into this checkout
    ours = [n for n in others if found[n] and Path(found[n]).resolve().is_relative_to(ROOT)]
    assert not ours, f"repository folders importable as top-level packages: {ours}"


def test_every_package_folder_is_installed() -> None:
    """A subpackage missing from pyproject's list works in an editable install and breaks a
    real one (``pip install .``): compare the list with the folders."""
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ipcluster").rglob("__init__.py")}
    on_disk |= {"ipcluster.magics"} if (ROOT / "magics" / "__init__.py").exists() else set()
    assert on_disk == declared, f"missing from pyproject: {sorted(on_disk - declared)}; stale: {sorted(declared - on_disk)}"
