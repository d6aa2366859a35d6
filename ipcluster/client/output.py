"""Showing a result's output on the client: ``AsyncResult.display_outputs`` and ``stream_output``."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from ..error import IPClusterError


def _ipython() -> Any:
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    return get_ipython()


def show_stream(text: str, prefix: str = "", file: TextIO | None = None) -> None:
    """Print ``text`` after ``prefix``; multi-line text starts on its own line."""
    if not text:
        return
    file = file or sys.stdout
    end = "" if text.endswith("\n") else "\n"
    if prefix and text.count("\n") > int(text.endswith("\n")) and not text.startswith("\n"):
        prefix += "\n"
    print(f"{prefix}{text}", file=file, end=end)


def _publish(ip: Any, output: dict[str, Any], engine_id: Any) -> None:
    md = dict(output.get("metadata") or {})
    md["engine"] = engine_id
    ip.display_pub.publish(data=output.get("data", {}), metadata=md)


def _label(ip: Any, engine_id: Any) -> None:
    from IPython.display import display_pretty

    display_pretty(f"[output:{engine_id}]", raw=True)


def display_outputs(ar: Any, groupby: str = "type", result_only: bool = False, streams: bool = True) -> None:
    """Re-show the streams, displays and results of a finished AsyncResult (``streams=False``:
    all but stdout/stderr, for callers that showed those live)."""
    if groupby not in ("type", "engine", "order"):
        raise ValueError(f"groupby must be 'type', 'engine' or 'order', not {groupby!r}")
    tasks = ar._tasks
    ip = _ipython()
    results = ar.get(return_exceptions=True)
    if ar._single_result:
        results = [results]
    elif len(results) != len(tasks):  # a map: show the output, not the flattened results
        results = [t.value for t in tasks]
    rows = [(t.engine_id, t, r) for t, r in zip(tasks, results)]

    def show_result(task: Any, result: Any) -> None:
        if ip is not None and task.execute_result is not None:
            from IPython.display import display

            display(result)

    if groupby == "engine":
        for eid, t, r in rows:
            if streams and not result_only:
                show_stream(t.text("stdout"), f"[stdout:{eid}] ")
                show_stream(t.text("stderr"), f"[stderr:{eid}] ", file=sys.stderr)
            if ip is None:
                continue
            if (t.outputs and not result_only) or t.execute_result is not None:
                _label(ip, eid)
            if not result_only:
                for output in t.outputs or ():
                    _publish(ip, output, eid)
            show_result(t, r)
        return

    if streams and not result_only:
        for eid, t, _ in rows:
            show_stream(t.text("stdout"), f"[stdout:{eid}] ")
        for eid, t, _ in rows:
            show_stream(t.text("stderr"), f"[stderr:{eid}] ", file=sys.stderr)
    if ip is None:
        return
    if not result_only:
        if groupby == "order":
            n = max((len(t.outputs or ()) for _, t, _ in rows), default=0)
            for i in range(n):
                for eid, t, _ in rows:
                    outputs = t.outputs or ()
                    if i < len(outputs):
                        _label(ip, eid)
                        _publish(ip, outputs[i], eid)
        else:
            for eid, t, _ in rows:
                if t.outputs:
                    _label(ip, eid)
                for output in t.outputs or ():
                    _publish(ip, output, eid)
    for _, t, r in rows:
        show_result(t, r)


@contextmanager
def stream_output(ar: Any) -> Iterator[None]:
    """``AsyncResult.stream_output()``: while the block runs, print each task's stdout and stderr
    as it arrives, to ``sys.stdout``/``sys.stderr``, headed ``[stdout:N]`` (N the engine).

    Output that had arrived already is printed on entering. The hooks are set and removed on the
    client's I/O thread, which receives the output, so nothing is printed twice or skipped.
    """
    lock = threading.Lock()

    def show(task: Any, name: str, text: str, engine_id: Any = None) -> None:
        if not text:
            return
        eid = task.engine_id if engine_id is None else engine_id
        file = sys.stderr if name == "stderr" else sys.stdout
        with lock:
            try:
                show_stream(text, f"[{name}:{'?' if eid is None else eid}] ", file)
                file.flush()
            except (OSError, ValueError):  # a closed or broken stream: keep receiving
                pass

    async def arm() -> None:
        for task in ar._tasks:
            for name in ("stdout", "stderr"):
                show(task, name, task.text(name))
            task.on_stream = show

    async def disarm() -> None:
        for task in ar._tasks:
            if task.on_stream is show:
                task.on_stream = None

    submitter = ar._client.submitter
    try:
        submitter.on_io_thread(arm())
    except IPClusterError:  # closed client: no more output will come
        for task in ar._tasks:
            for name in ("stdout", "stderr"):
                show(task, name, task.text(name))
        yield
        return
    try:
        yield
    finally:
        try:
            submitter.on_io_thread(disarm())
        except IPClusterError:
            pass
