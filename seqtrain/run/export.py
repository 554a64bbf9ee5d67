"""A trained network as a file that runs without seqtrain: TorchScript or ONNX.

The exported graph takes windows already scaled with ``data_state.json`` (``x`` ``(B, L, F)``,
plus ``future`` ``(B, k, K)`` where the model reads known-future columns and ``mask`` ``(B, L)``
where the run left-padded short histories) and returns what a user reads: class probabilities
``(B, C)``, or point forecasts ``(B, k)`` in the target's units (and ``quantiles``
``(B, k, Q)`` with a quantile loss). A run calibrated with ``calibrate=temperature`` exports its
calibrated probabilities (the temperature is part of the graph). Every export is checked against
PyTorch on sample windows before it is reported written.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seqtrain.config import parse_arguments
from seqtrain.engine.module import SeqModule
from seqtrain.errors import SeqtrainError
from seqtrain.files import copy_file, publish, write_json
from seqtrain.run.folders import model_folder, place_in_run, run_folder_holding
from seqtrain.run.predict import Predictor

log = logging.getLogger("seqtrain")
logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}
TOLERANCE = 1e-4  # largest difference from PyTorch's outputs accepted, on probabilities or scaled units


class ExportedNetwork(nn.Module):
    """The network with its readout (the module's own, ``SeqModule.read``): windows in,
    probabilities or forecasts in units out."""

    def __init__(self, module: SeqModule, inputs: list[str]):
        super().__init__()
        self.model, self.inputs, self.read = module.model, inputs, module.read
        self.classification = module.task == "classification"
        self.quantile = module.loss_name == "quantile"
        # calibrate=temperature's T (1 otherwise: a conformal calibration has no temperature)
        self.temperature = module.calibration.temperature if module.calibration else 1.0

    def forward(self, x: torch.Tensor, *extra: torch.Tensor):
        given = dict(zip(self.inputs[1:], extra, strict=True))
        read = self.read(self.model(x, future=given.get("future"), target=None, mask=given.get("mask")))
        if self.classification:
            return read["probs"]
        return (read["pred"], read["quantiles"]) if self.quantile else read["pred"]


def network_inputs(predictor: Predictor) -> list[str]:
    """The inputs the exported graph takes, in order."""
    state = predictor.state
    return ["x", *(["future"] if predictor.needs_label_rows else []),
            *(["mask"] if state.window.pad_short else [])]


def sample_inputs(predictor: Predictor, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Windows of the exported shapes (standard normal, as scaled inputs are; with ``mask``,
    some rows of some windows padded)."""
    state, spec = predictor.state, predictor.state.window
    generator = torch.Generator().manual_seed(seed)
    shapes = {"x": (batch, spec.seq_length, len(state.inputs)),
              "future": (batch, spec.output_steps, len(state.known_future))}
    inputs = []
    for name in network_inputs(predictor):
        if name == "mask":
            real = torch.arange(spec.seq_length)[None, :] >= torch.randint(0, spec.seq_length, (batch, 1),
                                                                         generator=generator)
            real[0] = True
            inputs[0] = inputs[0] * real.unsqueeze(-1)
            inputs.append(real)
        else:
            inputs.append(torch.randn(shapes[name], generator=generator))
    return tuple(inputs)


def export(predictor: Predictor, fmt: str, folder: Path, overwrite: bool = False) -> dict:
    """Write the network in format ``fmt`` with ``data_state.json`` beside it into ``folder``;
    what was written and how closely it reproduces PyTorch. The file is exported and checked in
    a scratch folder first, so a failed export leaves every earlier file as it was."""
    if fmt not in FORMATS:
        raise SeqtrainError(f"export: format={fmt!r}; choose {' or '.join(FORMATS)}")
    model_name = predictor.cfg.model.name
    reason = predictor.module.model.not_exportable
    if reason:
        raise SeqtrainError(f"export: model={model_name} cannot be exported: {reason}; use seqtrain predict")
    check_export_folder(folder, predictor, fmt, overwrite)
    names = network_inputs(predictor)
    network = ExportedNetwork(predictor.module.cpu().eval(), names).eval()
    example = sample_inputs(predictor, batch=4)
    with torch.inference_mode():
        network(*example)  # once eagerly: what a model caches on first use is a constant to exporters
    try:
        folder.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=folder))
    except OSError as exc:
        raise SeqtrainError(f"export: cannot write into {folder}: {exc.strerror or exc}") from None
    try:
        difference = _export_checked(network, example, names, scratch / FORMATS[fmt], fmt, predictor)
        for written in sorted(scratch.iterdir()):  # the model file (and ONNX's external data, if any)
            publish(written, folder / written.name, overwrite, "export")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    state = folder / "data_state.json"
    if not state.exists():
        copy_file(predictor.run_dir / "data_state.json", state, overwrite=False, key="export")
    outputs = (["probs"] if network.classification else ["pred", "quantiles"] if network.quantile
               else ["pred"])
    record = {"format": fmt, "file": FORMATS[fmt], "model": model_name, "inputs": names, "outputs": outputs,
              "max_abs_difference": difference, "temperature": network.temperature,
              "checkpoint": str(predictor.checkpoint) if predictor.checkpoint else None}
    # one entry per format exported into the folder
    write_json(folder / "export.json", {**_exported(folder), fmt: record}, default=None)
    return record


