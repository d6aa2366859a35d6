"""Batch launchers without a queue: rendered job scripts, parsed command output, the job-state table.

PBS, LSF and HTCondor cannot run on this machine; their command output below is written after
each system's documented formats. Slurm's and SGE's was recorded from the real daemons the
marked tests start.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from traitlets.config import Config

from ipcluster.cluster import Cluster
from ipcluster.error import LauncherError, ProcessExited
from ipcluster.launchers import find_launcher_class
from ipcluster.launchers.batch import BatchLauncher
from ipcluster.launchers.batchsystem import walltime_seconds
from ipcluster.launchers.fanout import DRAIN_MARKER, render_fanout
from ipcluster.launchers.htcondor import HTCondorLauncher, HTCondorSystem
from ipcluster.launchers.jobs import EXIT_MARKER, JobState, JobStatus, JobTable
from ipcluster.launchers.lsf import LSFLauncher, LSFSystem
from ipcluster.launchers.pbs import PBSLauncher, PBSSystem
from ipcluster.launchers.sge import SGELauncher, SGESystem
from ipcluster.launchers.slurm import SlurmLauncher, SlurmSystem
from ipcluster.launchers.template import fill_template

ARGV = ["/opt/py/bin/python", "-m", "ipcluster.engine", "--file=/p/security/engine file.json"]


def launcher(cls: type[BatchLauncher], tmp_path: Path, **kw: object) -> BatchLauncher:
    return cls(argv=ARGV, name="engines-x", log_dir=str(tmp_path), **kw)


# -- names, config ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, cls", [
    ("slurm", SlurmLauncher), ("sge", SGELauncher), ("pbs", PBSLauncher), ("lsf", LSFLauncher),
    ("htcondor", HTCondorLauncher), ("SlurmEngineSetLauncher", SlurmLauncher),
    ("SGEControllerLauncher", SGELauncher), ("PBSEngineSetLauncher", PBSLauncher),
])
def test_every_system_is_found_by_name(name: str, cls: type) -> None:
    assert find_launcher_class(name) is cls


def test_ipyparallel_config_names_take_effect(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    c = Config()
    c.Cluster.engine_launcher_class = "slurm"
    c.SlurmEngineSetLauncher.queue = "gpu"
    c.SlurmEngineSetLauncher.account = "proj42"
    c.SlurmEngineSetLauncher.timelimit = "1:30:00"
    c.SlurmEngineSetLauncher.batch_template = (
        "#!/bin/sh\n#SBATCH --ntasks={n}\n#SBATCH --job-name=ipy-{cluster_id}\n#SBATCH -o out-%j.txt\n"
        "echo job $SLURM_JOB_ID ${SLURM_JOB_ID} awk '{{print $1}}'\nsrun {program_and_args}\n"
    )
    c.SlurmEngineSetLauncher.not_a_thing_here = 3
    c.SlurmControllerLauncher.queue = "controller-queue"  # another role: must not leak into engines
    cluster = Cluster(config=c, profile_dir=str(tmp_path), cluster_id="cid7", n=3)
    with caplog.at_level(logging.WARNING):
        script = cluster.job_script()
    assert script.startswith("#!/bin/sh\n#SBATCH --ntasks=3\n#SBATCH --job-name=ipy-cid7\n#SBATCH -o out-%j.txt\n")
    assert "echo job $SLURM_JOB_ID ${SLURM_JOB_ID} awk '{print $1}'" in script
    assert "srun /" in script and "-m ipcluster.engine --file=" in script and "cid7" in script
    assert "SlurmEngineSetLauncher.not_a_thing_here has no equivalent" in caplog.text
    engines = cluster._make_launcher("slurm", argv=ARGV, name="engines-1")
    assert isinstance(engines, SlurmLauncher)
    assert (engines.queue, engines.account, engines.walltime) == ("gpu", "proj42", "01:30:00")
    controller = cluster._make_launcher("slurm", argv=ARGV, name="controller")
    assert controller.queue == "controller-queue"


def test_own_class_names_and_aliases(tmp_path: Path) -> None:
    c = Config()
    c.SGELauncher.timelimit = "45"  # ipyparallel's trait name on our class: an alias
    c.SGELauncher.memory = "2G"
    lau = SGELauncher(config=c, argv=ARGV, name="engines-1")
    assert (lau.walltime, lau.memory) == ("00:45:00", "2G")
    with pytest.raises(LauncherError, match="walltime"):
        lau.walltime = "soon"


async def test_a_controller_job_is_refused_clearly(tmp_path: Path) -> None:
    lau = SlurmLauncher(argv=ARGV, name="controller", log_dir=str(tmp_path))
    with pytest.raises(LauncherError, match="controller as a slurm job is not supported yet"):
        await lau.start(1)


def test_cluster_job_script_needs_a_batch_launcher(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="does not submit job scripts"):
        Cluster(profile_dir=str(tmp_path), n=1).job_script()


# -- templates and scripts ---------------------------------------------------------------------------


def test_fill_template_leaves_shell_syntax_alone() -> None:
    text = "a {n} b ${n} c {unknown} d %j e {{x}} f $SLURM_JOB_ID g {cluster_id}"
    assert fill_template(text, {"n": "4", "cluster_id": "c1"}) == "a 4 b ${n} c {unknown} d %j e {x} f $SLURM_JOB_ID g c1"


def test_walltime_forms() -> None:
    assert walltime_seconds("90") == 5400
    assert walltime_seconds("1:30") == 5400
    assert walltime_seconds("01:30:05") == 5405
    assert walltime_seconds("2-00:00:00") == 172800


def test_slurm_script_has_every_option(tmp_path: Path) -> None:
    lau = launcher(
        SlurmLauncher, tmp_path, queue="short", account="acc", walltime="10", cores_per_engine=2, memory="8G",
        gpus=1, extra_directives=["--qos=high", "#SBATCH --exclusive"], prologue=["module load python/3.11"],
        env={"OMP_NUM_THREADS": "2"},
    )
    script = lau.job_script(4)
    for line in ["#SBATCH --ntasks=4", "#SBATCH --cpus-per-task=2", "#SBATCH --partition=short", "#SBATCH --account=acc",
                 "#SBATCH --time=00:10:00", "#SBATCH --mem=8G", "#SBATCH --gres=gpu:1", "#SBATCH --qos=high",
                 "#SBATCH --exclusive", "module load python/3.11", "export OMP_NUM_THREADS=2", "ipcluster_n=4"]:
        assert line + "\n" in script, line
    assert ("/opt/py/bin/python -m ipcluster.launchers.fanout --drain-at \"$((ipcluster_t0 + 540))\" "
            "--drain-command \"scancel --signal=TERM $SLURM_JOB_ID\" -- "
            "srun --ntasks=\"$ipcluster_n\" "
            "/opt/py/bin/python -m ipcluster.engine '--file=/p/security/engine file.json'") in script
    # prologue runs under set -e, before the engines
    assert script.index("set -e") < script.index("module load") < script.index("set +e") < script.index("srun")
    assert lau.submit_argv(4, tmp_path / "s.sh") == [
        "sbatch", "--parsable", f"--output={tmp_path}/ipcluster-engines-%j.out", str(tmp_path / "s.sh")]


def test_engines_per_job_is_one_array(tmp_path: Path) -> None:
    lau = launcher(SlurmLauncher, tmp_path, engines_per_job=3)
    assert lau.plan(8) == [3, 3, 2]
    script = lau.job_script(8)
    assert "#SBATCH --ntasks=3\n" in script
    assert '[ "$SLURM_ARRAY_TASK_ID" != "2" ] || ipcluster_n=2' in script
    argv = lau.submit_argv(8, tmp_path / "s.sh")
    assert "--array=0-2" in argv and f"--output={tmp_path}/ipcluster-engines-%A-%a.out" in argv
    lau.job_array = False
    assert "--array=0-2" not in " ".join(lau.submit_argv(8, tmp_path / "s.sh"))


@pytest.mark.parametrize("cls, lines, submit", [
    (SGELauncher, ["#$ -S /bin/sh", "#$ -V", "#$ -N ipcluster-engines", "#$ -q short", "#$ -A acc",
                   "#$ -l h_rt=00:10:00", "#$ -l h_vmem=8G", "#$ -l gpu=1", "#$ -pe smp 4"],
     ["qsub", "-terse", "-o", "{d}/ipcluster-engines-$JOB_ID-$TASK_ID.out", "-j", "y", "-t", "1-2"]),
    (PBSLauncher, ["#PBS -N ipcluster-engines", "#PBS -l select=1:ncpus=4:mem=8gb:ngpus=1", "#PBS -q short",
                   "#PBS -A acc", "#PBS -l walltime=00:10:00"],
     ["qsub", "-j", "oe", "-o", "{d}/", "-J", "0-1"]),
    (LSFLauncher, ["#BSUB -n 4", '#BSUB -R "span[hosts=1]"', "#BSUB -q short", "#BSUB -P acc", "#BSUB -W 10",
                   '#BSUB -M 8G -R "rusage[mem=8G]"', '#BSUB -gpu "num=1"'],
     ["bsub", "-J", "ipcluster-engines[1-2]", "-o", "{d}/ipcluster-engines-%J-%I.out", "-e",
      "{d}/ipcluster-engines-%J-%I.out"]),
])
def test_other_systems_render_their_directives(cls: type[BatchLauncher], lines: list[str], submit: list[str],
                                              tmp_path: Path) -> None:
    kw: dict[str, object] = dict(queue="short", account="acc", walltime="10", cores_per_engine=2, memory="8G", gpus=1,
                                 engines_per_job=2)
    if cls is SGELauncher:
        kw["parallel_environment"] = "smp"
    lau = launcher(cls, tmp_path, **kw)
    script = lau.job_script(4)
    for line in lines:
        assert line + "\n" in script, (line, script)
    index = lau.system.array_index_var
    assert "ipcluster_n=2\n" in script and index
    argv = lau.submit_argv(4, tmp_path / "s.sh")
    expected = [a.replace("{d}", str(tmp_path)) for a in submit]
    if not lau.system.submit_via_stdin:
        expected.append(str(tmp_path / "s.sh"))
    assert argv == expected


def test_htcondor_wraps_the_script_in_a_submit_description(tmp_path: Path) -> None:
    lau = launcher(HTCondorLauncher, tmp_path, memory="4G", gpus=1, cores_per_engine=2, walltime="1:00",
                   engines_per_job=2, account="grp")
    script = tmp_path / "s.sh"
    argv = lau.submit_argv(6, script)
    assert argv == ["condor_submit", "-terse", str(tmp_path / "s.sub")]
    desc = (tmp_path / "s.sub").read_text()
    for line in ["executable = /bin/sh", f"arguments = {script}", "getenv = True", "request_cpus = 4",
                 "request_memory = 4G", "request_gpus = 1", "accounting_group = grp", "queue 3",
                 f"output = {tmp_path}/ipcluster-engines-$(Cluster)-$(Process).out",
                 'environment = "IPCLUSTER_TASK=$(Process)"', "EnteredCurrentStatus > 3600"]:
        assert line in desc, line


@pytest.mark.parametrize("task, expect", [("0", 3), ("1", 3), ("2", 1)])
def test_rendered_script_runs_its_share_and_reports_its_exit_code(tmp_path: Path, task: str, expect: int) -> None:
    """The rendered job script itself, run by /bin/sh as a queue would run it (as array task ``task``)."""
    out = tmp_path / "count"
    lau = SlurmLauncher(argv=["/bin/sh", "-c", f'echo one >> {out}; exit 3'], name="engines-1", engines_per_job=3,
                        fanout="processes")
    script = tmp_path / "job.sh"
    script.write_text(lau.job_script(7))
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": task}
    proc = subprocess.run(["/bin/sh", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3
    assert f"{EXIT_MARKER} 3" in proc.stderr
    assert out.read_text().count("one") == expect


def test_a_failing_prologue_stops_the_job(tmp_path: Path) -> None:
    lau = SlurmLauncher(argv=["/bin/echo", "engine ran"], name="engines-1", fanout="processes",
                        prologue=["echo before", "false", "echo after"])
    script = tmp_path / "job.sh"
    script.write_text(lau.job_script(1))
    proc = subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "before" in proc.stdout and "after" not in proc.stdout
    assert "engine ran" not in proc.stdout and f"{EXIT_MARKER} 1" in proc.stderr


def test_fanouts() -> None:
    sup = "/py -m ipcluster.launchers.fanout"
    assert render_fanout("mpiexec", ["a", "b c"], ["--oversubscribe"], "/py") == [
        f'{sup} -- mpiexec -n "$ipcluster_n" --oversubscribe a \'b c\'']
    assert render_fanout("srun", ["a"], python="/py") == [f'{sup} -- srun --ntasks="$ipcluster_n" a']
    assert render_fanout("processes", ["a"], python="/py", drain_after=540) == [
        f'{sup} --drain-at "$((ipcluster_t0 + 540))" --copies "$ipcluster_n" -- a']
    with pytest.raises(ValueError):
        render_fanout("pdsh", ["a"])


def test_drain_time_comes_from_the_walltime(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lau = launcher(SlurmLauncher, tmp_path, walltime="10")
    assert '--drain-at "$((ipcluster_t0 + 540))"' in lau.job_script(1)  # 60 s before 10 minutes
    lau.drain_time = 0
    assert "--drain-at" not in lau.job_script(1)
    lau.drain_time = 600
    with caplog.at_level(logging.WARNING):
        assert "--drain-at" not in lau.job_script(1)
    assert "not draining" in caplog.text
    assert "--drain-at" not in launcher(SlurmLauncher, tmp_path).job_script(1)  # no walltime


WAIT_FOR_TERM = (  # one os.write per line: the two copies share a pipe
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: (os.write(1, b'finishing my task\\n'), sys.exit(0)))\n"
    "os.write(1, b'engine up\\n')\n"
    "time.sleep(60)\n"  # stands for a long task; SIGTERM ends it
    "sys.exit(5)\n"
)


def test_supervisor_drains_its_processes_at_the_deadline() -> None:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "ipcluster.launchers.fanout", "--copies", "2", "--drain-at", str(time.time() + 1),
         "--", sys.executable, "-c", WAIT_FOR_TERM],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("engine up") == 2 and proc.stdout.count("finishing my task") == 2
    assert DRAIN_MARKER in proc.stderr
    assert time.monotonic() - t0 < 20


def test_supervisor_passes_sigterm_on_and_reports_the_first_failure() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "ipcluster.launchers.fanout", "--copies", "2", "--", sys.executable, "-c",
         WAIT_FOR_TERM.replace("sys.exit(0)", "sys.exit(3)")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:
        assert proc.stdout is not None
        try:
            assert [proc.stdout.readline(), proc.stdout.readline()] == ["engine up\n"] * 2  # both started
        finally:
            proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3 and out.count("finishing my task") == 2
    assert DRAIN_MARKER not in err
    missing = subprocess.run([sys.executable, "-m", "ipcluster.launchers.fanout", "--", "/no/such/engine"],
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode == 127 and "cannot run '/no/such/engine'" in missing.stderr


# -- parsing each command's output ---------------------------------------------------------------------


def test_slurm_parsing() -> None:
    s = SlurmSystem()
    assert s.parse_job_id("1234\n") == "1234"
    assert s.parse_job_id("1234;cluster2\n") == "1234"
    with pytest.raises(LauncherError, match="no job id"):
        s.parse_job_id("sbatch: error: Batch job submission failed\n")
    # recorded from squeue 22.05 with the command status_command() builds
    out = "1|FAILED|NonZeroExitCode|768|\n2_0|RUNNING|None|0|\n2_1|PENDING|Resources|0|\n3|CANCELLED|None|15|\n4|TIMEOUT|TimeLimit|15|\n"
    st = s.parse_status(out)
    assert st["1"] == JobStatus("1", JobState.FAILED, "NonZeroExitCode", 3)
    assert st["2_0"].state is JobState.RUNNING and st["2_0"].exit_code is None
    assert st["2_1"] == JobStatus("2_1", JobState.PENDING, "Resources")
    assert st["3"].state is JobState.CANCELLED and st["3"].exit_code == -15
    assert st["4"].state is JobState.TIMEOUT
    assert s.status_failed_means_none("slurm_load_jobs error: Invalid job id specified\n")
    assert s.task_ids("7", 2) == ["7_0", "7_1"]
    assert s.output_file(Path("/l"), "n", "7_1") == Path("/l/n-7-1.out")
    assert s.status_command(["7", "9"])[:5] == ["squeue", "--noheader", "--array", "--states=all", "--jobs=7,9"]


SGE_XML = """<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <job_list state="running">
      <JB_job_number>2</JB_job_number><JB_name>ipcjob</JB_name><state>r</state><slots>1</slots><tasks>1</tasks>
    </job_list>
    <job_list state="running">
      <JB_job_number>2</JB_job_number><JB_name>ipcjob</JB_name><state>dr</state><slots>1</slots><tasks>2</tasks>
    </job_list>
    <job_list state="running">
      <JB_job_number>5</JB_job_number><JB_name>one</JB_name><state>r</state><slots>1</slots>
    </job_list>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>3</JB_job_number><JB_name>ipcjob</JB_name><state>hqw</state><slots>1</slots>
    </job_list>
    <job_list state="pending">
      <JB_job_number>4</JB_job_number><state>qw</state><slots>1</slots><tasks>4-8:2</tasks>
    </job_list>
    <job_list state="pending">
      <JB_job_number>6</JB_job_number><state>Eqw</state><slots>1</slots>
    </job_list>
  </job_info>
