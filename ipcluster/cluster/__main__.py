"""``python -m ipcluster.cluster``: the same as the ``ipcluster`` command (as ipyparallel's
``python -m ipyparallel.cluster``), for environments where only the interpreter is on PATH."""

from ipcluster.cli.app import main

if __name__ == "__main__":
    main()
