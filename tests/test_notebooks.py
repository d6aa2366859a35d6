"""The example notebooks in docs/examples, executed with nbclient in a real kernel against real
clusters (each notebook starts and stops its own), with their stored outputs checked."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def execute(name: str, tmp_path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                   startup_timeout=60).execute()
    nbformat.write(nb, tmp_path / f"{name}.ipynb")  # the executed copy, for a look after a failure
    return nb


def texts(nb: nbformat.NotebookNode) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o["output_type"] == "stream":
                out.append(o["text"])
            elif "data" in o:
                out.append(o["data"].get("text/plain", ""))
    return "\n".join(out)


def bundles(nb: nbformat.NotebookNode) -> list[dict]:
    return [o["data"] for c in nb.cells for o in c.get("outputs", []) if "data" in o]


@pytest.mark.timeout(180)
def test_getting_started_with_px(tmp_path: Path) -> None:
    nb = execute("getting-started-px", tmp_path)
    text = texts(nb)
    assert "[0, 1]" in text
    assert "[stdout:0] hello from pid" in text and "[stdout:1] hello from pid" in text
    html = [b for b in bundles(nb) if b.get("text/html") == "<b>engine zero</b>"]
    assert len(html) == 1 and html[0]["text/plain"].startswith("Out[0:")
    assert text.count("done sleeping") == 2
    assert text.count("caught on the engine: division by zero") == 2


@pytest.mark.timeout(180)
def test_parallel_map_with_progress(tmp_path: Path) -> None:
    nb = execute("parallel-map-progress", tmp_path)
    text = texts(nb)
    assert "40/40" in text
    assert "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81] ... total 20540" in text
    assert "tasks per engine: {0:" in text and "speed-up over serial:" in text


@pytest.mark.timeout(180)
def test_monte_carlo_pi(tmp_path: Path) -> None:
    nb = execute("monte-carlo-pi", tmp_path)
    text = texts(nb)
    assert "pi is about 3.1" in text and "4,000,000 darts" in text
    assert "8 estimates, mean 3.14" in text
