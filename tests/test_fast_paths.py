"""The fast paths agree with the plain computations they replace.

The fused GLS operator and its warm-start residual against the explicit
``Q'(Sigma^{-1} kron I)Q``; every route of the coefficient covariance (diagonal, P x P,
Woodbury with and without shared leading columns) against the inverse of the dense
normal matrix; the Gram start values against a full SVD.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lowrank_sur import LowRankCovariance, fit_arrays
from lowrank_sur.coefcov.nonrobust import NonrobustCovariance
from lowrank_sur.design import SURDesign
from lowrank_sur.gls import GLSOperator
from lowrank_sur.starts import start_values


def _system(rng, N, K, k, const=True, shared=False):
    Xs = []
    X0 = rng.normal(size=(N, 3))
    for _ in range(K):
        X = X0.copy() if shared else rng.normal(size=(N, int(rng.integers(1, 5))))
        if const:
            X[:, 0] = 1.0
        Xs.append(X)
    F = rng.normal(size=(K, k))
    Y = np.column_stack([X @ rng.normal(size=X.shape[1]) for X in Xs])
    Y += rng.normal(size=(N, k)) @ F.T + rng.normal(size=(N, K))
    return Xs, Y


def _dense_normal_matrix(Xs, cov):
    S = cov.inv_dense()
    off = np.cumsum([0] + [X.shape[1] for X in Xs])
    A = np.zeros((off[-1], off[-1]))
    for i, Xi in enumerate(Xs):
        for j, Xj in enumerate(Xs):
            A[off[i] : off[i + 1], off[j] : off[j + 1]] = S[i, j] * Xi.T @ Xj
    return A


@pytest.mark.parametrize("shared", [False, True])
def test_fused_operator_and_residual_system(shared):
    rng = np.random.default_rng(0)
    N, K, k = 30, 12, 2
    Xs, Y = _system(rng, N, K, k, shared=shared)
    d = SURDesign(Xs)
    cov = LowRankCovariance(rng.normal(size=(K, k)), rng.uniform(0.5, 1.5, K))
    op = GLSOperator(d, cov)
    Sinv = cov.inv_dense()
    V = rng.normal(size=(K, d.pmax)) * d.real_mask
    explicit = d.rmul_t(Sinv @ d.fitted_t(V))
    np.testing.assert_allclose(op.matvec(V.ravel()).reshape(K, -1), explicit, atol=1e-12)
    c = d.rmul_t(Sinv @ np.ascontiguousarray(Y.T))
    np.testing.assert_allclose(op.rhs(Y).reshape(K, -1), c, atol=1e-12)
    QtY = d.rmul(Y)
    r0, c_norm = op.residual_system(QtY, V, Y, Y - d.fitted(V))
    np.testing.assert_allclose(r0.reshape(K, -1), c - explicit, atol=1e-12)
    assert c_norm == pytest.approx(np.linalg.norm(c), rel=1e-12)


@pytest.mark.parametrize(("const", "shared"), [(True, False), (False, False), (True, True)])
@pytest.mark.parametrize(("N", "K", "k"), [(40, 30, 2), (25, 60, 3), (200, 10, 2), (30, 8, 0)])
def test_every_bse_route_matches_the_dense_inverse(N, K, k, const, shared):
    rng = np.random.default_rng(N + K + k)
    Xs, Y = _system(rng, N, K, k, const=const, shared=shared)
    rec = fit_arrays(Xs, Y, k)
    ref = np.sqrt(np.diag(np.linalg.inv(_dense_normal_matrix(Xs, rec.cov))))
    d = SURDesign(Xs)
    assert NonrobustCovariance(d, None, rec)._shared_columns() == (
        d.pmax if shared else int(const))
    for route in (("diagonal",) if k == 0 else ("dense", "woodbury")):
        est = NonrobustCovariance(d, None, rec)
        est.route = lambda route=route: route
        np.testing.assert_allclose(est.bse(), ref, rtol=1e-10)
        blocks = est.blocks()
        assert [B.shape[0] for B in blocks] == [X.shape[1] for X in Xs]


@pytest.mark.parametrize(("N", "K"), [(50, 200), (300, 120)])
def test_gram_start_values_match_the_svd(N, K):
    rng = np.random.default_rng(K)
    R = LowRankCovariance(rng.normal(size=(K, 3)), rng.uniform(0.5, 1.5, K)).sample(N, rng)
    floor = 1e-8 * np.ones(K)
    F, D = start_values(R, 3, floor)
    var = np.einsum("ij,ij->j", R, R) / N
    # principal components of the standardized residuals, loadings back on each scale
    _, s, vt = np.linalg.svd(R / np.sqrt(N * var), full_matrices=False)
    F_svd = vt[:3].T * s[:3] * np.sqrt(var)[:, None]
    D_svd = np.maximum(np.maximum(var - np.einsum("ij,ij->i", F_svd, F_svd), var / 20.0), floor)
    np.testing.assert_allclose(D, D_svd, rtol=1e-10)
    # the same (shrunk) loadings up to the sign of each column
    h = np.sqrt(np.clip((var - D) / np.einsum("ij,ij->i", F_svd, F_svd), 0.0, 1.0))
    np.testing.assert_allclose(np.abs(F), np.abs(F_svd * h[:, None]), rtol=1e-8, atol=1e-12)


def test_fits_and_standard_errors_run_with_one_blas_thread():
    """Inside the library BLAS has one thread whatever the caller set; restored after."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from lowrank_sur import LowRankSUR, simulate_sur

    def blas_threads():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    sim = simulate_sur(40, 6, 3, 1, seed=0)
    seen = []
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        model = LowRankSUR({f"y{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(6)})
        res = model.fit(rank=1, callback=lambda i, llf: seen.append(blas_threads()))
        assert np.all(np.isfinite(res.bse))
        after = blas_threads()
    assert seen and all(s == {1} for s in seen)
    assert before == after


@pytest.mark.parametrize("const, shared, expected", [(True, False, 1), (False, False, 0),
                                                     (True, True, 3), (False, True, 3)])
def test_shared_columns_counts_the_leading_columns_every_equation_has(const, shared, expected):
    """A common constant is one shared column, a shared design all of them; cached."""
    rng = np.random.default_rng(3)
    Xs, _ = _system(rng, 30, 5, 1, const=const, shared=shared)
    design = SURDesign(Xs)
    assert design.shared_columns() == expected
    assert design.shared_columns() == expected  # the cached value


def test_beta_step_from_an_extrapolated_point_matches_fresh_residuals(monkeypatch):
    """The residuals of a point the sweeps did not compute them for go into one buffer.

    The fit is the same as with a fresh residual array for each such point.
    """
    rng = np.random.default_rng(4)
    Xs, Y = _system(rng, 40, 12, 2)
    outs = []
    original = SURDesign.residuals

    def fresh(self, YT, A, out=None):
        outs.append(out)
        return original(self, YT, A)  # never into a buffer

    ref = fit_arrays(Xs, Y, 2)
    monkeypatch.setattr(SURDesign, "residuals", fresh)
    plain = fit_arrays(Xs, Y, 2)
    assert any(o is not None for o in outs)  # buffers were offered
    assert plain.llf == ref.llf and plain.iterations == ref.iterations
    np.testing.assert_array_equal(np.concatenate(plain.coefs), np.concatenate(ref.coefs))


def test_inexact_beta_step_only_where_cg_is_fast(monkeypatch):
    """The forcing term saves CG iterations on a well-conditioned system, same maximum;
    where CG is slower (few observations) the fit is bit for bit the exact one."""
    import lowrank_sur.fitters.als as als
    from lowrank_sur import simulate_sur

    for (N, K), saves in (((300, 2000), True), ((60, 1000), False)):
        sim = simulate_sur(N, K, 3, 2, seed=1)
        inexact = fit_arrays(sim.Xs, sim.Y, 2)
        monkeypatch.setattr(als, "CG_FORCING", 0.0)
        exact = fit_arrays(sim.Xs, sim.Y, 2)
        monkeypatch.undo()
        assert exact.converged and inexact.converged
        if saves:
            assert inexact.cg_iterations < exact.cg_iterations
            assert abs(inexact.llf - exact.llf) <= 1e-13 * abs(exact.llf)
            np.testing.assert_allclose(np.concatenate(inexact.coefs),
                                       np.concatenate(exact.coefs), rtol=0, atol=1e-8)
        else:
            assert inexact.cg_iterations == exact.cg_iterations
            assert inexact.llf == exact.llf


# ------------------------------------------------------------------ formula fast path
def _wide_frame(rng, K=5, N=30):
    cols = {}
    f = rng.normal(size=N)  # one common factor in the errors
    for j in range(K):
        cols[f"x1_{j}"] = rng.normal(size=N)
        cols[f"x2_{j}"] = rng.normal(size=N)
        cols[f"y_{j}"] = 1.0 + cols[f"x1_{j}"] - cols[f"x2_{j}"] + f * (1 + j) + rng.normal(size=N)
    df = pd.DataFrame(cols, index=pd.Index(range(100, 100 + N), name="t"))
    df.iloc[3, 0] = np.nan  # missing values drop the rows for every equation
    df.iloc[7, 5] = np.nan
    return df


PLAIN = ["y_{j} ~ x1_{j} + x2_{j}", "y_{j} ~ x1_{j} * x2_{j} - 1",
         "y_{j} ~ x2_{j}:x1_{j} + x1_{j}"]


@pytest.mark.parametrize("template", PLAIN)
def test_plain_formulas_build_exactly_what_patsy_builds(template, monkeypatch):
    import pickle

    from lowrank_sur import LowRankSUR
    from lowrank_sur import plain as plain_mod

    rng = np.random.default_rng(3)
    df = _wide_frame(rng)
    eqs = {f"e{j}": template.format(j=j) for j in range(5)}
    fast = LowRankSUR(eqs, df)
    assert all(p is None for p in [e.design_info for e in fast.system.equations])
    monkeypatch.setattr(plain_mod, "plain_shape", lambda formula: None)
    slow = LowRankSUR(eqs, df)
    monkeypatch.undo()
    assert fast.param_names == slow.param_names
    assert fast.n_dropped == slow.n_dropped == 2
    pd.testing.assert_frame_equal(fast.system.endog, slow.system.endog)
    for a, b in zip(fast.system.exog, slow.system.exog):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(fast.system.equations, slow.system.equations):
        assert (a.dep_name, a.exog_names, sorted(a.columns), a.column_types) == (
            b.dep_name, b.exog_names, sorted(b.columns), b.column_types)
    res_f, res_s = fast.fit(rank=1), slow.fit(rank=1)
    np.testing.assert_array_equal(np.asarray(res_f.params), np.asarray(res_s.params))
    new = _wide_frame(np.random.default_rng(4)).dropna()
    expected = res_s.predict(new)
    pd.testing.assert_frame_equal(res_f.predict(new), expected)  # design built on demand
    back = pickle.loads(pickle.dumps(LowRankSUR(eqs, df).fit(rank=1)))
    pd.testing.assert_frame_equal(back.predict(new), expected, rtol=1e-12)


def test_formulas_that_are_not_plain_go_through_patsy():
    from lowrank_sur.plain import plain_shape

    assert plain_shape("y ~ a + b:c - 1") is not None
    for f in ["y ~ np.log(a)", "y ~ C(g)", 'y ~ Q("a b")', "y ~ I(a ** 2)", "y + z ~ a",
              "y ~ a + f(b)"]:
        assert plain_shape(f) is None, f
