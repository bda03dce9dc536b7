"""Honest inference (issue 11): free-parameter counts, invalid tests, LR tests, bootstrap."""

import dataclasses
import warnings

import numpy as np
import pytest
from scipy import stats

from lowrank_sur import FitOptions, LowRankSUR, simulate_sur
from lowrank_sur.bootstrap import fdb_pvalue
from lowrank_sur.covtests import bartlett_factor, lr_test_unrestricted
from lowrank_sur.datasets import grunfeld_formulas, grunfeld_wide
from lowrank_sur.selection import (
    choose_rank,
    factor_criteria,
    n_cov_params,
    n_free_params,
    residual_eigenvalues,
)


@pytest.fixture(scope="module")
def g5():
    model = LowRankSUR(grunfeld_formulas(), grunfeld_wide())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {k: model.fit(rank=k) for k in range(5)}


def _pairs(sim):
    return {f"e{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(sim.Y.shape[1])}


# ----------------------------------------------------- 1. free-parameter counts
def test_kmenta_count_is_systemfits_logLik_df():
    # Kmenta's supply-demand system: demand 3 regressors, supply 4 (P = 7), K = 2.
    # systemfit's logLik of the (unrestricted) SUR reports df = 10 = 7 + 2 * 3 / 2;
    # rank 1 = K - 1 is the saturated model and must count the same.
    assert n_free_params(7, 2, 1) == 10
    assert n_free_params(7, 2, None) == 10
    assert n_free_params(7, 2, 0) == 9  # diagonal: 7 + 2 variances


def test_kmenta_shaped_fit_reports_df_10():
    rng = np.random.default_rng(3)
    n = 20
    X1 = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    X2 = np.column_stack([np.ones(n), rng.normal(size=(n, 3))])
    Y = rng.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], size=n)
    with warnings.catch_warnings():  # rank K - 1 = 1 is past the Ledermann bound
        warnings.simplefilter("ignore")
        res = LowRankSUR({"demand": (Y[:, 0], X1), "supply": (Y[:, 1], X2)}).fit(rank=1)
    assert res.df_ic == 10
    assert res.aic == pytest.approx(-2 * res.llf + 20)
    assert res.bic == pytest.approx(-2 * res.llf + np.log(20) * 10)


def test_grunfeld5_counts_capped_at_saturated(g5):
    # P = 15, K = 5: saturated 15 + 15 = 30; ranks 3 and 4 used to give 32 and 34
    assert [g5[k].df_ic for k in range(5)] == [20, 25, 29, 30, 30]
    assert [n_cov_params(5, k) for k in range(5)] == [5, 10, 14, 15, 15]


# ------------------------------------------------------------ 2. invalid tests
def test_compare_saturated_ranks_is_invalid(g5):
    t = g5[3].compare_lr_test(g5[4])
    assert not t.is_valid and np.isnan(t.stat) and np.isnan(t.pvalue)
    assert "nothing to test" in t.reason and "Invalid" in str(t)


def test_rank0_lr_test_diagonal_is_invalid(g5):
    t = g5[0].lr_test_diagonal()
    assert not t.is_valid and np.isnan(t.pvalue) and "rank 0" in t.reason
    assert g5[1].lr_test_diagonal().is_valid


def test_breusch_pagan_one_equation_is_invalid():
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(30), rng.normal(size=30)])
    res = LowRankSUR({"only": (rng.normal(size=30), X)}).fit(rank=0)
    bp = res.breusch_pagan()
    assert not bp.is_valid and np.isnan(bp.stat) and "one equation" in bp.reason


def test_zero_restriction_refused(g5):
    R = np.zeros((1, 15))
    with pytest.raises(ValueError, match=r"row\(s\) \[0\].*vacuous"):
        g5[2].t_test(R)
    with pytest.raises(ValueError, match="impossible"):
        g5[2].wald_test((R, np.array([1.0])))


def test_contradictory_and_redundant_wald_refused(g5):
    names = g5[2].model.param_names
    with pytest.raises(ValueError, match="contradict"):
        g5[2].wald_test([f"{names[1]} = 0", f"{names[1]} = 1"])
    with pytest.raises(ValueError, match="linearly dependent"):
        g5[2].wald_test([f"{names[1]} = 0", f"2 * {names[1]} = 0"])
    w = g5[2].wald_test([f"{names[1]} = 0", f"{names[4]} = 0"])  # fine
    assert np.isfinite(float(w.statistic))


