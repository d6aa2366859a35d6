"""ipyparallel's ``ipyparallel.serialize`` names, for code that imports them.

``from ipcluster.serialize import serialize_object, deserialize_object, can, uncan`` behaves as
ipyparallel documents: an object as ``[pickle, *data_buffers]`` and back, and canning of what
plain ``pickle`` cannot store (see :mod:`.canning` and :mod:`.serialize`). ipcluster's own
messages do not go through this module; they use :mod:`ipcluster.protocol.serialize`.

Importing this package imports no process role (client, engine, controller) and not numpy.
"""

from __future__ import annotations

from typing import Any

from . import canning
from .canning import (
    CannedArray,
    CannedBuffer,
    CannedBytes,
    CannedClass,
    CannedFunction,
    CannedMemoryView,
    CannedObject,
    CannedPartial,
    can,
    can_map,
    istype,
    uncan,
    uncan_map,
)
from ..protocol.serialize import PrePickled, use_cloudpickle, use_dill
from .serialize import (
    PICKLE_PROTOCOL,
    deserialize_object,
    pack_apply_message,
    serialize_object,
    unpack_apply_message,
)

__all__ = [
    "PICKLE_PROTOCOL",
    "PrePickled",
    "CannedArray",
    "CannedBuffer",
    "CannedBytes",
    "CannedClass",
    "CannedFunction",
    "CannedMemoryView",
    "CannedObject",
    "CannedPartial",
    "Reference",
    "can",
    "can_map",
    "canning",
    "deserialize_object",
    "istype",
    "pack_apply_message",
    "serialize_object",
    "uncan",
    "uncan_map",
    "unpack_apply_message",
    "use_cloudpickle",
    "use_dill",
    "use_pickle",
]

#: ipyparallel's name for "back to the default" (here: plain pickle, cloudpickle where needed)
use_pickle = use_cloudpickle


def __getattr__(name: str) -> Any:
    # Reference is ipcluster's own (an argument standing for an engine variable); resolved
    # lazily so that importing this package stays free of the client
    if name == "Reference":
        import ipcluster

        return ipcluster.Reference
    raise AttributeError(f"module 'ipcluster.serialize' has no attribute {name!r}")
