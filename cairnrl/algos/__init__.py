"""cairnrl algorithms, all with SB3's verbs (learn, predict, save, load)."""

from cairnrl.algos.cucb import ContrastiveUCB
from cairnrl.algos.s3rl import S3RL
from cairnrl.algos.sequoia import SEQUOIA
from cairnrl.algos.sqirl import SQIRL

ALGORITHMS = {"contrastive_ucb": ContrastiveUCB, "s3rl": S3RL, "sequoia": SEQUOIA, "sqirl": SQIRL}

__all__ = ["ALGORITHMS", "ContrastiveUCB", "S3RL", "SEQUOIA", "SQIRL"]
