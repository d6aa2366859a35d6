"""Which task store the controller's options choose, under ipcluster's names and ipyparallel's
(in process: the app is configured and builds its store; nothing listens)."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipcluster.controller.app import ControllerApp
from ipcluster.controller.db import MemoryStore, SQLiteStore, TaskStore


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    return tmp_path / "profile"


@pytest.fixture
def built() -> Iterator[list[TaskStore]]:
    stores: list[TaskStore] = []
    yield stores
    for s in stores:
        s.close()


def configure(profile: Path, *argv: str, config: str = "") -> ControllerApp:
    profile.mkdir(exist_ok=True)
    if config:
        (profile / "ipcontroller_config.py").write_text(config)
    app = ControllerApp()
    app.log = logging.getLogger("test-controller-app")
    app.initialize([f"--profile-dir={profile}", *argv])
    return app


def store_of(app: ControllerApp, built: list[TaskStore]) -> TaskStore:
    built.append(app.make_store())
    return built[-1]


def test_memory_is_the_default_and_nodb_keeps_no_results(profile: Path, built: list[TaskStore]) -> None:
    store = store_of(configure(profile), built)
    assert type(store) is MemoryStore and store.max_result_bytes == 64 << 20
    store = store_of(configure(profile, "--nodb"), built)
    assert type(store) is MemoryStore and store.max_result_bytes == 0
    assert not (profile / "security" / "tasks.db").exists()


def test_sqlitedb_opens_tasks_db_in_the_security_folder(profile: Path, built: list[TaskStore]) -> None:
    app = configure(profile, "--sqlitedb", "--ControllerApp.max_records=7")
    store = store_of(app, built)
    assert isinstance(store, SQLiteStore) and store.max_records == 7
    assert store.path == profile / "security" / "tasks.db" and store.table == "ipcluster_tasks"
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_the_last_db_flag_wins(profile: Path) -> None:
    assert configure(profile, "--sqlitedb", "--dictdb").db_class == "memory"
    assert configure(profile, "--nodb", "--sqlitedb").db_class == "sqlite"


def test_our_options_in_the_config_file(profile: Path, built: list[TaskStore]) -> None:
    app = configure(profile, config=f"c.ControllerApp.db_class = 'sqlite'\n"
                                     f"c.ControllerApp.sqlite_file = {str(profile / 'elsewhere.db')!r}\n"
                                     "c.ControllerApp.sqlite_table = 'mine'\n")
    store = store_of(app, built)
    assert isinstance(store, SQLiteStore) and store.path == profile / "elsewhere.db" and store.table == "mine"


def test_ipyparallel_names_take_effect(profile: Path, built: list[TaskStore]) -> None:
    app = configure(profile, config="c.HubFactory.db_class = 'ipyparallel.controller.sqlitedb.SQLiteDB'\n"
                                    "c.SQLiteDB.filename = 'old.db'\n"
                                    "c.SQLiteDB.table = 'ipython-tasks'\n"
                                    "c.DictDB.record_limit = 10\n"
                                    "c.DictDB.size_limit = 1000\n")
    store = store_of(app, built)
    assert isinstance(store, SQLiteStore)
    assert store.path == profile / "old.db"  # SQLiteDB.location defaults to the profile, as in ipyparallel
    assert store.table == "ipython-tasks" and store.max_records == 10 and store.max_result_bytes == 1000
    assert configure(profile, config="c.HubFactory.db_class = 'NoDB'\n").db_class == "none"
    assert configure(profile, config="c.HubFactory.db_class = 'DictDB'\n").db_class == "memory"


def test_our_names_win_over_ipyparallels_and_unknown_ones_are_named(profile: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "test-controller-app"):
        app = configure(profile, "--dictdb", config="c.HubFactory.db_class = 'SQLiteDB'\n"
                                                    "c.HubFactory.client_ip = '10.0.0.1'\n"
                                                    "c.DictDB.cull_fraction = 0.2\n")
    assert app.db_class == "memory"
    assert "HubFactory.db_class is ignored: ControllerApp.db_class is set as well" in caplog.text
    assert "HubFactory.client_ip (an ipyparallel option) has no equivalent" in caplog.text
    assert "DictDB.cull_fraction" in caplog.text


def test_an_unknown_db_class_is_a_config_error(profile: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.CRITICAL, "test-controller-app"), pytest.raises(SystemExit):
        configure(profile, config="c.HubFactory.db_class = 'MongoDB'\n")
    assert "unknown db_class 'MongoDB'" in caplog.text and "MongoDB is not supported" in caplog.text
