"""The ``%px`` family: run IPython cells on the engines of a view.

One :class:`ParallelMagics` instance is bound to one view; ``view.activate(suffix)`` registers a
second set (``%px{suffix}``...) bound to another. Only the client's public API is used, so what
a cell does through ``%%px`` is what ``view.execute(cell)`` does in a script.
"""

from __future__ import annotations

import ast
import signal
import sys
import time
from typing import Any

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ipcluster.client import AsyncResult, Client

#: how often a blocking cell looks for new stream output to show (seconds)
STREAM_INTERVAL = 0.05


def parse_targets(text: str | None) -> Any:
    """``all``, ``3``, ``0,2``, ``[0, 2]``, ``::2``, ``1:3`` -> what a view's ``targets`` takes."""
    if text is None:
        return None
    text = text.strip()
    if text in ("", "all"):
        return "all"
    if ":" in text and "[" not in text:
        parts = [int(p) if p.strip() else None for p in text.split(":")]
        if len(parts) > 3:
            raise UsageError(f"bad targets slice {text!r}")
        return slice(*parts)
    try:
        value = ast.literal_eval(text if not text.endswith(",") else text[:-1])
    except (ValueError, SyntaxError):
        raise UsageError(f"cannot understand targets {text!r}: use all, 3, 0,2 or a slice like ::2") from None
    if isinstance(value, int):
        return value
    if isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value):
        return list(value)
    raise UsageError(f"cannot understand targets {text!r}: use all, 3, 0,2 or a slice like ::2")


def _px_arguments(fn: Any) -> Any:
    """The options %%px shares with %pxconfig."""
    for decorator in reversed([
        argument("-t", "--targets", type=str, help="Engines to run on: all, 3, 0,2, or a slice like ::2."),
        argument("--block", action="store_const", const=True, dest="block", help="Wait for the engines (the default)."),
        argument("--noblock", action="store_const", const=False, dest="block",
                 help="Return at once; %%pxresult shows the result later."),
        argument("--stream", action="store_const", const=True, dest="stream",
                 help="Show stdout/stderr while the cell runs (the default)."),
        argument("--no-stream", action="store_const", const=False, dest="stream",
                 help="Show stdout/stderr only when the cell is done."),
        argument("--verbose", action="store_const", const=True, dest="verbose", help="Say what is sent where."),
        argument("--no-verbose", action="store_const", const=False, dest="verbose"),
        argument("--progress-after", type=float, default=None, dest="progress_after",
                 help="Show a progress bar once a blocking cell has run this many seconds (-1: never)."),
    ]):
        fn = decorator(fn)
    return fn


