"""The server side of the panel: list, create, start, scale, stop and watch clusters.

:class:`ClusterManager` is the one place that does I/O for the panel: it reads cluster files
(:mod:`.discovery`), drives clusters through the public :class:`~ipcluster.cluster.Cluster` API,
and samples running controllers through a :class:`~ipcluster.client.Client` (and the batch
systems of clusters whose engines are jobs) while a browser is watching. What the samples mean
is decided in :mod:`.livestate`, which has no I/O.

Sampling runs only while at least one panel is visible, at most once per
:attr:`ClusterManager.sample_interval`: a hidden panel, or none, costs the controllers nothing.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import psutil
from traitlets import Float, Unicode, default
from traitlets.config import LoggingConfigurable

from ..cluster import Cluster
from ..cluster.jobs import poll_jobs
from ..error import ControllerError
from .discovery import cluster_key, find_clusters, profile_dirs
from .livestate import ClusterLive

#: states a card can be in; the browser shows them as they are
STATES = ("created", "starting", "running", "scaling", "stopping", "stopped", "dead")


class PanelError(Exception):
    """A request the panel cannot carry out, with the HTTP status and a message for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def launcher_names() -> list[str]:
    """Engine launchers registered in the ``ipcluster.launchers`` entry-point group."""
    return sorted({ep.name for ep in entry_points(group="ipcluster.launchers")})


class Monitor:
    """A client connection to one running cluster, and the live statistics sampled through it."""

    def __init__(self, key: str, cluster_file: str) -> None:
        self.key = key
        self.cluster_file = cluster_file
        self.client: Any = None
        self.live = ClusterLive()
        self.samples = 0
        self.task_stats = True  # False once the controller said it does not answer task_stats_request

    async def connect(self, timeout: float) -> None:
        cluster = Cluster.from_file(self.cluster_file)
        self.client = await cluster.connect_client(timeout=timeout)

    @property
    def registered(self) -> int | None:
        return len(self.client.ids) if self.client is not None else None

    def _stats(self, since: int) -> dict[str, Any] | None:
        """The controller's task statistics changed since revision ``since`` (None from an older
        controller, which does not answer task_stats_request: the stream then counts tasks from
        the queue status)."""
        if not self.task_stats:
            return None
        try:
            return self.client.task_stats(since)  # type: ignore[no-any-return]
        except ControllerError:
            self.task_stats = False
            return None

    async def sample(self, timeout: float) -> None:
        """Ask the controller for its queues and task statistics and record them in :attr:`live`."""
        if self.client is None:
            return
        client = self.client
        # two small queries at once: under a flood of tasks the controller answers each late, and
        # one after the other they halved the rate of samples
        status, stats = await asyncio.wait_for(asyncio.gather(
            asyncio.to_thread(client.queue_status), asyncio.to_thread(self._stats, self.live.tasks.rev)), timeout)
        info = client.engine_info
        hosts = {eid: str(i.get("hostname", "")) for eid, i in info.items()}
        memory = None
        if self.samples % 4 == 0:  # memory changes slowly; psutil per engine is not free at 256 engines
            memory = _local_memory_mb(info)
        self.samples += 1
        self.live.sample(time.time(), status, hosts, memory, stats)

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # closing a client whose controller is gone may fail; nothing to keep
                pass
            self.client = None


def _local_memory_mb(engine_info: dict[int, dict[str, Any]]) -> dict[int, int]:
    """Resident memory (MiB) of the engines running on this host, found by the pid they registered with."""
    here = socket.gethostname()
    out = {}
    for eid, info in engine_info.items():
        if info.get("hostname") not in (here, None) or not info.get("pid"):
            continue
        try:
            out[eid] = int(psutil.Process(int(info["pid"])).memory_info().rss / 2**20)
        except psutil.Error:
            continue
    return out


