"""Refusing replayed requests (state only, no sockets).

A signed message stays valid for the lifetime of the key, so someone who captured one (an
``apply_request``, a ``shutdown_request``) could send it again. The controller refuses a request

- dated (``header["date"]``, the sender's clock) more than ``window`` seconds in the past, or
  more than ``skew`` seconds in the future, by the controller's clock; or
- whose ``msg_id`` it has seen within the window.

The ids are kept in two sets, swapped every ``window + skew`` seconds: an id stays remembered
at least that long after it arrived, longer than a message dated within the window (or up to
``skew`` ahead) can be accepted, so memory is bounded by twice ``window + skew`` times the request
rate, at about 100 bytes an id (at a sustained 1,000 requests/s and the defaults, ~15 MB). The
per-message cost is a clock read, two comparisons and two set operations.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class ReplayGuard:
    """Say why a request header is a replay, or None.

    Parameters
    ----------
    window:
        Seconds a request may be old (by its ``date``) when it arrives; 0 turns the check off.
    skew:
        Seconds a request may be dated ahead of this clock (clocks of other hosts differ).
    """

    __slots__ = ("window", "skew", "_clock", "_current", "_previous", "_swap_at")

    def __init__(self, window: float = 60.0, skew: float = 15.0, clock: Callable[[], float] = time.time) -> None:
        self.window = window
        self.skew = skew
        self._clock = clock
        self._current: set[str] = set()
        self._previous: set[str] = set()
        self._swap_at = clock() + window + skew

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def check(self, header: dict[str, Any]) -> str | None:
        """Record the request's msg_id and return None, or return why it is refused."""
        if not self.window:
            return None
        now = self._clock()
        if now >= self._swap_at:
            self._previous, self._current = self._current, set()
            self._swap_at = now + self.window + self.skew
        date = header.get("date")
        if type(date) is not float and type(date) is not int:
            return "its header has no numeric date (seconds since the epoch)"
        age = now - date
        if age > self.window:
            return (f"it is dated {age:.0f} s ago, more than ControllerApp.replay_window ({self.window:g} s): "
                    "a replay, a sender's clock that is wrong, or a controller that fell that far behind")
        if -age > self.skew:
            return (f"it is dated {-age:.0f} s ahead of the controller's clock, more than "
                    f"ControllerApp.clock_skew ({self.skew:g} s): set the sender's clock right (NTP)")
        msg_id = header["msg_id"]
        if msg_id in self._current or msg_id in self._previous:
            return f"msg_id {msg_id!r} was already used (a replay, or a client bug)"
        self._current.add(msg_id)
        return None
