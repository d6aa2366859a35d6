"""What a Cluster starts, and how long it waits: its launch options.

They live apart from :mod:`ipcluster.cluster.cluster` (what a Cluster does) because they change
for other reasons: trait names are public API, the config reference and ``--help-all`` are
generated from them, and ``ipcluster start`` maps its flags onto them. Which cluster a Cluster is
(profile, cluster id) stays on the class, next to the code that resolves it.

:class:`ClusterOptions` is a plain ``HasTraits``, not a ``Configurable``, on purpose: traitlets
then reads these options from the ``Cluster`` config section (``c.Cluster.n = 4``) and lists
them once, under ``Cluster``, in ``--help-all`` and generated config files. (That listing needs
``Cluster`` to declare at least one configurable trait of its own; a test checks it does.)
"""

from __future__ import annotations

import logging
import os
from typing import Any

from traitlets import Bool, Float, HasTraits, Integer, List, Type, Unicode, Union

from ..launchers import Launcher


def resolve_engine_count(n: int | None) -> int:
    """The number of engines to start for a requested ``n``: ``None`` is one per CPU core.

    0 is a count like any other (no engines: a controller alone), which is why this rule lives in
    one place and tests ``is None`` rather than truth.
    """
    return (os.cpu_count() or 1) if n is None else n


def _launcher_trait(help: str) -> Union:
    return Union([Unicode(), Type(klass=Launcher)], default_value="local", config=True, help=help)


class ClusterOptions(HasTraits):
    """The launch options of :class:`~ipcluster.cluster.Cluster` (configured as ``Cluster``)."""

    # -- what to start ----------------------------------------------------------------------------
    n = Integer(
        None,
        allow_none=True,
        config=True,
        help="""Number of engines start_cluster() and start_engines() start by default (None: one per
        CPU core; 0: none, start_cluster() starts the controller alone).""",
    )
    controller_ip = Unicode(
        "127.0.0.1",
        config=True,
        help="Interface the controller listens on ('*' or '0.0.0.0' to accept engines from other hosts).",
    )
    controller_args = List(
        Unicode(), config=True, help="Extra command-line arguments for the controller, e.g. ['--scheme=lru']."
    )
    engine_args = List(Unicode(), config=True, help="Extra command-line arguments for every engine.")
    controller_launcher_class = _launcher_trait(
        "How to launch the controller: a registered launcher name ('local'), an import path, or a class."
    )
    engine_launcher_class = _launcher_trait(
        "How to launch engines: a registered launcher name ('local', ...), an import path, or a class."
    )
    log_level = Union(
        [Integer(), Unicode()],
        default_value=logging.INFO,
        config=True,
        help="Log level of the launched controller and engines (a name like 'DEBUG' or a number).",
    )

    # -- timing -------------------------------------------------------------------------------------
    controller_timeout = Float(
        30.0, config=True, help="Seconds to wait for the controller to write its connection files."
    )
    engine_timeout = Float(
        60.0, config=True, help="Seconds start_and_connect() waits for the engines to register."
    )
    stop_timeout = Float(
        5.0, config=True, help="Seconds to wait for processes to exit after SIGTERM before sending SIGKILL."
    )
    delay = Float(
        0.0,
        config=True,
        help="""Extra seconds to wait between the controller being ready and starting engines.
        Not needed locally (engines start once the connection file exists); for slow shared file systems.""",
    )
    # -- supervision (see ipcluster.cluster.supervisor) ----------------------------------------------
    restart_engines_on_death = Bool(
        True,
        config=True,
        help="""Restart a local engine that dies (crash, segfault, OOM kill: any exit the Cluster did not
        ask for but a clean one) under its old engine id. Every death is logged as a WARNING with its exit
        status and last output lines and kept in ``Cluster.supervisor.deaths``, restarted or not;
        engines of other launchers (ssh, mpi, batch) are reported, not restarted.""",
    )
    engine_restart_limit = Integer(
        3,
        config=True,
        help="""Restarts of one engine allowed within engine_restart_window seconds: an engine that dies
        more often (one that dies at start) stays down, and its death record says why. 0: never restart.""",
    )
    engine_restart_window = Float(
        60.0, config=True, help="Seconds over which engine_restart_limit counts one engine's restarts."
    )
    shutdown_atexit = Bool(
        True, config=True, help="Stop the cluster when this Python process exits (if it started it)."
    )
    load_profile = Bool(
        True,
        help="""Read the profile's ipcluster_config.py when a Cluster is created on its own (not by an
        application); keyword arguments win over it.""",
    )
    owner_kind = Unicode(
        "python",
        help="Who started the cluster: 'python' (this API) or 'ipcluster' (the command, which exits with it).",
    )

    @staticmethod
    def _expand_aliases(kwargs: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments with ipyparallel's short names for the launchers spelled out.

        ``Cluster(engines="mpi", controller="local")`` is how ipyparallel users write them.
        """
        kwargs = dict(kwargs)
        if "engines" in kwargs:
            kwargs["engine_launcher_class"] = kwargs.pop("engines")
        if "controller" in kwargs:
            kwargs["controller_launcher_class"] = kwargs.pop("controller")
        return kwargs

    def engine_count(self, n: int | None = None) -> int:
        """How many engines a start makes: ``n``, else :attr:`n` (see :func:`resolve_engine_count`)."""
        return resolve_engine_count(self.n if n is None else n)

    def _log_level_name(self) -> str:
        """:attr:`log_level` as the launched processes' ``--log-level`` takes it: a number for
        a number (traitlets knows ``WARN`` but not ``WARNING``, logging's name for 30), else the
        name as given."""
        level = self.log_level
        return str(level) if isinstance(level, int) else str(level).upper()
