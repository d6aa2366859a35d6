"""The subcommands of ``ipcluster``: start, stop, list, status, engines, clean."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from traitlets import Bool, Enum, Integer, Unicode
from traitlets.config import Application, catch_config_error

from ..cluster import (
    Cluster,
    ClusterRecord,
    clean_profile,
    dry_run,
    find_cluster,
    find_clusters,
    job_summary,
    poll_jobs,
    profile_dirs,
    report_ready,
    resolve_engine_count,
    resolve_profile_dir,
    start_daemon,
    stop_recorded,
)
from ..error import IPClusterError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
ALREADY_RUNNING = 10
NOT_RUNNING = 11

_COMMON_ALIASES = {
    "profile": "ClusterCommand.profile",
    "profile-dir": "ClusterCommand.profile_dir",
    "ipython-dir": "ClusterCommand.ipython_dir",
    "cluster-id": "ClusterCommand.cluster_id",
    "log-level": "Application.log_level",
}


def _label(cluster_id: str) -> str:
    return f"'{cluster_id}'"


class ClusterCommand(Application):
    """Options every subcommand shares: which profile, which cluster."""

    classes = [Cluster]
    profile = Unicode("default", config=True, help="Name of the IPython profile the cluster lives in.")
    profile_dir = Unicode(
        "", config=True, help="Profile directory (default: <ipython_dir>/profile_<profile>); overrides --profile."
    )
    ipython_dir = Unicode(
        "", config=True, help="IPython directory holding the profiles (default: $IPYTHONDIR or ~/.ipython)."
    )
    cluster_id = Unicode(
        "", config=True, help="Id of the cluster within the profile (default: '', the profile's unnamed cluster)."
    )
    aliases = dict(_COMMON_ALIASES)

    @catch_config_error
    def initialize(self, argv: list[str] | None = None) -> None:
        self.parse_command_line(argv)
        config_file = self.profile_path / "ipcluster_config.py"
        if config_file.exists():
            self.load_config_file(config_file.name, path=str(config_file.parent))
            self.parse_command_line(argv)  # the command line wins over the file

    # -- paths and output ---------------------------------------------------------------------

    @property
    def profile_path(self) -> Path:
        return resolve_profile_dir(self.profile, self.profile_dir or None, self.ipython_dir or None)

    @property
    def profile_label(self) -> str:
        name = self.profile_path.name
        return name[len("profile_") :] if name.startswith("profile_") else str(self.profile_path)

    def given(self, trait: str) -> bool:
        """Whether ``trait`` was set on the command line or in a config file."""
        return any(trait in self.config.get(section, {}) for section in ("ClusterCommand", type(self).__name__))

    def say(self, text: str) -> None:
        print(text, flush=True)

    def fail(self, text: str, code: int = EXIT_ERROR) -> int:
        print(f"ipcluster {self.name}: {text}", file=sys.stderr, flush=True)
        return code

    def stop_hint(self, cluster_id: str) -> str:
        args = f" --cluster-id={cluster_id}" if cluster_id else ""
        if self.given("profile_dir"):
            args += f" --profile-dir={self.profile_path}"
        elif self.profile_label != "default":
            args += f" --profile={self.profile_label}"
        return f"ipcluster stop{args}"

    def running_clusters(self) -> list[str]:
        return [record.cluster_id for record in find_clusters(self.profile_path) if record.running]


class IPClusterStart(ClusterCommand):
    name = "start"
    description = """Start a cluster: a controller plus n engines.

    In the foreground (the default) it runs until Ctrl-C or SIGTERM, then stops everything.
    With --daemonize it starts the cluster in the background and returns once the engines are
    ready; stop it with `ipcluster stop`."""
    examples = """
    ipcluster start -n 4
    ipcluster start -n 4 --daemonize --cluster-id=mine
    """

    daemonize = Bool(False, config=True, help="Run the cluster in the background and return once it is up.")
    dry_run = Bool(
        False, config=True,
        help="Print what starting the engines would submit (a batch launcher's job script) or run, and exit.",
    )
    ready_fd = Integer(-1, config=True, help="(internal) pipe on which a daemonized start reports readiness.")

    aliases = {
        **_COMMON_ALIASES,
        "n": "Cluster.n",
        "engines": "Cluster.engine_launcher_class",
        "controller": "Cluster.controller_launcher_class",
        "ip": "Cluster.controller_ip",
    }
    flags = {
        "daemonize": ({"IPClusterStart": {"daemonize": True}}, "Run the cluster in the background."),
        "daemon": ({"IPClusterStart": {"daemonize": True}}, "Same as --daemonize."),
        "dry-run": ({"IPClusterStart": {"dry_run": True}}, "Print the job script (or command) and exit."),
    }

    def start(self) -> int:  # type: ignore[override]
        if self.dry_run:
            try:
                print(dry_run(self.new_cluster()), end="")
            except IPClusterError as e:
                return self.fail(str(e))
            return EXIT_OK
        code = self.check_not_running()
        if code:
            return code
        if self.daemonize:
            return self.start_daemon()
        return asyncio.run(self.run())

    def check_not_running(self) -> int:
        record = find_cluster(self.profile_path, self.cluster_id)
        if record is None:
            return EXIT_OK
        if record.running:
            return self.fail(
                f"cluster {_label(self.cluster_id)} in profile {self.profile_label} is already running "
                f"(controller pid {record.controller_pid}); stop it with `{self.stop_hint(self.cluster_id)}`",
                ALREADY_RUNNING,
            )
        if record.state:
            asyncio.run(stop_recorded(record.state, parent=self))
        record.path.unlink(missing_ok=True)
        self.log.warning("removed the stale state of cluster %s (its controller had exited)", _label(self.cluster_id))
        return EXIT_OK

    def new_cluster(self) -> Cluster:
        return Cluster(
            parent=self, profile_dir=str(self.profile_path), cluster_id=self.cluster_id, owner_kind="ipcluster"
        )

    async def run(self) -> int:
        cluster = self.new_cluster()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        starting = asyncio.ensure_future(cluster.start_and_connect())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()  # start_and_connect stops what it started
                await asyncio.gather(starting, return_exceptions=True)
                return self.fail("interrupted while starting; the cluster is stopped")
            try:
                client = starting.result()
            except IPClusterError as e:
                return self.fail(f"could not start cluster {_label(self.cluster_id)}: {e}")
            n = len(client.ids)
            client.close()
            assert cluster.controller is not None
            how = "" if self.ready_fd >= 0 else " Press Ctrl-C to stop it."
            self.say(
                f"Cluster {_label(self.cluster_id)} is up: {n} engine(s) ready "
                f"(profile {self.profile_label}, controller pid {cluster.controller.pids[0]}).{how}"
            )
            self.notify_ready({"engines": n, "pid": os.getpid(), "controller_pid": cluster.controller.pids[0]})
            controller_exit = asyncio.ensure_future(cluster.controller.wait_first_exit())
            # runs until Ctrl-C, SIGTERM, or the controller going away (`ipcluster stop`)
            await asyncio.wait({stopping, controller_exit}, return_when=asyncio.FIRST_COMPLETED)
            code = EXIT_OK
            if controller_exit.done() and not stopping.done():
                rc = controller_exit.result().poll()
                if rc not in (0, -signal.SIGTERM, -signal.SIGINT):
                    code = self.fail(f"the controller exited with code {rc}; stopping the engines")
            controller_exit.cancel()
            await cluster.stop_cluster()
            self.say(f"Cluster {_label(self.cluster_id)} stopped.")
            return code
        finally:
            stopping.cancel()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def notify_ready(self, info: dict[str, Any]) -> None:
        if self.ready_fd < 0:
            return
        try:
            report_ready(self.ready_fd, info)
        except OSError:
            self.log.warning("could not report readiness to the starting process", exc_info=True)
        self.ready_fd = -1

    def start_daemon(self) -> int:
        """Re-run this command detached (new session, output to the log) and wait until it is up."""
        cluster = self.new_cluster()  # only for its timeouts and paths
        args = [a for a in self.argv if a not in ("--daemonize", "--daemon")]

        def argv(ready_fd: int) -> list[str]:
            return [sys.executable, "-m", "ipcluster", "start", *args, f"--IPClusterStart.ready_fd={ready_fd}"]

        timeout = cluster.controller_timeout + cluster.engine_timeout + 2 * cluster.stop_timeout
        try:
            daemon = asyncio.run(
                start_daemon(argv, os.environ, cluster.log_dir / "ipcluster.log", timeout, cluster.stop_timeout)
            )
        except IPClusterError as e:
            return self.fail(str(e))
        self.say(
            f"Cluster {_label(self.cluster_id)} started in the background: {daemon.info['engines']} engine(s) "
            f"ready (profile {self.profile_label}, ipcluster pid {daemon.pid}). "
            f"Stop it with `{self.stop_hint(self.cluster_id)}`."
        )
        return EXIT_OK


class IPClusterStop(ClusterCommand):
    name = "stop"
    description = """Stop a running cluster: its engines, then its controller.

    The cluster is found through its state file; stopping signals the recorded processes
    (SIGTERM, then SIGKILL after Cluster.stop_timeout) and removes the cluster's files."""
    examples = """
    ipcluster stop
    ipcluster stop --cluster-id=mine --profile=mpi
    ipcluster stop --all
    """

    stop_all = Bool(False, config=True, help="Stop every cluster in the profile.")
    flags = {"all": ({"IPClusterStop": {"stop_all": True}}, "Stop every cluster in the profile.")}

    def start(self) -> int:  # type: ignore[override]
        if self.stop_all:
            records = find_clusters(self.profile_path)
            if not records:
                self.say(f"No clusters in profile {self.profile_label}.")
                return EXIT_OK
            codes = [self.stop_one(record) for record in records]
            return EXIT_ERROR if EXIT_ERROR in codes else EXIT_OK
        record = find_cluster(self.profile_path, self.cluster_id)
        if record is None:
            others = self.running_clusters()
            running = ", ".join(map(_label, others))
            hint = f" (running there: {running}; pass --cluster-id=ID or --all)" if others else ""
            return self.fail(
                f"no cluster {_label(self.cluster_id)} is running in profile {self.profile_label}{hint}", NOT_RUNNING
            )
        return self.stop_one(record)

    def stop_one(self, record: ClusterRecord) -> int:
        cluster_id = record.cluster_id
        if record.state is None:
            record.path.unlink(missing_ok=True)
            return self.fail(f"removed the unreadable state file {record.path}", NOT_RUNNING)
        alive = record.running
        engines = len(record.engine_pids())
        try:
            asyncio.run(stop_recorded(record.state, parent=self))
        except IPClusterError as e:
            return self.fail(f"could not stop cluster {_label(cluster_id)}: {e}")
        if not alive:
            extra = f"; stopped {engines} orphaned engine(s)" if engines else ""
            return self.fail(
                f"cluster {_label(cluster_id)} was not running (its controller had exited); removed its files{extra}",
                NOT_RUNNING,
            )
        self.say(
            f"Stopped cluster {_label(cluster_id)} in profile {self.profile_label} "
            f"(controller and {engines} engine(s))."
        )
        return EXIT_OK


