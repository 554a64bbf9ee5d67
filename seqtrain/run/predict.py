"""Predictions of a trained run on any table: the run's data state applied unchanged (no
statistic is refit), the same window rule, the best (or last) checkpoint.

A table is read in chunks: the whole table at once in memory, or one row group at a time when
streamed. Each chunk is put after the rows carried from earlier ones (the last
``seq_length + horizon + output_steps - 2`` rows of each series), and every window is predicted
exactly once (``windows.forecast_ends``), so both give the same predictions.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from omegaconf import DictConfig, OmegaConf

from seqtrain.config import parse_arguments
from seqtrain.data import source, validate
from seqtrain.data.columns import (
    forward_fill,
    in_zone,
    read_target,
    series_dictionary,
    time_values,
    time_zone,
)
from seqtrain.data.rows import RowBlock, time_as_number
from seqtrain.data.state import DataState, HasDataState
from seqtrain.data.windows import chunk_row_numbers, forecast_ends, series_bounds
from seqtrain.engine.allocator import settle_malloc
from seqtrain.engine.assemble import build_module
from seqtrain.engine.calibration import Calibration
from seqtrain.engine.module import SeqModule
from seqtrain.engine.precision import Precision, precision_plugin
from seqtrain.errors import SeqtrainError
from seqtrain.files import atomic
from seqtrain.report.predictions import predictions_frame
from seqtrain.run.folders import check_output, checkpoint_path, default_output, model_folder, run_config

log = logging.getLogger("seqtrain")


@dataclass
class _Contract(HasDataState):
    """A saved data state, standing in for the training data when the network is rebuilt."""

    contract: DataState


def load_network(cfg: DictConfig, state: DataState, checkpoint: str | Path,
                 precision: Precision | None = None) -> SeqModule:
    """The run's LightningModule with the weights of ``checkpoint`` (read with
    ``weights_only=True``: tensors and plain data, never pickled objects), in eval mode; in
    ``precision``'s dtype before the weights are loaded (64-true: float64, as the Trainer held
    them)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise SeqtrainError(f"ckpt: {checkpoint} not found")
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        module = build_module(cfg, _Contract(state))
        if precision is not None:
            module = precision.convert_module(module)
        module.load_state_dict(saved["state_dict"])
    except (RuntimeError, KeyError, OSError, EOFError) as exc:
        raise SeqtrainError(f"ckpt: cannot load {checkpoint}: {str(exc).splitlines()[0]}") from None
    return module.eval()


def run_calibration(run_dir: Path, checkpoint: Path) -> Calibration | None:
    """The run's calibration.json, for the checkpoint it was fit on (the run's own best.ckpt);
    another checkpoint's outputs (last.ckpt, or a file of another run) are not calibrated, and
    one line says so."""
    calibration = Calibration.load(run_dir / "calibration.json")
    if calibration is None or calibration.checkpoint is None:
        return calibration
    fitted_for = run_dir / "checkpoints" / calibration.checkpoint
    if checkpoint.expanduser().resolve() == fitted_for.resolve():
        return calibration
    log.warning("ckpt: %s was calibrated (calibration.json) for %s, not %s; these predictions are "
                "not calibrated", run_dir, fitted_for, checkpoint)
    return None


