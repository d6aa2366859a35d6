"""The launcher interface: an async, Popen-like handle on the processes of one role.

A launcher starts ``n`` copies of a command (``argv``) and manages them as a set. Whether they
are a controller or engines is decided by ``argv`` alone; backends (local, ssh, mpi, batch)
differ only in *how* the command is run. Backends that run a local process (``ssh``,
``mpiexec``, ``sbatch`` wrappers) reuse :class:`~ipcluster.launchers.process.Process` for it.

Every wait is bounded by a timeout from a trait or an argument, except the exit watchers, which
live as long as the processes they watch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal as signal_mod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from traitlets import Bool, Dict, Float, List, Unicode
from traitlets.config import LoggingConfigurable

from ..error import ClusterTimeout, LauncherError, ProcessExited
from .process import Process, stop_processes

ExitCallback = Callable[["Launcher", Process], None]

#: glibc tunable: malloc asks for transparent huge pages for what it maps (see Launcher.huge_pages)
HUGE_PAGES = "glibc.malloc.hugetlb=1"
#: interval (seconds) of the bounded poll in wait_for_path: files have no portable exit event
_FILE_POLL_INTERVAL = 0.005


class Launcher(LoggingConfigurable):
    """Base class of all launchers; subclasses implement :meth:`start`.

    The surface mirrors ``subprocess.Popen`` for a *set* of processes: :meth:`start`,
    :meth:`poll`, :meth:`wait`, :meth:`signal`, :meth:`stop` and :attr:`pids`.
    """

    argv = List(
        Unicode(),
        help="""The command every launched process runs, as a list (program first), for example
        ``[sys.executable, "-m", "ipcluster.engine", "--file=..."]``. Set by the Cluster.""",
    )
    name = Unicode(
        "process", help="Short name of this process set in log file names and messages, e.g. 'controller'."
    )
    log_dir = Unicode(
        "", help="Folder for the processes' output (one file per process); empty: output is discarded."
    )
    env = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="Extra environment variables for the launched processes (added to this process's environment).",
    )
    huge_pages = Bool(
        True,
        config=True,
        help="""Let the launched processes' malloc back large buffers with transparent huge pages
        (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``, glibc 2.35 and later; ignored by older ones).
        Every 100 MB message a controller or engine receives is a fresh allocation, and faulting it
        in 4 KiB pages costs more than moving the bytes: with huge pages, 100 MB pushes and
        scatters run about twice as fast.""",
    )
    stop_timeout = Float(
        5.0,
        config=True,
        help="Seconds stop() waits for the processes to exit after SIGTERM before it sends SIGKILL.",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.processes: list[Process] = []
        self._spawned = 0  # processes ever started: numbers log files, which are never reused
        self._stopping = False
        self._retired: set[int] = set()  # pids stopped on purpose, one at a time
        self._watchers: set[asyncio.Task[None]] = set()
        self._exit_callbacks: list[ExitCallback] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} pids={self.pids} running={self.running_pids}>"

    # -- the Popen-like surface ---------------------------------------------------------------

    async def start(self, n: int = 1) -> None:
        """Start ``n`` processes running :attr:`argv`."""
        raise NotImplementedError

    @property
    def pids(self) -> list[int]:
        """Process ids of every process this launcher started (or restored), running or not."""
        return [p.pid for p in self.processes]

    @property
    def running_pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.running]

    @property
    def returncodes(self) -> list[int | None]:
        """One entry per process: ``None`` while it runs, else its exit code."""
        return [p.poll() for p in self.processes]

    def poll(self) -> int | None:
        """``None`` while any process runs; once all have exited, the first non-zero exit code, else 0."""
        codes = self.returncodes
        if any(c is None for c in codes):
            return None
        return next((c for c in codes if c), 0)

    async def wait(self, timeout: float | None = None) -> int:
        """Wait until every process has exited; return :meth:`poll`'s code.

        Raises :class:`~ipcluster.error.ClusterTimeout` after ``timeout`` seconds.
        """
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(p.wait() for p in self.processes))
        except TimeoutError as e:
            raise ClusterTimeout(
                f"{self.name}: {len(self.running_pids)} process(es) still running after {timeout} s"
            ) from e
        return self.poll() or 0

    async def signal(self, sig: int, index: int | None = None) -> None:
        """Send ``sig`` to every running process, or to the ``index``-th one only."""
        targets = self.processes if index is None else [self._process(index)]
        sent = [p.pid for p in targets if p.send_signal(sig)]
        self.log.debug("%s: sent %s to pid(s) %s", self.name, signal_name(sig), sent)

    async def stop(self) -> None:
        """Stop every process: SIGTERM, then SIGKILL after :attr:`stop_timeout` seconds."""
        self._stopping = True
        running = [p for p in self.processes if p.running]
        if not running:
            return
        self.log.debug("%s: stopping pid(s) %s", self.name, [p.pid for p in running])
        killed = await stop_processes(running, self.stop_timeout)
        if killed:
            self.log.warning(
                "%s: pid(s) %s ignored SIGTERM for %s s; killed them",
                self.name, [p.pid for p in killed], self.stop_timeout,
            )
        if self.running_pids:
            raise LauncherError(f"{self.name}: could not stop pid(s) {self.running_pids}")

    async def stop_process(self, index: int) -> Process:
        """Stop the ``index``-th process alone (SIGTERM, then SIGKILL) and drop it from the set."""
        proc = self._process(index)
        self._retired.add(proc.pid)
        if await stop_processes([proc], self.stop_timeout):
            self.log.warning("%s: pid %s ignored SIGTERM for %s s; killed it", self.name, proc.pid, self.stop_timeout)
        self.processes.remove(proc)
        return proc

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called since the last :meth:`start` (exits are expected then)."""
        return self._stopping

    # -- exit notifications ---------------------------------------------------------------

    def on_exit(self, callback: ExitCallback) -> None:
        """Call ``callback(launcher, process)`` when a process exits without :meth:`stop`."""
        self._exit_callbacks.append(callback)

    def _add_process(self, proc: Process) -> None:
        self.processes.append(proc)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._watch(proc), name=f"watch {self.name} pid {proc.pid}")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _watch(self, proc: Process) -> None:
        # unbounded on purpose: it lives as long as the process; it ends when the process does
        # (stop() guarantees that) or when its event loop closes
        rc = await proc.wait()
        if self._stopping or proc.pid in self._retired:
            return
        level = logging.INFO if rc == 0 else logging.WARNING  # 0: it was asked to stop, from elsewhere
        self.log.log(level, "%s: process pid %d exited with code %s", self.name, proc.pid, rc)
        for cb in self._exit_callbacks:
            try:
                cb(self, proc)
            except Exception:  # a broken callback must not hide the others
                self.log.exception("%s: exit callback %r failed", self.name, cb)

    async def wait_first_exit(self, timeout: float | None = None) -> Process:
        """Return the first process to exit (at once if one already has).

        Raises :class:`~ipcluster.error.ClusterTimeout` if none exits within ``timeout`` seconds.
        """
        for p in self.processes:
            if not p.running:
                return p
        waits = {asyncio.ensure_future(p.wait()): p for p in self.processes}
        if not waits:
            raise LauncherError(f"{self.name}: no processes to wait for")
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        if not done:
            raise ClusterTimeout(f"{self.name}: no process exited within {timeout} s")
        return waits[next(iter(done))]

    def exited_error(self, proc: Process, when: str = "") -> ProcessExited:
        """A :class:`~ipcluster.error.ProcessExited` for ``proc``, with its exit code and output tail."""
        rc = proc.poll()
        index = self.processes.index(proc) if proc in self.processes else -1
        where = f" (output: {proc.log_file})" if proc.log_file else ""
        msg = f"{self.name} process {index} (pid {proc.pid}) exited with code {rc}{when}{where}"
        return ProcessExited(msg, exit_code=rc, output=proc.output_tail())

    def check_running(self, when: str = "") -> None:
        """Raise :class:`~ipcluster.error.ProcessExited` if any process has exited."""
        for p in self.processes:
            if not p.running:
                raise self.exited_error(p, when)

    async def wait_for_path(self, path: str | os.PathLike[str], timeout: float) -> None:
        """Wait until ``path`` exists while every process keeps running.

        Raises :class:`~ipcluster.error.ProcessExited` (exit code and output tail) as soon as a
        process exits, and :class:`~ipcluster.error.ClusterTimeout` after ``timeout`` seconds.
        A file has no portable creation event, so this is a bounded poll; process exit is an event.
        """
        path = Path(path)
        exit_task = asyncio.ensure_future(self.wait_first_exit())
        try:
            async with asyncio.timeout(timeout):
                while not path.exists():
                    done, _ = await asyncio.wait({exit_task}, timeout=_FILE_POLL_INTERVAL)
                    if done:
                        raise self.exited_error(exit_task.result(), f" before writing {path.name}")
        except TimeoutError as e:
            raise ClusterTimeout(f"{self.name}: {path} did not appear within {timeout} s") from e
        finally:
            exit_task.cancel()
            await asyncio.gather(exit_task, return_exceptions=True)
        self.check_running(f" right after writing {path.name}")

    # -- helpers -------------------------------------------------------------------------------

    def _process(self, index: int) -> Process:
        try:
            return self.processes[index]
        except IndexError:
            raise LauncherError(f"{self.name} has {len(self.processes)} process(es); no index {index}") from None

    def child_env(self) -> dict[str, str]:
        """The environment of launched processes: ours, unbuffered output, huge pages for malloc
        (see :attr:`huge_pages`), plus :attr:`env`."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        tunables = env.get("GLIBC_TUNABLES", "")
        if self.huge_pages and "glibc.malloc.hugetlb=" not in tunables:
            env["GLIBC_TUNABLES"] = f"{tunables}:{HUGE_PAGES}" if tunables else HUGE_PAGES
        env.update(self.env)
        return env

    def next_log_file(self) -> Path | None:
        """The output file for the next process started: ``<log_dir>/<name>-<i>.log``."""
        index, self._spawned = self._spawned, self._spawned + 1
        return Path(self.log_dir) / f"{self.name}-{index}.log" if self.log_dir else None

    # -- persistence (cluster state files) ---------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """What another process needs to find and stop these processes."""
        from . import launcher_class_name

        return {
            "class": launcher_class_name(type(self)),
            "name": self.name,
            "argv": list(self.argv),
            "log_dir": self.log_dir,
            "processes": [p.to_dict() for p in self.processes],
            "spawned": self._spawned,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], **kwargs: Any) -> "Launcher":
        """Rebuild a launcher from :meth:`to_dict`; its processes are watched, not owned."""
        self = cls(name=d.get("name", "process"), argv=d.get("argv", []), log_dir=d.get("log_dir", ""), **kwargs)
        self.processes = [Process.from_dict(p) for p in d.get("processes", [])]
        self._spawned = int(d.get("spawned", len(self.processes)))
        return self


def signal_name(sig: int) -> str:
    try:
        return signal_mod.Signals(sig).name
    except ValueError:
        return str(sig)
