"""Names ipyparallel users import from ``ipyparallel.util``, under the same path here.

A re-export module only (the style guide's one exception to "no util.py"): each name lives in
the module of its subject, and this keeps ``from ipyparallel.util import interactive`` working
after the import changes to ``ipcluster``. Importing it imports no process role; ``interactive``
is resolved on first use.
"""

from __future__ import annotations

import ipaddress
import socket
from datetime import timezone
from typing import Any

__all__ = ["disambiguate_ip_address", "disambiguate_url", "interactive", "utc"]

#: the UTC time zone, as ipyparallel's timestamps use it (``datetime.timezone.utc``)
utc = timezone.utc

_WILDCARDS = ("0.0.0.0", "*", "::", "[::]")


def _is_local(location: str) -> bool:
    """Whether ``location`` (a host name or address) is this machine."""
    if location in ("localhost", "127.0.0.1", "::1"):
        return True
    try:
        if ipaddress.ip_address(location).is_loopback:
            return True
    except ValueError:
        pass
    try:
        return location in {socket.gethostname(), socket.getfqdn(), *socket.gethostbyname_ex(socket.gethostname())[2]}
    except OSError:
        return False


def disambiguate_ip_address(ip: str, location: str | None = None) -> str:
    """A connectable address for ``ip``: a wildcard (``0.0.0.0``, ``*``) means "every interface
    of the machine at ``location``", so it becomes ``location`` itself, or ``127.0.0.1`` when
    ``location`` is this machine or not given. Other addresses are returned unchanged."""
    if ip not in _WILDCARDS:
        return ip
    if location is None or _is_local(location):
        return "127.0.0.1"
    return location


def disambiguate_url(url: str, location: str | None = None) -> str:
    """Turn a ZeroMQ url bound on every interface (``tcp://*:10101``, ``tcp://0.0.0.0:10101``)
    into one that can be connected to, given the ``location`` of the machine that bound it
    (default: this machine, hence ``127.0.0.1``). Urls of other transports, and urls with a
    specific address, are returned unchanged."""
    if "://" not in url:
        return url
    proto, addr = url.split("://", 1)
    if proto != "tcp" or ":" not in addr:
        return url
    ip, port = addr.rsplit(":", 1)
    return f"{proto}://{disambiguate_ip_address(ip, location)}:{port}"


def __getattr__(name: str) -> Any:
    if name == "interactive":
        import ipcluster

        return ipcluster.interactive
    raise AttributeError(f"module 'ipcluster.util' has no attribute {name!r}")
