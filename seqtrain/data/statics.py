"""What a global model over many series may know of each one: its static columns and its id.

``data.static=[col, ...]`` names columns constant within each series (sector, exchange, a size
bucket). A numeric one is an input column like any feature (scaled on training rows); a
categorical one (strings, categories, booleans) and, with ``model.series_embedding``, the series
itself become *code columns*: integer codes carried as float inputs after the features, never
scaled, that ``models.series_inputs.SeriesInputs`` turns into learned vectors. Codes come from
what training rows met (their series, their levels): a series or level met only later (or
absent from a walk-forward fold's training rows) gets the code one past the known ones, the
shared "unknown" vector, never a vector no training window taught.

Carrying the codes inside the inputs makes every path see them for free: windows (the code of a
window is its last row's, constant within the series, so no later row is ever read), padding,
streaming, prediction and export.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from seqtrain.data import source, validate
from seqtrain.data.windows import series_bounds
from seqtrain.errors import SeqtrainError

log = logging.getLogger("seqtrain")

SERIES_CODE = "series"  # the series id's code column is named "<group_col>:series"


@dataclass
class StaticSpec:
    """The static inputs of a run (recorded in the data state as ``static``)."""

    numeric: list[str] = field(default_factory=list)  # also among the features: scaled like them
    categorical: dict[str, list[str]] = field(default_factory=dict)  # column -> its training levels
    series: list[str] | None = None  # with a series embedding: the series met on training rows
    series_col: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.numeric or self.categorical or self.series is not None)

    @property
    def code_names(self) -> list[str]:
        """The code columns' names, in their order among the inputs."""
        names = [f"{column}:code" for column in self.categorical]
        return names + ([f"{self.series_col or 'table'}:{SERIES_CODE}"] if self.series is not None else [])

    @property
    def cardinalities(self) -> list[int]:
        """Known codes per code column (the code one past them is the unknown one)."""
        return [len(levels) for levels in self.categorical.values()] + (
            [len(self.series)] if self.series is not None else [])

    @property
    def columns(self) -> list[str]:
        """The file columns read for them."""
        return [*self.numeric, *self.categorical]

    def codes(self, categories: dict[str, tuple[list[str], np.ndarray]], series: np.ndarray,
              series_names: list) -> np.ndarray:
        """The code columns ``(N, n)`` float32 of rows whose categorical columns are
        ``categories`` (column -> ``(names, index)`` of ``categories()``) and whose series are
        ``series`` (codes into ``series_names``)."""
        parts = []
        for column, levels in self.categorical.items():
            names, index = categories[column]
            known = {level: code for code, level in enumerate(levels)}
            parts.append(np.asarray([known.get(n, len(known)) for n in names], np.int64)[index])
        if self.series is not None:
            known = {name: code for code, name in enumerate(self.series)}
            by_code = np.asarray([known.get(str(n), len(known)) for n in series_names], np.int64)
            parts.append(by_code[series])
        if not parts:
            return np.zeros((len(series), 0), np.float32)
        return np.column_stack(parts).astype(np.float32)

    def check_rows(self, raw: np.ndarray, features: list[str], series: np.ndarray,
                   series_names: list) -> None:
        """The static columns of rows to predict (``raw``: features then codes, rows grouped by
        series, those carried from earlier chunks first) constant within each series, as in
        training: one line otherwise."""
        fix = "give each series one value in the table to predict"
        for column in self.numeric:
            check_constant(raw[:, features.index(column)], series, series_names, column, "the table",
                           fix=fix)
        for j, (column, levels) in enumerate(self.categorical.items()):
            codes = raw[:, len(features) + j].astype(np.int64)
            check_constant(codes, series, series_names, column, "the table",
                           [*levels, "a level training never met"], fix=fix)

    def unknown(self, codes: np.ndarray) -> dict[str, int]:
        """Rows per code column that get the shared unknown vector."""
        return {name: int((codes[:, j] >= n).sum())
                for j, (name, n) in enumerate(zip(self.code_names, self.cardinalities, strict=True))
                if (codes[:, j] >= n).any()}

    def to_dict(self) -> dict:
        return {"numeric": list(self.numeric),
                "categorical": {c: list(v) for c, v in self.categorical.items()},
                "series": self.series, "series_col": self.series_col}

    @classmethod
    def from_dict(cls, state: dict | None) -> StaticSpec:
        state = state or {}
        return cls(list(state.get("numeric", [])), dict(state.get("categorical", {})),
                   state.get("series"), state.get("series_col"))