</job_info>
"""


def test_sge_parsing() -> None:
    s = SGESystem()
    assert s.parse_job_id("12\n") == "12"
    assert s.parse_job_id("12.1-4:1\n") == "12"
    st = s.parse_status(SGE_XML)
    assert st["2.1"].state is JobState.RUNNING
    assert st["2.2"].state is JobState.RUNNING and st["2.2"].reason.startswith("being deleted")
    assert st["5"].state is JobState.RUNNING
    assert st["3"] == JobStatus("3", JobState.PENDING, "on hold (hqw)")
    assert [k for k in st if k.startswith("4.")] == ["4.4", "4.6", "4.8"]
    assert st["6"].state is JobState.FAILED
    assert s.parse_status("") == {}
    assert s.task_ids("9", 2) == ["9.1", "9.2"]


def test_pbs_parsing() -> None:
    s = PBSSystem()
    assert s.parse_job_id("1234.pbsserver\n") == "1234.pbsserver"
    assert s.parse_job_id("1235[].pbsserver\n") == "1235[].pbsserver"
    assert s.task_ids("1235[].srv", 2) == ["1235[0].srv", "1235[1].srv"]
    out = """{"timestamp": 1, "pbs_version": "19.1.3", "pbs_server": "srv", "Jobs": {
      "1234.srv": {"Job_Name": "a", "job_state": "F", "Exit_status": 0},
      "1235[].srv": {"job_state": "B"},
      "1235[0].srv": {"job_state": "R"},
      "1235[1].srv": {"job_state": "Q", "comment": "Not Running: Insufficient amount of resource: ncpus"},
      "1236.srv": {"job_state": "F", "Exit_status": 2},
      "1237.srv": {"job_state": "F", "Exit_status": -11}}}"""
    st = s.parse_status(out)
    assert "1235[].srv" not in st
    assert st["1234.srv"].state is JobState.DONE
    assert st["1235[0].srv"].state is JobState.RUNNING
    assert st["1235[1].srv"] == JobStatus("1235[1].srv", JobState.PENDING,
                                          "Not Running: Insufficient amount of resource: ncpus")
    assert st["1236.srv"] == JobStatus("1236.srv", JobState.FAILED, "", 2)
    assert st["1237.srv"].state is JobState.TIMEOUT
    assert s.output_file(Path("/l"), "n", "1235[1].srv") == Path("/l/n.o1235.1")


def test_lsf_parsing() -> None:
    s = LSFSystem()
    assert s.parse_job_id("Job <4321> is submitted to queue <normal>.\n") == "4321"
    out = ("4321|0|RUN|-|-\n4322|1|PEND|-|New job is waiting for scheduling;\n4322|2|EXIT|127|-\n"
           "4323|0|DONE|-|-\nJob <99> is not found\n")
    st = s.parse_status(out)
    assert st["4321"].state is JobState.RUNNING
    assert st["4322[1]"] == JobStatus("4322[1]", JobState.PENDING, "New job is waiting for scheduling;")
    assert st["4322[2]"] == JobStatus("4322[2]", JobState.FAILED, "", 127)
    assert st["4323"] == JobStatus("4323", JobState.DONE, "", 0)
    assert "99" not in st
    assert s.submit_via_stdin  # bsub reads #BSUB lines only from stdin


def test_htcondor_parsing() -> None:
    s = HTCondorSystem()
    assert s.parse_job_id("77.0 - 77.3\n") == "77"
    assert s.parse_job_id("Submitting job(s)....\n4 job(s) submitted to cluster 78.\n") == "78"
    assert s.job_tasks("77", 1, False) == ["77.0"]
    out = "77.0 2 undefined undefined\n77.1 1 undefined undefined\n77.2 5 undefined Error from slot1: out of disk\n77.3 4 3 undefined\n"
    st = s.parse_status(out)
    assert st["77.0"].state is JobState.RUNNING
    assert st["77.1"].state is JobState.PENDING
    assert st["77.2"] == JobStatus("77.2", JobState.PENDING, "held: Error from slot1: out of disk")
    assert st["77.3"] == JobStatus("77.3", JobState.FAILED, "", 3)


# -- the job table (pure state) -------------------------------------------------------------------------


def test_job_table_transitions_and_one_report_per_job() -> None:
    t = JobTable()
    t.add("1_0", 2)
    t.add("1_1", 2)
    assert t.active == ["1_0", "1_1"] and t.expected_engines() == 4 and t.poll_code() is None
    up = t.update({"1_0": JobStatus("1_0", JobState.RUNNING), "1_1": JobStatus("1_1", JobState.PENDING, "Priority")})
    assert [s.job_id for s in up.changed] == ["1_0", "1_1"] and not up.vanished
    assert t.update({"1_0": JobStatus("1_0", JobState.RUNNING), "1_1": JobStatus("1_1", JobState.PENDING, "Priority")}).changed == []
    assert t.next_failure() is None
    up = t.update({"1_0": JobStatus("1_0", JobState.RUNNING)})  # 1_1 left the queue
    assert up.vanished == ["1_1"] and t.jobs["1_1"].state is JobState.ENDED
    assert t.resolve("1_1", 127).state is JobState.FAILED
    failure = t.next_failure()
    assert failure is not None and failure.job_id == "1_1" and failure.exit_code == 127
    assert t.next_failure() is None  # reported once
    assert t.expected_engines() == 2 and t.counts() == {"running": 1, "failed": 1}
    t.stopping()
    t.update({"1_0": JobStatus("1_0", JobState.CANCELLED)})
    assert t.next_failure() is None  # it was asked to stop
    assert t.poll_code() == 127
    again = JobTable.from_dict(t.to_dict())
    assert again.jobs == t.jobs and again.engines == t.engines
    t.starting()  # started again after the stop: the old jobs are not news
    t.add("2", 1)
    assert t.next_failure() is None and t.active == ["2"]


def test_a_job_deleted_then_gone_is_cancelled() -> None:
    t = JobTable()
    t.add("5", 1)
    t.update({"5": JobStatus("5", JobState.RUNNING, "being deleted (dr)")})
    t.update({})
    assert t.resolve("5", None).state is JobState.CANCELLED


# -- the launcher's I/O against fake queue commands ---------------------------------------------------


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """sbatch/squeue/scancel stand-ins that log each call and answer from files the test writes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    for name, body in {
        "sbatch": 'echo 42',
        "squeue": f'cat {tmp_path}/squeue.out',
        "scancel": f'printf "42|CANCELLED|None|15|\\n42_1|CANCELLED|None|15|\\n" > {tmp_path}/squeue.out',
    }.items():
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n{body}\n')
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return tmp_path


