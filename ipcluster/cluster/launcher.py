"""ipyparallel's launcher class names (``ipyparallel.cluster.launcher``), for existing configs.

``c.Cluster.engine_launcher_class = "SlurmEngineSetLauncher"`` and code that imports these names
keep working. ipcluster has one class per backend, with the controller-or-engines choice made by
the command it runs, so each name here is that backend's class; configuration given under the
ipyparallel name (``c.SlurmEngineSetLauncher.queue``) is read by the backend.
"""

from __future__ import annotations

from ..launchers import Launcher
from ..launchers import find_launcher_class as _find
from ..launchers.batch import BatchLauncher
from ..launchers.htcondor import HTCondorLauncher
from ..launchers.local import LocalLauncher
from ..launchers.lsf import LSFLauncher
from ..launchers.mpi import MPIEngineSetLauncher, MPILauncher
from ..launchers.pbs import PBSLauncher
from ..launchers.sge import SGELauncher
from ..launchers.slurm import SlurmLauncher
from ..launchers.ssh import SSHEngineSetLauncher, SSHLauncher

BaseLauncher = Launcher
ControllerLauncher = Launcher
EngineLauncher = Launcher
BatchSystemLauncher = BatchLauncher

LocalProcessLauncher = LocalLauncher
LocalControllerLauncher = LocalLauncher
LocalEngineLauncher = LocalLauncher
LocalEngineSetLauncher = LocalLauncher

MPIControllerLauncher = MPILauncher
MPIEngineLauncher = MPILauncher

SSHControllerLauncher = SSHLauncher  # refused at start: ipcluster runs the controller locally
SSHEngineLauncher = SSHEngineSetLauncher

SlurmControllerLauncher = SlurmLauncher
SlurmEngineSetLauncher = SlurmLauncher
SGEControllerLauncher = SGELauncher
SGEEngineSetLauncher = SGELauncher
PBSControllerLauncher = PBSLauncher
PBSEngineSetLauncher = PBSLauncher
LSFControllerLauncher = LSFLauncher
LSFEngineSetLauncher = LSFLauncher
HTCondorControllerLauncher = HTCondorLauncher
HTCondorEngineSetLauncher = HTCondorLauncher


def find_launcher_class(clsname: str | type[Launcher], kind: str | None = None) -> type[Launcher]:
    """The launcher class for ``clsname`` ("slurm", "SlurmEngineSetLauncher", a dotted path or a
    class). ``kind`` ("EngineSet" or "Controller") is accepted for ipyparallel's signature: in
    ipcluster one class serves both roles."""
    del kind
    return _find(clsname)


__all__ = [name for name, value in dict(globals()).items() if isinstance(value, type) and name.endswith("Launcher")]
__all__ += ["find_launcher_class"]