class ClusterManager(LoggingConfigurable):
    """Clusters as the panel sees them: every cluster file of every profile, plus those created here."""

    ipython_dir = Unicode(
        config=True, help="IPython directory whose profiles are searched for clusters (default: IPython's)."
    )
    sample_interval = Float(
        0.5,
        config=True,
        help="""Seconds between live samples of running clusters while a panel is visible; also the
        shortest gap between two websocket messages to one browser.""",
    )
    connect_timeout = Float(10.0, config=True, help="Seconds to wait for a controller to answer a new client.")
    stop_timeout = Float(
        5.0, config=True, help="Seconds a cluster started here waits for processes after SIGTERM, before SIGKILL."
    )
    job_poll_interval = Float(
        5.0,
        config=True,
        help="""Seconds between asking a batch system (squeue, qstat, ...) for the states of a
        cluster's jobs, while a panel is visible (one status command per engine set).""",
    )

    @default("ipython_dir")
    def _default_ipython_dir(self) -> str:
        from IPython.paths import get_ipython_dir

        return str(get_ipython_dir())

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.created: dict[str, Cluster] = {}  # made by the panel: started or not
        self.ops: dict[str, str] = {}  # key -> "starting" | "scaling" | "stopping"
        self.errors: dict[str, str] = {}  # key -> last failure, shown on the card
        self.monitors: dict[str, Monitor] = {}
        self._connecting: dict[str, asyncio.Task[None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.listeners: dict[object, Callable[[], None]] = {}
        self.visible: set[object] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._cards: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, list[dict[str, Any]]] = {}  # key -> batch jobs as the queue last said
        self._job_polls: dict[str, float] = {}  # key -> when its jobs were last asked for
        self._polling: dict[str, asyncio.Task[None]] = {}

    # -- listing ------------------------------------------------------------------------------------

    def cards(self) -> dict[str, dict[str, Any]]:
        """Every known cluster's card, by key: files first, then clusters made here and not running."""
        cards = find_clusters(self.ipython_dir)
        for key, cluster in self.created.items():
            if key not in cards:
                cards[key] = {
                    "key": key,
                    "cluster_id": cluster.cluster_id,
                    "profile": cluster.profile,
                    "profile_dir": cluster.profile_dir,
                    "cluster_file": str(cluster.cluster_file),
                    "launcher": str(cluster.to_dict()["cluster"]["engine_launcher_class"]),
                    "controller_launcher": str(cluster.to_dict()["cluster"]["controller_launcher_class"]),
                    "state": "stopped" if cluster.start_time else "created",
                    "engines_requested": cluster.n or 0,
                    "engine_sets": {},
                    "owner": "panel",
                }
            else:
                cards[key]["owner"] = "panel"
        for key, card in cards.items():
            if key in self.ops:
                card["state"] = self.ops[key]
            monitor = self.monitors.get(key)
            if monitor is not None and monitor.registered is not None:
                card["engines_registered"] = monitor.registered
            if key in self.errors:
                card["error"] = self.errors[key]
            if card.get("batch") and key in self.jobs and card["state"] != "dead":
                card["jobs"] = self.jobs[key]
        self._cards = cards
        self._sync_monitors(cards)
        return cards

    def _sync_monitors(self, cards: dict[str, dict[str, Any]]) -> None:
        """Connect to clusters that run and have no client yet; drop those that are gone."""
        for key in list(self.monitors):
            card = cards.get(key)
            if card is None or card["state"] in ("dead", "stopped", "stopping"):
                self.monitors.pop(key).close()
        for key, card in cards.items():
            if card["state"] in ("running", "scaling") and key not in self.monitors and key not in self._connecting:
                self._connecting[key] = asyncio.ensure_future(self._connect(key, card["cluster_file"]))

    async def _connect(self, key: str, cluster_file: str) -> None:
        monitor = Monitor(key, cluster_file)
        try:
            await monitor.connect(self.connect_timeout)
        except Exception as e:
            self.log.warning("ipcluster panel: cannot connect to cluster %s: %s", key, e)
            return
        finally:
            self._connecting.pop(key, None)
        old = self.monitors.pop(key, None)
        if old is not None:
            old.close()
        self.monitors[key] = monitor
        self._notify()

    def _poll_jobs_due(self, cards: dict[str, dict[str, Any]]) -> None:
        """Ask the batch system for the jobs of batch clusters not asked for lately (in the background)."""
        now = time.monotonic()
        for key in list(self.jobs):
            if key not in cards:
                del self.jobs[key]
                self._job_polls.pop(key, None)
        for key, card in cards.items():
            if (not card.get("batch") or card["state"] not in ("running", "scaling") or key in self._polling
                    or now - self._job_polls.get(key, -math.inf) < self.job_poll_interval):
                continue
            self._job_polls[key] = now
            self._polling[key] = asyncio.ensure_future(self._poll_jobs(key, card["cluster_file"]))

    async def _poll_jobs(self, key: str, cluster_file: str) -> None:
        try:
            cluster = Cluster.from_file(cluster_file)
            states = await asyncio.wait_for(poll_jobs(cluster), self.connect_timeout)
        except Exception as e:  # the queue did not answer; the card keeps what it said last
            self.log.debug("ipcluster panel: job states of %s: %s", key, e)
            return
        finally:
            self._polling.pop(key, None)
        jobs = [
            {"set": set_id, "job_id": str(job["job_id"]), "state": str(job["state"]), "n": int(job.get("processes") or 0),
             **({"reason": str(job["reason"])} if job.get("reason") else {})}
            for set_id, set_jobs in sorted(states.items()) for job in set_jobs
        ]
        if jobs != self.jobs.get(key):
            self.jobs[key] = jobs
            self._notify()

    async def wait_connected(self, key: str) -> None:
        """Wait for a pending connection to ``key``'s controller (bounded by the connect timeout)."""
        task = self._connecting.get(key)
        if task is not None:
            await asyncio.wait_for(asyncio.shield(task), self.connect_timeout + 5)

    def get(self, key: str) -> dict[str, Any]:
        card = self.cards().get(key)
        if card is None:
            raise PanelError(404, f"no cluster {key!r}")
        return card

    def options(self) -> dict[str, Any]:
        """What the New dialog offers: existing profiles and registered launchers."""
        profiles = sorted({"default", *profile_dirs(self.ipython_dir)})
        return {"profiles": profiles, "launchers": launcher_names()}

    # -- lifecycle ---------------------------------------------------------------------------------

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def create(self, profile: str = "default", n: int | None = None, launcher: str = "local") -> dict[str, Any]:
        """Make a cluster in ``profile`` (not started yet); return its card."""
        profile = str(profile or "default")
        if ":" in profile or "/" in profile:
            raise PanelError(400, f"invalid profile name {profile!r}")
        n = _engine_count(n, allow_none=True)
        if launcher not in launcher_names():
            raise PanelError(400, f"unknown launcher {launcher!r}; registered: {', '.join(launcher_names())}")
        cluster = Cluster(
            profile=profile, ipython_dir=self.ipython_dir, n=n, engine_launcher_class=launcher,
            stop_timeout=self.stop_timeout,
        )
        Path(cluster.profile_dir, "security").mkdir(parents=True, exist_ok=True)
        key = cluster_key(profile, cluster.cluster_id)
        self.created[key] = cluster
        self._notify()
        return self.get(key)

    async def _run_op(self, key: str, op: str, coro_fn: Callable[[], Any]) -> dict[str, Any]:
        before = self.cards().get(key, {"key": key})
        async with self._lock(key):
            self.ops[key] = op
            self.errors.pop(key, None)
            self._notify()
            try:
                await coro_fn()
            except PanelError:
                raise
            except Exception as e:
                self.log.warning("ipcluster panel: %s of %s failed", op, key, exc_info=True)
                self.errors[key] = f"{type(e).__name__}: {e}"
                raise PanelError(500, f"{op} of cluster {key} failed: {type(e).__name__}: {e}") from e
            finally:
                self.ops.pop(key, None)
                self._notify()
        after = self.cards().get(key)
        if after is None:  # stopped a cluster not made here: its file is gone, and so is its card
            after = {**before, "state": "stopped", "engines_requested": 0, "engine_sets": {}}
            after.pop("engines_registered", None)
        return after

    def _cluster_for(self, key: str) -> Cluster:
        """The Cluster object that can act on ``key``: ours if we made it, else rebuilt from its file."""
        if key in self.created:
            return self.created[key]
        card = self.get(key)
        return Cluster.from_file(card["cluster_file"])

    async def start(self, key: str, n: int | None = None) -> dict[str, Any]:
        """Start a cluster created here with ``n`` engines (default: the n it was created with)."""
        card = self.get(key)
        if card["state"] in ("running", "starting", "scaling"):
            raise PanelError(409, f"cluster {key} is already {card['state']}")
        if key not in self.created:
            raise PanelError(409, f"cluster {key} was not created here and is not running; start it where it was made")
        cluster = self.created[key]
        count = _engine_count(n, allow_none=True)
        if count is not None:
            cluster.n = count
        return await self._run_op(key, "starting", lambda: cluster.start_cluster(cluster.n or 0))

    async def scale(self, key: str, n: Any) -> dict[str, Any]:
        """Make a running cluster have ``n`` engines: start a new engine set, or stop the newest sets."""
        target = _engine_count(n)
        card = self.get(key)
        if card["state"] not in ("running",):
            raise PanelError(409, f"cluster {key} is {card['state']}, not running")

        async def scale() -> None:
            cluster = self._cluster_for(key)
            sizes = find_clusters(self.ipython_dir).get(key, card)["engine_sets"]
            current = sum(sizes.values())
            # newest sets first; dead sets (no process left) go whatever the target
            for set_id, size in reversed(list(sizes.items())):
                if size == 0 or current - size >= target:
                    await cluster.stop_engines(set_id)
                    current -= size
            if current < target:
                await cluster.start_engines(target - current)

        return await self._run_op(key, "scaling", scale)

    async def stop(self, key: str) -> dict[str, Any]:
        """Stop a cluster (engines, then controller), however it was started."""
        card = self.get(key)
        if card["state"] in ("created", "stopped"):
            raise PanelError(409, f"cluster {key} is not running")

        async def stop() -> None:
            monitor = self.monitors.pop(key, None)
            if monitor is not None:
                monitor.close()
            await self._cluster_for(key).stop_cluster()

        return await self._run_op(key, "stopping", stop)

    async def delete(self, key: str) -> None:
        """Stop a cluster if it runs, and forget it."""
        card = self.get(key)
        if card["state"] not in ("created", "stopped"):
            await self.stop(key)
        self.created.pop(key, None)
        self.errors.pop(key, None)
        self._notify()

    async def close(self) -> None:
        """Server shutdown: stop sampling and close clients (clusters started here stop at exit)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        for task in [*self._connecting.values(), *self._polling.values()]:
            task.cancel()
        for monitor in self.monitors.values():
            monitor.close()
        self.monitors.clear()

    # -- live sampling -----------------------------------------------------------------------------

    def subscribe(self, owner: object, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every sample while ``owner`` is visible (see :meth:`set_visible`)."""
        self.listeners[owner] = callback
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.ensure_future(self._sample_loop())

    def unsubscribe(self, owner: object) -> None:
        self.listeners.pop(owner, None)
        self.visible.discard(owner)

    def set_visible(self, owner: object, visible: bool) -> None:
        if visible:
            self.visible.add(owner)
            self._wake.set()
        else:
            self.visible.discard(owner)

    def current_cards(self) -> dict[str, Any]:
        """The cards of the last listing (the sampling loop refreshes them every tick)."""
        return self._cards or self.cards()

    def live_view(self, key: str) -> dict[str, Any] | None:
        monitor = self.monitors.get(key)
        return monitor.live.view() if monitor is not None and monitor.samples else None

    def stream_since(self, key: str, tick: int) -> list[list[Any]]:
        monitor = self.monitors.get(key)
        return monitor.live.stream_since(tick) if monitor is not None else []

    def _notify(self) -> None:
        """Something changed outside the sampling tick (an action): wake the loop for a prompt update."""
        self._wake.set()

    async def _sample_loop(self) -> None:
        while True:
            if not self.visible:
                self._wake.clear()
                await self._wake.wait()
                continue
            started = time.monotonic()
            self._poll_jobs_due(self.cards())
            monitors = list(self.monitors.values())
            results = await asyncio.gather(
                *(m.sample(self.connect_timeout) for m in monitors), return_exceptions=True
            )
            for monitor, result in zip(monitors, results):
                if isinstance(result, Exception):
                    self.log.debug("ipcluster panel: sampling %s failed: %s", monitor.key, result)
            for owner in list(self.visible):
                callback = self.listeners.get(owner)
                if callback is not None:
                    callback()
            self._wake.clear()
            wait = self.sample_interval - (time.monotonic() - started)
            if wait > 0:
                try:  # an action (start, stop) wakes the loop early so its card changes promptly
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
            # rate bound even when actions wake the loop: at most 2 / sample_interval messages a second
            gap = self.sample_interval / 2 - (time.monotonic() - started)
            if gap > 0:
                await asyncio.sleep(gap)


def _engine_count(n: Any, allow_none: bool = False) -> Any:
    if n is None and allow_none:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 4096:
        raise PanelError(400, f"engines must be a whole number from 0 to 4096, not {n!r}")
    return n