def check_export_folder(folder: Path, predictor: Predictor, fmt: str, overwrite: bool) -> None:
    """Refuse, before any work, an export folder where the export would lose a file: a run
    folder itself or one of its folders other than ``export/`` (never, whatever ``overwrite``
    says), a folder holding another run's export (its data_state.json differs: a model file
    beside another run's scaler would mislead), an earlier export in this format unless
    ``overwrite``, an ``export.json`` seqtrain did not write."""
    if folder.exists() and not folder.is_dir():
        raise SeqtrainError(f"export: output={folder} is a file; name a folder")
    target = folder.resolve()
    owner = run_folder_holding(target)
    if owner is not None and not target.is_relative_to(owner / "export"):
        raise SeqtrainError(f"export: output={folder} {place_in_run(target, owner)}, whose files are "
                            f"never overwritten; export under {owner / 'export'} or outside the run")
    state = folder / "data_state.json"
    if state.exists() and state.read_bytes() != (predictor.run_dir / "data_state.json").read_bytes():
        raise SeqtrainError(f"export: {folder} holds another run's export (its data_state.json differs "
                            f"from {predictor.run_dir / 'data_state.json'}); choose a new output= folder")
    model = folder / FORMATS[fmt]
    if model.exists() and not overwrite:
        raise SeqtrainError(f"export: {model} already exists (an earlier {fmt} export); overwrite=true "
                            "replaces it, or choose another output= folder")
    _exported(folder)


def _exported(folder: Path) -> dict:
    """The entries of ``folder``'s ``export.json`` (none when it has none); one line for a file
    of that name that seqtrain did not write."""
    index = folder / "export.json"
    try:
        exported = json.loads(index.read_text()) if index.exists() else {}
    except (OSError, ValueError):
        exported = None
    if not isinstance(exported, dict):
        raise SeqtrainError(f"export: {index} is not an export record seqtrain wrote; choose a new "
                            "output= folder")
    return exported


