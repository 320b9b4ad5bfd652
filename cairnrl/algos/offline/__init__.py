"""Offline algorithms on the shared core: learn from a :class:`~cairnrl.data.Dataset`, evaluate on an env."""

from cairnrl.algos.offline.base import OfflineAlgorithm
from cairnrl.algos.offline.bc import BC
from cairnrl.algos.offline.fdvl import FDVL
from cairnrl.algos.offline.iql import IQL
from cairnrl.algos.offline.recoil import ReCOIL
from cairnrl.algos.offline.td3bc import TD3BC

__all__ = ["BC", "FDVL", "IQL", "TD3BC", "OfflineAlgorithm", "ReCOIL"]
