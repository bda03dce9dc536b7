"""Missing responses by full-information ML (``missing="fiml"``), against brute force.

References written here from the model (math.md, "Missing responses"), independently of
``lowrank_sur``: the per-row likelihood of the observed responses under the dense
``Sigma_oo`` (scipy.stats.multivariate_normal, and a dense numpy version for the
optimizer), and the coefficient information ``sum_t X_t,o' Sigma_oo^{-1} X_t,o`` summed
row by row.
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.optimize import minimize

from lowrank_sur import LowRankSUR, simulate_sur
from lowrank_sur.design import SURDesign
from lowrank_sur.exceptions import DroppedRowsWarning

LOG2PI = np.log(2.0 * np.pi)


# ------------------------------------------------------------------ references
def brute_llf_scipy(Y, Xs, coefs, Sigma, obs):
    """sum_t log N(y_t,o; X_t,o b, Sigma_oo) with scipy.stats, row by row."""
    fitted = np.column_stack([X @ b for X, b in zip(Xs, coefs)])
    total = 0.0
    for t in range(Y.shape[0]):
        o = obs[t]
        if o.any():
            total += stats.multivariate_normal(fitted[t, o], Sigma[np.ix_(o, o)]).logpdf(Y[t, o])
    return float(total)


def brute_llf_dense(Y, Xs, coefs, Sigma, obs):
    """The same likelihood with numpy (Cholesky per observation pattern), for optimizers."""
    R = Y - np.column_stack([X @ b for X, b in zip(Xs, coefs)])
    total = 0.0
    patterns = {}
    for t in range(Y.shape[0]):
        patterns.setdefault(obs[t].tobytes(), []).append(t)
    for rows in patterns.values():
        o = obs[rows[0]]
        if not o.any():
            continue
        L = np.linalg.cholesky(Sigma[np.ix_(o, o)])
        Z = np.linalg.solve(L, R[np.ix_(rows, np.flatnonzero(o))].T)
        total -= 0.5 * (len(rows) * (o.sum() * LOG2PI + 2 * np.log(np.diag(L)).sum())
                        + np.sum(Z * Z))
    return float(total)


def brute_information(Xs, Sigma, obs):
    """sum_t X_t,o' Sigma_oo^{-1} X_t,o (P x P), row by row."""
    p = [X.shape[1] for X in Xs]
    off = np.concatenate([[0], np.cumsum(p)])
    A = np.zeros((off[-1], off[-1]))
    for t in range(obs.shape[0]):
        o = np.flatnonzero(obs[t])
        if o.size == 0:
            continue
        Xt = np.zeros((o.size, off[-1]))
        for i, j in enumerate(o):
            Xt[i, off[j]:off[j + 1]] = Xs[j][t]
        A += Xt.T @ np.linalg.solve(Sigma[np.ix_(o, o)], Xt)
    return A


