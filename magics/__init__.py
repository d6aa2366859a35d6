"""IPython magics for parallel work: ``%px``, ``%%px``, ``%autopx``, ``%pxresult``, ``%pxconfig``.

``%load_ext ipcluster`` registers them; they act on the view made active with
``rc.activate()`` / ``view.activate(suffix)`` (or, failing that, on all engines of the newest
client in the user namespace). This package is installed as ``ipcluster.magics``. It imports the
client, never the other way: on import it registers :func:`activate_view` with
:mod:`ipcluster.client.activation`, which imports this package by name when a view is activated
before it was loaded. Imports are absolute, because the package's folder
(``magics/``) is not under ``ipcluster/`` in the source tree and type checkers see it as
``magics``.
"""

from __future__ import annotations

from typing import Any

from ipcluster.client.activation import register_activator

_instances: dict[str, Any] = {}


def _shell() -> Any:
    from IPython import get_ipython

    ip = get_ipython()
    if ip is None:
        from ipcluster.error import IPClusterError

        raise IPClusterError("the %px magics need a running IPython (a notebook, or the ipython shell)")
    return ip


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext ipcluster``: register the unsuffixed magics (no view bound until activation)."""
    from .parallel import ParallelMagics

    if "" not in _instances or _instances[""].shell is not ip:
        magics = ParallelMagics(ip)
        magics.register()
        _instances[""] = magics


def activate_view(view: Any, suffix: str = "") -> Any:
    """Bind the ``%px{suffix}`` magics to ``view`` (registering them on first use)."""
    from .parallel import ParallelMagics

    ip = _shell()
    magics = _instances.get(suffix)
    if magics is None or magics.shell is not ip:
        magics = ParallelMagics(ip, view, suffix)
        magics.register()
        _instances[suffix] = magics
    magics.view = view
    return view


# views find the magics through the client's registry: the client never imports this package
register_activator(activate_view)
