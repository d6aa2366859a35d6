"""Where a cluster's connection files live, and how they are written and read.

A controller writes two JSON files into its profile's ``security/`` folder: one for clients and
one for engines. They hold the signing key, so they are created readable by their owner only
(mode 0600, set before any byte is written). Names follow ipyparallel:
``ipcontroller[-<cluster_id>]-client.json`` and ``...-engine.json``.

Besides its TCP ports, a controller listens on Unix domain sockets in a private (0700) folder,
listed under ``"ipc"``: a process on the same host connects there instead (see :func:`url`),
because a message over a Unix socket costs about a quarter less than over loopback TCP.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any, Literal

from ..error import ConnectionFileError, IPClusterError

Role = Literal["client", "engine"]

CLIENT_KEYS = ("key", "interface", "client_port", "iopub_port")
ENGINE_KEYS = ("key", "interface", "engine_port", "iopub_port", "hb_ping_port", "hb_pong_port")


def default_ipython_dir() -> Path:
    """``$IPYTHONDIR``, else ``~/.ipython`` (the same place IPython uses)."""
    env = os.environ.get("IPYTHONDIR")
    return Path(env).expanduser() if env else Path.home() / ".ipython"


def profile_dir(profile: str = "default", ipython_dir: str | os.PathLike[str] | None = None) -> Path:
    base = Path(ipython_dir) if ipython_dir else default_ipython_dir()
    return base / f"profile_{profile}"


def security_dir(profile_path: str | os.PathLike[str]) -> Path:
    return Path(profile_path) / "security"


def connection_file_name(role: Role, cluster_id: str = "") -> str:
    middle = f"-{cluster_id}" if cluster_id else ""
    return f"ipcontroller{middle}-{role}.json"


def write_private_json(path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Write JSON readable by the owner only; atomic (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.parent.name == "security":
        os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)
    return path


def read_json_file(path: str | os.PathLike[str], what: str, if_missing: str) -> Any:
    """Load a JSON file the cluster wrote, with an error that names it and says what is wrong."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise IPClusterError(f"{what} {path} does not exist: {if_missing}") from None
    except json.JSONDecodeError as e:
        raise IPClusterError(f"{what} {path} is not valid JSON: {e}") from e


def check_private(path: str | os.PathLike[str]) -> None:
    """Refuse a connection file that others than its owner can read or write (ConnectionFileError).

    It holds the cluster's key, and whoever holds the key can run code as the cluster's user;
    the controller creates its files with mode 0600.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # reading it will say what is wrong
    if mode & 0o066:
        raise ConnectionFileError(
            f"connection file {path} is {'readable' if mode & 0o044 else 'writable'} by others than its owner "
            f"(mode {stat.S_IMODE(mode):04o}): it holds the cluster's key, which lets anyone run code as you. "
            f"Make it private with `chmod 600 {path}` (and check who may have read it; restarting the cluster "
            "makes a new key)")


def check_key(info: dict[str, Any], where: str) -> None:
    """Refuse connection info with an empty or missing key (ConnectionFileError): nothing would verify."""
    key = info.get("key")
    if not key or not isinstance(key, str):
        raise ConnectionFileError(
            f"{where} has {'no' if key is None else 'an empty'} key: a controller writes a random key into "
            "each connection file, so this one was edited or not written by a controller. Use the file the "
            "controller wrote (its profile's security/ folder)")


def read_connection_file(path: str | os.PathLike[str], role: Role = "client") -> dict[str, Any]:
    """Load and check a connection file, with an error that says what is wrong: ConnectionFileError for
    one that must not be used (others can read it, no key), IPClusterError for the rest."""
    check_private(path)
    info: dict[str, Any] = read_json_file(path, "connection file", "is the controller running?")
    if not isinstance(info, dict):
        raise IPClusterError(f"connection file {path} does not hold a JSON object")
    check_key(info, f"connection file {path}")
    needed = CLIENT_KEYS if role == "client" else ENGINE_KEYS
    missing = [k for k in needed if k not in info]
    if missing:
        raise IPClusterError(f"connection file {path} lacks {', '.join(missing)} (is it a {role} file?)")
    return info


def find_connection_file(
    role: Role = "client",
    profile: str = "default",
    cluster_id: str = "",
    profile_path: str | os.PathLike[str] | None = None,
    ipython_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The path of a cluster's connection file in a profile (which need not exist yet)."""
    pdir = Path(profile_path) if profile_path else profile_dir(profile, ipython_dir)
    return security_dir(pdir) / connection_file_name(role, cluster_id)


def url(info: dict[str, Any], port_key: str) -> str:
    """Where to connect for one of the ports in a connection dict.

    The controller's Unix socket (``ipc://...``) when it exists on this host, else
    ``tcp://host:port``. A socket file at the listed path means the same host: the path lies in a
    folder with a random name that the controller created, so elsewhere it does not exist.
    """
    path = (info.get("ipc") or {}).get(port_key)
    if path and is_socket(path):
        return f"ipc://{path}"
    return f"{info['interface']}:{info[port_key]}"


def is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def shm_folder(info: dict[str, Any]) -> str:
    """The controller's shared-memory folder when it exists on this host (see protocol.shm), else ""."""
    folder = info.get("shm")
    return folder if isinstance(folder, str) and folder and os.path.isdir(folder) else ""


def remove_socket_folder(info: dict[str, Any] | None) -> list[str]:
    """Remove the Unix-socket and shared-memory folders of a controller that could not (it was
    killed); return what went. Only folders the controller made (``ipcluster-*``) are touched."""
    paths = (info.get("ipc") or {}).values() if isinstance(info, dict) else ()
    folders = {os.path.dirname(p) for p in paths if isinstance(p, str)}
    if isinstance(info, dict) and isinstance(info.get("shm"), str) and info["shm"]:
        folders.add(info["shm"])
    gone = []
    for folder in sorted(folders):
        if os.path.basename(folder).startswith("ipcluster-") and os.path.isdir(folder) and not os.path.islink(folder):
            shutil.rmtree(folder, ignore_errors=True)
            gone.append(folder)
    return gone


#: names that mean this host's own loopback interface
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(address: str) -> bool:
    """Whether ``address`` (an IP or a host name) is reachable from this host only.

    ``'0.0.0.0'``, ``'*'`` and other host names are not: other hosts may reach them.
    """
    if address.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False
