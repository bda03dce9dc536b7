"""The ALS fit on Dask (lowrank_sur.dask) against the in-memory fit, on a LocalCluster.

References are the in-memory fit (``lowrank_sur.fit_arrays``, ``n_starts=1``) and the
in-memory coefficient covariance (``NonrobustCovariance`` on ``SURDesign``), run live on
the same data; tolerances are the issue's (llf 1e-10 relative, coefficients 1e-8).
"""

from __future__ import annotations

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import lowrank_sur  # noqa: E402
from lowrank_sur import simulate_sur  # noqa: E402
from lowrank_sur.coefcov.nonrobust import NonrobustCovariance  # noqa: E402
from lowrank_sur.dask import DaskInference  # noqa: E402
from lowrank_sur.dask import fit_arrays as dask_fit  # noqa: E402
from lowrank_sur.design import CollinearityError, SURDesign  # noqa: E402

TIGHT = {"tol": 1e-12, "ptol": 1e-9}


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       memory_limit="1GB", dashboard_address=":0")
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def problem():
    sim = simulate_sur(nobs=120, k_eqs=24, n_exog=2, rank=2, seed=1)
    Xs = [np.asarray(x, dtype=float) for x in sim.Xs]
    return Xs, np.asarray(sim.Y, dtype=float)


def _dask(Xs, Y, chunks):
    X = np.stack(Xs, axis=1)
    return (da.from_array(X, chunks=(X.shape[0], chunks, X.shape[2])),
            da.from_array(Y, chunks=(Y.shape[0], chunks)))


@pytest.fixture(scope="module")
def fits(client, problem):
    Xs, Y = problem
    mem = lowrank_sur.fit_arrays(Xs, Y, 2, n_starts=1, **TIGHT)
    X, Yd = _dask(Xs, Y, (10, 6, 8))  # uneven blocks of equations
    rec = dask_fit(X, Yd, 2, **TIGHT)
    return mem, rec


def test_fit_matches_in_memory(fits, problem):
    mem, rec = fits
    assert rec.converged and mem.converged
    assert abs(rec.llf - mem.llf) <= 1e-10 * abs(mem.llf)
    np.testing.assert_allclose(np.concatenate(rec.coefs), np.concatenate(mem.coefs),
                               rtol=1e-8, atol=0)
    np.testing.assert_allclose(rec.D, mem.D, rtol=1e-7)
    np.testing.assert_allclose(rec.F @ rec.F.T, mem.F @ mem.F.T, rtol=1e-6, atol=1e-9)
    # the history never decreases and ends at the llf
    h = np.array(rec.llf_history)
    assert np.all(np.diff(h) >= -1e-10 * abs(h[-1])) and h[-1] == rec.llf
    assert rec.method == "als" and rec.rank == 2 and rec.likelihood_bounded is None


def test_sweep_log_and_no_n_by_k_gather(fits, problem):
    _, rec = fits
    Xs, Y = problem
    assert len(rec.sweep_log) == rec.iterations
    for entry in rec.sweep_log:
        assert entry["seconds"] > 0 and entry["cg_iterations"] >= 0
        assert entry["bytes_between_workers"] >= 0  # distributed's transfer counters
        assert entry["bytes_gathered"] > 0 and entry["bytes_sent"] > 0
    # the largest piece the client ever received is far below one N x K array
    assert rec.design.traffic.largest < Y.nbytes / 4


def test_default_tolerances_without_distributed(client, problem):
    # dask's local scheduler (no workers): the same fit, no transfer counters
    Xs, Y = problem
    mem = lowrank_sur.fit_arrays(Xs, Y, 2, n_starts=1)
    with dask.config.set(scheduler="synchronous"):
        rec = dask_fit(*_dask(Xs, Y, 12), 2)
    assert rec.converged
    assert abs(rec.llf - mem.llf) <= 1e-10 * abs(mem.llf)
    assert all(e["bytes_between_workers"] is None for e in rec.sweep_log)


