"""Waiting on results: ``AsyncResult.wait(timeout, return_when=...)`` (ipyparallel 8.0+) and
``Client.wait(jobs, timeout)``.

ipyparallel documents ``return_when`` on ``AsyncResult.wait``: ``ipp.FIRST_COMPLETED``,
``FIRST_EXCEPTION`` or ``ALL_COMPLETED``, "passed to concurrent.futures.wait", and then it
returns "two sets of AsyncResult objects representing the completed and still-pending subsets of
results". ``Client.wait(jobs=None, timeout=-1)`` returns True when all are done, False on timeout.

One engine's task is held until the test releases it (a file appearing), so which part is done
when is decided by the test, not by timing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .target import ipp


def hold(path: str | None) -> str | None:
    """Return at once for None, else when ``path`` exists (at most 30 s)."""
    import os
    import time

    deadline = time.monotonic() + 30
    while path and not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return path


def fail_or_hold(path: str | None) -> str | None:
    if path is None:
        raise ValueError("first")
    return hold(path)


@pytest.fixture
def release(tmp_path: Path) -> Any:
    path = tmp_path / "release"
    yield path
    path.touch()  # never leave an engine held


def test_wait_first_completed_then_all(dview: Any, release: Path) -> None:
    ar = dview.map_async(hold, [None, str(release)])
    done, pending = ar.wait(20, return_when=ipp.FIRST_COMPLETED)
    assert (len(done), len(pending)) == (1, 1)
    assert all(isinstance(r, ipp.AsyncResult) for r in done | pending)
    (first,) = done
    assert first.ready() and first.successful()
    (held,) = pending
    assert not held.ready()
    done, pending = ar.wait(0.05, return_when=ipp.ALL_COMPLETED)  # the held part is still held
    assert (len(done), len(pending)) == (1, 1)
    assert ar.wait(0.05) is False
    release.touch()
    done, pending = ar.wait(20, return_when=ipp.ALL_COMPLETED)
    assert (len(done), pending) == (2, set())
    assert ar.wait(20) is True
    assert ar.get(timeout=20) == [None, str(release)]


def test_wait_first_exception(dview: Any, release: Path) -> None:
    ar = dview.map_async(fail_or_hold, [None, str(release)])
    done, pending = ar.wait(20, return_when=ipp.FIRST_EXCEPTION)
    (failed,) = done
    assert failed.ready() and not failed.successful()
    assert len(pending) == 1
    release.touch()
    assert ar.wait(20) is True
    assert not ar.successful()


def test_wait_return_when_on_one_task(lview: Any) -> None:
    ar = lview.apply_async(hold, None)
    done, pending = ar.wait(20, return_when=ipp.FIRST_COMPLETED)
    assert (len(done), pending) == (1, set())


def test_client_wait_returns_false_on_timeout(rc: Any, release: Path) -> None:
    ar = rc[1].apply_async(hold, str(release))
    assert rc.wait(ar, timeout=0.05) is False
    assert rc.wait([ar.msg_ids[0]], timeout=0.05) is False
    release.touch()
    assert rc.wait(ar, timeout=20) is True
    assert rc.wait(timeout=20) is True  # every outstanding task
