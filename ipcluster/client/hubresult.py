"""Results of tasks that already exist: looked up by msg_id, split from or joined out of others."""

from __future__ import annotations

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
