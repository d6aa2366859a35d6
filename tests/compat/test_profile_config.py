"""A profile's config files take effect, as ipyparallel's docs describe them.

"Each profile has its own config files: ``ipcontroller_config.py``, ``ipengine_config.py`` and
``ipcluster_config.py``" in the profile folder; the controller, the engines and ``ipcluster``
(or a ``Cluster``) read them when they start. Each test writes the files into a fresh profile,
starts a real cluster there and observes the effect.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .target import NAME, ipp

#: more engines than the default (one per CPU), so the count shows the file was read
N = (os.cpu_count() or 1) + 1


def write_profile(profile: Path) -> None:
    profile.mkdir(parents=True)
    (profile / "ipcluster_config.py").write_text(f"c = get_config()\nc.Cluster.n = {N}\n")
    (profile / "ipcontroller_config.py").write_text("c = get_config()\nc.IPController.location = 'localhost'\n")
    (profile / "ipengine_config.py").write_text("c = get_config()\nc.InteractiveShell.colors = 'linux'\n")


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    root = tmp_path_factory.mktemp("profile-config")
    (root / "ipython").mkdir()
    write_profile(root / "profile")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IPYTHONDIR", str(root / "ipython"))
        c = ipp.Cluster(profile_dir=str(root / "profile"), log_level=logging.WARNING)
        try:
            rc = c.start_and_connect_sync()
            try:
                rc.wait_for_engines(N, timeout=60)
                yield c, rc
            finally:
                rc.close()
        finally:
            c.stop_cluster_sync()


def test_ipcluster_config_sets_cluster_options(configured: tuple[Any, Any]) -> None:
    c, rc = configured
    assert c.n == N
    assert len(rc.ids) == N


def test_ipcontroller_config_reaches_the_controller(configured: tuple[Any, Any]) -> None:
    c, _ = configured
    client_file = Path(c.profile_dir) / "security" / f"ipcontroller-{c.cluster_id}-client.json"
    assert json.loads(client_file.read_text())["location"] == "localhost"


def test_ipengine_config_reaches_the_engines_shell(configured: tuple[Any, Any]) -> None:
    _, rc = configured
    view = rc[:]
    view.execute("_compat_colors = get_ipython().colors", block=True)
    assert {str(colors).lower() for colors in view["_compat_colors"]} == {"linux"}


def test_ipcluster_start_reads_ipcluster_config(tmp_path: Path) -> None:
    """``ipcluster start --profile-dir=...`` starts the engines ``c.Cluster.n`` asks for."""
    (tmp_path / "ipython").mkdir(exist_ok=True)
    profile = tmp_path / "profile"
    write_profile(profile)
    env = {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython")}
    command = [sys.executable, "-m", f"{NAME}.cluster"]
    log = tmp_path / "ipcluster-start.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*command, "start", f"--profile-dir={profile}", "--log-level=WARN"], env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        client_file = profile / "security" / "ipcontroller-client.json"
        deadline = time.monotonic() + 60
        while not client_file.exists():  # a file has no event to wait on: a bounded poll
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "no connection file after 60 s"
            time.sleep(0.05)
        rc = ipp.Client(str(client_file), timeout=60)
        try:
            rc.wait_for_engines(N, timeout=60)
            assert len(rc.ids) == N
        finally:
            rc.close()
    finally:
        subprocess.run([*command, "stop", f"--profile-dir={profile}"], env=env, timeout=60,
                       stdin=subprocess.DEVNULL, capture_output=True)
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
