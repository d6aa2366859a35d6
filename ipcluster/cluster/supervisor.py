"""Engine supervision: an engine process that dies is reported, and restarted under its engine id.

The decisions are plain state and functions (:class:`RestartBudget`, :func:`judge_oom`,
:class:`EngineDeath`), tested without processes; :class:`EngineSupervisor` carries them out for
one Cluster. It watches the processes of the Cluster's engine sets through the launchers' exit
callbacks (a pidfd event on Linux, no polling), and when one exits that the Cluster did not stop:

1. it finds the engine id the process had registered under (from a client's engine table: the
   process exits at once, while the controller declares it dead only after missed heartbeats),
   and tells the controller (``engine_died_request``), which declares it dead there and then;
2. it records an :class:`EngineDeath`: exit code or signal name, whether it was an OOM kill, and
   the last lines the engine wrote to its log file; it logs it as a WARNING;
3. if :attr:`~ipcluster.cluster.options.ClusterOptions.restart_engines_on_death` is on, the
   engine set is local, the controller runs, the exit was not a clean one (code 0: asked to stop)
   and :class:`RestartBudget` allows it, it starts a new engine with ``--id=<old id>``: the
   controller holds that registration until it has declared the old engine dead, then grants it.
   Not restarted either: a process that a signal from the Cluster itself ended (``signal_engine(s)``),
   or one ended by a signal that asks to stop (SIGTERM, SIGINT, SIGHUP, SIGQUIT: ``ipcluster stop``
   or another Cluster object stopping this cluster, the system shutting down).

Whether a SIGKILL was the kernel's OOM killer is not something an exit status says. It is judged
from what is cheap to read: a SIGKILL that ipcluster did not send, and the kernel's count of OOM
kills (``oom_kill`` in ``/proc/vmstat``, Linux 4.13 and later) having grown since the last death
was examined. Another process OOM-killed on the same host in that window would make a SIGKILL
from elsewhere look like an OOM kill; without ``/proc/vmstat`` the answer is ``None`` (unknown).
"""

from __future__ import annotations

import asyncio
import functools
import signal
import socket
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._aio import LoopThread, run_sync
from ..error import ClusterTimeout
from ..launchers import Launcher
from ..launchers.local import LocalLauncher
from ..launchers.process import Process
from . import engine_ids

if TYPE_CHECKING:
    from .cluster import Cluster

#: the kernel's counters; its ``oom_kill`` line counts OOM kills since boot
VMSTAT = "/proc/vmstat"
#: lines of an engine's output kept with its death
OUTPUT_LINES = 20
#: deaths kept in memory and in the cluster's state file
KEEP_DEATHS = 100
#: signals that ask a process to stop rather than crash it: an engine they end is not restarted
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT})


def read_oom_kills(path: str = VMSTAT) -> int | None:
    """The kernel's count of OOM kills since boot, or None where it cannot be read."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None


def signal_name(rc: int | None) -> str | None:
    """The name of the signal that ended a process with exit code ``rc`` (negative), else None."""
    if rc is None or rc >= 0:
        return None
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


def judge_oom(rc: int | None, we_sent_sigkill: bool, before: int | None,
              after: int | None) -> tuple[bool | None, str]:
    """Whether an exit was the OOM killer's doing (None: cannot tell), and why it is judged so."""
    if rc != -signal.SIGKILL:
        return False, ""
    if we_sent_sigkill:
        return False, "ipcluster sent the SIGKILL"
    if before is None or after is None:
        return None, f"a SIGKILL not sent by ipcluster; {VMSTAT} is unreadable: an OOM kill or not is unknown"
    if after > before:
        return True, (f"a SIGKILL not sent by ipcluster, and the kernel's OOM-kill count ({VMSTAT} oom_kill) "
                      f"went from {before} to {after}")
    return False, f"a SIGKILL not sent by ipcluster, but the kernel's OOM-kill count did not change ({after})"


