"""Large results handed over in shared memory, between an engine and a client on one host.

Over the data channel (:mod:`ipcluster.protocol.data`) a 100 MB result still crosses a Unix
socket: the engine's ZeroMQ thread writes it in socket-buffer-sized pieces and the client's reads
it into memory freshly allocated by libzmq, one 4 KiB page fault at a time. Measured on a 2-core
VM, that path moved 0.3-1.3 GB/s, while writing the same bytes into a file on a tmpfs ran at
1.7-2.3 GB/s, and mapping that file in the client took 0.1 ms whatever its size.

So an engine whose controller lists a shared-memory folder (``"shm"`` in the connection files: a
private folder, mode 0700, that the controller makes under ``ControllerApp.shm_dir``, by default
``/dev/shm``, and removes when it exits) writes a result's large buffers into one file there and
sends only the file's name over the data channel. The client opens the file, maps it
copy-on-write (``MAP_PRIVATE``: the array it gets is its own, writable, and a later ``fork``
copies it as it would any memory) and unlinks it at once, so the bytes live exactly as long as
the objects that use them. Files nobody claimed are unlinked by the engine after a while, and the
folder goes with the controller.

The memory stays counted against the tmpfs while the client holds the result, so an engine uses
this path only while the folder's filesystem has at least twice the result's size free, and
otherwise sends the bytes over the socket as before.
"""

from __future__ import annotations

import mmap
import os
import re
import stat
import tempfile
import uuid
from collections.abc import Sequence
from typing import Any

#: what a name written into the folder looks like (the receiver opens nothing else)
_NAME = re.compile(r"buf-[0-9a-f]{32}")


def make_folder(base: str) -> str:
    """A new private folder under ``base`` (``""`` when ``base`` is empty or unusable)."""
    if not base or not os.path.isdir(base) or not os.access(base, os.W_OK | os.X_OK):
        return ""
    return tempfile.mkdtemp(prefix="ipcluster-", dir=base)  # mode 0700


def has_room(folder: str, size: int) -> bool:
    """Whether ``folder``'s filesystem has at least twice ``size`` bytes free."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize >= 2 * size


def write(folder: str, frames: Sequence[Any]) -> str:
    """Write ``frames`` one after another into a new file in ``folder``; return its name.

    Raises OSError (the partial file removed) when the folder is gone or full.
    """
    name = f"buf-{uuid.uuid4().hex}"
    path = os.path.join(folder, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        for frame in frames:
            view = memoryview(frame).cast("B")
            done = 0
            while done < len(view):
                done += os.write(fd, view[done:])
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return name


def take(folder: str, name: str, sizes: Sequence[int]) -> list[memoryview]:
    """Map the file ``name`` in ``folder`` copy-on-write, unlink it, and return one view per size.

    Raises ValueError for a name this module did not make or a file that is not what the sender
    announced, OSError when it cannot be opened.
    """
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a shared-memory buffer name: {name!r}")
    path = os.path.join(folder, name)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        total = sum(sizes)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_size != total or not total:
            raise ValueError(f"{path}: {st.st_size} bytes where {total} were announced")
        mapped = mmap.mmap(fd, total, access=mmap.ACCESS_COPY)
    finally:
        os.close(fd)
        os.unlink(path)
    views = []
    whole = memoryview(mapped)
    at = 0
    for size in sizes:
        views.append(whole[at : at + size])
        at += size
    return views
