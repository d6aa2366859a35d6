"""What this process has mapped from a shared-memory folder, read from /proc/self/maps.

A result mapped from /dev/shm has its file unlinked at once: it is in /dev/shm's usage, but in
no listing of the folder, and not in the process's RSS until touched.
"""

from __future__ import annotations


def mapped_from(folder: str) -> int:
    """Bytes this process has mapped from files of ``folder``, unlinked ones included."""
    total = 0
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith(folder + "/"):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                total += end - start
    return total
