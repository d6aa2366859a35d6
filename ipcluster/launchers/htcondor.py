"""HTCondor: ``condor_submit``, ``condor_q -af:j``, ``condor_rm``.

Not run here (no HTCondor pool can be built from Debian packages); tested through rendered
submit descriptions and the documented output of ``condor_q <ids> -af:j JobStatus ExitCode
HoldReason``. HTCondor has no directives inside scripts: the resources go into a submit
description next to the job script, which runs the script with ``/bin/sh``. A job that ended
leaves ``condor_q``; its exit code is read from the line the job script prints as it exits.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from .batch import BatchLauncher
from .batchsystem import BatchSystem, JobRequest, walltime_seconds
from .jobs import JobState, JobStatus

# JobStatus codes: 1 idle, 2 running, 3 removed, 4 completed, 5 held, 6 transferring output, 7 suspended
_STATES = {
    "1": JobState.PENDING, "2": JobState.RUNNING, "3": JobState.CANCELLED, "4": JobState.DONE,
    "5": JobState.PENDING, "6": JobState.RUNNING, "7": JobState.PENDING,
}


class HTCondorSystem(BatchSystem):
    name = "htcondor"
    directive_prefix = "#"
    submit_command = ("condor_submit", "-terse")
    cancel_command = ("condor_rm",)
    array_index_var = "IPCLUSTER_TASK"  # set from $(Process) in the submit description
    array_first_index = 0
    default_fanout = "processes"

    def directives(self, req: JobRequest) -> list[str]:
        return []  # resources live in the submit description (see submit_files)

    def description(self, script: Path, req: JobRequest) -> str:
        lines = [
            "universe = vanilla",
            "executable = /bin/sh",
            f"arguments = {script}",
            "getenv = True",
            f"batch_name = {req.name}",
            'environment = "IPCLUSTER_TASK=$(Process)"',
            f"output = {req.output}",
            f"error = {req.output}",
            f"request_cpus = {req.cores}",
        ]
        if req.memory:
            lines.append(f"request_memory = {req.memory}")
        if req.gpus:
            lines.append(f"request_gpus = {req.gpus}")
        if req.account:
            lines.append(f"accounting_group = {req.account}")
        if req.walltime:
            limit = walltime_seconds(req.walltime)
            lines.append(f"periodic_remove = (JobStatus == 2) && (time() - EnteredCurrentStatus > {limit})")
        if req.queue:
            lines.append(f"+JobFlavour = \"{req.queue}\"")
        lines.append(f"queue {max(1, req.array)}")
        return "\n".join(lines) + "\n"

    def submit_files(self, script: Path, req: JobRequest) -> Path:
        description = script.with_suffix(".sub")
        description.write_text(self.description(script, req))
        return description

    def submit_args(self, req: JobRequest) -> list[str]:
        return []  # output and the number of jobs are in the description

    def output_pattern(self, folder: Path, name: str, array: bool) -> str:
        return str(folder / f"{name}-$(Cluster)-$(Process).out")

    def output_file(self, folder: Path, name: str, task_id: str) -> Path:
        return folder / f"{name}-{task_id.replace('.', '-')}.out"

    def parse_job_id(self, output: str) -> str:
        # -terse prints "123.0 - 123.3"; without it: "4 job(s) submitted to cluster 123."
        m = re.search(r"^\s*(\d+)\.\d+", output) or re.search(r"submitted to cluster (\d+)", output)
        return m.group(1) if m else self.first_id(output, r"(\d+)")

    def task_ids(self, job_id: str, tasks: int) -> list[str]:
        return [f"{job_id}.{i}" for i in range(tasks)]

    def job_tasks(self, job_id: str, tasks: int, array: bool) -> list[str]:
        return self.task_ids(job_id, tasks)  # every HTCondor job is cluster.process

    def status_command(self, job_ids: list[str]) -> list[str]:
        return ["condor_q", *job_ids, "-af:j", "JobStatus", "ExitCode", "HoldReason"]

    def parse_status(self, output: str) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        for line in output.splitlines():
            parts = line.split(None, 3)
            if len(parts) < 2 or not re.fullmatch(r"\d+\.\d+", parts[0]):
                continue
            job_id, status = parts[0], parts[1]
            code = parts[2] if len(parts) > 2 else "undefined"
            hold = parts[3] if len(parts) > 3 and parts[3] != "undefined" else ""
            state = _STATES.get(status, JobState.PENDING)
            exit_code = int(code) if code.lstrip("-").isdigit() and state.finished else None
            if state is JobState.DONE and exit_code:
                state = JobState.FAILED
            out[job_id] = JobStatus(job_id, state, f"held: {hold}" if status == "5" else "", exit_code)
        return out


class HTCondorLauncher(BatchLauncher):
    """Processes as HTCondor jobs (``condor_submit``): ``Cluster(engines="htcondor")``, configured as
    ``c.HTCondorLauncher``."""

    system_class: ClassVar[type[BatchSystem]] = HTCondorSystem
    ipp_stem = "HTCondor"
