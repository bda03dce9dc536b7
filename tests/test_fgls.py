"""Classic SUR (``rank="full"``) and the low-rank two-step estimator (``method="fgls"``).

References we did not write:

* Stata 13 ``sureg`` (stored, ``tests/results/stata_sureg/``): two-step FGLS (``base``) and
  ``small dfk`` (``ss``) on three systems; every printed number of the six blocks.
* linearmodels 7.1 ``SUR`` run live on the Grunfeld five-firm system: two-step
  (``method="gls"``) and iterated, ``debiased`` on and off, ``cov_type="unadjusted"``,
  ``"robust"``, ``"kernel"`` and ``"clustered"`` (one- and two-way), also with
  ``add_constraints`` (the restricted sandwich).
* Closed forms computed here with dense matrices: systemfit's Theil divisor; the low-rank
  two-step estimator as OLS, factor analysis of the residuals and one dense GLS step.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import linalg
from stata_check import compare_block, model_for, rel_max, stata

from lowrank_sur import IdentificationWarning, LowRankSUR
from lowrank_sur.datasets import grunfeld_wide
from lowrank_sur.factor import FactorOptions, fit_factor

FIRMS = ("gm", "ch", "ge", "wh", "us")


@pytest.fixture(scope="module")
def grunfeld():
    df = grunfeld_wide()
    eqs = {f: f"invest_{f} ~ value_{f} + capital_{f}" for f in FIRMS}
    return df, LowRankSUR(eqs, df)


# ------------------------------------------------------------------------------ Stata
@pytest.mark.parametrize("system", stata.SYSTEMS)
def test_stata_two_step(blocks, stata_data, system):
    block = blocks[f"{system}-base"]
    res = model_for(block, stata_data).fit(rank="full", method="fgls")
    err = compare_block(res, block)
    assert max(err.values()) < 1e-6
    assert res.nobs == (154 if system == "missing" else 200)
    assert not res.use_t


@pytest.mark.parametrize("system", stata.SYSTEMS)
def test_stata_small_dfk(blocks, stata_data, system):
    block = blocks[f"{system}-ss"]
    res = model_for(block, stata_data).fit(rank="full", method="fgls", debiased=True,
                                           use_t=True)
    err = compare_block(res, block)
    assert max(err.values()) < 1e-6
    # Stata's small: t(N K - P) reference distribution
    assert res.use_t and res.df_resid == (450 if system == "missing" else 588)
    # the same as naming the divisor
    res2 = model_for(block, stata_data).fit(rank="full", method="fgls", sigma_df="geomean",
                                            use_t=True)
    np.testing.assert_array_equal(res2.params, res.params)


def test_common_regressors_two_step_is_ml(blocks, stata_data):
    """Shared regressors: GLS is OLS, so two-step FGLS, iterated FGLS and ALS agree."""
    block = blocks["common-base"]
    model = model_for(block, stata_data)
    two = model.fit(rank="full", method="fgls")
    it = model.fit(rank="full", method="fgls", iterate=True)
    np.testing.assert_allclose(it.params, two.params, rtol=1e-12)
    np.testing.assert_allclose(it.llf, two.llf, rtol=1e-12)
    assert "maximum likelihood" in it.summary().as_text()


# ------------------------------------------------------------------- linearmodels live
@pytest.mark.parametrize("iterate", [False, True])
@pytest.mark.parametrize("debiased", [False, True])
def test_linearmodels_sur(grunfeld, iterate, debiased):
    lm = pytest.importorskip("linearmodels.system")
    df, model = grunfeld
    formulas = {f: f"invest_{f} ~ 1 + value_{f} + capital_{f}" for f in FIRMS}
    ref = lm.SUR.from_formula(formulas, df).fit(
        method="gls", cov_type="unadjusted", iterate=iterate, debiased=debiased,
        iter_limit=1000, tol=1e-12)
    res = model.fit(rank="full", method="fgls", iterate=iterate, debiased=debiased,
                    tol=1e-14, ptol=1e-12)
    assert res.converged

    assert rel_max(res.params, ref.params) < 1e-8
    assert rel_max(res.cov_params(), ref.cov) < 1e-8
    assert rel_max(res.bse, ref.std_errors) < 1e-8
    assert rel_max(res.sigma, ref.sigma) < 1e-8
    r2 = [ref.equations[f].rsquared for f in FIRMS]
    assert rel_max(res.rsquared, r2) < 1e-8
    assert abs(res.system_rsquared - ref.system_rsquared["mcelroy"]) < 1e-8


def test_iterated_fgls_is_the_ml_of_an_unrestricted_sigma(grunfeld):
    """Iterated FGLS with 1/N equals the ALS/EM fit at rank K - 1 (any Sigma)."""
    _, model = grunfeld
    it = model.fit(rank="full", method="fgls", iterate=True, tol=1e-14, ptol=1e-10)
    with pytest.warns(IdentificationWarning):  # rank K - 1 is past the Ledermann bound
        em = model.fit(rank=4, method="em", tol=1e-14, ptol=1e-10, maxiter=5000)
    assert it.llf >= em.llf - 1e-7 * abs(em.llf)
    np.testing.assert_allclose(it.params, em.params, rtol=1e-4, atol=1e-6)
    # concentrated likelihood at the MLE: -N/2 (K log 2 pi + log|R'R/N| + K)
    R = it.resid.to_numpy()
    N, K = R.shape
    llf = -N / 2 * (K * np.log(2 * np.pi) + np.linalg.slogdet(R.T @ R / N)[1] + K)
    np.testing.assert_allclose(it.llf, llf, rtol=1e-10)
    # coordinate ascent: never lower, up to rounding
    assert np.all(np.diff(it.llf_history) >= -1e-12 * abs(it.llf))


# --------------------------------------------------------------------- closed forms
def _dense_system(model):
    Xs = [np.asarray(X) for X in model.system.exog]
    return Xs, model.system.endog.to_numpy()


def test_theil_divisor(grunfeld):
    """systemfit's Theil: r_i'r_j / (N - p_i - p_j + tr(P_i P_j)), with different regressors."""
    df = grunfeld_wide()
    eqs = {"gm": "invest_gm ~ value_gm + capital_gm", "ch": "invest_ch ~ value_ch",
           "ge": "invest_ge ~ value_ge + capital_ge + value_gm"}
    model = LowRankSUR(eqs, df)
    res = model.fit(rank="full", method="fgls", sigma_df="theil")
    Xs, Y = _dense_system(model)
    N = Y.shape[0]
    hats = [X @ np.linalg.solve(X.T @ X, X.T) for X in Xs]
    R = np.column_stack([Y[:, j] - hats[j] @ Y[:, j] for j in range(3)])
    p = [X.shape[1] for X in Xs]
    div = np.array([[N - p[i] - p[j] + np.trace(hats[i] @ hats[j]) for j in range(3)]
                    for i in range(3)])
    S = R.T @ R / div
    Xb = linalg.block_diag(*Xs)
    Om = np.kron(np.linalg.inv(S), np.eye(N))
    V = np.linalg.inv(Xb.T @ Om @ Xb)
    b = V @ Xb.T @ Om @ Y.T.ravel()
    np.testing.assert_allclose(res.sigma, S, rtol=1e-12)
    np.testing.assert_allclose(res.params, b, rtol=1e-10)
    np.testing.assert_allclose(res.cov_params(), V, rtol=1e-10)
    assert "theil" in res.summary().as_text()


def test_lowrank_two_step(grunfeld):
    """rank=k: OLS, factor fit of the OLS residuals, one GLS step (here checked densely).

    Rank 2 (rank 1 ends in a Heywood case for these data, where Sigma is too ill
    conditioned for a 1e-8 comparison with a dense inverse).
    """
    _, model = grunfeld
    res = model.fit(rank=2, method="fgls")
    Xs, Y = _dense_system(model)
    N, K = Y.shape
    B = [np.linalg.lstsq(X, Y[:, j], rcond=None)[0] for j, X in enumerate(Xs)]
    R = np.column_stack([Y[:, j] - Xs[j] @ B[j] for j in range(K)])
    F, D = res.error_cov.F, res.error_cov.D
    # the factor step is the ML factor fit of the OLS residuals: compare llf with a refit
    ff = fit_factor(R, F, D, 1e-6 * R.var(axis=0), FactorOptions())
    np.testing.assert_allclose(ff.llf, res.error_cov.loglike(R), rtol=1e-10)
    S = F @ F.T + np.diag(D)
    Xb = linalg.block_diag(*Xs)
    Om = np.kron(np.linalg.inv(S), np.eye(N))
    b = np.linalg.solve(Xb.T @ Om @ Xb, Xb.T @ Om @ Y.T.ravel())
    np.testing.assert_allclose(res.params, b, rtol=1e-8, atol=1e-10)
    assert res.iterations == 1 and "Two-step" in res.summary().as_text()


# ------------------------------------------------------------------------ bad input
def test_bad_input(grunfeld):
    _, model = grunfeld
    with pytest.raises(ValueError, match="method='fgls'"):
        model.fit(rank="full")
    with pytest.raises(ValueError, match="debiased=True is sigma_df='geomean'"):
        model.fit(rank="full", method="fgls", debiased=True, sigma_df="theil")
    with pytest.raises(ValueError, match="sigma_df must be one of"):
        model.fit(rank="full", method="fgls", sigma_df="dfk")
    with pytest.raises(TypeError, match="iterate must be True or False"):
        model.fit(rank="full", method="fgls", iterate="yes")
    with pytest.raises(ValueError, match="use method='als'"):
        model.fit(rank=1, method="fgls", iterate=True)
    res = model.fit(rank="full", method="fgls")
    with pytest.raises(ValueError, match="no factor structure"):
        res.factor_summary()


def test_too_many_equations():
    rng = np.random.default_rng(0)
    n, k = 5, 6
    data = pd.DataFrame(rng.standard_normal((n, 2 * k)),
                        columns=[f"{v}{j}" for j in range(k) for v in "yx"])
    model = LowRankSUR({f"e{j}": f"y{j} ~ x{j}" for j in range(k)}, data)
    with pytest.raises(ValueError, match="fewer equations than observations"):
        model.fit(rank="full", method="fgls")


def test_options_of_other_methods_refused(grunfeld):
    _, model = grunfeld
    with pytest.raises(ValueError, match="iterate is an option of method='fgls'"):
        model.fit(rank=1, iterate=True)
    with pytest.raises(ValueError, match="sigma_df is an option of method='fgls'"):
        model.fit(rank=1, method="em", sigma_df="theil")
    with pytest.raises(ValueError, match="rank='full'"):
        model.fit(rank=1, method="fgls", sigma_df="theil")


def test_full_rank_results_survive_remove_data_and_pickle(grunfeld, tmp_path):
    import pickle

    _, model = grunfeld
    res = model.fit(rank="full", method="fgls")
    text = res.summary().as_text()
    assert "Two-step FGLS is a one-step estimator" in text
    assert "Error factor structure" not in text
    path = tmp_path / "full.pkl"
    res.save(str(path))
    back = pickle.loads(path.read_bytes())
    pd.testing.assert_series_equal(back.params, res.params)
    pd.testing.assert_frame_equal(back.sigma, res.sigma)
    # a two-step estimate is not a maximum: no LR test; the iterated (ML) one counts an
    # unrestricted Sigma's K (K + 1) / 2 parameters
    assert not res.lr_test_diagonal().is_valid
    assert "not maxima of the likelihood" in res.lr_test_diagonal().reason
    ml = model.fit(rank="full", method="fgls", iterate=True)
    assert ml.lr_test_diagonal().df == 10
    assert ml.compare_lr_test(model.fit(rank=2), method="chi2").df == 15 - (10 - 1 + 5)
    with pytest.raises(NotImplementedError, match="method=.chi2."):
        ml.compare_lr_test(model.fit(rank=2))
    assert "unrestricted Sigma already" in ml.lr_test_unrestricted().reason
    bse, r2 = res.bse.copy(), res.rsquared.copy()
    res.remove_data()
    pd.testing.assert_series_equal(res.bse, bse)
    pd.testing.assert_series_equal(res.rsquared, r2)
    assert "Rank (factors):                  full" in res.summary().as_text()
    # the covariance-structure criteria count an unrestricted Sigma: K (K + 1) / 2
    assert res.df_ic == 15 + 15


@pytest.mark.parametrize("iterate", [False, True])
@pytest.mark.parametrize(
    ("cov_type", "cov_kwds", "lm_type", "lm_kwds"),
    [
        ("HC0", {}, "robust", {}),
        ("HAC", {"kernel": "bartlett", "bandwidth": 3}, "kernel",
         {"kernel": "bartlett", "bandwidth": 3}),
        ("cluster", {"groups": np.arange(20) // 4, "use_correction": False}, "clustered",
         {"clusters": np.arange(20) // 4}),
    ],
)
def test_linearmodels_sur_robust(grunfeld, iterate, cov_type, cov_kwds, lm_type, lm_kwds):
    """Sandwich covariances of the unrestricted-Sigma fit equal linearmodels' (same Sigma)."""
    lm = pytest.importorskip("linearmodels.system")
    df, _ = grunfeld
    model = LowRankSUR({f: f"invest_{f} ~ value_{f} + capital_{f}" for f in FIRMS}, df)
    formulas = {f: f"invest_{f} ~ 1 + value_{f} + capital_{f}" for f in FIRMS}
    kw = dict(lm_kwds)
    if "clusters" in kw:
        kw["clusters"] = pd.DataFrame({"g": kw["clusters"]}, index=df.index)
    ref = lm.SUR.from_formula(formulas, df).fit(
        method="gls", cov_type=lm_type, iterate=iterate, iter_limit=1000, tol=1e-12, **kw)
    res = model.fit(rank="full", method="fgls", iterate=iterate, tol=1e-14, ptol=1e-12,
                    cov_type=cov_type, cov_kwds=cov_kwds)
    assert rel_max(res.params, ref.params) < 1e-8
    assert rel_max(res.bse, ref.std_errors) < 1e-7
    switched = model.fit(rank="full", method="fgls", iterate=iterate, tol=1e-14,
                         ptol=1e-12).get_robustcov_results(cov_type, **cov_kwds)
    np.testing.assert_allclose(switched.bse, res.bse, rtol=1e-12)


