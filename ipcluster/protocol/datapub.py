"""The ``data_message`` IOPub message: data an engine publishes while a task runs.

``ipcluster.datapub.publish_data({"i": 3})`` on an engine sends one; the client merges each one's
dict into the task's ``data`` (``ar.data``), so a long task can report progress or partial
results that the client reads before the task returns.

The dict travels pickled (by value for what lives in ``__main__``) and base64-encoded inside the
JSON content, because IOPub messages carry no buffers today. That costs a third more bytes than
the pickle, which is fine for progress reports; publishing large arrays many times a second is
better done by returning them.
"""

from __future__ import annotations

import base64
import io
import pickle
from typing import Any

from .codepickle import pickler_class
from .serialize import PICKLE_PROTOCOL

#: the IOPub msg_type (ipyparallel's name)
MSG_TYPE = "data_message"


def encode_data(data: dict[str, Any]) -> dict[str, Any]:
    """The content of a ``data_message`` carrying ``data`` (a dict: think of it as a namespace)."""
    if not isinstance(data, dict):
        raise TypeError(f"publish_data needs a dict, not {type(data).__name__}")
    out = io.BytesIO()
    # in-band (no out-of-band buffers: there is no frame to put them in); cloudpickle for what
    # lives in __main__, as for a task's result
    pickler_class()(out, protocol=PICKLE_PROTOCOL).dump(dict(data))
    return {"data": base64.b64encode(out.getbuffer()).decode("ascii")}


def decode_data(content: dict[str, Any]) -> dict[str, Any]:
    """The dict a ``data_message`` carries."""
    value = pickle.loads(base64.b64decode(content["data"]))
    if not isinstance(value, dict):
        raise TypeError(f"data_message carried {type(value).__name__}, not a dict")
    return value
