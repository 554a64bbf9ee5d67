"""The rules every reader (in memory, streamed, and predict's chunks) applies to the rows it
reads, written once: each row's series code, the NaN policy, and each row's split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from seqtrain.data import validate
from seqtrain.data.columns import forward_fill, missing_values, series_dictionary
from seqtrain.data.windows import series_bounds
from seqtrain.errors import SeqtrainError

# -- series codes ---------------------------------------------------------------------------------


def table_series_codes(table: pa.Table, group_col: str | None) -> tuple[np.ndarray, list]:
    """The series codes of a whole table: each row's position in its sorted series names (one
    series ``"all"`` without a group column), and those names."""
    if group_col is None:
        return np.zeros(table.num_rows, np.int64), ["all"]
    column = _named_values(table.column(group_col), group_col)
    codes, names = pd.factorize(column.to_pandas(), sort=True)
    return codes.astype(np.int64), _plain(names)


def _named_values(column: pa.ChunkedArray, group_col: str) -> pa.ChunkedArray:
    PartSeriesCodes.refuse_missing(column, group_col)
    if pa.types.is_dictionary(column.type):  # a categorical column: sorted by name, not category order
        column = column.cast(column.type.value_type)
    return column


def _plain(names) -> list:
    return [n.item() if hasattr(n, "item") else n for n in names]


class PartSeriesCodes:
    """``table_series_codes`` of a table read in parts: each part's rows get codes by first
    appearance (through the part's dictionary, not a pandas copy of its names), renumbered by
    the whole-table rule at the end (``in_name_order``: pandas' sort of the distinct names)."""

    def __init__(self, group_col: str | None):
        self.group_col = group_col
        self.by_name: dict = {}
        self.type = None

    @staticmethod
    def refuse_missing(column: pa.ChunkedArray, group_col: str) -> None:
        if column.null_count:
            raise SeqtrainError(
                f"data.group_col: column {group_col!r} has {column.null_count} missing values; "
                "give every row a series"
            )

    def has_missing(self, table: pa.Table) -> bool:
        return self.group_col is not None and table.column(self.group_col).null_count > 0

    def of(self, table: pa.Table) -> np.ndarray:
        """A part's first-appearance codes."""
        if self.group_col is None:
            return np.zeros(table.num_rows, np.int64)
        column = _named_values(table.column(self.group_col), self.group_col)
        self.type = column.type
        encoded = column.dictionary_encode().combine_chunks()
        lookup = np.asarray([self.by_name.setdefault(n, len(self.by_name))
                             for n in encoded.dictionary.to_pylist()], np.int64)
        return lookup[encoded.indices.to_numpy(zero_copy_only=False)]

    def in_name_order(self, codes: np.ndarray) -> tuple[np.ndarray, list]:
        """First-appearance ``codes`` as whole-table codes, and the series names."""
        if self.group_col is None:
            return codes, ["all"]
        distinct = pa.array(list(self.by_name), type=self.type).to_pandas()
        ranks, names = pd.factorize(distinct, sort=True)
        return ranks.astype(np.int64)[codes], _plain(names)


class SeriesCodes:
    """Series codes of a table read chunk by chunk: a chunk's series are found through its
    dictionary (``columns.series_dictionary``) and a name met for the first time gets the next
    code; ``in_name_order`` renumbers them by sorted name, the codes of the whole-table rule
    (``table_series_codes``). ``names``: series known from the start (codes in their order)."""

    def __init__(self, group_col: str | None, names=()):
        self.group_col = group_col
        self.by_name = {name: code for code, name in enumerate(names)}

    def codes(self, table: pa.Table, check_new: Callable[[list], None] | None = None) -> np.ndarray:
        """Each row's series code; ``check_new`` sees the chunk's names not met before."""
        names, index = series_dictionary(table, self.group_col)
        if check_new is not None:
            check_new([n for n in names if n not in self.by_name])
        lookup = np.asarray([self.by_name.setdefault(n, len(self.by_name)) for n in names], np.int64)
        return lookup[index]

    def in_name_order(self) -> np.ndarray:
        """Renumber the series by sorted name (later chunks get the new codes); the new code of
        each old one."""
        provisional = list(self.by_name)
        order = sorted(range(len(provisional)), key=lambda i: provisional[i])
        remap = np.empty(len(order), np.int64)
        remap[order] = np.arange(len(order))
        self.by_name = {provisional[i]: code for code, i in enumerate(order)}
        return remap

    @property
    def names(self) -> list:
        """The series names, by code."""
        return list(self.by_name)

    def names_by_code(self) -> _NamesByCode:
        """``names`` built only when an error names a series (a long list, per chunk)."""
        return _NamesByCode(self.by_name)


class _NamesByCode:
    """Series names by code (``names`` keeps the codes' order), built on first use."""

    def __init__(self, names: dict):
        self.names = names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, code) -> object:
        return list(self.names)[int(code)]


# -- the NaN policy -------------------------------------------------------------------------------

FILL_FIX = "clean the file or set data.nan_policy=ffill (forward-fill) or drop"


@dataclass
class TargetCheck:
    """The target's values where a reader's NaN policy covers them, and how a refusal of a
    missing one reads there (``counted=False``: the count of one streamed row group is not the
    table's, so none is given)."""

    name: str
    values: np.ndarray
    kind: str = "numeric"
    fix: str = FILL_FIX
    counted: bool = True

    def refuse(self, bad: np.ndarray, file_rows: np.ndarray) -> None:
        if bad.any():
            count = f"{int(bad.sum())} " if self.counted else ""
            raise SeqtrainError(
                f"data.target: column {self.name!r} has {count}NaN/inf value(s), first at row "
                f"{file_rows[validate.first_bad(bad)]}; {self.fix}"
            )


def apply_nan_policy(policy: str, x: np.ndarray, features: list[str], file_rows: np.ndarray,
                     series: np.ndarray | None = None,
                     target: TargetCheck | None = None) -> np.ndarray | None:
    """``data.nan_policy`` on the feature columns ``x`` and (when given) the target, rows
    grouped by ``series``: ``error`` refuses the first NaN/inf (features first), ``ffill``
    fills each series forward in place (``x`` and ``target.values``) and drops rows still
    missing a value, as ``drop`` drops every row missing one. The rows to keep (None: all)."""
    target_bad = missing_values(target.values, target.kind) if target is not None else None
    if policy == "error":
        for j, name in enumerate(features):
            validate.check_finite(name, "data.features", x[:, j], file_rows)
        if target is not None:
            target.refuse(target_bad, file_rows)
        return None
    if policy == "ffill":
        bounds = series_bounds(series)
        starts = np.repeat(bounds[:-1], np.diff(bounds))
        rows = np.arange(len(series))
        for j in range(x.shape[1]):
            x[:, j] = forward_fill(x[:, j], ~np.isfinite(x[:, j]), starts, rows)
        if target is not None:
            target.values[:] = forward_fill(target.values, target_bad, starts, rows)
            target_bad = missing_values(target.values, target.kind)
    bad = target_bad.copy() if target is not None else np.zeros(len(x), bool)
    for j in range(x.shape[1]):  # a column at a time: no boolean matrix the size of the table
        bad |= ~np.isfinite(x[:, j])
    return ~bad if bad.any() else None
