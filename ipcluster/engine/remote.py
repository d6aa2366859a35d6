"""What an engine started on another host needs, and nothing a local engine uses.

- **Connection info on stdin** (``--file=-``). The SSH launcher sends the engine connection file's
  JSON as the first line of the SSH command's stdin, so the signing key never lands in a file on
  the remote host, where a world-readable home or a shared ``/tmp`` could leak it.
- **A lifeline.** After that line, stdin stays open for as long as the launcher wants the engine.
  When it closes (the launcher stopped the set, or died, or the SSH connection broke), the engine
  exits: SSH does not signal a remote command when its client goes away, so without this an
  engine would outlive its cluster on a host nobody looks at. Later lines carry signals
  (``signal 2``), because a signal sent to the local ``ssh`` process would kill the connection
  instead of reaching the engine.
- **The first controller address that answers.** A controller listening on every interface lists
  each of its addresses; a host may reach only some of them (another subnet, a firewall). All are
  tried at once and the first TCP connection made wins, so a dead address costs nothing when a
  good one exists, and an engine that reaches none exits naming every address it tried.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable
from typing import Any

from ..error import IPClusterError

#: the launcher writes at most this much connection info (a few hundred bytes in practice)
_MAX_INFO_BYTES = 1 << 20


class RemoteStartError(IPClusterError):
    """The engine could not get its connection info or reach the controller (message says why)."""


def mpi_rank(environ: dict[str, str] | None = None) -> int | None:
    """This process's rank in an MPI job, from the variables the process managers set, else None.

    Read from the environment rather than mpi4py: importing ``mpi4py.MPI`` initialises MPI, which
    the user's code should decide when to do (and an engine without mpi4py still knows its rank).
    """
    env = os.environ if environ is None else environ
    for name in ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK"):
        value = env.get(name, "")
        if value.isdigit():
            return int(value)
    return None


# -- stdin: connection info, then the lifeline ----------------------------------------------------


class StdinLink:
    """Reads the connection info from a file descriptor, then watches it for signals and EOF.

    Reading happens in one daemon thread (a blocking read cannot be cancelled, and a daemon
    thread does not hold up the interpreter's exit).
    """

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self._buffer = b""

    def _read_line(self) -> bytes:
        while b"\n" not in self._buffer:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise RemoteStartError("stdin closed before the connection info arrived")
            self._buffer += chunk
            if len(self._buffer) > _MAX_INFO_BYTES:
                raise RemoteStartError("no end of line in the first MiB of stdin")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    async def read_info(self, timeout: float) -> dict[str, Any]:
        """The JSON object on the first line of stdin, waiting up to ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        result: asyncio.Future[bytes] = loop.create_future()

        def reader() -> None:
            try:
                line = self._read_line()
            except BaseException as e:  # noqa: BLE001 - handed to the waiting coroutine
                _call_soon(loop, _set_exception, result, e)
            else:
                _call_soon(loop, _set_result, result, line)

        threading.Thread(target=reader, name="ipengine-stdin", daemon=True).start()
        try:
            async with asyncio.timeout(timeout):
                line = await result
        except TimeoutError:
            raise RemoteStartError(f"no connection info on stdin within {timeout:g} s") from None
        try:
            info = json.loads(line)
        except json.JSONDecodeError as e:
            raise RemoteStartError(f"the connection info on stdin is not JSON: {e}") from None
        if not isinstance(info, dict):
            raise RemoteStartError("the connection info on stdin is not a JSON object")
        return info

    def watch(self, on_close: Callable[[], None], grace: float | None) -> threading.Thread:
        """Serve ``signal N`` lines; on EOF call ``on_close`` and exit hard ``grace`` s later.

        The hard exit is the backstop for user code that ignores the stop: the launcher promised
        its user that nothing stays behind on the host. ``grace=None``: no backstop (tests).
        """

        def run() -> None:
            while True:
                try:
                    line = self._read_line()
                except (RemoteStartError, OSError):
                    break
                words = line.decode("ascii", "replace").split()
                if len(words) == 2 and words[0] == "signal" and words[1].isdigit():
                    try:
                        os.kill(os.getpid(), int(words[1]))
                    except (OSError, ValueError):
                        pass
            on_close()
            if grace is None:
                return
            backstop = threading.Timer(grace, os._exit, (1,))
            backstop.daemon = True
            backstop.start()

        thread = threading.Thread(target=run, name="ipengine-lifeline", daemon=True)
        thread.start()
        return thread


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """Hand a result to the waiting loop, unless it gave up waiting and closed already."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


def _set_result(fut: asyncio.Future[bytes], value: bytes) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[bytes], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


# -- which controller address answers ------------------------------------------------------------


def candidate_hosts(info: dict[str, Any]) -> list[str]:
    """Every address the controller listed, its advertised location first, without repeats."""
    hosts: list[str] = []
    interface = str(info.get("interface", ""))
    if interface.startswith("tcp://"):
        hosts.append(interface[len("tcp://") :])
    for addr in info.get("addresses") or []:
        if isinstance(addr, str) and addr and addr not in hosts:
            hosts.append(addr)
    return hosts


async def first_reachable(hosts: list[str], port: int, timeout: float) -> str:
    """The first of ``hosts`` that accepts a TCP connection on ``port``; all are tried at once.

    Raises :class:`RemoteStartError` naming every address and why it failed.
    """
    if not hosts:
        raise RemoteStartError("the connection info lists no controller address")
    attempts = {asyncio.ensure_future(_try_connect(host, port)): host for host in hosts}
    failures: dict[str, str] = {}
    pending = set(attempts)
    try:
        async with asyncio.timeout(timeout):
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = task.result()
                    if error is None:
                        return attempts[task]
                    failures[attempts[task]] = error
    except TimeoutError:
        for task in pending:
            failures[attempts[task]] = f"no answer within {timeout:g} s"
    finally:
        for task in attempts:
            task.cancel()
        await asyncio.gather(*attempts, return_exceptions=True)
    tried = "; ".join(f"{host}:{port} ({failures.get(host, 'not tried')})" for host in hosts)
    raise RemoteStartError(f"cannot reach the controller at any of its addresses: {tried}")


async def _try_connect(host: str, port: int) -> str | None:
    """None if a TCP connection to ``host:port`` succeeds, else the reason it failed."""
    try:
        _, writer = await asyncio.open_connection(host.strip("[]"), port)
    except OSError as e:
        return e.strerror or str(e)
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return None
