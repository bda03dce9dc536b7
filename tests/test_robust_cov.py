"""Robust coefficient covariances (``cov_type`` HC0/HC1, HAC, cluster).

References we did not write:

* statsmodels ``OLS(...).fit(cov_type=..., cov_kwds=...)`` run live, per equation, at
  rank 0 (equation-by-equation OLS is then the MLE and the GLS scores are the OLS ones);
* linearmodels 7.1 ``SUR(...).fit(method="gls", iterate=True)`` at K = 2, where rank 1
  (= K - 1) is an unrestricted Sigma and the MLE is iterated GLS: stored in
  ``tests/results/grunfeld2_linearmodels_robust.json`` (with provenance; written by
  ``tests/results/make_robust_references.py``) and compared with a live run;
* a brute-force dense sandwich written here from the definition
  ``A^{-1} S' W S A^{-1}`` with ``A = X'(Sigma^{-1} kron I)X`` and the kron'd design.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import linalg
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from lowrank_sur import LowRankSUR, datasets, simulate_sur
from lowrank_sur import model as model_module
from lowrank_sur.coefcov import available_cov_types, get_cov_type
from lowrank_sur.coefcov.robust import kernel_weights
from lowrank_sur.covariance import DenseCovariance

# statsmodels at rank 0: closed forms on both sides; measured at most 2e-15 relative.
SM_RTOL = 1e-10
# linearmodels at K=2: EM stops within 1e-13 of the maximum (measured bse/cov 6e-14);
# ALS's stopping rule leaves its params 2e-8 from it (measured bse 1e-8, cov 2e-9).
LM_RTOL = {"em": 1e-8, "als": 1e-7}
# brute force (dense inverse of A, condition ~1e6 here): measured 2e-10.
BRUTE_RTOL = 1e-8
TIGHT = {"tol": 1e-14, "ptol": 1e-12, "maxiter": 100000}


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def _rel_max(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# ------------------------------------------------------------ statsmodels, rank 0
def _uneven_system(nobs=60, seed=3):
    """Three equations with 2, 3 and 4 regressors (per-equation small-sample factors)."""
    rng = np.random.default_rng(seed)
    Xs, ys = [], []
    for p in (2, 3, 4):
        X = np.column_stack([np.ones(nobs), rng.standard_normal((nobs, p - 1))])
        e = rng.standard_normal(nobs) * (1 + np.abs(X[:, 1]))  # heteroskedastic
        e[1:] += 0.5 * e[:-1]  # and autocorrelated
        ys.append(X @ rng.standard_normal(p) + e)
        Xs.append(X)
    return Xs, ys


SM_CASES = [
    ("HC0", {}), ("HC1", {}),
    ("HAC", {"maxlags": 3}), ("HAC", {"maxlags": 2, "use_correction": True}),
    ("HAC", {"maxlags": 2, "kernel": "uniform"}),
    ("cluster", {"groups": np.arange(60) // 5}),
    ("cluster", {"groups": np.arange(60) // 4, "use_correction": False}),
    ("cluster", {"groups": np.column_stack([np.arange(60) // 6, np.arange(60) % 10])}),
]


@pytest.mark.parametrize(("cov_type", "kwds"), SM_CASES,
                         ids=[f"{c}-{'-'.join(k)}" for c, k in SM_CASES])
def test_rank0_equals_statsmodels_ols_per_equation(cov_type, kwds):
    Xs, ys = _uneven_system()
    res = LowRankSUR({f"e{j}": (y, X) for j, (y, X) in enumerate(zip(ys, Xs))}).fit(
        rank=0, cov_type=cov_type, cov_kwds=kwds)
    ref = np.concatenate([sm.OLS(y, X).fit(cov_type=cov_type, cov_kwds=kwds).bse
                          for y, X in zip(ys, Xs)])
    assert _rel(res.bse, ref) <= SM_RTOL
    # the cross-equation blocks of the full covariance are the sandwich's too
    V = res.cov_params().to_numpy()
    assert _rel(np.sqrt(np.diag(V)), ref) <= SM_RTOL
    first = sm.OLS(ys[0], Xs[0]).fit(cov_type=cov_type, cov_kwds=kwds).cov_params()
    assert _rel_max(V[:2, :2], first) <= SM_RTOL


def test_rank0_grunfeld_formulas_equal_statsmodels():
    df = datasets.grunfeld_wide()
    res = LowRankSUR(datasets.grunfeld_formulas(), df).fit(rank=0, cov_type="HC1")
    for f, formula in datasets.grunfeld_formulas().items():
        ref = sm.OLS.from_formula(formula, df).fit(cov_type="HC1").bse
        assert _rel(res.bse[[f"{f}_{c}" for c in ref.index]], ref) <= SM_RTOL


# ----------------------------------------------------------- linearmodels, K = 2
def _load_results_module(name: str):
    """Import ``tests/results/<name>.py`` by path (``tests`` is not a package)."""
    path = Path(__file__).resolve().parent / "results" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_lowrank_sur_results_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


robust_refs = _load_results_module("make_robust_references")
LM_STORED = json.loads(robust_refs.OUT.read_text())
LM_IDS = [f"{c['linearmodels_cov_type']}-{'-'.join(c['linearmodels_options'])}"
          for c in LM_STORED["cases"]]


@pytest.fixture(scope="module")
def two_firms():
    df = robust_refs.data()
    formulas = {f: f"invest_{f} ~ value_{f} + capital_{f}" for f in robust_refs.FIRMS}
    return LowRankSUR(formulas, df), df


@pytest.mark.parametrize("method", ["em", "als"])
@pytest.mark.parametrize("case", LM_STORED["cases"], ids=LM_IDS)
def test_k2_rank1_equals_stored_linearmodels_iterated_gls(two_firms, method, case):
    model, df = two_firms
    kwds = robust_refs.resolve(case["cov_kwds"], df.index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rank K - 1 is past the Ledermann bound
        res = model.fit(rank=1, method=method, cov_type=case["cov_type"], cov_kwds=kwds,
                        **TIGHT)
    assert res.converged
    tol = LM_RTOL[method]
    assert _rel(res.params, case["params"]) <= 10 * tol
    assert _rel(res.bse, case["std_errors"]) <= tol
    assert _rel_max(res.cov_params(), case["cov"]) <= tol
    # the linearmodels aliases and keywords give the same numbers; for "clustered" without
    # debiased / group_debias our default is statsmodels' correction (documented), so
    # linearmodels' uncorrected default needs use_correction=False
    lm_opts = robust_refs.resolve(case["linearmodels_options"], df.index)
    if case["cov_type"] == "cluster" and not {"debiased", "group_debias"} & set(lm_opts):
        lm_opts["use_correction"] = False
    alias = res.get_robustcov_results(case["linearmodels_cov_type"], **lm_opts)
    assert _rel(alias.bse, res.bse) <= 1e-12


@pytest.mark.parametrize("case", LM_STORED["cases"], ids=LM_IDS)
def test_stored_linearmodels_robust_matches_live(two_firms, case):
    pytest.importorskip("linearmodels")
    _, df = two_firms
    fresh = robust_refs.compute_case(df, case["linearmodels_cov_type"],
                                     case["linearmodels_options"])
    assert fresh["param_names"] == case["param_names"]
    assert _rel(fresh["std_errors"], case["std_errors"]) <= 1e-9
    assert _rel_max(fresh["cov"], case["cov"]) <= 1e-9


def test_stored_linearmodels_robust_records_provenance():
    prov = LM_STORED["provenance"]
    assert prov["versions"]["linearmodels"] == "7.1"
    assert "iterate=True" in prov["call"] and "make_robust_references.py" in prov["generator"]
    assert len(LM_STORED["cases"]) == 8


# ------------------------------------------------------------------ brute force
def _brute_sandwich(res, meat):
    """``A^{-1} S' W S A^{-1}`` from the dense Sigma and the block-diagonal design."""
    model = res.model
    Xs = [np.asarray(X) for X in model.system.exog]
    N = res.nobs
    Si = np.linalg.inv(res.error_cov.to_dense())
    Xb = linalg.block_diag(*Xs)  # NK x P, equation-major rows
    A = Xb.T @ np.kron(Si, np.eye(N)) @ Xb
    U = np.asarray(res.resid) @ Si
    S = np.hstack([X * U[:, [j]] for j, X in enumerate(Xs)])
    Ai = np.linalg.inv(A)
    return Ai @ meat(S) @ Ai


