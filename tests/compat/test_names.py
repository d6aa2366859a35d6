"""The names and import paths ipyparallel documents, present under the package under test.

A script written for ipyparallel stops at its first line when an import fails, so each
documented path is checked on its own. Names ipcluster lacks are marked as its gaps.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from .target import NAME, gap, ipp, sub

TOP_LEVEL = [
    "Client",
    "DirectView",
    "LoadBalancedView",
    "BroadcastView",
    "AsyncResult",
    "AsyncMapResult",
    "AsyncHubResult",
    "Reference",
    "Cluster",
    "interactive",
    "remote",
    "parallel",
    "require",
    "depend",
    "Dependency",
    "error",
    "__version__",
    "RemoteError",
    "CompositeError",
    "ClusterManager",
    "FIRST_EXCEPTION",
    "bind_kernel",
    "register_joblib_backend",
    "version_info",
    "RemoteFunction",
    "ParallelFunction",
    "ViewExecutor",
    "PrePickled",
    "can",
    "uncan",
    "can_map",
    "uncan_map",
    "serialize_object",
    "deserialize_object",
    "pack_apply_message",
    "unpack_apply_message",
    "use_dill",
    "use_cloudpickle",
    "use_pickle",
    "dependent",
    "load_jupyter_server_extension",
    "FIRST_COMPLETED",
    "ALL_COMPLETED",
    "IPythonError",
    "KernelError",
    "TaskRejectError",
    "TaskAborted",
    "TaskTimeout",
    "TimeoutError",
    "UnmetDependency",
    "EngineError",
    "NoEnginesRegistered",
    "serialize",
    "util",
]


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_top_level_name(name: str) -> None:
    assert getattr(ipp, name) is not None


ERRORS = [
    "RemoteError",
    "CompositeError",
    "TimeoutError",
    "UnmetDependency",
    "ImpossibleDependency",
    "DependencyTimeout",
    "InvalidDependency",
    "EngineError",
    "TaskAborted",
    "TaskTimeout",
    "KernelError",
    "AlreadyDisplayedError",
    "NoEnginesRegistered",
    "IPythonError",
    "TaskRejectError",
]


@pytest.mark.parametrize("name", ERRORS)
def test_error_name(name: str) -> None:
    cls = getattr(ipp.error, name)
    assert isinstance(cls, type) and issubclass(cls, Exception)


def test_top_level_errors_are_the_error_modules() -> None:
    assert ipp.TaskRejectError is ipp.error.TaskRejectError and ipp.IPythonError is ipp.error.IPythonError


#: (error, base) as ipyparallel's ``error`` module arranges them
ERROR_BASES = [
    *((name, "IPythonError") for name in ["KernelError", "RemoteError", "CompositeError", "EngineError",
                                          "TaskAborted", "TaskTimeout", "TaskRejectError", "UnmetDependency",
                                          "NoEnginesRegistered", "AlreadyDisplayedError"]),
    *((name, "KernelError") for name in ["RemoteError", "EngineError", "TaskAborted", "TaskTimeout",
                                         "TaskRejectError", "UnmetDependency", "NoEnginesRegistered"]),
    ("ImpossibleDependency", "UnmetDependency"),
    ("DependencyTimeout", "ImpossibleDependency"),
    ("InvalidDependency", "ImpossibleDependency"),
    ("AlreadyDisplayedError", "RemoteError"),
]


@pytest.mark.parametrize(("name", "base"), ERROR_BASES)
def test_error_hierarchy(name: str, base: str) -> None:
    """``except ipp.error.KernelError`` catches what it catches in ipyparallel."""
    assert issubclass(getattr(ipp.error, name), getattr(ipp.error, base))


def test_composite_error_is_a_remote_error() -> None:
    assert issubclass(ipp.error.CompositeError, ipp.error.RemoteError)


def test_timeout_error_is_builtins_timeout_error() -> None:
    assert issubclass(ipp.error.TimeoutError, TimeoutError)


def test_composite_error_tb_limit() -> None:
    assert isinstance(ipp.error.CompositeError.tb_limit, int)


MODULE_NAMES = [
    ("serialize", ["serialize_object", "deserialize_object", "can", "uncan", "Reference",
                   "pack_apply_message", "unpack_apply_message"]),
    ("serialize.canning", ["CannedArray", "CannedClass", "CannedPartial", "CannedFunction",
                           "CannedBytes", "CannedObject", "can", "uncan", "istype"]),
    ("util", ["interactive", "utc", "disambiguate_url"]),
    ("datapub", ["publish_data"]),
    ("joblib", ["IPythonParallelBackend", "register"]),
    ("client.view", ["DirectView", "View"]),
    ("client.asyncresult", ["AsyncResult", "AsyncMapResult"]),
    ("client.client", ["Client"]),
    ("client.view", ["LoadBalancedView", "LazyMapIterator"]),
    ("cluster.launcher", ["LocalEngineSetLauncher", "LocalControllerLauncher", "MPIEngineSetLauncher",
                          "SlurmEngineSetLauncher", "SSHEngineSetLauncher", "find_launcher_class"]),
]


@pytest.mark.parametrize(("module", "names"), MODULE_NAMES, ids=lambda v: v if isinstance(v, str) else None)
def test_module_names(module: str, names: list[str]) -> None:
    mod = sub(module)
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing, f"{NAME}.{module} lacks {missing}"


@pytest.mark.parametrize("role", ["engine", "controller", "cluster"])
def test_python_dash_m_role_runs_the_command(role: str) -> None:
    """``python -m <pkg>.engine`` / ``.controller`` / ``.cluster`` are the three commands."""
    proc = subprocess.run(
        [sys.executable, "-m", f"{NAME}.{role}", "--help"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--" in proc.stdout  # it lists options


def test_python_dash_m_cluster_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", f"{NAME}.cluster", "--version"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == ipp.__version__


def test_importing_a_main_module_starts_nothing() -> None:
    """``import <pkg>.controller.__main__`` (pydoc, test collection) must not run a controller."""
    code = f"import {NAME}.controller.__main__, {NAME}.engine.__main__, {NAME}.cluster.__main__; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_joblib_register_signature() -> None:
    """``<pkg>.joblib.register(name=..., make_default=False)`` registers the default client."""
    import inspect

    params = inspect.signature(sub("joblib").register).parameters
    assert list(params)[:2] == ["name", "make_default"]
    assert params["make_default"].default is False
