"""Probabilistic and deflated Sharpe ratios and the probability of backtest overfitting, against
values worked out by hand and the papers' own example."""

from __future__ import annotations

import math
from itertools import combinations
from statistics import NormalDist

import numpy as np
import pytest

from seqtrain.report.overfitting import (
    backtest_overfitting,
    deflated_report,
    deflated_sharpe,
    expected_max_sharpe,
    probabilistic_sharpe,
    sharpe_estimator_variance,
    sharpe_moments,
)

PHI = NormalDist().cdf


def test_moments_and_psr_of_a_two_point_record_by_hand():
    # 0, 2, 0, 2: mean 1, std (ddof=1) 2/sqrt(3), so SR = sqrt(3)/2; two equal points: skew 0,
    # kurtosis 1, so the denominator is 1 and PSR = Phi(SR sqrt(T-1)) = Phi(1.5)
    moments = sharpe_moments(np.array([0.0, 2.0, 0.0, 2.0]))
    assert moments == pytest.approx({"sharpe": math.sqrt(3) / 2, "skew": 0.0, "kurtosis": 1.0, "periods": 4})
    assert probabilistic_sharpe(**moments) == pytest.approx(PHI(1.5))
    assert probabilistic_sharpe(**moments, benchmark=math.sqrt(3) / 2) == pytest.approx(0.5)


def test_psr_counts_skew_and_kurtosis():
    # 0, 0, 0, 3: three times a Bernoulli(1/4), mean 3/4, std (ddof=1) 3/2, SR 1/2; skew
    # (1-2p)/sqrt(p(1-p)) = 2/sqrt(3), kurtosis (1-3p(1-p))/(p(1-p)) = 7/3
    moments = sharpe_moments(np.array([0.0, 0.0, 0.0, 3.0]))
    expected = {"sharpe": 0.5, "skew": 2 / math.sqrt(3), "kurtosis": 7 / 3, "periods": 4}
    assert moments == pytest.approx(expected)
    spread = 1 - 2 / math.sqrt(3) * 0.5 + (7 / 3 - 1) / 4 * 0.25  # 0.50598
    assert probabilistic_sharpe(**moments) == pytest.approx(PHI(0.5 * math.sqrt(3) / math.sqrt(spread)))
    assert probabilistic_sharpe(**moments) == pytest.approx(0.8883, abs=1e-4)
    assert sharpe_estimator_variance(**moments) == pytest.approx(spread / 3)


def test_no_moments_for_a_constant_or_too_short_record():
    assert sharpe_moments(np.full(10, 0.01)) is None and sharpe_moments(np.array([0.01, 0.02])) is None
    assert deflated_report({"sharpe_per_period": None}, trials=5) is None


def test_the_deflated_sharpe_papers_example():
    # Bailey and Lopez de Prado (2014), section 4: the best of N=100 trials has an annualised SR
    # of 2.5 over T=1250 daily returns (5 years of 250 days), skew -3, kurtosis 10, and the
    # trials' annualised Sharpe ratios vary with V=1/2. Per day: SR = 2.5/sqrt(250) = 0.1581,
    # V = 0.5/250; the paper finds SR0 = 0.1132 per day (1.7894 annualised) and DSR = 0.9004
    sharpe, variance = 2.5 / math.sqrt(250), 0.5 / 250
    benchmark = expected_max_sharpe(100, variance)
    assert benchmark == pytest.approx(0.1132, abs=5e-5)
    assert benchmark * math.sqrt(250) == pytest.approx(1.7894, abs=5e-4)
    assert deflated_sharpe(sharpe, 1250, -3.0, 10.0, 100, variance) == pytest.approx(0.9004, abs=5e-4)


def test_one_trial_deflates_nothing():
    assert expected_max_sharpe(1, 0.3) == 0.0
    stats = {"sharpe_per_period": 0.1, "periods": 200, "skew": -0.5, "kurtosis": 4.0}
    report = deflated_report(stats, trials=1)
    assert report["dsr"] == report["psr"] == probabilistic_sharpe(0.1, 200, -0.5, 4.0)
    more = deflated_report(stats, trials=10)  # V from the estimator at SR 0 (no skill): 1 / 199
    assert more["sharpe_variance"] == pytest.approx(1 / 199) and more["dsr"] < report["dsr"]
    assert expected_max_sharpe(10, 1.0) < expected_max_sharpe(100, 1.0)


