"""Start a real Jupyter server (or JupyterLab) with the ipcluster extensions, for the panel's tests.

The server runs as a subprocess on 127.0.0.1 with a token, with its own IPython, Jupyter
config, data and runtime folders under a temporary folder. The server extension is enabled by
the very config file that ``pip install`` ships (``jupyter-config/``), and the prebuilt lab
extension is found through ``JUPYTER_PATH``, so the tests work the same from an editable
install (whose data files setuptools does not install) and from a wheel.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

import ipcluster

ROOT = Path(__file__).resolve().parents[2]
LABEXTENSION = Path(ipcluster.__file__).parent / "server" / "labextension"
START_TIMEOUT = 60.0
URL_RE = re.compile(r"(http://127\.0\.0\.1:\d+/)(?:lab|tree)?\?token=")  # the "is running at" line


@dataclass
class JupyterServer:
    """A running Jupyter server subprocess and how to call it."""

    proc: subprocess.Popen[str]
    url: str
    token: str
    ipython_dir: Path
    root_dir: Path
    log: list[str] = field(default_factory=list)
    pump: threading.Thread | None = None

    def api(self, method: str, path: str, body: Any = None, token: bool = True) -> tuple[int, Any]:
        """Call ``<url>/<path>``; return the status and the decoded JSON (or None)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if token:
            req.add_header("Authorization", f"token {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        return status, (json.loads(raw) if raw else None)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + f"ipcluster/stream?token={self.token}"

    def stop(self) -> None:
        """SIGTERM the server (it stops the clusters it started at exit), then SIGKILL what is left."""
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            children = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        _, alive = psutil.wait_procs(children, timeout=10)
        for p in alive:
            p.kill()
        psutil.wait_procs(alive, timeout=5)
        if self.pump is not None:
            self.pump.join(10)  # EOF once the server and its children are gone
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_server(tmp: Path, lab: bool = False, extra_args: tuple[str, ...] = ()) -> JupyterServer:
    """Start ``jupyter server`` (or ``jupyter lab``) under ``tmp`` and wait until it listens."""
    ipython_dir, root, runtime, data = (tmp / d for d in ("ipython", "root", "runtime", "data"))
    jpath, jconfig = tmp / "jupyter_path", tmp / "jupyter_config"
    for d in (ipython_dir, root, runtime, data, jpath / "labextensions", jconfig / "labconfig"):
        d.mkdir(parents=True, exist_ok=True)
    (jpath / "labextensions" / "ipcluster-panel").symlink_to(LABEXTENSION, target_is_directory=True)
    # the news toast would cover the panel's buttons in screenshots
    (jconfig / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    token = "panel-test-token"
    env = {
        **os.environ,
        "IPYTHONDIR": str(ipython_dir),
        "JUPYTER_CONFIG_PATH": os.pathsep.join([str(jconfig), str(ROOT / "jupyter-config")]),
        "JUPYTER_PATH": str(jpath),
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "JUPYTER_DATA_DIR": str(data),
        "JUPYTER_PLATFORM_DIRS": "1",
        # everything JupyterLab keeps lives under tmp: a workspace saved in ~/.config/jupyter (the
        # layout, a side bar the browser test widened) would be restored by the next run
        "JUPYTER_CONFIG_DIR": str(jconfig),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "lab-workspaces"),
        "PYTHONUNBUFFERED": "1",
    }
    app = "jupyterlab" if lab else "jupyter_server"
    # the port is picked here, so that the test knows it before the server says it
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port_number = sock.getsockname()[1]
    argv = [
        sys.executable, "-m", app, "--no-browser", "--ip=127.0.0.1", f"--port={port_number}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--allow-root",
        "--ServerApp.log_level=INFO", *extra_args,
    ]
    proc = subprocess.Popen(
        argv, env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    log: list[str] = []
    found = threading.Event()
    port: list[str] = []

    def pump() -> None:  # keeps draining the pipe for the server's whole life
        assert proc.stdout is not None
        for line in proc.stdout:
            log.append(line)
            m = URL_RE.search(line)
            if m and not found.is_set():
                port.append(m.group(1))
                found.set()
        found.set()

    pump_thread = threading.Thread(target=pump, daemon=True)
    pump_thread.start()
    if not found.wait(START_TIMEOUT) or not port:
        proc.kill()
        proc.wait(10)
        pump_thread.join(10)
        proc.stdout.close()  # type: ignore[union-attr]
        raise RuntimeError("jupyter server did not start:\n" + "".join(log[-60:]))
    server = JupyterServer(proc, port[0], token, ipython_dir, root, log, pump_thread)
    # it logs its URL just before it accepts connections: a deadline-bounded connect loop (last resort)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port_number), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                server.stop()
                raise RuntimeError("jupyter server did not listen:\n" + "".join(log[-60:])) from None
            time.sleep(0.05)
    return server
