"""The Cluster API: start, find, scale and stop one controller plus sets of engines.

A cluster is identified by its profile directory and cluster id. It has one controller
launcher and any number of *engine sets* (one launcher each, named by an engine-set id). While
it runs it records itself in ``<profile_dir>/security/cluster-<cluster_id>.json`` so that other
processes (``ipcluster stop``, ``ipcluster list``) can find and stop it.

Every method is a coroutine with a blocking twin named ``<method>_sync``. The twins run the
coroutine on a private event-loop thread, so they also work inside a running loop (a notebook
cell). Launchers are loop-agnostic, so the two styles can be mixed on one Cluster.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traitlets import Bool, Float, Integer, List, Type, Unicode, Union, default, validate
from traitlets.config import LoggingConfigurable

from .._aio import LoopThread, run_sync
from ..error import ClusterTimeout, IPClusterError, LauncherError
from ..launchers import Launcher, find_launcher_class, launcher_class_name
from ..launchers.batch import BatchLauncher
from ..launchers.process import Process
from ..protocol.connection import (
    connection_file_name,
    default_ipython_dir,
    profile_dir as default_profile_dir,
    remove_socket_folder,
    security_dir,
    write_private_json,
)
from . import engine_ids
from . import state as state_mod

if TYPE_CHECKING:
    from ..client import Client

# the keys of to_dict()["cluster"] that are traits, restored by from_dict()
_SAVED_TRAITS = (
    "n", "profile", "profile_dir", "cluster_id", "controller_ip", "controller_args", "engine_args",
    "log_level", "engine_timeout", "controller_timeout", "stop_timeout", "owner_kind", "engine_launcher_class",
    "controller_launcher_class",
)


def _launcher_trait(help: str) -> Union:
    return Union([Unicode(), Type(klass=Launcher)], default_value="local", config=True, help=help)


class Cluster(LoggingConfigurable):
    """One controller and its engines, started and stopped together.

    Examples
    --------
    >>> with Cluster(n=4) as rc:                     # doctest: +SKIP
    ...     rc[:].apply_sync(os.getpid)
    >>> cluster = Cluster(n=4)                       # doctest: +SKIP
    >>> rc = cluster.start_and_connect_sync()        # doctest: +SKIP
    >>> cluster.stop_cluster_sync()                  # doctest: +SKIP
    """

    # -- identity -------------------------------------------------------------------------------
    profile = Unicode(
        "default", config=True, help="Name of the IPython profile (used when profile_dir is not set)."
    )
    profile_dir = Unicode(
        config=True, help="The profile directory holding the cluster's security/ and log/ folders."
    )
    ipython_dir = Unicode(
        config=True, help="The IPython directory that profiles live in (default: $IPYTHONDIR or ~/.ipython)."
    )
    cluster_id = Unicode(
        config=True,
        help="""Id of this cluster; a profile can hold several clusters with distinct ids.
        Default (Python API): a fresh id, '<epoch seconds>-<4 random characters>'.""",
    )

    # -- what to start ----------------------------------------------------------------------------
    n = Integer(
        None,
        allow_none=True,
        config=True,
        help="Number of engines start_engines() starts by default (None: one per CPU core).",
    )
    controller_ip = Unicode(
        "127.0.0.1",
        config=True,
        help="Interface the controller listens on ('*' or '0.0.0.0' to accept engines from other hosts).",
    )
    controller_args = List(
        Unicode(), config=True, help="Extra command-line arguments for the controller, e.g. ['--scheme=lru']."
    )
    engine_args = List(Unicode(), config=True, help="Extra command-line arguments for every engine.")
    controller_launcher_class = _launcher_trait(
        "How to launch the controller: a registered launcher name ('local'), an import path, or a class."
    )
    engine_launcher_class = _launcher_trait(
        "How to launch engines: a registered launcher name ('local', ...), an import path, or a class."
    )
    log_level = Union(
        [Integer(), Unicode()],
        default_value=logging.INFO,
        config=True,
        help="Log level of the launched controller and engines (a name like 'DEBUG' or a number).",
    )

    # -- timing -------------------------------------------------------------------------------------
    controller_timeout = Float(
        30.0, config=True, help="Seconds to wait for the controller to write its connection files."
    )
    engine_timeout = Float(
        60.0, config=True, help="Seconds start_and_connect() waits for the engines to register."
    )
    stop_timeout = Float(
        5.0, config=True, help="Seconds to wait for processes to exit after SIGTERM before sending SIGKILL."
    )
    delay = Float(
        0.0,
        config=True,
        help="""Extra seconds to wait between the controller being ready and starting engines.
        Not needed locally (engines start once the connection file exists); for slow shared file systems.""",
    )
    shutdown_atexit = Bool(
        True, config=True, help="Stop the cluster when this Python process exits (if it started it)."
    )
    load_profile = Bool(
        True,
        help="""Read the profile's ipcluster_config.py when a Cluster is created on its own (not by an
        application); keyword arguments win over it.""",
    )
    owner_kind = Unicode(
        "python",
        help="Who started the cluster: 'python' (this API) or 'ipcluster' (the command, which exits with it).",
    )

    def __init__(self, **kwargs: Any) -> None:
        # ipyparallel's short aliases: Cluster(engines="mpi", controller="local")
        if "engines" in kwargs:
            kwargs["engine_launcher_class"] = kwargs.pop("engines")
        if "controller" in kwargs:
            kwargs["controller_launcher_class"] = kwargs.pop("controller")
        if kwargs.get("load_profile", True) and "parent" not in kwargs and "config" not in kwargs:
            config = state_mod.profile_config(kwargs)
            if config is not None:
                kwargs["config"] = config
        super().__init__(**kwargs)
        self.controller: Launcher | None = None
        self.engines: dict[str, Launcher] = {}
        self.start_time: float | None = None
        self.owner_pid: int | None = None
        self.owner_create_time: float | None = None
        self._removed_engine_sets: set[str] = set()
        self._unconfirmed: list[tuple[Launcher, Process]] = []  # started, not yet seen registered
        self._clients: list[Any] = []
        self._loop_thread_: LoopThread | None = None
        self._atexit_registered = False
        name = Path(self.profile_dir).name
        if name.startswith("profile_") and "profile" not in kwargs:
            self.profile = name[len("profile_") :]

    @default("ipython_dir")
    def _ipython_dir_default(self) -> str:
        return str(default_ipython_dir())

    @default("profile_dir")
    def _profile_dir_default(self) -> str:
        return str(default_profile_dir(self.profile, self.ipython_dir))

    @default("cluster_id")
    def _cluster_id_default(self) -> str:
        return state_mod.new_cluster_id()

    @validate("profile_dir")
    def _absolute_profile_dir(self, proposal: Any) -> str:
        return str(Path(proposal["value"]).expanduser().absolute())

    def __repr__(self) -> str:
        controller = "running" if self.controller and self.controller.poll() is None else "not running"
        sets = {k: len(v.running_pids) for k, v in self.engines.items()}
        return (
            f"<Cluster(cluster_id={self.cluster_id!r}, profile={self.profile!r}, "
            f"controller={controller}, engine_sets={sets})>"
        )

    # -- paths ----------------------------------------------------------------------------------------

    @property
    def cluster_file(self) -> Path:
        """This cluster's state file: ``<profile_dir>/security/cluster-<cluster_id>.json``."""
        return state_mod.cluster_file(self.profile_dir, self.cluster_id)

    @property
    def log_dir(self) -> Path:
        return state_mod.log_dir(self.profile_dir, self.cluster_id)

    def connection_file(self, role: str = "client") -> Path:
        """Path of the controller's ``client`` or ``engine`` connection file."""
        return security_dir(self.profile_dir) / connection_file_name(role, self.cluster_id)  # type: ignore[arg-type]

    def _log_level_name(self) -> str:
        level = self.log_level
        return logging.getLevelName(level) if isinstance(level, int) else str(level).upper()

    def _make_launcher(self, which: Any, **kwargs: Any) -> Launcher:
        cls = find_launcher_class(which)
        return cls(parent=self, log_dir=str(self.log_dir), stop_timeout=self.stop_timeout, **kwargs)

    # -- starting --------------------------------------------------------------------------------------

    async def start_controller(self) -> None:
        """Start the controller and wait until it has written its connection files.

        Raises :class:`~ipcluster.error.ProcessExited` (exit code, output tail) if it dies first,
        :class:`~ipcluster.error.ClusterTimeout` after :attr:`controller_timeout`, and
        :class:`~ipcluster.error.IPClusterError` if this cluster is already running.
        """
        await self._spawn_controller()
        await self._controller_ready()

    async def _spawn_controller(self) -> None:
        if self.controller is not None and self.controller.poll() is None:
            raise IPClusterError(f"the controller of cluster {self.cluster_id!r} is already running")
        state_mod.clear_stale_files(self.profile_dir, self.cluster_id)
        argv = [
            sys.executable, "-m", "ipcluster.controller",
            f"--profile-dir={self.profile_dir}",
            f"--ip={self.controller_ip}",
            f"--log-level={self._log_level_name()}",
        ]
        if self.cluster_id:
            argv.append(f"--cluster-id={self.cluster_id}")
        argv.extend(self.controller_args)
        launcher = self._make_launcher(self.controller_launcher_class, argv=argv, name="controller")
        self.controller = launcher
        self._removed_engine_sets.clear()
        await launcher.start(1)
        self._unconfirmed = [(launcher, proc) for proc in launcher.processes]
        self._register_atexit()

    async def _controller_ready(self) -> None:
        assert self.controller is not None
        try:
            await self.controller.wait_for_path(self.connection_file("client"), self.controller_timeout)
        except BaseException:
            await self.controller.stop()
            raise
        self.start_time = time.time()
        self.owner_pid = os.getpid()
        self.owner_create_time = Process(self.owner_pid).create_time
        self._write_state()
        self.log.info("cluster %s: controller ready (pid %s)", self.cluster_id or "''", self.controller.pids[0])

    async def start_engines(self, n: int | None = None, engine_set_id: str | None = None) -> str:
        """Start a set of ``n`` engines (default :attr:`n`) and return its engine-set id.

        Call it again to add engines: every call starts a new set. The engines register with
        the controller on their own; :meth:`start_and_connect` waits for them.
        """
        engine_file = self.connection_file("engine")
        if not engine_file.exists():
            raise IPClusterError(f"cluster {self.cluster_id!r} has no controller running ({engine_file} is missing)")
        set_id = await self._spawn_engines(n, engine_set_id)
        self._write_state()
        return set_id

    async def _spawn_engines(self, n: int | None = None, engine_set_id: str | None = None) -> str:
        count = n if n is not None else (self.n or os.cpu_count() or 1)
        set_id = engine_set_id or state_mod.new_cluster_id()
        if set_id in self.engines:
            raise IPClusterError(f"engine set {set_id!r} already exists")
        launcher = self._make_launcher(self.engine_launcher_class, argv=self._engine_argv(), name=f"engines-{set_id}")
        self.engines[set_id] = launcher
        self._removed_engine_sets.discard(set_id)
        try:
            await launcher.start(count)
        except BaseException:
            await launcher.stop()
            del self.engines[set_id]
            raise
        self._unconfirmed.extend((launcher, proc) for proc in launcher.processes)
        self._register_atexit()
        return set_id

    add_engines = start_engines

    def _engine_argv(self) -> list[str]:
        return [
            sys.executable, "-m", "ipcluster.engine",
            f"--file={self.connection_file('engine')}",
            f"--timeout={self.controller_timeout}",
            f"--log-level={self._log_level_name()}",
            *self.engine_args,
        ]

    async def start_cluster(self, n: int | None = None) -> None:
        """Start the controller and ``n`` engines (default :attr:`n`; 0: the controller alone).

        The engines are started together with the controller (they wait for its connection
        file), so their start-up overlaps; with a :attr:`delay`, they start that long after the
        controller is ready instead. Returns once the controller is ready; the engines register
        on their own (see :meth:`start_and_connect`).
        """
        count = n if n is not None else (self.n or os.cpu_count() or 1)
        await self._spawn_controller()
        try:
            if count and not self.delay:
                await self._spawn_engines(count)
            await self._controller_ready()
            if count and self.delay:
                await asyncio.sleep(self.delay)  # user-requested; not synchronisation
                await self._spawn_engines(count)
            self._write_state()
            await self._check_jobs()
        except BaseException:
            await self.stop_cluster()
            raise

    # -- connecting -----------------------------------------------------------------------------------

    async def connect_client(self, **kwargs: Any) -> "Client":
        """A :class:`~ipcluster.client.Client` connected to this cluster's controller."""
        from ..client import Client  # lazily: starting a cluster must not need the client

        kwargs.setdefault("timeout", self.controller_timeout)
        kwargs.setdefault("cluster", self)
        client = await asyncio.to_thread(Client, url_file=str(self.connection_file("client")), **kwargs)
        self._clients.append(client)
        return client

    def _expected_engines(self) -> int:
        return sum(_expected(launcher) for launcher in self.engines.values())

    async def wait_for_engines(self, client: Any, n: int | None = None, timeout: float | None = None) -> None:
        """Wait until ``client`` sees ``n`` engines (default: all started), failing fast.

        Raises :class:`~ipcluster.error.ProcessExited` as soon as the controller or an engine
        exits, and :class:`~ipcluster.error.ClusterTimeout` after ``timeout`` (default
        :attr:`engine_timeout`) seconds.
        """
        n = self._expected_engines() if n is None else n
        timeout = self.engine_timeout if timeout is None else timeout
        launchers = [launcher for launcher in (self.controller, *self.engines.values()) if launcher]
        # processes started since the last successful wait must not have exited; of the others,
        # only those running now are watched (an engine that died long ago is not news)
        for launcher, proc in self._unconfirmed:
            if not proc.running:
                raise launcher.exited_error(proc, " before the engines registered")
        ready = asyncio.ensure_future(engine_ids.wait_registered(client, n, timeout))
        exits = {
            asyncio.ensure_future(proc.wait()): (launcher, proc)
            for launcher in launchers
            for proc in launcher.processes
            if proc.running
        }
        # batch jobs: the launcher polls the queue and returns the error of a job that ended
        jobs = {
            asyncio.ensure_future(launcher.watch_jobs()) for launcher in launchers if isinstance(launcher, BatchLauncher)
        }
        try:
            done, _ = await asyncio.wait(
                {ready, *exits, *jobs}, timeout=timeout + 1, return_when=asyncio.FIRST_COMPLETED
            )
            if ready in done:
                ready.result()
                self._unconfirmed.clear()
                return
            for exit_task, (launcher, proc) in exits.items():
                if exit_task in done:
                    raise launcher.exited_error(proc, " while waiting for engines to register")
            for job_task in jobs & done:
                raise job_task.result()
            raise ClusterTimeout(f"{n} engine(s) did not register within {timeout} s")
        finally:
            ready.cancel()
            for task in (*exits, *jobs):
                task.cancel()
            await asyncio.gather(ready, *exits, *jobs, return_exceptions=True)

    async def start_and_connect(self, n: int | None = None, activate: bool = False) -> "Client":
        """Start the cluster, connect a client and wait for the engines; return the client.

        With ``activate=True`` the client's ``%px`` magics are registered. If anything fails,
        whatever was started is stopped before the error propagates.
        """
        try:
            await self.start_cluster(n)
            client = await self.connect_client()
            await self.wait_for_engines(client)
        except BaseException:
            await self.stop_cluster()
            raise
        if activate:
            client.activate()
        return client

    # -- batch jobs ------------------------------------------------------------------------------------

    def job_states(self) -> dict[str, list[dict[str, Any]]]:
        """The batch jobs of each batch engine set (and ``"controller"``), as of the last status poll.

        Each job is a dict with ``job_id``, ``state`` (pending, running, done, failed, cancelled,
        timeout, ended), ``reason``, ``exit_code``, ``processes`` and ``output`` (its output file).
        """
        sets = {"controller": self.controller, **self.engines}
        return {k: v.job_states() for k, v in sets.items() if isinstance(v, BatchLauncher)}

    def job_script(self, n: int | None = None) -> str:
        """The job script that starting ``n`` engines (default :attr:`n`) would submit, exactly.

        Needs a batch engine launcher (``engine_launcher_class = "slurm"``, ...); nothing is submitted.
        """
        count = n if n is not None else (self.n or os.cpu_count() or 1)
        launcher = self._make_launcher(self.engine_launcher_class, argv=self._engine_argv(), name="engines-<id>")
        if not isinstance(launcher, BatchLauncher):
            name = _launcher_name(self.engine_launcher_class)
            raise IPClusterError(f"engine launcher {name!r} does not submit job scripts")
        return launcher.job_script(count)

    def _active_jobs(self) -> list[str]:
        """Ids of batch jobs this cluster submitted that may still be pending or running."""
        launchers = (self.controller, *self.engines.values())
        return [j for launcher in launchers if isinstance(launcher, BatchLauncher) for j in launcher.jobs.active]

    async def _check_jobs(self) -> None:
        """Raise the error of a batch job that is already known to have ended (one status poll)."""
        for launcher in (self.controller, *self.engines.values()):
            if isinstance(launcher, BatchLauncher):
                await launcher.refresh()
                launcher.check_running()

    # -- stopping ------------------------------------------------------------------------------------

    async def stop_engines(self, engine_set_id: str | None = None) -> None:
        """Stop one engine set, or all of them (``None``)."""
        self._adopt_recorded_engine_sets()
        ids = list(self.engines) if engine_set_id is None else [engine_set_id]
        missing = [i for i in ids if i not in self.engines]
        if missing:
            raise IPClusterError(f"no engine set {missing[0]!r}; engine sets: {sorted(self.engines)}")
        try:
            await asyncio.gather(*(self.engines[i].stop() for i in ids))
        finally:
            for i in ids:
                self.engines.pop(i, None)
                self._removed_engine_sets.add(i)
            if self.controller is not None and self.controller.poll() is None:
                self._write_state()

    async def stop_controller(self) -> None:
        """Stop the controller (the engines lose it; see :meth:`stop_cluster`)."""
        self._close_clients()
        if self.controller is None:
            return
        await self.controller.stop()
        for role in ("client", "engine"):  # normally removed by the controller itself
            path = self.connection_file(role)
            info = state_mod.read_json(path)
            if info is None or info.get("pid") in (None, *self.controller.pids):
                path.unlink(missing_ok=True)
                remove_socket_folder(info)

    async def stop_cluster(self) -> None:
        """Stop every engine set, then the controller, and remove the state file."""
        self._close_clients()
        owned = self._owns_state_file() is not None
        try:
            await self.stop_engines()
        finally:
            await self.stop_controller()
            if owned:
                self.cluster_file.unlink(missing_ok=True)
            self._unregister_atexit()
        self.log.info("cluster %s stopped", self.cluster_id or "''")

    async def restart_engines(self, engine_set_id: str | None = None) -> None:
        """Stop and start again one engine set, or all of them, with the same sizes and ids."""
        ids = list(self.engines) if engine_set_id is None else [engine_set_id]
        missing = [i for i in ids if i not in self.engines]
        if missing:
            raise IPClusterError(f"no engine set {missing[0]!r}; engine sets: {sorted(self.engines)}")
        launchers = [self.engines[i] for i in ids]
        sizes = [len(launcher.processes) for launcher in launchers]
        await asyncio.gather(*(launcher.stop() for launcher in launchers))
        for launcher, count in zip(launchers, sizes):
            launcher.processes.clear()
            await launcher.start(count)  # the same launcher: fresh log files, same engine-set id
            self._unconfirmed.extend((launcher, proc) for proc in launcher.processes)
        self._write_state()

    # -- signals ----------------------------------------------------------------------------------------

    async def signal_engines(self, signum: int, engine_set_id: str | None = None) -> None:
        """Send ``signum`` to every engine, or to those of one engine set.

        SIGINT interrupts the task an engine is running; SIGTERM makes it exit.
        """
        ids = list(self.engines) if engine_set_id is None else [engine_set_id]
        for set_id in ids:
            await self.engines[set_id].signal(signum)

    async def signal_engine(self, signum: int, engine_id: int) -> None:
        """Send ``signum`` to the engine with id ``engine_id`` (as the client numbers engines).

        The engine's pid is the one it registered with, which the controller tells every client;
        the signal is sent only to a process this cluster started.
        """
        pid = await self._engine_pid(engine_id)
        for launcher in self.engines.values():
            if pid in launcher.pids:
                await launcher.signal(signum, index=launcher.pids.index(pid))
                return
        raise IPClusterError(f"engine {engine_id} (pid {pid}) was not started by this cluster")

    async def restart_engine(self, engine_id: int) -> None:
        """Stop the engine ``engine_id`` and start one replacement in the same engine set."""
        pid = await self._engine_pid(engine_id)
        for launcher in self.engines.values():
            if pid in launcher.pids:
                await launcher.stop_process(launcher.pids.index(pid))
                await launcher.start(1)
                self._unconfirmed.append((launcher, launcher.processes[-1]))
                self._write_state()
                return
        raise IPClusterError(f"engine {engine_id} (pid {pid}) was not started by this cluster")

    async def _engine_pid(self, engine_id: int) -> int:
        """The pid engine ``engine_id`` registered with (the controller tells every client)."""
        client = self._clients[0] if self._clients else await self.connect_client()
        pid = engine_ids.pid_from_client(client, engine_id)
        if not pid:
            raise IPClusterError(f"engine {engine_id} is not registered (engines: {client.ids})")
        return pid

    # -- state -------------------------------------------------------------------------------------------

    def running_pids(self) -> list[int]:
        """Pids of this cluster's processes that are still running (controller first)."""
        launchers = [launcher for launcher in (self.controller, *self.engines.values()) if launcher]
        return [pid for launcher in launchers for pid in launcher.running_pids]

    def to_dict(self) -> dict[str, Any]:
        """The cluster's state, as written to :attr:`cluster_file`."""
        cluster: dict[str, Any] = {name: getattr(self, name) for name in _SAVED_TRAITS}
        cluster["class"] = f"{type(self).__module__}:{type(self).__qualname__}"
        cluster["controller_launcher_class"] = _launcher_name(self.controller_launcher_class)
        cluster["engine_launcher_class"] = _launcher_name(self.engine_launcher_class)
        cluster["start_time"] = self.start_time
        cluster["owner_pid"] = self.owner_pid
        cluster["owner_create_time"] = self.owner_create_time
        return {
            "cluster": cluster,
            "controller": self.controller.to_dict() if self.controller else None,
            "engines": {set_id: launcher.to_dict() for set_id, launcher in self.engines.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], **kwargs: Any) -> "Cluster":
        """Rebuild a Cluster from :meth:`to_dict`: its processes can be signalled and stopped.

        A restored cluster does not stop at this interpreter's exit unless ``shutdown_atexit=True``
        is passed.
        """
        info = d["cluster"]
        traits = {name: info[name] for name in _SAVED_TRAITS if name in info}
        traits.setdefault("shutdown_atexit", False)
        traits.setdefault("load_profile", False)
        traits.update(kwargs)
        self = cls(**traits)
        self.start_time = info.get("start_time")
        self.owner_pid = info.get("owner_pid")
        self.owner_create_time = info.get("owner_create_time")
        if d.get("controller"):
            self.controller = self._restore_launcher(d["controller"])
        for set_id, launcher_state in (d.get("engines") or {}).items():
            self.engines[set_id] = self._restore_launcher(launcher_state)
        return self

    @classmethod
    def from_file(
        cls,
        cluster_file: str | os.PathLike[str] | None = None,
        *,
        profile: str | None = None,
        profile_dir: str | os.PathLike[str] | None = None,
        cluster_id: str = "",
        **kwargs: Any,
    ) -> "Cluster":
        """Load a running cluster from its state file (by path, or by profile and cluster id)."""
        if cluster_file is None:
            pdir = profile_dir or default_profile_dir(profile or "default", kwargs.get("ipython_dir"))
            cluster_file = state_mod.cluster_file(pdir, cluster_id)
        return cls.from_dict(state_mod.read_state(cluster_file), **kwargs)

    def _restore_launcher(self, launcher_state: dict[str, Any]) -> Launcher:
        cls = find_launcher_class(launcher_state.get("class", "local"))
        return cls.from_dict(launcher_state, parent=self, stop_timeout=self.stop_timeout)

    def _write_state(self) -> None:
        self._adopt_recorded_engine_sets()
        write_private_json(self.cluster_file, self.to_dict())

    def _owns_state_file(self) -> dict[str, Any] | None:
        """The saved state, if the state file describes this cluster's controller."""
        try:
            saved = state_mod.read_state(self.cluster_file)
        except IPClusterError:
            return None
        procs = (saved.get("controller") or {}).get("processes") or [{}]
        if self.controller is None or procs[0].get("pid") not in self.controller.pids:
            return None
        return saved

    def _adopt_recorded_engine_sets(self) -> None:
        """Take over engine sets that another process (``ipcluster engines``) recorded for us."""
        saved = self._owns_state_file()
        if saved is None:
            return
        for set_id, launcher_state in (saved.get("engines") or {}).items():
            if set_id not in self.engines and set_id not in self._removed_engine_sets:
                try:
                    self.engines[set_id] = self._restore_launcher(launcher_state)
                except LauncherError:
                    self.log.warning("cannot restore engine set %s from %s", set_id, self.cluster_file, exc_info=True)

    def _close_clients(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:
                self.log.debug("closing a client failed", exc_info=True)

    # -- cleanup at exit -----------------------------------------------------------------------------

    def _register_atexit(self) -> None:
        if self.shutdown_atexit and not self._atexit_registered:
            atexit.register(self._stop_at_exit)
            self._atexit_registered = True

    def _unregister_atexit(self) -> None:
        if self._atexit_registered:
            atexit.unregister(self._stop_at_exit)
            self._atexit_registered = False

    def _stop_at_exit(self) -> None:
        if not self.running_pids() and not self._active_jobs():
            return
        self.log.info("stopping cluster %s at exit", self.cluster_id or "''")
        try:
            asyncio.run(self.stop_cluster())
        except Exception:
            self.log.exception("could not stop cluster %s at exit", self.cluster_id)
        self._stop_loop_thread()

    # -- blocking twins ---------------------------------------------------------------------------------

    @property
    def _loop_thread(self) -> LoopThread:
        if self._loop_thread_ is None or self._loop_thread_.loop.is_closed():
            self._loop_thread_ = LoopThread(name=f"ipcluster-cluster-{self.cluster_id}")
        return self._loop_thread_

    def _stop_loop_thread(self) -> None:
        if self._loop_thread_ is not None:
            self._loop_thread_.stop()
            self._loop_thread_ = None

    start_controller_sync = run_sync(start_controller)
    start_engines_sync = run_sync(start_engines)
    add_engines_sync = start_engines_sync
    start_cluster_sync = run_sync(start_cluster)
    connect_client_sync = run_sync(connect_client)
    wait_for_engines_sync = run_sync(wait_for_engines)
    start_and_connect_sync = run_sync(start_and_connect)
    stop_engines_sync = run_sync(stop_engines)
    stop_controller_sync = run_sync(stop_controller)
    _stop_cluster_sync = run_sync(stop_cluster)

    def stop_cluster_sync(self) -> None:
        """Blocking version of :meth:`stop_cluster`; also ends the private event-loop thread."""
        try:
            self._stop_cluster_sync()
        finally:
            self._stop_loop_thread()

    restart_engines_sync = run_sync(restart_engines)
    restart_engine_sync = run_sync(restart_engine)
    signal_engines_sync = run_sync(signal_engines)
    signal_engine_sync = run_sync(signal_engine)

    # -- context managers -----------------------------------------------------------------------------

    def __enter__(self) -> "Client":
        """Start the cluster and return a client with the engines ready."""
        return self.start_and_connect_sync()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop_cluster_sync()

    async def __aenter__(self) -> "Client":
        return await self.start_and_connect()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop_cluster()


def _expected(launcher: Launcher) -> int:
    """Engines a launcher can still bring: running processes, or batch jobs' processes."""
    if isinstance(launcher, BatchLauncher):
        return launcher.expected_processes()
    return len(launcher.running_pids)


def _launcher_name(value: Any) -> str:
    return launcher_class_name(value) if isinstance(value, type) else str(value)
