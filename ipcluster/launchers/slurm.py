"""Slurm: ``sbatch``, ``squeue``, ``scancel``.

Run for real in the tests (Slurm 22.05, single node). One ``squeue`` call per poll lists every
job and array task with its state, pending reason and exit code; ``--states=all`` keeps jobs
that ended visible for ``MinJobAge`` (300 s by default), long enough to read how they ended.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from .batch import BatchLauncher
from .batchsystem import BatchSystem, JobRequest
from .jobs import JobState, JobStatus

_STATES = {
    "PENDING": JobState.PENDING, "CONFIGURING": JobState.PENDING, "REQUEUED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING, "REQUEUE_FED": JobState.PENDING, "RESV_DEL_HOLD": JobState.PENDING,
    "SUSPENDED": JobState.PENDING, "STOPPED": JobState.PENDING, "RESIZING": JobState.RUNNING,
    "RUNNING": JobState.RUNNING, "COMPLETING": JobState.RUNNING, "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING, "COMPLETED": JobState.DONE, "CANCELLED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT, "DEADLINE": JobState.TIMEOUT, "FAILED": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED, "BOOT_FAIL": JobState.FAILED, "OUT_OF_MEMORY": JobState.FAILED,
    "PREEMPTED": JobState.FAILED, "SPECIAL_EXIT": JobState.FAILED, "REVOKED": JobState.CANCELLED,
}


def _exit_code(raw: str) -> int | None:
    """squeue's exit_code is a wait status (768: exit code 3; 9: killed by SIGKILL)."""
    try:
        status = int(raw)
    except ValueError:
        return None
    try:
        return os.waitstatus_to_exitcode(status)
    except ValueError:
        return status


class SlurmSystem(BatchSystem):
    name = "slurm"
    directive_prefix = "#SBATCH"
    submit_command = ("sbatch", "--parsable")
    cancel_command = ("scancel",)
    array_index_var = "SLURM_ARRAY_TASK_ID"
    array_first_index = 0
    default_fanout = "srun"

    def directives(self, req: JobRequest) -> list[str]:
        d = [f"--job-name={req.name}", f"--ntasks={req.processes}", f"--cpus-per-task={req.cores_per_process}"]
        if req.queue:
            d.append(f"--partition={req.queue}")
        if req.account:
            d.append(f"--account={req.account}")
        if req.walltime:
            d.append(f"--time={req.walltime}")
        if req.memory:
            d.append(f"--mem={req.memory}")
        if req.gpus:
            d.append(f"--gres=gpu:{req.gpus}")
        return d

    def submit_args(self, req: JobRequest) -> list[str]:
        args = [f"--output={req.output}"]
        if req.array:
            args.append(f"--array=0-{req.array - 1}")
        return args

    def output_pattern(self, folder: Path, name: str, array: bool) -> str:
        return str(folder / (f"{name}-%A-%a.out" if array else f"{name}-%j.out"))

    def output_file(self, folder: Path, name: str, task_id: str) -> Path:
        return folder / f"{name}-{task_id.replace('_', '-')}.out"

    def parse_job_id(self, output: str) -> str:
        # --parsable prints "<id>" or "<id>;<cluster>"
        return self.first_id(output, r"^\s*(\d+)")

    def task_ids(self, job_id: str, tasks: int) -> list[str]:
        return [f"{job_id}_{i}" for i in range(tasks)]

    def status_command(self, job_ids: list[str]) -> list[str]:
        return [
            "squeue", "--noheader", "--array", "--states=all", f"--jobs={','.join(job_ids)}",
            "--Format=JobArrayID:|,State:|,Reason:|,exit_code:|",
        ]

    def parse_status(self, output: str) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        for line in output.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) < 4 or not parts[0]:
                continue
            job_id, state, reason, code = parts[:4]
            js = _STATES.get(state.split()[0].rstrip("+"), JobState.PENDING)
            exit_code = _exit_code(code) if js.finished else None
            out[job_id] = JobStatus(job_id, js, reason if reason != "None" else "", exit_code)
        return out

    def status_failed_means_none(self, stderr: str) -> bool:
        return "Invalid job id" in stderr  # every id asked about is gone from the queue

    def signal_command(self, sig: str, job_ids: list[str]) -> list[str]:
        return ["scancel", f"--signal={sig.removeprefix('SIG')}", "--full", *job_ids]


class SlurmLauncher(BatchLauncher):
    """Processes as Slurm jobs (``sbatch``): ``Cluster(engines="slurm")``, configured as ``c.SlurmLauncher``.

    ipyparallel's ``c.SlurmEngineSetLauncher`` / ``c.SlurmControllerLauncher`` options (``queue``,
    ``account``, ``timelimit``, ``batch_template``) are honoured too.
    """

    system_class: ClassVar[type[BatchSystem]] = SlurmSystem
    ipp_stem = "Slurm"
