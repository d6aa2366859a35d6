"""Load-balancing schemes: plain classes that pick an engine for a task (no sockets)."""

from .leastload import LeastLoad, Scheduler

SCHEMES: dict[str, type[Scheduler]] = {"leastload": LeastLoad}

__all__ = ["SCHEMES", "LeastLoad", "Scheduler"]