def _export_checked(network: nn.Module, example: tuple, names: list[str], path: Path, fmt: str,
                    predictor: Predictor) -> float:
    """Export ``network`` to ``path`` and check the file against PyTorch: the largest difference,
    or one line saying why it cannot be exported."""
    model_name = predictor.cfg.model.name
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            (_torchscript if fmt == "torchscript" else _onnx)(network, example, names, path)
    except SeqtrainError:
        raise
    except Exception as exc:  # the exporters raise many types; the first line says why
        why = _reason(exc)
        if "data-dependent" in why and predictor.state.window.pad_short:
            why += (" (with data.pad_short=true this model reads each window's real length, a "
                    "data-dependent path; a run without padding exports)")
        raise SeqtrainError(f"export: model={model_name} cannot be exported to {fmt}: {why}") from None
    try:
        difference = check_export(network, path, fmt, predictor)
    except Exception as exc:  # e.g. a traced graph that fixed a shape: it fails on another batch size
        raise SeqtrainError(f"export: model={model_name} exported to {fmt} fails on new windows: "
                            f"{_reason(exc)}") from None
    if difference > TOLERANCE:
        raise SeqtrainError(f"export: model={model_name} as {fmt} differs from PyTorch by {difference:.2g} "
                            f"(more than {TOLERANCE:g}); not written")
    return difference


def _reason(exc: Exception) -> str:
    """The first informative line of an exporter's exception, without terminal colours."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if isinstance(exc.__cause__, Exception):
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc.__cause__)) or text
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__


def _torchscript(network: nn.Module, example: tuple, names: list[str], path: Path) -> None:
    traced = torch.jit.trace(network, example, check_trace=False)
    traced.save(str(path))


def _onnx(network: nn.Module, example: tuple, names: list[str], path: Path) -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise SeqtrainError("export: format=onnx needs the onnx extra: pip install 'seqtrain[onnx]'"
                            ) from None
    outputs = ["probs"] if network.classification else ["pred", "quantiles"] if network.quantile else ["pred"]
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    shapes = ({0: batch}, tuple({0: batch} for _ in names[1:])) if len(names) > 1 else ({0: batch},)
    program = torch.onnx.export(network, example, dynamo=True, input_names=names, output_names=outputs,
                                dynamic_shapes=shapes, optimize=True, verbose=False)
    program.save(str(path))


def check_export(network: nn.Module, path: Path, fmt: str, predictor: Predictor) -> float:
    """Largest difference between the exported file's outputs and PyTorch's, on other windows
    and another batch size than the export saw."""
    inputs = sample_inputs(predictor, batch=7, seed=1)
    with torch.inference_mode():
        expected = network(*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.x
            loaded = torch.jit.load(str(path))
        with torch.inference_mode():
            got = loaded(*inputs)
        got = got if isinstance(got, tuple) else (got,)
        got = [g.numpy() for g in got]
    else:
        try:
            import onnxruntime
        except ImportError:
            log.warning("export: onnxruntime is not installed, so the ONNX file was not checked "
                        "(pip install 'seqtrain[onnx]')")
            return 0.0
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs, strict=True)}
        got = session.run(None, feed)
    return max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected, strict=True))


EXPORT_KEYS = {"run": None, "fold": None, "split": None, "format": "onnx", "ckpt": "best", "output": None,
               "overwrite": False}


def export_command(argv: list[str]) -> None:
    """``seqtrain export run=RUN [fold=K | split=K] [format=onnx|torchscript] [ckpt=best|last|PATH]
    [output=DIR] [overwrite=true]``."""
    from rich.console import Console

    settings = parse_arguments(argv, EXPORT_KEYS, "export")
    if settings["run"] is None:
        raise SeqtrainError("export: run= is required, e.g. "
                            "seqtrain export run=outputs/DATE/TIME format=onnx")
    run_dir = model_folder(Path(settings["run"]).expanduser(), settings["fold"], "export", settings["split"])
    # the exported graph takes and returns float32, whatever precision the run trained in
    predictor = Predictor.from_run(run_dir, settings["ckpt"], device="cpu", precision="32-true")
    folder = Path(settings["output"]).expanduser() if settings["output"] else run_dir / "export"
    record = export(predictor, settings["format"] or "", folder, settings["overwrite"])
    Console(highlight=False).print(
        f"{record['format']}: {folder / record['file']} (inputs {', '.join(record['inputs'])}; "
        f"max difference from PyTorch {record['max_abs_difference']:.1e}); data_state.json beside it",
        soft_wrap=True)
