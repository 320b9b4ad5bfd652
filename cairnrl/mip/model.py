"""A solver-agnostic mixed-integer linear program, built with numpy blocks and handed to any backend.

The SEQUOIA MILPs (Xu et al., ICLR 2025, section 4; :mod:`.encoding`) are small: a few hundred columns, assembled once
per decision step. Building them as arrays (not one Python object per variable) keeps assembly cheap and lets every
backend in :mod:`cairnrl.mip.solvers` read the same model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from cairnrl.exceptions import ConfigError

# Coefficients this small are numerical noise from float32 networks; HiGHS drops them with a warning anyway.
TINY_COEFFICIENT = 1e-9


@dataclass(frozen=True)
class CompiledModel:
    """The arrays a backend needs: ``row_lower <= matrix @ x <= row_upper``, ``lower <= x <= upper``."""

    objective: np.ndarray
    objective_constant: float
    maximize: bool
    lower: np.ndarray
    upper: np.ndarray
    integer: np.ndarray
    matrix: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray

    @property
    def n_cols(self) -> int:
        return int(self.objective.shape[0])

    @property
    def n_rows(self) -> int:
        return int(self.row_lower.shape[0])

    def violation(self, x: np.ndarray) -> float:
        """The largest bound, row or integrality violation of the point ``x`` (0 when feasible)."""
        x = np.asarray(x, dtype=np.float64)
        worst = max(float(np.max(self.lower - x, initial=0.0)), float(np.max(x - self.upper, initial=0.0)))
        if self.n_rows:
            activity = self.matrix @ x
            worst = max(worst, float(np.max(self.row_lower - activity)), float(np.max(activity - self.row_upper)))
        if self.integer.any():
            worst = max(worst, float(np.max(np.abs(x[self.integer] - np.round(x[self.integer])))))
        return max(worst, 0.0)

    def objective_value(self, x: np.ndarray) -> float:
        """The objective at ``x``, constant included."""
        return float(self.objective @ np.asarray(x, dtype=np.float64) + self.objective_constant)


class MILPModel:
    """Columns, linear rows and a linear objective, collected as numpy blocks.

    Columns are numbered in creation order. Rows are ranges ``lower <= a @ x <= upper`` (``-inf``/``inf`` for
    one-sided rows, equal bounds for equalities).
    """

    def __init__(self) -> None:
        self._lower: list[np.ndarray] = []
        self._upper: list[np.ndarray] = []
        self._integer: list[np.ndarray] = []
        self._objective: list[np.ndarray] = []
        self._row_ids: list[np.ndarray] = []
        self._col_ids: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._row_lower: list[np.ndarray] = []
        self._row_upper: list[np.ndarray] = []
        self.n_cols = 0
        self.n_rows = 0
        self.objective_constant = 0.0
        self.maximize = True

    def add_columns(
        self,
        n: int,
        *,
        lower: float | np.ndarray = 0.0,
        upper: float | np.ndarray = 1.0,
        integer: bool | np.ndarray = False,
    ) -> np.ndarray:
        """Add ``n`` columns and return their indices (binary columns: ``integer=True`` with bounds [0, 1])."""
        if n < 0:
            raise ConfigError(f"number of columns must be >= 0, got {n}")
        lower_arr = np.broadcast_to(np.asarray(lower, dtype=np.float64), (n,)).copy()
        upper_arr = np.broadcast_to(np.asarray(upper, dtype=np.float64), (n,)).copy()
        if np.any(lower_arr > upper_arr):
            raise ConfigError("column lower bounds must not exceed upper bounds")
        self._lower.append(lower_arr)
        self._upper.append(upper_arr)
        self._integer.append(np.broadcast_to(np.asarray(integer, dtype=bool), (n,)).copy())
        self._objective.append(np.zeros(n))
        indices = np.arange(self.n_cols, self.n_cols + n)
        self.n_cols += n
        return indices

    def add_dense_rows(
        self,
        coefficients: np.ndarray,
        columns: np.ndarray,
        lower: float | np.ndarray,
        upper: float | np.ndarray,
    ) -> np.ndarray:
        """Add rows ``lower <= coefficients @ x[columns] <= upper``; ``coefficients`` has shape (rows, len(columns))."""
        coefficients = np.atleast_2d(np.asarray(coefficients, dtype=np.float64))
        columns = np.asarray(columns, dtype=np.int64)
        if coefficients.shape[1] != columns.shape[0]:
            raise ConfigError(f"coefficients have {coefficients.shape[1]} columns but {columns.shape[0]} were named")
        rows, cols = np.nonzero(np.abs(coefficients) > TINY_COEFFICIENT)
        return self.add_sparse_rows(
            rows, columns[cols], coefficients[rows, cols], coefficients.shape[0], lower=lower, upper=upper
        )

    def add_sparse_rows(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        values: np.ndarray,
        n_rows: int,
        *,
        lower: float | np.ndarray,
        upper: float | np.ndarray,
    ) -> np.ndarray:
        """Add ``n_rows`` rows given in coordinate form (``rows`` are 0-based within the new block)."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if not rows.shape == cols.shape == values.shape:
            raise ConfigError("rows, cols and values must have the same shape")
        if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
            raise ConfigError(f"row indices must lie in [0, {n_rows})")
        if cols.size and (cols.min() < 0 or cols.max() >= self.n_cols):
            raise ConfigError(f"column indices must lie in [0, {self.n_cols})")
        lower_arr = np.broadcast_to(np.asarray(lower, dtype=np.float64), (n_rows,)).copy()
        upper_arr = np.broadcast_to(np.asarray(upper, dtype=np.float64), (n_rows,)).copy()
        keep = np.abs(values) > TINY_COEFFICIENT
        self._row_ids.append(rows[keep] + self.n_rows)
        self._col_ids.append(cols[keep])
        self._values.append(values[keep])
        self._row_lower.append(lower_arr)
        self._row_upper.append(upper_arr)
        indices = np.arange(self.n_rows, self.n_rows + n_rows)
        self.n_rows += n_rows
        return indices

    def add_objective(self, columns: np.ndarray, coefficients: np.ndarray, constant: float = 0.0) -> None:
        """Add ``coefficients @ x[columns] + constant`` to the objective."""
        objective = self._flat(self._objective, self.n_cols)
        np.add.at(objective, np.asarray(columns, dtype=np.int64), np.asarray(coefficients, dtype=np.float64))
        self._objective = [objective]
        self.objective_constant += float(constant)

    def compile(self) -> CompiledModel:
        """Freeze the model into the arrays backends consume."""
        rows = self._flat(self._row_ids, 0, np.int64)
        cols = self._flat(self._col_ids, 0, np.int64)
        matrix = sp.csr_matrix((self._flat(self._values, 0), (rows, cols)), shape=(self.n_rows, self.n_cols))
        matrix.sum_duplicates()
        return CompiledModel(
            objective=self._flat(self._objective, self.n_cols),
            objective_constant=self.objective_constant,
            maximize=self.maximize,
            lower=self._flat(self._lower, self.n_cols),
            upper=self._flat(self._upper, self.n_cols),
            integer=self._flat(self._integer, self.n_cols, bool),
            matrix=matrix,
            row_lower=self._flat(self._row_lower, self.n_rows),
            row_upper=self._flat(self._row_upper, self.n_rows),
        )

    @staticmethod
    def _flat(blocks: list[np.ndarray], size: int, dtype: type = np.float64) -> np.ndarray:
        if not blocks:
            return np.zeros(size, dtype=dtype)
        return np.concatenate(blocks).astype(dtype, copy=False)
