"""One launcher for every batch queue (Slurm, SGE, PBS, LSF, HTCondor).

What differs between queues is a small, stateless ``BatchSystem`` (batchsystem.py): its submit,
cancel and status commands, how it spells each resource request as a directive, and how to read a
job id and job states from its output. :class:`BatchLauncher` does everything else once, for all
of them: it renders the job script, submits it (one job, or one job array of ``engines_per_job``
engines each), polls every job's state with *one* status command per poll at a bounded rate,
reports a job that ends on its own with its exit code and the tail of its output, and cancels
every job it submitted when stopped. Job states live in
:class:`~ipcluster.launchers.jobs.JobTable`, which has no I/O.

Each system module (``slurm.py``, ``sge.py``, ...) holds its ``BatchSystem`` and a two-line
launcher class that names it, so ``Cluster(engines="slurm")`` and ``c.SlurmLauncher.queue`` work.
Whether the jobs run engines or a controller is decided by ``argv``, as for every launcher.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import shlex
import signal as signal_mod
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from traitlets import Bool, Enum, Float, Integer, List, Unicode, default, observe, validate

from ..error import ClusterTimeout, LauncherError, ProcessExited
from .base import Launcher
from .batchsystem import BatchSystem, JobRequest, hms, run_command, walltime_seconds
from .fanout import COUNT_VAR, DRAIN_MARKER, FANOUTS, START_VAR, render_fanout
from .jobs import EXIT_MARKER, LEFT, JobState, JobStatus, JobTable, exit_code_from_output
from .process import TAIL_BYTES
from .template import fill_template, template_text

#: reason given to a job whose processes were drained before its walltime
DRAINED = "drained before its walltime"
#: seconds between status commands while cancelled jobs wind down (a one-off, so it may be brisk)
_STOP_POLL_INTERVAL = 1.0

class BatchLauncher(Launcher):
    """Start processes as batch jobs; subclasses only name their :class:`BatchSystem`."""

    system_class: ClassVar[type[BatchSystem]] = BatchSystem

    queue = Unicode("", config=True, help="Queue (Slurm: partition) the jobs go to; empty: the system's default.")
    account = Unicode("", config=True, help="Account (project) the jobs are charged to; empty: your default.")
    walltime = Unicode(
        "", config=True,
        help="Longest time each job may run, as [D-]HH:MM:SS, HH:MM or minutes; empty: the queue's default.",
    )
    cores_per_engine = Integer(1, config=True, help="CPU cores requested for every process a job runs.")
    memory = Unicode("", config=True, help="Memory requested per job, e.g. '4G'; empty: the queue's default.")
    gpus = Integer(0, config=True, help="GPUs requested per job.")
    extra_directives = List(
        Unicode(), config=True,
        help="""More job options, one per item, e.g. ['--qos=high'] for Slurm. An item starting with '#'
        is copied as a whole line; others get the system's prefix ('#SBATCH ', '#$ ', ...).""",
    )
    prologue = List(
        Unicode(), config=True,
        help="""Shell lines run in the job before the processes start, e.g. ['module load python/3.11'].
        The job stops (and ipcluster reports its exit code and output) if one of them fails.""",
    )
    template = Unicode(
        "", config=True,
        help="""Your own job script instead of the built-in one. Placeholders in braces are filled in:
        {n} (processes in this job), {cluster_id}, {profile_dir}, {queue}, {account}, {walltime}, {job_name},
        {program_and_args}, and the built-in parts {directives}, {setup}, {prologue}, {launch}.
        Anything else ($SLURM_JOB_ID, ${HOME}, %j) is left alone; write {{ and }} for literal braces.""",
    )
    template_file = Unicode("", config=True, help="A file holding the job script template (see `template`).")
    engines_per_job = Integer(
        0, config=True,
        help="""Processes per job: n processes become ceil(n / engines_per_job) jobs, submitted as one job
        array, so the cluster grows as the queue gives out slots. 0: all processes in one job.""",
    )
    job_array = Bool(
        True, config=True,
        help="Submit several jobs as one job array (one submit command). False: one submit per job.",
    )
    fanout = Enum(
        ["auto", *FANOUTS], "auto", config=True,
        help="""How a job starts its processes: 'processes' (background processes on its first node), 'srun'
        (Slurm's step launcher) or 'mpiexec' (ranks of one MPI world); 'auto': the system's usual way.""",
    )
    fanout_args = List(Unicode(), config=True, help="Extra arguments for srun or mpiexec inside the job.")
    drain_time = Float(
        60.0, config=True,
        help="""Seconds before the walltime at which a job's processes are asked to stop (SIGTERM). An engine
        then finishes the task it is running, unregisters (tasks queued on it are retried on other engines
        if submitted with `retries`, else failed) and exits, instead of being killed mid-task by the queue.
        Only with a `walltime`, and only if shorter than it; 0: never.""",
    )
    job_name = Unicode(
        "", config=True, help="Job name shown by the queue; default 'ipcluster-<cluster id>-<engines|controller>'."
    )
    status_interval = Float(
        5.0, config=True,
        help="""Fewest seconds between two status commands (one command asks about every job). A job that
        fails is reported within about this time; shorter intervals load the queue's server more.""",
    )
    submit_timeout = Float(30.0, config=True, help="Seconds to wait for the submit command.")
    command_timeout = Float(30.0, config=True, help="Seconds to wait for a status or cancel command.")
    cancel_timeout = Float(
        60.0, config=True, help="Seconds stop() waits, after cancelling, for every job to leave the running state."
    )
    # ipyparallel's names for the same options, so old ipcluster_config.py files keep working
    timelimit = Unicode("", config=True, help="ipyparallel's name for `walltime`.")
    batch_template = Unicode("", config=True, help="ipyparallel's name for `template`.")
    batch_template_file = Unicode("", config=True, help="ipyparallel's name for `template_file`.")

    #: ipyparallel option name -> ours, under the ipyparallel class names (SlurmEngineSetLauncher, ...)
    IPP_ALIASES: ClassVar[dict[str, str]] = {
        "queue": "queue", "account": "account", "timelimit": "walltime", "batch_template": "template",
        "batch_template_file": "template_file", "job_name": "job_name",
    }
    #: ipyparallel class-name stem, e.g. "Slurm" for SlurmEngineSetLauncher
    ipp_stem: ClassVar[str] = ""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.system = self.system_class()
        self.jobs = JobTable()
        self.submitted: list[str] = []  # ids the submit command returned (array parents)
        self.parents: dict[str, str] = {}  # job or array-task id -> the submitted id it belongs to
        self.command_counts: Counter[str] = Counter()  # queue commands run, by kind
        self._last_status = -math.inf
        self._apply_ipp_config()

    # -- options ------------------------------------------------------------------------------

    @observe("timelimit", "batch_template", "batch_template_file")
    def _ipp_alias_changed(self, change: dict[str, Any]) -> None:
        target = self.IPP_ALIASES[change["name"]]
        setattr(self, target, change["new"])

    @validate("walltime")
    def _check_walltime(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"]).strip()
        if not value:
            return ""
        try:
            return hms(walltime_seconds(value))
        except ValueError:
            raise LauncherError(f"walltime {value!r} is not [D-]HH:MM:SS, HH:MM or minutes") from None

    @default("job_name")
    def _job_name_default(self) -> str:
        cluster_id = self._cluster_id()
        return f"ipcluster-{cluster_id}-{self.role}" if cluster_id else f"ipcluster-{self.role}"

    def _apply_ipp_config(self) -> None:
        """Take options given under ipyparallel's class names; warn about ones that have no equivalent."""
        role = "ControllerLauncher" if self.name == "controller" else "EngineSetLauncher"
        sections = ["BatchSystemLauncher", f"{self.ipp_stem}Launcher", f"{self.ipp_stem}{role}"]
        ours = set(self.trait_names())
        for section in sections:
            if section == type(self).__name__ or not self.config._has_section(section):
                continue
            for key, value in self.config[section].items():
                target = self.IPP_ALIASES.get(key) or (key if key in ours and self.trait_metadata(key, "config") else None)
                if target is None:
                    self.log.warning(
                        "%s.%s has no equivalent in ipcluster's %s and is ignored; see `ipcluster help-all` for "
                        "the options of %s", section, key, type(self).__name__, type(self).__name__,
                    )
                    continue
                setattr(self, target, value)

    @property
    def role(self) -> str:
        return "controller" if self.name == "controller" else "engines"

    @property
    def output_dir(self) -> Path:
        return Path(self.log_dir) if self.log_dir else Path.cwd()

    # -- rendering -----------------------------------------------------------------------------

    def plan(self, n: int) -> list[int]:
        """Processes per job for ``n`` processes (the last job may run fewer)."""
        if n < 1:
            raise LauncherError(f"{self.name}: asked to start {n} processes")
        per = self.engines_per_job if self.engines_per_job > 0 else n
        jobs = math.ceil(n / per)
        return [per] * (jobs - 1) + [n - per * (jobs - 1)]

    def request(self, per_job: int, array: int) -> JobRequest:
        return JobRequest(
            name=self.job_name, processes=per_job, cores_per_process=self.cores_per_engine, queue=self.queue,
            account=self.account, walltime=self.walltime, memory=self.memory, gpus=self.gpus, array=array,
            output=self.system.output_pattern(self.output_dir, self.job_name, array > 0),
            settings=self.system_settings(),
        )

    def system_settings(self) -> dict[str, str]:
        """System-specific options for :class:`JobRequest` (overridden by system launchers)."""
        return {}

    def render(self, counts: list[int], array: bool) -> str:
        """The job script for jobs running ``counts`` processes (one script: an array, or one job)."""
        per_job = counts[0]
        req = self.request(per_job, len(counts) if array else 0)
        prefix = self.system.directive_prefix
        directives = [d if d.startswith("#") else f"{prefix} {d}" for d in self.system.directives(req)]
        directives += [d if d.startswith("#") else f"{prefix} {d}" for d in self.extra_directives]
        count = [f"{COUNT_VAR}={per_job}"]
        if array and counts[-1] != per_job:
            last = self.system.array_first_index + len(counts) - 1
            count.append(f'[ "${self.system.array_index_var}" != "{last}" ] || {COUNT_VAR}={counts[-1]}')
        setup = [
            f"# ipcluster {self.role}: {sum(counts)} process(es) in {len(counts)} job(s), cluster {self._cluster_id()}",
            f"{START_VAR}=$(date +%s)",
            f"trap 'echo \"{EXIT_MARKER} $?\" >&2' EXIT",
            "export PYTHONUNBUFFERED=1",
            *(f"export {k}={shlex.quote(v)}" for k, v in sorted(self.env.items())),
        ]
        prologue = ["set -e", *self.prologue, "set +e"] if self.prologue else []
        kind = self.system.default_fanout if self.fanout == "auto" else self.fanout
        python = self.argv[0] if len(self.argv) > 2 and self.argv[1] == "-m" else sys.executable
        launch = [*count, *render_fanout(kind, self.argv, self.fanout_args, python, self._drain_after())]
        values = {
            "n": str(per_job), "cluster_id": self._cluster_id(), "profile_dir": self._profile_dir(),
            "queue": self.queue, "account": self.account, "walltime": self.walltime, "timelimit": self.walltime,
            "job_name": self.job_name, "program_and_args": shlex.join(self.argv),
            "directives": "\n".join(directives), "setup": "\n".join(setup),
            "prologue": "\n".join(prologue), "launch": "\n".join(launch),
        }
        text = fill_template(template_text(self.template, self.template_file), values)
        return re.sub(r"\n{3,}", "\n\n", text)

    def _drain_after(self) -> int | None:
        """Seconds after the job script starts at which its processes are drained, or None."""
        if not self.walltime or self.drain_time <= 0:
            return None
        seconds = walltime_seconds(self.walltime)
        if self.drain_time >= seconds:
            self.log.warning("%s: drain_time %s s is not shorter than walltime %s; not draining",
                             self.name, self.drain_time, self.walltime)
            return None
        return int(seconds - self.drain_time)

    def _cluster_id(self) -> str:
        return str(getattr(self.parent, "cluster_id", "") or "")

    def _profile_dir(self) -> str:
        return str(getattr(self.parent, "profile_dir", "") or "")

    def _submissions(self, n: int) -> list[tuple[list[int], bool]]:
        counts = self.plan(n)
        if len(counts) > 1 and self.job_array and self.system.array_index_var:
            return [(counts, True)]
        return [([c], False) for c in counts]

    def job_script(self, n: int = 1) -> str:
        """Exactly the job script :meth:`start` would submit for ``n`` processes (the first one, if
        job arrays are off and several jobs are needed)."""
        counts, array = self._submissions(n)[0]
        return self.render(counts, array)

    def submit_argv(self, n: int, script: Path) -> list[str]:
        """The submit command :meth:`start` runs for ``n`` processes with the script at ``script``."""
        counts, array = self._submissions(n)[0]
        return self._submit_argv(self.request(counts[0], len(counts) if array else 0), script)

    def _submit_argv(self, req: JobRequest, script: Path) -> list[str]:
        target = [] if self.system.submit_via_stdin else [str(self.system.submit_files(script, req))]
        return [*self.system.submit_command, *self.system.submit_args(req), *target]

    # -- the Popen-like surface ----------------------------------------------------------------------

    async def start(self, n: int = 1) -> None:
        """Submit jobs for ``n`` processes; returns once the queue has accepted them (not once they run)."""
        if not self.argv:
            raise LauncherError(f"{self.name}: no command to launch (argv is empty)")
        if self.role == "controller":
            # the Cluster still expects a local controller process (its pid, its state file)
            raise LauncherError(
                f"running the controller as a {self.system.name} job is not supported yet: start it where the "
                "cluster starts (controller_launcher_class='local', the default) and only the engines as jobs"
            )
        self._stopping = False
        self.jobs.starting()
        folder = self.output_dir
        folder.mkdir(parents=True, exist_ok=True)
        for counts, array in self._submissions(n):
            index = len(self.submitted)
            script = folder / f"{self.name}-{index}.{self.system.name}.sh"
            script.write_text(self.render(counts, array))
            script.chmod(0o700)
            req = self.request(counts[0], len(counts) if array else 0)
            argv = self._submit_argv(req, script)
            self.command_counts["submit"] += 1
            stdin = script.read_bytes() if self.system.submit_via_stdin else None
            rc, out, err = await run_command(argv, self.submit_timeout, stdin)
            if rc != 0:
                raise LauncherError(
                    f"{self.name}: {self.system.name} refused the job (exit code {rc}): {(err or out).strip()}\n"
                    f"command: {shlex.join(argv)}\nscript: {script}"
                )
            job_id = self.system.parse_job_id(out)
            self.submitted.append(job_id)
            tasks = self.system.job_tasks(job_id, len(counts), array)
            for task, count in zip(tasks, counts):
                self.jobs.add(task, count)
                self.parents[task] = job_id
            self.log.info(
                "%s: submitted %s job %s for %d process(es)%s", self.name, self.system.name, job_id, sum(counts),
                f" as {len(counts)} array tasks" if array else "",
            )

    @property
    def running_pids(self) -> list[int]:
        return []  # the processes run under the queue, not as our children

    def poll(self) -> int | None:
        """``None`` while any job may still run (as of the last status command), else an exit code."""
        return self.jobs.poll_code()

    async def refresh(self, interval: float | None = None) -> None:
        """Run one status command for every active job, at most once per :attr:`status_interval`.

        Callers that arrive within the interval wait for the next slot, so however many waits
        run at once, the queue sees at most one status command per interval from this launcher.
        ``interval`` overrides the spacing (stop() looks every second while jobs wind down).
        """
        now = time.monotonic()
        wait = self._last_status + (self.status_interval if interval is None else interval) - now
        if wait > 0:
            await asyncio.sleep(wait)  # rate limit, not synchronisation
        self._last_status = time.monotonic()
        active = self.jobs.active
        if not active:
            return
        parents = sorted({self.parents.get(t, t) for t in active})
        argv = self.system.status_command(parents)
        self.command_counts["status"] += 1
        rc, out, err = await run_command(argv, self.command_timeout)
        if rc != 0 and not self.system.status_failed_means_none(err):
            self.log.warning("%s: %s failed (exit code %s): %s", self.name, shlex.join(argv), rc, err.strip())
            return
        update = self.jobs.update(self.system.parse_status(out) if rc == 0 else {})
        for job_id in update.vanished:
            code = exit_code_from_output(self._output_tail(job_id))
            self.jobs.resolve(job_id, code)
        for status in update.changed:
            status = self.jobs.jobs[status.job_id]
            if status.state in (JobState.DONE, JobState.TIMEOUT) and DRAIN_MARKER in self._output_tail(status.job_id):
                status.reason = DRAINED
            bad = status.state.finished and not self.jobs.is_stopping and status.state is not JobState.DONE
            level = logging.WARNING if bad else logging.INFO
            self.log.log(level, "%s: %s job %s %s", self.name, self.system.name, status.job_id, status.describe())

    def _output_file(self, task_id: str) -> Path:
        return self.system.output_file(self.output_dir, self.job_name, task_id)

    def _output_tail(self, task_id: str) -> str:
        path = self._output_file(task_id)
        try:
            with open(path, "rb") as f:
                f.seek(max(0, f.seek(0, 2) - TAIL_BYTES))
                return f.read().decode(errors="replace").rstrip()
        except OSError:
            return ""

    def job_error(self, status: JobStatus) -> ProcessExited:
        """The error a wait raises for a job that ended on its own."""
        what = {
            JobState.FAILED: f"failed with exit code {status.exit_code}" if status.exit_code is not None else "failed",
            JobState.CANCELLED: "was cancelled from outside ipcluster (scancel, qdel or an administrator)",
            JobState.TIMEOUT: f"was stopped at its walltime ({self.walltime or 'the queue default'})",
            JobState.DONE: "ended (exit code 0) although its processes were still needed"
            if status.reason != DRAINED else f"stopped its processes {self.drain_time:g} s before its walltime "
            f"({self.walltime}) and ended",
            JobState.ENDED: "left the queue without finishing its job script (killed: by qdel/scancel from outside "
            "ipcluster, at its walltime, or by a node failure); its exit code is unknown",
        }.get(status.state, status.state.value)
        shown = status.reason and status.reason.lower() != "none" and status.reason not in (LEFT, DRAINED)
        reason = f" ({status.reason})" if shown else ""
        out = self._output_file(status.job_id)
        msg = (
            f"{self.system.name} job {status.job_id} of {self.name} ({self.jobs.engines.get(status.job_id, '?')} "
            f"process(es)) {what}{reason}; output: {out}"
        )
        return ProcessExited(msg, exit_code=status.exit_code, output=self._output_tail(status.job_id))

    def next_job_error(self) -> ProcessExited | None:
        """The error for the first job that ended on its own since the last one reported, if any."""
        status = self.jobs.next_failure()
        return self.job_error(status) if status is not None else None

    async def watch_jobs(self) -> ProcessExited:
        """Poll the queue until a job ends on its own; return its error (each such job once).

        Runs until cancelled if no job ends: callers race it against their own wait.
        """
        while True:
            error = self.next_job_error()
            if error is not None:
                return error
            await self.refresh()

    def check_running(self, when: str = "") -> None:
        """Raise the error of a job that ended on its own, as of the last status command."""
        error = self.next_job_error()
        if error is not None:
            raise error

    async def wait(self, timeout: float | None = None) -> int:
        """Wait until no job is pending or running; return :meth:`poll`'s code."""
        interval = min(self.status_interval, _STOP_POLL_INTERVAL) if self._stopping else None
        try:
            async with asyncio.timeout(timeout):
                while self.jobs.active:
                    await self.refresh(interval)
        except TimeoutError as e:
            raise ClusterTimeout(f"{self.name}: jobs {self.jobs.active} still in the queue after {timeout} s") from e
        return self.poll() or 0

    async def signal(self, sig: int, index: int | None = None) -> None:
        """Send ``sig`` to every job's processes, where the queue can (``index`` is ignored)."""
        argv = self.system.signal_command(signal_mod.Signals(sig).name, self.submitted)
        self.command_counts["signal"] += 1
        rc, out, err = await run_command(argv, self.command_timeout)
        if rc != 0:
            raise LauncherError(f"{self.name}: {shlex.join(argv)} failed: {(err or out).strip()}")

    async def stop(self) -> None:
        """Cancel every job this launcher submitted and wait until none is pending or running."""
        self._stopping = True
        self.jobs.stopping()
        if not self.jobs.active:
            return
        argv = [*self.system.cancel_command, *sorted({self.parents.get(t, t) for t in self.jobs.active})]
        self.command_counts["cancel"] += 1
        rc, out, err = await run_command(argv, self.command_timeout)
        if rc != 0:
            self.log.warning("%s: %s exited with %s: %s", self.name, shlex.join(argv), rc, (err or out).strip())
        self._last_status = -math.inf  # the cancel's effect is worth one immediate look
        try:
            await self.wait(self.cancel_timeout)
        except ClusterTimeout as e:
            raise LauncherError(f"{self.name}: cancelled jobs still in the queue: {self.jobs.active}") from e

    # -- what the Cluster shows ---------------------------------------------------------------------

    def job_states(self) -> list[dict[str, Any]]:
        """Every job (array task) with its state, reason, exit code, process count and output file."""
        return [
            {
                "job_id": j, "state": s.state.value, "reason": s.reason, "exit_code": s.exit_code,
                "processes": self.jobs.engines.get(j, 0), "output": str(self._output_file(j)),
            }
            for j, s in self.jobs.jobs.items()
        ]

    def expected_processes(self) -> int:
        """Processes of jobs still pending or running (the engines that can still register)."""
        return self.jobs.expected_engines()

    # -- persistence ------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update(
            system=self.system.name, submitted=list(self.submitted), parents=dict(self.parents), jobs=self.jobs.to_dict(),
            job_name=self.job_name, output_dir=str(self.output_dir),
        )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], **kwargs: Any) -> "BatchLauncher":
        self = super().from_dict(d, **kwargs)
        assert isinstance(self, BatchLauncher)
        self.submitted = list(d.get("submitted") or [])
        self.parents = dict(d.get("parents") or {})
        self.jobs = JobTable.from_dict(d.get("jobs") or {})
        if d.get("job_name"):
            self.job_name = d["job_name"]
        return self
