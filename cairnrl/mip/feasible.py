"""A coRMAB feasible set as rows of a MILP.

:class:`~cairnrl.envs.cormab.feasible.FeasibleSet` describes the feasible actions of a problem as data (sparse rows
over the action and auxiliary columns); :func:`add_feasible_set` is its MILP encoding, shared by the Q-network
argmax, the myopic baseline and the Whittle repair.
"""

from __future__ import annotations

import numpy as np

from cairnrl.envs.cormab.feasible import FeasibleSet
from cairnrl.exceptions import ConfigError
from cairnrl.mip.model import MILPModel


def add_feasible_set(model: MILPModel, feasible_set: FeasibleSet, action_cols: np.ndarray) -> np.ndarray:
    """Add the auxiliary columns and rows of ``feasible_set`` to ``model``; returns the auxiliary column indices.

    :param action_cols: the model's columns of the N action components, in order.
    """
    action_cols = np.asarray(action_cols, dtype=np.int64)
    if action_cols.shape != (feasible_set.n_actions,):
        raise ConfigError(
            f"{feasible_set.name}: expected {feasible_set.n_actions} action columns, got {action_cols.shape[0]}"
        )
    aux_cols = model.add_columns(
        feasible_set.n_aux, lower=feasible_set.aux_lower, upper=feasible_set.aux_upper, integer=feasible_set.aux_integer
    )
    column_map = np.concatenate([action_cols, aux_cols])
    coo = feasible_set.matrix.tocoo()
    model.add_sparse_rows(
        coo.row,
        column_map[coo.col],
        coo.data,
        feasible_set.matrix.shape[0],
        lower=feasible_set.row_lower,
        upper=feasible_set.row_upper,
    )
    return aux_cols
