"""How one batch job starts its share of engines, and drains them before its walltime.

A job runs ``$ipcluster_n`` engines (the job script sets that variable; for job-array tasks it
depends on the task index). Three ways, chosen by ``BatchLauncher.fanout``:

``processes``
    plain processes on the job's first node. Needs nothing but the engine's Python.
``srun``
    Slurm's own step launcher (``srun --ntasks``): the engines may spread over the job's nodes
    and Slurm accounts for them.
``mpiexec``
    ``mpiexec -n``: the engines are ranks of one MPI world (``mpi4py`` works inside ``%%px``).

In every case the job script hands the command to this module's small supervisor
(``python -m ipcluster.launchers.fanout``), which starts it (``N`` copies, or one ``srun`` /
``mpiexec``), passes on SIGTERM/SIGINT/SIGHUP, and exits with the first non-zero exit code. With
a drain time it also sends SIGTERM to its processes at a given moment before the job's walltime:
an engine that gets SIGTERM finishes the task it is running, unregisters (the controller retries
or fails what was queued on it) and exits 0, instead of being killed mid-task by the queue. The
supervisor prints :data:`DRAIN_MARKER` when it does, so the launcher can tell a drained job from
one that failed.

Rendering is pure string building, tested through rendered scripts; :func:`main` is tested by
running it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

FANOUTS = ("processes", "srun", "mpiexec")

#: the shell variable holding the number of processes this job runs
COUNT_VAR = "ipcluster_n"
#: the shell variable holding the job script's start time (epoch seconds), set by the script
START_VAR = "ipcluster_t0"
#: printed to stderr by the supervisor when it asks its processes to stop before the walltime
DRAIN_MARKER = "ipcluster-batch: draining before the walltime"


def render_fanout(
    kind: str,
    argv: Sequence[str],
    extra_args: Sequence[str] = (),
    python: str = sys.executable,
    drain_after: int | None = None,
) -> list[str]:
    """Shell lines that run ``$ipcluster_n`` copies of ``argv`` the ``kind`` way.

    ``extra_args`` go to ``srun`` or ``mpiexec`` (ignored for plain processes). With
    ``drain_after``, the processes get SIGTERM that many seconds after the script started.
    """
    if kind not in FANOUTS:
        raise ValueError(f"unknown fan-out {kind!r}; choose one of {', '.join(FANOUTS)}")
    command = shlex.join(argv)
    extra = "".join(f" {shlex.quote(a)}" for a in extra_args)
    supervisor = f"{shlex.quote(python)} -m ipcluster.launchers.fanout"
    if drain_after is not None:
        supervisor += f' --drain-at "$(({START_VAR} + {int(drain_after)}))"'
        if kind == "srun":  # srun ends the whole step on SIGTERM; signal the step's tasks instead
            supervisor += ' --drain-command "scancel --signal=TERM $SLURM_JOB_ID"'
    if kind == "processes":
        return [f'{supervisor} --copies "${COUNT_VAR}" -- {command}']
    if kind == "srun":
        return [f'{supervisor} -- srun --ntasks="${COUNT_VAR}"{extra} {command}']
    return [f'{supervisor} -- mpiexec -n "${COUNT_VAR}"{extra} {command}']


# -- the supervisor (runs inside the job) ----------------------------------------------------------------


class Supervisor:
    """Start ``copies`` copies of a command, pass signals on, drain at a deadline, reap them all."""

    def __init__(
        self, command: list[str], copies: int, drain_at: float | None, drain_command: list[str] | None = None
    ) -> None:
        self.command = command
        self.copies = copies
        self.drain_at = drain_at
        self.drain_command = drain_command
        self.procs: list[subprocess.Popen[bytes]] = []
        self.drained = False
        self.stopping = False

    def forward(self, signum: int, frame: FrameType | None = None) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self.stopping = True  # no more copies are started
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)
                except ProcessLookupError:
                    pass

    def drain(self, signum: int = signal.SIGALRM, frame: FrameType | None = None) -> None:
        self.drained = True
        print(f"{DRAIN_MARKER}: asking the processes to finish their task and stop", file=sys.stderr, flush=True)
        if self.drain_command:
            try:  # returns at once; the processes' exits end the wait in run()
                subprocess.Popen(self.drain_command, stdin=subprocess.DEVNULL)
            except OSError as e:
                print(f"ipcluster-batch: cannot run {self.drain_command[0]!r} ({e}); sending SIGTERM", file=sys.stderr,
                      flush=True)
                self.forward(signal.SIGTERM)
        else:
            self.forward(signal.SIGTERM)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, self.forward)
        signal.signal(signal.SIGALRM, self.drain)
        for i in range(self.copies):
            if self.stopping:
                break
            env = {**os.environ, "IPCLUSTER_JOB_PROCESS": str(i)}
            try:
                self.procs.append(subprocess.Popen(self.command, env=env))
            except OSError as e:
                print(f"ipcluster-batch: cannot run {self.command[0]!r}: {e}", file=sys.stderr, flush=True)
                self.forward(signal.SIGTERM)
                self._reap()
                return 127
        if self.drain_at is not None:
            delay = self.drain_at - time.time()
            if delay <= 0:
                self.drain()
            else:
                signal.setitimer(signal.ITIMER_REAL, delay)
        codes = self._reap()
        signal.setitimer(signal.ITIMER_REAL, 0)
        bad = [c for c in codes if c != 0]
        return (128 - bad[0] if bad[0] < 0 else bad[0]) if bad else 0

    def _reap(self) -> list[int]:
        return [p.wait() for p in self.procs]  # signals interrupt the wait, run their handler, and it resumes


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ipcluster.launchers.fanout",
        description="Run copies of a command inside a batch job; pass signals on; drain before the walltime.",
    )
    parser.add_argument("--copies", type=int, default=1, help="how many copies of the command to start")
    parser.add_argument("--drain-at", type=float, default=None, help="epoch seconds at which to send SIGTERM")
    parser.add_argument("--drain-command", default="", help="run this to drain instead of sending SIGTERM")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the command and its arguments")
    ns = parser.parse_args(args)
    command = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    if not command:
        parser.error("no command given")
    drain_command = shlex.split(ns.drain_command) if ns.drain_command else None
    return Supervisor(command, max(ns.copies, 0), ns.drain_at, drain_command).run()


if __name__ == "__main__":
    sys.exit(main())
