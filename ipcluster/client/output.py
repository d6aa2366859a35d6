"""Showing a result's output again on the client: ``AsyncResult.display_outputs``."""

from __future__ import annotations

import sys
from typing import Any, TextIO


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
