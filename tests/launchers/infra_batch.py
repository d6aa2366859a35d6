"""Real single-node Slurm and Son of Grid Engine for the batch-launcher tests.

Adapted from the project's tried recipes (single node, everything on 127.0.0.1, no systemd):

- Slurm: a private ``munged`` (its own socket and files), ``slurmctld`` and ``slurmd`` on free
  ports picked at start, all state in one temporary folder; clients find it through
  ``SLURM_CONF``.
- SGE: ``sge_qmaster`` and ``sge_execd`` on free ports (``SGE_QMASTER_PORT``/``SGE_EXECD_PORT``),
  using the Debian cell in ``/var/lib/gridengine``, which ``.ci/setup-batch.sh`` prepares (host
  aliases, master host). This module repeats that preparation when it is missing, so a developer
  can run the tests without CI's script.

Each ``*_up`` returns an object with the environment the client commands need and a ``down()``
that cancels every job and stops the daemons by pid. Readiness is a deadline-bounded poll of the
system's own status command: these daemons have no readiness event we can wait on.

Run by hand: ``python -m tests.launchers.infra_batch slurm`` (or ``sge``) starts one, prints its
environment and waits for Enter before stopping it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SGE_ROOT = Path("/var/lib/gridengine")
SGE_CELL = "default"
READY_TIMEOUT = 60.0  # seconds for daemons to accept jobs
STOP_TIMEOUT = 30.0  # qmaster's controlled shutdown takes ~10 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair() -> int:
    """A port p with p+1 also free (Slurm and SGE take daemon ports in pairs here)."""
    for _ in range(50):
        p = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    raise RuntimeError("no free port pair")


def _run(argv: list[str], env: dict[str, str], timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _wait_until(
    check: Callable[[], bool], what: str, timeout: float, logs: list[Path], proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        try:
            if check():
                return
        except (subprocess.TimeoutExpired, OSError):
            pass
        time.sleep(0.2)  # bounded poll of a CLI: the daemons signal readiness no other way
    tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}" for p in logs if p.exists())
    died = f" (it exited with code {proc.returncode})" if proc is not None and proc.poll() is not None else ""
    raise RuntimeError(f"{what} not ready within {timeout} s{died}\n{tails}")


class Infra:
    """Daemons started for the tests; :meth:`down` stops them (and cancels every job) whatever happens."""

    name = ""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env: dict[str, str] = {}
        self.daemons: list[subprocess.Popen[bytes]] = []

    def spawn(self, argv: list[str], log: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        out = open(self.folder / log, "ab")
        try:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env or self.env, start_new_session=True,
            )
        finally:
            out.close()
        self.daemons.append(proc)
        return proc

    def client_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def run(self, *argv: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        return _run(list(argv), self.client_env(), timeout)

    def cancel_all(self) -> None:
        raise NotImplementedError

    def jobs_left(self) -> list[str]:
        """Ids of jobs still known to the queue that are not finished."""
        raise NotImplementedError

    def stop_daemons(self) -> None:
        for proc in reversed(self.daemons):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in reversed(self.daemons):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def down(self) -> None:
        try:
            self.cancel_all()
        except Exception as e:  # the daemons must stop even so
            print(f"infra_batch: cancelling {self.name} jobs failed: {e}", file=sys.stderr)
        finally:
            self.stop_daemons()


# -- Slurm -----------------------------------------------------------------------------------------


class Slurm(Infra):
    name = "slurm"

    def cancel_all(self) -> None:
        self.run("scancel", "--full", "--user=root")

    def jobs_left(self) -> list[str]:
        out = self.run("squeue", "--noheader", "--array", "--format=%i %T").stdout
        return [line for line in out.splitlines() if line.strip()]


def slurm_available() -> bool:
    return all(shutil.which(b) for b in ("slurmctld", "slurmd", "sbatch", "munged"))


def slurm_up(folder: Path | None = None) -> Slurm:
    """Start munged, slurmctld and slurmd; return the running :class:`Slurm`."""
    folder = Path(folder or tempfile.mkdtemp(prefix="ipcluster-slurm-"))
    # munged runs as "munge" and checks that every folder on its paths is safe and reachable
    folder.chmod(0o755)
    munge_dir = folder / "munge"
    munge_dir.mkdir(exist_ok=True)
    key = munge_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    shutil.chown(munge_dir, "munge", "munge")
    shutil.chown(key, "munge", "munge")
    key.chmod(0o400)
    munge_dir.chmod(0o755)  # munged wants every folder on its socket's path searchable by all
    infra = Slurm(folder)
    infra.env = {"SLURM_CONF": str(folder / "slurm.conf")}
    sock = munge_dir / "munge.socket"
    try:
        infra.spawn(
            [
                "setpriv", "--reuid=munge", "--regid=munge", "--init-groups",
                "munged", "-F", f"--socket={sock}", f"--key-file={key}", f"--pid-file={munge_dir}/munged.pid",
                f"--seed-file={munge_dir}/munged.seed", f"--log-file={munge_dir}/munged.log",
            ],
            "munged.out",
            env=dict(os.environ),
        )
        munged = infra.daemons[-1]
        _wait_until(sock.exists, "munged", READY_TIMEOUT, [folder / "munged.out"], munged)
        ctld, slurmd = free_port_pair(), free_port()
        host = socket.gethostname().split(".")[0]
        (folder / "state").mkdir(exist_ok=True)
        (folder / "spool").mkdir(exist_ok=True)
        conf = f"""\
