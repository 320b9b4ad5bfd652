"""cairnrl algorithms, all with SB3's verbs (learn, predict, save, load)."""

from cairnrl.algos.cucb import ContrastiveUCB, ContrastiveUCBDQN
from cairnrl.algos.s3rl import S3RL
from cairnrl.algos.sequoia import SEQUOIA
from cairnrl.algos.sqirl import SQIRL

ALGORITHMS = {
    "contrastive_ucb": ContrastiveUCB,
    "contrastive_ucb_dqn": ContrastiveUCBDQN,
    "s3rl": S3RL,
    "sequoia": SEQUOIA,
    "sqirl": SQIRL,
}

__all__ = ["ALGORITHMS", "S3RL", "SEQUOIA", "SQIRL", "ContrastiveUCB", "ContrastiveUCBDQN"]
