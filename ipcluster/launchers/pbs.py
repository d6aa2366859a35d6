"""PBS Professional / OpenPBS: ``qsub``, ``qstat -f -F json``, ``qdel``.

Not run here (no PBS server is packaged for Debian); tested through rendered scripts and the
documented output of ``qstat -f -F json -x -t``. Torque's ``qstat`` has no JSON output and is
not supported by the status parser.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from .batch import BatchLauncher
from .batchsystem import BatchSystem, JobRequest
from .jobs import JobState, JobStatus

# job_state letters: Q queued, H held, W waiting, T moving, S suspended, U user-suspended,
# R running, E exiting, B array begun, X subjob done, F finished (with -x)
_RUNNING = {"R", "E", "B"}
_PENDING = {"Q", "H", "W", "T", "S", "U", "M"}


class PBSSystem(BatchSystem):
    name = "pbs"
    directive_prefix = "#PBS"
    submit_command = ("qsub",)
    cancel_command = ("qdel", "-W", "force")
    array_index_var = "PBS_ARRAY_INDEX"
    array_first_index = 0
    default_fanout = "processes"

    def directives(self, req: JobRequest) -> list[str]:
        select = f"select=1:ncpus={req.cores}"
        if req.memory:
            select += f":mem={req.memory.lower()}b" if req.memory[-1:].isalpha() else f":mem={req.memory}"
        if req.gpus:
            select += f":ngpus={req.gpus}"
        d = [f"-N {req.name}", "-V", f"-l {select}"]
        if req.queue:
            d.append(f"-q {req.queue}")
        if req.account:
            d.append(f"-A {req.account}")
        if req.walltime:
            d.append(f"-l walltime={req.walltime}")
        return d

    def submit_args(self, req: JobRequest) -> list[str]:
        args = ["-j", "oe", "-o", req.output]
        if req.array:
            args += ["-J", f"0-{req.array - 1}"]
        return args

    def output_pattern(self, folder: Path, name: str, array: bool) -> str:
        return f"{folder}/"  # a folder: PBS names the file <job name>.o<sequence number>[.<index>]

    def output_file(self, folder: Path, name: str, task_id: str) -> Path:
        seq = task_id.split(".")[0]
        if "[" in seq:  # subjob 123[4].server -> <name>.o123.4
            number, _, index = seq.partition("[")
            return folder / f"{name}.o{number}.{index.rstrip(']')}"
        return folder / f"{name}.o{seq}"

    def parse_job_id(self, output: str) -> str:
        return self.first_id(output, r"^\s*(\d+(?:\[\])?(?:\.\S+)?)")

    def task_ids(self, job_id: str, tasks: int) -> list[str]:
        number, _, server = job_id.partition(".")
        number = number.removesuffix("[]")
        suffix = f".{server}" if server else ""
        return [f"{number}[{i}]{suffix}" for i in range(tasks)]

    def status_command(self, job_ids: list[str]) -> list[str]:
        return ["qstat", "-f", "-F", "json", "-x", "-t", *job_ids]

    def parse_status(self, output: str) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        if not output.strip():
            return out
        for job_id, info in (json.loads(output).get("Jobs") or {}).items():
            if job_id.split(".")[0].endswith("[]"):
                continue  # the array itself; its subjobs are listed one by one
            letter = str(info.get("job_state", "Q"))
            comment = str(info.get("comment", ""))
            if letter in _RUNNING:
                out[job_id] = JobStatus(job_id, JobState.RUNNING, comment)
            elif letter in _PENDING:
                out[job_id] = JobStatus(job_id, JobState.PENDING, comment)
            else:  # F, X: finished
                code = info.get("Exit_status")
                exit_code = int(code) if code is not None else None
                if exit_code is not None and exit_code == -11:  # JOB_EXEC_KILL_WALLTIME
                    state = JobState.TIMEOUT
                elif exit_code is not None and exit_code >= 256 + 15 and "delete" in comment.lower():
                    state = JobState.CANCELLED
                elif exit_code is None:
                    state = JobState.ENDED
                else:
                    state = JobState.DONE if exit_code == 0 else JobState.FAILED
                out[job_id] = JobStatus(job_id, state, comment, exit_code)
        return out

    def signal_command(self, sig: str, job_ids: list[str]) -> list[str]:
        return ["qsig", "-s", sig, *job_ids]


class PBSLauncher(BatchLauncher):
    """Processes as PBS Pro / OpenPBS jobs (``qsub``): ``Cluster(engines="pbs")``, configured as ``c.PBSLauncher``."""

    system_class: ClassVar[type[BatchSystem]] = PBSSystem
    ipp_stem = "PBS"
