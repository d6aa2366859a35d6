"""Timing statistics and process memory readings, used inside the workers."""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import psutil

MB = 1_000_000


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank: the value that q% of samples do not exceed."""
    data = sorted(values)
    if not data:
        raise ValueError("no samples")
    rank = max(1, math.ceil(q / 100 * len(data)))
    return data[rank - 1]


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def repeat(fn: Callable[[], Any], reps: int, deadline: float | None = None) -> list[float]:
    """Time ``fn`` up to ``reps`` times; stop early (after at least one run) past ``deadline``
    (a ``time.monotonic()`` value), so a slow system still reports a median within its budget."""
    out = []
    for _ in range(reps):
        out.append(timed(fn))
        if deadline is not None and time.monotonic() > deadline:
            break
    return out


# -- memory ------------------------------------------------------------------------------------
def peak_rss(pid: int) -> int:
    """Peak resident set size of a process in bytes (Linux ``VmHWM``; current RSS elsewhere)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return psutil.Process(pid).memory_info().rss


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def total(pids: Iterable[int], reading: Callable[[int], int]) -> float:
    """Sum of a reading over processes, in MB; processes that are gone count as nothing."""
    n = 0
    for pid in pids:
        try:
            n += reading(pid)
        except (psutil.Error, OSError):
            pass
    return n / MB


def largest(pids: Iterable[int], reading: Callable[[int], int]) -> float:
    best = 0
    for pid in pids:
        try:
            best = max(best, reading(pid))
        except (psutil.Error, OSError):
            pass
    return best / MB


def descendants(pid: int | None = None) -> list[psutil.Process]:
    try:
        return psutil.Process(pid or os.getpid()).children(recursive=True)
    except psutil.Error:
        return []


def cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def find(pred: Callable[[psutil.Process], bool], root: int | None = None) -> list[int]:
    """Pids of this process's descendants (or ``root``'s) for which ``pred`` is true."""
    return [p.pid for p in descendants(root) if pred(p)]


def with_children(pids: Iterable[int]) -> list[int]:
    out = []
    for pid in pids:
        out.append(pid)
        out.extend(p.pid for p in descendants(pid))
    return sorted(set(out))
