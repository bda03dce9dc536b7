"""The fitters against references we did not write, invariances, memory, warnings, arguments.

References: statsmodels OLS (rank 0), statsmodels maximum-likelihood factor analysis
(intercept-only equations), linearmodels iterated feasible GLS (rank K - 1, Grunfeld),
and the other fitter of this package (ALS vs EM reach the same maximum).
"""

from __future__ import annotations

import time
import tracemalloc
import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from numpy.testing import assert_allclose
from statsmodels.multivariate.factor import Factor
from statsmodels.tools.sm_exceptions import ConvergenceWarning as SMConvergenceWarning

from lowrank_sur import (
    CollinearityError,
    HeywoodWarning,
    LowRankCovariance,
    fit_arrays,
    simulate_sur,
)

METHODS = ("als", "em")
LOG_2PI = np.log(2.0 * np.pi)


def _sigma(rec) -> np.ndarray:
    """F F' + diag(D) of a fit, dense (small K only)."""
    return rec.F @ rec.F.T + np.diag(rec.D)


def _rel_max(actual, desired) -> float:
    """Largest absolute difference relative to the largest absolute entry of ``desired``."""
    return float(np.max(np.abs(np.asarray(actual) - desired)) / np.max(np.abs(desired)))


# --------------------------------------------------------------- rank 0 = OLS
def _unequal_design(nobs=120, k_eqs=6, seed=7):
    """Equations with p_j in {1, 2, 3, 4} (constant plus p_j - 1 regressors)."""
    rng = np.random.default_rng(seed)
    p = [1 + j % 4 for j in range(k_eqs)]
    Xs = [np.column_stack([np.ones(nobs), rng.normal(size=(nobs, pj - 1))]) for pj in p]
    F = rng.normal(size=(k_eqs, 2))
    E = rng.normal(size=(nobs, 2)) @ F.T + rng.normal(size=(nobs, k_eqs))
    Y = np.column_stack([X @ rng.normal(size=X.shape[1]) for X in Xs]) + E * 3.0
    return Xs, Y


@pytest.mark.parametrize("method", METHODS)
def test_rank0_equals_statsmodels_ols(method):
    Xs, Y = _unequal_design()
    nobs, k_eqs = Y.shape
    assert len({X.shape[1] for X in Xs}) == 4
    rec = fit_arrays(Xs, Y, 0, method=method)
    assert rec.F.shape == (k_eqs, 0)
    assert rec.converged
    llf_expected = 0.0
    for j in range(k_eqs):
        ols = sm.OLS(Y[:, j], Xs[j]).fit()
        assert_allclose(rec.coefs[j], ols.params, rtol=1e-8, atol=1e-12)
        assert_allclose(rec.D[j], ols.ssr / nobs, rtol=1e-8)
        llf_expected += ols.llf  # OLS llf uses sigma^2 = ssr / N: the same likelihood
    assert_allclose(rec.llf, llf_expected, rtol=1e-10)


