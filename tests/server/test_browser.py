"""The panel in a real JupyterLab, driven by headless Chromium through Playwright.

It opens the Clusters tab, creates and starts a cluster, watches its engines register, inserts
the connection code into a notebook and runs a cell with two maps, one labelled and failing for
one item, while the panel shows each map's progress in items, the task stream coloured by
function with the failed item red, and the failure with its traceback; then it scales up and
stops the cluster. Screenshots go
to ``$IPCLUSTER_TEST_ARTIFACTS/panel/`` (default ``test-artifacts/panel/`` in the checkout);
with ``IPCLUSTER_UPDATE_DOCS_SCREENSHOTS=1`` they are also copied to ``docs/_static/panel-*.png``.

Debian's chromium is used as it is (``executable_path``); ``playwright install`` is never run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import cluster_pids, wait_gone
from .infra import require_chromium
from .jupyter import ROOT, JupyterServer, start_server

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(420)]

WAIT_MS = 90_000
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
MAP_CELL = """\
def warmup(x):
    import time
    time.sleep(0.02)
    return x

def work(x):
    import time
    time.sleep(0.05)
    if x == 123:
        raise ValueError(f"item {x} is cursed")
    return x * x

lview = rc.load_balanced_view()
pre = lview.map_async(warmup, range(100), chunksize=1)
amr = lview.map_async(work, range(400), chunksize=1, return_exceptions=True, label="squares")
result = amr.get(timeout=180)
pre.get(timeout=60)
failed = [r for r in result if isinstance(r, Exception)]
print("mapped", len(result), "items on", len(rc.ids), "engines;", len(failed), "failed:", failed[0].ename)
"""

def artifacts_dir() -> Path:
    base = os.environ.get("IPCLUSTER_TEST_ARTIFACTS") or str(ROOT / "test-artifacts")
    path = Path(base) / "panel"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[JupyterServer]:
    require_chromium()
    server = start_server(tmp_path, lab=True)
    try:
        yield server
    finally:
        server.stop()


def write_notebook(server: JupyterServer) -> str:
    """A notebook with an empty first cell (for the connection code) and the map cell."""
    cells = [
        {"cell_type": "code", "metadata": {}, "source": "", "outputs": [], "execution_count": None},
        {"cell_type": "code", "metadata": {}, "source": MAP_CELL, "outputs": [], "execution_count": None},
    ]
    nb = {
        "cells": cells, "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    }
    (server.root_dir / "panel.ipynb").write_text(json.dumps(nb))
    return "panel.ipynb"


def test_panel_lifecycle_in_jupyterlab(lab: JupyterServer) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    out = artifacts_dir()
    shots: list[Path] = []
    notebook = write_notebook(lab)
    profile_dir = tempfile.mkdtemp(prefix="pw-udd-")
    pids: list[int] = []
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                profile_dir, executable_path=require_chromium(), headless=True, args=ARGS,
                viewport={"width": 1400, "height": 900},
            )
            try:
                page = ctx.new_page()
                page.set_default_timeout(WAIT_MS)
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))

                def shot(name: str) -> None:
                    path = out / f"panel-{name}.png"
                    page.screenshot(path=str(path))
                    shots.append(path)

                page.goto(f"{lab.url}lab/tree/{notebook}?token={lab.token}", timeout=WAIT_MS)
                page.wait_for_selector("#jp-main-dock-panel")
                page.wait_for_selector(".jp-Notebook .jp-Cell")
                # the tab titled "Clusters" in the left side bar opens the panel
                tab = page.locator('.jp-SideBar [data-id="ipcluster-panel"]')
                expect(tab).to_contain_text("Clusters")
                tab.click()
                panel = page.locator("#ipcluster-panel")
                expect(panel.locator(".ipc-Panel-empty")).to_be_visible()
                # widen the side bar (drag its splitter) so the screenshots read well
                handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
                box = handle.bounding_box()
                assert box is not None
                y = box["y"] + box["height"] / 2
                page.mouse.move(box["x"] + box["width"] / 2, y)
                page.mouse.down()
                page.mouse.move(box["x"] + 160, y, steps=8)
                page.mouse.up()
                wide = panel.bounding_box()
                assert wide is not None and wide["width"] > 350, wide

                # New: profile, engines, launcher; create and start
                panel.locator(".ipc-Panel-new").click()
                panel.locator(".ipc-NewForm-engines").fill("2")
                expect(panel.locator(".ipc-NewForm-launcher")).to_have_value("local")
                shot("new")
                panel.locator(".ipc-NewForm-start").click()
                card = panel.locator(".ipc-Card").first
                expect(card.locator(".ipc-Card-state")).to_have_text("running")
                expect(card.locator(".ipc-Card-profile")).to_have_text("default")
                expect(card.locator(".ipc-Card-launcher")).to_have_text("local")
                expect(card.locator(".ipc-Card-engines")).to_have_text("2 / 2")  # engines came up
                expect(card.locator(".ipc-Engine")).to_have_count(2)
                key = card.get_attribute("data-key")
                assert key
                _, info = lab.api("GET", f"ipcluster/clusters/{key.replace(':', '%3A')}")
                pids += cluster_pids(info["cluster_file"])
                shot("running")

                # insert the connection code into the notebook's (empty, active) first cell, run both cells
                first = page.locator(".jp-Notebook .jp-Cell").first
                first.click()
                card.locator(".ipc-Card-insert").click()
                expect(first.locator(".jp-InputArea-editor")).to_contain_text("Cluster.from_file(")
                expect(first.locator(".jp-InputArea-editor")).to_contain_text("connect_client_sync()")
                page.locator(".jp-Notebook").first.focus()
                first.click()
                page.keyboard.press("Escape")
                page.keyboard.press("Shift+Enter")
                page.keyboard.press("Shift+Enter")

                # the labelled map's progress in items, the stream coloured by function, the failure
                squares = card.locator('.ipc-Group[data-group="squares"]')
                expect(squares.locator(".ipc-Group-kind")).to_have_text("label", timeout=120_000)
                expect(squares.locator(".ipc-Group-text")).to_contain_text("/ 400 items")
                expect(squares.locator(".ipc-Group-text")).to_contain_text("items/s · ETA")
                expect(card.locator('.ipc-Group[data-group="warmup"] .ipc-Group-kind')).to_have_text("map")
                expect(card.locator(".ipc-Progress-text")).to_contain_text("tasks/s")
                expect(card.locator(".ipc-Engine-busy").first).to_be_attached()
                legend = card.locator(".ipc-Legend-item")
                expect(legend.filter(has_text="warmup")).to_have_count(1)
                expect(legend.filter(has_text="work")).to_have_count(1)
                failure = card.locator(".ipc-Failure").first
                expect(failure).to_contain_text("ValueError: item 123 is cursed")
                expect(failure.locator(".ipc-Failure-summary")).to_contain_text("ValueError: item 123 is cursed")
                expect(card.locator(".ipc-Stream rect.ipc-Stream-failed").first).to_be_attached()
                expect(card.locator(".ipc-Legend-failed")).to_be_visible()
                # two functions, two colours in the stream (and failed items red)
                page.wait_for_function(
                    """() => new Set([...document.querySelectorAll('#ipcluster-panel .ipc-Stream rect.ipc-Stream-task')]
                                 .map(r => r.getAttribute('fill'))).size >= 2"""
                )
                # several seconds of stream, so the screenshot shows it moving
                page.wait_for_function(
                    "() => Number(document.querySelector('#ipcluster-panel .ipc-Stream')?.dataset.ticks) >= 14"
                )
                shot("map-progress")
                output = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-OutputArea-output")
                expect(output).to_contain_text("mapped 400 items on 2 engines; 1 failed: ValueError", timeout=180_000)
                expect(card.locator(".ipc-Progress-text")).to_contain_text("idle")
                expect(squares.locator(".ipc-Group-text")).to_contain_text("399 / 400 items · 1 failed · done")
                # the failure's whole traceback on expand
                failure.locator("summary").click()
                expect(failure.locator(".ipc-Failure-traceback")).to_be_visible()
                expect(failure.locator(".ipc-Failure-traceback")).to_contain_text("in work")
                expect(failure.locator(".ipc-Failure-traceback")).to_contain_text("Traceback (most recent call last)")
                failure.scroll_into_view_if_needed()
                shot("map-done")

                # scale up to 3, then stop
                card.locator(".ipc-Card-target").fill("3")
                card.locator(".ipc-Card-scale").click()
                expect(card.locator(".ipc-Card-engines")).to_have_text("3 / 3")
                expect(card.locator(".ipc-Engine")).to_have_count(3)
                _, info = lab.api("GET", f"ipcluster/clusters/{key.replace(':', '%3A')}")
                pids += cluster_pids(info["cluster_file"])
                shot("scaled")
                card.locator(".ipc-Card-stop").click()
                expect(card.locator(".ipc-Card-state")).to_have_text("stopped")
                wait_gone(pids)
                shot("stopped")
                card.locator(".ipc-Card-delete").click()
                expect(panel.locator(".ipc-Panel-empty")).to_be_visible()
                assert not errors, errors
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile_dir, ignore_errors=True)
        if pids:
            wait_gone(pids)
    if os.environ.get("IPCLUSTER_UPDATE_DOCS_SCREENSHOTS") == "1":
        for path in shots:
            shutil.copy(path, ROOT / "docs" / "_static" / path.name)