ClusterName=ipctest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld}
SlurmdPort={slurmd}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={sock}
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SlurmdTimeout=30
InactiveLimit=0
KillWait=2
MinJobAge=600
SlurmdParameters=config_overrides
NodeName={host} NodeAddr=127.0.0.1 CPUs=8 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        (folder / "slurm.conf").write_text(conf)
        env = infra.client_env()
        infra.spawn(["slurmctld", "-D", "-i", "-f", infra.env["SLURM_CONF"]], "slurmctld.out", env)
        infra.spawn(["slurmd", "-D", "-f", infra.env["SLURM_CONF"]], "slurmd.out", env)

        def idle() -> bool:
            return "idle" in infra.run("sinfo", "--noheader", "--format=%t", timeout=5).stdout

        _wait_until(idle, "slurm", READY_TIMEOUT, [folder / "slurmctld.log", folder / "slurmd.log"])
    except BaseException:
        infra.stop_daemons()
        raise
    return infra


# -- Son of Grid Engine -------------------------------------------------------------------------------


class SGE(Infra):
    name = "sge"

    def cancel_all(self) -> None:
        self.run("qdel", "-f", "-u", "root")

    def jobs_left(self) -> list[str]:
        out = self.run("qstat", "-u", "*").stdout
        return [line for line in out.splitlines()[2:] if line.strip()]


def sge_available() -> bool:
    return all(shutil.which(b) for b in ("sge_qmaster", "sge_execd", "qsub")) and SGE_ROOT.exists()


def sge_prepare_cell() -> None:
    """The one-off machine setup of the cell (what ``.ci/setup-batch.sh`` does)."""
    common = SGE_ROOT / SGE_CELL / "common"
    names = sorted({socket.gethostname(), socket.gethostname().split(".")[0]} - {"localhost"})
    (common / "host_aliases").write_text(" ".join(["localhost", *names]) + "\n")
    (common / "act_qmaster").write_text("localhost\n")


_EXEC_HOST = "hostname localhost\nload_scaling NONE\ncomplex_values NONE\nuser_lists NONE\nxuser_lists NONE\n" \
    "projects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n"

_QUEUE = """qname all.q
hostlist localhost
seq_no 0
load_thresholds NONE
suspend_thresholds NONE
nsuspend 1
suspend_interval 00:05:00
priority 0
min_cpu_interval 00:05:00
processors UNDEFINED
qtype BATCH INTERACTIVE
ckpt_list NONE
pe_list NONE
rerun FALSE
slots 8
tmpdir /tmp
shell /bin/sh
prolog NONE
epilog NONE
shell_start_mode unix_behavior
starter_method NONE
suspend_method NONE
resume_method NONE
terminate_method NONE
notify 00:00:60
owner_list NONE
user_lists NONE
xuser_lists NONE
subordinate_list NONE
complex_values NONE
projects NONE
xprojects NONE
calendar NONE
initial_state default
""" + "".join(f"{k} INFINITY\n" for k in (
    "s_rt", "h_rt", "s_cpu", "h_cpu", "s_fsize", "h_fsize", "s_data", "h_data", "s_stack", "h_stack",
    "s_core", "h_core", "s_rss", "h_rss", "s_vmem", "h_vmem"))


