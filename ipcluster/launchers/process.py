"""One operating-system process as launchers see it: spawn, watch for exit, signal, read its output.

A :class:`Process` is either a child this interpreter spawned (it can read the exit code) or a
process restored from a cluster state file by ``pid`` and ``create_time`` (another interpreter
started it, e.g. ``ipcluster stop`` stopping what ``ipcluster start`` launched). Both kinds are
watched the same way, so every launcher works from any event loop and any thread:

- on Linux, a pidfd becomes readable when the process exits: an event, no polling;
- elsewhere, a short bounded poll stands in for it.

The ``create_time`` recorded at spawn protects against pid reuse: a restored pid whose process
was started at another time is treated as exited, never signalled.
"""

from __future__ import annotations

import asyncio
import os
import signal as signal_mod
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

#: how far (seconds) a recorded create_time may differ from the live one for the same process
_CREATE_TIME_SLACK = 0.05
#: poll interval (seconds) where the platform has no pidfd
_POLL_INTERVAL = 0.05
#: bytes read from the end of a log file for an error message
TAIL_BYTES = 4000


def _create_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


class Process:
    """A launched (or restored) process; thread-safe, usable from any event loop."""

    def __init__(
        self,
        pid: int,
        *,
        create_time: float | None = None,
        child: bool = False,
        log_file: str = "",
        log_offset: int = 0,
    ) -> None:
        self.pid = pid
        self.create_time = create_time if create_time is not None else _create_time(pid)
        self.child = child
        self.log_file = log_file
        self.log_offset = log_offset
        self.returncode: int | None = None
        self.exited = False
        self.signals_sent: set[int] = set()  # what send_signal delivered: a SIGKILL of ours is no OOM kill
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "running" if not self.exited else f"exited({self.returncode})"
        return f"<Process pid={self.pid} {state}>"

    # -- spawning --------------------------------------------------------------------------

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_file: str | os.PathLike[str] | None = None,
    ) -> "Process":
        """Start ``argv`` in a new session (so a terminal's Ctrl-C does not reach it).

        stdin is ``/dev/null``; stdout and stderr go to ``log_file`` (appended), or are
        discarded without one.
        """
        if log_file:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        else:
            fd = os.open(os.devnull, os.O_WRONLY)
        try:
            offset = os.lseek(fd, 0, os.SEEK_END) if log_file else 0
            actions = [
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, fd, 1),
                (os.POSIX_SPAWN_DUP2, fd, 2),
            ]
            pid = os.posix_spawnp(argv[0], list(argv), dict(env), file_actions=actions, setsid=True)
        finally:
            os.close(fd)
        return cls(pid, child=True, log_file=str(log_file or ""), log_offset=offset)

    # -- state -------------------------------------------------------------------------------

    def poll(self) -> int | None:
        """``None`` while running; else the exit code (negative: killed by that signal).

        A restored process's exit code is unknown and reads as 0 once it has exited.
        """
        with self._lock:
            if self.exited:
                return self.returncode if self.returncode is not None else 0
            if self.child:
                try:
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:  # reaped by someone else (a SIGCHLD-based watcher)
                    self.exited = True
                    return 0
                if pid == 0:
                    return None
                self.returncode = os.waitstatus_to_exitcode(status)
                self.exited = True
                return self.returncode
            if self._foreign_alive():
                return None
            self.exited = True
            return 0

    def _foreign_alive(self) -> bool:
        try:
            p = psutil.Process(self.pid)
            if self.create_time is not None and abs(p.create_time() - self.create_time) > _CREATE_TIME_SLACK:
                return False  # the pid now belongs to another process
            return bool(p.status() != psutil.STATUS_ZOMBIE)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return False
        except psutil.AccessDenied:
            return True

    @property
    def running(self) -> bool:
        return self.poll() is None

    def send_signal(self, sig: int) -> bool:
        """Send ``sig`` if the process is still running; return whether it was sent."""
        if self.poll() is not None:
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        self.signals_sent.add(sig)
        return True

    async def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit (an event on Linux) and return its exit code.

        Raises ``TimeoutError`` after ``timeout`` seconds (``None``: no limit; callers bound it).
        """
        async with asyncio.timeout(timeout):
            rc = self.poll()
            if rc is not None:
                return rc
            fd = self._pidfd()
            if fd is None:
                while (rc := self.poll()) is None:
                    await asyncio.sleep(_POLL_INTERVAL)
                return rc
            loop = asyncio.get_running_loop()
            exited = loop.create_future()

            def on_readable() -> None:
                if not exited.done():
                    exited.set_result(None)

            loop.add_reader(fd, on_readable)
            try:
                if self.poll() is None:
                    await exited
            finally:
                loop.remove_reader(fd)
                os.close(fd)
        rc = self.poll()
        # a pidfd turns readable at exit, before the parent reaps; a restored process may
        # linger as a zombie for a moment, which poll() already reports as exited
        return rc if rc is not None else 0

    def _pidfd(self) -> int | None:
        """A pidfd for this process, checked to still be the same process, or None."""
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is None:
            return None
        try:
            fd: int = pidfd_open(self.pid)
        except ProcessLookupError:
            return None  # gone already; the poll loop sees that at once
        except OSError:
            return None  # kernel without pidfd support
        # the pid is held by the pidfd now; make sure it is still the process we launched
        if self.poll() is not None:
            os.close(fd)
            return None
        return fd

    # -- output ------------------------------------------------------------------------------

    def output_tail(self, nbytes: int = TAIL_BYTES) -> str:
        """The end of what this process wrote to its log file (since it started)."""
        if not self.log_file:
            return ""
        try:
            with open(self.log_file, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                start = max(self.log_offset, size - nbytes)
                f.seek(start)
                data = f.read()
        except OSError:
            return ""
        text = data.decode("utf-8", "replace")
        if start > self.log_offset:  # cut at a line start
            text = text.partition("\n")[2] or text
        return text.rstrip()

    # -- persistence --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "create_time": self.create_time, "log_file": self.log_file}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Process":
        return cls(int(d["pid"]), create_time=d.get("create_time"), log_file=d.get("log_file", ""))


def pid_alive(pid: int, create_time: float | None = None) -> bool:
    """Whether ``pid`` is a live (non-zombie) process started at ``create_time`` (if given)."""
    return Process(pid, create_time=create_time).running if pid > 0 else False


async def stop_processes(
    procs: Sequence[Process], timeout: float, sig: int = signal_mod.SIGTERM
) -> list[Process]:
    """Send ``sig``, wait up to ``timeout`` s, then SIGKILL the ones still running.

    Returns the processes that were killed with SIGKILL.
    """
    for p in procs:
        p.send_signal(sig)
    waits = [asyncio.ensure_future(p.wait()) for p in procs]
    if not waits:
        return []
    done, pending = await asyncio.wait(waits, timeout=timeout)
    for w in pending:
        w.cancel()
    await asyncio.gather(*pending, return_exceptions=True)  # collect the cancelled waits
    killed = [p for p in procs if p.send_signal(signal_mod.SIGKILL)]
    if killed:
        await asyncio.gather(*(p.wait(timeout) for p in killed))
    return killed
