"""The peers' virtualenvs: one per peer, created by the harness, never ipcluster's environment.

ipyparallel installs an ``ipcluster`` command of its own (and dask and Ray bring many pinned
dependencies), so each peer lives in ``<cache>/venvs/<peer>``, made with ``python -m venv`` from
this interpreter and filled with pip. A marker file records what was installed; a venv whose
marker matches is reused as it is, so only the first run pays for the installs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: extra packages every peer venv gets: the worker measures with psutil and builds numpy arrays
COMMON = ["numpy", "psutil"]

#: per peer, the requirement sets to try in order (the first that installs wins)
PEER_REQUIREMENTS: dict[str, list[list[str]]] = {
    "ipyparallel": [["ipyparallel==9.2.*"], ["ipyparallel>=9,<10"]],
    "dask": [["dask[distributed]"]],
    "ray": [["ray"]],
}

MARKER = ".ipcluster-bench.json"


class PeerUnavailable(Exception):
    """A peer's venv could not be made; ``str(e)`` is the reason shown in the results."""


@dataclass
class PeerEnv:
    name: str
    python: Path
    requirements: list[str]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ipcluster-bench"


def _marker(venv: Path) -> dict[str, object] | None:
    try:
        data = json.loads((venv / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _tail_reason(text: str) -> str:
    """The most telling line of a failed pip run (its last ERROR line, else its last line)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    line = (errors or lines or ["no output"])[-1]
    return line if len(line) <= 300 else line[:297] + "..."


def ensure_peer(name: str, cache_dir: Path, *, timeout: float = 1800.0, log=print) -> PeerEnv:
    """Return the peer's venv, creating and filling it first if needed.

    Raises PeerUnavailable with a one-line reason when it cannot be installed.
    """
    if name not in PEER_REQUIREMENTS:
        raise PeerUnavailable(f"unknown peer {name!r} (known: {', '.join(PEER_REQUIREMENTS)})")
    venv = cache_dir / "venvs" / name
    python = venv / "bin" / "python"
    tag = f"{sys.version_info[0]}.{sys.version_info[1]}"
    marker = _marker(venv)
    if marker and marker.get("python") == tag and python.exists():
        reqs = marker.get("requirements")
        return PeerEnv(name, python, [str(r) for r in reqs] if isinstance(reqs, list) else [])

    venv.parent.mkdir(parents=True, exist_ok=True)
    log(f"[venv] creating {venv} for {name} (first run only; pip output in {venv}/install.log)")
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True,
                       capture_output=True, text=True, timeout=300)
    except subprocess.CalledProcessError as e:
        raise PeerUnavailable(f"python -m venv failed: {_tail_reason(e.stderr or e.stdout or '')}") from e
    except subprocess.TimeoutExpired as e:
        raise PeerUnavailable("python -m venv timed out") from e

    reason = "no requirement set to try"
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    for reqs in PEER_REQUIREMENTS[name]:
        cmd = [str(python), "-m", "pip", "install", "--quiet", *reqs, *COMMON]
        log(f"[venv] {name}: pip install {' '.join(reqs + COMMON)}")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            reason = f"pip install {' '.join(reqs)} took over {timeout:.0f} s"
            continue
        with open(venv / "install.log", "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}\n")
        if proc.returncode == 0:
            (venv / MARKER).write_text(json.dumps({"python": tag, "requirements": reqs + COMMON}))
            return PeerEnv(name, python, reqs + COMMON)
        reason = f"pip install {' '.join(reqs)} failed: {_tail_reason(proc.stderr + proc.stdout)}"
    raise PeerUnavailable(reason)


if __name__ == "__main__":  # python -m benchmarks.venvs [peer ...]: prepare the venvs only
    names = sys.argv[1:] or list(PEER_REQUIREMENTS)
    for n in names:
        try:
            print(n, ensure_peer(n, default_cache_dir()).python)
        except PeerUnavailable as err:
            print(n, "unavailable:", err)