# ------------------------------------------------ 3. lr_test_unrestricted
def test_unrestricted_invalid_when_maximum_does_not_exist():
    # N = 20, K = 10, p = 3 (shared constant): 10 + 21 > 20, no unrestricted MLE
    sim = simulate_sur(20, 10, 3, 1, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = LowRankSUR(_pairs(sim)).fit(rank=1)
        t = res.lr_test_unrestricted()
    assert not t.is_valid and np.isnan(t.pvalue)
    assert "does not exist" in t.reason and "K + rank" in t.reason


def test_unrestricted_saturated_rank_is_invalid(g5):
    t = g5[3].lr_test_unrestricted()
    assert not t.is_valid and "degrees of freedom" in t.reason


def test_bartlett_factor_for_regression_residuals_by_simulation():
    """Closed form under shared regressors: SUR = OLS, so both llfs are exact.

    Test of a diagonal Sigma (k = 0) against an unrestricted one with p = 6 shared
    regressors, N = 20, K = 5 (df 10). The residual cross-product is Wishart(N - p),
    so the factor with N - p brings the mean of the statistic to its df; the textbook
    N - 1 leaves it far above.
    """
    rng = np.random.default_rng(11)
    N, K, p, reps = 20, 5, 6, 4000
    X = np.column_stack([np.ones(N), rng.normal(size=(N, p - 1))])
    Q = np.linalg.qr(X)[0]
    lrs = np.empty(reps)
    for r in range(reps):
        E = rng.normal(size=(N, K))
        R = E - Q @ (Q.T @ E)
        S = R.T @ R / N
        lrs[r] = N * (np.sum(np.log(np.diag(S))) - np.linalg.slogdet(S)[1])
    df = K * (K - 1) // 2
    se = np.std(lrs) / np.sqrt(reps)
    ours = bartlett_factor(N, K, 0, p) * lrs
    textbook = bartlett_factor(N, K, 0, 1) * lrs
    assert abs(ours.mean() - df) < 4 * se * bartlett_factor(N, K, 0, p) + 0.15
    assert textbook.mean() - df > 2.0
    # and the test built on it holds its size at 5%
    size = np.mean([lr_test_unrestricted(0.0, v / 2, N, K, 0, p).pvalue < 0.05
                    for v in lrs[:1000]])
    assert 0.03 < size < 0.075
    assert np.mean(stats.chi2.sf(textbook, df) < 0.05) > 0.09


# ------------------------------------------------------------ 5. bootstrap LR
@pytest.fixture(scope="module")
def small():
    sim = simulate_sur(30, 3, 2, 1, seed=2)
    model = LowRankSUR(_pairs(sim))
    with warnings.catch_warnings():  # a Heywood case at rank 1 is fine here
        warnings.simplefilter("ignore")
        return {k: model.fit(rank=k, n_starts=1) for k in (0, 1)}


def test_compare_lr_test_defaults_to_bootstrap(small):
    t = small[0].compare_lr_test(small[1], n_boot=19, seed=1)
    assert t.is_valid and t.method == "bootstrap" and t.n_boot == 19
    assert t.stat == pytest.approx(2 * (small[1].llf - small[0].llf))
    # the Monte Carlo p-value of the stored draws
    assert t.pvalue == pytest.approx((1 + np.sum(t.boot_stats >= t.stat)) / 20)
    assert "bootstrap" in str(t) and any("for comparison only" in n for n in t.notes)
    again = small[1].compare_lr_test(small[0], n_boot=19, seed=1)  # seeded, either order
    np.testing.assert_array_equal(again.boot_stats, t.boot_stats)


def test_compare_lr_test_chi2_only_on_request_and_labelled(small):
    t = small[0].compare_lr_test(small[1], method="chi2")
    assert t.method == "chi2" and any("NOT VALID" in n for n in t.notes)
    assert t.pvalue == pytest.approx(stats.chi2.sf(t.stat, t.df))
    with pytest.raises(ValueError, match="method"):
        small[0].compare_lr_test(small[1], method="asymptotic")
    with pytest.raises(ValueError, match="at least 19"):
        small[0].compare_lr_test(small[1], n_boot=5)


def _fdb_by_hand(stat, boot, boot2):
    # Davidson and MacKinnon (2007), eq. 8-10, written out with sorting and counting
    B = len(boot)
    p1 = sum(1 for t in boot if t >= stat) / B
    srt = sorted(boot2)
    # Q**(1 - p1): the smallest tau** whose empirical distribution function reaches 1 - p1
    q = next(x for i, x in enumerate(srt) if (i + 1) / len(srt) >= 1 - p1 - 1e-12)
    return sum(1 for t in boot if t > q) / B


def test_fdb_pvalue_is_davidson_mackinnons_formula():
    rng = np.random.default_rng(5)
    boot = rng.chisquare(4, size=199)
    boot2 = rng.chisquare(4, size=199) * 0.8  # a second level centred lower
    for stat in (0.5, 3.0, 7.5, 9.49, 11.0, 20.0, 50.0):
        assert fdb_pvalue(stat, boot, boot2) == pytest.approx(_fdb_by_hand(stat, boot, boot2))
    # small made-up sets, with ties, checked by hand:
    # p* = 2/5 (7, 9 >= 6.5); Q**(0.6) = 4 (3rd of 1, 2, 4, 8, 16); p** = #{5, 7, 9}/5
    assert fdb_pvalue(6.5, [1, 3, 5, 7, 9], [16, 2, 8, 1, 4]) == pytest.approx(0.6)
    # a statistic above every draw: p* = 0, Q** = max tau** = 16, p** = 0
    assert fdb_pvalue(99.0, [1, 3, 5, 7, 9], [16, 2, 8, 1, 4]) == 0.0
    # a second level equal to the first: the FDB p-value is the single bootstrap's p*
    assert fdb_pvalue(6.5, [1, 3, 5, 7, 9], [1, 3, 5, 7, 9]) == pytest.approx(0.4)
    # non-finite draws are left out of each level
    assert fdb_pvalue(6.5, [1, 3, np.nan, 5, 7, 9], [16, 2, 8, np.inf, 1, 4]) == \
        pytest.approx(0.6)


def test_compare_lr_test_fast_double_bootstrap(small):
    t = small[0].compare_lr_test(small[1], method="fdb", n_boot=19, seed=1)
    assert t.is_valid and t.method == "fdb" and t.n_boot == 19
    assert 0.0 <= t.pvalue <= 1.0
    assert t.boot_stats.shape == t.boot_stats2.shape == (19,)
    assert t.pvalue == pytest.approx(fdb_pvalue(t.stat, t.boot_stats, t.boot_stats2))
    # the first level is the single bootstrap's (same seed, same draws)
    single = small[0].compare_lr_test(small[1], method="bootstrap", n_boot=19, seed=1)
    np.testing.assert_array_equal(t.boot_stats, single.boot_stats)
    assert any(f"single parametric bootstrap p-value: {single.pvalue:.4g}" in n
               for n in t.notes)
    assert "fast double bootstrap" in str(t) and "method='fdb'" in repr(t)
    # seeded and deterministic, either order, and under its long name
    again = small[1].compare_lr_test(small[0], method="fast_double_bootstrap", n_boot=19,
                                     seed=1)
    assert again.method == "fdb" and again.pvalue == t.pvalue
    np.testing.assert_array_equal(again.boot_stats2, t.boot_stats2)
    other = small[0].compare_lr_test(small[1], method="fdb", n_boot=19, seed=2)
    assert not np.array_equal(other.boot_stats2, t.boot_stats2)


def test_fdb_option_of_the_other_lr_tests(small):
    d = small[1].lr_test_diagonal(method="fdb", n_boot=19, seed=0)
    assert d.method == "fdb" and d.boot_stats2.shape == (19,) and 0 <= d.pvalue <= 1
    assert d.pvalue == pytest.approx(fdb_pvalue(d.stat, d.boot_stats, d.boot_stats2))
    u = small[0].lr_test_unrestricted(method="fdb", n_boot=19, seed=0)
    assert u.method == "fdb" and u.is_valid and 0 <= u.pvalue <= 1
    assert u.pvalue == pytest.approx(fdb_pvalue(u.stat, u.boot_stats, u.boot_stats2))


def test_bootstrap_options_of_the_other_lr_tests(small):
    d = small[1].lr_test_diagonal(method="bootstrap", n_boot=19, seed=0)
    assert d.method == "bootstrap" and d.boot_stats.shape == (19,)
    assert np.all(d.boot_stats[np.isfinite(d.boot_stats)] >= -1e-6)
    u = small[0].lr_test_unrestricted(method="bootstrap", n_boot=19, seed=0)
    assert u.method == "bootstrap" and u.is_valid
    assert u.pvalue == pytest.approx((1 + np.sum(u.boot_stats >= u.stat)) / 20)


# -------------------------------------------------------------- 4. rank selection
def test_factor_criteria_against_dense_eigenvalues():
    rng = np.random.default_rng(5)
    N, K = 30, 8
    R = rng.normal(size=(N, 2)) @ rng.normal(size=(2, K)) + rng.normal(size=(N, K))
    eigs = residual_eigenvalues(R)
    Z = (R - R.mean(0)) / R.std(0)
    dense = np.sort(np.linalg.eigvalsh(Z.T @ Z / (N * K)))[::-1]  # the K x K reference
    np.testing.assert_allclose(eigs, dense, rtol=1e-10, atol=1e-14)
    crit = factor_criteria(eigs, N, K, range(4))
    for k in range(4):
        V = np.sum(dense[k:])
        pen = k * (N + K) / (N * K)
        assert crit["ic_p1"][k] == pytest.approx(np.log(V) + pen * np.log(N * K / (N + K)))
        assert crit["ic_p2"][k] == pytest.approx(np.log(V) + pen * np.log(min(N, K)))
        mu = np.concatenate([[dense.sum() / np.log(min(N, K))], dense])
        assert crit["er"][k] == pytest.approx(mu[k] / mu[k + 1])


def test_rank_selection_criteria_find_the_true_rank():
    sim = simulate_sur(100, 30, 3, 2, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = LowRankSUR(_pairs(sim)).fit(rank="ic_p2", max_rank=4, n_starts=1)
    table = res.rank_selection
    assert res.rank == 2 and table.attrs["criterion"] == "ic_p2"
    assert table["selected"].sum() == 1 and table.loc[2, "selected"]
    for crit in ("aic", "bic", "ic_p1", "er"):
        assert choose_rank(table, crit) == 2, crit


def test_rank_selection_excludes_unbounded_ranks_and_says_so():
    # N = 20, K = 10, p = 3: every rank k with 3 (k + 1) - k + k + 1 > 20 is unbounded
    sim = simulate_sur(20, 10, 3, 1, seed=4)
    with pytest.warns(Warning, match="excluded"):
        res = LowRankSUR(_pairs(sim)).fit(rank="bic", n_starts=1)
    table = res.rank_selection
    unb = table.index[table["excluded"].str.startswith("likelihood unbounded")]
    assert len(unb) > 0 and table.loc[unb, "llf"].isna().all()  # never fitted
    assert res.rank < min(unb) and res.converged and not res.degenerate
    text = res.summary().as_text()
    assert "Rank selection by BIC" in text and "excluded: likelihood unbounded" in text


@pytest.mark.slow
def test_grunfeld11_selects_a_converged_nondegenerate_rank():
    """All 11 Grunfeld firms (N = 20): rank 9 used to win with converged=False."""
    from statsmodels.datasets import grunfeld

    firms = {f"f{i}": n for i, n in enumerate(grunfeld.load_pandas().data.firm.unique())}
    assert len(firms) == 11
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        res = LowRankSUR(grunfeld_formulas(firms), grunfeld_wide(firms)).fit(rank="bic")
    table = res.rank_selection
    assert res.rank == 2 and res.converged and not res.degenerate
    assert bool(table.loc[res.rank, "converged"]) and table.loc[res.rank, "excluded"] == ""
    # rank 6 on: unbounded (math.md), 7 on: past the Ledermann bound; none fitted
    assert table.loc[6, "excluded"].startswith("likelihood unbounded")
    assert table.loc[7:, "excluded"].str.contains("Ledermann").all()
    assert table.loc[6:, "llf"].isna().all()
    assert any("were excluded (6: likelihood unbounded" in str(w.message) for w in got)


# ------------------------------------------------------- 6. small-sample options
def test_fit_options_have_use_t_and_debiased_after_seed():
    names = [f.name for f in dataclasses.fields(FitOptions)]
    i = names.index("seed")
    assert names[i + 1:i + 3] == ["use_t", "debiased"]
    assert FitOptions().use_t is False and FitOptions().debiased is False
    with pytest.raises(TypeError, match="use_t must be True or False"):
        FitOptions(use_t="yes")
    with pytest.raises(TypeError, match="debiased must be True or False"):
        FitOptions(debiased=1)


@pytest.fixture(scope="module")
def uneven():
    """K = 3 equations with 2, 3 and 4 regressors, N = 25 (small enough for dense algebra)."""
    rng = np.random.default_rng(8)
    n = 25
    Xs = [np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))]) for p in (2, 3, 4)]
    F = rng.normal(size=(3, 1))
    E = rng.normal(size=(n, 1)) @ F.T + rng.normal(size=(n, 3))
    Y = np.column_stack([X @ np.ones(X.shape[1]) for X in Xs]) + E
    return LowRankSUR({f"e{j}": (Y[:, j], Xs[j]) for j in range(3)}), Xs


