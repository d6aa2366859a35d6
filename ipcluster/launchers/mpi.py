"""Start engines as the ranks of one MPI job: ``Cluster(engines="mpi")``.

``start(n)`` runs ``mpiexec -n n [mpi_args] python -m ipcluster.engine ...``: one local process
(``mpiexec``) that starts ``n`` engines, on this host or wherever the MPI installation's host
list or the batch allocation puts them. Because they are one MPI job, ``from mpi4py import MPI``
in a ``%%px`` cell gives each engine its rank in ``MPI.COMM_WORLD``, and collectives
(``allreduce``) run across the engines. Each engine reads its rank from the process manager's
environment at start (``OMPI_COMM_WORLD_RANK``, ``PMI_RANK``...) and logs it at registration.

Stopping sends SIGTERM to ``mpiexec``, which forwards it to every rank; SIGKILL follows after
``stop_timeout``. The launcher counts ``n`` engines for that one process (:attr:`engine_count`),
so ``Cluster.wait_for_engines`` waits for all of them.

Open MPI refuses to run as root and to start more ranks than cores unless told to. Those are
the :attr:`MPILauncher.allow_run_as_root` and :attr:`MPILauncher.oversubscribe` settings, passed
as Open MPI's environment variables (MPICH ignores them, so they are safe with either).
"""

from __future__ import annotations

import shutil
from typing import Any

from traitlets import Bool, List, Unicode

from ..error import LauncherError, ProcessExited
from .base import Launcher
from .process import Process


class MPILauncher(Launcher):
    """Run ``n`` copies of :attr:`argv` as the ranks of one ``mpiexec`` job."""

    mpi_cmd = List(
        Unicode(),
        default_value=["mpiexec"],
        config=True,
        help="""The MPI launcher program and its fixed arguments, e.g. ``["mpiexec.mpich"]`` or
        ``["srun", "--mpi=pmix"]`` (the number of ranks is added as ``-n N``).""",
    )
    mpi_args = List(
        Unicode(),
        config=True,
        help="""Extra arguments for mpiexec, placed after ``-n N``, e.g. ``["--hostfile", "hosts"]``
        or ``["--bind-to", "none"]``.""",
    )
    allow_run_as_root = Bool(
        False,
        config=True,
        help="""Let Open MPI run as root (sets OMPI_ALLOW_RUN_AS_ROOT and its confirmation). Open MPI
        refuses root by default; containers often run as root.""",
    )
    oversubscribe = Bool(
        False,
        config=True,
        help="""Let Open MPI start more ranks than this host has cores (sets
        OMPI_MCA_rmaps_base_oversubscribe=1). Without it, ``-n`` above the core count fails with
        'not enough slots'.""",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.counts: dict[int, int] = {}  # pid of mpiexec -> ranks it runs

    def engines_per_process(self, proc: Process) -> int:
        """How many engines ``proc`` (one mpiexec) runs: the Cluster counts engines with it, to
        wait for all of them and to restart the set at its size."""
        return self.counts.get(proc.pid, 1)

    @property
    def engine_count(self) -> int:
        """Engines run by the mpiexec processes still running."""
        return sum(self.engines_per_process(p) for p in self.processes if p.running)

    def mpi_env(self) -> dict[str, str]:
        """The environment for mpiexec: :meth:`child_env` plus the Open MPI switches asked for."""
        env = self.child_env()
        if self.allow_run_as_root:
            env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
            env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        if self.oversubscribe:
            env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        return env

    def mpi_argv(self, n: int) -> list[str]:
        """The command line that starts ``n`` ranks."""
        return [*self.mpi_cmd, "-n", str(n), *self.mpi_args, *self.argv]

    async def start(self, n: int = 1) -> None:
        """Start one ``mpiexec -n n`` job; it returns at once (the ranks register on their own)."""
        if not self.argv:
            raise LauncherError(f"{self.name}: no command to launch (argv is empty)")
        if n < 1:
            raise LauncherError(f"{self.name}: asked to start {n} processes")
        if not self.mpi_cmd or shutil.which(self.mpi_cmd[0]) is None:
            program = self.mpi_cmd[0] if self.mpi_cmd else "(empty mpi_cmd)"
            raise LauncherError(
                f"{self.name}: {program!r} was not found on PATH: install MPI (e.g. openmpi-bin) or set "
                f"c.MPILauncher.mpi_cmd to the MPI launcher's path"
            )
        self._stopping = False
        argv = self.mpi_argv(n)
        try:
            proc = Process.spawn(argv, self.mpi_env(), self.next_log_file())
        except OSError as e:
            raise LauncherError(f"{self.name}: could not run {argv[0]!r}: {e}") from e
        self.counts[proc.pid] = n
        self._add_process(proc)
        self.log.info("%s: started %s (pid %d)", self.name, " ".join(argv[: len(self.mpi_cmd) + 2]), proc.pid)

    def exited_error(self, proc: Process, when: str = "") -> ProcessExited:
        """Add what to change for Open MPI's two usual refusals (root, slots)."""
        base = super().exited_error(proc, when)
        text = base.output.lower()
        hint = ""
        if "allow-run-as-root" in text or "as root" in text:
            hint = "mpiexec refused to run as root: set c.MPILauncher.allow_run_as_root = True; "
        elif "not enough slots" in text:
            hint = "mpiexec has fewer slots than engines: set c.MPILauncher.oversubscribe = True or give a hostfile in mpi_args; "
        return ProcessExited(f"{hint}{base.args[0]}", exit_code=base.exit_code, output=base.output)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["counts"] = {str(pid): n for pid, n in self.counts.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], **kwargs: Any) -> "Launcher":
        self = super().from_dict(d, **kwargs)
        assert isinstance(self, MPILauncher)
        self.counts = {int(pid): int(n) for pid, n in (d.get("counts") or {}).items()}
        return self


class MPIEngineSetLauncher(MPILauncher):
    """ipyparallel's name for :class:`MPILauncher`; settings under either name take effect."""


__all__ = ["MPIEngineSetLauncher", "MPILauncher"]