# --------------------------------------------------------------------- systems
def make_system(nobs, k_eqs, rank, frac, seed, block=True, n_exog=2):
    """A simulated system with MCAR cells missing and (optionally) one equation missing
    for a block of rows."""
    sim = simulate_sur(nobs=nobs, k_eqs=k_eqs, n_exog=n_exog, rank=rank, seed=seed)
    rng = np.random.default_rng(seed + 100)
    obs = rng.random(sim.Y.shape) >= frac
    if block:
        obs[nobs // 4: nobs // 2, k_eqs - 1] = False
    obs[~obs.any(axis=1), 0] = True  # every row keeps a cell (dropped rows tested apart)
    Ynan = np.where(obs, sim.Y, np.nan)
    eqs = {f"e{j}": (pd.Series(Ynan[:, j], name=f"y{j}"),
                     pd.DataFrame(sim.Xs[j], columns=[f"c{j}"] + [f"x{j}_{i}" for i in
                                                                   range(n_exog - 1)]))
           for j in range(k_eqs)}
    return sim, obs, eqs


SYSTEMS = [  # nobs, k_eqs, rank, missing fraction, seed
    (40, 4, 1, 0.10, 1),
    (60, 6, 2, 0.25, 2),
    (40, 3, 1, 0.40, 3),
]
SLOW_SYSTEMS = [(50, 5, 2, 0.3, s) for s in range(10, 16)] + [(60, 6, 1, 0.35, 20)]


def _fit(eqs, rank, method="als"):
    return LowRankSUR(eqs, missing="fiml").fit(rank, method=method)


def _check_against_brute_force(nobs, k_eqs, rank, frac, seed):
    sim, obs, eqs = make_system(nobs, k_eqs, rank, frac, seed)
    res = _fit(eqs, rank)
    assert res.converged
    coefs = [np.asarray(res.params)[res.model.design.offsets[j]:res.model.design.offsets[j + 1]]
             for j in range(k_eqs)]
    Sigma = res.error_cov.to_dense()
    ref = brute_llf_scipy(sim.Y, sim.Xs, coefs, Sigma, obs)
    assert abs(res.llf - ref) <= 1e-10 * abs(ref)
    assert abs(brute_llf_dense(sim.Y, sim.Xs, coefs, Sigma, obs) - ref) <= 1e-10 * abs(ref)
    return sim, obs, res, coefs


# ----------------------------------------------------------------------- tests
@pytest.mark.parametrize("system", SYSTEMS)
def test_llf_equals_scipy_per_row_likelihood(system):
    _check_against_brute_force(*system)


@pytest.mark.slow
@pytest.mark.parametrize("system", SLOW_SYSTEMS)
def test_llf_equals_scipy_per_row_likelihood_more(system):
    _check_against_brute_force(*system)


def _unpack(theta, p, k_eqs, rank):
    off = np.concatenate([[0], np.cumsum(p)])
    b = theta[: off[-1]]
    F = theta[off[-1]: off[-1] + k_eqs * rank].reshape(k_eqs, rank)
    D = np.exp(theta[off[-1] + k_eqs * rank:])
    return [b[off[j]:off[j + 1]] for j in range(k_eqs)], F @ F.T + np.diag(D)


def _optimizer_check(nobs, k_eqs, rank, frac, seed, n_starts, method="als"):
    """scipy BFGS on the brute-force likelihood, from the fit perturbed and from random
    starts (OLS coefficients, random loadings and variances), finds no higher value.

    The optimizer has no floor on D (``D = exp(theta)``): at a Heywood fit it can only
    creep towards the same supremum, so the comparison is one-sided there.
    """
    sim, obs, eqs = make_system(nobs, k_eqs, rank, frac, seed)
    res = _fit(eqs, rank, method)
    assert res.converged
    offsets = res.model.design.offsets
    coefs = [np.asarray(res.params)[offsets[j]:offsets[j + 1]] for j in range(k_eqs)]
    Sigma = res.error_cov.to_dense()
    ref = brute_llf_scipy(sim.Y, sim.Xs, coefs, Sigma, obs)
    assert abs(res.llf - ref) <= 1e-10 * abs(ref)
    p = [X.shape[1] for X in sim.Xs]

    def negll(theta):
        c, S = _unpack(theta, p, k_eqs, rank)
        try:
            return -brute_llf_dense(sim.Y, sim.Xs, c, S, obs)
        except np.linalg.LinAlgError:
            return np.inf

    F, D = res.error_cov.F, res.error_cov.D
    at_fit = np.concatenate([np.concatenate(coefs), F.ravel(), np.log(D)])
    ols = [np.linalg.lstsq(X[obs[:, j]], sim.Y[obs[:, j], j], rcond=None)[0]
           for j, X in enumerate(sim.Xs)]
    var = np.array([np.var(sim.Y[obs[:, j], j] - X[obs[:, j]] @ b)
                    for j, (X, b) in enumerate(zip(sim.Xs, ols))])
    rng = np.random.default_rng(seed)
    best = -np.inf
    for i in range(n_starts):
        if i % 2 == 0:  # the fit, perturbed (i = 0: the fit itself)
            x0 = at_fit + (0.0 if i == 0 else 0.5) * rng.normal(size=at_fit.size)
        else:  # OLS, random loadings and variances
            F0 = rng.normal(size=(k_eqs, rank)) * np.sqrt(var / (2 * rank))[:, None]
            x0 = np.concatenate([np.concatenate(ols), F0.ravel(),
                                 np.log(var * rng.uniform(0.2, 0.8, k_eqs))])
        with np.errstate(all="ignore"):
            out = minimize(negll, x0, method="BFGS", options={"gtol": 1e-8, "maxiter": 2000})
        best = max(best, -out.fun)
    # no start finds a higher value than the fit (beyond the optimizer's own tolerance)
    assert best <= res.llf + 1e-7 * abs(res.llf), (best, res.llf)
    if len(res.heywood) == 0:
        # and the optimizer started at an interior fit stays there: the fit is a maximum
        out = minimize(negll, at_fit, method="BFGS", options={"gtol": 1e-8})
        assert abs(-out.fun - res.llf) <= 1e-8 * abs(res.llf)
    return res


def test_generic_optimizer_finds_no_higher_value():
    _optimizer_check(40, 4, 1, 0.25, 5, n_starts=4)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [6, 7, 8])
