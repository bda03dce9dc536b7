"""Linear restrictions imposed in estimation (``fit(constraints=...)``), every fitter and rank.

References we did not write:

* Stata 13 ``sureg ..., const(1 2)`` (stored, ``tests/results/stata_sureg/``): the three
  ``constrained`` blocks, every printed number.
* linearmodels 7.1 ``SUR.add_constraints`` run live (two-step and iterated).
* statsmodels ``GLM.fit_constrained`` (Gaussian) at rank 0 with restrictions inside one
  equation (the ML estimate is then constrained OLS per equation).
* Closed forms computed densely here: the KKT conditions of constrained GLS at the fitted
  Sigma, and the restricted covariance ``V - V R'(R V R')^{-1} R V``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import linalg
from stata_check import compare_block, constraint_string, model_for, rel_max, stata

from lowrank_sur import HeywoodWarning, LowRankSUR, simulate_sur
from lowrank_sur.datasets import grunfeld_wide

FIRMS = ("gm", "ch", "ge", "wh", "us")
CONSTRAINTS = "gm_value_gm = ch_value_ch, gm_capital_gm = ch_capital_ch"


@pytest.fixture(scope="module")
def simulated():
    """Six equations, N = 200, two factors (no Heywood case, unlike Grunfeld at rank 1)."""
    sim = simulate_sur(nobs=200, k_eqs=6, n_exog=3, rank=2, seed=1)
    coefs = [np.array(b, dtype=float) for b in sim.coefs]
    for j in range(3):  # true coefficients that satisfy SIM_CONSTRAINTS
        coefs[j][1] = 0.5
    coefs[3][2], coefs[4][2] = 0.3, 0.7
    cols = {}
    for j in range(6):
        errors = sim.Y[:, j] - sim.Xs[j] @ sim.coefs[j]
        cols[f"y{j}"] = sim.Xs[j] @ coefs[j] + errors
        cols[f"a{j}"], cols[f"b{j}"] = sim.Xs[j][:, 1], sim.Xs[j][:, 2]
    data = pd.DataFrame(cols)
    return LowRankSUR({f"e{j}": f"y{j} ~ a{j} + b{j}" for j in range(6)}, data)


SIM_CONSTRAINTS = "e0_a0 = e1_a1, e0_a0 = e2_a2, e3_b3 + e4_b4 = 1"


def _R_sim(model):
    names = model.param_names
    R = np.zeros((3, len(names)))
    R[0, names.index("e0_a0")], R[0, names.index("e1_a1")] = 1, -1
    R[1, names.index("e0_a0")], R[1, names.index("e2_a2")] = 1, -1
    R[2, names.index("e3_b3")], R[2, names.index("e4_b4")] = 1, 1
    return R, np.array([0.0, 0.0, 1.0])


@pytest.fixture(scope="module")
def grunfeld():
    df = grunfeld_wide()
    return df, LowRankSUR({f: f"invest_{f} ~ value_{f} + capital_{f}" for f in FIRMS}, df)


def _R(model):
    names = model.param_names
    R = np.zeros((2, len(names)))
    R[0, names.index("gm_value_gm")], R[0, names.index("ch_value_ch")] = 1, -1
    R[1, names.index("gm_capital_gm")], R[1, names.index("ch_capital_ch")] = 1, -1
    return R


# ------------------------------------------------------------------------------ Stata
@pytest.mark.parametrize("system", stata.SYSTEMS)
def test_stata_constrained(system):
    blocks, data = stata.load_blocks(), stata.load_data()
    block = blocks[f"{system}-constrained"]
    res = model_for(block, data).fit(rank="full", method="fgls",
                                     constraints=constraint_string(block))
    err = compare_block(res, block)
    assert max(err.values()) < 1e-6
    text = res.summary().as_text()
    assert "Restrictions imposed in estimation" in text
    assert constraint_string(block).split(",")[0].split("=")[1].strip() in text


# ------------------------------------------------------------------- linearmodels live
@pytest.mark.parametrize("iterate", [False, True])
def test_linearmodels_add_constraints(grunfeld, iterate):
    lm = pytest.importorskip("linearmodels.system")
    df, model = grunfeld
    mod = lm.SUR.from_formula({f: f"invest_{f} ~ 1 + value_{f} + capital_{f}" for f in FIRMS},
                              df)
    R = _R(model)
    mod.add_constraints(pd.DataFrame(R, columns=list(mod.param_names)), pd.Series([0.0, 0.0]))
    ref = mod.fit(method="gls", cov_type="unadjusted", iterate=iterate, iter_limit=1000,
                  tol=1e-12)
    res = model.fit(rank="full", method="fgls", iterate=iterate, constraints=CONSTRAINTS,
                    tol=1e-14, ptol=1e-12)

    assert rel_max(res.params, ref.params) < 1e-8
    assert rel_max(res.cov_params(), ref.cov) < 1e-8
    assert rel_max(res.bse, ref.std_errors) < 1e-8
    assert rel_max(res.sigma, ref.sigma) < 1e-8
    # the (R, q) pair gives the same fit as the strings
    res2 = model.fit(rank="full", method="fgls", iterate=iterate, constraints=(R, np.zeros(2)),
                     tol=1e-14, ptol=1e-12)
    np.testing.assert_allclose(res2.params, res.params, rtol=1e-13)


# ------------------------------------------------------- every fitter, low rank: KKT
def _dense_constrained_gls(Xs, Y, S, R, q):
    N = Y.shape[0]
    Xb = linalg.block_diag(*Xs)
    Om = np.kron(np.linalg.inv(S), np.eye(N))
    V = np.linalg.inv(Xb.T @ Om @ Xb)
    b = V @ Xb.T @ Om @ Y.T.ravel()
    G = V @ R.T
    b_c = b - G @ np.linalg.solve(R @ G, R @ b - q)
    return b_c, V - G @ np.linalg.solve(R @ G, G.T)


@pytest.mark.parametrize("method", ["als", "em"])
@pytest.mark.parametrize("rank", [0, 2])
def test_constrained_ml_low_rank(simulated, method, rank):
    """At the fit: R b = q, b is constrained GLS at the fitted Sigma (dense KKT solution), the
    covariance is the restricted one, and the llf is below the unconstrained maximum."""
    model = simulated
    R, q = _R_sim(model)
    res = model.fit(rank=rank, method=method, constraints=SIM_CONSTRAINTS, tol=1e-13,
                    ptol=1e-9, maxiter=5000)
    assert res.converged and not res.heywood
    b = np.asarray(res.params)
    np.testing.assert_allclose(R @ b, q, atol=1e-12)
    S = res.sigma.to_numpy()
    Xs = [np.asarray(X) for X in model.system.exog]
    Y = model.system.endog.to_numpy()
    b_c, V_c = _dense_constrained_gls(Xs, Y, S, R, q)
    np.testing.assert_allclose(b, b_c, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(res.cov_params(), V_c, rtol=1e-7, atol=1e-10 * np.abs(V_c).max())
    np.testing.assert_allclose(res.bse, np.sqrt(np.diag(V_c)), rtol=1e-7)
    # the restricted directions have no variance
    np.testing.assert_allclose(res.cov_params(r_matrix=R), 0.0, atol=1e-10 * np.abs(V_c).max())
    free = model.fit(rank=rank, method=method, tol=1e-13, ptol=1e-9, maxiter=5000)
    assert res.llf < free.llf


def test_als_equals_em_with_constraints(simulated):
    a = simulated.fit(rank=2, method="als", constraints=SIM_CONSTRAINTS, tol=1e-13, ptol=1e-9)
    e = simulated.fit(rank=2, method="em", constraints=SIM_CONSTRAINTS, tol=1e-13, ptol=1e-9,
                      maxiter=5000)
    np.testing.assert_allclose(a.llf, e.llf, rtol=1e-11)
    np.testing.assert_allclose(a.params, e.params, rtol=1e-6, atol=1e-8)


def test_lowrank_two_step_with_constraints(simulated):
    R, q = _R_sim(simulated)
    res = simulated.fit(rank=2, method="fgls", constraints=SIM_CONSTRAINTS)
    b = np.asarray(res.params)
    np.testing.assert_allclose(R @ b, q, atol=1e-12)
    Xs = [np.asarray(X) for X in simulated.system.exog]
    Y = simulated.system.endog.to_numpy()
    b_c, _ = _dense_constrained_gls(Xs, Y, res.sigma.to_numpy(), R, q)
    np.testing.assert_allclose(b, b_c, rtol=1e-8, atol=1e-10)


# ----------------------------------------------------------- statsmodels at rank 0
def test_rank0_within_equation_is_constrained_ols(grunfeld):
    """Restrictions inside one equation at rank 0: the MLE is constrained OLS per equation."""
    df, model = grunfeld
    res = model.fit(rank=0, constraints="gm_value_gm = gm_capital_gm, ge_value_ge = 0.03")
    for f, con in (("gm", "value_gm = capital_gm"), ("ge", "value_ge = 0.03")):
        glm = sm.GLM.from_formula(f"invest_{f} ~ value_{f} + capital_{f}", df)
        ref = glm.fit_constrained(con)
        eq = res.equations[f]
        np.testing.assert_allclose(eq.params.to_numpy(), ref.params.to_numpy(), rtol=1e-9)
        # statsmodels scales by SSR / (N - p + q); the MLE by SSR / N
        N, p, q = len(df), 3, 1
        # (a coefficient fixed by a restriction has bse 0 up to the cancellation in
        # V - V R'(R V R')^{-1} R V: sqrt of rounding, 1e-8 of the others)
        np.testing.assert_allclose(eq.bse.to_numpy() * np.sqrt(N / (N - p + q)),
                                   ref.bse.to_numpy(), rtol=1e-8,
                                   atol=1e-8 * ref.bse.max())
    ch = res.equations["ch"]
    ref = sm.OLS.from_formula("invest_ch ~ value_ch + capital_ch", df).fit()
    np.testing.assert_allclose(ch.params.to_numpy(), ref.params.to_numpy(), rtol=1e-9)


# ------------------------------------------------------------------------ bad input
def test_bad_constraints(grunfeld):
    _, model = grunfeld
    with pytest.raises(ValueError, match="constraints: cannot read"):
        model.fit(rank=1, constraints="gm_valu_gm = ch_value_ch")
    with pytest.raises(ValueError, match="redundant"):
        model.fit(rank=1, constraints="gm_value_gm = ch_value_ch, ch_value_ch = gm_value_gm")
    with pytest.raises(ValueError, match="contradict"):
        model.fit(rank=1, constraints="gm_value_gm = 0, gm_value_gm = 1")
    with pytest.raises(ValueError, match="q must hold 1"):
        model.fit(rank=1, constraints=(np.ones((1, 15)), [0.0, 1.0]))
    with pytest.raises(ValueError, match="15 coefficients"):
        model.fit(rank=1, constraints=(np.ones((1, 14)), [0.0]))
    with pytest.raises(TypeError, match="constraints must be"):
        model.fit(rank=1, constraints=np.ones((1, 15)))


def test_constrained_history_never_falls(grunfeld):
    """The sweeps and the joint polishing step stay on R b = q: the llf history never falls
    (an unconstrained polish step rose above the constrained maximum, then fell by 4.4) and
    the restrictions hold."""
    _, model = grunfeld
    res = model.fit(rank=2, constraints=CONSTRAINTS, tol=1e-13, ptol=1e-9)
    assert res.converged
    h = np.asarray(res.llf_history)
    assert np.all(np.diff(h) >= -1e-12 * abs(res.llf))
    np.testing.assert_allclose(_R(model) @ np.asarray(res.params), 0.0, atol=1e-12)


def test_arrays_interface_remove_data_and_criteria(grunfeld):
    from lowrank_sur import fit_arrays

    _, model = grunfeld
    R = _R(model)
    Xs = [np.asarray(X) for X in model.system.exog]
    Y = model.system.endog.to_numpy()
    rec = fit_arrays(Xs, Y, 0, constraints=(R, np.zeros(2)))
    res = model.fit(rank=0, constraints=CONSTRAINTS)
    np.testing.assert_allclose(np.concatenate(rec.coefs), res.params, rtol=1e-12)
    free = model.fit(rank=0)
    # two restrictions: two fewer free parameters in AIC/BIC
    assert res.df_ic == free.df_ic - 2
    np.testing.assert_allclose(res.aic, -2 * res.llf + 2 * res.df_ic)
    bse = res.bse.copy()
    res.remove_data()
    pd.testing.assert_series_equal(res.bse, bse)
    assert "Restrictions imposed in estimation" in res.summary().as_text()


def test_constrained_als_builds_no_p_by_p_array():
    """K = 1000 equations, P = 3000: a constrained ALS fit and its restricted standard errors
    stay far below one P x P array (72 MB); the restrictions hold."""
    import tracemalloc

    from lowrank_sur.coefcov.fullcov import coefficient_covariance
    from lowrank_sur.design import SURDesign
    from lowrank_sur.fitters import fit_design

    K = 1000
    sim = simulate_sur(nobs=200, k_eqs=K, n_exog=3, rank=2, seed=0)
    P = 3 * K
    R = np.zeros((3, P))
    R[0, 1], R[0, 4], R[1, 1], R[1, 7] = 1, -1, 1, -1
    R[2, 3 * 500 + 2], R[2, 3 * 501 + 2] = 1, 1
    q = np.array([0.0, 0.0, 1.0])
    design = SURDesign(sim.Xs)
    tracemalloc.start()
    try:
        rec = fit_design(design, sim.Y, 2, constraints=(R, q))
        bse = coefficient_covariance("nonrobust", design, sim.Y, rec, {}).bse()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rec.converged
    assert peak < 0.5 * P * P * 8
    b = np.concatenate(rec.coefs)
    np.testing.assert_allclose(R @ b, q, atol=1e-10)
    # equal coefficients under the restriction have equal standard errors here
    assert np.all(np.isfinite(bse)) and abs(bse[1] - bse[4]) < 1e-8 * bse[1]


# ------------------------------------------------------- degrees of freedom, use_t
def test_degrees_of_freedom_add_back_the_restrictions(grunfeld):
    """df_resid = N K - P + q (statsmodels' fit_constrained: N - p + q); the t and F
    references use it. linearmodels 7.1 keeps N K - P with constraints (checked live):
    its debiased p-values are t(N K - P), ours t(N K - P + q) on the same statistics."""
    from scipy import stats

    df, _ = grunfeld
    model = LowRankSUR({f: f"invest_{f} ~ value_{f} + capital_{f}" for f in FIRMS}, df)
    res = model.fit(rank="full", method="fgls", constraints=CONSTRAINTS, use_t=True)
    assert res.k_constraints == 2
    assert res.df_resid == 20 * 5 - 15 + 2 == res.df_resid_inference
    t = np.asarray(res.params / res.bse)
    np.testing.assert_allclose(res.pvalues, 2 * stats.t.sf(np.abs(t), 87), rtol=1e-12)
    w = res.wald_test("gm_value_gm = 0, ge_value_ge = 0", scalar=True)
    assert w.df_denom == 87
    assert "t(87) (N K - P + q, q restrictions)" in res.summary().as_text()
    assert "Restrictions:" in res.summary().as_text()
    free = model.fit(rank="full", method="fgls", use_t=True)
    assert free.df_resid == 85 and free.k_constraints == 0
    # one equation at rank 0 with a restriction: statsmodels' fit_constrained df_resid
    one = LowRankSUR({"gm": "invest_gm ~ value_gm + capital_gm"}, df)
    r1 = one.fit(rank=0, constraints="gm_value_gm = gm_capital_gm")
    ref = sm.GLM.from_formula("invest_gm ~ value_gm + capital_gm", df).fit_constrained(
        "value_gm = capital_gm")
    assert r1.df_resid == ref.df_resid == 18
    lm = pytest.importorskip("linearmodels.system")
    mod = lm.SUR.from_formula({f: f"invest_{f} ~ 1 + value_{f} + capital_{f}" for f in FIRMS},
                              df)
    mod.add_constraints(pd.DataFrame(_R(model), columns=list(mod.param_names)),
                        pd.Series([0.0, 0.0]))
    ref = mod.fit(method="gls", cov_type="robust", debiased=True)
    ours = model.fit(rank="full", method="fgls", constraints=CONSTRAINTS, debiased=True,
                     use_t=True, cov_type="robust", cov_kwds={"debiased": True})
    assert ref.df_resid == ours.df_resid - 2
    np.testing.assert_allclose(np.asarray(ours.tvalues), np.asarray(ref.tstats), rtol=1e-8)
    np.testing.assert_allclose(
        ours.pvalues, 2 * stats.t.sf(np.abs(np.asarray(ref.tstats)), ref.df_resid + 2),
        rtol=1e-7)


def test_heywood_constrained_als_stops_on_the_accurate_llf():
    """The Stata ``common`` system at rank 1 with its (false) constraints: an equation on
    its floor (S_jj / D_j ~ 1e6), where the Woodbury llf has rounding errors ~1e-7. The
    sweeps read the cancellation-free llf there: with tol=1e-13 they stop after 12 sweeps
    at the maximum (they read noise before: 29 sweeps, 3e-7 below it; with ptol=1e-9 they
    ran to maxiter=5000)."""
    blocks, data = stata.load_blocks(), stata.load_data()
    block = blocks["common-constrained"]
    model = model_for(block, data)
    with pytest.warns(HeywoodWarning):
        res = model.fit(rank=1, method="als", constraints=constraint_string(block),
                        tol=1e-13, n_starts=1)
    assert res.converged and res.iterations <= 20 and res.heywood
    R = np.asarray(res.resid)
    acc = res.error_cov.loglike_accurate(R)
    assert abs(res.llf - acc) <= 1e-13 * abs(acc)
    assert abs(res.error_cov.loglike(R) - acc) > 1e-13 * abs(acc)  # why it matters
    h = np.asarray(res.llf_history)
    assert np.all(np.diff(h) >= -1e-12 * abs(res.llf))


def test_constrained_heywood_als_reaches_em_maximum():
    """The same system at default options: ALS's first fit stops at a Heywood point
    (-965.243, equation 2 on the floor) while EM reaches -959.809 (equation 3 on it).
    With few equations the search over the equations on the floor runs whenever a start
    ends there (``multistart.FLOOR_SEARCH_MAX_EQS``), and ALS reaches EM's maximum."""
    blocks, data = stata.load_blocks(), stata.load_data()
    block = blocks["common-constrained"]
    model = model_for(block, data)
    con = constraint_string(block)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        als = model.fit(rank=1, method="als", constraints=con)
        em = model.fit(rank=1, method="em", constraints=con)
        first = model.fit(rank=1, method="als", constraints=con, n_starts=1)
    assert first.llf < em.llf - 1.0  # the trap is there
    assert als.converged and em.converged
    assert abs(als.llf - em.llf) <= 1e-8 * abs(em.llf)
    assert list(als.heywood) == list(em.heywood)