@dataclass(slots=True)
class EngineDeath:
    """One engine process that exited without the Cluster stopping it."""

    engine_id: int | None  # None: it died before registering (or no client knew it)
    pid: int
    engine_set: str
    exit_code: int | None  # negative: killed by that signal
    signal: str | None  # the signal's name, e.g. "SIGKILL", "SIGSEGV"
    when: float  # time.time() when it was noticed
    oom: bool | None = False  # an OOM kill? None: cannot tell (see the module's docstring)
    oom_evidence: str = ""
    output: list[str] = field(default_factory=list)  # the last lines of its log file
    log_file: str = ""
    restarted: bool = False
    new_pid: int | None = None
    note: str = ""  # why it was not restarted

    def status(self) -> str:
        if self.signal is not None:
            return f"killed by {self.signal}" + (" (OOM kill)" if self.oom else "")
        return f"exited with code {self.exit_code}"

    def summary(self) -> str:
        who = f"engine {self.engine_id}" if self.engine_id is not None else "an unregistered engine"
        what = f"restarted as pid {self.new_pid}" if self.restarted else f"not restarted: {self.note}"
        last = f"; last output: {self.output[-1]!r}" if self.output else ""
        where = f" (log: {self.log_file})" if self.log_file else ""
        return f"{who} (pid {self.pid}) {self.status()}; {what}{last}{where}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RestartBudget:
    """At most ``limit`` restarts of one engine (``key``) within ``window`` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: dict[Hashable, deque[float]] = {}

    def allow(self, key: Hashable, now: float) -> bool:
        """Whether ``key`` may restart at ``now`` (``time.monotonic()``); if so, it is counted."""
        times = self._times.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True


class EngineSupervisor:
    """Reports and restarts the dead engines of one Cluster (see the module's docstring)."""

    def __init__(self, cluster: "Cluster") -> None:
        self.cluster = cluster
        self.deaths: list[EngineDeath] = []
        self._budget: RestartBudget | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._oom_kills = read_oom_kills()

    @property
    def _loop_thread(self) -> LoopThread:  # the blocking twins run where the Cluster's do
        return self.cluster._loop_thread

    def watch(self, engine_set: str, launcher: Launcher) -> None:
        """Supervise the processes ``launcher`` starts (now and later) for ``engine_set``."""
        launcher.on_exit(functools.partial(self._exited, engine_set))

    def _exited(self, engine_set: str, launcher: Launcher, proc: Process) -> None:
        task = asyncio.get_running_loop().create_task(self._handle(engine_set, launcher, proc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _engine_id(self, pid: int) -> int | None:
        """The id the dead process ``pid`` had; a client connected for the purpose if none is."""
        if not self.cluster._clients and self.cluster.controller is not None and self.cluster.controller.running_pids:
            try:  # the controller has not declared the engine dead yet: a new client's table has it
                await self.cluster.connect_client()
            except Exception as e:
                self.cluster.log.warning("cannot ask the controller which engine pid %d was: %s", pid, e)
        for client in list(self.cluster._clients):
            eid = engine_ids.id_of_pid(client, pid)
            if eid is not None:
                return eid
        return None

    async def _handle(self, engine_set: str, launcher: Launcher, proc: Process) -> None:
        c = self.cluster
        rc = proc.poll()
        oom_kills = read_oom_kills()
        oom, evidence = judge_oom(rc, signal.SIGKILL in proc.signals_sent, self._oom_kills, oom_kills)
        self._oom_kills = oom_kills
        eid = await self._engine_id(proc.pid)
        output = proc.output_tail().splitlines()[-OUTPUT_LINES:]
        death = EngineDeath(eid, proc.pid, engine_set, rc, signal_name(rc), time.time(), oom, evidence,
                            output, proc.log_file)
        death.engine_id = eid = await self._report(eid, proc.pid, death.status())
        if self._budget is None:
            self._budget = RestartBudget(c.engine_restart_limit, c.engine_restart_window)
        if not c.restart_engines_on_death:
            death.note = "Cluster.restart_engines_on_death is off"
        elif rc == 0:
            death.note = "it exited cleanly (code 0), as engines asked to stop do"
        elif rc is not None and -rc in STOP_SIGNALS:
            death.note = f"{death.signal} asks a process to stop (ipcluster stop, another Cluster, the system)"
        elif rc is not None and -rc in proc.signals_sent:
            death.note = f"the Cluster sent it {death.signal} (signal_engine, signal_engines)"
        elif not isinstance(launcher, LocalLauncher):
            death.note = f"only local engines are restarted ({type(launcher).__name__} ones are reported)"
        elif c.controller is None or c.controller.poll() is not None:
            death.note = "the controller is not running"
        elif launcher.stopping:
            death.note = "its engine set is being stopped"
        elif not self._budget.allow((engine_set, eid), time.monotonic()):
            death.note = (f"it was restarted {c.engine_restart_limit} time(s) within {c.engine_restart_window:g} s "
                          "(Cluster.engine_restart_limit, engine_restart_window)")
        else:
            await self._restart(launcher, proc, eid, death)
        c.log.warning("%s", death.summary())
        self.deaths.append(death)
        del self.deaths[:-KEEP_DEATHS]
        if c.controller is not None and c.controller.poll() is None:
            c._write_state()  # the new pid, and the death, for `ipcluster list` and `stop`
        self._notify()

    async def _report(self, eid: int | None, pid: int, status: str) -> int | None:
        """Tell the controller at once (it would notice only after missed heartbeats): it retries or
        fails the engine's tasks now, and the id is free for the engine's successor. Returns the
        engine's id: ``eid``, or where no client knew the pid (the controller declared the engine
        dead first, after a send to it failed), the id the controller remembers for it."""
        for client in list(self.cluster._clients):
            try:  # bounded: Client.timeout; local engines registered with this host's name
                known = await asyncio.to_thread(client.report_engine_death, eid, pid, status, socket.gethostname())
                return eid if eid is not None else known
            except Exception as e:  # an older controller, or one going away: its heartbeats will tell
                self.cluster.log.info("could not report the death of pid %d to the controller: %s", pid, e)
        return eid

    async def _restart(self, launcher: LocalLauncher, proc: Process, eid: int | None, death: EngineDeath) -> None:
        if proc in launcher.processes:
            launcher.processes.remove(proc)  # its successor takes its place in the set
        try:
            await launcher.start(1, extra_args=[] if eid is None else [f"--id={eid}"])
        except Exception as e:  # a launcher error: reported with the death
            death.note = f"the restart failed: {e}"
            return
        new = launcher.processes[-1]
        death.restarted, death.new_pid = True, new.pid
        self.cluster._unconfirmed.append((launcher, new))

    def _notify(self) -> None:
        keep = []
        for n, fut in self._waiters:
            if fut.done():
                continue
            if len(self.deaths) >= n:
                fut.get_loop().call_soon_threadsafe(_wake, fut)
            else:
                keep.append((n, fut))
        self._waiters = keep

    async def wait_for_deaths(self, n: int, timeout: float) -> list[EngineDeath]:
        """Wait until ``n`` engine deaths have been handled (restarted or not); return them all.

        Raises :class:`~ipcluster.error.ClusterTimeout` after ``timeout`` seconds.
        """
        if len(self.deaths) < n:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append((n, fut))
            try:
                await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                raise ClusterTimeout(f"{n} engine death(s) not seen within {timeout} s "
                                     f"({len(self.deaths)} so far)") from None
        return list(self.deaths)

    wait_for_deaths_sync = run_sync(wait_for_deaths)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
