"""``view.use_dill()`` / ``use_pickle()`` with real engines: the client and the view's engines
switch together, what only dill pickles travels both ways, and a missing dill is named."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import ipcluster as ipp
from ipcluster import error
from ipcluster.protocol import serialize

pytest.importorskip("dill")


@pytest.fixture
def dview(rc: ipp.Client) -> Iterator[Any]:
    view = rc[:]
    view.block = True
    try:
        yield view
    finally:
        view.use_pickle()


def engine_serializer() -> str:
    from ipcluster.protocol import serialize

    return serialize.serializer()


def hide_dill() -> None:
    import sys

    sys.modules["dill"] = None  # type: ignore[assignment]  # `import dill` now fails


def unhide_dill() -> None:
    import sys

    if sys.modules.get("dill", 0) is None:
        del sys.modules["dill"]


def test_use_dill_switches_the_client_and_the_views_engines_and_use_pickle_back(dview: Any) -> None:
    assert dview.use_dill() == [None, None]
    assert serialize.serializer() == "dill" and dview.apply_sync(engine_serializer) == ["dill", "dill"]
    lock = threading.Lock()

    def locked_double(x: int) -> int:  # cloudpickle refuses the lock it closes over
        with lock:
            return 2 * x

    assert dview.map_sync(locked_double, range(6)) == [0, 2, 4, 6, 8, 10]  # map ships it once, pickled

    @ipp.interactive
    def read_a() -> Any:
        return a  # type: ignore[name-defined]  # noqa: F821 (the engines' namespace)

    dview["a"] = 5
    assert dview.apply_sync(read_a) == [5, 5]  # still runs in the engines' namespace
    assert dview.use_pickle() == [None, None]
    assert serialize.serializer() == "cloudpickle" and dview.apply_sync(engine_serializer) == ["cloudpickle"] * 2
    with pytest.raises(error.SerializationError, match="_thread.lock"):
        dview.apply_sync(locked_double, 1)


def test_an_engine_without_dill_says_so(rc: ipp.Client, dview: Any) -> None:
    rc[0].apply_sync(hide_dill)
    try:
        with pytest.raises(error.CompositeError) as info:
            dview.use_dill()
        [err] = info.value.elist
        assert err.ename == "ImportError" and "pip install dill" in err.evalue and err.engine_info["engine_id"] == 0
        assert rc[1].apply_sync(engine_serializer) == "dill"  # the other engine switched
    finally:
        rc[0].apply_sync(unhide_dill)


def test_a_client_without_dill_says_so_before_sending(dview: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dill", None)
    sent = len(dview.client.history)
    with pytest.raises(ImportError, match="pip install dill"):
        dview.use_dill()
    assert len(dview.client.history) == sent and serialize.serializer() == "cloudpickle"
