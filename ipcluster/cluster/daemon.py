"""Run a cluster's owner in the background and learn when its cluster is up.

``ipcluster start --daemonize`` runs itself again, detached: a new session (a terminal's Ctrl-C
does not reach it), stdin from ``/dev/null``, output to a log file. The detached copy reports
readiness (or nothing, if it fails) on a pipe whose write end it inherits, so the starting
process waits on an event instead of polling state files, and returns as soon as the engines
are ready.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..error import ProcessExited
from ..launchers.process import Process


@dataclass(frozen=True)
class Daemon:
    """A background owner that reported its cluster ready."""

    pid: int
    info: dict[str, Any]  # what it passed to report_ready()


async def start_daemon(
    argv: Callable[[int], list[str]],
    env: Mapping[str, str],
    log_file: str | os.PathLike[str],
    timeout: float,
    stop_timeout: float,
) -> Daemon:
    """Run ``argv(fd)`` detached and wait until it calls :func:`report_ready` on ``fd``.

    ``argv`` gets the pipe's write end to pass on to the command. Raises
    :class:`~ipcluster.error.ProcessExited` (exit code, output tail) if the command exits without
    reporting, or does not report within ``timeout`` seconds; in that case it is stopped
    (SIGTERM, then SIGKILL after ``2 * stop_timeout`` seconds).
    """
    read_end, write_end = os.pipe()
    try:
        os.set_inheritable(write_end, True)
        try:
            proc = Process.spawn(argv(write_end), env, log_file)
        finally:
            os.close(write_end)
        line = await _read_line(read_end, timeout)
    finally:
        os.close(read_end)
    if line:
        return Daemon(proc.pid, json.loads(line))
    if proc.poll() is None:  # no word within the timeout: give up, it stops what it started
        proc.send_signal(signal.SIGTERM)
        try:
            await proc.wait(2 * stop_timeout)
        except TimeoutError:
            proc.send_signal(signal.SIGKILL)
    rc = proc.poll()
    raise ProcessExited(
        f"the background cluster did not start (exit code {rc}); see {log_file}",
        exit_code=rc,
        output=proc.output_tail(),
    )


def report_ready(fd: int, info: dict[str, Any]) -> None:
    """Tell the process waiting in :func:`start_daemon` that the cluster is up (closes ``fd``)."""
    try:
        os.write(fd, (json.dumps(info) + "\n").encode())
    finally:
        os.close(fd)


async def _read_line(fd: int, timeout: float) -> str:
    """One line from ``fd`` within ``timeout`` seconds; '' on end of file or timeout."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    readable = asyncio.Event()
    loop.add_reader(fd, readable.set)
    buf = b""
    try:
        async with asyncio.timeout(timeout):
            while b"\n" not in buf:
                await readable.wait()
                readable.clear()
                try:
                    chunk = os.read(fd, 4096)
                except BlockingIOError:
                    continue
                if not chunk:
                    return ""
                buf += chunk
    except TimeoutError:
        return ""
    finally:
        loop.remove_reader(fd)
    return buf.partition(b"\n")[0].decode()

