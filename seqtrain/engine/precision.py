"""Which numeric precision a run really uses, on the device it runs on.

``trainer.precision`` accepts several spellings; the device decides what can run. On a CPU,
fp16 autocast does not exist, so 16/16-mixed means bf16-mixed — and bf16 is only worth running
(or runs at all, for oneDNN's LSTM/GRU kernels) on CPUs with native bf16 instructions
(AVX-512 BF16 or AMX). Elsewhere bf16 would be emulated: slower than float32, and missing the
recurrent kernels. Such a CPU trains in 32-true and the run says so once.
"""

from __future__ import annotations

import os

import torch
from lightning.pytorch.plugins.precision import DoublePrecision, MixedPrecision, Precision

from seqtrain.config import PRECISIONS  # accepted spellings -> Lightning's
from seqtrain.errors import SeqtrainError

#: ``SEQTRAIN_CPU_BF16=0`` or ``1`` overrides the CPU check (tests force both paths with it)
CPU_BF16_ENV = "SEQTRAIN_CPU_BF16"


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 instructions (AVX-512 BF16 or AMX), where bf16 autocast pays and
    every kernel exists; ``SEQTRAIN_CPU_BF16=0|1`` overrides the check."""
    forced = os.environ.get(CPU_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(requested, on_gpu: bool) -> tuple[str, str | None]:
    """Lightning's precision for ``trainer.precision=requested`` on this device, and the one line
    to tell the user when it differs from what they asked for (else None)."""
    precision = PRECISIONS.get(str(requested))
    if precision is None:
        raise SeqtrainError(f"trainer.precision: {requested!r}; choose one of {', '.join(PRECISIONS)}")
    if on_gpu:
        if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
            return "16-mixed", (f"trainer.precision={requested}: this GPU has no bf16; "
                                "using 16-mixed (fp16 with a loss scaler)")
        return precision, None
    if precision not in ("16-mixed", "bf16-mixed"):
        return precision, None
    if not cpu_has_native_bf16():
        return "32-true", (f"trainer.precision={requested}: this CPU has no native bf16 (AVX-512 BF16 "
                           "or AMX), where bf16 is emulated and slower; training in 32-true")
    if precision == "16-mixed":
        return "bf16-mixed", (f"trainer.precision={requested}: fp16 autocast is not supported on CPU; "
                              "using bf16-mixed")
    return precision, None


def precision_plugin(requested, device: torch.device) -> Precision:
    """Lightning's precision plugin for ``trainer.precision=requested`` on ``device``, as the
    Trainer builds it: what runs a network outside a Trainer (``seqtrain predict``) with the
    test pass's autocast (or dtype), so both give the same numbers."""
    precision, _ = resolve_precision(requested, on_gpu=device.type == "cuda")
    if precision in ("16-mixed", "bf16-mixed"):
        return MixedPrecision(precision, "cuda" if device.type == "cuda" else "cpu")
    return DoublePrecision() if precision == "64-true" else Precision()
