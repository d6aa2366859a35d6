"""Pure tests of engine supervision's decisions: restart budget, OOM judgement, death reports."""

from __future__ import annotations

import signal
from pathlib import Path

from ipcluster.cluster.supervisor import EngineDeath, RestartBudget, judge_oom, read_oom_kills, signal_name


def test_the_restart_budget_counts_per_engine_within_its_window() -> None:
    budget = RestartBudget(limit=2, window=10.0)
    assert budget.allow(0, 0.0) and budget.allow(0, 1.0)
    assert not budget.allow(0, 2.0)  # a third restart within 10 s: it dies at start, leave it down
    assert budget.allow(1, 2.0)  # another engine has a budget of its own
    assert budget.allow(0, 10.5)  # the first restart left the window
    assert not RestartBudget(limit=0, window=10.0).allow(0, 0.0)  # 0: never restart


def test_signal_names_and_exit_codes() -> None:
    assert signal_name(-signal.SIGSEGV) == "SIGSEGV"
    assert signal_name(1) is None and signal_name(None) is None
    assert signal_name(-99) == "signal 99"


def test_an_oom_kill_is_a_sigkill_we_did_not_send_while_the_kernels_count_grew() -> None:
    kill = -signal.SIGKILL
    assert judge_oom(kill, False, 3, 4)[0] is True
    assert "went from 3 to 4" in judge_oom(kill, False, 3, 4)[1]
    assert judge_oom(kill, False, 3, 3)[0] is False
    assert judge_oom(kill, True, 3, 4) == (False, "ipcluster sent the SIGKILL")
    assert judge_oom(kill, False, None, 4)[0] is None  # unknown, said so
    assert judge_oom(-signal.SIGSEGV, False, 3, 4) == (False, "")


def test_the_oom_counter_is_read_from_vmstat(tmp_path: Path) -> None:
    vmstat = tmp_path / "vmstat"
    vmstat.write_text("pgfault 10\noom_kill 7\n")
    assert read_oom_kills(str(vmstat)) == 7
    assert read_oom_kills(str(tmp_path / "missing")) is None


def test_a_death_summary_names_the_engine_status_and_outcome() -> None:
    death = EngineDeath(3, 1234, "set", -9, "SIGKILL", 0.0, oom=True, output=["MemoryError?"], log_file="/l/e-3.log")
    death.note = "the controller is not running"
    text = death.summary()
    assert text.startswith("engine 3 (pid 1234) killed by SIGKILL (OOM kill); not restarted: the controller")
    assert "'MemoryError?'" in text and "/l/e-3.log" in text
    assert EngineDeath(None, 5, "s", 1, None, 0.0).status() == "exited with code 1"
    assert death.to_dict()["signal"] == "SIGKILL"


def test_stop_signals_are_requests_not_crashes() -> None:
    from ipcluster.cluster.supervisor import STOP_SIGNALS

    assert signal.SIGTERM in STOP_SIGNALS and signal.SIGKILL not in STOP_SIGNALS and signal.SIGSEGV not in STOP_SIGNALS
