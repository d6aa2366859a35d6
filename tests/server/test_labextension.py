"""The prebuilt lab extension: in step with its sources, installable, and its TypeScript tests pass."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from .infra import require_node
from .jupyter import LABEXTENSION, ROOT

SOURCE = ROOT / "labextension"


def load_stamp_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("stamp_sources", SOURCE / "stamp_sources.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prebuilt_assets_are_in_step_with_their_sources() -> None:
    stamp = json.loads((LABEXTENSION / "sources.json").read_text())
    digest = load_stamp_module().sources_digest(SOURCE)
    assert stamp["sources_sha256"] == digest, (
        "labextension/ changed since ipcluster/server/labextension was built: run "
        "`cd labextension && jlpm install && jlpm build:prod` and commit the output (see docs/panel.md)"
    )
    built = json.loads((LABEXTENSION / "package.json").read_text())
    source = json.loads((SOURCE / "package.json").read_text())
    assert built["name"] == source["name"] and "ipcluster" in built["name"]
    assert built["version"] == source["version"]
    assert (LABEXTENSION / built["jupyterlab"]["_build"]["load"]).is_file()


def test_pyproject_installs_the_extensions_as_data_files() -> None:
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    assert data_files["etc/jupyter/jupyter_server_config.d"] == ["jupyter-config/jupyter_server_config.d/ipcluster.json"]
    config = json.loads((ROOT / "jupyter-config/jupyter_server_config.d/ipcluster.json").read_text())
    assert config == {"ServerApp": {"jpserver_extensions": {"ipcluster": True}}}
    assert "ipcluster/server/labextension/package.json" in data_files["share/jupyter/labextensions/ipcluster-panel"]
    assert data_files["share/jupyter/labextensions/ipcluster-panel/static"] == ["ipcluster/server/labextension/static/*"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_wheel_enables_both_extensions(tmp_path: Path) -> None:
    """``pip install .`` (here: the wheel, into a prefix) enables the server and the lab extension."""
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True, timeout=540, stdin=subprocess.DEVNULL, capture_output=True,
    )
    (wheel,) = wheels.glob("ipcluster-*.whl")
    # a fresh environment that sees this one's packages (jupyter_server, ...) through a .pth file
    # but gets ipcluster, and the data files, only from the wheel
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()
    (Path(purelib) / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # this interpreter's pip installs into the new prefix; --ignore-installed so that it never
    # uninstalls the ipcluster this test runs from
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--ignore-installed", "-q", "--prefix", str(venv),
         str(wheel)],
        check=True, timeout=120, stdin=subprocess.DEVNULL, capture_output=True,
    )
    assert (venv / "etc/jupyter/jupyter_server_config.d/ipcluster.json").is_file()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_")}

    def run(*argv: str) -> list[str]:
        proc = subprocess.run(
            [str(python), *argv], env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
            cwd=tmp_path,
        )
        return (proc.stdout + proc.stderr).replace("\x1b[32m", "").replace("\x1b[0m", "").splitlines()

    server = run("-c", "import ipcluster.server, sys; print(ipcluster.server.__file__)")
    assert server[-1].startswith(str(venv)), server  # the wheel's copy, not this checkout
    server = run("-m", "jupyter_server.extension.serverextension", "list")
    assert any(line.split() == ["ipcluster", "enabled"] for line in server), server
    assert any(line.split()[:1] == ["ipcluster"] and line.split()[-1:] == ["OK"] for line in server), server
    lab = run("-m", "jupyterlab.labextensions", "list")
    assert any("ipcluster-panel v0.1.0 enabled OK" in line for line in lab), lab


@pytest.mark.browser
@pytest.mark.timeout(900)
def test_typescript_unit_tests() -> None:
    """vitest runs the tests of api.ts and model.ts, and tsc checks the sources in strict mode."""
    require_node()
    jlpm = shutil.which("jlpm") or str(Path(sys.executable).with_name("jlpm"))
    if not (SOURCE / "node_modules" / ".bin" / "vitest").exists():
        subprocess.run([jlpm, "install"], cwd=SOURCE, check=True, timeout=600, stdin=subprocess.DEVNULL)
    tsc = subprocess.run(
        [jlpm, "tsc", "--noEmit"], cwd=SOURCE, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )
    assert tsc.returncode == 0, tsc.stdout + tsc.stderr
    tests = subprocess.run(
        [jlpm, "vitest", "run"], cwd=SOURCE, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env={**os.environ, "CI": "1", "NO_COLOR": "1"},
    )
    assert tests.returncode == 0, tests.stdout[-6000:] + tests.stderr[-3000:]
    assert "failed" not in tests.stdout.lower(), tests.stdout[-6000:]
