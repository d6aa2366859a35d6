"""Real daemons for the launcher tests: sshd on a loopback port, SSH "hosts" in network namespaces.

Everything here is started in the foreground mode each daemon offers, watched through its
output (sshd prints "Server listening on" when it is ready: an event, not a sleep) and torn down
by pid, namespaces included, in ``close()``, which the fixtures call in ``finally``.

Topology of :class:`NetnsHosts` (all addresses exist only inside the namespaces it creates; the
root namespace gets no address or route there, so nothing leaks to a real network)::

    <prefix>-sw  : bridge br0
    <prefix>-ctl : 10.77.0.1   (run the controller and the script that drives it here)
    <prefix>-h1  : 10.77.0.11  sshd on :22, hostname h1 (its own UTS namespace)
    <prefix>-h2  : 10.77.0.12  sshd on :22, hostname h2

The file system and pid space are shared with the root namespace: the same Python works on every
"host", and ``ip netns pids`` shows what still runs on each.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
SUBNET = "10.77.0"
#: a host in SUBNET that does not exist: connecting to it times out (nothing answers ARP)
UNREACHABLE_IP = f"{SUBNET}.99"


def require(marker: str, *programs: str) -> None:
    """Skip unless every program exists; with IPCLUSTER_REQUIRE_INFRA=1 (CI), fail instead."""
    missing = [p for p in programs if shutil.which(p) is None and not os.path.exists(p)]
    if not missing:
        return
    message = f"{marker} tests need {', '.join(missing)} (see .ci/apt/ssh-mpi.txt)"
    if os.environ.get("IPCLUSTER_REQUIRE_INFRA") == "1":
        pytest.fail(f"{message}; IPCLUSTER_REQUIRE_INFRA=1 makes this a failure")
    pytest.skip(message)


def require_module(marker: str, module: str) -> None:
    """Skip unless ``module`` imports; with IPCLUSTER_REQUIRE_INFRA=1 (CI), fail instead."""
    try:
        __import__(module)
    except ImportError as e:
        message = f"{marker} tests need the Python package {module} (the 'test' extra): {e}"
        if os.environ.get("IPCLUSTER_REQUIRE_INFRA") == "1":
            pytest.fail(f"{message}; IPCLUSTER_REQUIRE_INFRA=1 makes this a failure")
        pytest.skip(message)


def run(argv: Sequence[str], timeout: float = 20) -> str:
    """Run a setup command; raise with its output if it fails."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """A foreground daemon whose output is drained by a thread (a full pipe would block it)."""

    def __init__(self, argv: Sequence[str], ready_text: str) -> None:
        self.argv = list(argv)
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._thread = threading.Thread(target=self._drain, args=(ready_text,), daemon=True)
        self._thread.start()

    def _drain(self, ready_text: str) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if ready_text in line:
                self._ready.set()
        self._ready.set()  # exited: wait_ready() looks at the return code

    def wait_ready(self, timeout: float = 10) -> None:
        if not self._ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"{self.argv[0]} did not start: " + "\n".join(self.lines[-20:]))

    def stop(self, timeout: float = 5) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._thread.join(timeout)
        if self.proc.stdout is not None and not self._thread.is_alive():
            self.proc.stdout.close()


class SSHKeys:
    """A host key and a client key, and the files that let the client in."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
        self.host_key = folder / "host_ed25519"
        self.client_key = folder / "client_ed25519"
        for key in (self.host_key, self.client_key):
            if not key.exists():
                run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
        self.authorized_keys = folder / "authorized_keys"
        shutil.copy(f"{self.client_key}.pub", self.authorized_keys)
        self.authorized_keys.chmod(0o600)

    def sshd_config(self, path: Path, *lines: str) -> Path:
        path.write_text("\n".join([
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile .ssh/authorized_keys {self.authorized_keys}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PidFile none",
            "LogLevel INFO",
            *lines,
        ]) + "\n")
        return path

    def ssh_config(self, path: Path, hosts: dict[str, str], port: int | None = None) -> Path:
        """A client config: ``Host alias / HostName address`` for each host, our key for all."""
        lines = [f"Host {alias}\n  HostName {address}" for alias, address in hosts.items()]
        lines.append("\n".join([
            "Host *",
            *([f"  Port {port}"] if port else []),
            "  User root",
            f"  IdentityFile {self.client_key}",
            "  IdentitiesOnly yes",
            "  StrictHostKeyChecking no",
            "  UserKnownHostsFile /dev/null",
            "  BatchMode yes",
            "  LogLevel ERROR",
        ]))
        path.write_text("\n".join(lines) + "\n")
        return path


