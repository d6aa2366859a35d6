"""IBM Spectrum LSF: ``bsub``, ``bjobs -o``, ``bkill``.

Not run here (LSF is proprietary); tested through rendered scripts and the documented output of
``bjobs -noheader -o "jobid jobindex stat exit_code pend_reason delimiter='|'"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from .batch import BatchLauncher
from .batchsystem import BatchSystem, JobRequest, walltime_seconds
from .jobs import JobState, JobStatus

_STATES = {
    "PEND": JobState.PENDING, "PSUSP": JobState.PENDING, "WAIT": JobState.PENDING, "USUSP": JobState.PENDING,
    "SSUSP": JobState.PENDING, "PROV": JobState.PENDING, "RUN": JobState.RUNNING, "DONE": JobState.DONE,
    "EXIT": JobState.FAILED, "ZOMBI": JobState.FAILED, "UNKWN": JobState.PENDING,
}


class LSFSystem(BatchSystem):
    name = "lsf"
    directive_prefix = "#BSUB"
    submit_command = ("bsub",)
    submit_via_stdin = True  # bsub honours #BSUB lines only in a script read from stdin
    cancel_command = ("bkill",)
    array_index_var = "LSB_JOBINDEX"
    array_first_index = 1
    default_fanout = "processes"

    def directives(self, req: JobRequest) -> list[str]:
        d = [f"-n {req.cores}", '-R "span[hosts=1]"']
        if req.queue:
            d.append(f"-q {req.queue}")
        if req.account:
            d.append(f"-P {req.account}")
        if req.walltime:
            d.append(f"-W {max(1, walltime_seconds(req.walltime) // 60)}")  # minutes
        if req.memory:
            d.append(f'-M {req.memory} -R "rusage[mem={req.memory}]"')
        if req.gpus:
            d.append(f'-gpu "num={req.gpus}"')
        return d

    def submit_args(self, req: JobRequest) -> list[str]:
        # the -J name carries the array range: name[1-N]
        name = f"{req.name}[1-{req.array}]" if req.array else req.name
        return ["-J", name, "-o", req.output, "-e", req.output]

    def output_pattern(self, folder: Path, name: str, array: bool) -> str:
        return str(folder / (f"{name}-%J-%I.out" if array else f"{name}-%J.out"))

    def output_file(self, folder: Path, name: str, task_id: str) -> Path:
        if "[" in task_id:
            number, _, index = task_id.partition("[")
            return folder / f"{name}-{number}-{index.rstrip(']')}.out"
        return folder / f"{name}-{task_id}.out"

    def parse_job_id(self, output: str) -> str:
        return self.first_id(output, r"Job <(\d+)>")  # "Job <1234> is submitted to queue <normal>."

    def task_ids(self, job_id: str, tasks: int) -> list[str]:
        return [f"{job_id}[{i}]" for i in range(1, tasks + 1)]

    def status_command(self, job_ids: list[str]) -> list[str]:
        return ["bjobs", "-a", "-noheader", "-o", "jobid jobindex stat exit_code pend_reason delimiter='|'", *job_ids]

    def parse_status(self, output: str) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        for line in output.splitlines():
            parts = line.split("|")
            if len(parts) < 4 or not parts[0].strip().isdigit():
                continue  # "Job <12> is not found" and the like
            number, index, stat, code = (p.strip() for p in parts[:4])
            reason = "|".join(parts[4:]).strip()
            job_id = f"{number}[{index}]" if index not in ("", "0", "-") else number
            state = _STATES.get(stat, JobState.PENDING)
            exit_code = int(code) if code.lstrip("-").isdigit() else (0 if state is JobState.DONE else None)
            out[job_id] = JobStatus(job_id, state, "" if reason == "-" else reason, exit_code if state.finished else None)
        return out

    def signal_command(self, sig: str, job_ids: list[str]) -> list[str]:
        return ["bkill", "-s", sig.removeprefix("SIG"), *job_ids]


class LSFLauncher(BatchLauncher):
    """Processes as LSF jobs (``bsub``): ``Cluster(engines="lsf")``, configured as ``c.LSFLauncher``."""

    system_class: ClassVar[type[BatchSystem]] = LSFSystem
    ipp_stem = "LSF"