def static_columns(cfg, schema: pa.Schema, path: str) -> tuple[list[str], list[str]]:
    """``data.static``'s (numeric, categorical) columns of the table at ``path``; one line for a
    column that is not there or that is the time, group or target column."""
    listed = list(cfg.get("static") or [])
    if len(set(listed)) != len(listed):
        raise SeqtrainError("data.static: a column is listed twice")
    reserved = {cfg.time_col: "time", cfg.group_col: "group", cfg.target: "target"}
    numeric, categorical = [], []
    for column in listed:
        if column not in schema.names:
            raise SeqtrainError(f"data.static: column {column!r} not found in {path} "
                                f"(columns: {validate.name_list(schema.names)})")
        if column in reserved:
            raise SeqtrainError(f"data.static: {column!r} is the {reserved[column]} column; "
                                "list columns that describe each series")
        kind = schema.field(column).type
        is_number = validate.is_numeric(kind) and not pa.types.is_boolean(kind)
        (numeric if is_number else categorical).append(column)
    if listed and cfg.group_col is None:
        raise SeqtrainError("data.static: needs data.group_col (columns constant per series describe "
                            "series; a table of one series has nothing to tell apart)")
    return numeric, categorical


def check_constant(values: np.ndarray, series: np.ndarray, series_names: list, column: str,
                   path: str, names: list | None = None,
                   fix: str = "list only columns with one value per series, or make it a feature "
                              "(data.features)") -> None:
    """One line naming the first series in which a static column's value changes (rows grouped
    by series; ``names``: what the values index, for a categorical column's ``categories``); a
    missing value counts as a value."""
    bounds = series_bounds(series)
    first = values[np.repeat(bounds[:-1], np.diff(bounds))]
    same = (values == first) | (pd.isna(values) & pd.isna(first))
    if same.all():
        return
    row = int(np.flatnonzero(~same)[0])
    seen = [first[row], values[row]] if names is None else [names[first[row]], names[values[row]]]
    raise SeqtrainError(
        f"data.static: column {column!r} of {path} is not constant within series "
        f"{series_names[series[row]]!r} ({seen[0]!r} and {seen[1]!r}); {fix}")


def fit_levels(categories: tuple[list[str], np.ndarray], train_rows: np.ndarray) -> list[str]:
    """A categorical static column's levels: those met on training rows, sorted."""
    names, index = categories
    return sorted({names[i] for i in np.unique(index[train_rows])})


def categories(column) -> tuple[list[str], np.ndarray]:
    """A categorical column's distinct values as text (missing: ``"<NA>"``, a level like any
    other) and each row's position among them."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    encoded = column.dictionary_encode(null_encoding="encode").combine_chunks()
    names = ["<NA>" if v is None else str(v) for v in encoded.dictionary.to_pylist()]
    return names, encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def with_static_features(columns: tuple, numeric: list[str], categorical: list[str], listed: bool) -> tuple:
    """``validate.resolve_columns``'s columns with the numeric static columns among the features
    and the categorical ones (a boolean is numeric to ``data.features=null``) not; one line for
    one ``listed`` in ``data.features``."""
    time_col, group_col, target, features = columns
    both = [c for c in categorical if c in features]
    if both and listed:
        raise SeqtrainError(f"data.features: {both[0]!r} is a categorical static column (data.static): "
                            "its levels get a learned vector; remove it from data.features")
    features = [c for c in features if c not in both]
    return time_col, group_col, target, [*features, *[c for c in numeric if c not in features]]


def fit_static(numeric: dict[str, np.ndarray], categorical: dict[str, tuple[list[str], np.ndarray]],
               series: np.ndarray, series_names: list, train_rows: np.ndarray, path: str,
               series_embedding: bool, group_col: str | None) -> tuple[StaticSpec, np.ndarray]:
    """The static spec fit on the training table (rows grouped by series): each static column
    checked constant within every series, the categorical levels of training rows, the series
    with training rows when the series id is an input; and the code columns of its rows."""
    for column, values in numeric.items():
        check_constant(values, series, series_names, column, path)
    for column, (names, index) in categorical.items():
        check_constant(index, series, series_names, column, path, names)
    spec = StaticSpec(numeric=list(numeric),
                      categorical={c: fit_levels(cats, train_rows) for c, cats in categorical.items()},
                      series=trained_series(series_names, np.unique(series[train_rows]))
                      if series_embedding else None, series_col=group_col)
    return spec, spec.codes(categorical, series, series_names)


def trained_series(series_names: list, trained: np.ndarray) -> list[str]:
    """The names of the series with training rows (``trained``: their codes), in code order."""
    return [str(series_names[i]) for i in sorted(trained)]


def read_static(path: str, rows, train_rows: np.ndarray, numeric: list[str],
                categorical: list[str], series_embedding: bool, group_col: str | None):
    """``data.static`` and the series id (``fit_static``) on the rows of the table at ``path``
    (``table_rows.TableRows``: grouped by series, each row's ``file_rows``): the static spec and the
    code columns."""
    cats = {}
    if categorical:
        table = source.read_columns(path, categorical)
        for column in categorical:
            names, index = categories(table.column(column))
            cats[column] = (names, index[rows.file_rows])
    values = {c: rows.x[:, rows.features.index(c)] for c in numeric}
    return fit_static(values, cats, rows.series, rows.series_names, train_rows, path, series_embedding,
                      group_col)
