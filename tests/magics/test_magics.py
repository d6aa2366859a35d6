"""%px and friends in a real IPython shell against real engines."""

from __future__ import annotations

import _thread
import threading
import time

import pytest
from IPython.utils.capture import capture_output

from ipcluster import error


def run(ip, cell: str):
    with capture_output() as cap:
        result = ip.run_cell(cell)
    return result, cap


def test_px_line_and_cell_run_on_every_engine(ip) -> None:
    run(ip, "%px a = 5")
    assert ip.user_ns["rc"][:]["a"] == [5, 5]
    assert "a" not in ip.user_ns
    result, cap = run(ip, "%%px\nb = a * 2\nprint('b is', b)")
    assert result.success
    assert "[stdout:0] b is 10" in cap.stdout and "[stdout:1] b is 10" in cap.stdout


def test_targets_and_slices(ip) -> None:
    run(ip, "%%px --targets 0\nwho = 'zero'")
    run(ip, "%%px -t ::2\nprint(who)")
    result, cap = run(ip, "%%px --targets 1\nprint('one')")
    assert "[stdout:1] one" in cap.stdout and "[stdout:0]" not in cap.stdout
    result, cap = run(ip, "%%px --targets 0,1\nprint('both')")
    assert cap.stdout.count("both") == 2


def test_rich_outputs_keep_their_mime_types(ip) -> None:
    cell = """%%px
from IPython.display import HTML, display
class Rich:
    def _repr_html_(self):
        return '<b>rich</b>'
    def __repr__(self):
        return 'Rich()'
display(HTML('<i>shown</i>'))
Rich()
"""
    result, cap = run(ip, cell)
    assert result.success, cap.stdout
    bundles = [o.data for o in cap.outputs]
    html = [b for b in bundles if b.get("text/html") == "<i>shown</i>"]
    assert len(html) == 2  # one display per engine
    results = sorted(b["text/plain"] for b in bundles if b.get("text/html") == "<b>rich</b>")
    assert len(results) == 2
    assert [r.split(":")[0] for r in results] == ["Out[0", "Out[1"]
    assert all(r.endswith("]: Rich()") for r in results)


def test_errors_from_several_engines_read_as_one_summary(ip) -> None:
    result, cap = run(ip, "%%px\nx = 1 / 0")
    assert isinstance(result.error_in_exec, error.CompositeError)
    text = cap.stdout + cap.stderr
    assert "[0,1] ZeroDivisionError: division by zero" in text
    # each engine's traceback (up to CompositeError.tb_limit), headed as ipyparallel heads them
    assert text.count("Traceback (most recent call last)") == 2
    assert "[0:execute]:" in text and "[1:execute]:" in text
    result, cap = run(ip, "%%px --targets 0\nraise ValueError('only here')")
    assert isinstance(result.error_in_exec, error.RemoteError)
    assert "ValueError" in cap.stdout + cap.stderr


def test_noblock_save_name_and_pxresult(ip, tmp_path) -> None:
    gate = tmp_path / "gate"
    cell = (f"%%px --noblock --save-name job\nimport pathlib, time\n"
            f"while not pathlib.Path({str(gate)!r}).exists(): time.sleep(0.01)\nprint('late')")
    result, cap = run(ip, cell)
    ar = ip.user_ns["job"]
    assert result.result is ar and not ar.ready()  # held at the gate until we open it
    gate.touch()
    result, cap = run(ip, "%pxresult")
    assert ar.ready() and cap.stdout.count("late") == 2
    result, cap = run(ip, "%pxresult job")
    assert cap.stdout.count("late") == 2


def test_local_runs_here_too(ip) -> None:
    run(ip, "%%px --local\nhere_and_there = 3")
    assert ip.user_ns["here_and_there"] == 3
    assert ip.user_ns["rc"][:]["here_and_there"] == [3, 3]


def test_group_outputs_by_engine(ip) -> None:
    result, cap = run(ip, "%%px --no-stream --group-outputs engine\nimport sys\nprint('out')\nprint('err', file=sys.stderr)")
    out = cap.stdout
    assert out.index("[stdout:0]") < out.index("[stdout:1]")


def test_verbose_and_progress(ip) -> None:
    result, cap = run(ip, "%%px --verbose --progress-after 0\nimport time; time.sleep(0.3)")
    assert "Parallel execution on engine(s): all" in cap.stdout  # ipyparallel's words
    assert "2/2 engines done" in cap.stdout


def test_pxconfig_changes_defaults(ip) -> None:
    run(ip, "%pxconfig --targets 1 --noblock")
    result, cap = run(ip, "%px import os; pid = os.getpid()")
    ar = result.result
    ar.get(timeout=10)
    assert ar.engine_id == 1


def test_autopx_sends_every_cell(ip) -> None:
    result, cap = run(ip, "%autopx")
    assert "enabled" in cap.stdout
    run(ip, "auto_value = 41 + 1")
    result, cap = run(ip, "%autopx")
    assert "disabled" in cap.stdout
    assert ip.user_ns["rc"][:]["auto_value"] == [42, 42]
    assert "auto_value" not in ip.user_ns


def test_magics_work_on_the_engines(ip) -> None:
    result, cap = run(ip, "%%px\n%timeit -n1 -r1 pass")
    assert result.success
    assert cap.stdout.count("loop") >= 2


def test_second_view_with_suffix(ip) -> None:
    rc = ip.user_ns["rc"]
    rc[1].activate("one")
    run(ip, "%pxone only_one = True")
    assert rc[1].pull("only_one", block=True) is True
    with pytest.raises(error.CompositeError):
        rc[:].pull("only_one", block=True)


def test_ctrl_c_interrupts_the_engines(ip, tmp_path) -> None:
    flag = tmp_path / "running"
    cell = f"%%px\nimport time, pathlib, os\npathlib.Path({str(flag)!r} + str(os.getpid())).touch()\ntime.sleep(30)"

    def interrupt_when_running() -> None:
        deadline = time.monotonic() + 20
        while len(list(tmp_path.glob("running*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # a watcher thread's bounded poll of the engines' outward sign
        _thread.interrupt_main()

    watcher = threading.Thread(target=interrupt_when_running, daemon=True)
    watcher.start()
    start = time.monotonic()
    result, cap = run(ip, cell)
    watcher.join(5)
    assert time.monotonic() - start < 15
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    result, cap = run(ip, "%%px\nprint('alive')")
    assert cap.stdout.count("alive") == 2
