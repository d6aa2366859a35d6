"""Fixtures for the SSH and MPI launcher tests: real daemons, torn down even when a test fails.

Tests marked ``ssh`` or ``mpi`` skip when the system programs are missing, except under
``IPCLUSTER_REQUIRE_INFRA=1`` (CI), where a missing program is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .infra import SSHD, LoopbackSSHD, NetnsHosts, require


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSSHD]:
    """sshd on 127.0.0.1:<free port>, key login for root."""
    require("ssh", SSHD, "ssh", "ssh-keygen")
    daemon = LoopbackSSHD(tmp_path_factory.mktemp("sshd"))
    try:
        yield daemon
    finally:
        daemon.close()


@pytest.fixture(scope="module")
def netns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsHosts]:
    """Two SSH hosts (h1, h2) and a controller namespace, in network namespaces."""
    require("ssh", SSHD, "ssh", "ssh-keygen", "ip", "unshare")
    if os.geteuid() != 0:
        if os.environ.get("IPCLUSTER_REQUIRE_INFRA") == "1":
            pytest.fail("network-namespace hosts need root (CAP_NET_ADMIN)")
        pytest.skip("network-namespace hosts need root (CAP_NET_ADMIN)")
    hosts = NetnsHosts(tmp_path_factory.mktemp("netns"))
    try:
        yield hosts
    finally:
        hosts.close()


@pytest.fixture
def profile(tmp_path: Path) -> str:
    return str(tmp_path / "profile")
