"""A Cluster's engines one at a time, or one engine set: signal, restart and stop them.

A mixin of :class:`~ipcluster.cluster.cluster.Cluster`: engines are named by the ids clients
know them by (the pid each registered with, which the controller tells every client, finds the
process; only a process this cluster started is touched), engine sets by their engine-set id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._aio import run_sync
from ..error import IPClusterError
from ..launchers import Launcher
from . import engine_ids

if TYPE_CHECKING:
    from ..client import Client
    from ..launchers.process import Process


class EngineControl:
    """Operations on single engines and engine sets (see :class:`~ipcluster.cluster.Cluster`)."""

    engines: dict[str, Launcher]
    _clients: list[Any]
    _unconfirmed: list[tuple[Launcher, "Process"]]

    if TYPE_CHECKING:
        async def connect_client(self, **kwargs: Any) -> Client: ...

        def _write_state(self) -> None: ...

    @property
    def engine_set(self) -> Launcher | None:
        """The first engine set's launcher (most clusters have one), or None before engines start."""
        return next(iter(self.engines.values()), None)

    async def signal_engines(self, signum: int, engine_set_id: str | None = None) -> None:
        """Send ``signum`` to every engine, or to those of one engine set.

        SIGINT interrupts the task an engine is running; SIGTERM makes it exit.
        """
        for set_id in self._engine_set_ids(engine_set_id):
            await self.engines[set_id].signal(signum)

    def _engine_set_ids(self, engine_set_id: str | None) -> list[str]:
        """The engine sets an operation on ``engine_set_id`` means (``None``: all of them)."""
        if engine_set_id is None:
            return list(self.engines)
        if engine_set_id not in self.engines:
            raise IPClusterError(f"no engine set {engine_set_id!r}; engine sets: {sorted(self.engines)}")
        return [engine_set_id]

    async def signal_engine(self, signum: int, engine_id: int) -> None:
        """Send ``signum`` to the engine with id ``engine_id`` (as the client numbers engines)."""
        launcher, index = await self._engine_process(engine_id)
        await launcher.signal(signum, index=index)

    async def stop_engine(self, engine_id: int) -> None:
        """Stop the engine ``engine_id`` (SIGTERM, then SIGKILL after ``stop_timeout``); with a
        launcher that runs one process per engine the others keep running. As in ipyparallel, a
        launcher whose one process holds the whole set (``mpiexec``) may stop the set."""
        launcher, index = await self._engine_process(engine_id)
        await launcher.stop_process(index)
        self._write_state()

    async def restart_engine(self, engine_id: int) -> None:
        """Stop the engine ``engine_id`` and start one replacement in the same engine set."""
        launcher, index = await self._engine_process(engine_id)
        await launcher.stop_process(index)
        await launcher.start(1)
        self._unconfirmed.append((launcher, launcher.processes[-1]))
        self._write_state()

    async def _engine_process(self, engine_id: int) -> tuple[Launcher, int]:
        """The launcher and index of the process behind engine ``engine_id``."""
        client = self._clients[0] if self._clients else await self.connect_client()
        return engine_ids.process_of(client, engine_id, self.engines.values())

    signal_engines_sync = run_sync(signal_engines)
    signal_engine_sync = run_sync(signal_engine)
    stop_engine_sync = run_sync(stop_engine)
    restart_engine_sync = run_sync(restart_engine)