class IPClusterList(ClusterCommand):
    name = "list"
    description = """List the clusters recorded in every profile (or in the one given).

    Columns: profile, cluster id, whether its controller is running, running engines,
    controller pid; and when a cluster has batch jobs, their states (one status command per batch
    engine set). `-o json` prints the same as a JSON list, each cluster with its recorded state."""

    output_format = Enum(["text", "json"], "text", config=True, help="Output format: text (a table) or json.")
    aliases = {**_COMMON_ALIASES, "o": "IPClusterList.output_format", "output": "IPClusterList.output_format"}

    def start(self) -> int:  # type: ignore[override]
        if self.output_format == "json":
            return self.print_json()
        profiles = self.profiles()
        rows: list[tuple[str, ...]] = [("PROFILE", "CLUSTER ID", "RUNNING", "ENGINES", "CONTROLLER PID", "JOBS")]
        for pdir in profiles:
            for record in find_clusters(pdir):
                if record.state is None:
                    continue
                alive = record.running
                name = pdir.name[len("profile_") :] if pdir.name.startswith("profile_") else str(pdir)
                rows.append((
                    name,
                    record.cluster_id or "''",
                    "yes" if alive else "no",
                    str(len(record.engine_pids())),
                    str(record.controller_pid or "-") if alive else "-",
                    job_summary(self.job_states(record)) if alive else "-",
                ))
        if len(rows) == 1:
            self.say("No clusters found.")
            return EXIT_OK
        if all(row[-1] == "-" for row in rows[1:]):  # no batch jobs anywhere: no JOBS column
            rows = [row[:-1] for row in rows]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.say("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        return EXIT_OK

    def profiles(self) -> list[Path]:
        if self.given("profile") or self.given("profile_dir"):
            return [self.profile_path]
        return profile_dirs(self.ipython_dir or None)

    def print_json(self) -> int:
        clusters = []
        for pdir in self.profiles():
            for record in find_clusters(pdir):
                if record.state is None:
                    continue
                alive = record.running
                clusters.append({
                    "profile": pdir.name.removeprefix("profile_"),
                    "cluster_id": record.cluster_id,
                    "running": alive,
                    "engines": len(record.engine_pids()),
                    "controller_pid": record.controller_pid if alive else None,
                    "jobs": self.job_states(record) if alive else {},
                    "state": record.state,
                })
        print(json.dumps(clusters, indent=1))
        return EXIT_OK

    def job_states(self, record: ClusterRecord) -> dict[str, list[dict[str, Any]]]:
        """The batch jobs of a recorded cluster as the queue reports them now ({} without any)."""
        if not record.state or not _has_jobs(record.state):
            return {}
        try:
            return asyncio.run(poll_jobs(Cluster.from_dict(record.state, parent=self)))
        except IPClusterError as e:
            self.log.warning("cluster %s: cannot read its jobs' states: %s", _label(record.cluster_id), e)
            return {}


class IPClusterStatus(IPClusterList):
    name = "status"
    description = """Show one cluster in detail: its controller, engine sets and batch jobs.

    Each batch job's state comes from one status command (squeue, qstat, ...): pending (with the
    queue's reason), running, done, failed (with its exit code), cancelled or timed out."""

    def start(self) -> int:  # type: ignore[override]
        record = find_cluster(self.profile_path, self.cluster_id)
        if record is None or record.state is None:
            return self.fail(f"no cluster {_label(self.cluster_id)} in profile {self.profile_label}", NOT_RUNNING)
        alive = record.running
        self.say(f"cluster {_label(self.cluster_id)} in profile {self.profile_label}: "
                 f"{'running' if alive else 'not running'}")
        self.say(f"  controller: pid {record.controller_pid or '-'}" + ("" if alive else " (exited)"))
        self.say(f"  engines running on this host: {len(record.engine_pids())}")
        for set_id, info in (record.state.get("engines") or {}).items():
            self.say(f"  engine set {set_id}: {info.get('class', '?')}")
        for set_id, jobs in self.job_states(record).items():
            for job in jobs:
                detail = ", ".join(
                    f"{key} {job[key]}" for key in ("reason", "exit_code") if job.get(key) not in (None, "")
                )
                self.say(f"    job {job['job_id']} ({set_id}): {job['state']}" + (f" ({detail})" if detail else ""))
        return EXIT_OK


def _has_jobs(state: dict[str, Any]) -> bool:
    """Whether a cluster's state records batch jobs (only then is the queue asked)."""
    sets = [state.get("controller") or {}, *(state.get("engines") or {}).values()]
    return any(s.get("jobs") or s.get("submitted") for s in sets if isinstance(s, dict))


class IPClusterEngines(ClusterCommand):
    name = "engines"
    description = """Add engines to a running cluster.

    The new engines are recorded in the cluster's state file, so `ipcluster stop` stops them too.
    The command returns once they have registered with the controller."""
    examples = """
    ipcluster engines -n 2
    ipcluster engines -n 2 --cluster-id=mine
    """

    n = Integer(
        None, allow_none=True, config=True, help="Number of engines to add (at least 1; default: one per CPU core)."
    )
    aliases = {**_COMMON_ALIASES, "n": "IPClusterEngines.n", "engines": "Cluster.engine_launcher_class"}

    def start(self) -> int:  # type: ignore[override]
        record = find_cluster(self.profile_path, self.cluster_id)
        if record is None or record.state is None or not record.running:
            return self.fail(
                f"no cluster {_label(self.cluster_id)} is running in profile {self.profile_label}; "
                "start one with `ipcluster start`",
                NOT_RUNNING,
            )
        cluster = Cluster.from_dict(record.state, parent=self)
        launcher = self.config.get("Cluster", {}).get("engine_launcher_class")
        if launcher:
            cluster.engine_launcher_class = launcher
        try:
            return asyncio.run(self.add(cluster, resolve_engine_count(self.n)))
        except IPClusterError as e:
            return self.fail(f"could not add engines: {e}")

    async def add(self, cluster: Cluster, n: int) -> int:
        client = await cluster.connect_client()
        try:
            before = len(client.ids)
            set_id = await cluster.start_engines(n)
            try:
                await cluster.wait_for_engines(client, before + n)
            except BaseException:
                await cluster.stop_engines(set_id)
                raise
            total = len(client.ids)
        finally:
            client.close()
        self.say(
            f"Added {n} engine(s) to cluster {_label(cluster.cluster_id)} (engine set {set_id}); "
            f"{total} engine(s) registered."
        )
        return EXIT_OK


class IPClusterClean(ClusterCommand):
    name = "clean"
    description = """Remove the files of clusters that are not running.

    State files, connection files and log folders of clusters whose controller has exited are
    removed (leftover engines of such clusters are stopped). Running clusters are left alone."""

    def start(self) -> int:  # type: ignore[override]
        removed = asyncio.run(clean_profile(self.profile_path, parent=self))
        for what in removed:
            self.say(f"removed {what}")
        if not removed:
            self.say(f"Nothing to clean in profile {self.profile_label}.")
        return EXIT_OK