def _hac_meat(weights):
    def meat(S):
        M = S.T @ S
        for lag in range(1, len(weights)):
            o = S[lag:].T @ S[:-lag]
            M += weights[lag] * (o + o.T)
        return M
    return meat


def _cluster_meat(groups):
    def meat(S):
        G = np.zeros((groups.max() + 1, S.shape[0]))
        G[groups, np.arange(S.shape[0])] = 1.0
        T = G @ S
        return T.T @ T
    return meat


@pytest.fixture(scope="module")
def wide_fit():
    """P = 120 > N k = 20: the Woodbury route."""
    sim = simulate_sur(20, 40, 3, 1, seed=5)
    model = LowRankSUR({f"e{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(40)})
    return model.fit(rank=1, method="em", **TIGHT)


@pytest.fixture(scope="module")
def wide_shared_fit():
    """The Woodbury route with every regressor shared by all equations (one design)."""
    sim = simulate_sur(20, 40, 3, 1, shared_exog=True, seed=6)
    model = LowRankSUR({f"e{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(40)})
    return model.fit(rank=1, method="em", **TIGHT)


@pytest.fixture(scope="module")
def wide_unshared_fit():
    """The Woodbury route with no column shared (no constant; p_j of 2 and 3)."""
    rng = np.random.default_rng(8)
    factor = rng.standard_normal(20)
    eqs = {}
    for j in range(40):
        X = rng.standard_normal((20, 2 + j % 2))
        e = factor * rng.uniform(0.5, 1.5) + rng.standard_normal(20)
        eqs[f"e{j}"] = (X @ np.ones(X.shape[1]) + e, X)
    return LowRankSUR(eqs).fit(rank=1, method="em", **TIGHT)


def _tall_model():
    sim = simulate_sur(60, 6, 3, 1, seed=2)
    return LowRankSUR({f"e{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(6)})


@pytest.fixture(scope="module")
def tall_fit():
    """P = 18 < N k = 60: the dense route."""
    return _tall_model().fit(rank=1, **TIGHT)


BRUTE_CASES = [
    ("HC0", {}, lambda N: (lambda S: S.T @ S)),
    ("HAC", {"maxlags": 3, "kernel": "parzen"},
     lambda N: _hac_meat(kernel_weights("parzen", 3, N))),
    ("HAC", {"bandwidth": 4.0, "kernel": "qs"},
     lambda N: _hac_meat(kernel_weights("qs", 4.0, N))),
    ("cluster", {"groups": "blocks", "use_correction": False},
     lambda N: _cluster_meat(np.arange(N) // 2)),
]


@pytest.mark.parametrize("which", ["wide_fit", "wide_shared_fit", "wide_unshared_fit",
                                   "tall_fit"])
@pytest.mark.parametrize(("cov_type", "kwds", "meat"), BRUTE_CASES,
                         ids=[f"{c[0]}-{'-'.join(c[1])}" for c in BRUTE_CASES])
def test_sandwich_equals_brute_force(request, which, cov_type, kwds, meat):
    base = request.getfixturevalue(which)
    N = base.nobs
    kwds = {k: (np.arange(N) // 2 if v == "blocks" else v) for k, v in kwds.items()}
    res = base.get_robustcov_results(cov_type, **kwds)
    est = res._results._coef_cov
    assert est.route() == ("dense" if which == "tall_fit" else "woodbury")
    V = _brute_sandwich(base, meat(N))
    assert _rel(res.bse, np.sqrt(np.diag(V))) <= BRUTE_RTOL
    assert _rel_max(res.cov_params(), V) <= BRUTE_RTOL
    Rm = np.random.default_rng(0).standard_normal((3, V.shape[0]))
    assert _rel_max(res.cov_params(r_matrix=Rm), Rm @ V @ Rm.T) <= BRUTE_RTOL
    other = Rm[:2] ** 2
    assert _rel_max(res.cov_params(r_matrix=Rm, other=other), other @ V @ Rm.T) <= BRUTE_RTOL


# ------------------------------------------------- constraints: the restricted sandwich
def _brute_constrained_sandwich(res, meat, R, factors=None):
    """``C Z (Z'AZ)^{-1} Z' (S' W S) Z (Z'AZ)^{-1} Z' C`` with ``Z`` a basis of null(R).

    Written from the definition (the constrained estimator's bread is the null-space
    projection of the information), densely, with the scores at the constrained fit.
    """
    model = res.model
    Xs = [np.asarray(X) for X in model.system.exog]
    N = res.nobs
    Si = np.linalg.inv(res.error_cov.to_dense())
    Xb = linalg.block_diag(*Xs)
    A = Xb.T @ np.kron(Si, np.eye(N)) @ Xb
    U = np.asarray(res.resid) @ Si
    S = np.hstack([X * U[:, [j]] for j, X in enumerate(Xs)])
    Z = linalg.null_space(R)
    B = Z @ np.linalg.solve(Z.T @ A @ Z, Z.T)
    V = B @ meat(S) @ B
    if factors is not None:
        c = np.sqrt(np.repeat(factors, [X.shape[1] for X in Xs]))
        V = V * np.outer(c, c)
    return V


def _two_restrictions(P):
    R = np.zeros((2, P))
    R[0, [1, 4]] = 1.0, -1.0  # equation 0's first slope = equation 1's
    R[1, [2, 5, 8]] = 1.0, 1.0, 1.0
    return R, np.array([0.0, 1.0])


CONSTRAINED_CASES = [
    ("HC0", {}, lambda N: (lambda S: S.T @ S), None),
    ("HC1", {}, lambda N: (lambda S: S.T @ S), "hc1"),
    ("HAC", {"maxlags": 3, "kernel": "bartlett"},
     lambda N: _hac_meat(kernel_weights("bartlett", 3, N)), None),
    ("cluster", {"groups": "blocks", "use_correction": False},
     lambda N: _cluster_meat(np.arange(N) // 2), None),
]


@pytest.mark.parametrize("which", ["wide", "tall"])
@pytest.mark.parametrize(("cov_type", "kwds", "meat", "factor"), CONSTRAINED_CASES,
                         ids=[c[0] for c in CONSTRAINED_CASES])
def test_constrained_sandwich_equals_brute_force(which, cov_type, kwds, meat, factor):
    """Low rank (ALS), both routes of the unconstrained sandwich, every meat."""
    if which == "wide":  # P = 120 > N k = 20: the Woodbury route
        sim = simulate_sur(20, 40, 3, 1, seed=5)
        K = 40
    else:
        sim = simulate_sur(60, 6, 3, 1, seed=2)
        K = 6
    model = LowRankSUR({f"e{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(K)})
    P = len(model.param_names)
    R, q = _two_restrictions(P)
    N = model.nobs
    kwds = {k: (np.arange(N) // 2 if v == "blocks" else v) for k, v in kwds.items()}
    res = model.fit(rank=1, constraints=(R, q), cov_type=cov_type, cov_kwds=kwds, **TIGHT)
    factors = N / (N - np.full(K, 3.0)) if factor == "hc1" else None
    V = _brute_constrained_sandwich(res, meat(N), R, factors)
    assert _rel(res.bse, np.sqrt(np.diag(V))) <= BRUTE_RTOL
    assert _rel_max(res.cov_params(), V) <= BRUTE_RTOL
    Rm = np.random.default_rng(0).standard_normal((3, P))
    assert _rel_max(res.cov_params(r_matrix=Rm), Rm @ V @ Rm.T) <= BRUTE_RTOL
    other = Rm[:2] ** 2
    assert _rel_max(res.cov_params(r_matrix=Rm, other=other), other @ V @ Rm.T) <= BRUTE_RTOL
    # the restricted directions have no variance; switching after the fit is the same
    assert np.abs(res.cov_params(r_matrix=R)).max() <= 1e-12 * np.abs(V).max()
    base = model.fit(rank=1, constraints=(R, q), **TIGHT)
    switched = base.get_robustcov_results(cov_type, **kwds)
    assert _rel(switched.bse, res.bse) <= 1e-12
    assert "constraints imposed" in res.summary().as_text()


def test_constrained_sandwich_has_no_p_by_p_array():
    """K = 2000, P = 6000 (one P x P array: 288 MB), three restrictions: the restricted
    HC1 and cluster standard errors cost the unconstrained sandwich plus 2 q solves."""
    from lowrank_sur.coefcov.fullcov import coefficient_covariance
    from lowrank_sur.design import SURDesign
    from lowrank_sur.fitters import fit_design

    K = 2000
    sim = simulate_sur(40, K, 3, 2, seed=7)
    P = 3 * K
    R = np.zeros((3, P))
    R[0, [1, 4]] = 1, -1
    R[1, [1, 3 * 1500 + 1]] = 1, -1
    R[2, [3 * 700 + 2, 3 * 701 + 2]] = 1, 1
    q = np.array([0.0, 0.0, 1.0])
    design = SURDesign(sim.Xs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # any constrained fit will do
        rec = fit_design(design, sim.Y, 2, maxiter=3, constraints=(R, q))
    for cov_type, kwds in [("HC1", {}), ("cluster", {"groups": np.arange(40) // 4})]:
        est = coefficient_covariance(cov_type, design, sim.Y, rec, kwds)
        tracemalloc.start()
        bse = est.bse()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert np.all(np.isfinite(bse)) and np.all(bse > 0)
        assert peak < 32e6 and peak < P * P * 8 / 8, (cov_type, peak)
        Rm = np.zeros((3, P))
        Rm[[0, 1, 2], [1, 3001, P - 1]] = 1.0
        assert _rel(np.sqrt(np.diag(est.restricted(Rm))), bse[[1, 3001, P - 1]]) <= 1e-7
        assert np.abs(est.restricted(R)).max() <= 1e-10 * bse.max() ** 2


def test_dense_sigma_gives_the_same_sandwich(tall_fit):
    """Written on the Covariance protocol: a DenseCovariance of the same Sigma agrees."""
    inner = tall_fit._results
    rec = dataclasses.replace(inner._record, cov=DenseCovariance(inner.error_cov.to_dense()))
    for cov_type, kwds in [("HC0", {}), ("HAC", {"maxlags": 2}),
                           ("cluster", {"groups": np.arange(60) // 3})]:
        low = get_cov_type(cov_type)(inner.model.design, inner.model._Y, inner._record, **kwds)
        dense = get_cov_type(cov_type)(inner.model.design, inner.model._Y, rec, **kwds)
        assert dense.route() == "dense"
        assert _rel(dense.bse(), low.bse()) <= 1e-10
        Rm = np.eye(18)[:3]
        assert _rel_max(dense.restricted(Rm), low.restricted(Rm)) <= 1e-9


def test_woodbury_route_has_no_p_by_p_array():
    """K = 2000, P = 6000: one P x P array would be 288 MB."""
    sim = simulate_sur(40, 2000, 3, 2, seed=7)
    model = LowRankSUR({f"e{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(2000)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # any coefficients will do
        res = model.fit(rank=2, maxiter=3)
    inner = res._results
    est = get_cov_type("HC1")(inner.model.design, inner.model._Y, inner._record)
    assert est.route() == "woodbury"
    tracemalloc.start()
    bse = est.bse()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    P = bse.size
    assert np.all(np.isfinite(bse)) and np.all(bse > 0)
    # measured 9.9 MB (nonrobust: 3.1 MB): the N k x N k system, one chunk, G (N x N k)
    assert peak < 32e6 and peak < P * P * 8 / 8, peak
    # the same standard errors from CG solves on a few coefficients (no Woodbury)
    Rm = np.zeros((3, P))
    Rm[[0, 1, 2], [0, 3001, P - 1]] = 1.0
    assert _rel(np.sqrt(np.diag(est.restricted(Rm))), bse[[0, 3001, P - 1]]) <= 1e-7


# ------------------------------------------------------------ results API
def test_get_robustcov_results_switches_without_refitting(tall_fit):
    base_bse = tall_fit.bse.copy()
    hac = tall_fit.get_robustcov_results("kernel", maxlags=2)
    assert hac.cov_type == "HAC" and hac.cov_kwds == {"maxlags": 2}
    assert tall_fit.cov_type == "nonrobust"
    pd.testing.assert_series_equal(tall_fit.bse, base_bse)
    assert hac._results._record is tall_fit._results._record  # no refit
    refit = tall_fit.model.fit(rank=1, cov_type="HAC", cov_kwds={"maxlags": 2}, **TIGHT)
    assert _rel(hac.bse, refit.bse) <= 1e-8
    assert not np.allclose(hac.bse, base_bse)
    assert list(hac.bse.index) == list(tall_fit.bse.index)
    text = hac.summary().as_text()
    assert "HAC" in text
    # statsmodels' default cov_type is HC1; back to nonrobust gives the original
    assert tall_fit.get_robustcov_results().cov_type == "HC1"
    back = hac.get_robustcov_results("nonrobust")
    assert _rel(back.bse, base_bse) <= 1e-12
    # the tests use the new covariance
    t = hac.t_test(np.eye(18)[:1])
    assert _rel(np.atleast_1d(t.sd), hac.bse.iloc[:1]) <= 1e-8


def test_get_robustcov_results_keeps_debiased(tall_fit):
    """A ``debiased=True`` fit switches with its dfk-scaled Sigma, as ``fit`` builds it
    (it used the unscaled one: nonrobust standard errors 15% off on Grunfeld)."""
    model = tall_fit.model
    fit = model.fit(rank=1, debiased=True, **TIGHT)
    for cov_type in ("nonrobust", "HC0"):
        direct = model.fit(rank=1, debiased=True, cov_type=cov_type, **TIGHT)
        assert _rel(fit.get_robustcov_results(cov_type).bse, direct.bse) <= 1e-12
    assert not np.allclose(fit.bse, tall_fit.bse)


def test_robust_fit_survives_remove_data():
    # a model of its own: remove_data() drops the data of the model its fits share
    res = _tall_model().fit(rank=1, cov_type="HC0", **TIGHT)
    bse, V = res.bse.copy(), res.cov_params()
    res.remove_data()
    assert _rel(res.bse, bse) <= 1e-15
    assert _rel_max(res.cov_params(), V) <= 1e-15


def test_registry_lists_the_robust_types():
    assert {"HC0", "HC1", "HAC", "cluster"} <= set(available_cov_types())
    for alias, name in [("robust", "HC0"), ("kernel", "HAC"), ("clustered", "cluster"),
                        ("hc1", "HC1")]:
        assert get_cov_type(alias).name == name


def test_robust_debiased_reports_hc1(tall_fit):
    res = tall_fit.get_robustcov_results("robust", debiased=True)
    assert res.cov_type == "HC1" and "HC1" in res.summary().as_text()
    assert _rel(res.bse, tall_fit.get_robustcov_results("HC1").bse) <= 1e-15


@pytest.mark.parametrize(("cov_type", "kwds", "error", "match"), [
    ("HAC", {}, ValueError, "maxlags"),
    ("HAC", {"maxlags": -1}, ValueError, "non-negative"),
    ("HAC", {"maxlags": 2, "kernel": "triangle"}, ValueError, "kernel='triangle'"),
    ("HAC", {"maxlags": 2, "bandwidth": 3}, ValueError, "synonyms"),
    ("HAC", {"lags": 2}, TypeError, r"\['lags'\]"),
    ("HC1", {"debiased": True}, TypeError, "debiased"),
    ("HC0", {"debiased": "yes"}, TypeError, "debiased"),
    ("cluster", {}, ValueError, "groups"),
    ("cluster", {"groups": np.arange(10)}, ValueError, "has 10 rows; the model has 60"),
    ("cluster", {"groups": np.zeros(60)}, ValueError, "one group"),
    ("cluster", {"groups": np.arange(60), "clusters": np.arange(60)}, ValueError, "synonyms"),
    ("cluster", {"groups": np.arange(60) // 2, "use_correction": True, "debiased": True},
     ValueError, "not both"),
    ("cluster", {"groups": np.c_[np.arange(60), np.arange(60), np.arange(60)]}, ValueError,
     "one or two columns"),
    ("cluster", {"groups": np.r_[np.full(59, 1.0), np.nan]}, ValueError, "missing"),
])
def test_bad_cov_kwds_name_the_argument(tall_fit, cov_type, kwds, error, match,
                                        monkeypatch):
    with pytest.raises(error, match=match):
        tall_fit.get_robustcov_results(cov_type, **kwds)
    # fit() checks the options before fitting: no fit runs (fit_design is not called)
    model = tall_fit.model
    calls = []
    monkeypatch.setattr(model_module, "fit_design", lambda *a, **k: calls.append(a))
    with pytest.raises(error, match=match):
        model.fit(rank=1, cov_type=cov_type, cov_kwds=kwds)
    assert calls == []


@pytest.mark.parametrize(("cov_type", "kwds"), [
    ("HC1", {}), ("HAC", {"maxlags": 2}), ("cluster", {"groups": np.arange(20) // 4}),
    ("cluster", {"groups": np.arange(20) // 4, "df_correction": False}),
])
def test_get_robustcov_results_use_t_equals_statsmodels(cov_type, kwds):
    """One equation at rank 0 is OLS: ``get_robustcov_results(..., use_t=True)`` gives
    statsmodels' bse, t p-values, intervals and F test (cluster: t(G - 1), statsmodels'
    ``df_correction``; measured 1e-13)."""
    df = datasets.grunfeld_wide()
    res = LowRankSUR({"gm": "invest_gm ~ value_gm + capital_gm"}, df).fit(rank=0)
    ols = sm.OLS.from_formula("invest_gm ~ value_gm + capital_gm", df).fit()
    ours = res.get_robustcov_results(cov_type, use_t=True, **kwds)
    ref = ols.get_robustcov_results(cov_type, use_t=True, **kwds)
    assert ours.use_t and not res.use_t
    assert ours.df_resid_inference == getattr(ref, "df_resid_inference", ref.df_resid)
    assert _rel(ours.bse, ref.bse) <= SM_RTOL
    assert _rel(ours.pvalues, ref.pvalues) <= SM_RTOL
    assert _rel(ours.conf_int(), ref.conf_int()) <= SM_RTOL
    w = ours.wald_test("gm_value_gm = 0, gm_capital_gm = 0", scalar=True)
    w_ref = ref.wald_test("value_gm = 0, capital_gm = 0", scalar=True)
    assert w.df_denom == w_ref.df_denom and abs(w.pvalue / w_ref.pvalue - 1) <= SM_RTOL
    # None keeps the fit's choice; False goes back to the normal reference
    assert not res.get_robustcov_results(cov_type, **kwds).use_t
    back = ours.get_robustcov_results(cov_type, use_t=False, **kwds)
    assert not back.use_t
    normal = ols.get_robustcov_results(cov_type, use_t=False, **kwds)
    assert _rel(back.pvalues, normal.pvalues) <= SM_RTOL
    assert ours.get_robustcov_results(cov_type, **kwds).use_t
    assert f"t({ours.df_resid_inference})" in ours.summary().as_text()
    with pytest.raises(TypeError, match="use_t must be"):
        res.get_robustcov_results(cov_type, use_t="yes", **kwds)


def test_kernel_weights_match_linearmodels():
    cov = pytest.importorskip("linearmodels.iv.covariance")
    for bw in (0, 1, 3, 7):
        np.testing.assert_allclose(kernel_weights("bartlett", bw, 50),
                                   cov.kernel_weight_bartlett(bw), rtol=1e-15)
        np.testing.assert_allclose(kernel_weights("parzen", bw, 50),
                                   cov.kernel_weight_parzen(bw), rtol=1e-15)
    for bw in (0.5, 2.5, 10.0):
        np.testing.assert_allclose(kernel_weights("qs", bw, 50),
                                   cov.kernel_weight_quadratic_spectral(bw, 49), rtol=1e-14)


def test_inherited_interface_runs_single_threaded(tall_fit, monkeypatch):
    """The registry wraps bse/restricted/full inherited from the sandwich base class."""
    from lowrank_sur import threads
    from lowrank_sur.coefcov.robust import WhiteMeat

    depths = []
    original = WhiteMeat.cross

    def spy(self, A, B):
        depths.append(threads._depth())
        return original(self, A, B)

    monkeypatch.setattr(WhiteMeat, "cross", spy)
    res = tall_fit.get_robustcov_results("HC0")
    _ = res.bse, res.cov_params(), res.cov_params(r_matrix=np.eye(18)[:2])
    assert len(depths) == 3 and min(depths) >= 1
