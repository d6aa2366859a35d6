"""What is measured: the workloads, their sizes (full and ``--quick``), time budgets and metrics.

Shared by the orchestrator and the workers, so it imports only the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass

SYSTEMS = ("ipcluster", "ipyparallel", "dask", "ray")
#: "ipcluster@REV" runs ipcluster as it was at git revision REV (``--baseline``), as a peer
BASELINE_PREFIX = "ipcluster@"


def is_ipcluster(system: str) -> bool:
    """This checkout's ipcluster, or an earlier revision of it."""
    return system == "ipcluster" or system.startswith(BASELINE_PREFIX)
PEERS = SYSTEMS[1:]


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    better: str  # "lower" or "higher"; "info" for context that is not compared


@dataclass(frozen=True)
class Workload:
    id: str
    title: str
    #: seconds the orchestrator lets it run (full size) before it kills the worker
    budget: float
    quick_budget: float
    metrics: tuple[Metric, ...]
    ipcluster_only: bool = False
    #: runs on the long-lived cluster that workloads 2-6 share
    session: bool = True


WORKLOADS: tuple[Workload, ...] = (
    Workload("w1", "start N engines until ready, and stop", 240, 45, (
        Metric("start_s", "start until N engines ready", "s", "lower"),
        Metric("stop_s", "stop", "s", "lower"),
    ), session=False),
    Workload("w2", "round trip of a tiny call", 180, 20, (
        Metric("rt_direct_median_us", "round trip, direct: median", "us", "lower"),
        Metric("rt_direct_p99_us", "round trip, direct: p99", "us", "lower"),
        Metric("rt_lb_median_us", "round trip, load-balanced: median", "us", "lower"),
        Metric("rt_lb_p99_us", "round trip, load-balanced: p99", "us", "lower"),
    )),
    Workload("w3", "no-op tasks through the load balancer", 360, 20, (
        Metric("map_tasks_per_s", "no-op tasks, one map", "tasks/s", "higher"),
        Metric("apply_async_tasks_per_s", "no-op tasks, apply_async loop", "tasks/s", "higher"),
    )),
    Workload("w4", "push/pull to one engine, scatter/gather over all", 240, 20, (
        Metric("push_MBps", "push array to one engine", "MB/s", "higher"),
        Metric("pull_MBps", "pull array from one engine", "MB/s", "higher"),
        Metric("scatter_MBps", "scatter array over all engines", "MB/s", "higher"),
        Metric("gather_MBps", "gather array from all engines", "MB/s", "higher"),
    )),
    Workload("w5", "CPU-bound tasks (busy loop) on N engines", 120, 20, (
        Metric("cpu_wall_s", "40 x 50 ms CPU tasks: wall time", "s", "lower"),
        Metric("cpu_ideal_s", "ideal wall time (40 x 0.05 / N)", "s", "info"),
    )),
    Workload("w6", "memory of the controller and one engine", 60, 15, (
        Metric("controller_peak_rss_MB", "controller peak RSS after the run", "MB", "lower"),
        Metric("engine_peak_rss_MB", "engine peak RSS after the run (largest)", "MB", "lower"),
        Metric("controller_idle_rss_MB", "controller RSS, idle after start", "MB", "lower"),
        Metric("engine_idle_rss_MB", "engine RSS, idle after start (largest)", "MB", "lower"),
    )),
    Workload("w7", "controller with 256 simulated engines", 360, 40, (
        Metric("register_s", "register 256 simulated engines", "s", "lower"),
        Metric("lb_many_tasks_per_s", "load-balanced tasks/s, 256 engines", "tasks/s", "higher"),
        Metric("lb_two_tasks_per_s", "load-balanced tasks/s, 2 engines", "tasks/s", "higher"),
        Metric("lb_many_vs_two", "throughput 256 engines / 2 engines", "x", "higher"),
        Metric("controller_peak_rss_256_MB", "controller peak RSS with 256 engines", "MB", "lower"),
    ), ipcluster_only=True, session=False),
)

BY_ID = {w.id: w for w in WORKLOADS}
METRICS = {m.key: m for w in WORKLOADS for m in w.metrics}
#: seconds for starting (and, separately, stopping) the cluster that workloads 2-6 share
SESSION_BUDGET = 90.0
QUICK_SESSION_BUDGET = 30.0


@dataclass(frozen=True)
class Sizes:
    """Every size the workloads use; ``--quick`` shrinks all of them."""

    start_reps: int = 5
    rt_calls: int = 1000
    rt_warmup: int = 50
    noop_tasks: int = 10_000
    throughput_reps: int = 3
    array_bytes: int = 100_000_000
    transfer_reps: int = 9  # first-touch memory on VMs makes single transfers jumpy: more samples
    cpu_tasks: int = 40
    cpu_seconds: float = 0.05
    cpu_reps: int = 3
    sim_engines: int = 256
    sim_tasks: int = 10_000
    sim_reps: int = 3


FULL = Sizes()
QUICK = Sizes(start_reps=1, rt_calls=20, rt_warmup=3, noop_tasks=100, throughput_reps=1,
              array_bytes=1_000_000, transfer_reps=1, cpu_tasks=4, cpu_seconds=0.01, cpu_reps=1,
              sim_engines=16, sim_tasks=200, sim_reps=1)


def sizes(quick: bool) -> Sizes:
    return QUICK if quick else FULL


def budget(w: Workload, quick: bool) -> float:
    return w.quick_budget if quick else w.budget
