"""The profile config files of the controller and the engine (ipcluster/_profileconfig.py): read
after the command line, ipyparallel's class names and renamed traits taken, flags still winning."""

from __future__ import annotations

from pathlib import Path

from ipcluster.controller.app import ControllerApp
from ipcluster.engine.app import EngineApp


def controller(profile: Path, *argv: str) -> ControllerApp:
    app = ControllerApp()
    app.initialize([f"--profile-dir={profile}", *argv])
    return app


def test_controller_reads_its_own_and_ipyparallels_names(tmp_path: Path) -> None:
    (tmp_path / "ipcontroller_config.py").write_text(
        "c.IPController.location = 'here.example'\n"
        "c.IPController.curve_publickey = b'not ours'\n"  # ipyparallel-only: ignored
        "c.TaskScheduler.scheme_name = 'lru'\n"
        "c.HeartMonitor.period = 2500\n"
        "c.ControllerApp.hwm = 7\n"
    )
    app = controller(tmp_path)
    assert (app.location, app.task_scheme, app.hb_period, app.hwm) == ("here.example", "lru", 2.5, 7)


def test_controller_flags_win_over_the_file(tmp_path: Path) -> None:
    (tmp_path / "ipcontroller_config.py").write_text("c.IPController.location = 'file'\nc.ControllerApp.hwm = 7\n")
    app = controller(tmp_path, "--location=flag")
    assert (app.location, app.hwm) == ("flag", 7)


def test_controller_without_a_file(tmp_path: Path) -> None:
    assert controller(tmp_path).task_scheme == "leastload"


def test_engine_finds_the_profile_of_its_connection_file(tmp_path: Path) -> None:
    (tmp_path / "security").mkdir()
    (tmp_path / "ipengine_config.py").write_text(
        "c.IPEngine.timeout = 12.5\nc.InteractiveShell.colors = 'linux'\n"
    )
    app = EngineApp()
    app.initialize([f"--file={tmp_path / 'security' / 'ipcontroller-engine.json'}"])
    assert app.config_folder() == tmp_path.resolve()
    assert app.timeout == 12.5
    assert app.config.InteractiveShell.colors == "linux"  # for the shell built with the app as parent


def test_engine_flag_wins_and_stdin_info_has_no_profile(tmp_path: Path) -> None:
    (tmp_path / "ipengine_config.py").write_text("c.IPEngine.timeout = 12.5\n")
    app = EngineApp()
    app.initialize([f"--profile-dir={tmp_path}", "--timeout=3"])
    assert app.timeout == 3
    stdin_app = EngineApp()
    stdin_app.initialize(["--file=-"])
    assert stdin_app.config_folder() is None


def test_engine_url_file_is_the_connection_file(tmp_path: Path) -> None:
    (tmp_path / "ipengine_config.py").write_text("c.IPEngine.url_file = '/elsewhere/engine.json'\n")
    app = EngineApp()
    app.initialize([f"--profile-dir={tmp_path}"])
    assert app.connection_file == "/elsewhere/engine.json"
