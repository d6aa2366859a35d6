"""ipyparallel's ``ipyparallel.joblib``: the joblib backend, at the path its users import.

The backend lives with the views it drives, in :mod:`ipcluster.client.joblib`.
"""

from .client.joblib import (
    DEFAULT_NAME,
    IPYPARALLEL_NAME,
    IPClusterBackend,
    IPythonParallelBackend,
    register,
    register_joblib_backend,
)

__all__ = [
    "DEFAULT_NAME",
    "IPYPARALLEL_NAME",
    "IPClusterBackend",
    "IPythonParallelBackend",
    "register",
    "register_joblib_backend",
]
