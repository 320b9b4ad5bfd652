"""cairnrl algorithms, all with SB3's verbs (learn, predict, save, load)."""

from cairnrl.algos.sqirl import SQIRL

ALGORITHMS = {"sqirl": SQIRL}

__all__ = ["ALGORITHMS", "SQIRL"]
