"""Every architecture: the model contract (shapes, attention), causality, and paper details."""

import pytest
import torch

from seqtrain.errors import SeqtrainError
from seqtrain.models.layers import FullAttention, ProbSparseAttention
from seqtrain.models.registry import MODELS, build_model, model_class

SMALL = {
    "lstm": {"hidden_size": 8},
    "gru": {"hidden_size": 8, "bidirectional": True},
    "seq2seq_attention": {"hidden_size": 8},
    "tcn": {"num_channels": [8, 8], "kernel_size": 2},
    "tft": {"hidden_size": 8, "hidden_continuous_size": 4, "attention_head_size": 2},
    "informer": {"d_model": 8, "n_heads": 2, "d_ff": 16, "label_len": 4},
    "cnn_lstm": {"channels": [8], "hidden_size": 8},
    "inception_time": {"nb_filters": 4, "depth": 3, "kernel_size": 8, "bottleneck": 4},
    "nhits": {"hidden_size": 8},
    "patchtst": {"d_model": 8, "n_heads": 2, "d_ff": 16, "num_layers": 2, "head_hidden": 8},
}
WITH_ATTENTION = {"seq2seq_attention", "tft", "informer", "patchtst"}
DECODERS = {"seq2seq_attention": {}, "tft": {}, "informer": {"attention": "full"}}


def build(name, output_size=1, steps=1, known=0, input_size=3, **extra):
    torch.manual_seed(0)
    return build_model(name, {**SMALL[name], **extra}, input_size, output_size, steps, known)


def test_every_model_is_registered():
    assert set(MODELS) == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("output_size,steps,known", [
    (3, 1, 0),  # classification, 3 classes
    (1, 1, 0),  # one-step regression
    (1, 4, 0),  # multi-step regression
    (3, 4, 2),  # multi-step quantile regression with known-future columns
])
def test_output_shape_and_attention(name, output_size, steps, known):
    model = build(name, output_size, steps, known)
    x, future = torch.randn(5, 12, 3), torch.randn(5, steps, known) if known else None
    target = torch.randn(5, steps)
    assert model(x, future=future, target=target).shape == (5, steps, output_size)
    model.eval()
    assert model(x, future=future).shape == (5, steps, output_size)
    if name in WITH_ATTENTION:
        attention = model.attention
        assert attention.shape[0] == 5 and attention.shape[-1] == 12
        total = attention.sum(-1)
        if name == "tft":  # later decoder steps also attend to earlier decoder steps
            assert (total <= 1 + 1e-5).all()
            total = total[:, 0]
        torch.testing.assert_close(total, torch.ones_like(total))
    summary = model.summary()
    assert summary["parameters"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,pool", [("tcn", None), ("cnn_lstm", 1), ("cnn_lstm", 2), ("cnn_lstm", 3)])
def test_step_t_never_depends_on_later_inputs(name, pool):
    extra = {} if pool is None else {"pool": pool, "channels": [8, 8]}
    model = build(name, **extra).eval()
    x = torch.randn(2, 17, 3)
    features = model.features(x)
    step = 1 if pool is None else pool ** 2
    pad = (-x.size(1)) % step
    for t in range(x.size(1)):
        changed = x.clone()
        changed[:, t + 1:] += torch.randn_like(changed[:, t + 1:]) * 10
        after = model.features(changed)
        clean = (t + 1 + pad) // step  # output steps whose inputs all lie at or before row t
        torch.testing.assert_close(after[:, :clean], features[:, :clean])
        if clean < features.size(1):
            assert not torch.allclose(after[:, clean:], features[:, clean:])


def test_tcn_receptive_field_matches_its_formula_and_the_data():
    model = build("tcn", num_channels=[4, 4, 4], kernel_size=3).eval()
    assert model.receptive_field == 1 + 2 * 2 * (2**3 - 1)  # 29
    x = torch.randn(1, 40, 3, requires_grad=True)
    model.features(x)[0, -1].sum().backward()
    reached = (x.grad[0].abs().sum(-1) > 0).nonzero().flatten()
    assert 40 - reached.min().item() == model.receptive_field


@pytest.mark.parametrize("seq_length", [5, 61, 62, 168, 500])
def test_tcn_given_one_width_stacks_the_fewest_levels_that_cover_the_window(seq_length):
    model = build_model("tcn", {"num_channels": 4}, 3, 1, seq_length=seq_length)
    assert model.receptive_field >= seq_length
    fewer = 1 + 2 * (model.kernel_size - 1) * (2 ** (model.levels - 1) - 1)
    assert model.levels == 2 or fewer < seq_length
    assert all(block.conv1.conv.out_channels == 4 for block in model.blocks)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_decoder_step_never_depends_on_later_known_future(name):
    model = build(name, steps=5, known=2, **DECODERS[name]).eval()
    x, future = torch.randn(3, 12, 3), torch.randn(3, 5, 2)
    before = model(x, future=future)
    for j in range(4):
        changed = future.clone()
        changed[:, j + 1:] += 10
        after = model(x, future=changed)
        torch.testing.assert_close(after[:, : j + 1], before[:, : j + 1])
        assert not torch.allclose(after[:, j + 1:], before[:, j + 1:])


@pytest.mark.parametrize("causal", [False, True])
def test_probsparse_with_a_large_factor_is_full_attention(causal):
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 3, 10, 4) for _ in range(3))
    full, full_weights = FullAttention(causal=causal)(q, k, v)
    sparse, sparse_weights = ProbSparseAttention(factor=100, causal=causal)(q, k, v)
    torch.testing.assert_close(sparse, full)
    torch.testing.assert_close(sparse_weights, full_weights)