async def test_one_status_command_per_interval_and_failures_with_output(fake_slurm: Path) -> None:
    d = fake_slurm
    lau = SlurmLauncher(argv=ARGV, name="engines-1", log_dir=str(d / "log"), engines_per_job=2, status_interval=0.2)
    await lau.start(3)
    assert lau.submitted == ["42"] and lau.jobs.active == ["42_0", "42_1"]
    (d / "squeue.out").write_text("42_0|RUNNING|None|0|\n42_1|PENDING|Priority|0|\n")
    import asyncio

    await asyncio.gather(*(lau.refresh() for _ in range(3)))  # three waiters, one per interval
    calls = (d / "calls").read_text().splitlines()
    assert calls[0].startswith("sbatch --parsable --output=") and "--array=0-1" in calls[0]
    assert sum(c.startswith("squeue") for c in calls) == 3
    assert lau.job_states()[1]["reason"] == "Priority" and lau.expected_processes() == 3
    out = d / "log" / "ipcluster-engines-42-1.out"
    out.write_text(f"loading\nno-such: not found\n{EXIT_MARKER} 127\n")
    (d / "squeue.out").write_text("42_0|RUNNING|None|0|\n42_1|FAILED|NonZeroExitCode|32512|\n")
    err = await asyncio.wait_for(lau.watch_jobs(), 5)
    assert isinstance(err, ProcessExited) and err.exit_code == 127
    assert "slurm job 42_1 of engines-1 (1 process(es)) failed with exit code 127" in str(err)
    assert "no-such: not found" in err.output
    assert lau.poll() is None
    state = lau.to_dict()
    again = SlurmLauncher.from_dict(state)
    assert isinstance(again, SlurmLauncher) and again.submitted == ["42"] and again.jobs.active == ["42_0"]
    await again.stop()  # cancels what is still active, from the saved state alone
    assert (d / "calls").read_text().splitlines()[-2:] == ["scancel 42", "squeue --noheader --array --states=all "
                                                           "--jobs=42 --Format=JobArrayID:|,State:|,Reason:|,exit_code:|"]
    assert again.poll() is not None and again.jobs.next_failure() is None