def test_trials_without_skill_set_the_benchmark_not_the_winners_own_shape():
    # a right-skewed winner (SR 0.15 per period, skew 2, kurtosis 9, T 200): at its own SR the
    # estimator's variance is (1 - 0.3 + 0.045) / 199, below the 1/199 that Sharpe ratios of
    # trials without skill show (their true SR is 0), and would lower its own benchmark
    stats = {"sharpe_per_period": 0.15, "periods": 200, "skew": 2.0, "kurtosis": 9.0}
    report = deflated_report(stats, trials=10)
    assert report["sharpe_variance"] == pytest.approx(1 / 199)
    assert report["dsr"] == pytest.approx(deflated_sharpe(0.15, 200, 2.0, 9.0, 10, 1 / 199))
    assert report["dsr"] < deflated_sharpe(0.15, 200, 2.0, 9.0, 10, 0.745 / 199)


def test_pbo_of_two_trials_by_hand():
    # blocks [1, 3 | -3, -1] for A and [0, 2 | 1, 2] for B; Sharpe ratios A sqrt2 | -sqrt2,
    # B 1/sqrt2 | 3/sqrt2. In-sample block 1: A is best, out of sample it is worst (rank 1 of 2,
    # omega 1/3, logit ln(1/2)); in-sample block 2: B is best, worst out of sample again
    returns = np.array([[1, 3, -3, -1], [0, 2, 1, 2]], np.float64).T
    found = backtest_overfitting(returns, blocks=2)
    np.testing.assert_allclose(found["logits"], [math.log(0.5)] * 2)
    assert found["pbo"] == 1.0 and found["splits"] == 2
    assert found["probability_oos_loss"] == 0.5  # A loses out of sample, B does not
    # (IS, OOS) of the selected: (sqrt2, -sqrt2), (3/sqrt2, 1/sqrt2): slope 3
    assert found["degradation_slope"] == pytest.approx(3.0)
    assert found["degradation_intercept"] == pytest.approx(-math.sqrt(2) - 3 * math.sqrt(2))


def test_a_trial_best_everywhere_never_overfits():
    # C earns 1.0, 1.1, ... (Sharpe ~20 in any half), A +-0.5 (Sharpe 0), B 1, 0 (Sharpe ~0.9):
    # C is best in and out of sample in all C(4, 2) = 6 splits: rank 3 of 3, logit ln 3
    a, b, c = np.tile([0.5, -0.5], 4), np.tile([1.0, 0.0], 4), np.tile([1.0, 1.1], 4)
    found = backtest_overfitting(np.c_[a, b, c], blocks=4)
    assert found["splits"] == 6 and found["pbo"] == 0.0 and found["probability_oos_loss"] == 0.0
    np.testing.assert_allclose(found["logits"], math.log(3))
    assert found["degradation_slope"] is None  # C's in-sample Sharpe is the same in every split


def test_pbo_matches_a_direct_loop_over_the_splits():
    rng = np.random.default_rng(0)
    returns = rng.normal(0.01, 1, (40, 5))  # 6 blocks of 7, 7, 7, 7, 6, 6 rows
    found = backtest_overfitting(returns, blocks=6)
    blocks = np.array_split(np.arange(40), 6)
    logits = []
    for chosen in combinations(range(6), 3):
        inside = np.concatenate([blocks[i] for i in chosen])
        outside = np.setdiff1d(np.arange(40), inside)
        sharpe = [returns[rows].mean(0) / returns[rows].std(0, ddof=1) for rows in (inside, outside)]
        best = np.argmax(sharpe[0])
        rank = 1 + (sharpe[1] < sharpe[1][best]).sum()
        logits.append(math.log(rank / (6 - rank)))
    np.testing.assert_allclose(found["logits"], logits)
    assert found["pbo"] == pytest.approx(np.mean(np.array(logits) <= 0))


def test_pbo_is_high_for_noise_and_low_for_a_real_edge():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 1, (400, 10))
    assert 0.3 < backtest_overfitting(noise, 8)["pbo"] < 0.7  # the in-sample best ranks at random
    edge = noise.copy()
    edge[:, 3] += 0.25
    assert backtest_overfitting(edge, 8)["pbo"] < 0.05


@pytest.mark.parametrize("shape, blocks", [((40, 5), 5), ((40, 5), 0), ((15, 5), 8), ((40, 1), 4)])
def test_pbo_refuses_odd_blocks_too_few_periods_or_one_trial(shape, blocks):
    with pytest.raises(ValueError):
        backtest_overfitting(np.zeros(shape), blocks)