def test_probsparse_with_a_small_factor_lets_only_top_queries_attend():
    torch.manual_seed(2)
    q, k, v = (torch.randn(1, 1, 64, 4) for _ in range(3))
    out, weights = ProbSparseAttention(factor=1)(q, k, v)
    lazy = torch.isclose(weights, torch.full_like(weights, 1 / 64)).all(-1)
    assert lazy.sum() >= 64 - 5  # u = 1 * ceil(ln 65) = 5 active queries
    torch.testing.assert_close(out[lazy], v.mean(2, keepdim=True).expand_as(out)[lazy])


@pytest.mark.parametrize("e_layers", [1, 2, 3])
def test_informer_distilling_halves_the_sequence_per_layer(e_layers):
    model = build("informer", e_layers=e_layers).eval()
    memory, _, first = model.encode(torch.randn(2, 32, 3))
    assert memory.shape[1] == 32 // 2 ** (e_layers - 1)
    assert first.shape == (2, 2, 32, 32)
    undistilled = build("informer", e_layers=3, distil=False).eval()
    assert undistilled.encode(torch.randn(2, 32, 3))[0].shape[1] == 32


def test_tft_is_pytorch_forecastings_class():
    from pytorch_forecasting.models import TemporalFusionTransformer

    model = build("tft", output_size=3, steps=2, known=1)
    assert type(model.network) is TemporalFusionTransformer
    assert model_class("tft").default_regression_loss == "quantile"
    model(torch.randn(4, 12, 3), future=torch.randn(4, 2, 1))
    assert model.variable_importance.shape == (4, 3)


def test_seq2seq_teacher_forcing_only_while_training():
    model = build("seq2seq_attention", steps=3, teacher_forcing=1.0)
    x, target = torch.randn(4, 12, 3), torch.randn(4, 3)
    assert model(x, target=target).shape == (4, 3, 1)
    model.eval()
    torch.testing.assert_close(model(x, target=target), model(x))  # ignored at inference


@pytest.mark.parametrize("name", ["lstm", "gru", "cnn_lstm", "inception_time", "nhits", "patchtst"])
def test_every_row_of_the_window_reaches_the_output(name):
    model = build(name, dropout=0.0).eval()
    x = torch.randn(1, 6, 3, requires_grad=True)
    model(x).sum().backward()
    assert (x.grad.abs().sum(-1) > 0).all()


