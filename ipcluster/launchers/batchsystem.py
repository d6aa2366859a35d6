"""What differs between batch queues: a small, stateless :class:`BatchSystem` per queue.

A system says how to spell a :class:`JobRequest` (queue, account, walltime, cores, memory, GPUs,
array) as directives and submit options, which commands submit, cancel and list jobs, and how to
read a job id and job states from their output. It runs nothing itself: ``BatchLauncher``
(batch.py) runs the commands, through :func:`run_command`, so each system is tested from recorded
command output alone.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..error import LauncherError
from .jobs import JobStatus


@dataclass
class JobRequest:
    """What one submission asks the queue for; a :class:`BatchSystem` spells it as directives."""

    name: str
    processes: int  # per job (per array task)
    cores_per_process: int = 1
    queue: str = ""
    account: str = ""
    walltime: str = ""  # HH:MM:SS
    memory: str = ""  # per job, e.g. "4G"
    gpus: int = 0  # per job
    array: int = 0  # tasks in the job array; 0: a plain job
    output: str = ""  # the system's output-file pattern
    settings: dict[str, str] = field(default_factory=dict)  # system-specific (SGE's parallel environment)

    @property
    def cores(self) -> int:
        return self.processes * self.cores_per_process


def walltime_seconds(walltime: str) -> int:
    """Seconds in ``[D-]HH:MM:SS``, ``HH:MM`` or ``MM`` (Slurm's forms)."""
    days = 0
    if "-" in walltime:
        d, _, walltime = walltime.partition("-")
        days = int(d)
    parts = [int(p) for p in walltime.split(":")]
    if len(parts) == 1:
        seconds = parts[0] * 60
    elif len(parts) == 2:
        seconds = parts[0] * 3600 + parts[1] * 60
    elif len(parts) == 3:
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    else:
        raise ValueError(walltime)
    return days * 86400 + seconds


def hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class BatchSystem:
    """How one batch system is driven; subclasses fill in the class attributes and parsers."""

    name: ClassVar[str] = ""
    #: prefix of a directive line in the job script, e.g. "#SBATCH"
    directive_prefix: ClassVar[str] = "#"
    submit_command: ClassVar[tuple[str, ...]] = ()
    cancel_command: ClassVar[tuple[str, ...]] = ()
    #: shell variable holding a job-array task's index inside the job, and the first index
    array_index_var: ClassVar[str] = ""
    array_first_index: ClassVar[int] = 0
    #: give the script to the submit command on stdin (LSF reads #BSUB lines only there)
    submit_via_stdin: ClassVar[bool] = False
    #: how jobs start several engines when the user does not say (see fanout.py)
    default_fanout: ClassVar[str] = "processes"

    def directives(self, req: JobRequest) -> list[str]:
        """Directive arguments (without the prefix) for the resources in ``req``."""
        raise NotImplementedError

    def submit_args(self, req: JobRequest) -> list[str]:
        """Command-line options of the submit command: the output file and the array range.

        These are what ipcluster itself needs, so they are on the command line and a user
        template cannot lose them.
        """
        raise NotImplementedError

    def output_pattern(self, folder: Path, name: str, array: bool) -> str:
        """The output file of every job, in the system's own placeholder syntax."""
        raise NotImplementedError

    def output_file(self, folder: Path, name: str, task_id: str) -> Path:
        """Where the output of job (or array task) ``task_id`` is, per :meth:`output_pattern`."""
        raise NotImplementedError

    def parse_job_id(self, output: str) -> str:
        """The job id in the submit command's output; raises :class:`LauncherError` without one."""
        raise NotImplementedError

    def task_ids(self, job_id: str, tasks: int) -> list[str]:
        """The ids the status command lists for the ``tasks`` tasks of array job ``job_id``."""
        raise NotImplementedError

    def job_tasks(self, job_id: str, tasks: int, array: bool) -> list[str]:
        """The ids the status command lists for a submission (a plain job: its own id)."""
        return self.task_ids(job_id, tasks) if array else [job_id]

    def status_command(self, job_ids: list[str]) -> list[str]:
        """One command that lists the state of every job in ``job_ids`` (submitted ids)."""
        raise NotImplementedError

    def parse_status(self, output: str) -> dict[str, JobStatus]:
        """Task id -> status, from :meth:`status_command`'s output."""
        raise NotImplementedError

    def status_failed_means_none(self, stderr: str) -> bool:
        """Whether a failed status command only means none of the jobs is known any more."""
        return False

    def signal_command(self, sig: str, job_ids: list[str]) -> list[str]:
        raise LauncherError(f"{self.name} cannot send signals to jobs from ipcluster")

    def submit_files(self, script: Path, req: JobRequest) -> Path:
        """The file given to the submit command (HTCondor wraps the script in a description)."""
        return script

    def first_id(self, output: str, pattern: str) -> str:
        m = re.search(pattern, output)
        if not m:
            raise LauncherError(f"{self.name}: no job id in the submit command's output: {output.strip()!r}")
        return m.group(1)


async def run_command(argv: list[str], timeout: float, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run a queue command; return (exit code, stdout, stderr). Raises LauncherError if it cannot run."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
    except OSError as e:
        raise LauncherError(f"cannot run {argv[0]!r}: {e} (is the batch system's client installed and on PATH?)") from e
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate(stdin)
    except TimeoutError as e:
        proc.kill()
        await proc.wait()
        raise LauncherError(f"{shlex.join(argv)} did not finish within {timeout} s") from e
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
