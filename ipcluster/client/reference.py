"""``Reference`` under its client path; it lives in :mod:`ipcluster.protocol.reference`."""

from ..protocol.reference import Reference

__all__ = ["Reference"]