CONSTRAINTS = "gm_value_gm = ch_value_ch, gm_capital_gm = ch_capital_ch"
_G1, _G2 = np.arange(20) // 4, np.arange(20) % 3


@pytest.mark.parametrize("iterate", [False, True])
@pytest.mark.parametrize(
    ("cov_type", "cov_kwds", "lm_type", "lm_kwds"),
    [
        ("HC0", {}, "robust", {}),
        ("robust", {"debiased": True}, "robust", {"debiased": True}),
        ("HAC", {"kernel": "bartlett", "bandwidth": 3}, "kernel",
         {"kernel": "bartlett", "bandwidth": 3}),
        ("kernel", {"kernel": "parzen", "bandwidth": 2, "debiased": True}, "kernel",
         {"kernel": "parzen", "bandwidth": 2, "debiased": True}),
        ("clustered", {"clusters": _G1, "debiased": False}, "clustered", {"clusters": [_G1]}),
        ("clustered", {"clusters": np.c_[_G1, _G2], "debiased": True, "group_debias": True},
         "clustered", {"clusters": [_G1, _G2], "debiased": True, "group_debias": True}),
    ],
    ids=["robust", "robust-debiased", "kernel", "kernel-parzen-debiased", "clustered",
         "clustered-2way-debiased"],
)
def test_linearmodels_sur_robust_with_constraints(grunfeld, iterate, cov_type, cov_kwds,
                                                  lm_type, lm_kwds):
    """The restricted sandwich equals linearmodels' (``add_constraints``; its bread is
    ``T (T' A T)^{-1} T'`` with ``T`` a basis of null(R)); measured 1e-12 relative."""
    lm = pytest.importorskip("linearmodels.system")
    df, _ = grunfeld
    model = LowRankSUR({f: f"invest_{f} ~ value_{f} + capital_{f}" for f in FIRMS}, df)
    mod = lm.SUR.from_formula({f: f"invest_{f} ~ 1 + value_{f} + capital_{f}" for f in FIRMS},
                              df)
    names = list(mod.param_names)
    R = np.zeros((2, 15))
    R[0, [names.index("gm_value_gm"), names.index("ch_value_ch")]] = 1, -1
    R[1, [names.index("gm_capital_gm"), names.index("ch_capital_ch")]] = 1, -1
    mod.add_constraints(pd.DataFrame(R, columns=names), pd.Series([0.0, 0.0]))
    kw = dict(lm_kwds)
    if "clusters" in kw:
        kw["clusters"] = pd.DataFrame(np.column_stack(kw["clusters"]), index=df.index)
    ref = mod.fit(method="gls", cov_type=lm_type, iterate=iterate, iter_limit=1000, tol=1e-12,
                  **kw)
    res = model.fit(rank="full", method="fgls", iterate=iterate, constraints=CONSTRAINTS,
                    tol=1e-14, ptol=1e-12, cov_type=cov_type, cov_kwds=cov_kwds)
    assert rel_max(res.params, ref.params) < 1e-8
    assert rel_max(res.bse, ref.std_errors) < 1e-8
    assert rel_max(res.cov_params(), ref.cov) < 1e-8
    switched = model.fit(rank="full", method="fgls", iterate=iterate, tol=1e-14, ptol=1e-12,
                         constraints=CONSTRAINTS).get_robustcov_results(cov_type, **cov_kwds)
    np.testing.assert_allclose(switched.bse, res.bse, rtol=1e-12)


def test_bootstrap_with_constraints_is_refused(grunfeld):
    df, _ = grunfeld
    model = LowRankSUR({f: f"invest_{f} ~ value_{f} + capital_{f}" for f in FIRMS}, df)
    res = model.fit(rank=1, constraints="gm_value_gm = ge_value_ge")
    with pytest.raises(NotImplementedError, match="constraints imposed"):
        res.get_robustcov_results("bootstrap", n_boot=9)