def test_registry_errors():
    with pytest.raises(SeqtrainError, match="unknown model 'rnn'"):
        build_model("rnn", {}, 2, 1)
    with pytest.raises(SeqtrainError, match="model.hidden: not an argument of lstm"):
        build_model("lstm", {"hidden": 3}, 2, 1)
    with pytest.raises(SeqtrainError, match="attention must be"):
        build_model("informer", {"attention": "sparse"}, 2, 1)


@pytest.mark.parametrize("name", ["lstm", "gru", "seq2seq_attention"])
def test_left_padded_rows_never_influence_recurrent_models(name):
    model = build(name, steps=2, dropout=0.0).eval()
    x = torch.randn(4, 12, 3)
    real = torch.tensor([12, 7, 3, 1])
    mask = torch.arange(12)[None, :] >= (12 - real)[:, None]
    padded = x * mask.unsqueeze(-1)
    noisy = torch.where(mask.unsqueeze(-1), x, torch.randn_like(x) * 100)
    out = model(padded, mask=mask)
    if name == "seq2seq_attention":  # no attention on padded rows
        assert (model.attention[~mask.unsqueeze(1).expand_as(model.attention)] == 0).all()
    torch.testing.assert_close(model(noisy, mask=mask), out)
    for i, n in enumerate(real.tolist()):  # the same as reading only the real rows
        torch.testing.assert_close(model(x[i: i + 1, 12 - n:]), out[i: i + 1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["tcn", "informer", "tft", "cnn_lstm"])
def test_other_models_accept_a_mask(name):
    model = build(name, steps=2).eval()
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[0, :5] = False
    assert model(torch.randn(3, 12, 3), mask=mask).shape == (3, 2, 1)


def _padded_batch(steps=2, known=1):
    torch.manual_seed(1)
    mask = torch.ones(4, 12, dtype=torch.bool)
    mask[0, :5], mask[1, :11], mask[2, :1] = False, False, False  # row 3 has no padding
    x = torch.randn(4, 12, 3) * mask.unsqueeze(-1)
    return x, mask, torch.randn(4, steps, known)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_padded_rows_never_change_the_output_and_get_no_attention(name):
    model = build(name, output_size=2, steps=2, known=1).eval()
    x, mask, future = _padded_batch()
    out = model(x, future=future, mask=mask)
    attention = model.attention
    garbage = x + torch.randn_like(x) * 100 * (~mask).unsqueeze(-1)
    torch.testing.assert_close(model(garbage, future=future, mask=mask), out)
    if name in WITH_ATTENTION:  # (B, Q, L): no query puts weight on a padded row
        padded_keys = (~mask).unsqueeze(1).expand_as(attention)
        assert attention[padded_keys].abs().max() == 0
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["lstm", "gru", "tcn", "cnn_lstm", "seq2seq_attention", "inception_time",
                                  "nhits", "patchtst"])
def test_a_padded_window_gives_the_output_of_its_real_rows_alone(name):
    """Models without positions of their own read a left-padded window exactly as the shorter
    window of its real rows (attention models with positional encodings see the positions);
    models sized by the window (nhits, patchtst) read a shorter window as left-padded."""
    model = build(name, output_size=2, steps=2, known=1).eval()
    x, mask, future = _padded_batch()
    out = model(x, future=future, mask=mask)
    for b in range(len(x)):
        alone = model(x[b:b + 1, mask[b]], future=future[b:b + 1])
        torch.testing.assert_close(out[b:b + 1], alone, rtol=1e-5, atol=1e-5)


def test_informer_evaluation_is_deterministic_and_leaves_the_random_stream_alone():
    model = build("informer", factor=1).eval()  # few sampled keys: a random sample would show
    x = torch.randn(4, 32, 3)
    state = torch.get_rng_state()
    first = model(x)
    torch.testing.assert_close(model(x), first, rtol=0, atol=0)
    assert torch.equal(torch.get_rng_state(), state)


