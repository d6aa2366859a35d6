"""Remote tracebacks show the failing line of the user's code, in a real IPython shell.

The engines run on this host, but the cases below make sure the engine cannot read the source
itself: the code lives in a cell of the test's shell (only its ``linecache`` has it), or in a
module file that is deleted before the call. Whatever cloudpickle release is installed (3.1.3
renames every pickled code object's file to ``<dynamic-code>``), the traceback must name the
right file and show the line.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from ipcluster import error

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(ip: InteractiveShell, cell: str, capsys: pytest.CaptureFixture[str]) -> tuple[object, str]:
    """Run a cell; return its result object and what IPython printed (the shown traceback)."""
    capsys.readouterr()
    result = ip.run_cell(cell)
    return result, capsys.readouterr().out


def remote_error(result: object) -> error.RemoteError:
    err = result.error_in_exec  # type: ignore[attr-defined]
    assert isinstance(err, error.RemoteError), repr(err)
    return err


def test_function_from_a_cell_shows_its_line(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    count = ip.execution_count
    ip.run_cell("def cell_fail(x):\n    y = x + 1\n    return y / (x - x)  # the failing line\n", store_history=True)
    result, shown = run(ip, "rc[0].apply_sync(cell_fail, 3)", capsys)
    err = remote_error(result)
    assert err.ename == "ZeroDivisionError"
    assert "return y / (x - x)  # the failing line" in err.traceback
    assert "<dynamic-code>" not in err.traceback
    assert "<ipython-input-" in err.traceback  # the cell's own name travelled with the code
    assert "return y / (x - x)  # the failing line" in shown
    assert f"Cell In[{count}], line 3, in cell_fail" in ANSI.sub("", shown)


def test_lambda_and_closure_show_their_lines(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_cell(
        "def make(k):\n"
        "    def inner(x):\n"
        "        return {}[k + x]  # closure line\n"
        "    return inner\n"
        "closure = make('a')\n"
        "lam = lambda x: [][x]  # lambda line\n"
    )
    result, shown = run(ip, "rc[0].apply_sync(closure, 'b')", capsys)
    err = remote_error(result)
    assert err.ename == "KeyError" and "return {}[k + x]  # closure line" in err.traceback
    assert "return {}[k + x]  # closure line" in shown
    result, shown = run(ip, "rc.load_balanced_view().map_sync(lam, [5])", capsys)
    err = remote_error(result)
    assert err.ename == "IndexError" and "lam = lambda x: [][x]  # lambda line" in err.traceback
    assert "lambda line" in shown
    assert "map_chunk" not in err.traceback  # the map's wrapper on the engine is not the user's code
    assert err.traceback.count('File "') == 1, err.traceback


def test_module_function_without_its_file_on_the_engine(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mod_path = tmp_path / "tbmod_gone.py"
    mod_path.write_text(
        "def make():\n"
        "    def helper(x):\n"
        "        raise ValueError(f'module value {x}')  # module line\n"
        "    return helper\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("tbmod_gone")
        helper = module.make()  # a closure: travels by value
        import linecache

        linecache.getlines(str(mod_path))  # the client read it once (as a traceback would)
        mod_path.unlink()  # ...and the engines cannot read it at all
        ip.user_ns["helper"] = helper
        result, shown = run(ip, "rc[0].apply_sync(helper, 7)", capsys)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("tbmod_gone", None)
    err = remote_error(result)
    assert err.evalue == "module value 7"
    assert f'File "{mod_path}", line 3, in helper' in err.traceback
    assert "raise ValueError(f'module value {x}')  # module line" in err.traceback
    assert "module line" in shown


def test_module_function_by_reference(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    result, shown = run(ip, "import json\nrc[0].apply_sync(json.loads, '{')", capsys)
    err = remote_error(result)
    assert err.ename == "JSONDecodeError" and "json/decoder.py" in err.traceback
    assert "obj, end = self.scan_once(s, idx)" in err.traceback  # the engine read the file itself


def test_px_and_execute_show_the_failing_line(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    result, shown = run(ip, "%%px --targets 0\na = 1\nb = a / 0  # px line\n", capsys)
    err = result.error_in_exec
    assert isinstance(err, error.RemoteError), repr(err)
    assert "b = a / 0  # px line" in err.traceback and "b = a / 0  # px line" in shown
    assert not ANSI.search(err.traceback)
    result, shown = run(ip, "rc[0].execute('c = [][1]  # execute line', block=True)", capsys)
    err = remote_error(result)
    assert err.ename == "IndexError" and "c = [][1]  # execute line" in err.traceback


def test_colours_follow_the_client_shell(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_cell("def boom():\n    raise RuntimeError('colour test')\n")
    old = ip.colors
    try:
        ip.colors = "nocolor"
        result, shown = run(ip, "rc[0].apply_sync(boom)", capsys)
        assert not ANSI.search(shown)
        ip.colors = "linux"
        result, shown = run(ip, "rc[0].apply_sync(boom)", capsys)
        assert ANSI.search(shown)  # the shell's colours
        assert "raise RuntimeError('colour test')" in ANSI.sub("", shown)
    finally:
        ip.colors = old
    err = remote_error(result)
    text = str(err) + err.traceback + "".join(err.render_traceback())
    assert not ANSI.search(text)  # what a program captures is plain text
