"""Counting and logging refused messages at a bounded rate.

Anyone who can reach a socket can send it garbage, thousands of messages a second. Every receive
path refuses such input without a traceback and reports it through a :class:`Rejects`: the first
:attr:`~Rejects.first` refusals are logged one line each, later ones only counted, and a summary
line with the count goes out at most once every :attr:`~Rejects.period` seconds while refusals
continue, and once after they stop (when the receiver runs an event loop). The log grows by a few
hundred bytes a minute however fast the flood is, and the counts stay available to tests and to
anyone who asks (``Rejects.total``).

This is the refusal path only: a message that verifies never touches it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any


class Rejects:
    """Refusals of one receiver (``who``: "the controller's client port"), by reason.

    Parameters
    ----------
    log:
        Where the lines go (WARNING).
    who:
        Names the receiving socket in each line.
    first:
        Refusals logged one line each before only summaries are.
    period:
        Seconds between two summary lines (at most one per period, only while refusals come).
    level:
        Of the lines: WARNING for refused input, ERROR for a handler of ours that failed.
    """

    __slots__ = ("log", "who", "first", "period", "total", "by_reason", "_unlogged", "_next_summary", "_clock", "level")

    def __init__(self, log: logging.Logger, who: str, *, first: int = 10, period: float = 60.0,
                 clock: Any = time.monotonic, level: int = logging.WARNING) -> None:
        self.level = level
        self.log = log
        self.who = who
        self.first = first
        self.period = period
        self.total = 0
        self.by_reason: dict[str, int] = {}
        self._unlogged = 0
        self._next_summary = 0.0
        self._clock = clock

    def refuse(self, reason: str, detail: str = "") -> None:
        """Count one refused message; log it if it is among the first, else summarise now and then.

        ``reason`` is a short fixed text (it keys the counts); ``detail`` may say more about this one
        message (shown only in the first lines, cut to 200 characters).
        """
        self.total += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if self.total <= self.first:
            self.log.log(self.level, "%s refused a message: %s%s%s", self.who, reason, ": " if detail else "", detail[:200])
            if self.total == self.first:
                self.log.log(self.level, "%s: further refused messages are counted, and summarised at most every %g s",
                                 self.who, self.period)
                self._next_summary = self._clock() + self.period
            return
        self._unlogged += 1
        now = self._clock()
        if now >= self._next_summary:
            self.summarise(now)
        elif self._unlogged == 1:  # the first since a summary: make sure one follows, even if the flood stops
            try:
                asyncio.get_running_loop().call_later(self._next_summary - now, self._due)
            except RuntimeError:  # no loop in this thread: the next refusal after the period summarises
                pass

    def _due(self) -> None:
        if self._unlogged and self._clock() >= self._next_summary:
            self.summarise()

    def summarise(self, now: float | None = None) -> None:
        """Log the refusals not yet logged (if any), with the totals by reason."""
        if self._unlogged:
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.by_reason.items(), key=lambda kv: -kv[1])[:5])
            self.log.log(self.level, "%s refused %d more message(s) (%d in all: %s)", self.who, self._unlogged,
                             self.total, reasons)
            self._unlogged = 0
        self._next_summary = (self._clock() if now is None else now) + self.period


_limited: dict[tuple[str, str], Rejects] = {}


def limited(log: logging.Logger, who: str, level: int = logging.WARNING) -> Rejects:
    """The one :class:`Rejects` of ``who`` logging to ``log`` (made on first use), for receive
    paths without an object of their own to hold one."""
    rejects = _limited.get((log.name, who))
    if rejects is None:
        rejects = _limited[log.name, who] = Rejects(log, who, level=level)
    return rejects