class Predictor:
    """A trained network and its data state: windows a table by the training rules and
    predicts each window (or, with ``last``, the newest of each series), each batch as the test
    pass predicts it: ``RowBlock.batch``, the module's prediction record, under the run's
    precision (``trainer.precision`` on this device, or ``precision``)."""

    def __init__(self, cfg: DictConfig, state: DataState, module: SeqModule, batch_size: int = 1024,
                 device: str = "cpu", run_dir: Path | None = None, precision: Precision | None = None):
        self.device, self.batch_size = torch.device(device), batch_size
        self.precision = precision or precision_plugin(run_precision(cfg), self.device)
        self.cfg, self.state, self.run_dir = cfg, state, run_dir
        self.module = self.precision.convert_module(module.to(device))
        self.checkpoint: Path | None = None  # the weights' file, when loaded from a run folder
        self.needs_label_rows = bool(state.known_future) and module.model.reads_future
        self.known_columns = [state.inputs.index(c) for c in state.known_future]
        settle_malloc()  # each batch's activations are freed and allocated again, as in training

    @classmethod
    def from_run(cls, run_dir: str | Path, ckpt: str = "best", batch_size: int = 1024,
                 device: str = "auto", precision: str | None = None) -> Predictor:
        """The predictor of the run in folder ``run_dir`` (config, data_state.json, checkpoint),
        in the run's ``trainer.precision`` unless ``precision`` names another."""
        run_dir = Path(run_dir).expanduser()
        cfg = run_config(run_dir)
        folds = sorted(p.name for p in run_dir.glob("fold_*/data_state.json"))
        if folds and not (run_dir / "data_state.json").exists():
            raise SeqtrainError(f"run: {run_dir} is a walk-forward run with one model per fold "
                                f"({', '.join(f.split('/')[0] for f in folds)}); use one of them")
        state = DataState.load(run_dir / "data_state.json")
        device = _device(device)
        plugin = precision_plugin(precision or run_precision(cfg), torch.device(device))
        checkpoint = checkpoint_path(run_dir, ckpt)
        module = load_network(cfg, state, checkpoint, plugin)
        module.calibration = run_calibration(run_dir, checkpoint)
        predictor = cls(cfg, state, module, batch_size, device, run_dir, plugin)
        predictor.checkpoint = checkpoint
        return predictor

    # -- tables in, predictions out --------------------------------------------------------------

    def predict_frame(self, frame: pd.DataFrame, last: bool = False, allow_new_series: bool = False,
                      name: str = "the table") -> pd.DataFrame:
        """Predictions of every window of a DataFrame (columns as in the training table; a time
        index is used as the time column when the column itself is absent)."""
        if any(level in self.state.needed_columns for level in frame.index.names):
            frame = frame.reset_index()  # time (and series) as the index
        try:
            table = pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SeqtrainError(f"{name}: a column mixes types ({str(exc).splitlines()[0]}); give each "
                                "column one type") from None
        self.state.check_schema(table.schema, name)
        parts = list(self.predict_chunks(_slices(table, whole=self.state.sort), last, allow_new_series,
                                         in_memory=True))
        if not parts:
            raise SeqtrainError(self._no_window_message(name))
        return in_zone(pd.concat(parts, ignore_index=True), time_zone(table.schema, self.state.time_col))

    def predict_path(self, path: str, output: str | Path, last: bool = False, allow_new_series: bool = False,
                     streaming: bool = False, overwrite: bool = False) -> int:
        """Predictions of every window of the Parquet table at ``path``, written to ``output``
        (Parquet, atomically: a failure leaves no half file, and an existing ``output`` is
        refused before any work unless ``overwrite``; see ``check_output``); the number of rows
        written."""
        output = Path(output).expanduser()
        check_output(output, Path(path).expanduser(), overwrite, self._training_table())
        dataset = source.open_dataset(path)
        self.state.check_schema(dataset.schema, path)
        zone = time_zone(dataset.schema, self.state.time_col)  # times are written back in it
        columns = list(self.state.needed_columns)
        if self.state.target in dataset.schema.names and self.state.target not in columns:
            columns.append(self.state.target)  # the truth, where known, beside the predictions
        if streaming:
            if self.state.sort:
                raise SeqtrainError("streaming: the run sorted its rows (data.sort=true), which needs the "
                                    "whole table in memory; sort the files or set streaming=false")
            groups = source.row_groups(dataset)
            chunks = (source.read_row_group(g, dataset.schema, columns) for g in groups)
        else:
            chunks = _slices(source.read_columns(path, columns), whole=self.state.sort)
        with atomic(output, overwrite, "output") as tmp:
            parts = (in_zone(part, zone)
                     for part in self.predict_chunks(chunks, last, allow_new_series, in_memory=not streaming))
            written = self._write(parts, tmp)
            if written == 0:
                raise SeqtrainError(self._no_window_message(path))
        return written

    @staticmethod
    def _write(parts: Iterable[pd.DataFrame], path: Path) -> int:
        """Prediction frames appended to one Parquet file; the number of rows."""
        written, writer = 0, None
        try:
            for part in parts:
                table = pa.Table.from_pandas(part, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                writer.write_table(table.cast(writer.schema))
                written += len(part)
        finally:
            if writer is not None:
                writer.close()
        return written

    def _training_table(self) -> Path | None:
        """The table the run was trained on, when it lies outside the run folder (a file the
        run's config names: resuming or re-running the run reads it again)."""
        data = self.cfg.get("data") or {}
        path = data.get("path") if data.get("kind") == "parquet" else None
        return Path(str(path)).expanduser() if path else None

    def _no_window_message(self, name: str) -> str:
        spec = self.state.window
        need = spec.rows if self.needs_label_rows else spec.history
        what = ("rows up to its last label row (the model reads known-future columns there)"
                if self.needs_label_rows else "rows of history")
        return (f"data.path: no series in {name} has a complete window ({need} {what}); give each "
                "series more rows")

    def predict_chunks(self, chunks: Iterable[pa.Table], last: bool = False, allow_new_series: bool = False,
                       in_memory: bool = False) -> Iterator[pd.DataFrame]:
        """Prediction frames, chunk by chunk (see the module docstring)."""
        stream = _Stream(self.state, allow_new_series, sort=in_memory and self.state.sort)
        newest: dict[int, pd.DataFrame] = {}
        for table in itertools.chain(chunks, [None]):  # None: the rows carried after the last chunk
            block = stream.block(table)
            if block is None:
                continue
            ends = forecast_ends(block.bounds, block.row_number, block.is_new, self.state.window.history,
                                 self.state.window.span, table is None, self.needs_label_rows)
            if last:
                ends = _newest_per_series(ends, block.series)
            if len(ends):
                frame, codes = self._predict(block, ends, stream.names_by_code)
                if not last:
                    yield frame
                for code in np.unique(codes) if last else ():
                    newest[int(code)] = frame[codes == code]
            stream.carry(block)
        if newest:
            yield pd.concat([newest[c] for c in sorted(newest)], ignore_index=True)

    @torch.inference_mode()
    def _predict(self, block: _Block, ends: np.ndarray,
                 series_names: list) -> tuple[pd.DataFrame, np.ndarray]:
        """The predictions of the windows ending at ``ends``, and each row's series code."""
        state, spec = self.state, self.state.window
        rows = RowBlock(torch.from_numpy(block.x), torch.from_numpy(block.labels),
                        torch.from_numpy(block.times), torch.from_numpy(block.series),
                        torch.from_numpy(block.row_number), spec.seq_length, spec.horizon,
                        spec.output_steps, state.task == "classification",
                        self.known_columns if self.needs_label_rows else None, spec.pad_short)
        records = []
        for i in range(0, len(ends), self.batch_size):
            batch = rows.batch(torch.from_numpy(ends[i: i + self.batch_size]), beyond_end=True)
            if not block.has_truth:
                del batch["y"]  # zeros standing in for a target the table does not hold
            records.append(self._record(batch))
        codes = np.repeat(torch.cat([r["window"][:, 0] for r in records]).numpy(), spec.output_steps)
        return predictions_frame(state, series_names, records, self.module.quantile_levels), codes

    def _record(self, batch: dict) -> dict:
        """A batch's prediction record, as the Trainer's test step makes it: the batch converted
        by the precision plugin, moved to the device, and read under its autocast."""
        batch = self.module.transfer_batch_to_device(self.precision.convert_input(batch), self.device, 0)
        with self.precision.test_step_context():
            return self.module.prediction_record(batch, self.module(batch))


def run_precision(cfg: DictConfig):
    """The run's ``trainer.precision`` (32 where a config names none)."""
    return OmegaConf.select(cfg, "trainer.precision", default="32")


def _device(name: str) -> str:
    """``auto`` (a CUDA GPU when one is visible), ``cpu`` or ``cuda[:N]``; one line otherwise."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cpu" and not name.startswith("cuda"):
        raise SeqtrainError(f"device={name!r}; choose auto, cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SeqtrainError(f"device={name}: no CUDA GPU is visible; use device=cpu")
    return name


SLICE_ROWS = 65_536


def _slices(table: pa.Table, whole: bool) -> Iterator[pa.Table]:
    """A table in memory fed as slices of ``SLICE_ROWS`` rows (smaller temporaries, the
    streamed path's speed), or ``whole`` when its rows must be sorted first (``data.sort``)."""
    if whole or table.num_rows <= SLICE_ROWS:
        yield table
        return
    for start in range(0, table.num_rows, SLICE_ROWS):
        yield table.slice(start, SLICE_ROWS)


def _newest_per_series(ends: np.ndarray, series: np.ndarray) -> np.ndarray:
    """Of the window ends (sorted, rows grouped by series), the last one of each series."""
    if len(ends) == 0:
        return ends
    codes = series[ends]
    return ends[np.append(codes[1:] != codes[:-1], True)]


@dataclass
class _Block:
    """Rows of one or more series grouped by series: those carried from earlier chunks first."""

    x: np.ndarray  # scaled inputs
    raw: np.ndarray  # unscaled feature columns, carried for the next chunk's fills
    target: np.ndarray | None  # the target's values as read (None: not in the table)
    labels: np.ndarray  # class ids or scaled targets (zeros without the target)
    times: np.ndarray  # time_as_number
    time_values: np.ndarray
    series: np.ndarray
    row_number: np.ndarray
    file_rows: np.ndarray
    is_new: np.ndarray
    bounds: np.ndarray
    has_truth: bool


class _Stream:
    """What links one chunk to the next: series codes, rows per series so far, carried rows."""

    def __init__(self, state: DataState, allow_new_series: bool, sort: bool):
        self.state, self.allow_new_series, self.sort = state, allow_new_series, sort
        self.codes: dict = {}
        self.names_by_code: list = []
        self.known = {str(n) for n in state.series_names}
        self.counters = np.zeros(0, np.int64)
        self.kept: _Block | None = None
        self.file_row = 0

    def _series_codes(self, table: pa.Table) -> np.ndarray:
        names, index = series_dictionary(table, self.state.group_col)
        unknown = [n for n in names if n not in self.codes and str(n) not in self.known]
        if unknown and not self.allow_new_series:
            raise SeqtrainError(
                f"data.group_col: series {', '.join(map(repr, unknown[:5]))} never occurred in training; "
                "allow_new_series=true predicts them anyway (every model here shares its weights "
                "across series)")
        lookup = np.asarray([self.codes.setdefault(n, len(self.codes)) for n in names], np.int64)
        self.names_by_code = list(self.codes)
        if len(self.codes) > len(self.counters):
            self.counters = np.concatenate([self.counters, np.zeros(len(self.codes) - len(self.counters),
                                                                    np.int64)])
        return lookup[index]

    def block(self, table: pa.Table | None) -> _Block | None:
        """The chunk after the carried rows (None: the carried rows alone, after the last chunk)."""
        if table is None:
            return self.kept
        state = self.state
        times = time_values(table.column(state.time_col), state.time_col)
        codes = self._series_codes(table)
        raw = state.raw_inputs(table)
        has_truth = state.target in table.column_names
        target = read_target(table.column(state.target), state.target, state.task)[1] if has_truth else None
        file_rows = self.file_row + np.arange(table.num_rows)
        self.file_row += table.num_rows
        order = np.lexsort((times, codes)) if self.sort else np.argsort(codes, kind="stable")
        new = {"raw": raw[order], "time_values": times[order], "series": codes[order],
               "file_rows": file_rows[order], "target": target[order] if has_truth else None,
               "row_number": np.full(len(order), -1, np.int64)}
        return self._join(new, has_truth)

    def _join(self, new: dict, has_truth: bool) -> _Block | None:
        state, kept = self.state, self.kept
        n_kept = 0 if kept is None else len(kept.series)
        if kept is not None:
            if kept.has_truth != has_truth:
                raise SeqtrainError(f"data.path: column {state.target!r} is in some files and not others")
            new = {k: (np.concatenate([getattr(kept, k), v]) if v is not None else None)
                   for k, v in new.items()}
        is_new = np.arange(len(new["series"])) >= n_kept
        order = np.argsort(new["series"], kind="stable")  # carried rows stay before new rows
        new = {k: (v[order] if v is not None else None) for k, v in new.items()}
        is_new = is_new[order]
        validate.check_time_order(new["time_values"], new["series"], self.names_by_code, new["file_rows"],
                                  state.time_col)
        keep = self._nan_policy(new, is_new)
        if keep is not None:
            new = {k: (v[keep] if v is not None else None) for k, v in new.items()}
            is_new = is_new[keep]
        if len(new["series"]) == 0:
            return None
        row_number = new["row_number"]
        row_number[is_new] = chunk_row_numbers(new["series"][is_new], self.counters)
        target = new["target"]
        x = state.model_inputs(new["raw"], new["time_values"], target)
        labels = self._labels(target, new["series"], new["raw"])
        return _Block(x=x, raw=new["raw"], target=target, labels=labels,
                      times=time_as_number(new["time_values"]), time_values=new["time_values"],
                      series=new["series"], row_number=row_number, file_rows=new["file_rows"],
                      is_new=is_new, bounds=series_bounds(new["series"]), has_truth=has_truth)

    def _labels(self, target: np.ndarray | None, series: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """The truth where the table holds the target: class ids (-1: missing or unseen) or
        scaled values (NaN: missing); a built label (a move, a triple-barrier class) reads only
        rows of the block (and a meta-label the side among the raw inputs)."""
        state = self.state
        if target is None:
            return np.zeros(len(series), np.int64 if state.task == "classification" else np.float32)
        if state.label != "value":  # no move from a level that cannot make one: no truth there
            floor = 0 if state.label_target_kind == "price" else -1
            target = np.where(np.asarray(target, np.float64) > floor, target, np.nan)
        side = raw[:, state.features.index(state.side_column)] if state.side_column else None
        return state.encode_labels(target, series_bounds(series), side=side)

    def _nan_policy(self, rows: dict, is_new: np.ndarray) -> np.ndarray | None:
        """The run's ``data.nan_policy`` on the inputs read (carried rows are already clean)."""
        state = self.state
        x = rows["raw"]
        history = rows["target"] if state.target_history else None
        if state.nan_policy == "error":
            for j, name in enumerate(state.features):
                validate.check_finite(name, "data.features", x[:, j], rows["file_rows"])
            if history is not None:
                validate.check_finite(state.target, "data.target", history, rows["file_rows"])
            return None
        if state.nan_policy == "ffill":
            bounds = series_bounds(rows["series"])
            starts = np.repeat(bounds[:-1], np.diff(bounds))
            index = np.arange(len(is_new))
            rows["raw"] = x = np.column_stack(
                [forward_fill(x[:, j], ~np.isfinite(x[:, j]), starts, index) for j in range(x.shape[1])]
            ) if x.shape[1] else x
            if history is not None:
                rows["target"] = history = forward_fill(history, ~np.isfinite(history), starts, index)
        bad = ~np.isfinite(x).all(axis=1)
        if history is not None:
            bad |= ~np.isfinite(history)
        return ~bad if bad.any() else None

    def carry(self, block: _Block) -> None:
        """Keep the last ``seq_length + horizon + output_steps - 2`` rows of each series: all a
        later window can read."""
        series = block.series
        after = np.searchsorted(series, series, side="right") - np.arange(len(series))
        keep = after <= max(self.state.window.rows - 1, self.state.label_reach)  # and what a label reads
        self.kept = _Block(
            x=block.x[keep], raw=block.raw[keep], target=block.target[keep] if block.has_truth else None,
            labels=block.labels[keep], times=block.times[keep], time_values=block.time_values[keep],
            series=series[keep], row_number=block.row_number[keep], file_rows=block.file_rows[keep],
            is_new=np.zeros(int(keep.sum()), bool), bounds=series_bounds(series[keep]),
            has_truth=block.has_truth)


# -- the command ---------------------------------------------------------------------------------

PREDICT_KEYS = {"run": None, "data.path": None, "fold": None, "split": None, "ckpt": "best", "output": None,
                "overwrite": False, "last": False, "allow_new_series": False, "streaming": "auto",
                "batch_size": 1024, "device": "auto"}
def predict_command(argv: list[str]) -> None:
    """``seqtrain predict run=RUN data.path=TABLE [fold=K | split=K] [last=true] [ckpt=best|last|PATH]
    [output=FILE] [overwrite=true] [allow_new_series=true] [streaming=auto|true|false]
    [batch_size=N] [device=auto|cpu|cuda]``."""
    from rich.console import Console

    from seqtrain.data.streaming import in_memory_bytes, parse_bytes

    settings = parse_arguments(argv, PREDICT_KEYS, "predict")
    for key in ("run", "data.path"):
        if settings[key] is None:
            raise SeqtrainError(f"predict: {key}= is required, e.g. seqtrain predict run=outputs/DATE/TIME "
                                "data.path=new.parquet")
    run_dir = model_folder(Path(settings["run"]).expanduser(), settings["fold"], "predict", settings["split"])
    path = Path(settings["data.path"]).expanduser()
    predictor = Predictor.from_run(run_dir, settings["ckpt"], settings["batch_size"], settings["device"])
    output = Path(settings["output"]).expanduser() if settings["output"] else default_output(run_dir, path)
    check_output(output, path, settings["overwrite"], predictor._training_table())
    streaming = settings["streaming"]
    if streaming == "auto":
        rows = source.open_dataset(path).count_rows()
        needed = in_memory_bytes(rows, len(predictor.state.inputs) + 1)
        streaming = "true" if needed > parse_bytes(predictor.cfg.data.memory_budget) else "false"
    written = predictor.predict_path(str(path), output, settings["last"], settings["allow_new_series"],
                                     streaming=streaming == "true", overwrite=settings["overwrite"])
    Console(highlight=False).print(f"{written} prediction rows -> {output}", soft_wrap=True)
