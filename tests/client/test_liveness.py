"""Pure tests of the client's watch on the controller (no processes, no sockets)."""

from __future__ import annotations

import pytest
from traitlets import TraitError

from ipcluster.client.liveness import Liveness, LivenessOptions


def test_silence_is_judged_from_the_oldest_unanswered_ping() -> None:
    live = Liveness(period=1.0, misses=3)
    assert live.silence(100.0) is None  # nothing sent
    for t in (0.0, 1.0, 2.0):
        live.sent(t)
    assert live.silence(3.0) is None  # three unanswered, but not yet 3 s old
    assert live.silence(3.5) == "has not answered for 3.5 s (3 heartbeats)"
    live.answered()
    assert live.silence(10.0) is None
    live.sent(10.0)
    assert live.silence(20.0) is None  # one ping, however old, is not `misses` of them


def test_an_idle_client_forgets_unanswered_pings() -> None:
    live = Liveness(period=1.0, misses=1)
    live.sent(0.0)
    live.idle()  # nothing waits: a late answer no longer matters, and a new wait starts afresh
    live.sent(50.0)
    assert live.silence(50.5) is None


def test_options_refuse_negative_values() -> None:
    opts = LivenessOptions()
    assert (opts.controller_hb_period, opts.controller_hb_misses) == (1.0, 5)
    with pytest.raises(TraitError, match="controller_hb_misses"):
        opts.controller_hb_misses = -1
