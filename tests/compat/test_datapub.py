"""``publish_data`` on an engine, read as ``ar.data`` (ipyparallel's Data Publication API)."""

from __future__ import annotations

from typing import Any

from .target import NAME, sub


def publish_steps(modname: str, n: int) -> int:
    """Runs on an engine: publish ``n`` updates, then one more name."""
    import importlib

    publish_data = importlib.import_module(modname + ".datapub").publish_data
    for i in range(n):
        publish_data({"step": i, "squares": [j * j for j in range(i + 1)]})
    publish_data({"done": True})
    return n


def test_publish_data_is_importable() -> None:
    assert callable(sub("datapub").publish_data)


def test_ar_data_merges_each_publication(lview: Any) -> None:
    ar = lview.apply_async(publish_steps, NAME, 3)
    assert ar.get(timeout=20) == 3
    assert ar.data == {"step": 2, "squares": [0, 1, 4], "done": True}


def test_ar_data_per_engine_on_a_multi_engine_result(dview: Any) -> None:
    ar = dview.apply_async(publish_steps, NAME, 2)
    ar.get(timeout=20)
    assert ar.data == [{"step": 1, "squares": [0, 1], "done": True}] * 2


def test_ar_data_is_empty_without_publication(lview: Any) -> None:
    ar = lview.apply_async(abs, -1)
    ar.get(timeout=20)
    assert ar.data == {}
