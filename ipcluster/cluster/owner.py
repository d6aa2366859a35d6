"""The process a cluster lives and dies with: its owner.

A Cluster records the process that started it (pid, create time, start time) in its state file.
That process stops the cluster when its interpreter exits, unless ``shutdown_atexit`` is off.
``ipcluster start`` is an owner too: it exits once its controller is gone, so a process that
stops a cluster found by file makes sure such an owner does exit.
"""

from __future__ import annotations

import atexit
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..launchers.process import Process

if TYPE_CHECKING:
    from .cluster import Cluster


class ExitHook:
    """Call ``callback`` when this interpreter exits, while registered (never twice)."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.registered = False

    def register(self) -> None:
        if not self.registered:
            atexit.register(self.callback)
            self.registered = True

    def unregister(self) -> None:
        if self.registered:
            atexit.unregister(self.callback)
            self.registered = False


def record_owner(cluster: Cluster) -> None:
    """Make this process the owner of ``cluster``, as of now."""
    cluster.start_time = time.time()
    cluster.owner_pid = os.getpid()
    cluster.owner_create_time = Process(cluster.owner_pid).create_time


async def wait_for_owner(cluster: Cluster) -> None:
    """Make sure the ``ipcluster`` command that owns a stopped ``cluster`` exits.

    It exits by itself once its controller is gone; it is signalled (SIGTERM, then SIGKILL) only
    if it has not within the cluster's ``stop_timeout``. A Python owner is left alone: it is a
    user's interpreter, not part of the cluster.
    """
    owner = cluster.owner_pid
    if cluster.owner_kind != "ipcluster" or not owner or owner == os.getpid():
        return
    proc = Process(owner, create_time=cluster.owner_create_time)
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            proc.send_signal(sig)
        try:
            await proc.wait(cluster.stop_timeout)
            return
        except TimeoutError:
            continue
