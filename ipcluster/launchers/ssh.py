"""Start engines on other hosts over SSH: ``Cluster(engines="ssh")``.

Each engine is one local ``ssh host 'exec python -m ipcluster.engine --file=- ...'`` process.
Three choices make it safe and leave nothing behind:

- **The connection info travels on the SSH command's stdin**, as one line of JSON written once the
  controller has written its engine file. The key is never copied into a file on the remote host
  (no ``scp``, nothing in ``/tmp`` or a shared home for others to read).
- **stdin stays open as a lifeline.** The engine exits when it closes, which happens when
  :meth:`SSHLauncher.stop` closes it, when this process dies however it dies, or when the
  connection breaks. SSH itself does not signal a remote command whose client went away.
  Signals for the engine (``SIGINT`` to interrupt a task) travel on the same pipe, because a
  signal sent to the local ``ssh`` would end the connection instead.
- **The remote command is one string built with** :func:`shlex.join`, because the remote shell
  re-parses what ssh sends: arguments with spaces or quotes arrive as they were given.

A refused login, an unreachable host, a remote Python that does not exist or lacks ipcluster:
each ends the ``ssh`` process within seconds (``connect_timeout`` bounds the unreachable case),
and :meth:`SSHLauncher.exited_error` turns its exit code and output into a message that names the
host and says what to change.

ipyparallel's names work: ``c.SSHEngineSetLauncher.engines = {"host": n}``, ``ssh_args``,
``scp_args`` and ``remote_python`` (config under ``SSHLauncher`` applies as well).
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from traitlets import Dict, Float, Integer, List, Tuple, Unicode, Union, observe, validate

from ..error import LauncherError, ProcessExited
from ..protocol.connection import is_loopback
from .base import Launcher
from .process import Process

#: interval (seconds) of the bounded poll for the controller's engine file (no portable event)
_FILE_POLL_INTERVAL = 0.01


def is_local_host(host: str) -> bool:
    """Whether ``host`` (``[user@]name``) is this machine: loopback or this machine's own name.

    An engine started there shares the controller's loopback interface, Unix sockets and
    ``/dev/shm``; an engine anywhere else shares none of them.
    """
    name = host.rpartition("@")[2].strip("[]").lower()
    return is_loopback(name) or name in {socket.gethostname().lower(), socket.getfqdn().lower()}


def parse_hostfile(text: str, source: str = "hostfile") -> dict[str, int]:
    """``{host: n}`` from lines ``host [n]`` (``n`` defaults to 1; ``#`` starts a comment).

    A host listed twice gets the sum of its counts.
    """
    hosts: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and not words[1].isdigit()):
            raise LauncherError(f"{source} line {lineno}: expected 'host [number of engines]', got {raw.strip()!r}")
        count = int(words[1]) if len(words) == 2 else 1
        hosts[words[0]] = hosts.get(words[0], 0) + count
    return hosts


def spread(hosts: Mapping[str, int], n: int, running: Mapping[str, int] | None = None) -> list[str]:
    """One host per engine for ``n`` new engines: each host's free slots first, in order, then
    round-robin over all hosts (oversubscribed) for any beyond the slots."""
    running = running or {}
    plan: list[str] = []
    for host, slots in hosts.items():
        free = max(slots - running.get(host, 0), 0)
        plan.extend([host] * min(free, n - len(plan)))
    names = list(hosts)
    i = 0
    while len(plan) < n and names:
        plan.append(names[i % len(names)])
        i += 1
    return plan


def spawn_with_stdin(argv: Sequence[str], env: Mapping[str, str], stdin_fd: int, log_file: Path | None) -> Process:
    """Like :meth:`Process.spawn`, with ``stdin_fd`` as the child's stdin (a pipe we write to)."""
    if log_file:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    else:
        fd = os.open(os.devnull, os.O_WRONLY)
    try:
        offset = os.lseek(fd, 0, os.SEEK_END) if log_file else 0
        actions = [(os.POSIX_SPAWN_DUP2, stdin_fd, 0), (os.POSIX_SPAWN_DUP2, fd, 1), (os.POSIX_SPAWN_DUP2, fd, 2)]
        pid = os.posix_spawnp(argv[0], list(argv), dict(env), file_actions=actions, setsid=True)
    finally:
        os.close(fd)
    return Process(pid, child=True, log_file=str(log_file or ""), log_offset=offset)


class SSHLauncher(Launcher):
    """Run engines on hosts reached with ``ssh``; see the module docstring for how and why."""

    engines = Dict(
        key_trait=Unicode(),
        value_trait=Union([Integer(), Tuple(Integer(), List(Unicode()))]),
        config=True,
        help="""Hosts and how many engines each runs, e.g. ``{"node1": 4, "alice@node2": 2}``. A host
        is anything ``ssh`` accepts (a name from ~/.ssh/config, ``user@host``). A value may also be
        ``(n, [extra engine arguments])`` for that host's engines, as in ipyparallel. Without a number
        of engines given to start() (``Cluster.n`` unset), every host gets its count; with one,
        engines fill the hosts' counts in order, then go round-robin.""",
    )
    hostfile = Unicode(
        "",
        config=True,
        help="""A file of hosts, one per line: ``host [number of engines]`` (default 1; '#' starts a
        comment). Its hosts are added to ``engines``.""",
    )
    ssh_cmd = List(Unicode(), default_value=["ssh"], config=True, help="The ssh program (and its fixed arguments).")
    ssh_args = List(
        Unicode(),
        config=True,
        help="""Extra arguments for every ssh command, e.g. ``["-F", "/path/ssh_config"]`` or
        ``["-p", "2222", "-i", "~/.ssh/cluster_key"]``. ``-o BatchMode=yes`` and a ConnectTimeout
        are always added after these (so options given here win): there is no terminal to type a
        password into.""",
    )
    scp_args = List(
        Unicode(),
        config=True,
        help="""Accepted for ipyparallel configs. ipcluster copies no files to engine hosts (the
        connection info travels on the ssh command's stdin), so these are not used; setting them
        logs a note.""",
    )
    remote_python = Unicode(
        sys.executable,
        config=True,
        help="""The Python to run on the engine hosts; it must have ipcluster installed. Default:
        this Python's path, right when the hosts share this environment (same path, shared file
        system).""",
    )
    connect_timeout = Float(
        10.0,
        config=True,
        help="""Seconds ssh may take to connect to a host (ssh's ConnectTimeout): an unreachable
        host is reported after this long.""",
    )
    connection_info_timeout = Float(
        60.0,
        config=True,
        help="""Seconds to wait for the controller's engine connection file before giving up (the
        engines are started together with the controller, and wait on stdin for its contents).""",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hosts: dict[int, str] = {}  # pid of the local ssh -> host
        self._pipes: dict[int, int] = {}  # pid -> write end of its stdin (the lifeline)
        self._senders: set[asyncio.Task[None]] = set()

    @validate("remote_python")
    def _check_remote_python(self, proposal: Any) -> str:
        value = str(proposal["value"])
        if not value:
            raise LauncherError("SSHLauncher.remote_python is empty")
        return value

    @observe("scp_args")
    def _note_scp_args(self, change: Any) -> None:
        if change["new"]:
            self.log.info(
                "%s: scp_args is not used: ipcluster copies nothing to engine hosts (the connection "
                "info is sent on the ssh command's stdin)", type(self).__name__,
            )

    # -- which hosts --------------------------------------------------------------------------

    def host_counts(self) -> dict[str, int]:
        """``engines`` plus the hosts of ``hostfile``, in that order."""
        hosts = {host: value if isinstance(value, int) else int(value[0]) for host, value in self.engines.items()}
        if self.hostfile:
            path = Path(self.hostfile).expanduser()
            try:
                text = path.read_text()
            except OSError as e:
                raise LauncherError(f"cannot read the SSH hostfile {path}: {e.strerror}") from e
            for host, count in parse_hostfile(text, str(path)).items():
                hosts[host] = hosts.get(host, 0) + count
        bad = [h for h in hosts if not h or h.startswith("-") or any(c.isspace() for c in h)]
        if bad:
            raise LauncherError(f"invalid SSH host name(s): {bad!r}")
        return hosts

    def host_args(self, host: str) -> list[str]:
        """Extra engine arguments given for ``host`` as ``engines[host] = (n, [args])``."""
        value = self.engines.get(host)
        return [str(a) for a in value[1]] if isinstance(value, (tuple, list)) else []

    @property
    def default_count(self) -> int | None:
        """How many engines the host list asks for (used when no number is given)."""
        total = sum(self.host_counts().values())
        return total or None

    @property
    def remote_hosts(self) -> list[str]:
        """The hosts that are not this machine: they need a controller that is not on loopback."""
        return [h for h in self.host_counts() if not is_local_host(h)]

    # -- commands --------------------------------------------------------------------------------

    def _engine_command(self) -> tuple[Path, list[str]]:
        """The local engine connection file, and the argv the remote host runs."""
        argv = list(self.argv)
        if argv[1:3] != ["-m", "ipcluster.engine"]:
            raise LauncherError(
                f"{self.name}: the ssh launcher starts engines (python -m ipcluster.engine ...), not {argv[:3]!r}"
            )
        files = [a for a in argv[3:] if a.startswith("--file=")]
        if len(files) != 1:
            raise LauncherError(f"{self.name}: expected one --file=<engine connection file> in {argv!r}")
        rest = [a for a in argv[3:] if not a.startswith("--file=")]
        return Path(files[0][len("--file="):]), [self.remote_python, "-m", "ipcluster.engine", "--file=-", *rest]

    def ssh_argv(self, host: str, remote_argv: Sequence[str]) -> list[str]:
        """The local command that runs ``remote_argv`` on ``host``.

        The remote side gets one string: the remote shell parses it again, so it is built with
        :func:`shlex.join` and starts with ``exec`` (the engine replaces the shell, so closing its
        stdin reaches the engine itself). :attr:`env` is set on the remote side (``env K=V``):
        ssh does not carry this process's environment over.
        """
        env = [f"{k}={v}" for k, v in {"PYTHONUNBUFFERED": "1", **self.env}.items()]
        remote = "exec " + shlex.join(["env", *env, *remote_argv])
        return [
            *self.ssh_cmd, *self.ssh_args,
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, round(self.connect_timeout))}",
            host, remote,
        ]

    # -- the Popen-like surface -----------------------------------------------------------------

    async def start(self, n: int = 1) -> None:
        """Start ``n`` engines over ssh (spread over the hosts; see ``engines``), at once.

        Returns as soon as the ssh processes run; each remote engine gets the connection info
        on its stdin once the controller has written it. Failures (login, host, Python) show up
        as exits of these processes, described by :meth:`exited_error`.
        """
        hosts = self.host_counts()
        if not hosts:
            raise LauncherError(
                f"{self.name}: no SSH hosts: set c.SSHEngineSetLauncher.engines = {{'host': n}} or a hostfile"
            )
        if n < 1:
            raise LauncherError(f"{self.name}: asked to start {n} engines")
        info_path, remote_argv = self._engine_command()
        self._stopping = False
        running: dict[str, int] = {}
        for p in self.processes:
            if p.running and p.pid in self.hosts:
                running[self.hosts[p.pid]] = running.get(self.hosts[p.pid], 0) + 1
        plan = spread(hosts, n, running)
        env = self.child_env()
        started: list[Process] = []
        for host in plan:
            read_end, write_end = os.pipe()  # both close-on-exec; posix_spawn's dup2 clears it on fd 0
            try:
                argv = self.ssh_argv(host, [*remote_argv, *self.host_args(host)])
                proc = spawn_with_stdin(argv, env, read_end, self.next_log_file())
            except OSError as e:
                os.close(write_end)
                raise LauncherError(f"{self.name}: could not run {self.ssh_cmd[0]!r}: {e}") from e
            finally:
                os.close(read_end)
            self.hosts[proc.pid] = host
            self._pipes[proc.pid] = write_end
            self._add_process(proc)
            started.append(proc)
        self.log.info("%s: started %d engine(s) over ssh on %s", self.name, len(plan), _count_hosts(plan))
        task = asyncio.get_running_loop().create_task(self._send_info(info_path, started), name=f"{self.name} info")
        self._senders.add(task)
        task.add_done_callback(self._senders.discard)

    async def _send_info(self, path: Path, procs: list[Process]) -> None:
        """Wait (bounded) for the engine connection file, then write it to each engine's stdin."""
        try:
            async with asyncio.timeout(self.connection_info_timeout):
                while not path.exists():
                    await asyncio.sleep(_FILE_POLL_INTERVAL)
                info = json.loads(path.read_text())
        except (TimeoutError, OSError, json.JSONDecodeError) as e:
            self.log.error("%s: no engine connection info to send (%s: %s); stopping its engines", self.name, path, e)
            for proc in procs:
                self._close_pipe(proc.pid)
            return
        for proc in procs:
            host = self.hosts.get(proc.pid, "")
            line = json.dumps(info if is_local_host(host) else _for_remote(info)).encode() + b"\n"
            fd = self._pipes.get(proc.pid)
            if fd is None:
                continue
            try:
                os.write(fd, line)
            except OSError:  # ssh has exited already; its exit is reported by whoever waits
                self._close_pipe(proc.pid)
        self.log.debug("%s: connection info sent to %d engine(s)", self.name, len(procs))

    def _close_pipe(self, pid: int) -> None:
        fd = self._pipes.pop(pid, None)
        if fd is not None:
            os.close(fd)

    async def _cancel_senders(self) -> None:
        """Cancel the connection-info senders; those of another event loop (a blocking twin's
        thread, when stopping at exit) are cancelled there, and not awaited."""
        loop = asyncio.get_running_loop()
        mine = [t for t in self._senders if t.get_loop() is loop]
        for t in self._senders:
            if t.get_loop() is loop:
                t.cancel()
            elif not t.get_loop().is_closed():
                t.get_loop().call_soon_threadsafe(t.cancel)
        await asyncio.gather(*mine, return_exceptions=True)

    async def signal(self, sig: int, index: int | None = None) -> None:
        """Send ``sig`` to the remote engines (over their stdin), or to the ``index``-th one.

        A launcher restored in another process has no stdin pipes; there the local ssh processes
        get ``sig``, which ends their connections and with them the engines.
        """
        targets = self.processes if index is None else [self._process(index)]
        line = f"signal {int(sig)}\n".encode()
        for p in targets:
            fd = self._pipes.get(p.pid)
            if fd is None:
                p.send_signal(sig)
                continue
            try:
                os.write(fd, line)
            except OSError:
                self._close_pipe(p.pid)

    async def stop(self) -> None:
        """Close every engine's stdin (they exit, then their ssh does), then wait for that up to
        ``stop_timeout``; ssh processes still running after it get SIGTERM, then SIGKILL."""
        self._stopping = True
        await self._cancel_senders()
        closed = set(self._pipes)
        for pid in closed:
            self._close_pipe(pid)
        # restored from a state file (another process), we hold no stdin: SIGTERM to ssh ends
        # the connections, and with them the engines
        running = [p for p in self.processes if p.running and p.pid in closed]
        if running:
            done, pending = await asyncio.wait(
                [asyncio.ensure_future(p.wait()) for p in running], timeout=self.stop_timeout
            )
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pending:
                self.log.warning("%s: %d engine(s) did not exit when their stdin closed", self.name, len(pending))
        await super().stop()

    async def stop_process(self, index: int) -> Process:
        proc = self._process(index)
        self._retired.add(proc.pid)
        self._close_pipe(proc.pid)
        try:
            await proc.wait(self.stop_timeout)
        except TimeoutError:
            pass
        return await super().stop_process(index)

    # -- errors -----------------------------------------------------------------------------------

    def exited_error(self, proc: Process, when: str = "") -> ProcessExited:
        """Name the host and say what went wrong, from ssh's exit code and the output tail."""
        base = super().exited_error(proc, when)
        host = self.hosts.get(proc.pid, "?")
        reason = diagnose(host, base.exit_code, base.output, self.remote_python)
        return ProcessExited(f"{reason}; {base.args[0]}", exit_code=base.exit_code, output=base.output)

    # -- persistence --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["hosts"] = {str(pid): host for pid, host in self.hosts.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], **kwargs: Any) -> "Launcher":
        self = super().from_dict(d, **kwargs)
        assert isinstance(self, SSHLauncher)
        self.hosts = {int(pid): str(host) for pid, host in (d.get("hosts") or {}).items()}
        return self


