"""Launch processes on this machine."""

from __future__ import annotations

from collections.abc import Sequence

from ..error import LauncherError
from .base import Launcher
from .process import Process


class LocalLauncher(Launcher):
    """Run ``n`` copies of :attr:`argv` as local processes.

    Each process starts in its own session (a Ctrl-C in the terminal does not reach it), with
    stdin from ``/dev/null`` and stdout and stderr in ``<log_dir>/<name>-<i>.log``. They are
    spawned back to back with ``posix_spawn`` (about a millisecond each) and run in parallel;
    nothing waits for one to be ready before starting the next.
    """

    async def start(self, n: int = 1, extra_args: Sequence[str] = ()) -> None:
        """Start ``n`` processes running :attr:`argv`, plus ``extra_args`` for these ones only
        (a restarted engine's ``--id``)."""
        if not self.argv:
            raise LauncherError(f"{self.name}: no command to launch (argv is empty)")
        if n < 1:
            raise LauncherError(f"{self.name}: asked to start {n} processes")
        self._stopping = False
        env = self.child_env()
        started = []
        for _ in range(n):
            try:
                proc = Process.spawn([*self.argv, *extra_args], env, self.next_log_file())
            except OSError as e:
                raise LauncherError(f"{self.name}: could not run {self.argv[0]!r}: {e}") from e
            self._add_process(proc)
            started.append(proc.pid)
        self.log.info("%s: started %d process(es), pid(s) %s", self.name, n, started)
