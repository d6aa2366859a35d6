"""``Client.become_dask`` / ``Client.stop_dask``: the engines as a dask.distributed cluster.

As in ipyparallel, the dask Scheduler runs in the controller process (a ``become_dask_request``;
see :mod:`ipcluster.controller.daskscheduler`) and each engine of ``targets`` runs a dask Worker
(an ``apply`` of :func:`ipcluster.protocol.daskworker.start_worker`), in the engine process itself
unless ``nanny=True``. The caller gets a ``distributed.Client`` connected to the scheduler.

:class:`DaskBridge` is composed into the :class:`~ipcluster.client.client.Client`, whose methods
of the same names delegate to it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..protocol.daskworker import require_distributed, start_worker, stop_worker
from ._io import ClientIO

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger(__name__)

#: seconds at least to wait for the scheduler or a worker to start or stop (importing
#: distributed alone can take a few seconds on a busy host)
MIN_TIMEOUT = 30.0


class DaskBridge:
    """Starts and stops the dask cluster of one client's engines."""

    def __init__(self, client: "Client", io: ClientIO) -> None:
        self.client = client
        self._io = io
        self._dask_clients: list[Any] = []  # the distributed.Clients become_dask returned

    @property
    def timeout(self) -> float:
        return max(float(self.client.timeout), MIN_TIMEOUT)

    def _query(self, msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
        msg = self._io.run(self._io.query(msg_type, content, self.timeout), self.timeout + 5)
        return msg["content"]  # type: ignore[no-any-return]

    def become(self, targets: Any, port: int, nanny: bool, scheduler_args: dict[str, Any] | None,
               worker_args: dict[str, Any]) -> Any:
        """Turn the engines into a dask.distributed cluster; return a ``distributed.Client`` of it.

        The Scheduler runs in the controller process, on ``port`` (0: any free one) of the
        controller's interface; ``scheduler_args`` are passed to ``distributed.Scheduler``. Each
        engine of ``targets`` runs a Worker (``nthreads=1`` unless ``worker_args``, passed to
        ``distributed.Worker``, say otherwise), in the engine process, or as a child process of a
        dask Nanny with ``nanny=True``. Needs dask.distributed in the client, the controller and
        the engines (the ImportError says where it is missing). Undo with ``Client.stop_dask``.
        """
        distributed = require_distributed("this client")
        view = self.client.direct_view(targets)
        view.block = True
        address = self._query("become_dask_request", {"port": int(port), "scheduler_args": dict(scheduler_args or {})})["address"]
        args = dict(worker_args)
        args.setdefault("nthreads", 1)  # one task at a time per engine, as an engine runs them
        try:
            view.apply_sync(start_worker, address, nanny=bool(nanny), timeout=self.timeout, **args)
            dask_client = distributed.Client(address, timeout=self.timeout)
        except BaseException:
            self._undo(view)
            raise
        self._dask_clients.append(dask_client)
        log.info("dask scheduler at %s with workers on engines %s", address, view.targets)
        return dask_client

    def _undo(self, view: Any) -> None:
        """After a failed start: stop what did start (the scheduler, the workers that came up)."""
        try:
            view.apply_sync(stop_worker, self.timeout)
        except Exception as e:  # the engines that failed to start one say so in the error raised
            log.debug("stopping dask workers after a failed become_dask: %s", e)
        try:
            self._query("stop_dask_request", {})
        except Exception as e:
            log.warning("could not stop the dask scheduler after a failed become_dask: %s", e)

    def stop(self, targets: Any) -> None:
        clients, self._dask_clients = self._dask_clients, []
        for dask_client in clients:  # connected to a scheduler about to go
            dask_client.close(timeout=self.timeout)
        view = self.client.direct_view(targets)
        view.block = True
        view.apply_sync(stop_worker, self.timeout)
        self._query("stop_dask_request", {})