class SSHEngineSetLauncher(SSHLauncher):
    """ipyparallel's name for :class:`SSHLauncher`: ``c.SSHEngineSetLauncher.engines`` and the
    other settings under this name take effect (as do those under ``SSHLauncher``)."""


def diagnose(host: str, exit_code: int | None, output: str, remote_python: str) -> str:
    """One sentence naming ``host`` and the likely cause of an engine's ssh exiting."""
    text = output.lower()
    if "no module named" in text and "ipcluster" in text:
        return (f"ipcluster is not installed for {remote_python} on {host}: install it there, or set "
                f"c.SSHEngineSetLauncher.remote_python to a Python that has it")
    if exit_code == 127 or (exit_code == 126 and "permission denied" not in text):
        return (f"remote_python {remote_python!r} cannot be run on {host}: set "
                f"c.SSHEngineSetLauncher.remote_python to the path of a Python with ipcluster there")
    if "cannot reach the controller" in text:
        return f"the engine on {host} cannot reach the controller (see the addresses it tried below)"
    if exit_code == 255:
        if "host key verification failed" in text:
            return (f"ssh does not know {host}'s host key (or it changed): connect once by hand "
                    f"(ssh {host}) to check and accept it")
        if "permission denied" in text or "authentication" in text:
            return f"ssh login to {host} was refused (check the user, key and ssh_args)"
        if any(s in text for s in ("timed out", "no route", "could not resolve", "unreachable", "refused")):
            return f"SSH host {host} is unreachable"
        return f"ssh to {host} failed"
    return f"the engine on {host} exited"


def _for_remote(info: dict[str, Any]) -> dict[str, Any]:
    """The connection info for another host: without the Unix-socket and shared-memory folders.

    They name paths on the controller's host; on a shared file system the socket files would
    exist elsewhere too, and an engine there would try them and never connect. Loopback addresses
    go too: there they would reach whatever listens on that host's own loopback.
    """
    remote = {k: v for k, v in info.items() if k not in ("ipc", "shm")}
    if isinstance(info.get("addresses"), list):  # our loopback is another host's own loopback
        remote["addresses"] = [a for a in info["addresses"] if not is_loopback(str(a))]
    return remote


def _count_hosts(plan: list[str]) -> str:
    counts: dict[str, int] = {}
    for host in plan:
        counts[host] = counts.get(host, 0) + 1
    return ", ".join(f"{host} ({n})" for host, n in counts.items())


__all__ = ["SSHEngineSetLauncher", "SSHLauncher", "diagnose", "is_local_host", "parse_hostfile", "spread"]
