"""Signing, packing and unpacking of messages."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from ipcluster.error import ProtocolError, SerializationError
from ipcluster.protocol import connection
from ipcluster.protocol.serialize import (
    deserialize_result,
    pack_apply,
    serialize_object,
    serialize_result,
    unpack_apply,
)
from ipcluster.protocol.session import DELIM, Session


def test_round_trip_with_idents_and_buffers() -> None:
    s = Session(b"k")
    header, frames = s.serialize("apply_request", {"a": 1}, {"msg_id": "p"}, {"m": 2}, [b"buf"], idents=[b"id1", b"id2"])
    idents, msg = s.unpack(frames)
    assert idents == [b"id1", b"id2"]
    assert msg["header"] == header and msg["msg_type"] == "apply_request"
    assert msg["content"] == {"a": 1} and msg["parent_header"] == {"msg_id": "p"} and msg["metadata"] == {"m": 2}
    assert msg["buffers"] == [b"buf"]


def test_msg_ids_are_unique_and_cheap() -> None:
    s = Session(b"k")
    ids = {s.new_msg_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(i.startswith(s.session_id) for i in ids)


@pytest.mark.parametrize("tamper", [b'"a"', b'"msg_type"', b"small-buffer"])
def test_tampered_or_foreign_messages_are_rejected(tamper: bytes) -> None:
    s = Session(b"k")
    _, frames = s.serialize("x", {"a": 1}, buffers=[b"small-buffer"], idents=[b"i"])
    assert tamper in frames[2]
    frames[2] = frames[2].replace(tamper, tamper.upper())
    with pytest.raises(ProtocolError, match="signature"):
        s.unpack(frames)
    _, frames = Session(b"other").serialize("x", {})
    with pytest.raises(ProtocolError, match="signature"):
        s.unpack(frames)


def test_malformed_messages_raise_protocol_error() -> None:
    s = Session(b"k")
    with pytest.raises(ProtocolError, match="delimiter"):
        s.unpack([b"a", b"b"])
    with pytest.raises(ProtocolError, match="no packet"):
        s.unpack([b"id", DELIM])
    with pytest.raises(ProtocolError, match="too short"):
        s.unpack([DELIM, b"sig"])
    unsigned = Session(b"")
    _, frames = unsigned.serialize("x", {"a": 1})
    with pytest.raises(ProtocolError, match="JSON"):
        unsigned.unpack([DELIM, frames[1].replace(b'{"a":1}', b'{"a":1!')])
    with pytest.raises(ProtocolError, match="shorter than its table"):
        unsigned.unpack([DELIM, frames[1][:-3]])
    _, frames = s.serialize("x", buffers=[b"x" * 100_000])
    with pytest.raises(ProtocolError, match="lacks a buffer frame"):
        s.unpack(frames[:-1])
    with pytest.raises(ProtocolError, match="signed table says 100000"):
        s.unpack([*frames[:-1], b"y" * 99_999])


def test_small_buffers_ride_inside_the_packet_and_large_ones_alone() -> None:
    s = Session(b"k")
    big = bytearray(b"b" * 100_000)
    _, frames = s.serialize("x", buffers=[b"one", memoryview(big), b"two"])
    assert len(frames) == 3 and frames[2] is not None  # DELIM, packet, the big buffer
    _, msg = s.unpack(frames)
    assert [bytes(b) for b in msg["buffers"]] == [b"one", bytes(big), b"two"]


def test_arrays_travel_out_of_band_and_come_back_writable() -> None:
    a = np.arange(100_000, dtype="f8")
    frames = serialize_result({"a": a, "small": np.arange(3)})
    assert len(frames) == 2 and frames[1].nbytes == a.nbytes  # one out-of-band buffer: the big array
    assert np.shares_memory(np.frombuffer(frames[1], dtype="f8"), a)  # no copy on the way out
    back = deserialize_result(frames)
    assert (back["a"] == a).all() and back["a"].flags.writeable


def test_interactive_functions_go_by_value() -> None:
    y = 10
    f, args, kwargs = unpack_apply(pack_apply(lambda x, z=0: x + y + z, (1,), {"z": 5}))
    assert f(*args, **kwargs) == 16


def test_unpicklable_argument_names_the_object() -> None:
    gen = (i for i in range(3))
    with pytest.raises(SerializationError, match="generator object"):
        pack_apply(len, (gen,), {})
    with pytest.raises(TypeError, match="callable"):
        pack_apply(5, (), {})


def test_main_module_references_fall_back_to_cloudpickle() -> None:
    import types

    mod = types.ModuleType("__main__")
    exec("class Point:\n    def __init__(self, x): self.x = x\n", mod.__dict__)
    Point = mod.__dict__["Point"]
    Point.__module__ = "__main__"
    frames = serialize_object(Point(3))
    assert b"__main__" in frames[0]  # stored by value (cloudpickle records the module name only)
    assert deserialize_result(frames).x == 3


def test_connection_files_are_private(tmp_path) -> None:
    path = connection.find_connection_file("client", cluster_id="abc", profile_path=tmp_path / "p")
    assert path.name == "ipcontroller-abc-client.json"
    connection.write_private_json(path, {"key": "k", "interface": "tcp://127.0.0.1", "client_port": 1, "iopub_port": 2})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert connection.read_connection_file(path)["client_port"] == 1
    with pytest.raises(Exception, match="lacks engine_port"):
        connection.read_connection_file(path, "engine")
    with pytest.raises(Exception, match="does not exist"):
        connection.read_connection_file(tmp_path / "missing.json")


def test_connection_files_others_can_read_or_without_a_key_are_refused(tmp_path) -> None:
    from ipcluster.error import ConnectionFileError

    info = {"key": "k", "interface": "tcp://127.0.0.1", "client_port": 1, "iopub_port": 2}
    path = connection.write_private_json(tmp_path / "c.json", info)
    for mode, what in ((0o644, "readable"), (0o640, "readable"), (0o620, "writable")):
        os.chmod(path, mode)
        with pytest.raises(ConnectionFileError, match=f"{what} by others.*chmod 600 {path}"):
            connection.read_connection_file(path)
    os.chmod(path, 0o400)
    assert connection.read_connection_file(path)["key"] == "k"
    for key, what in (("", "an empty key"), (None, "no key")):
        bad = {**info, "key": key} if key is not None else {k: v for k, v in info.items() if k != "key"}
        path = connection.write_private_json(tmp_path / "nokey.json", bad)
        with pytest.raises(ConnectionFileError, match=f"{path} has {what}"):
            connection.read_connection_file(path)


def test_url_prefers_the_controllers_unix_socket_on_this_host(tmp_path) -> None:
    import socket as socketlib

    info = {"interface": "tcp://127.0.0.1", "client_port": 5000, "iopub_port": 5001,
            "ipc": {"client_port": str(tmp_path / "client"), "iopub_port": str(tmp_path / "missing")}}
    assert connection.url(info, "client_port") == "tcp://127.0.0.1:5000"  # no socket file yet
    (tmp_path / "client").write_text("")
    assert connection.url(info, "client_port") == "tcp://127.0.0.1:5000"  # a file, not a socket
    (tmp_path / "client").unlink()
    with socketlib.socket(socketlib.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "client"))
        assert connection.url(info, "client_port") == f"ipc://{tmp_path / 'client'}"
    assert connection.url(info, "iopub_port") == "tcp://127.0.0.1:5001"  # elsewhere: TCP
    assert connection.url({"interface": "tcp://h", "iopub_port": 1}, "iopub_port") == "tcp://h:1"


@pytest.mark.parametrize("key_len", [1, 32, 64, 65, 200])
def test_signatures_are_standard_hmac_sha256(key_len: int) -> None:
    """Any HMAC-SHA256 implementation can check our signatures (keys over 64 bytes included)."""
    import hmac

    key = os.urandom(key_len)
    s = Session(key)
    for body in (b"", b"x", os.urandom(700), memoryview(os.urandom(70_000))):
        assert s.sign(body) == hmac.digest(key, body, "sha256")
        assert s.verify(hmac.digest(key, body, "sha256"), body)
        assert not s.verify(bytes(32), body)


def test_a_message_whose_buffers_travel_apart_says_so() -> None:
    """With ``"data": n`` in its signed header, a message missing its n buffer frames raises
    DataMissing (with their size, from the signed table); joined with them, it unpacks whole."""
    from ipcluster.protocol.session import DataMissing, external

    s = Session(b"key")
    big = os.urandom(200_000)
    bufs = [b"small", big]
    assert external(bufs) == [big]
    header = s.msg_header("apply_request")
    header["data"] = 1
    _, frames = s.serialize("apply_request", {}, buffers=bufs, header=header, idents=[b"client"])
    with pytest.raises(DataMissing) as info:
        s.unpack(frames[:3])
    assert info.value.size == len(big) and info.value.header["msg_id"] == header["msg_id"]
    _, msg = s.unpack([*frames[:3], big])
    assert bytes(msg["buffers"][1]) == big
    with pytest.raises(ProtocolError, match="signed table says"):
        s.unpack([*frames[:3], big[:-1]])
    _, plain = s.serialize("apply_request", {}, buffers=bufs)  # no flag: a cut message is malformed
    with pytest.raises(ProtocolError, match="lacks a buffer frame") as info2:
        s.unpack(plain[:2])
    assert not isinstance(info2.value, DataMissing)