@magics_class
class ParallelMagics(Magics):
    """Magics bound to one view (the active one)."""

    shell: InteractiveShell  # the shell they are registered with (IPython types it Optional)

    def __init__(self, shell: Any, view: Any = None, suffix: str = "") -> None:
        super().__init__(shell)
        self.view = view
        self.suffix = suffix
        self.targets: Any = None  # None: the view's own targets
        self.block = True
        self.stream = True
        self.verbose = False
        self.progress_after = 5.0
        self.last_result: AsyncResult | None = None
        self._autopx = False

    # -- registration ------------------------------------------------------------------------
    def register(self) -> None:
        """Register under this instance's suffix (``%px``, ``%pxfoo``, ...)."""
        s = self.suffix
        mm = self.shell.magics_manager
        mm.register_function(self.px, "line_cell", f"px{s}")
        mm.register_function(self.pxconfig, "line", f"pxconfig{s}")
        mm.register_function(self.pxresult, "line", f"pxresult{s}")
        # IPython types line_magic's result as a plain callable, which mypy cannot bind to self
        mm.register_function(self.autopx, "line", f"autopx{s}")  # type: ignore[misc]
        if not s:
            mm.register_function(self.pxresult, "line", "result")

    def active_view(self) -> Any:
        if self.view is not None:
            return self.view
        clients = [v for v in self.shell.user_ns.values() if isinstance(v, Client)]
        live = [c for c in clients if not getattr(c, "_closed", False)]
        if not live:
            raise UsageError("no active view: create a client (rc = ipcluster.Client()) and call "
                             "rc.activate(), or view.activate() for a view of your choice")
        self.view = live[-1].direct_view("all")
        return self.view

    # -- %pxconfig ---------------------------------------------------------------------------
    @magic_arguments()
    @_px_arguments
    @line_magic
    def pxconfig(self, line: str) -> None:
        """Set the defaults of %px, %%px and %autopx: ``%pxconfig --targets ::2 --noblock``."""
        args = parse_argstring(self.pxconfig, line)
        if args.targets is not None:
            self.targets = parse_targets(args.targets)
        for name in ("block", "stream", "verbose", "progress_after"):
            value = getattr(args, name)
            if value is not None:
                setattr(self, name, value)

    # -- %px / %%px -------------------------------------------------------------------------
    @magic_arguments()
    @_px_arguments
    @argument("-g", "--group-outputs", dest="groupby", choices=("engine", "order", "type"), default="type",
              help="Show output grouped by type (all stdout first, the default), by engine, "
                   "or by engine in the order the outputs were made.")
    @argument("-o", "--out", "--save-name", dest="save_name", type=str, default=None,
              help="Keep the AsyncResult in the user namespace under this name.")
    @argument("--local", action="store_true", help="Also run the cell in this (local) namespace.")
    @line_cell_magic
    def px(self, line: str, cell: str | None = None) -> Any:
        """Run code on the engines: ``%px a = 5`` or a cell starting with ``%%px [options]``."""
        if cell is None:
            return self.parallel_execute(line)
        args = parse_argstring(self.px, line)
        targets = parse_targets(args.targets) if args.targets is not None else self.targets
        block = self.block if args.block is None else args.block
        stream = self.stream if args.stream is None else args.stream
        verbose = self.verbose if args.verbose is None else args.verbose
        progress_after = self.progress_after if args.progress_after is None else args.progress_after
        if args.local:
            self.shell.run_cell(cell)
        return self.parallel_execute(cell, targets=targets, block=block, stream=stream, verbose=verbose,
                                     groupby=args.groupby, save_name=args.save_name,
                                     progress_after=progress_after)

    def parallel_execute(self, code: str, *, targets: Any = None, block: bool | None = None,
                         stream: bool | None = None, verbose: bool | None = None, groupby: str = "type",
                         save_name: str | None = None, progress_after: float | None = None) -> Any:
        view = self.active_view()
        targets = self.targets if targets is None else targets
        block = self.block if block is None else block
        stream = self.stream if stream is None else stream
        if (self.verbose if verbose is None else verbose):
            where = "all" if targets in (None, "all") else targets
            print(f"{'' if block else 'Async '}{'P' if block else 'p'}arallel execution on engine(s): {where}")
        kwargs = {} if targets is None else {"targets": targets}
        ar = view.execute(code, silent=False, block=False, **kwargs)
        self.last_result = ar
        if save_name:
            self.shell.user_ns[save_name] = ar
        if not block:
            return ar
        self.wait(ar, stream=stream, progress_after=self.progress_after if progress_after is None else progress_after)
        self.show(ar, groupby=groupby, streams=not stream)
        return None

    def wait(self, ar: AsyncResult, stream: bool, progress_after: float) -> None:
        """Wait for a cell, showing stream output as it comes and, for long cells, progress.

        Ctrl-C interrupts the engines (SIGINT through their control channel) and returns once
        they have answered, so the kernel gets control back.
        """
        shown: dict[int, dict[str, int]] = {}
        start = time.monotonic()
        bar = None
        try:
            while not ar.wait(STREAM_INTERVAL):
                if stream:
                    self._show_new_streams(ar, shown)
                if bar is None and 0 <= progress_after <= time.monotonic() - start:
                    bar = _Progress(len(ar))
                if bar is not None:
                    bar.update(ar.progress)
            if bar is not None:
                bar.update(ar.progress, finished=True)
            if stream:
                ar.wait_for_output(5)
                self._show_new_streams(ar, shown)
        except KeyboardInterrupt:
            self._interrupt(ar)
            if stream:
                self._show_new_streams(ar, shown)
            print("KeyboardInterrupt: the engines were interrupted", file=sys.stderr)
            raise

    def _interrupt(self, ar: AsyncResult) -> None:
        client = self.active_view().client
        engines = sorted({e for e in _engine_ids(ar) if e is not None}) or None
        try:
            client.send_signal(signal.SIGINT, targets=engines, block=True)
            ar.wait(5)  # the interrupted tasks answer with KeyboardInterrupt errors
        except Exception as e:  # best effort: the user wants control back, with a reason
            print(f"could not interrupt the engines: {e}", file=sys.stderr)

    @staticmethod
    def _show_new_streams(ar: AsyncResult, shown: dict[int, dict[str, int]]) -> None:
        for index, eid in enumerate(_engine_ids(ar)):
            seen = shown.setdefault(index, {"stdout": 0, "stderr": 0})
            for name, file in (("stdout", sys.stdout), ("stderr", sys.stderr)):
                text = _stream(ar, name, index)
                new = text[seen[name]:]
                if new:
                    seen[name] = len(text)
                    end = "" if new.endswith("\n") else "\n"
                    print(f"[{name}:{eid}] {new}", end=end, file=file, flush=True)

    def show(self, ar: AsyncResult, groupby: str = "type", streams: bool = True) -> None:
        """Show a finished cell's output. Failures raise: IPython then shows the remote
        traceback, or for several engines one summary line per distinct error and the first
        traceback in full (``CompositeError._render_traceback_``)."""
        ar.display_outputs(groupby=groupby, streams=streams)
        ar.get(0)

    # -- %pxresult ---------------------------------------------------------------------------
    @magic_arguments()
    @argument("-g", "--group-outputs", dest="groupby", choices=("engine", "order", "type"), default="type")
    @argument("name", nargs="?", default=None, help="Show this saved AsyncResult instead of the last one.")
    @line_magic
    def pxresult(self, line: str) -> None:
        """Show the output of the last %%px (or a saved result), waiting for it if needed."""
        args = parse_argstring(self.pxresult, line)
        ar = self.shell.user_ns[args.name] if args.name else self.last_result
        if ar is None:
            raise UsageError("no %px result to show yet")
        self.wait(ar, stream=False, progress_after=self.progress_after)
        self.show(ar, groupby=args.groupby)

    # -- %autopx ------------------------------------------------------------------------------
    @line_magic
    def autopx(self, line: str = "") -> None:
        """Toggle: run every following cell on the engines until ``%autopx`` again."""
        # cleanup transformers see the raw cell, before %magic lines are rewritten into calls
        transformers = self.shell.input_transformers_cleanup
        if self._autopx:
            if self._rewrite in transformers:
                transformers.remove(self._rewrite)
            self._autopx = False
            print("%autopx disabled")
        else:
            self.active_view()
            transformers.append(self._rewrite)
            self._autopx = True
            print("%autopx enabled")

    def _rewrite(self, lines: list[str]) -> list[str]:
        """Input transformer: turn a cell into a %%px call (except the cell that turns it off,
        and cells that already are %%px calls)."""
        text = "".join(lines)
        stripped = text.lstrip()
        if not stripped or stripped.startswith(f"%autopx{self.suffix}") or stripped.startswith("%%px"):
            return lines
        return [f"get_ipython().run_cell_magic('px{self.suffix}', '', {text!r})\n"]


def _engine_ids(ar: AsyncResult) -> list[Any]:
    eids = ar.engine_id
    return list(eids) if isinstance(eids, (list, tuple)) else [eids]


def _stream(ar: AsyncResult, name: str, index: int) -> str:
    value = getattr(ar, name)
    if isinstance(value, list):
        return value[index] or ""
    return value or ""


class _Progress:
    """A one-line text progress bar (tqdm-free, for terminals and notebooks alike)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.last = -1

    def update(self, done: int, finished: bool = False) -> None:
        if done == self.last and not finished:
            return
        self.last = done
        width = 30
        filled = int(width * done / self.total) if self.total else width
        end = "\n" if finished else ""
        print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} engines done", end=end, flush=True)
