"""The statsmodels-style model, the formula interface and the results (issue 3)."""

import pickle
import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from linearmodels.system import SUR

from lowrank_sur import LowRankSUR, simulate_sur
from lowrank_sur.datasets import GRUNFELD_FIRMS, grunfeld_formulas, grunfeld_wide

FIRMS = list(GRUNFELD_FIRMS)


@pytest.fixture(scope="module")
def wide():
    return grunfeld_wide()


@pytest.fixture(scope="module")
def res2(wide):
    return LowRankSUR(grunfeld_formulas(), wide).fit(rank=2)


def _pairs(wide):
    return {
        f: (
            wide[f"invest_{f}"],
            pd.DataFrame(
                {"Intercept": 1.0, f"value_{f}": wide[f"value_{f}"],
                 f"capital_{f}": wide[f"capital_{f}"]}
            ),
        )
        for f in FIRMS
    }


def _linearmodels_eqs(wide):
    return {
        f: {
            "dependent": wide[f"invest_{f}"],
            "exog": sm.add_constant(wide[[f"value_{f}", f"capital_{f}"]]),
        }
        for f in FIRMS
    }


def test_param_names_follow_patsy(res2):
    names = list(res2.params.index)
    assert names[:3] == ["gm_Intercept", "gm_value_gm", "gm_capital_gm"]
    assert len(names) == 15
    assert isinstance(res2.params, pd.Series) and isinstance(res2.bse, pd.Series)
    assert list(res2.bse.index) == names
    assert list(res2.conf_int().index) == names


