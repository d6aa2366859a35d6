"""Making a view the target of the ``%px`` magics, without the client importing them.

The magics use the client (``magics/`` imports ``ipcluster.client``), so the client must not
import the magics back. Instead the magics package registers how to activate a view here when
it is loaded (by ``%load_ext ipcluster``, or by :func:`activate` loading it by name when nothing
is registered yet). Loading it registers no magics by itself: ``rc[1].activate("one")``
registers ``%pxone`` and nothing else, as the user asked.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from typing import Any

from ..error import IPClusterError

log = logging.getLogger(__name__)

#: the IPython extension holding the magics (installed as ``ipcluster.magics``)
MAGICS_EXTENSION = "ipcluster.magics"

Activator = Callable[[Any, str], Any]
_activator: Activator | None = None


def register_activator(activator: Activator) -> None:
    """Called by the magics package when it loads: ``activator(view, suffix)`` binds the
    ``%px{suffix}`` magics to ``view``."""
    global _activator
    _activator = activator


def activate(view: Any, suffix: str = "") -> Any:
    """Bind the ``%px{suffix}`` magics of the running IPython to ``view``; return the view."""
    if _activator is None:
        try:
            importlib.import_module(MAGICS_EXTENSION)
        except ImportError as e:
            raise IPClusterError(f"the %px magics are not available in this installation ({e})") from e
        if _activator is None:
            raise IPClusterError(f"{MAGICS_EXTENSION} loaded but registered no way to activate a view")
    return _activator(view, suffix)


def activate_in_ipython(client: Any) -> None:
    """As ipyparallel does, a Client made inside IPython makes ``%px`` and friends work at once,
    on all its engines, unless the shell already has them (an earlier client or view keeps them:
    a second client does not take the magics away from the first)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or "px" in shell.magics_manager.magics.get("line", {}):
        return
    try:
        client.activate()
    except IPClusterError as e:  # the magics are a convenience: the client works without them
        log.warning("could not register the %%px magics: %s", e)
