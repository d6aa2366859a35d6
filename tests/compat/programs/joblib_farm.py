"""scikit-learn-style joblib on the engines, as ipyparallel documents it."""

import os

from joblib import Parallel, delayed, parallel_backend

import ipyparallel as ipp


def where(i):
    import os

    return i, os.getpid()


with ipp.Cluster(n=2) as rc:
    rc.wait_for_engines(2, timeout=60)
    rc[:].use_cloudpickle()  # functions defined in this script travel by value
    view = rc.load_balanced_view()
    view.register_joblib_backend()
    with parallel_backend("ipyparallel"):
        out = Parallel(n_jobs=2)(delayed(where)(i) for i in range(10))
    assert [i for i, _ in out] == list(range(10))
    assert os.getpid() not in {pid for _, pid in out}
print("joblib ok")
