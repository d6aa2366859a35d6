"""bind_kernel() on a real engine, attached to by a real jupyter_client BlockingKernelClient."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipcluster.engine.bind import bind_kernel, connection_file

jupyter_client = pytest.importorskip("jupyter_client")


def info_from_connect_info(text: str) -> dict[str, Any]:
    """The JSON block %connect_info prints."""
    return json.loads(text[text.index("{") : text.index("}") + 1])


@pytest.fixture(scope="module")
def bound(cluster: Any) -> Iterator[tuple[Any, Any]]:
    """Engine 0 bound to a kernel, and a kernel client attached to it."""
    _, rc = cluster
    rc.wait_for_engines(2, timeout=20)
    view = rc[0]
    view.block = True
    view.apply_sync(bind_kernel)
    out = view.execute("%connect_info").stdout
    kc = jupyter_client.BlockingKernelClient()
    kc.load_connection_info(info_from_connect_info(out))
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=20)
        yield view, kc
    finally:
        kc.stop_channels()


def run(kc: Any, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    msgs: list[dict[str, Any]] = []
    reply = kc.execute_interactive(code, timeout=20, output_hook=msgs.append)
    return reply, msgs


def test_kernel_client_sees_and_sets_the_engine_namespace(bound: tuple[Any, Any]) -> None:
    view, kc = bound
    view["from_view"] = 21
    reply, msgs = run(kc, "doubled = from_view * 2\nprint('printed', doubled)")
    assert reply["content"]["status"] == "ok"
    assert view["doubled"] == 42
    streams = [m["content"]["text"] for m in msgs if m["msg_type"] == "stream"]
    assert "printed 42\n" in streams


def test_results_and_errors_reach_the_frontend(bound: tuple[Any, Any]) -> None:
    _, kc = bound
    reply, msgs = run(kc, "6 * 7")
    results = [m["content"]["data"]["text/plain"] for m in msgs if m["msg_type"] == "execute_result"]
    assert results == ["42"]
    reply, _ = run(kc, "1 / 0")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "ZeroDivisionError"


def test_engine_output_is_still_the_engines_after_a_frontend_cell(bound: tuple[Any, Any]) -> None:
    view, kc = bound
    run(kc, "print('to the frontend')")
    assert view.execute("print('to the client')").stdout == "to the client\n"
    assert view.apply_sync(lambda: 5) == 5


def main_is_the_namespace() -> bool:
    import sys

    return sys.modules["__main__"].__dict__ is globals()


main_is_the_namespace.__module__ = "__main__"  # run in the engine's namespace (interactive)


def test_main_module_is_still_the_engine_namespace(bound: tuple[Any, Any]) -> None:
    view, kc = bound
    run(kc, "frontend_var = 1")
    assert view.apply_sync(main_is_the_namespace) is True


def test_connection_file_is_in_the_profile_security_folder(bound: tuple[Any, Any], cluster: Any) -> None:
    view, _ = bound
    path = Path(view.apply_sync(connection_file))
    pid = view.apply_sync(os.getpid)
    assert path.name == f"kernel-{pid}.json"
    assert path.parent == Path(cluster[0].profile_dir) / "security"
    assert path.exists()


def test_binding_twice_is_harmless(bound: tuple[Any, Any]) -> None:
    view, kc = bound
    first = view.apply_sync(connection_file)
    view.apply_sync(bind_kernel)
    assert view.apply_sync(connection_file) == first
    reply, _ = run(kc, "1")
    assert reply["content"]["status"] == "ok"


def test_connect_info_before_binding_says_how(cluster: Any) -> None:
    _, rc = cluster
    view = rc[1]
    assert view.apply_sync(connection_file) is None
    with pytest.raises(Exception):  # noqa: B017 (a plain engine has no %connect_info yet)
        view.execute("%connect_info", block=True)


def test_bind_kernel_outside_an_engine_raises() -> None:
    with pytest.raises(RuntimeError, match="engine"):
        bind_kernel()