# ---------------------------------------------- intercept only = factor analysis
def test_intercept_only_equals_statsmodels_ml_factor_analysis():
    nobs, k_eqs, k = 500, 12, 2
    rng = np.random.default_rng(2024)
    F = rng.normal(size=(k_eqs, k))
    D = rng.uniform(0.5, 1.5, size=k_eqs)
    mu = rng.normal(scale=3.0, size=k_eqs)
    Y = mu + rng.normal(size=(nobs, k)) @ F.T + rng.normal(size=(nobs, k_eqs)) * np.sqrt(D)

    fa = Factor(Y, n_factor=k, method="ml")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SMConvergenceWarning)
        res = fa.fit(em_iter=20, opt={"maxiter": 10000, "gtol": 1e-8}, rng=0)
    assert res.mle_retvals.success
    assert res.uniqueness.min() > 0.02  # no Heywood case on the correlation scale
    sm_loglike = fa.loglike((res.loadings, res.uniqueness))
    s2 = Y.var(axis=0)  # divisor N: the MLE of the mean is the sample mean
    theirs = -0.5 * nobs * (k_eqs * LOG_2PI + np.sum(np.log(s2))) + nobs * k_eqs * sm_loglike
    s = np.sqrt(s2)
    Sc_theirs = res.loadings @ res.loadings.T + np.diag(res.uniqueness)

    ones = [np.ones((nobs, 1))] * k_eqs
    for method in METHODS:
        rec = fit_arrays(ones, Y, k, method=method)
        assert rec.converged and rec.heywood.size == 0
        assert rec.llf >= theirs - 1e-4, (method, rec.llf - theirs)
        assert abs(rec.llf - theirs) <= 1e-4, (method, rec.llf - theirs)
        assert_allclose(np.concatenate(rec.coefs), Y.mean(axis=0), rtol=1e-10)
        # the fitted covariance on the correlation scale
        assert _rel_max(_sigma(rec) / np.outer(s, s), Sc_theirs) <= 1e-5


# ------------------------------------------------------- ALS and EM agree
@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("k_eqs", [10, 30, 60])
def test_als_and_em_reach_the_same_maximum(k_eqs, k):
    sim = simulate_sur(nobs=300, k_eqs=k_eqs, n_exog=3, rank=k, seed=1000 + 10 * k_eqs + k)
    # ptol tighter than the default 1e-6: at the default, EM stops up to 2.4e-5 (relative)
    # away from the maximum in Sigma (see test_als_and_em_default_tolerances).
    recs = {m: fit_arrays(sim.Xs, sim.Y, k, method=m, ptol=1e-8) for m in METHODS}
    als, em = recs["als"], recs["em"]
    assert als.converged and em.converged
    assert abs(als.llf - em.llf) / abs(als.llf) <= 1e-8
    assert _rel_max(_sigma(em), _sigma(als)) <= 1e-5
    for ba, be in zip(als.coefs, em.coefs, strict=True):
        assert_allclose(be, ba, rtol=1e-5, atol=1e-6)


def test_als_and_em_default_tolerances():
    """At the default stopping rule both land on the same llf; Sigma agrees to 1e-4 only.

    Measured: relative llf gap 2e-12, Sigma gap 2.4e-5. It is EM that stops early: against
    a tightly converged ALS reference (tol=1e-14, ptol=1e-11) the default ALS fit is 2.3e-8
    away in Sigma and the default EM fit 2.4e-5.
    """
    sim = simulate_sur(nobs=300, k_eqs=60, n_exog=3, rank=1, seed=1000 + 10 * 60 + 1)
    als, em = (fit_arrays(sim.Xs, sim.Y, 1, method=m) for m in METHODS)
    assert abs(als.llf - em.llf) / abs(als.llf) <= 1e-8
    assert _rel_max(_sigma(em), _sigma(als)) <= 1e-4


# ------------------------------------------------ rank K - 1 = iterated SUR
@pytest.mark.parametrize("method", METHODS)
def test_full_rank_equals_linearmodels_iterated_gls(grunfeld, grunfeld_linearmodels_igls, method):
    res = grunfeld_linearmodels_igls
    k_eqs = grunfeld.k_eqs
    rec = fit_arrays(grunfeld.Xs, grunfeld.Y, k_eqs - 1, method=method)
    assert rec.converged
    theirs = res.params.to_numpy().reshape(k_eqs, 3)
    ours = np.array(rec.coefs)
    assert_allclose(ours, theirs, rtol=1e-4)
    sigma_lm = res.sigma.to_numpy()
    assert_allclose(_sigma(rec), sigma_lm, rtol=1e-4, atol=1e-6 * np.abs(sigma_lm).max())
    # linearmodels' estimate, scored with the dense Gaussian likelihood, is not higher than ours
    resid = grunfeld.Y - np.column_stack([X @ b for X, b in zip(grunfeld.Xs, theirs, strict=True)])
    sign, logdet = np.linalg.slogdet(sigma_lm)
    assert sign == 1.0
    quad = np.trace(resid @ np.linalg.solve(sigma_lm, resid.T))
    llf_theirs = -0.5 * grunfeld.nobs * (k_eqs * LOG_2PI + logdet) - 0.5 * quad
    assert rec.llf >= llf_theirs - 1e-6 * abs(llf_theirs)
    assert abs(rec.llf - llf_theirs) <= 1e-6 * abs(llf_theirs)


