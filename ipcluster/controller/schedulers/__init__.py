"""Load-balancing schemes: plain classes that pick an engine for a task (no sockets).

Select one with ``ControllerApp.task_scheme`` (``ipcontroller --scheme=lru``).
"""

from .base import Scheduler
from .leastload import LeastLoad
from .others import LRU, PlainRandom, TwoBin, Weighted

SCHEMES: dict[str, type[Scheduler]] = {s.name: s for s in (LeastLoad, LRU, TwoBin, Weighted, PlainRandom)}

__all__ = ["LRU", "SCHEMES", "LeastLoad", "PlainRandom", "Scheduler", "TwoBin", "Weighted"]
