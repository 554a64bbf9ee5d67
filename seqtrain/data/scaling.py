"""Standard scaling fit on training rows only, stored as plain JSON and re-applied as is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK_ROWS = 8_192  # rows fit or scaled at once: the same numbers, temporaries of about a MiB that
# the heap reuses slice after slice (larger ones stay behind in it once freed)
MIN_STD = 1e-12  # a column with a smaller spread is constant: std 1, so it maps to zero


@dataclass
class StandardScaler:
    """Per-column ``(x - mean) / std``. A constant column keeps std 1 so it maps to zero."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray, rows: np.ndarray | None = None) -> StandardScaler:
        """Mean and std of ``values[rows]`` (``rows``: a boolean mask, the training rows; all
        rows when None) in float64, a slice of rows at a time for a matrix of two or more columns."""
        values = np.asarray(values)
        if values.ndim == 1:
            values = values[:, None]
        count = len(values) if rows is None else int(np.count_nonzero(rows))
        if values.shape[1] < 2 or count <= CHUNK_ROWS:
            return cls._fit_whole(values if rows is None else values[rows])
        mean = _row_sum(_slices(values, rows)) / count
        deviations = (np.square(part - mean) for part in _slices(values, rows))
        return cls.from_std(mean, np.sqrt(_row_sum(deviations) / count))

    @classmethod
    def _fit_whole(cls, values: np.ndarray) -> StandardScaler:
        values = np.asarray(values, dtype=np.float64)
        return cls.from_std(values.mean(axis=0), values.std(axis=0))

    @classmethod
    def from_std(cls, mean: np.ndarray, std: np.ndarray) -> StandardScaler:
        """The scaler of columns with this ``mean`` and ``std`` (a constant column's std is 1)."""
        return cls(mean=mean, std=np.where(std > MIN_STD, std, 1.0))

    @classmethod
    def from_moments(cls, count: int, mean: np.ndarray, m2: np.ndarray) -> StandardScaler:
        """The scaler of rows summarised by their ``count``, ``mean`` and sum of squared
        deviations ``m2`` (a streamed fit's parallel-variance merge)."""
        return cls.from_std(mean, np.sqrt(m2 / count))

    @classmethod
    def identity(cls, n_columns: int) -> StandardScaler:
        return cls(mean=np.zeros(n_columns), std=np.ones(n_columns))

    def leaving(self, columns: list[int]) -> StandardScaler:
        """This scaler with ``columns`` left as they are (codes, not quantities)."""
        mean, std = self.mean.copy(), self.std.copy()
        mean[columns], std[columns] = 0.0, 1.0
        return StandardScaler(mean=mean, std=std)

    def with_identity(self, at: int, n: int) -> StandardScaler:
        """This scaler with ``n`` columns left as they are inserted before column ``at``."""
        return StandardScaler(mean=np.insert(self.mean, at, np.zeros(n)),
                              std=np.insert(self.std, at, np.ones(n)))

    def transform(self, values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Scaled float32 values, computed in float64 a slice of rows at a time: the numbers of
        one whole-table expression, without its float64 temporaries the size of the table.
        ``out`` (float32, the shape of ``values``; may be ``values`` itself) receives them."""
        squeeze = np.ndim(values) == 1
        values = np.asarray(values).reshape(len(values), -1)
        result = np.empty(values.shape, np.float32) if out is None else out
        scaled = result.reshape(values.shape)  # a view: writes land in ``result``
        for start in range(0, len(values), CHUNK_ROWS):
            part = values[start:start + CHUNK_ROWS].astype(np.float64)
            scaled[start:start + CHUNK_ROWS] = (part - self.mean) / self.std
        return result if out is not None else (result[:, 0] if squeeze else result)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64) * self.std + self.mean

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, state: dict) -> StandardScaler:
        return cls(mean=np.asarray(state["mean"], np.float64), std=np.asarray(state["std"], np.float64))


def _slices(values: np.ndarray, rows: np.ndarray | None):
    """The chosen rows in order, as float64 slices of at most ``CHUNK_ROWS`` rows."""
    for start in range(0, len(values), CHUNK_ROWS):
        part = values[start:start + CHUNK_ROWS]
        if rows is not None:
            part = part[rows[start:start + CHUNK_ROWS]]
        yield part.astype(np.float64)


def _row_sum(slices) -> np.ndarray:
    """Column sums of the rows of ``slices`` to the last bit of numpy's sum of the whole matrix:
    numpy adds the rows of a matrix of two or more columns one after another, so the running
    total goes in as the first row of the next slice (a test pins this against numpy)."""
    total = None
    for part in slices:
        if len(part):
            total = part.sum(axis=0) if total is None else np.concatenate([total[None], part]).sum(axis=0)
    return total
