"""``ipp.bind_kernel()`` on an engine, then a Jupyter kernel client attached through the
connection information ``%connect_info`` prints on that engine (ipyparallel's documented way to
use an engine "simultaneously as a full IPython kernel")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from .target import IS_IPCLUSTER, gap, ipp

jupyter_client = pytest.importorskip("jupyter_client")


@pytest.fixture(scope="module")
def one_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A cluster of its own: binding a kernel changes an engine for good."""
    import logging

    root = tmp_path_factory.mktemp("bind")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IPYTHONDIR", str(root / "ipython"))
        c = ipp.Cluster(n=1, profile_dir=str(root / "profile"), log_level="WARN" if IS_IPCLUSTER else logging.WARNING)
        rc = c.start_and_connect_sync()
        try:
            rc.wait_for_engines(1, timeout=30)
            yield rc
        finally:
            rc.close()
            c.stop_cluster_sync()


def test_kernel_client_attaches_to_the_engine_namespace(one_engine: Any) -> None:
    view = one_engine[0]
    view.block = True
    view.apply_sync(ipp.bind_kernel)
    out = view.execute("%connect_info").stdout
    info = json.loads(out[out.index("{") : out.index("}") + 1])
    for key in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port", "ip", "key", "transport"):
        assert key in info, key
    kc = jupyter_client.BlockingKernelClient()
    kc.load_connection_info(info)
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=20)
        view["from_view"] = 21
        reply = kc.execute_interactive("doubled = from_view * 2", timeout=20)
        assert reply["content"]["status"] == "ok"
        assert view["doubled"] == 42
    finally:
        kc.stop_channels()
