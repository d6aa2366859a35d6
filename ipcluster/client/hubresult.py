"""Results of tasks that already exist: looked up by msg_id, split from or joined out of others."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence

from .asyncresult import AsyncResult


class AsyncHubResult(AsyncResult):
    """Results looked up by msg_id (``Client.get_result``), including tasks submitted by other
    clients, which the controller reports as they finish.

    Its tasks already exist, may have finished, and may be waited for by another result too,
    so it joins them on the I/O thread, which finishes them.
    """

    def _own(self) -> None:
        self._client.submitter.on_io_thread(self._adopt())

    async def _adopt(self) -> None:
        submitter = self._client.submitter
        self._remaining = sum(1 for t in self._tasks if submitter.attach(self, t))
        if self._remaining == 0:
            self._finish()


def split(result: AsyncResult) -> list[AsyncResult]:
    """:meth:`AsyncResult.split`: one single-task result per task of ``result``."""
    return [AsyncHubResult(result._client, [t], fname=result._fname, owner=False, single=True) for t in result._tasks]


def join(results: Sequence[AsyncResult]) -> AsyncResult:
    """:meth:`AsyncResult.join`: one result for the tasks of several of one client."""
    if not results:
        raise ValueError("AsyncResult.join needs at least one AsyncResult")
    client = results[0]._client
    if any(r._client is not client for r in results):
        raise ValueError("AsyncResult.join: the results belong to different clients")
    return AsyncHubResult(client, [t for r in results for t in r._tasks], fname="join", owner=False, single=False)


def wait_split(
    result: AsyncResult, timeout: float | None, return_when: str
) -> tuple[set[AsyncResult], set[AsyncResult]]:
    """``result.wait(timeout, return_when)``: :func:`concurrent.futures.wait` on its split results."""
    if return_when not in (concurrent.futures.FIRST_COMPLETED, concurrent.futures.FIRST_EXCEPTION,
                           concurrent.futures.ALL_COMPLETED):
        raise ValueError(f"return_when must be FIRST_COMPLETED, FIRST_EXCEPTION or ALL_COMPLETED, not {return_when!r}")
    parts = split(result)
    done, _ = concurrent.futures.wait(parts, timeout, return_when)
    return {r for r in parts if r in done}, {r for r in parts if r not in done}
