"""Parametric bootstrap from a fitted system: draws, refits and Monte Carlo p-values.

Used by the bootstrap likelihood-ratio tests (:mod:`lowrank_sur.covtests`, the
results' ``compare_lr_test``, ``lr_test_diagonal`` and ``lr_test_unrestricted``) and
by the bootstrap coefficient covariance (``cov_type="bootstrap"``).

The draws are ``Y_b = X beta_0 + E_b`` with the rows of ``E_b`` independent
``N(0, Sigma_0)``, ``(beta_0, Sigma_0)`` the fit under the null; all ``B N`` error
rows are drawn at once (:meth:`Covariance.sample <lowrank_sur.covariance.Covariance.sample>`,
O(N K k) per draw, no K x K array) from one seeded generator, and every refit reuses
the fitted model's QR-factored design.

References
----------
Davison, A. C. and Hinkley, D. V. (1997). *Bootstrap Methods and their Application*.
Cambridge University Press, section 4.2.3 (Monte Carlo p-values ``(1 + #{T_b >= t})
/ (B + 1)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from .design import SURDesign
from .options import check_int

__all__ = ["draw_responses", "monte_carlo_pvalue", "check_n_boot"]


def check_n_boot(n_boot) -> int:
    """Validate the number of bootstrap draws (an integer, at least 19)."""
    n_boot = check_int("n_boot", n_boot, 1)
    if n_boot < 19:
        raise ValueError(
            f"n_boot={n_boot} is too few draws for a p-value at 5% (the smallest is "
            "1 / (n_boot + 1)); use at least 19, 199 or more for a reported test"
        )
    return n_boot


def draw_responses(design: SURDesign, whitened_coefs: np.ndarray, cov, n_boot: int,
                   seed) -> Iterator[np.ndarray]:
    """Yield ``n_boot`` response matrices (N x K) simulated from a fit.

    Parameters
    ----------
    design : SURDesign
        The fitted model's design.
    whitened_coefs : ndarray, shape (K, pmax)
        The coefficients under the null, in the design's whitened layout.
    cov : Covariance
        The error covariance under the null.
    n_boot : int
        Number of draws.
    seed : int or Generator
        Seed of the draws.

    Yields
    ------
    ndarray, shape (N, K)
    """
    rng = np.random.default_rng(seed)
    mean = design.fitted(whitened_coefs)
    n = design.nobs
    errors = cov.sample(n * n_boot, rng)  # all draws from one stream, once
    observed = getattr(design, "observed", None)
    for b in range(n_boot):
        Yb = mean + errors[b * n:(b + 1) * n]
        # missing="fiml": the draws keep the data's pattern of observed cells
        yield Yb if observed is None else np.where(observed, Yb, 0.0)


def monte_carlo_pvalue(stat: float, stats: np.ndarray) -> float:
    """``(1 + #{T_b >= stat}) / (1 + B)`` over the finite bootstrap statistics ``T_b``."""
    stats = np.asarray(stats, dtype=float)
    stats = stats[np.isfinite(stats)]
    return float((1 + np.sum(stats >= stat - 1e-9 * max(1.0, abs(stat)))) / (1 + stats.size))


def bootstrap_statistics(draws: Iterator[np.ndarray],
                         statistic: Callable[[np.ndarray], float]) -> np.ndarray:
    """The statistic on every draw (NaN where it cannot be computed)."""
    out = []
    for Yb in draws:
        try:
            out.append(float(statistic(Yb)))
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            out.append(np.nan)
    return np.asarray(out)
