"""``python -m ipcluster.controller``: the same as the ``ipcontroller`` command."""

from ipcluster.controller.app import main

if __name__ == "__main__":  # importing this module (pydoc, test collectors) must not start one
    main()
