"""The protocol as a checked contract: each request type has exactly one handler where it
arrives, and each handler takes the typed content (protocol.messages) of its message."""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from ipcluster.controller.queries import Queries
from ipcluster.controller.router import Router
from ipcluster.engine.kernel import Kernel
from ipcluster.protocol import messages
from ipcluster.protocol.messages import MSG_TYPES

REQUESTS = sorted(t for t in MSG_TYPES if t.endswith("_request"))

# what the controller does with each message type it receives: one fate per type
CONTROLLER: dict[str, Mapping[str, Any]] = {
    "answered by the controller (Queries.TABLE)": Queries.TABLE,
    "answered by the controller when a wait is over (Queries.LATER)": Queries.LATER,
    "routed to an engine (messages.ENGINE_REQUESTS)": dict.fromkeys(messages.ENGINE_REQUESTS),
    "sent by engines to the controller (Router.ENGINE_MESSAGES)": Router.ENGINE_MESSAGES,
}
TYPED_TABLES: dict[str, Mapping[str, Callable[..., Any]]] = {
    "Queries.TABLE": Queries.TABLE,
    "Queries.LATER": Queries.LATER,
    "Router.ENGINE_MESSAGES": Router.ENGINE_MESSAGES,
    "Kernel.CONTROL": Kernel.CONTROL,
}


@pytest.mark.parametrize("msg_type", REQUESTS)
def test_every_request_has_exactly_one_handler_in_the_controller(msg_type: str) -> None:
    owners = [name for name, table in CONTROLLER.items() if msg_type in table]
    assert len(owners) == 1, f"{msg_type} is handled by {owners or 'nothing'}"


def test_engines_run_exactly_the_requests_the_controller_routes_to_them() -> None:
    assert set(Kernel.TASKS) == messages.ENGINE_REQUESTS


def test_handlers_handle_only_known_message_types() -> None:
    tables = {**TYPED_TABLES, "Kernel.TASKS": Kernel.TASKS}
    unknown = {name: sorted(set(table) - set(MSG_TYPES)) for name, table in tables.items()}
    assert not any(unknown.values()), unknown


@pytest.mark.parametrize("table,msg_type", [(n, t) for n, tab in TYPED_TABLES.items() for t in tab])
def test_each_handler_takes_the_typed_content_of_its_message(table: str, msg_type: str) -> None:
    handler = TYPED_TABLES[table][msg_type]
    hints = typing.get_type_hints(handler)
    typed = [h for name, h in hints.items() if name != "return" and typing.is_typeddict(h)]
    assert typed == [MSG_TYPES[msg_type]], f"{table}[{msg_type!r}] takes {typed}, not {MSG_TYPES[msg_type]}"


def test_every_reply_type_has_its_own_shape() -> None:
    """A reply type may not borrow another's TypedDict by mistake (purge_reply once had AbortReply's)."""
    for name, shape in MSG_TYPES.items():
        if name.endswith("_reply"):
            expected = "".join(part.capitalize() for part in name.split("_"))
            assert shape.__name__ == expected, f"{name} maps to {shape.__name__}"