def test_probsparse_samples_factor_times_ceil_ln_l_keys_and_queries():
    kernel = ProbSparseAttention(factor=2)
    assert [kernel._budget(n) for n in (1, 2, 8, 32, 100)] == [1, 2, 2 * 3, 2 * 4, 2 * 5]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_models_read_what_they_declare(name):
    """``reads_future``: known-in-advance values at the label rows change the output exactly for
    the models that say they read them; ``respects_mask`` is checked by the padding tests."""
    model = build(name, output_size=2, steps=2, known=1).eval()
    x, future = torch.randn(4, 12, 3), torch.randn(4, 2, 1)
    changed = not torch.allclose(model(x, future=future), model(x, future=future + 5))
    assert changed == model_class(name).reads_future
    assert model_class(name).respects_mask


def test_inception_widths_are_odd_halvings_capped_by_the_window():
    from seqtrain.models.inception_time import kernel_widths

    assert kernel_widths(40) == [39, 19, 9]  # the paper's 40/20/10, odd as its reference code makes them
    assert kernel_widths(40, seq_length=16) == [31, 19, 9]  # 2 * 16 - 1
    assert kernel_widths(8) == [7, 3, 1]
    assert kernel_widths(40, seq_length=3) == [5, 5, 5]


def test_inception_capped_widths_compute_what_the_full_widths_compute():
    """The taps a 16-row window's cap removes only ever meet padding: given the centre taps of
    the uncapped model's weights, the capped model gives its outputs."""
    full = build("inception_time", kernel_size=40).eval()
    capped = build_model("inception_time", {**SMALL["inception_time"], "kernel_size": 40}, 3, 1,
                         seq_length=16).eval()
    state = {}
    for key, value in full.state_dict().items():
        width = capped.state_dict()[key].shape[-1] if value.dim() == 3 else None
        if width is not None and width < value.size(-1):  # a convolution (out, in, width)
            cut = (value.size(-1) - width) // 2
            value = value[..., cut:cut + width]
        state[key] = value
    capped.load_state_dict(state)
    assert capped.summary()["kernel_widths"] == [31, 19, 9] and full.summary()["kernel_widths"] == [39, 19, 9]
    x = torch.randn(4, 16, 3)
    torch.testing.assert_close(capped(x), full(x))


def test_inception_at_the_papers_sizes_has_the_parameters_counted_by_hand():
    model = build_model("inception_time", {}, 3, 2, seq_length=64)  # widths 39, 19, 9
    convs = 32 * 32 * (39 + 19 + 9)  # three branches over the 32-channel bottleneck
    first = 3 * 32 + convs + 3 * 32 + 2 * 128  # bottleneck, convs, max-pool's 1x1, batch norm
    later = 128 * 32 + convs + 128 * 32 + 2 * 128
    shortcuts = (3 * 128 + 2 * 128) + (128 * 128 + 2 * 128)  # 1x1 conv and batch norm, two of them
    assert model.summary()["parameters"] == first + 5 * later + shortcuts + (128 * 2 + 2)


def test_inception_batch_statistics_come_from_real_rows_only():
    from seqtrain.models.inception_time import MaskedBatchNorm

    norm = MaskedBatchNorm(2).train()
    h = torch.randn(3, 2, 5)
    real = torch.ones(3, 1, 5, dtype=torch.bool)
    real[0, :, :3], real[1, :, :1] = False, False
    rows = h.transpose(1, 2)[real[:, 0]]  # the 11 real rows, (11, 2)
    mean, var = rows.mean(0), rows.var(0, unbiased=False)
    expected = (h - mean[:, None]) / torch.sqrt(var[:, None] + norm.eps)
    torch.testing.assert_close(norm(h, real), expected.masked_fill(~real, 0.0))
    torch.testing.assert_close(norm.running_mean, 0.1 * mean)  # momentum 0.1 from zero
    torch.testing.assert_close(norm.running_var, 0.9 + 0.1 * rows.var(0, unbiased=True))


