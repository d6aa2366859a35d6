"""Run inside the controller's network namespace by test_ssh.py: start a cluster whose engines
are on SSH hosts, run a %%px cell through a real IPython shell and a load-balanced map, stop it,
and print what happened as one JSON line (the test checks it, and what is left on the hosts)."""

from __future__ import annotations

import json
import os
import socket
import sys
import time

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from traitlets.config import Config

import ipcluster as ipp


def where(x: int) -> tuple[int, str, int]:
    time.sleep(0.1)  # the task's work: long enough that the scheduler spreads the map
    return x * x, socket.gethostname(), os.getpid()


def main() -> None:
    args = json.loads(sys.argv[1])
    c = Config()
    c.SSHEngineSetLauncher.engines = args["engines"]            # ipyparallel's config names
    c.SSHEngineSetLauncher.ssh_args = ["-F", args["ssh_config"]]
    c.SSHEngineSetLauncher.remote_python = sys.executable
    cluster = ipp.Cluster(engines="ssh", controller_ip=args["ip"], profile_dir=args["profile_dir"],
                          config=c, log_level="WARN", engine_timeout=60)
    t0 = time.monotonic()
    result: dict[str, object] = {}
    rc = cluster.start_and_connect_sync()
    result["start_s"] = time.monotonic() - t0
    try:
        shell = InteractiveShell.instance()
        shell.run_cell("%load_ext ipcluster")
        rc.activate()
        with capture_output() as cap:
            cell = shell.run_cell("%%px\nimport os, socket\nhost = socket.gethostname()\nprint('on', host, os.getpid())")
        result["px_success"] = bool(cell.success)
        result["px_stdout"] = cap.stdout
        result["px_hosts"] = sorted(rc[:]["host"])
        t1 = time.monotonic()
        mapped = rc.load_balanced_view().map_sync(where, range(12))
        result["map_s"] = time.monotonic() - t1
        result["map_values"] = [m[0] for m in mapped]
        result["map_hosts"] = sorted({m[1] for m in mapped})
        result["engine_pids"] = sorted({m[2] for m in mapped} | set(rc[:].apply_sync(os.getpid)))
        result["launcher_pids"] = cluster.running_pids()
    finally:
        rc.close()
        t2 = time.monotonic()
        cluster.stop_cluster_sync()
        result["stop_s"] = time.monotonic() - t2
        result["running_after_stop"] = cluster.running_pids()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
