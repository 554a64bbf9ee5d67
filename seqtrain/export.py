"""A trained network as a file that runs without seqtrain: TorchScript or ONNX.

The exported graph takes windows already scaled with ``data_state.json`` (``x`` ``(B, L, F)``,
plus ``future`` ``(B, k, K)`` where the model reads known-future columns and ``mask`` ``(B, L)``
where the run left-padded short histories) and returns what a user reads: class probabilities
``(B, C)``, or point forecasts ``(B, k)`` in the target's units (and ``quantiles``
``(B, k, Q)`` with a quantile loss). Every export is checked against PyTorch on sample windows
before it is reported written.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seqtrain.errors import SeqtrainError
from seqtrain.module import SeqModule
from seqtrain.predict import Predictor, parse_arguments

log = logging.getLogger("seqtrain")
logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}
TOLERANCE = 1e-4  # largest difference from PyTorch's outputs accepted, on probabilities or scaled units


class ExportedNetwork(nn.Module):
    """The network with its readout: windows in, probabilities or forecasts in units out."""

    def __init__(self, module: SeqModule, inputs: list[str]):
        super().__init__()
        self.model, self.inputs = module.model, inputs
        self.classification = module.task == "classification"
        self.quantile = module.loss_name == "quantile"
        self.median = 0 if self.classification else module.median
        self.mean, self.std = float(module.target_mean), float(module.target_std)

    def forward(self, x: torch.Tensor, *extra: torch.Tensor):
        given = dict(zip(self.inputs[1:], extra, strict=True))
        out = self.model(x, future=given.get("future"), target=None, mask=given.get("mask")).float()
        if self.classification:
            return out[:, 0].softmax(-1)
        pred = out[..., self.median] * self.std + self.mean
        return (pred, out * self.std + self.mean) if self.quantile else pred


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


def export(predictor: Predictor, fmt: str, folder: Path) -> dict:
    """Write the network in format ``fmt`` with ``data_state.json`` beside it into ``folder``;
    what was written and how closely it reproduces PyTorch."""
    if fmt not in FORMATS:
        raise SeqtrainError(f"export: format={fmt!r}; choose {' or '.join(FORMATS)}")
    model_name = predictor.cfg.model.name
    reason = predictor.module.model.not_exportable
    if reason:
        raise SeqtrainError(f"export: model={model_name} cannot be exported: {reason}; use seqtrain predict")
    names = network_inputs(predictor)
    network = ExportedNetwork(predictor.module.cpu().eval(), names).eval()
    example = sample_inputs(predictor, batch=4)
    with torch.inference_mode():
        network(*example)  # once eagerly: what a model caches on first use is a constant to exporters
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FORMATS[fmt]
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            (_torchscript if fmt == "torchscript" else _onnx)(network, example, names, path)
    except SeqtrainError:
        raise
    except Exception as exc:  # the exporters raise many types; the first line says why
        path.unlink(missing_ok=True)
        why = _reason(exc)
        if "data-dependent" in why and predictor.state.window.pad_short:
            why += (" (with data.pad_short=true this model reads each window's real length, a "
                    "data-dependent path; a run without padding exports)")
        raise SeqtrainError(f"export: model={model_name} cannot be exported to {fmt}: {why}") from None
    try:
        difference = check_export(network, path, fmt, predictor)
    except Exception as exc:  # e.g. a traced graph that fixed a shape: it fails on another batch size
        path.unlink(missing_ok=True)
        raise SeqtrainError(f"export: model={model_name} exported to {fmt} fails on new windows: "
                            f"{_reason(exc)}") from None
    if difference > TOLERANCE:
        path.unlink(missing_ok=True)
        raise SeqtrainError(f"export: model={model_name} as {fmt} differs from PyTorch by {difference:.2g} "
                            f"(more than {TOLERANCE:g}); not written")
    shutil.copy2(predictor.run_dir / "data_state.json", folder / "data_state.json")
    outputs = (["probs"] if network.classification else ["pred", "quantiles"] if network.quantile
               else ["pred"])
    record = {"format": fmt, "file": path.name, "model": model_name, "inputs": names, "outputs": outputs,
              "max_abs_difference": difference}
    index = folder / "export.json"  # one entry per format exported into the folder
    exported = json.loads(index.read_text()) if index.exists() else {}
    index.write_text(json.dumps({**exported, fmt: record}, indent=2))
    return record


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


EXPORT_KEYS = {"run": None, "format": "onnx", "ckpt": "best", "output": None}


def export_command(argv: list[str]) -> None:
    """``seqtrain export run=RUN [format=onnx|torchscript] [ckpt=best|last|PATH] [output=DIR]``."""
    from rich.console import Console

    settings = parse_arguments(argv, EXPORT_KEYS, "export")
    if settings["run"] is None:
        raise SeqtrainError("export: run= is required, e.g. "
                            "seqtrain export run=outputs/DATE/TIME format=onnx")
    run_dir = Path(str(settings["run"])).expanduser()
    predictor = Predictor.from_run(run_dir, str(settings["ckpt"]), device="cpu")
    folder = Path(str(settings["output"])).expanduser() if settings["output"] else run_dir / "export"
    record = export(predictor, str(settings["format"]), folder)
    Console(highlight=False).print(
        f"{record['format']}: {folder / record['file']} (inputs {', '.join(record['inputs'])}; "
        f"max difference from PyTorch {record['max_abs_difference']:.1e}); data_state.json beside it",
        soft_wrap=True)
