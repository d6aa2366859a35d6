"""The commands' documented options, through ``python -m <pkg>.controller`` / ``.cluster``,
and the Cluster options that feed them."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from .target import NAME, ipp


def help_all(*argv: str) -> str:
    proc = subprocess.run([sys.executable, "-m", *argv, "--help-all"], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def controller_help() -> str:
    return help_all(f"{NAME}.controller")


@pytest.mark.parametrize(
    "flag",
    [
        "--ip",
        "--location",
        "--log-level",
        "--port",
        "--ping",
        "--dictdb",
        "--sqlitedb",
        "--nodb",
    ],
)
def test_controller_flag_is_documented(controller_help: str, flag: str) -> None:
    assert any(line.strip().startswith(flag) for line in controller_help.splitlines()), flag


@pytest.mark.parametrize("sub", ["start", "stop", "list", "clean", "engines"])
def test_help_all_on_every_subcommand(sub: str) -> None:
    assert help_all(f"{NAME}.cluster", sub)


def test_list_has_an_output_format_option() -> None:
    out = help_all(f"{NAME}.cluster", "list")
    assert any(line.strip().startswith("-o") for line in out.splitlines())


def test_version_is_the_package_version() -> None:
    proc = subprocess.run([sys.executable, "-m", f"{NAME}.cluster", "--version"], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
    assert proc.stdout.strip() == ipp.__version__


def start_stop(tmp_path: Path, **kw: object) -> None:
    c = ipp.Cluster(n=1, profile_dir=str(tmp_path / "profile"), **kw)
    try:
        rc = c.start_and_connect_sync()
        try:
            rc.wait_for_engines(1, timeout=30)
        finally:
            rc.close()
    finally:
        c.stop_cluster_sync()


def test_integer_log_level(tmp_path: Path) -> None:
    start_stop(tmp_path, log_level=logging.WARNING)


def test_controller_args_may_repeat_a_cluster_flag(tmp_path: Path) -> None:
    start_stop(tmp_path, log_level=logging.WARNING,
               controller_args=["--log-level=10"])
