"""cairnrl algorithms, all with SB3's verbs (learn, predict, save, load)."""

from cairnrl.algos.s3rl import S3RL
from cairnrl.algos.sqirl import SQIRL

ALGORITHMS = {"s3rl": S3RL, "sqirl": SQIRL}

__all__ = ["ALGORITHMS", "S3RL", "SQIRL"]