@pytest.mark.filterwarnings("ignore::lowrank_sur.HeywoodWarning")
def test_debiased_is_statas_dfk_by_dense_brute_force(uneven):
    model, Xs = uneven
    res = model.fit(rank=1, debiased=True)
    base = model.fit(rank=1)
    np.testing.assert_allclose(res.params, base.params)  # the MLE is unchanged
    n, p = 25, np.array([2, 3, 4])
    F, D = res.error_cov.F, res.error_cov.D
    s = np.sqrt(n / (n - p))
    # dfk on the common part, N / (N - p_j - k) on D (k = 1)
    S = np.outer(s, s) * (F @ F.T) + np.diag(D * n / (n - p - 1))
    X = np.zeros((3 * n, p.sum()))
    for j, (X_j, lo) in enumerate(zip(Xs, np.concatenate([[0], np.cumsum(p)]))):
        X[j * n:(j + 1) * n, lo:lo + p[j]] = X_j
    V = np.linalg.inv(X.T @ np.kron(np.linalg.inv(S), np.eye(n)) @ X)
    np.testing.assert_allclose(res.bse, np.sqrt(np.diag(V)), rtol=1e-6)
    assert "dfk" in res.summary().as_text()
    # with k = 0 it is exactly Stata's dfk, Sigma_ij N / sqrt((N - p_i)(N - p_j))
    r0 = model.fit(rank=0, debiased=True)
    np.testing.assert_allclose(np.asarray(r0.bse) / np.asarray(model.fit(rank=0).bse),
                               np.repeat(s, p), rtol=1e-10)


