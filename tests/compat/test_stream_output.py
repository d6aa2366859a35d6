"""``AsyncResult.stream_output()``: "stream output for this result as it arrives. Returns a
context manager, during which output is streamed" (to this process's stdout and stderr, each
piece headed by its stream and engine, ``[stdout:0]``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest


def talk_then_hold(path: str) -> int:
    import os
    import sys
    import time

    print("hello", flush=True)
    print("oops", file=sys.stderr, flush=True)
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    print("bye", flush=True)
    return 1


def say(word: str) -> None:
    print(word)


@pytest.fixture
def release(tmp_path: Path) -> Any:
    path = tmp_path / "release"
    yield path
    path.touch()  # never leave an engine held


def test_output_is_streamed_while_the_tasks_run(dview: Any, release: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ar = dview.apply_async(talk_then_hold, str(release))
    out = err = ""
    with ar.stream_output():
        deadline = time.monotonic() + 30
        while out.count("hello") < 2 or err.count("oops") < 2:  # output has no event to wait on here
            assert time.monotonic() < deadline, (out, err)
            captured = capsys.readouterr()
            out, err = out + captured.out, err + captured.err
            time.sleep(0.01)
        assert not ar.ready()  # streamed before the tasks finished
        release.touch()
        assert ar.get(timeout=20) == [1, 1]
        ar.wait_for_output(20)
    captured = capsys.readouterr()
    out, err = out + captured.out, err + captured.err
    assert "[stdout:0]" in out and "[stdout:1]" in out and out.count("bye") == 2
    assert "[stderr:0]" in err and "[stderr:1]" in err


def test_output_that_arrived_before_is_shown_on_entering(rc: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ar = rc[0].apply_async(say, "earlier")
    ar.get(timeout=20)
    ar.wait_for_output(20)
    capsys.readouterr()
    with ar.stream_output():
        pass
    out = capsys.readouterr().out
    assert "[stdout:0]" in out and "earlier" in out