# ------------------------------------------------------------------ invariances
@pytest.fixture(scope="module")
def small_system():
    # True rank 3; fits at k = 1, 2, 3 are interior (smallest D_j / Sigma_jj >= 0.13), so the
    # tight stopping rule is reached in a few sweeps. Near-Heywood systems are much slower
    # to converge tightly (see test_als_and_em_agree_near_heywood_boundary).
    return simulate_sur(nobs=200, k_eqs=10, n_exog=3, rank=3, seed=0)


# tight stopping rule so that the invariances are checked at the maximum, not along the path
TIGHT = {"tol": 1e-13, "ptol": 1e-10}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("c", [1e3, -0.01])
def test_scale_equivariance(small_system, method, c):
    Xs, Y = small_system.Xs, small_system.Y
    nobs, k_eqs = Y.shape
    base = fit_arrays(Xs, Y, 2, method=method, **TIGHT)
    scaled = fit_arrays(Xs, c * Y, 2, method=method, **TIGHT)
    for b0, b1 in zip(base.coefs, scaled.coefs, strict=True):
        assert_allclose(b1, c * b0, rtol=1e-6, atol=1e-9 * abs(c))
    assert_allclose(scaled.D, c**2 * base.D, rtol=1e-6)
    assert _rel_max(scaled.F @ scaled.F.T, c**2 * base.F @ base.F.T) <= 1e-6
    assert_allclose(scaled.llf, base.llf - nobs * k_eqs * np.log(abs(c)), rtol=1e-10)
    assert_allclose(scaled.d_floor, c**2 * base.d_floor, rtol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_equation_permutation(small_system, method):
    Xs, Y = small_system.Xs, small_system.Y
    perm = np.random.default_rng(1).permutation(Y.shape[1])
    assert not np.array_equal(perm, np.arange(Y.shape[1]))
    base = fit_arrays(Xs, Y, 2, method=method, **TIGHT)
    permuted = fit_arrays([Xs[j] for j in perm], Y[:, perm], 2, method=method, **TIGHT)
    for i, j in enumerate(perm):
        assert_allclose(permuted.coefs[i], base.coefs[j], rtol=1e-6, atol=1e-9)
    assert_allclose(permuted.D, base.D[perm], rtol=1e-6)
    FF = base.F @ base.F.T
    assert _rel_max(permuted.F @ permuted.F.T, FF[np.ix_(perm, perm)]) <= 1e-6
    assert_allclose(permuted.llf, base.llf, rtol=1e-12)


@pytest.mark.parametrize("k", [1, 3])
def test_fitted_loglike_is_rotation_invariant(small_system, k):
    rec = fit_arrays(small_system.Xs, small_system.Y, k)
    R = small_system.Y - np.column_stack(
        [X @ b for X, b in zip(small_system.Xs, rec.coefs, strict=True)]
    )
    Q, _ = np.linalg.qr(np.random.default_rng(k).normal(size=(k, k)))
    llf = LowRankCovariance(rec.F, rec.D).loglike(R)
    assert_allclose(LowRankCovariance(rec.F @ Q, rec.D).loglike(R), llf, rtol=1e-13)
    # rec.llf was computed on the whitened design; coefficients mapped back lose a little
    assert_allclose(llf, rec.llf, rtol=1e-10)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_als_llf_history_non_decreasing(small_system, k):
    rec = fit_arrays(small_system.Xs, small_system.Y, k, method="als", **TIGHT)
    h = np.asarray(rec.llf_history)
    assert len(h) == rec.iterations + 1
    assert np.all(np.diff(h) >= -1e-9 * np.abs(h[1:])), np.diff(h)
    assert h[-1] == rec.llf


@pytest.mark.parametrize("accelerate", [True, False])
@pytest.mark.parametrize("k", [1, 3])
def test_em_llf_history_non_decreasing(small_system, k, accelerate):
    rec = fit_arrays(
        small_system.Xs, small_system.Y, k, method="em", accelerate=accelerate, maxiter=5000
    )
    h = np.asarray(rec.llf_history)
    assert len(h) >= 2
    # EM (and the safeguarded SQUAREM) is monotone; allow rounding only
    assert np.all(np.diff(h) >= -1e-12 * np.abs(h[1:])), np.diff(h)
    assert h[-1] == rec.llf


@pytest.mark.parametrize("method", METHODS)
def test_shared_regressors_give_ols(method):
    sim = simulate_sur(nobs=200, k_eqs=12, n_exog=4, rank=2, shared_exog=True, seed=5)
    X = sim.Xs[0]
    assert all(Xj is X or np.array_equal(Xj, X) for Xj in sim.Xs)
    rec = fit_arrays(sim.Xs, sim.Y, 2, method=method)
    ols = np.linalg.lstsq(X, sim.Y, rcond=None)[0]  # p x K
    for j in range(sim.Y.shape[1]):
        assert_allclose(rec.coefs[j], ols[:, j], rtol=1e-10, atol=1e-12)
    if method == "als":
        assert rec.iterations == 1
    # the rest is factor analysis of the OLS residuals, scored at the OLS coefficients
    R = sim.Y - X @ ols
    assert_allclose(rec.llf, LowRankCovariance(rec.F, rec.D).loglike(R), rtol=1e-12)


def test_als_and_em_agree_near_heywood_boundary():
    """Both fitters claim convergence; they should then be at the same maximum.

    In this simulated system (true rank 3) the rank-3 likelihood rises slowly towards a
    Heywood boundary (smallest D_j / Sigma_jj heads to 0), which makes the per-iteration
    stopping rule easy to satisfy far from the supremum.

    Measured (default tolerances, both converged=True, no Heywood reported): ALS llf
    -3553.75840, EM llf -3553.76048 (relative gap 5.8e-7). A tightly converged ALS fit
    (tol=1e-12, ptol=1e-9: 59 sweeps, about a minute) still had the smallest D_j / Sigma_jj
    at 3e-4 and falling, i.e. the supremum lies on the Heywood boundary.
    """
    sim = simulate_sur(nobs=200, k_eqs=10, n_exog=3, rank=3, seed=2)
    als, em = (fit_arrays(sim.Xs, sim.Y, 3, method=m) for m in METHODS)
    assert als.converged and em.converged
    assert abs(als.llf - em.llf) / abs(als.llf) <= 1e-8, (als.llf, em.llf)


# ----------------------------------------------------------------------- memory
def test_als_memory_stays_below_three_times_the_data():
    sim = simulate_sur(nobs=200, k_eqs=3000, n_exog=3, rank=4, seed=11)
    data_bytes = sum(X.nbytes for X in sim.Xs) + sim.Y.nbytes
    t0 = time.perf_counter()
    tracemalloc.start()
    try:
        rec = fit_arrays(sim.Xs, sim.Y, 4, method="als")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - t0
    assert rec.converged
    assert peak < 3.0 * data_bytes, (peak / data_bytes, elapsed)
    # a K x K array alone would be 72 MB = 3.75 x the data here
    assert 3000 * 3000 * 8 > 3.0 * data_bytes


# --------------------------------------------------------------------- warnings
@pytest.mark.parametrize("method", METHODS)
def test_maxiter_one_warns_convergence(small_system, method):
    with pytest.warns(SMConvergenceWarning, match="maxiter=1"):
        rec = fit_arrays(small_system.Xs, small_system.Y, 2, method=method, maxiter=1)
    assert not rec.converged
    assert rec.iterations == 1


@pytest.mark.parametrize("method", METHODS)
def test_heywood_case_is_reported(method):
    rng = np.random.default_rng(3)
    nobs, k_eqs = 200, 6
    f = rng.normal(size=nobs)
    Y = np.outer(f, rng.uniform(0.5, 1.5, size=k_eqs)) + rng.normal(size=(nobs, k_eqs))
    Y[:, 5] = Y[:, 1] + 1e-6 * rng.normal(size=nobs)  # equation 5 is (almost) equation 1
    names = [f"y{j}" for j in range(k_eqs)]
    with pytest.warns(HeywoodWarning, match="y5"):
        rec = fit_arrays([np.ones((nobs, 1))] * k_eqs, Y, 1, method=method, eq_names=names)
    assert 5 in rec.heywood
    assert set(rec.heywood) <= {1, 5}
    assert_allclose(rec.D[rec.heywood], rec.d_floor[rec.heywood], rtol=1e-6)
    assert_allclose(rec.d_floor, 1e-6 * Y.var(axis=0), rtol=1e-10)


# ---------------------------------------------------------------- bad arguments
@pytest.fixture(scope="module")
def tiny_system():
    return simulate_sur(nobs=30, k_eqs=5, n_exog=2, rank=1, seed=3)


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"rank": -1}, ValueError, "rank"),
        ({"rank": 1.5}, TypeError, "rank"),
        ({"rank": 2.0}, TypeError, "rank"),
        ({"rank": "2"}, TypeError, "rank"),
        ({"rank": True}, TypeError, "rank"),
        ({"rank": 5}, ValueError, "rank"),  # = K
        ({"rank": 6}, ValueError, "rank"),  # > K
        ({"method": "newton"}, ValueError, "method"),
        ({"method": None}, ValueError, "method"),
        ({"maxiter": 0}, ValueError, "maxiter"),
        ({"maxiter": -3}, ValueError, "maxiter"),
        ({"maxiter": 2.5}, TypeError, "maxiter"),
        ({"tol": 0.0}, ValueError, "tol"),
        ({"tol": -1e-8}, ValueError, "tol"),
        ({"tol": float("nan")}, ValueError, "tol"),
        ({"tol": "1e-8"}, TypeError, "tol"),
    ],
)
def test_bad_arguments_raise(tiny_system, kwargs, exc, name):
    kw = {"rank": 1, **kwargs}
    with pytest.raises(exc, match=name):
        fit_arrays(tiny_system.Xs, tiny_system.Y, **kw)


def test_rank_not_below_nobs_raises():
    rng = np.random.default_rng(0)
    nobs, k_eqs = 6, 10
    Y = rng.normal(size=(nobs, k_eqs))
    Xs = [np.ones((nobs, 1))] * k_eqs
    for rank in (nobs, nobs + 1):
        with pytest.raises(ValueError, match=r"rank.*N=6"):
            fit_arrays(Xs, Y, rank)


@pytest.mark.parametrize("method", METHODS)
def test_collinear_regressors_name_the_equation(tiny_system, method):
    Xs = [X.copy() for X in tiny_system.Xs]
    Xs[3] = np.column_stack([Xs[3], 2.0 * Xs[3][:, 1] - Xs[3][:, 0]])
    names = ["alpha", "beta", "gamma", "delta", "epsilon"]
    with pytest.raises(CollinearityError, match="delta"):
        fit_arrays(Xs, tiny_system.Y, 1, method=method, eq_names=names)
    with pytest.raises(CollinearityError, match="equation 3"):
        fit_arrays(Xs, tiny_system.Y, 1, method=method)
    assert issubclass(CollinearityError, ValueError)