def test_generic_optimizer_finds_no_higher_value_more(seed):
    _optimizer_check(40, 4, 1, 0.3, seed, n_starts=8)


#: Random small systems (K <= 6, N <= 60, 10-40% missing, equation K-1 missing for a
#: quarter of the rows): nobs, k_eqs, rank, missing fraction, seed.
BRUTE_SYSTEMS = [
    (30, 3, 1, 0.40, 3),  # several maxima: the principal-component start misses the best
    (36, 4, 1, 0.10, 31), (45, 4, 2, 0.20, 32), (50, 5, 1, 0.30, 33),
    (50, 5, 2, 0.40, 34), (60, 6, 2, 0.15, 35), (40, 6, 1, 0.35, 36),
    (25, 3, 1, 0.25, 37), (60, 5, 2, 0.30, 38), (30, 4, 1, 0.40, 39),
]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["als", "em"])
@pytest.mark.parametrize("system", BRUTE_SYSTEMS)
def test_generic_optimizer_from_many_starts_finds_no_higher_value(system, method):
    _optimizer_check(*system, n_starts=8, method=method)


@pytest.mark.parametrize("method", ["als", "em"])
def test_llf_never_decreases(method):
    _, _, eqs = make_system(60, 6, 2, 0.25, 2)
    res = _fit(eqs, 2, method)
    h = np.asarray(res.llf_history)
    assert h.size > 2
    assert np.all(np.diff(h) >= -1e-12 * np.abs(h[1:]))


def test_factor_em_step_never_decreases():
    from lowrank_sur.missing import factor_em_step

    sim, obs, _ = make_system(50, 5, 2, 0.3, 4)
    R = np.where(obs, sim.Y, 0.0)
    F, D = np.ones((5, 2)) * np.array([1.0, -0.5]), np.ones(5)
    floor = np.full(5, 1e-6)
    last = -np.inf
    for _ in range(30):
        F, D, ll = factor_em_step(R, F, D, obs, floor)
        assert ll >= last - 1e-12 * abs(ll)
        last = ll


@pytest.mark.parametrize("system", SYSTEMS)
def test_als_and_em_agree(system):
    nobs, k_eqs, rank, frac, seed = system
    _, _, eqs = make_system(nobs, k_eqs, rank, frac, seed)
    a, e = _fit(eqs, rank, "als"), _fit(eqs, rank, "em")
    assert abs(a.llf - e.llf) <= 1e-8 * abs(a.llf)
    np.testing.assert_allclose(e.params, a.params, rtol=1e-4, atol=1e-5)


def test_als_and_em_agree_with_several_maxima():
    # from the principal-component start ALS stops at a lower local maximum (-86.584)
    # than EM (-86.477, a Heywood point); the multi-start search finds it for both
    _, _, eqs = make_system(30, 3, 1, 0.40, 3)
    a, e = _fit(eqs, 1, "als"), _fit(eqs, 1, "em")
    assert abs(a.llf - e.llf) <= 1e-8 * abs(a.llf)
    assert a.llf >= -86.478
    assert len(a.starts) > 1


def test_no_missing_cell_gives_todays_fit(grunfeld):
    eqs = {f"f{j}": (grunfeld.Y[:, j], grunfeld.Xs[j]) for j in range(grunfeld.k_eqs)}
    for rank in (0, 1, 2):
        a = LowRankSUR(eqs).fit(rank)
        b = LowRankSUR(eqs, missing="fiml").fit(rank)
        assert b.model.missing == "drop"
        assert a.llf == b.llf
        np.testing.assert_array_equal(a.params, b.params)
        np.testing.assert_array_equal(a.bse, b.bse)


