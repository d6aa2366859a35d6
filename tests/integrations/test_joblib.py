"""joblib's Parallel on the engines through ipcluster.joblib (real cluster, real joblib)."""

from __future__ import annotations

import os

import pytest

joblib = pytest.importorskip("joblib")

from ipcluster.joblib import IPClusterBackend, register_joblib_backend  # noqa: E402


def where(i: int) -> tuple[int, int]:
    import os

    return i * i, os.getpid()


def fails(i: int) -> int:
    if i == 3:
        raise ValueError(f"bad item {i}")
    return i


def test_parallel_runs_on_the_engines(rc) -> None:
    register_joblib_backend(rc.load_balanced_view(), name="ipc-test")
    with joblib.parallel_backend("ipc-test"):
        out = joblib.Parallel(n_jobs=-1)(joblib.delayed(where)(i) for i in range(40))
    assert [sq for sq, _ in out] == [i * i for i in range(40)]
    pids = {pid for _, pid in out}
    assert os.getpid() not in pids
    assert pids <= set(rc[:].apply_sync(os.getpid))


def test_default_name_also_answers_to_ipyparallel(rc) -> None:
    register_joblib_backend(rc.load_balanced_view())
    for name in ("ipcluster", "ipyparallel"):
        with joblib.parallel_backend(name):
            assert joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(-i) for i in range(5)) == [0, 1, 2, 3, 4]


def test_make_default_serves_n_jobs_without_a_block(rc) -> None:
    register_joblib_backend(rc.load_balanced_view(), name="ipc-default", make_default=True)
    try:
        out = joblib.Parallel(n_jobs=2)(joblib.delayed(where)(i) for i in range(4))
        assert os.getpid() not in {pid for _, pid in out}
    finally:
        joblib.parallel.register_parallel_backend("loky", joblib.parallel.BACKENDS["loky"], make_default=True)


def test_a_remote_exception_reaches_the_caller(rc) -> None:
    register_joblib_backend(rc.load_balanced_view(), name="ipc-fail")
    with joblib.parallel_backend("ipc-fail"), pytest.raises(Exception, match="bad item 3"):
        joblib.Parallel(n_jobs=2)(joblib.delayed(fails)(i) for i in range(6))


def test_effective_n_jobs_counts_engines(rc) -> None:
    backend = IPClusterBackend(view=rc[:])  # a DirectView becomes a load-balanced one
    assert type(backend.view).__name__ == "LoadBalancedView"
    assert backend.effective_n_jobs(-1) == 2
    assert backend.effective_n_jobs(None) == 2
    assert backend.effective_n_jobs(-2) == 1
    assert backend.effective_n_jobs(7) == 7


def test_register_uses_the_default_profiles_client(ipython_dir) -> None:
    """``ipcluster.joblib.register()`` (ipyparallel's form): a Client() of the default profile,
    made when joblib first uses the backend. IPYTHONDIR is this test's own."""
    import ipcluster as ipp
    from ipcluster.joblib import register

    from ..e2e.conftest import stop

    cluster = ipp.Cluster(n=1, log_level="WARN", cluster_id="")  # the files Client() looks for
    rc = cluster.start_and_connect_sync()
    try:
        rc.wait_for_engines(1, timeout=20)
        register(name="ipc-default-client")
        with joblib.parallel_backend("ipc-default-client") as (backend, _):
            out = joblib.Parallel(n_jobs=1)(joblib.delayed(where)(i) for i in range(3))
            backend.view.client.close()
        assert [sq for sq, _ in out] == [0, 1, 4]
    finally:
        stop(cluster, rc)
