"""``python -m ipcluster``: the ``ipcluster`` command."""

from ipcluster.cli.app import main

if __name__ == "__main__":  # importing this module (pydoc, test collectors) must not start one
    main()
