"""cairnrl: research deep-RL algorithms for control on one shared, reproducible core."""

__version__ = "0.1.0"

from cairnrl.core.evaluation import EvaluationResult, evaluate

__all__ = ["EvaluationResult", "__version__", "evaluate"]
