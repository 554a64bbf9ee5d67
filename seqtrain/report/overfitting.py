"""How much a Sharpe ratio is worth once the record's length, its returns' shape and the number
of tries are counted: pure functions over per-period (not annualised) returns.

- **Probabilistic Sharpe ratio** (Bailey and López de Prado, "The Sharpe Ratio Efficient
  Frontier", 2012): the probability that the true Sharpe ratio exceeds a benchmark ``SR*``,
  ``PSR = Φ((SR - SR*) √(T-1) / √(1 - γ3 SR + (γ4 - 1)/4 SR²))``, with ``T`` returns, their
  skewness ``γ3`` and (non-excess) kurtosis ``γ4``: a short, skewed or fat-tailed record is
  worth less than its Sharpe ratio says.
- **Deflated Sharpe ratio** (Bailey and López de Prado, "The Deflated Sharpe Ratio", 2014): the
  PSR against the Sharpe ratio the best of ``N`` worthless trials would reach by luck,
  ``SR* = √V ((1-γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e)))``, ``V`` the variance of the trials'
  Sharpe ratios and ``γ`` the Euler-Mascheroni constant (``SR* = 0`` for one trial: DSR = PSR).
- **Probability of backtest overfitting** (Bailey, Borwein, López de Prado and Zhu, 2017) by
  combinatorially symmetric cross-validation (``backtest_overfitting``).
"""

from __future__ import annotations

import math
from itertools import combinations
from statistics import NormalDist

import numpy as np

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


def sharpe_moments(returns: np.ndarray) -> dict | None:
    """``sharpe`` (mean over the standard deviation with ddof=1, per period, as the trading view
    measures it), ``skew`` and ``kurtosis`` (the sample's third and fourth standardised moments,
    kurtosis 3 for a normal law) and ``periods`` of a series of per-period returns; None for
    fewer than 3 returns or returns that vary only by float noise."""
    returns = np.asarray(returns, np.float64)
    if len(returns) < 3:
        return None
    mean, std = returns.mean(), returns.std(ddof=1)
    if not std > 1e-12 * max(1.0, abs(mean)):
        return None
    z = (returns - mean) / returns.std(ddof=0)
    return {"sharpe": float(mean / std), "skew": float(np.mean(z**3)), "kurtosis": float(np.mean(z**4)),
            "periods": len(returns)}


def probabilistic_sharpe(sharpe: float, periods: int, skew: float, kurtosis: float,
                         benchmark: float = 0.0) -> float | None:
    """P(true Sharpe > ``benchmark``) given an estimate ``sharpe`` from ``periods`` returns with
    that ``skew`` and ``kurtosis`` (all per period); None where the estimator's variance is not
    positive (two-valued returns at one particular Sharpe ratio)."""
    spread = 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2
    if periods < 2 or not spread > 0:
        return None
    return _NORMAL.cdf((sharpe - benchmark) * math.sqrt(periods - 1) / math.sqrt(spread))


def sharpe_estimator_variance(sharpe: float, periods: int, skew: float, kurtosis: float) -> float:
    """The variance of a Sharpe ratio estimated from ``periods`` returns (the PSR's denominator
    squared over T-1): how far apart the Sharpe ratios of trials without any skill would fall."""
    return (1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2) / (periods - 1)


def expected_max_sharpe(trials: int, variance: float) -> float:
    """The expected largest of ``trials`` Sharpe ratios whose true value is 0 and whose estimates
    vary with ``variance``; 0 for a single trial."""
    if trials < 1 or variance < 0:
        raise ValueError(f"trials {trials} >= 1 and variance {variance} >= 0")
    if trials == 1:
        return 0.0
    quantile = _NORMAL.inv_cdf
    return math.sqrt(variance) * ((1 - EULER_GAMMA) * quantile(1 - 1 / trials)
                                  + EULER_GAMMA * quantile(1 - 1 / (trials * math.e)))


def deflated_sharpe(sharpe: float, periods: int, skew: float, kurtosis: float, trials: int,
                    variance: float) -> float | None:
    """The PSR of the best of ``trials`` against the expected maximum Sharpe ratio of as many
    trials without skill (``expected_max_sharpe``)."""
    return probabilistic_sharpe(sharpe, periods, skew, kurtosis, expected_max_sharpe(trials, variance))


