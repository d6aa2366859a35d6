"""``python -m ipcluster``: the ``ipcluster`` command."""

from .cli.app import main

main()
