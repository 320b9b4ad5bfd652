"""cairnrl algorithms, all with SB3's verbs (learn, predict, save, load)."""

from cairnrl.algos.mbrcsl import MBRCSL
from cairnrl.algos.offline import BC, IQL, TD3BC
from cairnrl.algos.s3rl import S3RL
from cairnrl.algos.sequoia import SEQUOIA
from cairnrl.algos.sqirl import SQIRL

ALGORITHMS = {"bc": BC, "iql": IQL, "mbrcsl": MBRCSL, "s3rl": S3RL, "sequoia": SEQUOIA, "sqirl": SQIRL, "td3bc": TD3BC}

__all__ = ["ALGORITHMS", "BC", "IQL", "MBRCSL", "S3RL", "SEQUOIA", "SQIRL", "TD3BC"]
