"""Property tests of exact invariances (math.md) on small random systems, with hypothesis."""

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lowrank_sur import LowRankSUR, fit_arrays, simulate_sur

# derandomize: the same examples on every run, so CI is reproducible
SETTINGS = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def systems(draw):
    k = draw(st.integers(1, 2))
    # (K - k)^2 >= K + k (Ledermann): F F' and D are identified separately, so the
    # invariances can be checked on D itself, not only on Sigma.
    K = draw(st.integers(3 if k == 1 else 5, 8))
    n = draw(st.integers(30, 80))
    p = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    sim = simulate_sur(n, K, p, k, seed=seed)
    return sim, k


def sigma(rec):
    return rec.F @ rec.F.T + np.diag(rec.D)


def close(a, b, rtol):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(np.max(np.abs(b)), 1e-300)
    return np.max(np.abs(a - b)) <= rtol * scale


@SETTINGS
@given(systems(), st.sampled_from([1e-8, -0.01, 3.0, 1e8]))
def test_scale_equivariance(system, c):
    sim, k = system
    base = fit_arrays(sim.Xs, sim.Y, k)
    scaled = fit_arrays(sim.Xs, c * sim.Y, k)
    n, K = sim.Y.shape
    assert scaled.converged and base.converged
    for b0, b1 in zip(base.coefs, scaled.coefs):
        assert close(b1, c * b0, 1e-6)
    assert close(scaled.D, c**2 * base.D, 1e-5)
    assert close(sigma(scaled), c**2 * sigma(base), 1e-5)
    expected = base.llf - n * K * np.log(abs(c))
    assert abs(scaled.llf - expected) <= 1e-8 * abs(expected) + 1e-6


@SETTINGS
@given(systems(), st.sampled_from([1e-8, 1e8]))
def test_regressor_scaling(system, c):
    """Scaling the regressors by c scales the coefficients by 1/c and changes nothing else."""
    sim, k = system
    base = fit_arrays(sim.Xs, sim.Y, k)
    scaled = fit_arrays([c * X for X in sim.Xs], sim.Y, k)
    for b0, b1 in zip(base.coefs, scaled.coefs):
        assert close(c * b1, b0, 1e-6)
    assert abs(scaled.llf - base.llf) <= 1e-9 * abs(base.llf)


@SETTINGS
@given(systems(), st.randoms(use_true_random=False))
def test_equation_permutation(system, rnd):
    sim, k = system
    K = sim.Y.shape[1]
    perm = list(range(K))
    rnd.shuffle(perm)
    base = fit_arrays(sim.Xs, sim.Y, k)
    permuted = fit_arrays([sim.Xs[j] for j in perm], sim.Y[:, perm], k)
    for i, j in enumerate(perm):
        assert close(permuted.coefs[i], base.coefs[j], 1e-6)
    assert close(permuted.D, base.D[perm], 1e-5)
    assert close(sigma(permuted), sigma(base)[np.ix_(perm, perm)], 1e-5)
    assert abs(permuted.llf - base.llf) <= 1e-9 * abs(base.llf)


@SETTINGS
@given(systems(), st.randoms(use_true_random=False))
def test_row_permutation(system, rnd):
    sim, k = system
    n, K = sim.Y.shape
    order = list(range(n))
    rnd.shuffle(order)
    eqs = {f"e{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(K)}
    eqs_p = {f"e{j}": (sim.Y[order, j], sim.Xs[j][order]) for j in range(K)}
    base = LowRankSUR(eqs).fit(rank=k)
    perm = LowRankSUR(eqs_p).fit(rank=k)
    assert close(perm.params, base.params, 1e-6)
    assert close(perm.bse, base.bse, 1e-5)
    assert abs(perm.llf - base.llf) <= 1e-9 * abs(base.llf)
    assert close(perm.resid.to_numpy(), base.resid.to_numpy()[order], 1e-6)


@SETTINGS
@given(systems(), st.sampled_from(["als", "em"]))
def test_refit_is_bitwise_identical(system, method):
    sim, k = system
    a = fit_arrays(sim.Xs, sim.Y, k, method=method)
    b = fit_arrays(sim.Xs, sim.Y, k, method=method)
    assert a.llf == b.llf
    assert all(np.array_equal(x, y) for x, y in zip(a.coefs, b.coefs))
    assert np.array_equal(a.F, b.F) and np.array_equal(a.D, b.D)
    assert a.llf_history == b.llf_history


@SETTINGS
@given(systems())
def test_dataframe_never_mutated(system):
    sim, k = system
    n, K = sim.Y.shape
    cols = {}
    formulas = {}
    for j in range(K):
        cols[f"y{j}"] = sim.Y[:, j]
        xs = [f"x{j}_{c}" for c in range(1, sim.Xs[j].shape[1])]
        for c, name in enumerate(xs, start=1):
            cols[name] = sim.Xs[j][:, c]
        formulas[f"eq{j}"] = f"y{j} ~ " + (" + ".join(xs) if xs else "1")
    df = pd.DataFrame(cols)
    df.iloc[0, 0] = np.nan  # exercises the missing-row path too
    snapshot = df.copy()
    res = LowRankSUR(formulas, df).fit(rank=k)
    pd.testing.assert_frame_equal(df, snapshot)
    assert res.nobs == n - 1 and res.n_dropped == 1
    res.predict(df.iloc[1:])
    res.summary()
    pd.testing.assert_frame_equal(df, snapshot)
