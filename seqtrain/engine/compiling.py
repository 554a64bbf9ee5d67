"""``trainer.compile``: torch.compile of the network, or eager with one line saying why.

The network is compiled in place (``nn.Module.compile``), so its state dict, checkpoints,
``seqtrain predict`` and exports are those of the eager network. Compilation happens on the
first call; one training step on a real batch is tried first, so a model the compiler cannot
handle trains eager instead of failing mid-run.
"""

from __future__ import annotations

import contextlib
import logging

import torch

from seqtrain.errors import SeqtrainError, first_line

log = logging.getLogger("seqtrain")

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Compiled against eager training on a CPU (benchmarks/compile_speed.py, BENCHMARKS.md): with
# trainer.compile=true a model is compiled on a CPU only where that paid (nhits so far: its
# MLPs' elementwise work fuses); force (or a mode) compiles it anyway. On a GPU, true always
# compiles.
CPU_SPEEDUP = {"lstm": 0.97, "gru": 0.97, "tcn": 0.60, "informer": 0.98, "cnn_lstm": 0.78,
               "seq2seq_attention": 0.99, "tft": 0.91, "inception_time": 1.03, "nhits": 1.09,
               "patchtst": 0.85}
PAYS = 1.05


def compile_mode(setting) -> str | None:
    """``trainer.compile``: false/null -> None (eager), true -> "auto" (compile where it pays),
    force -> "default", or a torch.compile mode (compiled whatever the device)."""
    if setting in (None, False, "false", "False"):
        return None
    if setting in (True, "true", "True"):
        return "auto"
    if setting == "force":
        return "default"
    if setting not in MODES:
        raise SeqtrainError(f"trainer.compile: {setting!r}; choose false, true, force or a torch.compile "
                            f"mode ({', '.join(MODES)})")
    return str(setting)


def worth_compiling(name: str, on_gpu: bool) -> str | None:
    """None where ``trainer.compile=true`` should compile model ``name``; else why not."""
    if on_gpu or CPU_SPEEDUP.get(name, PAYS) >= PAYS:
        return None
    return f"{name} trains faster eager on a CPU ({CPU_SPEEDUP[name]:.2f}x compiled in BENCHMARKS.md)"


def compile_network(module, batch: dict, mode: str, name: str, context=None) -> str:
    """Compile ``module.model`` and try one forward and backward pass on ``batch`` (gradients
    are cleared after it, under ``context``, the run's autocast); on failure, go back to eager
    with a warning naming model ``name``. Returns what runs:
    ``compiled (<mode>)`` or ``eager (<why>)``."""
    network = module.model
    # graph breaks and fallbacks are the compiler's business: a failure is reported below
    torch._logging.set_logs(dynamo=logging.ERROR, inductor=logging.ERROR)
    network.compile(mode=mode)
    try:
        was_training = module.training
        module.train()
        with context if context is not None else contextlib.nullcontext():
            out = module(batch)
        out.float().sum().backward()
        module.train(was_training)
    except Exception as exc:  # the compiler's errors have no common type
        network._compiled_call_impl = None  # back to the eager forward
        why = first_line(exc)[:160]
        log.warning("trainer.compile: %s did not compile (%s); training eager", name, why)
        return f"eager ({why})"
    finally:
        module.zero_grad(set_to_none=True)
    return f"compiled ({mode})"
