"""Command lines where the last of a repeated option wins, as users of ``ipcontroller`` expect.

traitlets refuses ``--log-level=20 --log-level=10`` ("only accepts one value"). A Cluster passes
its own options and then the user's ``controller_args``/``engine_args``, so a user's flag that
repeats one of ours must override it, not crash the process. (Imports nothing of ipcluster.)
"""

from __future__ import annotations

import sys


def last_option_wins(argv: list[str] | None) -> list[str]:
    """``argv`` (default ``sys.argv[1:]``) without the earlier copies of ``--name=value`` options.

    ``--log-level`` and ``--log_level`` name the same option. Options without ``=`` and
    positional arguments are kept as they are, in order.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    last: dict[str, int] = {}
    for i, arg in enumerate(args):
        if arg.startswith("--") and "=" in arg:
            last[arg.split("=", 1)[0].replace("_", "-")] = i
    return [
        arg for i, arg in enumerate(args)
        if not (arg.startswith("--") and "=" in arg) or last[arg.split("=", 1)[0].replace("_", "-")] == i
    ]