def backtest_overfitting(returns: np.ndarray, blocks: int = 16) -> dict:
    """Combinatorially symmetric cross-validation over ``returns`` (T periods x N trials, per
    period): the rows are cut into ``blocks`` (S, even) consecutive blocks of sizes that differ by
    at most one row; each of the C(S, S/2) ways to take half the blocks as in-sample (the rest out
    of sample) selects the trial with the best in-sample Sharpe ratio and ranks its
    out-of-sample Sharpe among all trials' (1 = worst, ties averaged): relative rank
    ``ω = rank / (N + 1)``, logit ``λ = ln(ω / (1 - ω))``.

    Returns ``pbo`` (the share of splits with λ <= 0: the in-sample best at or below the median
    out of sample), ``probability_oos_loss`` (the share whose selected trial's out-of-sample mean
    return, and so its Sharpe ratio, is below 0), ``degradation_slope`` and
    ``degradation_intercept`` (least squares of the selected trial's out-of-sample Sharpe on its
    in-sample Sharpe over the splits; None without in-sample spread), ``logits``, ``splits``,
    ``blocks``, ``periods`` and ``trials``."""
    returns = np.asarray(returns, np.float64)
    periods, trials = returns.shape
    if blocks < 2 or blocks % 2 or periods < 2 * blocks or trials < 2:
        raise ValueError(f"{periods} periods x {trials} trials: need an even number of blocks >= 2, "
                         f"at least 2 periods per block and 2 trials (blocks {blocks})")
    centred = returns - returns.mean(axis=0)  # sums of squares without cancellation
    edges = np.array_split(np.arange(periods), blocks)
    sums = np.stack([centred[e].sum(axis=0) for e in edges])
    squares = np.stack([(centred[e] ** 2).sum(axis=0) for e in edges])
    counts = np.array([len(e) for e in edges], np.float64)
    chosen = np.array([np.isin(np.arange(blocks), c) for c in combinations(range(blocks), blocks // 2)])
    inside = _sharpe(chosen @ sums, chosen @ squares, chosen @ counts, returns.mean(axis=0))
    outside = _sharpe(~chosen @ sums, ~chosen @ squares, ~chosen @ counts, returns.mean(axis=0))
    best = inside.argmax(axis=1)
    rows = np.arange(len(chosen))
    picked, picked_in = outside[rows, best], inside[rows, best]
    below = (outside < picked[:, None]).sum(axis=1)
    ties = (outside == picked[:, None]).sum(axis=1) - 1
    omega = (1 + below + ties / 2) / (trials + 1)
    logits = np.log(omega / (1 - omega))
    slope = intercept = None
    finite = np.isfinite(picked_in) & np.isfinite(picked)
    if finite.sum() > 1 and np.ptp(picked_in[finite]) > 0:
        slope, intercept = (float(v) for v in np.polyfit(picked_in[finite], picked[finite], 1))
    return {"pbo": float(np.mean(logits <= 0)), "probability_oos_loss": float(np.mean(picked < 0)),
            "degradation_slope": slope, "degradation_intercept": intercept, "logits": logits,
            "splits": len(chosen), "blocks": blocks, "periods": periods, "trials": trials}


def _sharpe(sums: np.ndarray, squares: np.ndarray, counts: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Sharpe ratios (ddof=1) from the sums and sums of squares of returns less ``shift``, per
    split (rows) and trial (columns); ±inf for a constant non-zero return, 0 for a constant 0."""
    counts = counts[:, None]
    mean = sums / counts
    std = np.sqrt(np.maximum(squares - counts * mean**2, 0.0) / (counts - 1))
    mean = mean + shift
    flat = ~(std > 1e-12 * np.maximum(1.0, np.abs(mean)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flat, np.sign(mean) * np.where(mean == 0, 0.0, np.inf), mean / np.where(flat, 1, std))


def deflated_report(stats: dict, trials: int, variance: float | None = None) -> dict | None:
    """The deflated Sharpe ratio of a book (``stats``: its trading statistics, with
    ``sharpe_per_period``, ``periods``, ``skew`` and ``kurtosis``) picked as the best of
    ``trials``, whose Sharpe ratios vary with ``variance`` (None: as much as an estimate from this
    many periods varies by chance, ``sharpe_estimator_variance`` at a true Sharpe ratio of 0,
    1/(T-1): the trials without skill, not at this book's Sharpe ratio, which would let a
    right-skewed winner shrink its own benchmark); None without a Sharpe ratio."""
    sharpe = stats.get("sharpe_per_period")
    if sharpe is None:
        return None
    shape = (sharpe, stats["periods"], stats["skew"], stats["kurtosis"])
    given = variance is not None
    variance = float(variance) if given else sharpe_estimator_variance(0.0, *shape[1:])
    benchmark = expected_max_sharpe(trials, variance)
    return {"dsr": probabilistic_sharpe(*shape, benchmark), "trials": trials, "sharpe_variance": variance,
            "variance_from": "given" if given else "estimator", "expected_max_sharpe": benchmark,
            "sharpe_per_period": sharpe, "psr": probabilistic_sharpe(*shape)}