def sge_up(folder: Path | None = None) -> SGE:
    """Start sge_qmaster and sge_execd on free ports; return the running :class:`SGE`."""
    folder = Path(folder or tempfile.mkdtemp(prefix="ipcluster-sge-"))
    common = SGE_ROOT / SGE_CELL / "common"
    master = common / "act_qmaster"
    if not (common / "host_aliases").exists() or not master.exists() or not master.read_text().strip():
        sge_prepare_cell()
    infra = SGE(folder)
    qport = free_port_pair()
    infra.env = {
        "SGE_ROOT": str(SGE_ROOT), "SGE_CELL": SGE_CELL,
        "SGE_QMASTER_PORT": str(qport), "SGE_EXECD_PORT": str(qport + 1),
    }
    env = {**infra.client_env(), "SGE_ND": "1"}
    try:
        infra.spawn(["/usr/sbin/sge_qmaster"], "qmaster.out", env)
        _wait_until(lambda: infra.run("qconf", "-sh", timeout=3).returncode == 0, "sge_qmaster",
                    READY_TIMEOUT, [folder / "qmaster.out"])
        if "localhost" not in infra.run("qconf", "-sh").stdout.split():
            infra.run("qconf", "-ah", "localhost")
        if "localhost" not in infra.run("qconf", "-ss").stdout.split():
            infra.run("qconf", "-as", "localhost")
        # root may submit; the scheduler runs every second instead of every 15 s
        _edit(infra, folder, ["-mconf", "global"], {"min_uid": "0", "min_gid": "0"})
        _edit(infra, folder, ["-msconf"], {"schedule_interval": "0:0:1", "flush_submit_sec": "1",
                                          "flush_finish_sec": "1"})
        if "localhost" not in infra.run("qconf", "-sel").stdout.split():
            (folder / "exechost.txt").write_text(_EXEC_HOST)
            infra.run("qconf", "-Ae", str(folder / "exechost.txt"))
        if "all.q" not in infra.run("qconf", "-sql").stdout.split():
            (folder / "queue.txt").write_text(_QUEUE)
            infra.run("qconf", "-Aq", str(folder / "queue.txt"))
        else:
            infra.run("qconf", "-mattr", "queue", "slots", "8", "all.q")
        # execd reads the global configuration when it starts: only now
        infra.spawn(["/usr/sbin/sge_execd"], "execd.out", env)

        def ready() -> bool:
            out = infra.run("qstat", "-f", timeout=3).stdout
            for line in out.splitlines():
                parts = line.split()
                if parts and parts[0] == "all.q@localhost":
                    return len(parts) == 5 and parts[4] == "lx-amd64"  # no state flags
            return False

        _wait_until(ready, "sge_execd", READY_TIMEOUT, [folder / "execd.out", folder / "qmaster.out"])
        infra.run("qmod", "-c", "all.q")  # clear an error state left by an earlier run
    except BaseException:
        infra.stop_daemons()
        raise
    return infra


def _edit(infra: SGE, folder: Path, args: list[str], values: dict[str, str]) -> None:
    """Change configuration lines through ``qconf -m...`` (it edits a temp file with $EDITOR)."""
    script = folder / f"edit{len(list(folder.glob('edit*')))}.sh"
    exprs = " ".join(f'-e "s/^{k} .*/{k} {v}/"' for k, v in values.items())
    script.write_text(f'#!/bin/sh\nsed -i {exprs} "$1"\n')
    script.chmod(0o755)
    env = {**infra.client_env(), "EDITOR": str(script)}
    _run(["qconf", *args], env)


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "slurm"
    up = {"slurm": slurm_up, "sge": sge_up}[which]
    t0 = time.monotonic()
    infra = up()
    print(f"{which} up in {time.monotonic() - t0:.1f} s; folder {infra.folder}")
    print(" ".join(f"{k}={v}" for k, v in infra.env.items()))
    try:
        input("Enter stops it> ")
    except EOFError:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        infra.down()


# -- pytest fixtures (imported by test_slurm.py and test_sge.py) ----------------------------------------

def _require(available: bool, what: str) -> None:
    import pytest

    if available:
        return
    if os.environ.get("IPCLUSTER_REQUIRE_INFRA") == "1":
        pytest.fail(f"{what} is not installed, and IPCLUSTER_REQUIRE_INFRA=1 says it must be (see .ci/apt/batch.txt)")
    pytest.skip(f"{what} is not installed")


def _infra_fixture(up: Callable[[], Infra], available: Callable[[], bool], what: str) -> Callable[..., object]:
    import pytest

    @pytest.fixture(scope="module")
    def fixture() -> object:
        _require(available(), what)
        infra = up()
        mp = pytest.MonkeyPatch()
        for key, value in infra.env.items():
            mp.setenv(key, value)  # the launcher's sbatch/qsub find the daemons through these
        try:
            yield infra
        finally:
            mp.undo()
            infra.down()
            shutil.rmtree(infra.folder, ignore_errors=True)

    return fixture


slurm = _infra_fixture(slurm_up, slurm_available, "Slurm (slurm-wlm, munge)")
sge = _infra_fixture(sge_up, sge_available, "Son of Grid Engine (gridengine-master, gridengine-exec, gridengine-client)")
