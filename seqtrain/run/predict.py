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
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from omegaconf import DictConfig, OmegaConf

from seqtrain.config import parse_arguments
from seqtrain.data import source
from seqtrain.data.cases import predict_rows
from seqtrain.data.chunks import Chunk, TableChunks
from seqtrain.data.columns import in_zone, time_zone
from seqtrain.data.rows import RowBlock, time_as_number
from seqtrain.data.state import DataState, HasDataState
from seqtrain.data.windows import forecast_ends, row_numbers
from seqtrain.engine.allocator import settle_malloc
from seqtrain.engine.assemble import build_module
from seqtrain.engine.calibration import Calibration
from seqtrain.engine.module import SeqModule
from seqtrain.engine.precision import Precision, precision_plugin
from seqtrain.errors import SeqtrainError
from seqtrain.files import atomic
from seqtrain.report.cases import case_frame
from seqtrain.report.predictions import predictions_frame
from seqtrain.run.folders import check_output, checkpoint_path, default_output, model_folder, run_config

log = logging.getLogger("seqtrain")


@dataclass
class _SavedData(HasDataState):
    """A saved data state, standing in for the training data when the network is rebuilt."""

    state: DataState


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
        module = build_module(cfg, _SavedData(state))
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
    predicts each window (or, with ``newest``, the newest of each series), each batch as the test
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

    def predict_frame(self, frame: pd.DataFrame, newest: bool = False, allow_new_series: bool = False,
                      name: str = "the table", *, last: bool = False) -> pd.DataFrame:
        """Predictions of every window of a DataFrame (columns as in the training table; a time
        index is used as the time column when the column itself is absent); ``newest``: only the
        newest window of each series (``last``: its older spelling)."""
        if any(level in self.state.needed_columns for level in frame.index.names):
            frame = frame.reset_index()  # time (and series) as the index
        try:
            table = pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SeqtrainError(f"{name}: a column mixes types ({str(exc).splitlines()[0]}); give each "
                                "column one type") from None
        self.state.check_schema(table.schema, name)
        if self.state.cases:
            return self.predict_cases(table)
        parts = list(self.predict_chunks(_slices(table, whole=self.state.sort), newest or last,
                                         allow_new_series, in_memory=True))
        if not parts:
            raise SeqtrainError(self._no_window_message(name))
        return in_zone(pd.concat(parts, ignore_index=True), time_zone(table.schema, self.state.time_col))

    def predict_path(self, path: str, output: str | Path, newest: bool = False,
                     allow_new_series: bool = False, streaming: bool = False, overwrite: bool = False,
                     *, last: bool = False) -> int:
        """Predictions of every window (``newest``: of the newest of each series; ``last``: its
        older spelling) of the Parquet table at ``path``, written to ``output`` (Parquet,
        atomically: a failure leaves no half file, and an existing ``output`` is refused before
        any work unless ``overwrite``; see ``check_output``); the number of rows written."""
        output = Path(output).expanduser()
        check_output(output, Path(path).expanduser(), overwrite, self._training_table())
        dataset = source.open_dataset(path)
        self.state.check_schema(dataset.schema, path)
        zone = time_zone(dataset.schema, self.state.time_col)  # times are written back in it
        columns = list(self.state.needed_columns)
        if self.state.target in dataset.schema.names and self.state.target not in columns:
            columns.append(self.state.target)  # the truth, where known, beside the predictions
        if self.state.cases:  # whole cases: the table at once, one prediction per case
            with atomic(output, overwrite, "output") as tmp:
                return self._write([self.predict_cases(source.read_columns(path, columns))], tmp)
        if streaming:
            if self.state.sort:
                raise SeqtrainError("streaming: the run sorted its rows (data.sort=true), which needs the "
                                    "whole table in memory; sort the files or set streaming=false")
            row_groups = source.row_groups(dataset)
            chunks = (source.read_row_group(row_group, dataset.schema, columns) for row_group in row_groups)
        else:
            chunks = _slices(source.read_columns(path, columns), whole=self.state.sort)
        with atomic(output, overwrite, "output") as tmp:
            parts = (in_zone(part, zone)
                     for part in self.predict_chunks(chunks, newest or last, allow_new_series,
                                                     in_memory=not streaming))
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

    def predict_chunks(self, chunks: Iterable[pa.Table], newest: bool = False, allow_new_series: bool = False,
                       in_memory: bool = False, *, last: bool = False) -> Iterator[pd.DataFrame]:
        """Prediction frames, chunk by chunk (see the module docstring); ``newest``: one frame of
        the newest window of each series, at the end (``last``: its older spelling)."""
        newest = newest or last
        stream = TableChunks(self.state, allow_new_series, sort=in_memory and self.state.sort)
        newest_frames: dict[int, pd.DataFrame] = {}
        for table in itertools.chain(chunks, [None]):  # None: the rows carried after the last chunk
            block = stream.block(table)
            if block is None:
                continue
            ends = forecast_ends(block.bounds, block.row_number, block.is_new, self.state.window.history,
                                 self.state.window.span, table is None, self.needs_label_rows)
            if newest:
                ends = _newest_per_series(ends, block.series)
            if len(ends):
                frame, codes = self._predict(block, ends, stream.names_by_code)
                if not newest:
                    yield frame
                for code in np.unique(codes) if newest else ():
                    newest_frames[int(code)] = frame[codes == code]
            stream.carry(block)
        if newest_frames:
            yield pd.concat([newest_frames[c] for c in sorted(newest_frames)], ignore_index=True)

    def predict_cases(self, table: pa.Table) -> pd.DataFrame:
        """One prediction per case of a case table (``data=cases``), by the training rules
        (``cases.predict_rows``: the same length rule and scaler, nothing refit)."""
        rows, ends = predict_rows(self.state, table)
        has_truth = rows.values is not None
        labels = self.state.encode_values(rows.values) if has_truth else np.zeros(len(rows.series), np.int64)
        block = SimpleNamespace(x=rows.x, labels=labels, times=time_as_number(rows.times), series=rows.series,
                                row_number=row_numbers(rows.bounds), has_truth=has_truth)
        frame, _ = self._predict(block, ends, rows.names)
        return case_frame(frame)

    @torch.inference_mode()
    def _predict(self, block: Chunk, ends: np.ndarray,
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
    """Of the window ends (sorted, rows grouped by series), the newest one of each series."""
    if len(ends) == 0:
        return ends
    codes = series[ends]
    return ends[np.append(codes[1:] != codes[:-1], True)]




# -- the command ---------------------------------------------------------------------------------

PREDICT_KEYS = {"run": None, "data.path": None, "fold": None, "split": None, "ckpt": "best", "output": None,
                "overwrite": False, "newest": False, "allow_new_series": False, "streaming": "auto",
                "batch_size": 1024, "device": "auto"}
OLDER_SPELLINGS = {"last": "newest"}  # last=true: the newest window of each series, as first spelled


def predict_command(argv: list[str]) -> None:
    """``seqtrain predict run=RUN data.path=TABLE [fold=K | split=K] [newest=true] [ckpt=best|last|PATH]
    [output=FILE] [overwrite=true] [allow_new_series=true] [streaming=auto|true|false]
    [batch_size=N] [device=auto|cpu|cuda]``."""
    from rich.console import Console

    from seqtrain.data.loading import in_memory_bytes, parse_bytes

    settings = parse_arguments(argv, PREDICT_KEYS, "predict", older=OLDER_SPELLINGS)
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
    written = predictor.predict_path(str(path), output, settings["newest"], settings["allow_new_series"],
                                     streaming=streaming == "true", overwrite=settings["overwrite"])
    Console(highlight=False).print(f"{written} prediction rows -> {output}", soft_wrap=True)
