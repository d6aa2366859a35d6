"""How one batch job starts its share of engines: the shell lines at the end of its job script.

A job runs ``$ipcluster_n`` copies of one command (the script sets that variable; for job-array
tasks it depends on the task index). Three ways, chosen by ``BatchLauncher.fanout``:

``processes``
    plain background processes on the job's first node, forwarded SIGTERM, waited for;
    the job's exit code is the first non-zero one. Needs nothing but ``/bin/sh``.
``srun``
    Slurm's own step launcher (``srun --ntasks``): the processes may spread over the job's nodes
    and Slurm accounts for them.
``mpiexec``
    ``mpiexec -n``: the engines are ranks of one MPI world (``mpi4py`` works inside ``%%px``).

Everything here is pure string building, tested through rendered scripts.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

FANOUTS = ("processes", "srun", "mpiexec")

#: the shell variable holding the number of processes this job runs
COUNT_VAR = "ipcluster_n"


def _processes(command: str) -> list[str]:
    # every child gets its pid recorded; SIGTERM (scancel, qdel, walltime warning) is passed on, and
    # the loop waits for each child so the job's exit code is the first failure among them
    return [
        'ipcluster_pids=""',
        "ipcluster_i=0",
        f'while [ "$ipcluster_i" -lt "${COUNT_VAR}" ]; do',
        f"    {command} &",
        '    ipcluster_pids="$ipcluster_pids $!"',
        "    ipcluster_i=$((ipcluster_i + 1))",
        "done",
        "trap 'kill -TERM $ipcluster_pids 2>/dev/null' TERM INT",
        "ipcluster_rc=0",
        'for ipcluster_pid in $ipcluster_pids; do',
        '    wait "$ipcluster_pid" || { ipcluster_s=$?; [ "$ipcluster_rc" -ne 0 ] || ipcluster_rc=$ipcluster_s; }',
        "done",
        'exit "$ipcluster_rc"',
    ]


def render_fanout(kind: str, argv: Sequence[str], extra_args: Sequence[str] = ()) -> list[str]:
    """Shell lines that run ``$ipcluster_n`` copies of ``argv`` the ``kind`` way.

    ``extra_args`` go to ``srun`` or ``mpiexec`` (ignored for plain processes).
    """
    if kind not in FANOUTS:
        raise ValueError(f"unknown fan-out {kind!r}; choose one of {', '.join(FANOUTS)}")
    command = shlex.join(argv)
    extra = "".join(f" {shlex.quote(a)}" for a in extra_args)
    if kind == "processes":
        return _processes(command)
    if kind == "srun":
        return [f'srun --ntasks="${COUNT_VAR}"{extra} {command}']
    return [f'mpiexec -n "${COUNT_VAR}"{extra} {command}']
