"""A joblib backend that runs ``joblib.Parallel`` work on ipcluster engines.

scikit-learn and other libraries parallelise through joblib (``n_jobs=...``); registering a view
as a joblib backend sends that work to the cluster instead of local processes::

    import ipcluster as ipp
    from joblib import Parallel, delayed, parallel_backend
    from ipcluster.joblib import register_joblib_backend

    view = ipp.Client().load_balanced_view()
    register_joblib_backend(view)               # names: "ipcluster", and "ipyparallel"
    with parallel_backend("ipcluster"):
        Parallel(n_jobs=-1)(delayed(f)(i) for i in range(100))

Each joblib *batch* (joblib groups tiny calls itself, timing them) is one ``apply`` on the view,
so a load-balanced view spreads batches over idle engines and a direct view round-robins
nothing: it runs every batch on all its targets, which is never what joblib wants (use a
load-balanced view; a DirectView is turned into a load-balanced view on the same targets).
The callables travel as any ``apply`` does (cloudpickle for what lives in ``__main__``); the
engines need joblib installed, as ipyparallel's backend also requires.
"""

from __future__ import annotations

from typing import Any

from joblib import register_parallel_backend
from joblib.parallel import AutoBatchingMixin, ParallelBackendBase

__all__ = ["IPClusterBackend", "IPythonParallelBackend", "register", "register_joblib_backend"]

#: the name a view is registered under unless one is given
DEFAULT_NAME = "ipcluster"
#: also registered when the default name is used, so code written for ipyparallel
#: (``parallel_backend("ipyparallel")``) runs unchanged
IPYPARALLEL_NAME = "ipyparallel"


def _balanced(view: Any) -> Any:
    """A load-balanced view on ``view``'s engines (``view`` itself unless it is a DirectView)."""
    if type(view).__name__ == "DirectView":
        return view.client.load_balanced_view(targets=view.targets)
    return view


class IPClusterBackend(AutoBatchingMixin, ParallelBackendBase):
    """joblib's ``ParallelBackendBase`` on top of an ipcluster view.

    Parameters
    ----------
    view:
        The view batches are applied on. ``None``: a load-balanced view of a new ``Client()``
        for the default profile, closed again when joblib terminates the backend.
    """

    supports_retrieve_callback = True  # results are read in the future's done-callback
    supports_timeout = True

    def __init__(self, view: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if view is None:
            from .client import Client

            view = Client().load_balanced_view()
        self._view = _balanced(view)

    @property
    def view(self) -> Any:
        return self._view

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """As many workers as the view has engines for ``n_jobs=-1`` (or None); joblib's
        negative counts (``-2``: all but one) count down from there; a positive count is
        kept, since a load-balanced view queues what its engines cannot take yet."""
        engines = max(len(self._view), 1)
        if n_jobs is None or n_jobs == -1:
            return engines
        if n_jobs < 0:
            return max(engines + 1 + n_jobs, 1)
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        return n_jobs

    def submit(self, func: Any, callback: Any = None) -> Any:
        """Apply one joblib batch on the view; ``callback`` runs when its result is in."""
        ar = self._view.apply_async(func)
        if callback is not None:
            ar.add_done_callback(callback)
        return ar

    def apply_async(self, func: Any, callback: Any = None) -> Any:  # joblib < 1.5 calls this
        return self.submit(func, callback)

    def retrieve_result_callback(self, out: Any) -> Any:
        """The batch's results; a remote exception is raised here, and joblib re-raises it."""
        return out.get()

    def retrieve_result(self, out: Any, timeout: float | None = None) -> Any:
        return out.get(timeout=-1 if timeout is None else timeout)

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """A batch failed: drop the batches still queued for the engines."""
        try:
            self._view.abort()
        except Exception:  # nothing queued, or the controller is gone: nothing to abort
            pass


#: ipyparallel's name for the backend class
IPythonParallelBackend = IPClusterBackend


def register_joblib_backend(view: Any = None, name: str = DEFAULT_NAME, make_default: bool = False) -> None:
    """Register ``view`` as a joblib parallel backend called ``name``.

    Parameters
    ----------
    view:
        A view of the cluster (``None``: a load-balanced view of ``Client()``, made when joblib
        first uses the backend).
    name:
        The backend's name for ``joblib.parallel_backend(name)``. With the default,
        ``"ipyparallel"`` is registered too, so code written for ipyparallel keeps working.
    make_default:
        Make it joblib's default backend, so ``Parallel(n_jobs=...)`` (scikit-learn's ``n_jobs``)
        uses the cluster without a ``parallel_backend`` block.
    """

    def factory(**kwargs: Any) -> IPClusterBackend:
        return IPClusterBackend(view=view, **kwargs)

    register_parallel_backend(name, factory, make_default=make_default)
    if name == DEFAULT_NAME:
        register_parallel_backend(IPYPARALLEL_NAME, factory)


def register(name: str = DEFAULT_NAME, make_default: bool = False) -> None:
    """ipyparallel's ``ipyparallel.joblib.register`` (and ``ipp.register_joblib_backend``):
    register a load-balanced view of the default ``Client()``, made when joblib first uses it."""
    register_joblib_backend(None, name, make_default)
