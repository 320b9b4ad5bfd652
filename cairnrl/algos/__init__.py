"""cairnrl algorithms, all with SB3's verbs (learn, predict, save, load)."""

from cairnrl.algos.cucb import ContrastiveUCB, ContrastiveUCBDQN
from cairnrl.algos.mbrcsl import MBRCSL
from cairnrl.algos.offline import BC, FDVL, IQL, TD3BC, ReCOIL
from cairnrl.algos.s3rl import S3RL
from cairnrl.algos.sequoia import SEQUOIA
from cairnrl.algos.sqirl import SQIRL

ALGORITHMS = {
    "bc": BC,
    "contrastive_ucb": ContrastiveUCB,
    "contrastive_ucb_dqn": ContrastiveUCBDQN,
    "fdvl": FDVL,
    "iql": IQL,
    "mbrcsl": MBRCSL,
    "recoil": ReCOIL,
    "s3rl": S3RL,
    "sequoia": SEQUOIA,
    "sqirl": SQIRL,
    "td3bc": TD3BC,
}

__all__ = ["ALGORITHMS", "BC", "FDVL", "IQL", "MBRCSL", "S3RL", "SEQUOIA", "SQIRL", "TD3BC", "ContrastiveUCB",
           "ContrastiveUCBDQN", "ReCOIL"]
