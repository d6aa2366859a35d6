"""The data_message content: what publish_data sends and the client merges (pure)."""

from __future__ import annotations

import pytest

from ipcluster.protocol.datapub import MSG_TYPE, decode_data, encode_data
from ipcluster.protocol.messages import MSG_TYPES


def test_roundtrip_keeps_values_and_is_json_text() -> None:
    np = pytest.importorskip("numpy")
    content = encode_data({"i": 3, "arr": np.arange(5000), "f": lambda x: x + 1})
    assert isinstance(content["data"], str)
    back = decode_data(content)
    assert back["i"] == 3 and (back["arr"] == np.arange(5000)).all() and back["f"](1) == 2


def test_only_dicts_are_published() -> None:
    with pytest.raises(TypeError, match="dict"):
        encode_data([1, 2])  # type: ignore[arg-type]


def test_the_message_type_is_declared() -> None:
    assert MSG_TYPE == "data_message" and MSG_TYPE in MSG_TYPES


def test_publish_data_outside_an_engine_says_where_it_works() -> None:
    from ipcluster.datapub import publish_data

    with pytest.raises(RuntimeError, match="engine"):
        publish_data({"a": 1})