def test_start_cluster_raises_a_job_that_already_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real controller, fake Slurm commands: the job is FAILED at the first look, and start_cluster says so
    (and stops the controller it started)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        '#!/bin/sh\nfor a in "$@"; do case "$a" in --output=*) f=$(echo "${a#--output=}" | sed s/%j/42/); '
        'printf "module: not found\\n%s 127\\n" "ipcluster-batch: job script exiting with code" > "$f";; esac; done\n'
        'echo 42\n'
    )
    (bin_dir / "squeue").write_text('#!/bin/sh\necho "42|FAILED|NonZeroExitCode|32512|"\n')
    (bin_dir / "scancel").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    c = Config()
    c.SlurmLauncher.status_interval = 0.2
    cluster = Cluster(config=c, n=2, engines="slurm", profile_dir=str(tmp_path / "profile"), shutdown_atexit=False)
    with pytest.raises(ProcessExited, match="slurm job 42 of engines-.* failed with exit code 127") as info:
        cluster.start_cluster_sync()
    assert "module: not found" in info.value.output and info.value.exit_code == 127
    assert cluster.running_pids() == []
    cluster.stop_cluster_sync()


def test_ipcluster_start_dry_run_prints_what_would_be_submitted(tmp_path: Path) -> None:
    """``ipcluster start --dry-run`` submits nothing: it prints the job script, or for local
    engines the command each engine runs, and starts no process."""
    import subprocess
    import sys

    profile = f"--profile-dir={tmp_path / 'profile'}"
    batch = subprocess.run(
        [sys.executable, "-m", "ipcluster", "start", "--dry-run", "--engines=slurm", "-n", "3", profile,
         "--SlurmLauncher.queue=short"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert batch.returncode == 0, batch.stderr
    assert batch.stdout.startswith("#!") and "#SBATCH" in batch.stdout and "short" in batch.stdout
    assert "ipcluster.engine" in batch.stdout
    local = subprocess.run(
        [sys.executable, "-m", "ipcluster", "start", "--dry-run", "-n", "2", profile],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert local.returncode == 0, local.stderr
    assert "2 engine process(es)" in local.stdout and "-m ipcluster.engine" in local.stdout
    assert not (tmp_path / "profile" / "security").exists() or not list((tmp_path / "profile" / "security").glob("cluster-*"))
