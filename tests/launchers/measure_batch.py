"""Measure the batch launcher on a real single-node Slurm (not a test; run by hand).

    python -m tests.launchers.measure_batch [n=8]

Prints: seconds from start_cluster to n engines registered (one job of n engines, then a job
array of n one-engine jobs, then `ipcluster start -n N --engines=slurm --daemonize`); queue commands per minute while a wait runs with the default
status_interval; seconds to report a job that fails at once (default status_interval).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ipcluster.error import ClusterTimeout, ProcessExited

from .batch_scenarios import make_cluster
from .infra_batch import slurm_up


def main(n: int) -> None:
    infra = slurm_up()
    os.environ.update(infra.env)
    tmp = Path(tempfile.mkdtemp(prefix="ipcluster-measure-"))
    try:
        for label, per_job in ((f"1 job of {n}", 0), (f"array of {n} jobs", 1)):
            cluster = make_cluster(tmp / label.replace(" ", "_"), "slurm", n=n, engines_per_job=per_job,
                                   fanout="processes", status_interval=5.0)
            t0 = time.monotonic()
            rc = cluster.start_and_connect_sync()
            ready = time.monotonic() - t0
            [launcher] = cluster.engines.values()
            before = sum(launcher.command_counts.values())
            t1 = time.monotonic()
            try:  # a wait that cannot succeed: what the queue sees while someone waits on running jobs
                cluster.wait_for_engines_sync(rc, n + 1, timeout=30)
            except ClusterTimeout:
                pass
            per_min = (sum(launcher.command_counts.values()) - before) / (time.monotonic() - t1) * 60
            print(f"{label}: {n} engines ready {ready:.1f} s after start; {per_min:.1f} queue commands/min "
                  f"while waiting ({dict(launcher.command_counts)})", flush=True)
            rc.close()
            cluster.stop_cluster_sync()
        prof = f"--profile-dir={tmp / 'cli'}"
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "ipcluster", "start", f"-n={n}", "--engines=slurm", "--daemonize", prof,
                        "--cluster-id=m"], check=True, capture_output=True, timeout=300)
        print(f"ipcluster start -n {n} --engines=slurm --daemonize: {n} engines ready after "
              f"{time.monotonic() - t0:.1f} s", flush=True)
        subprocess.run([sys.executable, "-m", "ipcluster", "stop", prof, "--cluster-id=m"], check=True,
                       capture_output=True, timeout=120)
        cluster = make_cluster(tmp / "fail", "slurm", n=1, prologue=["no-such-module-command"], status_interval=5.0)
        t0 = time.monotonic()
        try:
            cluster.start_and_connect_sync()
        except ProcessExited as e:
            print(f"failing job reported {time.monotonic() - t0:.1f} s after start (status_interval 5 s): "
                  f"{str(e).splitlines()[0]}")
        cluster.stop_cluster_sync()
        print("left in the queue:", infra.jobs_left())
    finally:
        infra.down()
        shutil.rmtree(infra.folder, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
