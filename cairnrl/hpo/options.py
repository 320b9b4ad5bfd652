"""The choices of ``cairnrl tune``'s options, kept apart from Optuna so the command line parses without it."""

OBJECTIVES = ("mean", "iqm")
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "halving", "none")
