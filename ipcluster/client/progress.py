"""Progress display for ``AsyncResult.wait_interactive`` and ``Client.wait_for_engines``.

tqdm is used when installed (``tqdm.auto``, a widget, in a notebook); otherwise a notebook gets a
text line updated in place through ``IPython.display``, and a terminal a ``\\r``-rewritten line.
"""

from __future__ import annotations

import sys
import time
from typing import Any


def in_notebook() -> bool:
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    ip = get_ipython()
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


class _TextBar:
    def __init__(self, total: int, desc: str, unit: str, file: Any = None) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.n = 0
        self.file = file or sys.stdout
        self.start = time.monotonic()

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        return f"{self.desc}: {self.n}/{self.total} {self.unit}{pct} after {elapsed:.1f} s"

    def update_to(self, n: int) -> None:
        self.n = n
        self.file.write("\r" + self.line())
        self.file.flush()

    def close(self) -> None:
        self.file.write("\r" + self.line() + "\n")
        self.file.flush()


class _NotebookBar(_TextBar):
    def __init__(self, total: int, desc: str, unit: str) -> None:
        super().__init__(total, desc, unit)
        from IPython.display import display

        self.handle = display({"text/plain": self.line()}, raw=True, display_id=True)

    def update_to(self, n: int) -> None:
        self.n = n
        if self.handle is not None:
            self.handle.update({"text/plain": self.line()}, raw=True)

    def close(self) -> None:
        self.update_to(self.n)


class _TqdmBar:
    def __init__(self, total: int, desc: str, unit: str, widget: bool) -> None:
        if widget:
            from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]
        else:
            from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]
        self.bar = tqdm(total=total, desc=desc, unit=unit)

    def update_to(self, n: int) -> None:
        self.bar.update(n - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def progress_bar(total: int, desc: str = "", unit: str = "tasks", widget: bool | None = None) -> Any:
    """A bar with ``update_to(n)`` and ``close()``."""
    if widget is None:
        widget = in_notebook()
    try:
        return _TqdmBar(total, desc, unit, widget)
    except ImportError:
        pass
    if widget:
        return _NotebookBar(total, desc, unit)
    return _TextBar(total, desc, unit)


def wait_interactive(ar: Any, interval: float = 0.1, timeout: float | None = -1, widget: bool | None = None) -> None:
    """Wait for ``ar``, updating a progress bar every ``interval`` seconds; give up (without
    raising, as ipyparallel) after ``timeout`` seconds (``-1``/``None``: never)."""
    if timeout is not None and timeout < 0:
        timeout = None
    bar = progress_bar(len(ar), desc=getattr(ar, "_fname", "") or "tasks", widget=widget)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while not ar.ready():
            wait = interval
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    break
            ar.wait(wait)
            bar.update_to(ar.progress)
        bar.update_to(ar.progress)
    finally:
        bar.close()
