"""The Cluster API: start, find, scale and stop one controller plus sets of engines.

A cluster is identified by its profile directory and cluster id. It has one controller
launcher and any number of *engine sets* (one launcher each, named by an engine-set id). While
it runs it records itself in ``<profile_dir>/security/cluster-<cluster_id>.json`` so that other
processes (``ipcluster stop``, ``ipcluster list``) can find and stop it.

Every method is a coroutine with a blocking twin named ``<method>_sync``, run on a private event-loop
thread (so it works inside a running loop too); launchers are loop-agnostic. :attr:`Cluster.supervisor`
reports and restarts engines that die (see :mod:`.supervisor`).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from traitlets import Unicode, default, validate
from traitlets.config import LoggingConfigurable

from .._aio import LoopThread, run_sync
from ..error import IPClusterError
from ..launchers import Launcher, find_launcher_class
from ..launchers.process import Process
from ..protocol.connection import (
    connection_file_name,
    default_ipython_dir,
    profile_dir as default_profile_dir,
    security_dir,
)
from . import argv, engine_ids, jobs, owner
from . import state as state_mod
from .enginectl import EngineControl
from .options import ClusterOptions, resolve_engine_count
from .placement import check_reachable, engines_in
from .supervisor import EngineSupervisor

if TYPE_CHECKING:
    from ..client import Client


class Cluster(EngineControl, ClusterOptions, LoggingConfigurable):
    """One controller and its engines, started and stopped together.

    What it starts and how long it waits (``n``, the launchers, the timeouts) are the options of
    :class:`~ipcluster.cluster.options.ClusterOptions`, configured as ``c.Cluster.<name>``.

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

    def __init__(self, **kwargs: Any) -> None:
        kwargs = self._expand_aliases(kwargs)
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
        self.supervisor = EngineSupervisor(self)  # reports (and restarts) engines that die
        self._loop_thread_: LoopThread | None = None
        self._exit_hook = owner.ExitHook(self._stop_at_exit)
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
        launcher = self._make_launcher(self.controller_launcher_class, argv=argv.controller(self), name="controller")
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
        owner.record_owner(self)
        self._write_state()
        self.log.info("cluster %s: controller ready (pid %s)", self.cluster_id or "''", self.controller.pids[0])

    async def start_engines(self, n: int | None = None, engine_set_id: str | None = None) -> str:
        """Start a set of ``n`` engines (default :attr:`n`) and return its engine-set id.

        Call it again to add engines: every call starts a new set. The engines register with
        the controller on their own; :meth:`start_and_connect` waits for them. A count of 0
        (``n=0``, or :attr:`n` 0 and no ``n``) is refused: there would be no set to name.
        """
        engine_file = self.connection_file("engine")
        if not engine_file.exists():
            raise IPClusterError(f"cluster {self.cluster_id!r} has no controller running ({engine_file} is missing)")
        set_id = await self._spawn_engines(n, engine_set_id)
        self._write_state()
        return set_id

    async def _spawn_engines(self, n: int | None = None, engine_set_id: str | None = None) -> str:
        set_id = engine_set_id or state_mod.new_cluster_id()
        if set_id in self.engines:
            raise IPClusterError(f"engine set {set_id!r} already exists")
        launcher = self._make_launcher(self.engine_launcher_class, argv=argv.engine(self), name=f"engines-{set_id}")
        # a launcher with its own host list (ssh) knows how many engines it was configured for
        requested = n if n is not None else self.n
        count = resolve_engine_count(getattr(launcher, "default_count", None) if requested is None else requested)
        if count < 1:
            raise IPClusterError(f"cluster {self.cluster_id!r}: no engines to start (n={count})")
        check_reachable(launcher, self.controller_ip)
        self.engines[set_id] = launcher
        self.supervisor.watch(set_id, launcher)
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

    async def start_cluster(self, n: int | None = None) -> None:
        """Start the controller and ``n`` engines (default :attr:`n`; 0: the controller alone).

        The engines start together with the controller (they wait for its connection file), so their
        start-ups overlap; with a :attr:`delay`, they start that long after the controller is ready.
        Returns once the controller is ready; the engines register on their own (:meth:`start_and_connect`).
        """
        count = self.engine_count(n)
        await self._spawn_controller()
        try:
            if count and not self.delay:
                await self._spawn_engines(n)  # None: the launcher or Cluster.n decides
            await self._controller_ready()
            if count and self.delay:
                await asyncio.sleep(self.delay)  # user-requested; not synchronisation
                await self._spawn_engines(n)  # None: the launcher or Cluster.n decides
            self._write_state()
            await jobs.check_jobs((self.controller, *self.engines.values()))
        except BaseException:
            await self.stop_cluster()
            raise

    # -- connecting -----------------------------------------------------------------------------------

    async def connect_client(self, **kwargs: Any) -> "Client":
        """A :class:`~ipcluster.client.Client` connected to this cluster's controller."""
        from ..client import Client  # lazily: starting a cluster must not need the client

        kwargs.setdefault("timeout", self.controller_timeout)
        kwargs.setdefault("cluster", self)
        kwargs.setdefault("parent", self)  # the Client section of this cluster's config applies to it
        # the client's wait_for_engines() waits for the engines started here, failing fast on a
        # dead engine or a failed batch job (the client knows nothing of launchers)
        kwargs.setdefault("expected_engines", self._expected_engines)
        kwargs.setdefault("engine_waiter", self.wait_for_engines_sync)
        client = await asyncio.to_thread(Client, url_file=str(self.connection_file("client")), **kwargs)
        self._clients.append(client)
        return client

    def _expected_engines(self) -> int:
        return sum(engines_in(launcher, running_only=True) for launcher in self.engines.values())

    async def wait_for_engines(self, client: Any, n: int | None = None, timeout: float | None = None) -> None:
        """Wait until ``client`` sees ``n`` engines (default: all started), failing fast.

        Raises :class:`~ipcluster.error.ProcessExited` as soon as the controller or an engine
        exits, and :class:`~ipcluster.error.ClusterTimeout` after ``timeout`` (default
        :attr:`engine_timeout`) seconds.
        """
        n = self._expected_engines() if n is None else n
        timeout = self.engine_timeout if timeout is None else timeout
        launchers = [launcher for launcher in (self.controller, *self.engines.values()) if launcher]
        await engine_ids.wait_watching(client, n, timeout, launchers, self._unconfirmed)
        self._unconfirmed.clear()

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
        return jobs.job_states({"controller": self.controller, **self.engines})

    def job_script(self, n: int | None = None) -> str:
        """The job script that starting ``n`` engines (default :attr:`n`) would submit, exactly.

        Needs a batch engine launcher (``engine_launcher_class = "slurm"``, ...); nothing is submitted.
        """
        return jobs.job_script(jobs.engine_preview(self), self.engine_count(n))

    # -- stopping ------------------------------------------------------------------------------------

    async def stop_engines(self, engine_set_id: str | None = None) -> None:
        """Stop one engine set, or all of them (``None``)."""
        state_mod.adopt_recorded_engine_sets(self, self._removed_engine_sets)
        ids = self._engine_set_ids(engine_set_id)
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
        await self.controller.stop()  # then remove the files it normally removes itself
        state_mod.remove_connection_files(self.profile_dir, self.cluster_id, self.controller.pids)

    async def stop_cluster(self) -> None:
        """Stop every engine set, then the controller, and remove the state file."""
        self._close_clients()
        owned = state_mod.owned_state(self) is not None
        try:
            await self.stop_engines()
        finally:
            await self.stop_controller()
            if owned:
                self.cluster_file.unlink(missing_ok=True)
            self._exit_hook.unregister()
        self.log.info("cluster %s stopped", self.cluster_id or "''")

    async def restart_engines(self, engine_set_id: str | None = None) -> None:
        """Stop and start again one engine set, or all of them, with the same sizes and ids."""
        launchers = [self.engines[i] for i in self._engine_set_ids(engine_set_id)]
        sizes = [engines_in(launcher, running_only=False) for launcher in launchers]
        await asyncio.gather(*(launcher.stop() for launcher in launchers))
        for launcher, count in zip(launchers, sizes):
            launcher.processes.clear()
            await launcher.start(count)  # the same launcher: fresh log files, same engine-set id
            self._unconfirmed.extend((launcher, proc) for proc in launcher.processes)
        self._write_state()

    # -- state -------------------------------------------------------------------------------------------

    def running_pids(self) -> list[int]:
        """Pids of this cluster's processes that are still running (controller first)."""
        launchers = [launcher for launcher in (self.controller, *self.engines.values()) if launcher]
        return [pid for launcher in launchers for pid in launcher.running_pids]

    def to_dict(self) -> dict[str, Any]:
        """The cluster's state, as written to :attr:`cluster_file`."""
        return state_mod.cluster_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], **kwargs: Any) -> Self:
        """Rebuild a Cluster from :meth:`to_dict`: its processes can be signalled and stopped.

        A restored cluster does not stop at this interpreter's exit unless ``shutdown_atexit=True``
        is passed.
        """
        return state_mod.cluster_from_dict(cls, d, **kwargs)

    @classmethod
    def from_file(
        cls,
        cluster_file: str | os.PathLike[str] | None = None,
        *,
        profile: str | None = None,
        profile_dir: str | os.PathLike[str] | None = None,
        cluster_id: str = "",
        **kwargs: Any,
    ) -> Self:
        """Load a running cluster from its state file (by path, or by profile and cluster id)."""
        if cluster_file is None:
            pdir = state_mod.resolve_profile_dir(profile or "default", profile_dir, kwargs.get("ipython_dir"))
            cluster_file = state_mod.cluster_file(pdir, cluster_id)
        return cls.from_dict(state_mod.read_state(cluster_file), **kwargs)

    def _write_state(self) -> None:
        state_mod.write_state(self, self._removed_engine_sets)

    def write_cluster_file(self) -> None:
        """Record this cluster in :attr:`cluster_file` (a running cluster keeps it up to date)."""
        self._write_state()

    def remove_cluster_file(self) -> None:
        """Remove :attr:`cluster_file`: ``ipcluster list`` and :meth:`from_file` no longer find it."""
        self.cluster_file.unlink(missing_ok=True)

    def update_cluster_file(self) -> None:
        """Write :attr:`cluster_file` while the controller runs; remove it once it has stopped."""
        if self.controller is not None and self.controller.poll() is None:
            self.write_cluster_file()
        else:
            self.remove_cluster_file()

    def _close_clients(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:
                self.log.debug("closing a client failed", exc_info=True)

    # -- cleanup at exit -----------------------------------------------------------------------------

    def _register_atexit(self) -> None:
        if self.shutdown_atexit:
            self._exit_hook.register()

    def _stop_at_exit(self) -> None:
        if not self.running_pids() and not jobs.active_jobs((self.controller, *self.engines.values())):
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
