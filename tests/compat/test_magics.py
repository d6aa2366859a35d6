"""The %px family in a real IPython shell: names and output formats as ipyparallel documents.

Documented output: ``[stdout:N] text`` and ``[stderr:N] text`` per engine, ``Out[N:M]: value``
for a cell's result, "Parallel execution on engine(s): all" in verbose mode, and
"%autopx enabled" / "%autopx disabled".
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .target import NAME, gap

InteractiveShell = pytest.importorskip("IPython.core.interactiveshell").InteractiveShell
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def ip(rc: Any) -> Iterator[Any]:
    shell = InteractiveShell.instance()
    rc.activate()  # documented: a blocking DirectView on all engines
    yield shell
    shell.run_cell("%pxconfig --no-verbose")


def run(ip: Any, capsys: pytest.CaptureFixture[str], cell: str) -> str:
    capsys.readouterr()
    ip.run_cell(cell)
    captured = capsys.readouterr()
    return ANSI.sub("", captured.out + captured.err)


def test_px_prefixes_stdout_with_the_engine_id(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(ip, capsys, '%px print("hi")')
    for eid in (0, 1):
        assert re.search(rf"\[stdout:{eid}\]\s*hi", out), out


def test_px_prefixes_stderr(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(ip, capsys, '%px import sys; print("oops", file=sys.stderr)')
    for eid in (0, 1):
        assert re.search(rf"\[stderr:{eid}\]\s*oops", out), out


def test_px_shows_results_as_out_engine_count(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(ip, capsys, "%px 1 + 2")
    for eid in (0, 1):
        assert re.search(rf"Out\[{eid}:\d+\]:\s*3", out), out


def test_cell_magic_px(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(ip, capsys, '%%px\nx = 20\nprint(x + 1)\n')
    assert re.search(r"\[stdout:0\]\s*21", out), out
    assert ip.user_ns.get("x") != 20  # ran on the engines, not here


def test_autopx_announces_its_state(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert "%autopx enabled" in run(ip, capsys, "%autopx")
    assert "%autopx disabled" in run(ip, capsys, "%autopx")


def test_pxresult_and_pxconfig_exist(ip: Any) -> None:
    line = ip.magics_manager.magics["line"]
    for name in ("px", "pxresult", "pxconfig", "autopx"):
        assert name in line, name
    assert "px" in ip.magics_manager.magics["cell"]


def test_activate_with_a_suffix(rc: Any) -> None:
    shell = InteractiveShell.instance()
    rc[0].activate(suffix="_tst")
    line = shell.magics_manager.magics["line"]
    assert "px_tst" in line and "pxconfig_tst" in line and "autopx_tst" in line


def test_verbose_px_names_the_engines(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_cell("%pxconfig --verbose")
    out = run(ip, capsys, "%px a = 5")
    assert "Parallel execution on engine(s): all" in out, out


def test_px_error_headers(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(ip, capsys, "%px 1/0")
    assert "[0:execute]" in out and "[1:execute]" in out, out
    assert "ZeroDivisionError" in out


PROBE = """
import glob, importlib, sys
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
ipp = importlib.import_module(sys.argv[1])
rc = ipp.Client(sys.argv[2])  # the connection file, positional as the docs show
print("px" in shell.magics_manager.magics["line"], "autopx" in shell.magics_manager.magics["line"])
rc.close()
"""


def test_client_in_ipython_registers_the_magics(profile_dir: Path) -> None:
    url_file = next((profile_dir / "security").glob("ipcontroller-*client.json"))
    proc = subprocess.run([sys.executable, "-c", PROBE, NAME, str(url_file)], capture_output=True, text=True,
                          timeout=40, stdin=subprocess.DEVNULL)
    assert proc.stdout.split()[-2:] == ["True", "True"], proc.stdout + proc.stderr[-2000:]
