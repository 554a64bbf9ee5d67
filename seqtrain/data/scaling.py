"""Standard scaling fit on training rows only, stored as plain JSON and re-applied as is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK_ROWS = 65_536  # rows scaled at once: bounded temporaries, the same numbers


@dataclass
class StandardScaler:
    """Per-column ``(x - mean) / std``. A constant column keeps std 1 so it maps to zero."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> StandardScaler:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        mean = values.mean(axis=0)
        std = values.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        return cls(mean=mean, std=std)

    @classmethod
    def identity(cls, n_columns: int) -> StandardScaler:
        return cls(mean=np.zeros(n_columns), std=np.ones(n_columns))

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Scaled float32 values, computed in float64 a slice of rows at a time: the numbers of
        one whole-table expression, without its float64 temporaries the size of the table."""
        squeeze = np.ndim(values) == 1
        values = np.asarray(values).reshape(len(values), -1)
        out = np.empty(values.shape, np.float32)
        for start in range(0, len(values), CHUNK_ROWS):
            part = values[start:start + CHUNK_ROWS].astype(np.float64)
            out[start:start + CHUNK_ROWS] = (part - self.mean) / self.std
        return out[:, 0] if squeeze else out

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64) * self.std + self.mean

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, state: dict) -> StandardScaler:
        return cls(mean=np.asarray(state["mean"], np.float64), std=np.asarray(state["std"], np.float64))
