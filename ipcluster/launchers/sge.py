"""(Son of) Grid Engine: ``qsub``, ``qstat -xml``, ``qdel``.

Run for real in the tests (Son of Grid Engine 8.1.9, single node). ``qstat`` lists only jobs
that are still queued or running; a job that ended is simply gone, so its exit code is read
from the line every ipcluster job script prints as it exits (see ``jobs.EXIT_MARKER``);
``qacct`` would need accounting, which lags and is often off.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import ClassVar

from traitlets import Unicode

from .batch import BatchLauncher
from .batchsystem import BatchSystem, JobRequest
from .jobs import DELETING, JobState, JobStatus


def _expand_tasks(spec: str) -> list[int]:
    """``"1-5:2"`` or ``"3,7"`` -> task numbers."""
    tasks: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        rng, _, step = part.partition(":")
        first, _, last = rng.partition("-")
        tasks.extend(range(int(first), int(last or first) + 1, int(step or 1)))
    return tasks


def _state(code: str) -> tuple[JobState, str]:
    if "E" in code:
        return JobState.FAILED, f"error state {code} (see qstat -j)"
    if "d" in code:  # still listed (and maybe running) until the deletion is done
        return JobState.RUNNING, f"{DELETING} ({code})"
    if any(c in code for c in "sST"):
        return JobState.PENDING, f"suspended ({code})"
    if any(c in code for c in "rtR"):
        return JobState.RUNNING, ""
    if "h" in code:
        return JobState.PENDING, f"on hold ({code})"
    return JobState.PENDING, f"queued ({code})"


class SGESystem(BatchSystem):
    name = "sge"
    directive_prefix = "#$"
    submit_command = ("qsub", "-terse")
    cancel_command = ("qdel",)
    array_index_var = "SGE_TASK_ID"
    array_first_index = 1
    default_fanout = "processes"

    def directives(self, req: JobRequest) -> list[str]:
        d = ["-S /bin/sh", "-V", "-cwd", f"-N {req.name}"]
        if req.queue:
            d.append(f"-q {req.queue}")
        if req.account:
            d.append(f"-A {req.account}")
        if req.walltime:
            d.append(f"-l h_rt={req.walltime}")
        if req.memory:
            d.append(f"-l h_vmem={req.memory}")
        if req.gpus:
            d.append(f"-l gpu={req.gpus}")
        pe = req.settings.get("parallel_environment")
        if pe and req.cores > 1:
            d.append(f"-pe {pe} {req.cores}")
        return d

    def submit_args(self, req: JobRequest) -> list[str]:
        args = ["-o", req.output, "-j", "y"]
        if req.array:
            args += ["-t", f"1-{req.array}"]
        return args

    def output_pattern(self, folder: Path, name: str, array: bool) -> str:
        return str(folder / (f"{name}-$JOB_ID-$TASK_ID.out" if array else f"{name}-$JOB_ID.out"))

    def output_file(self, folder: Path, name: str, task_id: str) -> Path:
        return folder / f"{name}-{task_id.replace('.', '-')}.out"

    def parse_job_id(self, output: str) -> str:
        # -terse prints "12" for a job, "12.1-4:1" for an array
        return self.first_id(output, r"^\s*(\d+)")

    def task_ids(self, job_id: str, tasks: int) -> list[str]:
        return [f"{job_id}.{i}" for i in range(1, tasks + 1)]

    def status_command(self, job_ids: list[str]) -> list[str]:
        return ["qstat", "-xml"]  # the user's own jobs; qstat has no filter by job id for this listing

    def parse_status(self, output: str) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        if not output.strip():
            return out
        root = ET.fromstring(output)
        for job in root.iter("job_list"):
            number = (job.findtext("JB_job_number") or "").strip()
            state, reason = _state((job.findtext("state") or "").strip())
            tasks = (job.findtext("tasks") or "").strip()
            ids = [f"{number}.{t}" for t in _expand_tasks(tasks)] if tasks else [number]
            for job_id in ids:
                out[job_id] = JobStatus(job_id, state, reason)
        return out

    def signal_command(self, sig: str, job_ids: list[str]) -> list[str]:
        if sig in ("SIGSTOP", "SIGCONT"):
            return ["qmod", "-sj" if sig == "SIGSTOP" else "-usj", *job_ids]
        return super().signal_command(sig, job_ids)


class SGELauncher(BatchLauncher):
    """Processes as Grid Engine jobs (``qsub``): ``Cluster(engines="sge")``, configured as ``c.SGELauncher``."""

    system_class: ClassVar[type[BatchSystem]] = SGESystem
    ipp_stem = "SGE"

    parallel_environment = Unicode(
        "", config=True,
        help="""Parallel environment for jobs that need more than one slot (``-pe <name> <cores>``); your
        site's name for it (``qconf -spl`` lists them). Empty: jobs ask for one slot.""",
    )

    def system_settings(self) -> dict[str, str]:
        return {"parallel_environment": self.parallel_environment}