@pytest.mark.filterwarnings("ignore::lowrank_sur.HeywoodWarning")
def test_use_t_gives_t_and_f_references(uneven):
    model, _ = uneven
    res = model.fit(rank=1, use_t=True, t_df="equation")
    assert res.use_t and res.df_resid_inference == 25 - 4
    t = np.asarray(res.params / res.bse)
    np.testing.assert_allclose(res.pvalues, 2 * stats.t.sf(np.abs(t), 21), rtol=1e-10)
    ci = np.asarray(res.conf_int(0.05))
    half = stats.t.ppf(0.975, 21) * np.asarray(res.bse)
    np.testing.assert_allclose(ci[:, 1] - np.asarray(res.params), half, rtol=1e-10)
    names = model.param_names
    w = res.wald_test(f"{names[1]} = 0, {names[3]} = 0")
    assert w.df_denom == 21 and w.df_num == 2
    assert "t(21)" in res.summary().as_text()
    assert not model.fit(rank=1).use_t
    system = model.fit(rank=1, use_t=True)  # default: the system's N K - P (Stata's small)
    assert system.df_resid_inference == system.df_resid == model.nobs * model.k_eqs - len(names)
    with pytest.raises(ValueError, match="t_df must be one of"):
        model.fit(rank=1, use_t=True, t_df="eq")


