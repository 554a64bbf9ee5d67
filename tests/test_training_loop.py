"""What the training loop does per step, kept lean: Lightning's no-op profiler, the progress
bar's updates, the module's per-step attributes."""

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, RichProgressBar
from lightning.pytorch.profilers import SimpleProfiler

from seqtrain.engine import callbacks
from seqtrain.engine.callbacks import EarlyStoppingAfterWarmup, ProgressBar, QuietProfiler
from seqtrain.engine.module import SeqModule
from seqtrain.engine.trainer import make_trainer
from seqtrain.errors import SeqtrainError
from seqtrain.models.registry import build_model


def test_without_a_profiler_the_trainer_gets_the_quiet_one_and_a_named_profiler_is_kept(tmp_path):
    quiet = make_trainer({"profiler": None, "accelerator": "cpu", "logger": False}, [], tmp_path, False)
    assert isinstance(quiet.profiler, QuietProfiler)
    named = make_trainer({"profiler": "simple", "accelerator": "cpu", "logger": False}, [], tmp_path, False)
    assert isinstance(named.profiler, SimpleProfiler)


def test_a_trainer_setting_lightning_refuses_is_one_line(tmp_path):
    """Lightning's MisconfigurationException (not a ValueError) is one line naming the group."""
    with pytest.raises(SeqtrainError, match=r"^trainer: `Trainer\(devices=0\)` value is not a valid input"):
        make_trainer({"devices": 0, "accelerator": "cpu", "logger": False}, [], tmp_path, False)


def test_the_quiet_profiler_nests_and_lets_exceptions_through():
    profiler = QuietProfiler()
    with profiler.profile("outer"), profiler.profile("inner"):
        pass
    with pytest.raises(ValueError), profiler.profile("failing"):
        raise ValueError("kept")


def test_training_batches_update_the_bar_when_it_is_redrawn_and_at_the_epoch_end(monkeypatch):
    """Each update reads the loss (a device sync on a GPU) and rebuilds the metrics: done at most
    ``refresh_rate`` times a second, and always at the epoch's last batch, so the bar ends full."""
    updated = []
    monkeypatch.setattr(RichProgressBar, "on_train_batch_end",
                        lambda self, trainer, module, outputs, batch, batch_idx: updated.append(batch_idx))
    clock = iter([0.0, 0.01, 0.02, 0.05, 0.11, 0.12, 0.13])
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: next(clock))
    bar = ProgressBar(refresh_rate=10)
    bar._trainer = SimpleNamespace(num_training_batches=7, max_epochs=10, max_steps=-1)
    for batch_idx in range(7):
        bar.on_train_batch_end(None, None, None, None, batch_idx)
    assert updated == [0, 4, 6]  # the first, the one 0.1 s later, the last


def test_per_step_attributes_stay_plain_attributes():
    """Set on every hook call or step past nn.Module's bookkeeping: never parameters, buffers or
    checkpoint content."""
    model = build_model("tcn", {"num_channels": [4], "kernel_size": 3, "dropout": 0.0}, 3, 2, 1, 0)
    module = SeqModule(model, "classification", {"name": "adam", "lr": 1e-3}, {"name": "none"}, n_classes=2)
    keys = set(module.state_dict())
    module._current_fx_name = "training_step"
    module.step_grad_norm = torch.tensor(1.0)
    module.last_train_loss = torch.tensor(0.5)
    module.last_of_epoch = True
    assert set(module.state_dict()) == keys and "step_grad_norm" not in dict(module.named_buffers())
    assert module._current_fx_name == "training_step" and float(module.last_train_loss) == 0.5
    module.head_scale = torch.nn.Parameter(torch.ones(1))  # any other name: nn.Module's rules still
    assert "head_scale" in dict(module.named_parameters())


def test_early_stopping_keeps_lightnings_checkpoint_key():
    """Built once instead of on every hook call; the same key, so checkpoints resume as before."""
    stopping = EarlyStoppingAfterWarmup(monitor="val_acc", mode="max")
    assert stopping.state_key == EarlyStopping.state_key.fget(stopping)
    assert stopping.state_key == "EarlyStoppingAfterWarmup{'monitor': 'val_acc', 'mode': 'max'}"
