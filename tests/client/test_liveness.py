"""Pure tests of the client's watch on the controller (no processes, no sockets)."""

from __future__ import annotations

import time

import pytest
from traitlets import TraitError

from ipcluster.client.liveness import Liveness, LivenessOptions
from ipcluster.error import ControllerError


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


def test_a_silent_controller_fails_what_waits_then_new_requests_go_through(make_client, fake) -> None:
    rc = make_client(controller_hb_period=0.05, controller_hb_misses=2)
    fake.hold = True  # the task never finishes
    fake.mute_pings = True
    ar = rc[0].apply_async(lambda: 1)
    with pytest.raises(ControllerError, match=r"has not answered for [\d.]+ s \(\d heartbeats\): it is hung"):
        ar.get()  # no timeout of its own
    with pytest.raises(ControllerError, match="hung or unreachable"):
        rc[0].apply_async(lambda: 2)  # refused while the controller is silent
    fake.hold = False
    fake.mute_pings = False  # it answers again: new requests go through
    deadline = time.monotonic() + 5
    while True:
        try:
            assert rc[1].apply_sync(lambda: 3) == 3
            break
        except ControllerError:
            assert time.monotonic() < deadline, "the client did not recover"
            time.sleep(0.05)  # the poll's interval: the next ping's answer ends it


def test_a_busy_client_with_an_answering_controller_stays_connected(make_client, fake) -> None:
    rc = make_client(controller_hb_period=0.1, controller_hb_misses=3)
    fake.hold = True
    ar = rc[0].apply_async(lambda: 1)
    fake.wait_received(ar)
    assert not ar.wait(0.6)  # six periods, twice the bound: the pings are answered, nothing failed
    fake.hold = False


def test_tasks_waiting_without_engines_are_logged_once(make_client, fake, caplog) -> None:
    rc = make_client(controller_hb_period=0.05)
    rc._io.engines.clear()  # as the client sees it, no engine is registered (the fake holds the task)
    fake.hold = True
    with caplog.at_level("WARNING", logger="ipcluster.client.liveness"):
        ar = rc.load_balanced_view().apply_async(lambda: 1)  # no warning per task
        fake.wait_received(ar)
        assert not ar.wait(0.5)
    said = [r.getMessage() for r in caplog.records if "no engines are registered" in r.getMessage()]
    assert len(said) == 1 and "engine_timeout" in said[0]


def test_no_controller_at_all_is_still_the_connection_timeout(tmp_path, fake) -> None:
    import socket

    import ipcluster as ipp
    from ipcluster import error
    from ipcluster.protocol.connection import write_private_json

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    path = write_private_json(tmp_path / "stale.json", {**fake.info, "client_port": port})
    with pytest.raises(error.TimeoutError, match="is the cluster running"):  # not "hung": it never answered
        ipp.Client(str(path), timeout=0.6, controller_hb_period=0.05, controller_hb_misses=2)