def test_formula_and_pairs_agree(wide, res2):
    res_pairs = LowRankSUR(_pairs(wide)).fit(rank=2)
    np.testing.assert_allclose(res_pairs.params.to_numpy(), res2.params.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(res_pairs.bse.to_numpy(), res2.bse.to_numpy(), rtol=1e-10)
    assert res_pairs.llf == pytest.approx(res2.llf, rel=1e-12)
    assert list(res_pairs.params.index) == list(res2.params.index)


def test_from_formula_equals_init(wide, res2):
    res = LowRankSUR.from_formula(grunfeld_formulas(), wide).fit(rank=2)
    np.testing.assert_allclose(res.params, res2.params, rtol=1e-12)


@pytest.mark.parametrize("method", ["als", "em"])
def test_rank_k_minus_1_is_iterated_sur(wide, method):
    lm = SUR(_linearmodels_eqs(wide)).fit(
        method="gls", iterate=True, tol=1e-12, iter_limit=10000, cov_type="unadjusted"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = LowRankSUR(grunfeld_formulas(), wide).fit(rank=4, method=method)
    np.testing.assert_allclose(res.params.to_numpy(), lm.params.to_numpy(), rtol=1e-4)
    # GLS standard errors at the MLE equal linearmodels' unadjusted GLS ones
    np.testing.assert_allclose(res.bse.to_numpy(), lm.std_errors.to_numpy(), rtol=1e-3)
    np.testing.assert_allclose(
        res.error_cov.to_dense(), np.asarray(lm.sigma), rtol=1e-4, atol=1e-4
    )


def test_rank_k_minus_1_warns_about_identification(wide):
    from lowrank_sur import IdentificationWarning

    with pytest.warns(IdentificationWarning, match="Ledermann"):
        LowRankSUR(grunfeld_formulas(), wide).fit(rank=4)


def test_bse_equal_dense_gls_covariance(res2, wide):
    """bse against (X'(Sigma^{-1} kron I)X)^{-1} built densely by hand."""
    Sinv = np.linalg.inv(res2.error_cov.to_dense())
    Xs = [sm.add_constant(wide[[f"value_{f}", f"capital_{f}"]]).to_numpy() for f in FIRMS]
    N, K = len(wide), len(FIRMS)
    X = np.zeros((N * K, 3 * K))
    for j, Xj in enumerate(Xs):
        X[j * N : (j + 1) * N, 3 * j : 3 * j + 3] = Xj
    V = np.linalg.inv(X.T @ np.kron(Sinv, np.eye(N)) @ X)
    np.testing.assert_allclose(res2.bse.to_numpy(), np.sqrt(np.diag(V)), rtol=1e-9)
    np.testing.assert_allclose(res2.cov_params().to_numpy(), V, rtol=1e-8, atol=1e-14)


def test_wald_equals_hand_computation(res2):
    constraint = "gm_value_gm = ge_value_ge, gm_capital_gm = 0"
    w = res2.wald_test(constraint, scalar=True)
    names = list(res2.params.index)
    R = np.zeros((2, len(names)))
    R[0, names.index("gm_value_gm")] = 1
    R[0, names.index("ge_value_ge")] = -1
    R[1, names.index("gm_capital_gm")] = 1
    V = res2.cov_params().to_numpy()
    b = res2.params.to_numpy()
    Rb = R @ b
    stat = Rb @ np.linalg.solve(R @ V @ R.T, Rb)
    assert float(w.statistic) == pytest.approx(stat, rel=1e-8)
    assert w.df_denom == 2 or w.df_num == 2  # statsmodels' chi2 stores q in df_denom
    t = res2.t_test("gm_value_gm - ge_value_ge = 0")
    assert np.ravel(t.effect)[0] == pytest.approx(Rb[0], rel=1e-10)
    assert np.ravel(t.sd)[0] == pytest.approx(np.sqrt(R[0] @ V @ R[0]), rel=1e-8)
    f = res2.f_test("gm_value_gm = 0, ch_value_ch = 0")
    assert np.isfinite(np.ravel(f.fvalue)[0])


def test_breusch_pagan_equals_linearmodels(res2, wide):
    lm = SUR(_linearmodels_eqs(wide)).fit(method="ols")
    bp_lm = lm.breusch_pagan()
    bp = res2.breusch_pagan()
    assert bp.stat == pytest.approx(bp_lm.stat, rel=1e-10)
    assert bp.df == bp_lm.df
    assert bp.pvalue == pytest.approx(bp_lm.pval, rel=1e-8)
    assert "Breusch-Pagan" in str(bp)


def test_lr_tests(wide, res2):
    res1 = LowRankSUR(grunfeld_formulas(), wide).fit(rank=1)
    lr = res2.compare_lr_test(res1, method="chi2")
    assert lr.stat == pytest.approx(2 * (res2.llf - res1.llf), rel=1e-10)
    assert lr.df == (5 * 2 - 1) - 5
    d = res2.lr_test_diagonal()
    ols_llf = 0.0
    for f in FIRMS:
        ols = sm.OLS(wide[f"invest_{f}"], sm.add_constant(wide[[f"value_{f}",
                                                                 f"capital_{f}"]])).fit()
        ols_llf += ols.llf
    assert d.stat == pytest.approx(2 * (res2.llf - ols_llf), rel=1e-9)
    assert d.df == 5 * 2 - 1
    u = res1.lr_test_unrestricted()
    lm = SUR(_linearmodels_eqs(wide)).fit(
        method="gls", iterate=True, tol=1e-12, iter_limit=10000, cov_type="unadjusted"
    )
    S = np.asarray(lm.sigma)
    N, K = 20, 5
    llf_u = -0.5 * N * (K * np.log(2 * np.pi) + np.linalg.slogdet(S)[1] + K)
    # Bartlett's factor with N - p for p = 3 regressors per equation (issue 11)
    bartlett = (N - 3 - (2 * K + 5) / 6 - 2 * 1 / 3) / N
    assert u.stat == pytest.approx(bartlett * 2 * (llf_u - res1.llf), rel=1e-6)
    assert u.df == ((K - 1) ** 2 - (K + 1)) // 2
    for test in (lr, d, u):
        assert 0 <= test.pvalue <= 1 and "H0" in str(test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res3 = LowRankSUR(grunfeld_formulas(), wide).fit(rank=3)
    u3 = res3.lr_test_unrestricted()  # (5 - 3)^2 - 8 < 0: rank 3 is saturated
    assert not u3.is_valid and "degrees of freedom" in u3.reason


def test_predict_equals_fitted(res2, wide):
    pd.testing.assert_frame_equal(res2.predict(wide), res2.fittedvalues)
    assert list(res2.fittedvalues.columns) == FIRMS
    np.testing.assert_allclose(
        (res2.fittedvalues + res2.resid).to_numpy(),
        wide[[f"invest_{f}" for f in FIRMS]].to_numpy(),
        rtol=1e-12,
    )
    new = wide.iloc[:4]
    pred = res2.predict(new)
    assert pred.shape == (4, 5) and list(pred.index) == list(new.index)


def test_summary_has_every_equation(res2):
    smry = res2.summary()
    text = smry.as_text()
    for f in FIRMS:
        assert f"Equation: {f}" in text
        assert f"invest_{f}" in text
    for key in ("Log-Likelihood", "AIC", "BIC", "Converged", "Iterations", "Rows dropped",
                "Rank", "factor structure"):
        assert key in text
    assert "<table" in smry.as_html()
    assert "tabular" in smry.as_latex()


def test_summary_readable_at_large_k():
    sim = simulate_sur(60, 200, 2, 2, seed=5)
    eqs = {f"e{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(200)}
    res = LowRankSUR(eqs).fit(rank=2)
    text = res.summary().as_text()
    assert "Showing 20 of 200 equations" in text
    assert text.count("Equation: ") == 20


def test_pickle_round_trip(res2, wide):
    res = pickle.loads(pickle.dumps(res2))
    pd.testing.assert_series_equal(res.params, res2.params)
    pd.testing.assert_series_equal(res.bse, res2.bse)
    pd.testing.assert_frame_equal(res.predict(wide), res2.predict(wide))
    assert res.summary().as_text().count("Equation:") == 5


def test_remove_data(wide):
    res = LowRankSUR(_pairs(wide)).fit(rank=2)
    bse = res.bse.copy()
    res.remove_data()
    assert res.model.endog is None
    small = pickle.dumps(res)
    res = pickle.loads(small)
    pd.testing.assert_series_equal(res.bse, bse)
    assert "Equation: gm" in res.summary().as_text()


def test_dataframe_not_mutated(wide):
    before = wide.copy()
    df = wide.copy()
    df.loc[df.index[3], "value_gm"] = np.nan
    snapshot = df.copy()
    res = LowRankSUR(grunfeld_formulas(), df).fit(rank=1)
    pd.testing.assert_frame_equal(df, snapshot)
    pd.testing.assert_frame_equal(wide, before)
    assert res.nobs == 19 and res.n_dropped == 1
    assert "Rows dropped:                             1" in res.summary().as_text() or (
        "Rows dropped" in res.summary().as_text()
    )


def test_missing_rows_dropped_from_every_equation(wide):
    df = wide.copy()
    df.loc[df.index[[0, 5]], "capital_ch"] = np.nan
    res = LowRankSUR(grunfeld_formulas(), df).fit(rank=1)
    ref = LowRankSUR(grunfeld_formulas(), wide.drop(index=wide.index[[0, 5]])).fit(rank=1)
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-12)
    assert res.nobs == 18 and res.n_dropped == 2


def test_rank_selection_by_bic(wide):
    res = LowRankSUR(grunfeld_formulas(), wide).fit(rank="bic")
    table = res.rank_selection
    assert list(table.index) == [0, 1, 2, 3, 4]
    assert table["bic"].idxmin() == res.rank
    llf0 = table.loc[0, "llf"]
    # each rank's criterion is recomputed from its llf and free-parameter count, capped
    # at the saturated 15 + 15 (issue 11)
    for k, row in table.iterrows():
        df = min(15 + 5 * k - k * (k - 1) // 2 + 5, 30)
        assert row["df"] == df
        if k <= 2:
            assert row["bic"] == pytest.approx(-2 * row["llf"] + np.log(20) * df)
    # ranks 3 and 4 are past the Ledermann bound for K = 5: listed, not fitted
    assert table.loc[[3, 4], "llf"].isna().all()
    assert table.loc[[3, 4], "excluded"].str.contains("Ledermann").all()
    assert np.all(np.diff(table["llf"].to_numpy()[:3]) > -1e-6)
    assert llf0 < table.loc[1, "llf"]


def test_results_attributes(res2):
    assert res2.nll == -res2.llf
    assert res2.nll_per_obs == pytest.approx(-res2.llf / 20)
    P, K, k = 15, 5, 2
    df = P + K * k - k * (k - 1) // 2 + K
    assert res2.aic == pytest.approx(-2 * res2.llf + 2 * df)
    assert res2.bic == pytest.approx(-2 * res2.llf + np.log(20) * df)
    assert res2.nobs == 20 and res2.k_eqs == 5 and res2.rank == 2
    assert res2.df_resid == 20 * 5 - 15 and res2.df_model == 10
    assert res2.converged and res2.iterations >= 1 and res2.method == "als"
    assert np.all(np.diff(res2.llf_history) >= -1e-9 * abs(res2.llf))
    fl = res2.factor_loadings
    FtDF = fl.to_numpy().T @ (fl.to_numpy() / res2.idiosyncratic_var.to_numpy()[:, None])
    assert abs(FtDF[0, 1]) < 1e-8 * FtDF[0, 0] and FtDF[0, 0] >= FtDF[1, 1]
    for c in fl.columns:
        col = fl[c].to_numpy()
        assert col[np.argmax(np.abs(col))] > 0
    fs = res2.factor_summary()
    np.testing.assert_allclose(
        fs["communality"] + fs["uniqueness"], np.diag(res2.error_cov.to_dense()), rtol=1e-12
    )
    np.testing.assert_allclose(fs["common_share"], fs["communality"] / fs["error_var"])
    assert fs.attrs["factor_share"].sum() < 1
    np.testing.assert_allclose(
        res2.conf_int().to_numpy()[:, 0],
        res2.params.to_numpy() - 1.959963984540054 * res2.bse.to_numpy(),
    )


def test_disp_prints_one_line_per_sweep(wide, capsys):
    res = LowRankSUR(grunfeld_formulas(), wide).fit(rank=1, disp=True)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == res.iterations
    assert all("llf" in line for line in out)


def test_full_cov_guard_and_restricted_cov_at_large_k():
    sim = simulate_sur(120, 2000, 3, 2, seed=11)
    eqs = {f"e{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(2000)}
    res = LowRankSUR(eqs).fit(rank=2)
    with pytest.raises(MemoryError, match="wald_test"):
        res.cov_params()
    tracemalloc.start()
    w = res.wald_test("e0_x1 = e1_x1, e5_x2 = 0", scalar=True)
    t = res.t_test("e10_x1 = 0")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    P = 6000
    assert peak < P * P * 8 / 4  # far below one P x P array (288 MB)
    assert np.isfinite(float(w.statistic)) and np.isfinite(np.ravel(t.sd)[0])


def test_bse_memory_at_k1000():
    """All standard errors at K=1000 without any K x K or P x P array."""
    sim = simulate_sur(300, 1000, 3, 4, seed=12)
    eqs = {f"e{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(1000)}
    res = LowRankSUR(eqs).fit(rank=4)
    tracemalloc.start()
    bse = res.bse
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    P = 3000
    assert np.all(np.isfinite(bse)) and bse.shape == (P,)
    assert peak < P * P * 8  # one P x P array would be 72 MB
    # spot-check against a conjugate-gradient solve of one column
    e = np.zeros((1, P))
    e[0, 7] = 1.0
    v = res._results._coef_cov.restricted(e)[0, 0]
    assert np.sqrt(v) == pytest.approx(bse.iloc[7], rel=1e-6)
