"""Temporal Fusion Transformer (Lim, Arık, Loeff & Pfister, 2021, "Temporal Fusion Transformers
for Interpretable Multi-horizon Time Series Forecasting", International Journal of Forecasting).

The network is pytorch-forecasting's ``TemporalFusionTransformer``, used as a plain module (its
own training loop is not used). This file only adapts seqtrain's batches to its input dict:

- encoder reals: every input column, plus the relative time of the row;
- decoder reals: the known-in-advance columns at the label rows, plus the relative time (so the
  decoder always has at least one input and no other column reaches it);
- targets are already scaled by seqtrain, so its output rescaling is the identity.

Left-padded windows (``mask``) reach it right-padded with their real row counts as
``encoder_lengths``, which its LSTM packs and its attention masks, so padded rows get no weight.

After each forward, ``self.attention`` holds the decoder's attention over the encoder rows
averaged over heads ``(B, steps, L)``, and ``self.variable_importance`` the encoder variable
selection weights of the input columns averaged over time ``(B, F)``.

Arguments:
    input_size, output_size, output_steps, known_size: shapes from the data (see base.py).
    hidden_size: width of the whole network.
    lstm_layers: layers of its LSTM encoder/decoder.
    attention_head_size: attention heads.
    hidden_continuous_size: width of each real input's embedding.
    dropout: everywhere.
"""

import warnings

import torch
from pytorch_forecasting.metrics import QuantileLoss
from pytorch_forecasting.models import TemporalFusionTransformer

from seqtrain.models.base import SequenceModel


def _identity_rescale(data: dict) -> torch.Tensor:
    return data["prediction"]


class TFT(SequenceModel):
    default_regression_loss = "quantile"
    reads_future = True
    not_exportable = ("pytorch-forecasting's network sizes its tensors from the data (encoder lengths) "
                      "and is a LightningModule that needs a Trainer, which neither exporter can trace")

    def __init__(self, input_size: int, output_size: int, output_steps: int = 1, known_size: int = 0,
                 hidden_size: int = 64, lstm_layers: int = 1, attention_head_size: int = 4,
                 hidden_continuous_size: int = 32, dropout: float = 0.1):
        super().__init__(input_size, output_size, output_steps, known_size)
        inputs = [f"input_{i}" for i in range(input_size)]
        known = [f"known_{i}" for i in range(known_size)]
        with warnings.catch_warnings():  # its hyperparameter bookkeeping, irrelevant here
            warnings.simplefilter("ignore")
            self.network = TemporalFusionTransformer(
                hidden_size=hidden_size, lstm_layers=lstm_layers, dropout=dropout,
                output_size=output_size, attention_head_size=attention_head_size,
                # seqtrain computes losses itself; this one is stored by the network, never used
                loss=QuantileLoss(),
                max_encoder_length=10_000, hidden_continuous_size=hidden_continuous_size,
                x_reals=[*inputs, *known, "relative_time"],
                time_varying_reals_encoder=[*inputs, "relative_time"],
                time_varying_reals_decoder=[*known, "relative_time"],
                output_transformer=_identity_rescale,
            )

    def forward(self, x, future=None, target=None, mask=None):
        B, L, _ = x.shape
        k = self.output_steps
        time = torch.arange(-L + 1, k + 1, device=x.device, dtype=x.dtype) / L
        encoder = torch.cat([x, x.new_zeros(B, L, self.known_size),
                             time[:L].expand(B, L).unsqueeze(-1)], -1)
        lengths = torch.full((B,), L, device=x.device, dtype=torch.long)
        padded = mask is not None and not bool(mask.all())
        if padded:  # its encoder reads right-padded rows up to encoder_lengths: real rows first
            lengths = mask.sum(1)
            shift = (torch.arange(L, device=x.device) + (L - lengths)[:, None]) % L
            real_first = torch.arange(L, device=x.device) < lengths[:, None]
            encoder = torch.gather(encoder, 1, shift.unsqueeze(-1).expand_as(encoder))
            encoder = (encoder * real_first.unsqueeze(-1))[:, : int(lengths.max())]
        known = future if future is not None else x.new_zeros(B, k, 0)
        decoder = torch.cat([x.new_zeros(B, k, self.input_size), known,
                             time[L:].expand(B, k).unsqueeze(-1)], -1)
        out = self.network({
            "encoder_cont": encoder, "decoder_cont": decoder,
            "encoder_cat": x.new_zeros(B, encoder.size(1), 0, dtype=torch.long),
            "decoder_cat": x.new_zeros(B, k, 0, dtype=torch.long),
            "encoder_lengths": lengths,
            "decoder_lengths": torch.full((B,), k, device=x.device, dtype=torch.long),
            "target_scale": x.new_tensor([0.0, 1.0]).expand(B, 2),
        })
        attention = out["encoder_attention"].mean(2).detach()  # (B, k, heads, L') -> (B, k, L')
        weights = out["encoder_variables"].squeeze(-2)[..., : self.input_size].detach()  # (B, L', F)
        if padded:  # back to the window's own (left-padded) rows
            back = torch.zeros(B, k, L, device=x.device, dtype=attention.dtype)
            rows = (L - lengths)[:, None] + torch.arange(attention.size(-1), device=x.device)
            attention = back.scatter_add(2, rows.clamp(max=L - 1).unsqueeze(1).expand(-1, k, -1),
                                     attention * real_first[:, None, : attention.size(-1)])
            weights = weights * real_first[:, : weights.size(1), None]
        self.attention = attention
        self.variable_importance = weights.sum(1) / lengths[:, None].to(weights.dtype)
        return out["prediction"]