def test_rows_with_no_observed_cell_are_dropped_and_the_rest_is_complete(grunfeld):
    Y = grunfeld.Y.copy()
    Y[3] = np.nan  # a whole row: the remaining rows are complete
    eqs = {f"f{j}": (Y[:, j], grunfeld.Xs[j]) for j in range(grunfeld.k_eqs)}
    a, b = LowRankSUR(eqs).fit(1), LowRankSUR(eqs, missing="fiml").fit(1)
    assert b.model.n_dropped == 1 and b.model.missing == "drop"
    assert a.llf == b.llf


def test_rank_zero_is_ols_on_each_equations_own_rows():
    sim, obs, eqs = make_system(40, 4, 1, 0.3, 9)
    res = _fit(eqs, 0)
    for j in range(4):
        o = obs[:, j]
        b, *_ = np.linalg.lstsq(sim.Xs[j][o], sim.Y[o, j], rcond=None)
        np.testing.assert_allclose(res.equations[f"e{j}"].params, b, rtol=1e-10)
        ssr = np.sum((sim.Y[o, j] - sim.Xs[j][o] @ b) ** 2)
        assert res.error_cov.D[j] == pytest.approx(ssr / o.sum(), rel=1e-10)


@pytest.mark.parametrize("route", ["dense", "woodbury"])
def test_bse_is_the_incomplete_data_information(route, monkeypatch):
    from lowrank_sur.coefcov.fiml import FIMLNonrobustCovariance

    monkeypatch.setattr(FIMLNonrobustCovariance, "route", lambda self: route)
    sim, obs, eqs = make_system(40, 4, 2, 0.3, 12)
    res = _fit(eqs, 2)
    V = np.linalg.inv(brute_information(sim.Xs, res.error_cov.to_dense(), obs))
    np.testing.assert_allclose(res.bse, np.sqrt(np.diag(V)), rtol=1e-9)
    np.testing.assert_allclose(res.cov_params(), V, rtol=1e-8, atol=1e-12)
    Rm = np.zeros((2, V.shape[0]))
    Rm[0, 1], Rm[1, 3], Rm[1, 5] = 1.0, 1.0, -1.0
    np.testing.assert_allclose(res._coef_cov.restricted(Rm), Rm @ V @ Rm.T, rtol=1e-8)
    wald = res.wald_test((Rm, np.zeros(2)), scalar=True)
    b = np.asarray(res.params)
    stat = (Rm @ b) @ np.linalg.solve(Rm @ V @ Rm.T, Rm @ b)
    assert float(wald.statistic) == pytest.approx(stat, rel=1e-7)
    t = res.t_test("e0_x0_0 = 0")
    assert float(t.sd[0, 0]) == pytest.approx(np.sqrt(V[1, 1]), rel=1e-8)


def test_debiased_scales_sigma_by_each_equations_observed_count():
    """``debiased=True`` with FIML: Stata's dfk with each equation's observed rows n_j
    for N (loadings by sqrt(n_j / (n_j - p_j)), D_j by n_j / (n_j - p_j - k)), then the
    incomplete-data information at that Sigma, against a dense computation."""
    sim, obs, eqs = make_system(40, 4, 2, 0.3, 12)
    model = LowRankSUR(eqs, missing="fiml")
    plain, deb = model.fit(2), model.fit(2, debiased=True)
    np.testing.assert_array_equal(deb.params, plain.params)
    n, p = obs.sum(axis=0), np.array([X.shape[1] for X in sim.Xs])
    s = np.sqrt(n / (n - p))
    F, D = plain.error_cov.F * s[:, None], plain.error_cov.D * n / (n - p - 2)
    V = np.linalg.inv(brute_information(sim.Xs, F @ F.T + np.diag(D), obs))
    np.testing.assert_allclose(deb.bse, np.sqrt(np.diag(V)), rtol=1e-9)
    assert np.all(deb.bse > plain.bse)


def test_other_cov_types_and_options_raise():
    _, _, eqs = make_system(40, 4, 1, 0.2, 1)
    model = LowRankSUR(eqs, missing="fiml")
    for cov_type in ("HC0", "HAC", "bootstrap"):
        with pytest.raises(NotImplementedError, match="missing='fiml'"):
            model.fit(1, cov_type=cov_type)
    with pytest.raises(NotImplementedError, match="missing='fiml'"):
        model.fit(1, constraints="e0_x0_0 = 0")
    with pytest.raises(NotImplementedError, match="missing='fiml'"):
        model.fit(1, method="fgls")
    res = model.fit(1)
    with pytest.raises(NotImplementedError, match="missing='fiml'"):
        res.get_robustcov_results("HC1")


