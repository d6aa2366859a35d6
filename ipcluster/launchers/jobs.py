"""Batch jobs as a batch launcher sees them: states, and a table that turns queue listings into news.

This module has no I/O. The launcher runs the queue's status command and hands its parsed output
to :meth:`JobTable.update`; the table says which jobs changed, which left the queue without a final
state (their exit code must be looked up elsewhere), and which ended in a way the user must hear
about. Keeping it apart from processes means every transition is unit-tested from recorded
command output, the way ``controller/hub.py`` is tested from events.

A "job" here is what the queue lists on one line: a plain job, or one task of a job array
(``123_4`` in Slurm, ``123.5`` in SGE).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

#: the line every ipcluster job script prints as it exits (see batch.py); read back from the job's
#: output when the queue itself forgets a finished job's exit code (SGE without accounting)
EXIT_MARKER = "ipcluster-batch: job script exiting with code"
_EXIT_RE = re.compile(re.escape(EXIT_MARKER) + r" (-?\d+)")
#: reason a status parser gives a job the queue is deleting; if it then leaves the queue without an
#: exit code, it was cancelled (SGE lists such jobs as "dr" until they are gone)
DELETING = "being deleted"
LEFT = "left the queue"


class JobState(str, enum.Enum):
    """Where a job is in its life, in words common to every batch system."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"  # ended with exit code 0
    FAILED = "failed"  # ended with another exit code, or the queue put it in an error state
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"  # killed at its walltime
    ENDED = "ended"  # gone from the queue, final state not (yet) known

    @property
    def finished(self) -> bool:
        return self not in (JobState.PENDING, JobState.RUNNING)


@dataclass
class JobStatus:
    """One job as the queue last described it."""

    job_id: str
    state: JobState
    reason: str = ""  # why it is pending or why it ended, in the queue's words
    exit_code: int | None = None

    def describe(self) -> str:
        text = self.state.value
        if self.exit_code is not None and self.state.finished:
            text += f" (exit code {self.exit_code})"
        if self.reason and self.reason.lower() not in ("none", "(null)", ""):
            text += f": {self.reason}"
        return text


def exit_code_from_output(text: str) -> int | None:
    """The exit code an ipcluster job script printed as it exited, if it did."""
    found = _EXIT_RE.findall(text)
    return int(found[-1]) if found else None


def state_for_exit(code: int | None) -> JobState:
    if code is None:
        return JobState.ENDED
    return JobState.DONE if code == 0 else JobState.FAILED


@dataclass
class Update:
    """What one status listing changed (the table's decision for the launcher)."""

    changed: list[JobStatus] = field(default_factory=list)  # new state, for the log
    vanished: list[str] = field(default_factory=list)  # left the queue: look up the exit code


class JobTable:
    """Every job one launcher submitted, and what the user has been told about them.

    A job that finishes while the launcher is not stopping is *news*: :meth:`next_failure`
    returns it once, so a wait raises it once, and the same dead job does not fail every later
    wait. Jobs that end after :meth:`stopping` was called are expected and never news.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, JobStatus] = {}
        self.engines: dict[str, int] = {}  # job id -> engines it runs
        self.is_stopping = False
        self._told: set[str] = set()

    def add(self, job_id: str, engines: int) -> None:
        self.jobs[job_id] = JobStatus(job_id, JobState.PENDING, "submitted")
        self.engines[job_id] = engines

    def stopping(self) -> None:
        """From now on, jobs that end were asked to."""
        self.is_stopping = True

    def starting(self) -> None:
        """New jobs follow: the ones that ended so far (cancelled by a stop) are old news."""
        self._told.update(j for j, s in self.jobs.items() if s.state.finished)
        self.is_stopping = False

    @property
    def active(self) -> list[str]:
        """Ids of jobs that may still run (the ones a status command must ask about)."""
        return [j for j, s in self.jobs.items() if not s.state.finished]

    def update(self, listed: Mapping[str, JobStatus]) -> Update:
        """Apply one status listing of (at least) every active job.

        A tracked, unfinished job missing from the listing has left the queue: it becomes
        ``ENDED`` and is returned in ``vanished`` so the launcher can find its exit code.
        """
        result = Update()
        for job_id in self.active:
            old = self.jobs[job_id]
            new = listed.get(job_id)
            if new is None:
                deleting = old.reason.startswith(DELETING)
                new = JobStatus(job_id, JobState.ENDED, old.reason if deleting else LEFT)
                result.vanished.append(job_id)
            if (new.state, new.reason, new.exit_code) != (old.state, old.reason, old.exit_code):
                self.jobs[job_id] = new
                result.changed.append(new)
        return result

    def resolve(self, job_id: str, exit_code: int | None, reason: str = "") -> JobStatus:
        """Settle a vanished job's final state from an exit code found elsewhere."""
        old = self.jobs[job_id]
        if old.state is not JobState.ENDED:
            return old
        state = state_for_exit(exit_code)
        if exit_code is None and old.reason.startswith(DELETING):
            state = JobState.CANCELLED
        if not reason and exit_code is not None and old.reason == LEFT:
            reason = " "  # the exit code says it all
        new = replace(old, state=state, exit_code=exit_code, reason=(reason or old.reason).strip())
        self.jobs[job_id] = new
        return new

    def next_failure(self) -> JobStatus | None:
        """The first job that ended on its own and has not been reported yet (then it is)."""
        if self.is_stopping:
            return None
        for job_id, status in self.jobs.items():
            if status.state.finished and job_id not in self._told:
                self._told.add(job_id)
                return status
        return None

    def counts(self) -> dict[str, int]:
        """Jobs per state, e.g. ``{"pending": 2, "running": 6}``."""
        out: dict[str, int] = {}
        for status in self.jobs.values():
            out[status.state.value] = out.get(status.state.value, 0) + 1
        return out

    def expected_engines(self) -> int:
        """Engines of jobs that are pending or running (those that can still register)."""
        return sum(self.engines.get(j, 0) for j in self.active)

    def poll_code(self) -> int | None:
        """Popen-style: ``None`` while any job may run, else the first non-zero exit code, else 0."""
        if self.active:
            return None
        codes = [s.exit_code for s in self.jobs.values() if s.exit_code]
        if codes:
            return codes[0]
        return 0 if all(s.state is JobState.DONE for s in self.jobs.values()) else 1

    # -- persistence ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, object]:
        return {
            "jobs": {j: [s.state.value, s.reason, s.exit_code] for j, s in self.jobs.items()},
            "engines": dict(self.engines),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> "JobTable":
        self = cls()
        jobs = d.get("jobs") or {}
        assert isinstance(jobs, dict)
        for job_id, (state, reason, code) in jobs.items():
            self.jobs[job_id] = JobStatus(job_id, JobState(state), reason, code)
        engines = d.get("engines") or {}
        assert isinstance(engines, dict)
        self.engines = {str(k): int(v) for k, v in engines.items()}
        return self

    def forget(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self.jobs.pop(job_id, None)
            self.engines.pop(job_id, None)