def test_bootstrap_covariance_matches_gls_when_sigma_is_well_estimated():
    # N = 400, K = 3: the estimation of Sigma barely matters, so the parametric
    # bootstrap covariance must reproduce the GLS one (Monte Carlo error ~ 1/sqrt(2B))
    sim = simulate_sur(200, 3, 2, 1, seed=9)
    model = LowRankSUR(_pairs(sim))
    gls = model.fit(rank=1)
    boot = model.fit(rank=1, cov_type="bootstrap", cov_kwds={"n_boot": 99, "seed": 3})
    assert boot.cov_type == "bootstrap" and "parametric bootstrap" in boot.summary().as_text()
    ratio = np.asarray(boot.bse) / np.asarray(gls.bse)
    assert np.all(np.abs(ratio - 1) < 0.25), ratio  # 3.5 Monte Carlo sd with B = 99
    assert abs(np.mean(ratio) - 1) < 0.1
    R = np.eye(6)[[1, 3]]
    V = boot.cov_params(r_matrix=R)
    np.testing.assert_allclose(np.diag(V), np.asarray(boot.bse)[[1, 3]] ** 2, rtol=1e-10)
    again = model.fit(rank=1, cov_type="bootstrap", cov_kwds={"n_boot": 99, "seed": 3})
    np.testing.assert_array_equal(again.bse, boot.bse)