def test_inference_matches_in_memory(fits, problem):
    mem, rec = fits
    Xs, _ = problem
    ref = NonrobustCovariance(SURDesign(Xs), record=mem)
    inf = DaskInference(rec, rtol=1e-9)  # each CG solve to 1e-9 (default 1e-11)
    bse_mem = ref.bse().reshape(-1, 2)
    np.testing.assert_allclose(inf.bse([3, "equation 17"]), bse_mem[[3, 17]], rtol=1e-7)
    np.testing.assert_allclose(inf.bse(), bse_mem, rtol=1e-7)  # small: in memory
    P = ref.design.k_params
    Rm = np.zeros((2, P))
    Rm[0, 6], Rm[0, 8] = 1.0, -1.0  # equal slopes of equations 3 and 4
    Rm[1, 1] = 1.0
    q = np.array([0.0, 0.5])
    b = np.concatenate(mem.coefs)
    V = ref.restricted(Rm)
    e = Rm @ b - q
    tt = inf.t_test(Rm, q)
    np.testing.assert_allclose(tt.effect, e, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(tt.sd, np.sqrt(np.diag(V)), rtol=1e-7)
    wt = inf.wald_test(Rm, q)
    np.testing.assert_allclose(float(wt.statistic), e @ np.linalg.solve(V, e), rtol=1e-6)
    assert 0 <= float(wt.pvalue) <= 1
    with pytest.raises(MemoryError, match=r"bse\(equations="):
        inf.bse(max_bytes=1)
    with pytest.raises(ValueError, match="P=48 columns"):
        inf.t_test(np.ones((1, 3)))


def test_rank_zero_is_ols(client, problem):
    Xs, Y = problem
    mem = lowrank_sur.fit_arrays(Xs, Y, 0)
    rec = dask_fit(*_dask(Xs, Y, 12), 0)
    assert abs(rec.llf - mem.llf) <= 1e-12 * abs(mem.llf)
    np.testing.assert_allclose(np.concatenate(rec.coefs), np.concatenate(mem.coefs),
                               rtol=1e-10)
    rec.release()  # the blocks leave the workers; inference says so
    assert rec.design is None
    with pytest.raises(ValueError, match="released"):
        rec.inference()


def test_bad_input_names_equation(client, problem):
    Xs, Y = problem
    Y = Y.copy()
    Y[5, 7] = np.nan
    with pytest.raises(ValueError, match="equation 7: the response contains NaN"):
        dask_fit(*_dask(Xs, Y, 12), 1)
    Xc = [x.copy() for x in Xs]
    Xc[19][:, 1] = 2.0 * Xc[19][:, 0]
    names = [f"y{j}" for j in range(len(Xs))]
    with pytest.raises(CollinearityError, match="y19: regressors are perfectly collinear"):
        dask_fit(*_dask(Xc, problem[1], 12), 1, eq_names=names)
    with pytest.raises(TypeError, match="dask arrays"):
        dask_fit(np.stack(Xs, axis=1), problem[1], 1)
    with pytest.raises(ValueError, match="one start"):
        dask_fit(*_dask(Xs, problem[1], 12), 1, n_starts=3)
    with pytest.raises(ValueError, match="ALS only"):
        dask_fit(*_dask(Xs, problem[1], 12), 1, method="em")
    with pytest.raises(ValueError, match="rank=24 must be smaller"):
        dask_fit(*_dask(Xs, problem[1], 12), 24)


def test_distributed_operations_equal_in_memory(problem):
    # every operation the sweep uses, against SURDesign and NumPy on the same data
    from lowrank_sur.dask import DaskDesign

    Xs, Y = problem
    X, Yd = _dask(Xs, Y, (10, 6, 8))
    ref = SURDesign(Xs)
    rng = np.random.default_rng(3)
    N, K = Y.shape
    A, W = rng.standard_normal((K, 2)), rng.standard_normal((K, 2))
    Z, E = rng.standard_normal((2, N)), rng.standard_normal((N, 2))
    with dask.config.set(scheduler="synchronous"):
        d = DaskDesign(X, Y=Yd)
        np.testing.assert_allclose(d.R, ref.R, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(d.fitted_mixed(A, W), ref.fitted_mixed(A, W), rtol=1e-10)
        np.testing.assert_allclose(d.rmul_mixed(Z, W), ref.rmul_mixed(Z, W), rtol=1e-10)
        stack = np.stack([Z, 2 * Z])
        np.testing.assert_allclose(d.rmul_mixed(stack, W), ref.rmul_mixed(stack, W),
                                   rtol=1e-10)
        np.testing.assert_allclose(d.ols(d.responses), ref.ols(Y), rtol=1e-10)
        R = d.residuals(d.responses, A)
        Rm = Y - ref.fitted(A)
        np.testing.assert_allclose(R @ W, Rm @ W, rtol=1e-10)
        np.testing.assert_allclose(R.T @ E, Rm.T @ E, rtol=1e-10)
        np.testing.assert_allclose(R.colss(), np.sum(Rm**2, axis=0), rtol=1e-12)
        np.testing.assert_allclose(np.concatenate(d.to_coefs(A)),
                                   np.concatenate(ref.to_coefs(A)), rtol=1e-10)
