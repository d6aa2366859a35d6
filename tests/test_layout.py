"""Package layout: imports flow one way, and only `ipcluster` is installed at the top level.

Each check imports in a fresh interpreter started outside the repository, so it sees the installed
package and nothing this test process has already imported.
"""

from __future__ import annotations

import ast
import json
import re
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
    "ipcluster.client": ["ipcluster.controller", "ipcluster.engine", *ABOVE, "ipcluster.magics"],
    "ipcluster.client.client": ["ipcluster.controller", "ipcluster.engine", *ABOVE, "ipcluster.magics"],
    "ipcluster.launchers.local": [*ROLES, *ABOVE],
    # starting and stopping clusters (the ipcluster command) never loads the roles' code
    "ipcluster.cluster": [*ROLES, "ipcluster.cli"],
    "ipcluster.cli.app": [*ROLES],
    # the Jupyter Server extension drives Cluster (and a Client, lazily), never a role or the CLI
    "ipcluster.server.handlers": ["ipcluster.controller", "ipcluster.engine", "ipcluster.cli"],
    "ipcluster.server.manager": ["ipcluster.controller", "ipcluster.engine", "ipcluster.cli"],
    # the panel's state model is plain data: no process, socket or Jupyter code
    "ipcluster.server.livestate": [*ROLES, "ipcluster.cluster", "ipcluster.launchers", "jupyter_server", "zmq"],
    "ipcluster.server.livetasks": [*ROLES, "ipcluster.cluster", "ipcluster.launchers", "jupyter_server", "zmq"],
    # the controller's task statistics are plain state too
    "ipcluster.controller.taskstats": ["ipcluster.engine", "ipcluster.client", *ABOVE, "zmq"],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_imports_flow_one_way(name: str, tmp_path: Path) -> None:
    modules = modules_after_import(name, tmp_path)
    forbidden = {pkg: loaded(modules, pkg) for pkg in CASES[name]}
    forbidden = {pkg: mods for pkg, mods in forbidden.items() if mods}
    assert not forbidden, f"import {name} also imported {forbidden}"


def test_the_client_names_the_magics_nowhere_but_in_its_activation_registry() -> None:
    """The magics import the client; the client finds them through a registry they fill
    (client/activation.py), never by importing them."""
    statement = re.compile(r"^\s*(from\s+\S*magics\S*\s+import|import\s+\S*magics)", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "ipcluster" / "client").glob("*.py")
                 if statement.search(p.read_text())]
    assert not offenders, f"client modules importing the magics: {offenders}"


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


def imported_modules(path: Path) -> set[str]:
    """The absolute names of the modules a source file imports (relative imports resolved).

    ``from package import name`` counts as importing ``package.name`` when that is a module, so
    ``from .. import client`` cannot slip a subpackage past the check.
    """
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                names.add(sub if (ROOT / Path(*sub.split("."))).with_suffix(".py").exists()
                          or (ROOT / Path(*sub.split(".")) / "__init__.py").exists() else base)
    return names


def test_cli_goes_through_the_cluster_only() -> None:
    """``ipcluster/cli`` drives clusters through ``ipcluster.cluster`` and reports ``ipcluster.error``:
    it never reaches the launchers, the protocol or a role directly."""
    allowed = ("ipcluster.cli", "ipcluster.cluster", "ipcluster.error")
    found = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "ipcluster" / "cli").rglob("*.py"))
        for name in imported_modules(path)
        if (name == "ipcluster.magics" or name.startswith(("ipcluster.", "magics")))
        and not any(name == a or name.startswith(a + ".") for a in allowed)
    }
    assert not found, f"cli/ imports beyond cluster and error: {sorted(found)}"


MAX_MODULE_LINES = 500


def test_no_module_is_over_500_lines() -> None:
    over = {
        str(path.relative_to(ROOT)): n
        for folder in ("ipcluster", "magics")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not over, f"modules over {MAX_MODULE_LINES} lines (split them by subject): {over}"


ENGINE_MODULES = sorted(
    "ipcluster.engine" + ("." + p.stem if p.stem != "__init__" else "")
    for p in (ROOT / "ipcluster" / "engine").glob("*.py") if p.stem != "__main__"
)

# An engine imports all of its modules, then unpickles what clients send it by reference (the
# client-engine contract of ipcluster.protocol): neither may load the client.
CONTRACT_PROBE = """
import importlib, json, pickle, sys
for name in sys.argv[2:]:
    importlib.import_module(name)
before = sorted(m for m in sys.modules if m == "ipcluster.client" or m.startswith("ipcluster.client."))
with open(sys.argv[1], "rb") as f:
    objects = pickle.load(f)
after = sorted(m for m in sys.modules if m == "ipcluster.client" or m.startswith("ipcluster.client."))
print(json.dumps({"before": before, "after": after, "types": [type(o).__name__ for o in objects]}))
"""


def test_engine_modules_and_what_engines_unpickle_never_load_the_client(tmp_path: Path) -> None:
    import ipcluster
    from ipcluster.client import Dependency, Reference, depend, interactive, require
    from ipcluster.client.map import call_part, map_chunk
    from ipcluster.protocol.serialize import PrePickled, serialize_object

    assert ENGINE_MODULES and "ipcluster.engine.kernel" in ENGINE_MODULES
    assert ipcluster.Reference is Reference and ipcluster.interactive is interactive  # old paths still work

    def check() -> bool:
        return True

    objects = [Reference("a"), map_chunk, call_part, Dependency(["x"], all=False),
               depend(check)(len), require("os")(len), PrePickled({"a": 1})]
    data = tmp_path / "objects.pickle"
    data.write_bytes(b"".join(bytes(b) for b in serialize_object(objects, by_value=False)))
    proc = subprocess.run(
        [sys.executable, "-c", CONTRACT_PROBE, str(data), *ENGINE_MODULES], capture_output=True, text=True,
        timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["before"] == [], f"engine modules imported the client: {result['before']}"
    assert result["after"] == [], f"unpickling the client-engine contract imported {result['after']}"
    assert result["types"] == ["Reference", "function", "function", "Dependency", "dependent", "required", "dict"]


#: top-level names that are not the client's (errors, serialization, dependencies, constants)
NON_CLIENT_NAMES = ["error", "RemoteError", "IPythonError", "TaskRejectError", "KernelError", "can", "uncan",
                    "serialize_object", "deserialize_object", "PrePickled", "use_dill", "dependent", "Reference",
                    "interactive", "FIRST_EXCEPTION", "serialize", "util", "version_info", "__version__"]


def test_top_level_names_that_are_not_the_clients_never_load_it() -> None:
    """``ipcluster.can`` or ``ipcluster.TaskRejectError`` in code an engine runs costs no client import;
    ``ipcluster.ViewExecutor`` (a client name) does import it, on first use."""
    code = (
        "import json, sys, ipcluster\n"
        f"names = {NON_CLIENT_NAMES!r}\n"
        "values = [getattr(ipcluster, n) for n in names]\n"
        "before = 'ipcluster.client' in sys.modules\n"
        "ipcluster.ViewExecutor\n"
        "print(json.dumps([before, 'ipcluster.client' in sys.modules]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [False, True]