class LoopbackSSHD:
    """sshd on 127.0.0.1:<free port> with key login for root."""

    def __init__(self, folder: Path) -> None:
        self.keys = SSHKeys(folder)
        for attempt in range(3):  # another process may take the free port before sshd binds it
            self.port = free_port()
            config = self.keys.sshd_config(folder / "sshd_config", f"Port {self.port}", "ListenAddress 127.0.0.1")
            self.daemon = Daemon([SSHD, "-D", "-e", "-f", str(config)], "Server listening on")
            try:
                self.daemon.wait_ready()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        self.ssh_config = self.keys.ssh_config(folder / "ssh_config", {}, port=self.port)

    def close(self) -> None:
        self.daemon.stop()


class NetnsHosts:
    """A controller namespace and ``n`` SSH hosts joined by a bridge; see the module docstring."""

    def __init__(self, folder: Path, n: int = 2) -> None:
        self.prefix = "ipps" + secrets.token_hex(2)  # names are global on the machine: keep them unique
        self.names = ["sw", "ctl", *(f"h{i}" for i in range(1, n + 1))]
        self.ctl_ip = f"{SUBNET}.1"
        self.hosts = {f"h{i}": f"{SUBNET}.{10 + i}" for i in range(1, n + 1)}
        self.daemons: list[Daemon] = []
        self.created: list[str] = []
        try:
            self._build(folder)
        except BaseException:
            self.close()
            raise

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def _build(self, folder: Path) -> None:
        self.keys = SSHKeys(folder)
        for name in self.names:
            run(["ip", "netns", "add", self.ns(name)])
            self.created.append(name)
            run(["ip", "netns", "exec", self.ns(name), "ip", "link", "set", "lo", "up"])
        sw = self.ns("sw")
        run(["ip", "netns", "exec", sw, "ip", "link", "add", "br0", "type", "bridge"])
        run(["ip", "netns", "exec", sw, "ip", "link", "set", "br0", "up"])
        for name, ip in {"ctl": self.ctl_ip, **self.hosts}.items():
            veth = f"{self.prefix}v{name}"  # at most 15 characters
            run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", self.ns(name)])
            run(["ip", "link", "set", veth, "netns", sw])
            run(["ip", "netns", "exec", sw, "ip", "link", "set", veth, "master", "br0", "up"])
            run(["ip", "netns", "exec", self.ns(name), "ip", "addr", "add", f"{ip}/24", "dev", "eth0"])
            run(["ip", "netns", "exec", self.ns(name), "ip", "link", "set", "eth0", "up"])
        config = self.keys.sshd_config(folder / "sshd_host_config", "Port 22")
        for host, ip in self.hosts.items():
            # unshare --uts: each host has its own hostname; every step execs, so the pid is sshd's
            self.daemons.append(Daemon([
                "ip", "netns", "exec", self.ns(host), "unshare", "--uts", "sh", "-c",
                f"hostname {host} && exec {SSHD} -D -e -f {config} -o ListenAddress={ip}",
            ], "Server listening on"))
        for d in self.daemons:
            d.wait_ready()
        self.ssh_config = self.keys.ssh_config(
            folder / "ssh_config", {**self.hosts, "nowhere": UNREACHABLE_IP}
        )

    def pids(self, name: str) -> list[int]:
        """Processes running in namespace ``name`` now."""
        out = subprocess.run(["ip", "netns", "pids", self.ns(name)], capture_output=True, text=True, timeout=10)
        return [int(p) for p in out.stdout.split()]

    def leftovers(self) -> dict[str, list[int]]:
        """Processes on each host besides its sshd (what a test must not leave behind)."""
        daemon_pids = {d.proc.pid for d in self.daemons}
        found = {}
        for name in ("ctl", *self.hosts):
            pids = [p for p in self.pids(name) if p not in daemon_pids]
            if pids:
                found[name] = pids
        return found

    def close(self) -> None:
        for d in self.daemons:
            d.stop()
        for name in reversed(self.created):
            for pid in self.pids(name):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", self.ns(name)], capture_output=True, timeout=10)
        self.created.clear()


def wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    """The pids still alive after up to ``timeout`` seconds (a deadline-bounded poll: these are
    processes on other "hosts", which this process cannot wait on)."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        if alive:
            time.sleep(0.05)
    return alive


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
