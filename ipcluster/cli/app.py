"""The ``ipcluster`` command: start, stop, list, scale and clean clusters from a shell.

Subcommands drive :class:`ipcluster.cluster.Cluster`; a running cluster is found through its
state file (``<profile_dir>/security/cluster-<cluster_id>.json``). This is the only module
that prints.

Exit codes: 0 success, 1 failure, 2 usage error, 10 the cluster is already running,
11 the cluster is not running.
"""

from __future__ import annotations

import sys
from typing import Any

from traitlets.config import Application, catch_config_error

from .. import __version__
from .commands import (
    EXIT_USAGE,
    IPClusterClean,
    IPClusterEngines,
    IPClusterList,
    IPClusterStart,
    IPClusterStatus,
    IPClusterStop,
)


class IPClusterApp(Application):
    name = "ipcluster"
    version = __version__
    description = """Start and manage ipcluster clusters: one controller plus engines.

    `ipcluster start -n 4` runs a cluster with 4 engines until Ctrl-C (add --daemonize to run it in
    the background); `ipcluster stop` stops it; `ipcluster list` shows the clusters of every profile.
    Run `ipcluster <subcommand> --help` for a subcommand's options."""
    examples = """
    ipcluster start -n 4 --daemonize
    ipcluster engines -n 2
    ipcluster list
    ipcluster stop
    """

    subcommands: dict[str, Any] = {
        "start": (IPClusterStart, IPClusterStart.description.splitlines()[0]),
        "stop": (IPClusterStop, IPClusterStop.description.splitlines()[0]),
        "list": (IPClusterList, IPClusterList.description.splitlines()[0]),
        "status": (IPClusterStatus, IPClusterStatus.description.splitlines()[0]),
        "engines": (IPClusterEngines, IPClusterEngines.description.splitlines()[0]),
        "clean": (IPClusterClean, IPClusterClean.description.splitlines()[0]),
    }

    @catch_config_error
    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv)

    def start(self) -> int:  # type: ignore[override]
        if self.subapp is None:
            print(f"No subcommand given: choose one of {', '.join(self.subcommands)}.\n", file=sys.stderr)
            self.print_subcommands()
            return EXIT_USAGE
        return int(self.subapp.start() or 0)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``ipcluster`` console script."""
    app = IPClusterApp()
    app.initialize(argv)
    sys.exit(app.start())


if __name__ == "__main__":
    main()
