"""On the demo data, LSTM and GRU clearly beat the naive baselines on the test split."""

import pytest

BUDGET = ["progress_bar=false", "trainer.max_epochs=8", "model.hidden_size=32", "optim.lr=0.005"]


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_beats_the_majority_class_on_the_next_move(run_cli, model):
    result = run_cli(f"model={model}", "task=classification", *BUDGET)
    assert result.code == 0, result.err
    metrics = result.metrics()
    majority = metrics["baseline_test"]["majority_acc"]
    # The demo's next move is about 87% predictable from the past; majority is about 52%.
    assert metrics["test"]["test_acc"] > majority + 0.2, metrics


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_beats_persistence_on_the_next_value(run_cli, model):
    result = run_cli(f"model={model}", "task=regression", *BUDGET)
    assert result.code == 0, result.err
    metrics = result.metrics()
    assert metrics["test"]["test_mae"] < 0.7 * metrics["baseline_test"]["persistence_mae"], metrics