def test_missing_regressor_makes_the_response_missing_and_warns():
    sim, obs, eqs = make_system(40, 4, 1, 0.1, 3)
    y, X = eqs["e2"]
    X = X.copy()
    seen = np.flatnonzero(obs[:, 2])[:3]
    X.iloc[seen, 1] = np.nan
    eqs["e2"] = (y, X)
    with pytest.warns(DroppedRowsWarning, match=r"'e2' \(3\)"):
        model = LowRankSUR(eqs, missing="fiml")
    assert model.n_regressor_missing == {"e2": 3}
    assert model.nobs_eqs["e2"] == obs[:, 2].sum() - 3
    res = model.fit(1)
    obs2 = obs.copy()
    obs2[seen, 2] = False
    coefs = [res.equations[f"e{j}"].params.to_numpy() for j in range(4)]
    ref = brute_llf_scipy(sim.Y, sim.Xs, coefs, res.error_cov.to_dense(), obs2)
    assert res.llf == pytest.approx(ref, rel=1e-10)


def test_counts_summary_resid_and_predict():
    sim, obs, eqs = make_system(40, 4, 1, 0.2, 1)
    model = LowRankSUR(eqs, missing="fiml")
    assert model.nobs == 40 and model.missing == "fiml"
    assert model.nobs_eqs.tolist() == obs.sum(axis=0).tolist()
    assert model.nobs_cells == obs.sum()
    assert model.df_resid == obs.sum() - model.k_params
    assert model.k_constant == 4
    res = model.fit(1)
    text = res.summary().as_text()
    assert f"{obs.sum()} of 160" in text and "observed rows per equation" in text
    assert res.likelihood_bounded
    assert "Bounded likelihood:" in text and "not checked" not in text
    assert res.resid.isna().to_numpy().tolist() == (~obs).tolist()
    assert res.fittedvalues.isna().to_numpy().tolist() == (~obs).tolist()
    pred = res.predict({f"e{j}": sim.Xs[j][:5] for j in range(4)})
    expect = np.column_stack([sim.Xs[j][:5] @ res.equations[f"e{j}"].params.to_numpy()
                              for j in range(4)])
    np.testing.assert_allclose(pred.to_numpy(), expect, rtol=1e-12)
    assert res.equations["e1"].nobs == obs[:, 1].sum()
    assert np.all(np.isfinite(res.rsquared)) and np.isfinite(res.system_rsquared)
    F, D = res.error_cov.F, res.error_cov.D
    assert model.loglike(res.params, F, D) == pytest.approx(res.llf, rel=1e-12)


def test_formulas_with_missing_values():
    sim, obs, _ = make_system(50, 3, 1, 0.2, 4)
    df = pd.DataFrame({f"y{j}": np.where(obs[:, j], sim.Y[:, j], np.nan) for j in range(3)})
    for j in range(3):
        df[f"x{j}"] = sim.Xs[j][:, 1]
    eqs = {f"e{j}": f"y{j} ~ x{j}" for j in range(3)}
    res = LowRankSUR(eqs, df, missing="fiml").fit(1)
    coefs = [res.equations[f"e{j}"].params.to_numpy() for j in range(3)]
    ref = brute_llf_scipy(sim.Y, sim.Xs, coefs, res.error_cov.to_dense(), obs)
    assert res.llf == pytest.approx(ref, rel=1e-10)
    assert res.model.nobs_eqs.tolist() == obs.sum(axis=0).tolist()


