"""Replay refusal: a date window and the msg_ids seen within it (pure)."""

from __future__ import annotations

from ipcluster.controller.replay import ReplayGuard


class Clock:
    def __init__(self, t: float = 1e9) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_old_future_undated_and_repeated_requests_are_refused() -> None:
    clock = Clock()
    g = ReplayGuard(window=60, skew=15, clock=clock)
    assert g.check({"msg_id": "a", "date": clock.t - 59}) is None
    assert "already used" in (g.check({"msg_id": "a", "date": clock.t - 59}) or "")
    assert "replay_window" in (g.check({"msg_id": "b", "date": clock.t - 61}) or "")
    assert "clock_skew" in (g.check({"msg_id": "c", "date": clock.t + 16}) or "")
    assert "numeric date" in (g.check({"msg_id": "d"}) or "")
    assert "numeric date" in (g.check({"msg_id": "e", "date": "2024-01-01"}) or "")


def test_ids_are_remembered_as_long_as_their_date_is_accepted_and_then_forgotten() -> None:
    clock = Clock()
    g = ReplayGuard(window=60, skew=15, clock=clock)
    ahead = {"msg_id": "ahead", "date": clock.t + 15}  # the latest date accepted
    assert g.check(ahead) is None
    for step in range(1, 200):  # until its date leaves the window, it is remembered
        clock.t += 1
        why = g.check(ahead)
        assert why is not None
        if "replay_window" in why:
            break
    assert clock.t > ahead["date"] + 60
    for i in range(1000):  # memory stays bounded by the window
        clock.t += 1
        g.check({"msg_id": f"m{i}", "date": clock.t})
    assert len(g) <= 2 * (60 + 15) + 1


def test_a_zero_window_turns_it_off() -> None:
    g = ReplayGuard(window=0)
    assert g.check({"msg_id": "a"}) is None and g.check({"msg_id": "a"}) is None
