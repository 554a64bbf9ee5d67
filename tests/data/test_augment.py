"""Each augmentation: shape and dtype kept, the configured strength, no look-ahead, train only."""

import pytest
import torch

from seqtrain.engine import augment
from seqtrain.engine.augment import Augmenter
from seqtrain.engine.module import SeqModule
from seqtrain.models.registry import build_model
from tests.conftest import TINY

ALL = {"jitter": {"sigma": 0.1}, "scaling": {"sigma": 0.1}, "magnitude_warp": {"sigma": 0.2},
       "time_warp": {"sigma": 0.2}, "window_slice": {"ratio": 0.8}, "channel_dropout": {"rate": 0.3}}


@pytest.fixture
def x():
    torch.manual_seed(0)
    return torch.randn(512, 40, 6)


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shape_and_dtype(name, dtype, x):
    out = Augmenter.TRANSFORMS[name](x.to(dtype), **ALL[name])
    assert out.shape == x.shape and out.dtype == dtype and torch.isfinite(out.float()).all()


def test_jitter_noise_has_the_configured_sigma(x):
    assert (augment.jitter(x, 0.1) - x).std().item() == pytest.approx(0.1, rel=0.02)


def test_scaling_factor_per_window_and_channel(x):
    factor = augment.scaling(torch.ones_like(x), 0.1)
    assert (factor == factor[:, :1]).all()  # constant along time
    assert factor[:, 0].std().item() == pytest.approx(0.1, rel=0.1)


def test_magnitude_warp_is_smooth_and_centred_on_one(x):
    curve = augment.magnitude_warp(torch.ones_like(x), 0.2, knots=4)
    assert curve.mean().item() == pytest.approx(1.0, abs=0.01)
    assert curve[:, 0].std().item() == pytest.approx(0.2, rel=0.15)  # at a knot: the full sigma
    assert curve.diff(dim=1).abs().max() < 0.2 * 6  # no jumps between neighbouring rows


def test_time_warp_is_a_monotone_resampling_with_the_ends_fixed(x):
    ramp = torch.arange(40.0).view(1, 40, 1).expand(64, 40, 1).contiguous()
    warped = augment.time_warp(ramp, 0.3)
    assert (warped.diff(dim=1) >= 0).all()
    assert (warped[:, 0] == 0).all() and torch.allclose(warped[:, -1], torch.tensor(39.0))
    assert not torch.allclose(warped, ramp)
    out = augment.time_warp(x, 0.3)
    torch.testing.assert_close(out[:, -1], x[:, -1])  # the window's last row stays the last


def test_window_slice_keeps_the_last_row_and_stretches_the_rest():
    ramp = torch.arange(40.0).view(1, 40, 1).expand(256, 40, 1).contiguous()
    sliced = augment.window_slice(ramp, 0.8)
    torch.testing.assert_close(sliced[:, -1], ramp[:, -1])
    first = sliced[:, 0, 0]
    assert (first >= 0).all() and (first <= 0.2 * 39 + 1e-4).all() and first.std() > 0
    assert (sliced.diff(dim=1) >= 0).all()


def test_channel_dropout_zeroes_whole_channels_at_the_configured_rate(x):
    out = augment.channel_dropout(x, 0.3)
    dropped = (out == 0).all(dim=1)
    assert dropped.float().mean().item() == pytest.approx(0.3, abs=0.03)
    kept = ~dropped
    assert torch.equal(out.transpose(1, 2)[kept], x.transpose(1, 2)[kept])


def test_mixup_mixes_windows_and_labels_alike(x):
    y = torch.randint(0, 3, (512,))
    mixed_x, soft = augment.mixup(x, y, 3, alpha=0.4)
    assert soft.shape == (512, 3) and torch.allclose(soft.sum(1), torch.ones(512))
    lam = soft.gather(1, y[:, None])[:, 0]  # >= lambda: the own class weight (partners may share it)
    assert ((lam > 0) & (lam <= 1 + 1e-6)).all() and lam.std() > 0.05


def test_no_transform_reads_beyond_the_window_and_padded_rows_stay_zero(x):
    augmenter = Augmenter({name: {"p": 1.0, **args} for name, args in ALL.items()})
    mask = torch.ones(512, 40, dtype=torch.bool)
    mask[:, :10] = False
    out, _ = augmenter(x * mask.unsqueeze(-1), torch.zeros(512, dtype=torch.long), mask)
    assert (out[:, :10] == 0).all()
    off = Augmenter({name: {"p": 0.0, **args} for name, args in ALL.items()})
    assert not off.active and torch.equal(off(x, torch.zeros(512))[0], x)


def _left_padded(batch=64, length=20, channels=3):
    """Windows whose real rows hold a constant 5 (any mixing with padded zeros shows) after
    ragged left padding."""
    mask = torch.arange(length)[None, :] >= torch.randint(0, length - 2, (batch, 1))
    return 5.0 * mask.unsqueeze(-1).expand(batch, length, channels).float(), mask


@pytest.mark.parametrize("name", ["time_warp", "window_slice"])
def test_time_transforms_move_values_among_real_rows_only(name):
    torch.manual_seed(0)
    x, mask = _left_padded()
    out, _ = Augmenter({name: {"p": 1.0, **ALL[name]}})(x, torch.zeros(len(x), dtype=torch.long), mask)
    assert (out[~mask] == 0).all()  # nothing moved into padded rows
    torch.testing.assert_close(out[mask], x[mask])  # and no padded zero moved into real rows
    free = torch.randn(8, 20, 3)  # without padding the transform still changes the window
    assert not torch.allclose(Augmenter.TRANSFORMS[name](free, **ALL[name]), free)


def test_mixup_keeps_padded_rows_zero():
    torch.manual_seed(0)
    x, mask = _left_padded()
    y = torch.randint(0, 2, (len(x),))
    out, soft = Augmenter({"mixup": {"p": 1.0, "alpha": 0.4}}, n_classes=2)(x * torch.rand(len(x), 1, 1),
                                                                          y, mask)
    assert (out[~mask] == 0).all() and soft.shape == (len(x), 2)


@pytest.mark.filterwarnings("ignore:You are trying to")
def test_augmentation_applies_to_training_batches_only(x):
    model = build_model("lstm", {"hidden_size": 8}, 6, 2)
    module = SeqModule(model, "classification", {"name": "adam", "lr": 1e-3}, {"name": "none"},
                       n_classes=2, augment={"jitter": {"p": 1.0, "sigma": 1.0}})
    seen = []
    module.model.forward = lambda x, **kw: seen.append(x.clone()) or torch.zeros(len(x), 1, 2)
    batch = {"x": x[:8], "y": torch.zeros(8, dtype=torch.long)}
    module._step(batch, "train")
    module._step(batch, "val")
    assert not torch.equal(seen[0], x[:8]) and torch.equal(seen[1], x[:8])


def test_cli_trains_with_augmentation(run_cli):
    result = run_cli("augment=light", "augment.mixup.p=0.5", "augment.window_slice.p=0.5", *TINY)
    assert result.code == 0, result.err
    bad = run_cli("+augment.cutout.p=0.5", *TINY)
    assert bad.code == 2 and "augment.cutout" in bad.err