def test_rank_selection_and_lr_tests_use_the_incomplete_data_llf():
    _, _, eqs = make_system(60, 5, 1, 0.2, 7)
    model = LowRankSUR(eqs, missing="fiml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = model.fit("bic", max_rank=2)
    table = sel.rank_selection
    for k in (0, 1, 2):
        assert table.loc[k, "llf"] == pytest.approx(model.fit(k).llf, rel=1e-9)
    r0, r1 = model.fit(0), model.fit(1)
    lr = r1.compare_lr_test(r0, n_boot=19, seed=1)
    assert lr.stat == pytest.approx(2 * (r1.llf - r0.llf), rel=1e-12)
    assert lr.df == 5 * 1
    diag = r1.lr_test_diagonal()
    assert diag.stat == pytest.approx(2 * (r1.llf - r0.llf), rel=1e-9)
    with pytest.raises(NotImplementedError, match="missing='fiml'"):
        r1.lr_test_unrestricted()
    with pytest.raises(NotImplementedError, match="missing='fiml'"):
        r1.breusch_pagan()


def _brute_unbounded(Xs, obs, rank):
    """Some k+1 equations whose regressors side by side on their jointly observed rows
    have rank r with r + k + 1 > (those rows): every subset, numpy's matrix_rank."""
    from itertools import combinations

    for S in combinations(range(len(Xs)), rank + 1):
        rows = obs[:, list(S)].all(axis=1)
        r = np.linalg.matrix_rank(np.hstack([Xs[j][rows] for j in S])) if rows.any() else 0
        if r + rank + 1 > rows.sum():
            return True
    return False


def test_unbounded_likelihood_on_the_jointly_observed_rows():
    # N = 40 rows, but e3 is observed on 5 of them: with rank 1, e3 and another
    # equation have regressors of rank at most 4 on at most 5 joint rows
    from lowrank_sur.bounded import check_bounded_observed
    from lowrank_sur.exceptions import UnboundedLikelihoodWarning

    sim, obs, eqs = make_system(40, 4, 1, 0.1, 1, block=False)
    obs[:, 3] = False
    obs[:5, 3] = True
    obs[~obs.any(axis=1), 0] = True
    for j, (y, _) in eqs.items():
        y[:] = np.where(obs[:, int(j[1:])], sim.Y[:, int(j[1:])], np.nan)
    model = LowRankSUR(eqs, missing="fiml")
    with pytest.warns(UnboundedLikelihoodWarning, match="e3.*rows where all of them"):
        res = model.fit(1)
    assert not res.likelihood_bounded
    design, Y = model.design, np.where(obs, sim.Y, 0.0)
    check = check_bounded_observed(design, Y, 1, obs)
    assert not check.bounded and 3 in check.equations and check.max_bounded_rank == 0
    assert check_bounded_observed(design, Y, 0, obs).bounded
    # against every subset: the same answer at rank 1 (the greedy search from the
    # equation with the fewest rows tries every partner), never a false alarm at rank 2
    rng = np.random.default_rng(0)
    for n3 in (4, 6, 8, 12):
        for _ in range(3):
            o = rng.random(obs.shape) >= 0.15
            o[:, 3] = False
            o[rng.choice(40, n3, replace=False), 3] = True
            Yo = np.where(o, sim.Y, 0.0)
            d = SURDesign([np.where(o[:, [j]], X, 0.0) for j, X in enumerate(sim.Xs)],
                          observed=o)
            assert (not check_bounded_observed(d, Yo, 1, o).bounded) == _brute_unbounded(
                sim.Xs, o, 1)
            if not check_bounded_observed(d, Yo, 2, o).bounded:
                assert _brute_unbounded(sim.Xs, o, 2)
    # an ordinary unbalanced system is bounded, and says so
    _, obs2, eqs2 = make_system(40, 4, 1, 0.2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnboundedLikelihoodWarning)
        assert LowRankSUR(eqs2, missing="fiml").fit(1).likelihood_bounded


def test_no_dense_arrays_at_large_k():
    """The FIML fit allocates no K x K array (which would be 3x the data here)."""
    K, N = 1200, 60
    sim = simulate_sur(nobs=N, k_eqs=K, n_exog=2, rank=2, seed=5)
    rng = np.random.default_rng(5)
    obs = rng.random((N, K)) >= 0.05
    Y = np.where(obs, sim.Y, 0.0)
    Xs = [np.where(obs[:, [j]], X, 0.0) for j, X in enumerate(sim.Xs)]
    from lowrank_sur.design import SURDesign
    from lowrank_sur.fitters import fit_design

    design = SURDesign(Xs, observed=obs)
    data_bytes = Y.nbytes + sum(X.nbytes for X in Xs)
    assert K * K * 8 > 3 * data_bytes
    tracemalloc.start()
    try:
        rec = fit_design(design, Y, 2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rec.converged
    assert peak < 3.0 * data_bytes, peak / data_bytes
