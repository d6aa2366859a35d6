"""The subcommands of ``ipcluster``: start, stop, list, engines, clean."""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from traitlets import Bool, Integer, Unicode
from traitlets.config import Application, catch_config_error

from ..cluster import Cluster
from ..cluster import state as st
from ..error import IPClusterError
from ..launchers.process import Process, pid_alive
from ..protocol.connection import profile_dir as default_profile_dir, remove_socket_folder, security_dir

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
        if self.profile_dir:
            return Path(self.profile_dir).expanduser().absolute()
        return default_profile_dir(self.profile, self.ipython_dir or None)

    @property
    def profile_label(self) -> str:
        name = self.profile_path.name
        return name[len("profile_") :] if name.startswith("profile_") else str(self.profile_path)

    def state_path(self, cluster_id: str | None = None) -> Path:
        return st.cluster_file(self.profile_path, self.cluster_id if cluster_id is None else cluster_id)

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
        ids = []
        for path in st.cluster_files(self.profile_path):
            state = _try_read(path)
            if state and st.state_controller_alive(state):
                ids.append(st.cluster_id_of(path))
        return ids

    async def stop_recorded(self, state: dict[str, Any]) -> Cluster:
        """Stop every process a state dict records (and wait for an ipcluster owner to exit)."""
        cluster = Cluster.from_dict(state, parent=self)
        await cluster.stop_cluster()
        owner = cluster.owner_pid
        if cluster.owner_kind == "ipcluster" and owner and owner != os.getpid():
            proc = Process(owner, create_time=cluster.owner_create_time)
            # it exits by itself once its controller is gone; make sure it does
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None:
                    proc.send_signal(sig)
                try:
                    await proc.wait(cluster.stop_timeout)
                    break
                except TimeoutError:
                    continue
        return cluster


def _try_read(path: Path) -> dict[str, Any] | None:
    try:
        return st.read_state(path)
    except IPClusterError:
        return None


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
    }

    def start(self) -> int:  # type: ignore[override]
        code = self.check_not_running()
        if code:
            return code
        if self.daemonize:
            return self.start_daemon()
        return asyncio.run(self.run())

    def check_not_running(self) -> int:
        path = self.state_path()
        if not path.exists():
            return EXIT_OK
        state = _try_read(path)
        if state and st.state_controller_alive(state):
            pid = state["controller"]["processes"][0]["pid"]
            return self.fail(
                f"cluster {_label(self.cluster_id)} in profile {self.profile_label} is already running "
                f"(controller pid {pid}); stop it with `{self.stop_hint(self.cluster_id)}`",
                ALREADY_RUNNING,
            )
        if state:
            asyncio.run(self.stop_recorded(state))
        path.unlink(missing_ok=True)
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
            os.write(self.ready_fd, (json.dumps(info) + "\n").encode())
            os.close(self.ready_fd)
        except OSError:
            self.log.warning("could not report readiness to the starting process", exc_info=True)
        self.ready_fd = -1

    def start_daemon(self) -> int:
        """Re-run this command detached (new session, output to the log) and wait until it is up."""
        cluster = self.new_cluster()  # only for its timeouts and paths
        log_file = cluster.log_dir / "ipcluster.log"
        read_end, write_end = os.pipe()
        os.set_inheritable(write_end, True)
        argv = [
            sys.executable, "-m", "ipcluster", "start",
            *(a for a in self.argv if a not in ("--daemonize", "--daemon")),
            f"--IPClusterStart.ready_fd={write_end}",
        ]
        try:
            proc = Process.spawn(argv, dict(os.environ), log_file)
        finally:
            os.close(write_end)
        timeout = cluster.controller_timeout + cluster.engine_timeout + 2 * cluster.stop_timeout
        try:
            line = _read_line(read_end, timeout)
        finally:
            os.close(read_end)
        if line:
            info = json.loads(line)
            self.say(
                f"Cluster {_label(self.cluster_id)} started in the background: {info['engines']} engine(s) ready "
                f"(profile {self.profile_label}, ipcluster pid {proc.pid}). "
                f"Stop it with `{self.stop_hint(self.cluster_id)}`."
            )
            return EXIT_OK
        if proc.poll() is None:  # no word within the timeout: give up, it stops what it started
            proc.send_signal(signal.SIGTERM)
            asyncio.run(_wait_quietly(proc, cluster.stop_timeout * 2))
        tail = proc.output_tail()
        return self.fail(
            f"the background cluster did not start (exit code {proc.poll()}); see {log_file}"
            + (f"\n--- output tail ---\n{tail}" if tail else "")
        )


async def _wait_quietly(proc: Process, timeout: float) -> None:
    try:
        await proc.wait(timeout)
    except TimeoutError:
        proc.send_signal(signal.SIGKILL)