def test_inception_trains_on_a_padded_window_as_on_its_real_rows_alone():
    """While training, batch norm's statistics come from the batch: for one window, from its
    real rows alone, so the output and the running statistics are those of the shorter window."""
    x, mask, _ = _padded_batch()
    padded, alone = build("inception_time").train(), build("inception_time").train()
    torch.testing.assert_close(padded(x[:1], mask=mask[:1]), alone(x[:1, mask[0]]), rtol=1e-5, atol=1e-5)
    for (key, value), other in zip(padded.state_dict().items(), alone.state_dict().values(), strict=True):
        torch.testing.assert_close(value, other, rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize("windows,rows,padded", [(1, 1, False), (1, 5, True), (2, 5, True)])
def test_inception_trains_on_a_batch_with_one_real_row(windows, rows, padded):
    """A training batch of one real row (a last batch of one window with seq_length=1, or of a
    padded window with one real row) has no batch statistic: batch norm normalises it with its
    running ones and leaves them as they were, instead of refusing the batch."""
    model = build("inception_time").train()
    mask = None
    if padded:  # the newest row of the first window is the batch's one real row
        mask = torch.zeros(windows, rows, dtype=torch.bool)
        mask[0, -1] = True
    x = torch.randn(windows, rows, 3) * (1 if mask is None else mask.unsqueeze(-1))
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    out = model(x, mask=mask)
    out.sum().backward()
    assert torch.isfinite(out).all()
    for key, value in before.items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)
    torch.testing.assert_close(out, model.eval()(x, mask=mask))  # as evaluation normalises it


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("rows,padded", [(1, False), (5, True)])
def test_every_model_trains_on_a_batch_of_one_real_row(name, rows, padded):
    """A last training batch of one window of one row (seq_length=1, or a padded window with one
    real row, e.g. data.batch_size=1 on cases) has no batch statistic: every model trains on it
    (Informer's distilling batch norm refused it)."""
    model = build(name, output_size=2).train()
    mask = None
    if padded:
        mask = torch.zeros(1, rows, dtype=torch.bool)
        mask[0, -1] = True
    x = torch.randn(1, rows, 3) * (1 if mask is None else mask.unsqueeze(-1))
    out = model(x, target=torch.randn(1, 1), mask=mask)
    out.sum().backward()
    assert out.shape == (1, 1, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("name,extra", [*((n, {}) for n in sorted(SMALL)), ("cnn_lstm", {"pool": 2}),
                                        ("cnn_lstm", {"pool": 3}), ("informer", {"e_layers": 3})])
@pytest.mark.parametrize("training", [True, False])
def test_no_max_pool_window_is_minus_infinity_alone(name, extra, training, monkeypatch):
    """Padded rows must lose every max as the lowest finite value, not as minus infinity: a pool
    window of minus infinity alone (three padded rows side by side) makes inductor's compiled
    max-pool backward index out of bounds (trainer.compile with padding fell back to eager)."""
    pool, outputs = torch.nn.functional.max_pool1d, []

    def recorded(*args, **kwargs):
        out = pool(*args, **kwargs)
        outputs.append(out.detach())
        return out

    monkeypatch.setattr(torch.nn.functional, "max_pool1d", recorded)
    model = build(name, output_size=2, steps=2, known=1, **extra).train(training)
    x, mask, future = _padded_batch()
    model(x, future=future, mask=mask)
    assert all(torch.isfinite(out).all() for out in outputs)
    assert outputs or name not in {"informer", "inception_time"} and extra.get("pool", 1) == 1


def test_informer_distilling_trains_on_real_rows_alone():
    """While training, the distilling layer's batch norm takes its statistics from real rows only:
    the same real rows behind two or four padded rows give the same pooled rows and running
    statistics (with padded rows counted, the longer padding would shift both)."""
    from seqtrain.models.informer import DistilLayer

    rows, results = torch.randn(2, 7, 4), []
    for pad in (2, 4):  # even, so the stride-2 pool meets the real rows at the same places
        torch.manual_seed(0)
        layer = DistilLayer(4).train()
        mask = torch.arange(pad + 7) >= pad
        out, pooled = layer(torch.cat([torch.zeros(2, pad, 4), rows], 1), mask.expand(2, -1))
        results.append((out[:, -4:], pooled[:, -4:], layer.norm.running_mean, layer.norm.running_var))
    for first, second in zip(*results, strict=True):
        torch.testing.assert_close(first, second)


@pytest.mark.parametrize("name", ["nhits", "patchtst"])
def test_models_sized_by_the_window_refuse_a_longer_one(name):
    model = build_model(name, SMALL[name], 3, 1, seq_length=8).eval()
    assert model(torch.randn(2, 8, 3)).shape == (2, 1, 1)
    with pytest.raises(ValueError, match="a window of 9 rows, longer than the 8"):
        model(torch.randn(2, 9, 3))


def test_nhits_stacks_forecast_few_knots_interpolated_to_the_horizon():
    import torch.nn.functional as F

    from seqtrain.models.nhits import interpolation

    assert build("nhits", steps=8).summary()["knots"] == [2, 4, 8]  # n_freq_downsample 4, 2, 1
    assert build("nhits", output_size=3).summary()["knots"] == [1, 1, 1]  # one step: one knot each
    knots = torch.randn(5, 2, 3)  # (B, knots, outputs)
    expected = F.interpolate(knots.transpose(1, 2), size=8, mode="linear").transpose(1, 2)
    torch.testing.assert_close(torch.einsum("bno,nk->bko", knots, interpolation(2, 8)), expected)


def test_nhits_pools_groups_that_end_at_the_last_row():
    model = build_model("nhits", {**SMALL["nhits"], "pool_kernels": [2], "n_freq_downsample": [1]}, 1, 1,
                        seq_length=5)
    x = torch.tensor([[1.0, 9.0, 2.0, 3.0, 4.0]]).unsqueeze(-1)  # groups (pad, 1), (9, 2), (3, 4)
    torch.testing.assert_close(model.blocks[0].pooled_window(x, None), torch.tensor([[1.0, 9.0, 4.0]]))
    mask = torch.tensor([[False, False, True, True, True]])  # (pad, pad) is padding alone: zero
    torch.testing.assert_close(model.blocks[0].pooled_window(x * mask.unsqueeze(-1), mask),
                               torch.tensor([[0.0, 2.0, 4.0]]))


@pytest.mark.parametrize("seq_length,expected", [(336, (16, 8, 41)), (168, (16, 8, 20)), (32, (8, 4, 7)),
                                                 (16, (4, 2, 7)), (12, (3, 2, 6)), (2, (1, 1, 2))])
def test_patchtst_short_windows_get_shorter_patches_ending_at_the_last_row(seq_length, expected):
    from seqtrain.models.patchtst import patch_geometry

    assert patch_geometry(seq_length, 16, 8) == expected
    model = build_model("patchtst", SMALL["patchtst"], 3, 1, seq_length=seq_length)
    patch_len, _, patches = expected
    assert model.member.shape[0] == patches and model.member[-1, -patch_len:].all()
    assert model.member[-1].sum() == patch_len and model.member.sum(0).min() >= 1  # every row in a patch


def test_patchtst_encodes_each_column_on_its_own():
    """Channel independence: changing one column changes that column's encoded patches only;
    the columns meet in the head."""
    model = build("patchtst").eval()
    x = torch.randn(4, 12, 3)
    changed = x.clone()
    changed[..., 1] += torch.randn(4, 12)
    before, after = model.encode(x)[0], model.encode(changed)[0]
    torch.testing.assert_close(after[:, [0, 2]], before[:, [0, 2]])
    assert not torch.allclose(after[:, 1], before[:, 1])
    linear = build("patchtst", head_hidden=0)
    assert [type(m).__name__ for m in linear.head] == ["StepsHead"]
