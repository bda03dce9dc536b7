"""Per-equation results, R^2, McElroy's system R^2, Sigma tables and predictions.

References we did not write: statsmodels ``OLS`` per equation at rank 0 (where the ML
estimate is OLS per equation; standard errors differ only by the ML scale SSR / N against
SSR / (N - p)); linearmodels' McElroy R^2 formula (its test suite's ``reference_mcelroy``,
written out densely here); the R^2 of Stata and linearmodels are compared in
``test_fgls.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from lowrank_sur import LowRankSUR
from lowrank_sur.datasets import grunfeld_wide

FIRMS = ("gm", "ch", "ge", "wh", "us")


@pytest.fixture(scope="module")
def data():
    return grunfeld_wide()


@pytest.fixture(scope="module")
def model(data):
    eqs = {f: f"invest_{f} ~ value_{f} + capital_{f}" for f in FIRMS}
    eqs["us"] = "invest_us ~ value_us + capital_us - 1"  # one equation without a constant
    return LowRankSUR(eqs, data)


@pytest.fixture(scope="module")
def rank0(model):
    return model.fit(rank=0)


def _ols(data, f):
    formula = f"invest_{f} ~ value_{f} + capital_{f}" + (" - 1" if f == "us" else "")
    return sm.OLS.from_formula(formula, data).fit()


@pytest.mark.parametrize("firm", FIRMS)
def test_rank0_equations_are_statsmodels_ols(data, rank0, firm):
    ref = _ols(data, firm)
    eq = rank0.equations[firm]
    assert eq is not None and rank0.equation(firm).label == firm
    np.testing.assert_allclose(eq.params.to_numpy(), ref.params.to_numpy(), rtol=1e-10)
    assert list(eq.params.index) == list(ref.params.index)
    np.testing.assert_allclose(eq.resid.to_numpy(), ref.resid.to_numpy(), rtol=1e-8,
                               atol=1e-9 * np.abs(ref.resid).max())
    np.testing.assert_allclose(eq.fittedvalues.to_numpy(), ref.fittedvalues.to_numpy(),
                               rtol=1e-10)
    np.testing.assert_allclose(eq.ssr, ref.ssr, rtol=1e-10)
    # centred with a constant, uncentred without (us), as statsmodels
    np.testing.assert_allclose(eq.rsquared, ref.rsquared, rtol=1e-10)
    np.testing.assert_allclose(eq.rsquared_adj, ref.rsquared_adj, rtol=1e-10)
    assert eq.df_resid == ref.df_resid and eq.df_model == ref.df_model
    # the ML scale SSR / N against statsmodels' SSR / (N - p)
    N, p = ref.nobs, len(ref.params)
    np.testing.assert_allclose(eq.bse.to_numpy() * np.sqrt(N / (N - p)), ref.bse.to_numpy(),
                               rtol=1e-9)
    np.testing.assert_allclose(eq.tvalues.to_numpy(), eq.params.to_numpy() / eq.bse.to_numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(eq.pvalues.to_numpy(),
                               2 * stats.norm.sf(np.abs(eq.tvalues.to_numpy())), rtol=1e-10)
    ci = eq.conf_int(0.1).to_numpy()
    z = stats.norm.ppf(0.95)
    np.testing.assert_allclose(ci[:, 0], eq.params - z * eq.bse, rtol=1e-12)
    np.testing.assert_allclose(eq.cov_params().to_numpy().diagonal(), eq.bse.to_numpy() ** 2,
                               rtol=1e-10)
    text = eq.summary().as_text()
    assert "R-squared:" in text and f"{eq.rsquared:#.4g}" in text
    assert "invest_" + firm in text


def test_system_series(rank0):
    assert list(rank0.rsquared.index) == list(FIRMS)
    np.testing.assert_allclose(rank0.rsquared["gm"], rank0.equations["gm"].rsquared)
    assert list(rank0.equations) == list(FIRMS) and len(rank0.equations) == 5
    with pytest.raises(KeyError, match="unknown equation 'xx'"):
        _ = rank0.equations["xx"]
    text = rank0.summary().as_text()
    assert f"R-squared: {rank0.rsquared['gm']:.4f}" in text


def test_mcelroy_against_dense_formula(model):
    res = model.fit(rank=2)
    u = res.resid.to_numpy()
    y = model.system.endog.to_numpy()
    S = res.sigma.to_numpy()
    N = u.shape[0]
    Si = np.linalg.inv(S)
    num = u.T.ravel() @ np.kron(Si, np.eye(N)) @ u.T.ravel()
    M0 = np.eye(N) - np.ones((N, N)) / N
    den = y.T.ravel() @ np.kron(Si, M0) @ y.T.ravel()
    np.testing.assert_allclose(res.system_rsquared, 1 - num / den, rtol=1e-10)


def test_sigma_and_resid_corr(model, monkeypatch):
    res = model.fit(rank=2)
    F, D = res.error_cov.F, res.error_cov.D
    S = F @ F.T + np.diag(D)
    assert isinstance(res.sigma, pd.DataFrame)
    assert list(res.sigma.index) == list(FIRMS) == list(res.sigma.columns)
    np.testing.assert_allclose(res.sigma.to_numpy(), S, rtol=1e-12)
    sd = np.sqrt(np.diag(S))
    np.testing.assert_allclose(res.resid_corr.to_numpy(), S / np.outer(sd, sd), rtol=1e-12)
    from lowrank_sur import equations

    monkeypatch.setattr(equations, "SIGMA_MAX_K", 3)
    with pytest.raises(MemoryError, match="factor representation"):
        _ = res.sigma
    with pytest.raises(MemoryError, match="factor_loadings"):
        _ = res.resid_corr


def test_get_prediction_rank0_is_statsmodels(data, rank0):
    """Mean and new-observation standard errors: statsmodels' times sqrt((N - p) / N)."""
    pred = rank0.get_prediction()
    for f in FIRMS:
        ref = _ols(data, f).get_prediction().summary_frame()
        N, p = len(data), 2 if f == "us" else 3
        ours = pred.summary_frame(equation=f)
        np.testing.assert_allclose(ours["mean"], ref["mean"], rtol=1e-10)
        np.testing.assert_allclose(ours["mean_se"], ref["mean_se"] * np.sqrt((N - p) / N),
                                   rtol=1e-8)
        se_obs = (ours["obs_ci_upper"] - ours["mean"]) / stats.norm.ppf(0.975)
        sm_obs = (ref["obs_ci_upper"] - ref["mean"]) / stats.t.ppf(0.975, N - p)
        np.testing.assert_allclose(se_obs, sm_obs * np.sqrt((N - p) / N), rtol=1e-8)
        np.testing.assert_allclose(pred.se_obs[f], se_obs, rtol=1e-10)
    stacked = pred.summary_frame(alpha=0.1)
    assert list(stacked.columns) == ["mean", "mean_se", "mean_ci_lower", "mean_ci_upper",
                                     "obs_ci_lower", "obs_ci_upper"]
    assert stacked.index.get_level_values(0).unique().tolist() == list(FIRMS)


def test_get_prediction_new_data_and_use_t(data, model):
    res = model.fit(rank=2, use_t=True)
    new = data.iloc[:4]
    pred = res.get_prediction(new)
    np.testing.assert_allclose(pred.predicted_mean.to_numpy(), res.predict(new).to_numpy(),
                               rtol=1e-12)
    frame = pred.summary_frame(equation="gm")
    half = frame["mean_ci_upper"] - frame["mean"]
    np.testing.assert_allclose(half, stats.t.ppf(0.975, res.df_resid) * frame["mean_se"],
                               rtol=1e-10)
    # use_t: t(N K - P) p-values, as statsmodels
    np.testing.assert_allclose(res.pvalues, 2 * stats.t.sf(np.abs(res.tvalues), res.df_resid),
                               rtol=1e-10)
    assert "P>|t|" in res.summary().as_text()


def test_kept_after_remove_data(model):
    res = model.fit(rank=2)
    r2, mc = res.rsquared.copy(), res.system_rsquared
    res.remove_data()
    pd.testing.assert_series_equal(res.rsquared, r2)
    assert res.system_rsquared == mc
    assert "R-squared" in res.summary().as_text()
    assert res.equations["gm"].rsquared == r2["gm"]
