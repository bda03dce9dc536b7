"""Parametric bootstrap from a fitted system: draws, refits and Monte Carlo p-values.

Used by the bootstrap likelihood-ratio tests (:mod:`lowrank_sur.covtests`, the
results' ``compare_lr_test``, ``lr_test_diagonal`` and ``lr_test_unrestricted``) and
by the bootstrap coefficient covariance (``cov_type="bootstrap"``).

The fast double bootstrap (FDB) of Davidson and MacKinnon (2007) corrects the
single bootstrap p-value for the dependence of the bootstrap distribution on the
estimated null (:func:`fast_double_bootstrap_statistics`, :func:`fdb_pvalue`): for each
first-level draw ``j`` the null is refitted on it, *one* second-level response matrix is
drawn from that refit and its statistic ``tau**_j`` computed; with ``p* =
#{tau*_j >= tau} / B`` and ``Q**`` the ``1 - p*`` quantile of the ``tau**``, the FDB
p-value is ``p** = #{tau*_j > Q**} / B``. It costs about twice the single bootstrap.

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
Davidson, R. and MacKinnon, J. G. (2007). Improving the reliability of bootstrap tests
with the fast double bootstrap. *Computational Statistics & Data Analysis* 51,
3259-3281 (equations 8-10: the FDB p-value).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from .design import SURDesign
from .options import check_int

__all__ = ["draw_responses", "monte_carlo_pvalue", "fdb_pvalue", "check_n_boot",
           "fast_double_bootstrap_statistics"]


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


def fdb_pvalue(stat: float, boot: np.ndarray, boot2: np.ndarray) -> float:
    """The fast double bootstrap p-value (Davidson and MacKinnon 2007, equation 10).

    ``p* = #{tau*_j >= stat} / B`` over the first-level statistics ``boot``; ``Q**``
    the ``1 - p*`` quantile of the second-level statistics ``boot2`` (the inverse
    of their empirical distribution function: the smallest ``tau**`` with at least
    ``B (1 - p*)`` of them at or below it); ``p** = #{tau*_j > Q**} / B``. The strict
    inequality is Davidson and MacKinnon's; a first-level draw tied with ``stat``
    counts as exceeding it (conservative, as :func:`monte_carlo_pvalue`). With both
    levels equal, ``p** = p*``. Non-finite statistics (draws that could not be
    refitted) are left out of each set.

    Parameters
    ----------
    stat : float
        The statistic on the data.
    boot, boot2 : ndarray
        First-level statistics ``tau*_j`` and second-level statistics ``tau**_j``.

    Returns
    -------
    float
        The FDB p-value, in [0, 1].

    References
    ----------
    Davidson, R. and MacKinnon, J. G. (2007). Improving the reliability of bootstrap
    tests with the fast double bootstrap. *Computational Statistics & Data Analysis*
    51, 3259-3281.
    """
    boot = np.asarray(boot, dtype=float)
    boot2 = np.asarray(boot2, dtype=float)
    boot, boot2 = boot[np.isfinite(boot)], boot2[np.isfinite(boot2)]
    if boot.size == 0 or boot2.size == 0:
        return float("nan")
    p1 = float(np.mean(boot >= stat - 1e-9 * max(1.0, abs(stat))))
    q2 = float(np.quantile(boot2, 1.0 - p1, method="inverted_cdf"))
    return float(np.mean(boot > q2))


def fast_double_bootstrap_statistics(
    design: SURDesign, whitened_coefs: np.ndarray, cov, refit: Callable, n_boot: int,
    seed, double: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """First-level (and, with ``double``, second-level FDB) bootstrap statistics.

    Parameters
    ----------
    design : SURDesign
        The fitted model's design.
    whitened_coefs, cov
        The fit under the null (as :func:`draw_responses`).
    refit : callable
        ``refit(Y) -> (stat, null_coefs, null_cov)``: the statistic on responses ``Y``
        and the null refitted on them (whitened coefficients and covariance), from
        which the second-level draw is made.
    n_boot : int
        First-level draws B.
    seed : int or Generator
        Seed. The first-level draws are those of :func:`draw_responses` with this seed
        (the single bootstrap's); the second-level draws come after them from the same
        generator, one per first-level draw, in order.
    double : bool
        Compute the second level (the FDB); otherwise the second array is None.

    Returns
    -------
    boot, boot2 : ndarray, shape (B,), and ndarray or None
        NaN where a draw could not be refitted (a second-level statistic is NaN when
        its first-level null refit failed).
    """
    rng = np.random.default_rng(seed)
    boot, boot2 = [], []
    for Yb in draw_responses(design, whitened_coefs, cov, n_boot, rng):
        out = _safe(refit, Yb)
        boot.append(np.nan if out is None else out[0])
        if not double:
            continue
        if out is None:  # keep the stream of second-level draws aligned
            next(draw_responses(design, whitened_coefs, cov, 1, rng))
            boot2.append(np.nan)
            continue
        (Ybb,) = draw_responses(design, out[1], out[2], 1, rng)
        out2 = _safe(refit, Ybb)
        boot2.append(np.nan if out2 is None else out2[0])
    return np.asarray(boot, dtype=float), (np.asarray(boot2, dtype=float) if double else None)


def _safe(refit: Callable, Y: np.ndarray):
    """``refit(Y)`` as floats, or None where the draw cannot be refitted."""
    try:
        stat, coefs, cov = refit(Y)
        return float(stat), coefs, cov
    except (np.linalg.LinAlgError, FloatingPointError, ValueError):
        return None
