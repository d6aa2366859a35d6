"""IPython's display machinery, pointed at IOPub.

IPython shows rich output through two objects on its shell: the *display publisher*
(``IPython.display.display(obj)``, ``clear_output``) and the *display hook* (the value of a
cell's last expression). The defaults print ``text/plain`` to stdout; these subclasses send the
full MIME bundle instead, as ``display_data``, ``clear_output`` and ``execute_result`` messages,
so a notebook shows an engine's HTML, images or LaTeX as it would its own. Bundles are made
JSON-safe first: image formatters return ``bytes``, which go out base64-encoded as in Jupyter.

This module imports IPython, so it is only imported with the shell (see :mod:`.shell`).
"""

from __future__ import annotations

import base64
from typing import Any

from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher


def jsonable_bundle(data: dict[str, Any]) -> dict[str, Any]:
    """A MIME bundle whose binary values are base64 text (what Jupyter clients expect)."""
    if not any(isinstance(v, (bytes, bytearray, memoryview)) for v in data.values()):
        return data
    return {
        k: base64.b64encode(v).decode("ascii") if isinstance(v, (bytes, bytearray, memoryview)) else v
        for k, v in data.items()
    }


class EngineDisplayPublisher(DisplayPublisher):
    """``display()`` and ``clear_output()`` send IOPub messages."""

    def publish(  # type: ignore[override]
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        source: str | None = None,
        *,
        transient: dict[str, Any] | None = None,
        update: bool = False,
        **kwargs: Any,
    ) -> None:
        self._validate_data(data, metadata)
        # an update of an existing display has no message type of its own in our protocol:
        # it is sent as a display_data carrying the same display_id
        content = {"data": jsonable_bundle(data), "metadata": metadata or {}, "transient": transient or {}}
        _iopub(self).publish("display_data", content)

    def clear_output(self, wait: bool = False) -> None:
        _iopub(self).publish("clear_output", {"wait": bool(wait)})


class EngineDisplayHook(DisplayHook):
    """The value of a cell's last expression goes out as ``execute_result``."""

    _bundle: dict[str, Any] | None = None

    def start_displayhook(self) -> None:
        self._bundle = {"data": {}, "metadata": {}, "execution_count": self.prompt_count}

    def write_output_prompt(self) -> None:
        pass  # there is no prompt: the count travels in the message

    def write_format_data(self, format_dict: dict[str, Any], md_dict: dict[str, Any] | None = None) -> None:
        if self._bundle is not None:
            self._bundle["data"] = jsonable_bundle(format_dict)
            self._bundle["metadata"] = md_dict or {}

    def finish_displayhook(self) -> None:
        bundle, self._bundle = self._bundle, None
        if bundle is not None and bundle["data"]:
            _iopub(self).publish("execute_result", bundle)


def _iopub(component: Any) -> Any:
    """The engine's IOPub, held by the shell that owns ``component``."""
    shell = component.shell
    if shell is None:
        raise RuntimeError("display machinery used without the engine's shell")
    return shell.iopub