def _read_line(fd: int, timeout: float) -> str:
    """Read one line from ``fd`` within ``timeout`` seconds; '' on EOF or timeout."""
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return ""
        chunk = os.read(fd, 4096)
        if not chunk:
            return ""
        buf += chunk
    return buf.partition(b"\n")[0].decode()


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
            paths = list(st.cluster_files(self.profile_path))
            if not paths:
                self.say(f"No clusters in profile {self.profile_label}.")
                return EXIT_OK
            codes = [self.stop_one(path) for path in paths]
            return EXIT_ERROR if EXIT_ERROR in codes else EXIT_OK
        path = self.state_path()
        if not path.exists():
            others = self.running_clusters()
            running = ", ".join(map(_label, others))
            hint = f" (running there: {running}; pass --cluster-id=ID or --all)" if others else ""
            return self.fail(
                f"no cluster {_label(self.cluster_id)} is running in profile {self.profile_label}{hint}", NOT_RUNNING
            )
        return self.stop_one(path)

    def stop_one(self, path: Path) -> int:
        cluster_id = st.cluster_id_of(path)
        state = _try_read(path)
        if state is None:
            path.unlink(missing_ok=True)
            return self.fail(f"removed the unreadable state file {path}", NOT_RUNNING)
        alive = st.state_controller_alive(state)
        engines = len(st.state_engine_pids(state))
        try:
            asyncio.run(self.stop_recorded(state))
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
    controller pid."""

    def start(self) -> int:  # type: ignore[override]
        if self.given("profile") or self.given("profile_dir"):
            profiles = [self.profile_path]
        else:
            profiles = st.profile_dirs(self.ipython_dir or None)
        rows = [("PROFILE", "CLUSTER ID", "RUNNING", "ENGINES", "CONTROLLER PID")]
        for pdir in profiles:
            for path in st.cluster_files(pdir):
                state = _try_read(path)
                if state is None:
                    continue
                alive = st.state_controller_alive(state)
                procs = (state.get("controller") or {}).get("processes") or [{}]
                name = pdir.name[len("profile_") :] if pdir.name.startswith("profile_") else str(pdir)
                rows.append((
                    name,
                    st.cluster_id_of(path) or "''",
                    "yes" if alive else "no",
                    str(len(st.state_engine_pids(state))),
                    str(procs[0].get("pid", "-")) if alive else "-",
                ))
        if len(rows) == 1:
            self.say("No clusters found.")
            return EXIT_OK
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.say("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        return EXIT_OK


class IPClusterEngines(ClusterCommand):
    name = "engines"
    description = """Add engines to a running cluster.

    The new engines are recorded in the cluster's state file, so `ipcluster stop` stops them too.
    The command returns once they have registered with the controller."""
    examples = """
    ipcluster engines -n 2
    ipcluster engines -n 2 --cluster-id=mine
    """

    n = Integer(None, allow_none=True, config=True, help="Number of engines to add (default: one per CPU core).")
    aliases = {**_COMMON_ALIASES, "n": "IPClusterEngines.n", "engines": "Cluster.engine_launcher_class"}

    def start(self) -> int:  # type: ignore[override]
        path = self.state_path()
        state = _try_read(path) if path.exists() else None
        if state is None or not st.state_controller_alive(state):
            return self.fail(
                f"no cluster {_label(self.cluster_id)} is running in profile {self.profile_label}; "
                "start one with `ipcluster start`",
                NOT_RUNNING,
            )
        cluster = Cluster.from_dict(state, parent=self)
        launcher = self.config.get("Cluster", {}).get("engine_launcher_class")
        if launcher:
            cluster.engine_launcher_class = launcher
        try:
            return asyncio.run(self.add(cluster, self.n or os.cpu_count() or 1))
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
        pdir = self.profile_path
        running: set[str] = set()
        removed: list[str] = []
        for path in list(st.cluster_files(pdir)):
            cluster_id = st.cluster_id_of(path)
            state = _try_read(path)
            if state is not None and st.state_controller_alive(state):
                running.add(cluster_id)
                continue
            if state is not None:
                asyncio.run(self.stop_recorded(state))  # leftover engines, connection files
            path.unlink(missing_ok=True)
            removed.append(f"cluster {_label(cluster_id)}")
        for folder in sorted((pdir / "log").glob(f"{st.STATE_PREFIX}*")):
            if folder.is_dir() and folder.name[len(st.STATE_PREFIX) :] not in running:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(str(folder))
        for conn in sorted(security_dir(pdir).glob("ipcontroller*-*.json")):
            try:
                info = json.loads(conn.read_text())
                pid = int(info.get("pid", 0))
            except (OSError, ValueError, AttributeError):
                info, pid = {}, 0
            if not pid_alive(pid):
                conn.unlink(missing_ok=True)
                removed.append(str(conn))
                removed.extend(remove_socket_folder(info))
        for what in removed:
            self.say(f"removed {what}")
        if not removed:
            self.say(f"Nothing to clean in profile {self.profile_label}.")
        return EXIT_OK
