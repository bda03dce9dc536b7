"""LowRankCovariance against dense numpy / scipy linear algebra at small K."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats

from lowrank_sur import LowRankCovariance
from lowrank_sur import covariance as covariance_module

K_SMALL = 7
N_ROWS = 11
RTOL = 1e-10


def _make(k: int, seed: int = 0):
    """Random F (K x k), D > 0, residuals R (N x K) and the dense Sigma built by numpy."""
    rng = np.random.default_rng(seed)
    F = rng.normal(size=(K_SMALL, k))
    D = rng.uniform(0.3, 2.0, size=K_SMALL)
    R = rng.normal(size=(N_ROWS, K_SMALL)) * 1.7
    Sigma = F @ F.T + np.diag(D)
    return F, D, R, Sigma


def _rel_max(actual, desired) -> float:
    return float(np.max(np.abs(actual - desired)) / np.max(np.abs(desired)))


@pytest.fixture(params=[0, 1, 3], ids=lambda k: f"k={k}")
def case(request):
    k = request.param
    F, D, R, Sigma = _make(k, seed=10 + k)
    return LowRankCovariance(F, D), F, D, R, Sigma


def test_shape_and_rank(case):
    cov, F, D, _, _ = case
    assert cov.k_eqs == K_SMALL
    assert cov.rank == F.shape[1]


def test_logdet_matches_slogdet(case):
    cov, _, _, _, Sigma = case
    sign, logdet = np.linalg.slogdet(Sigma)
    assert sign == 1.0
    assert_allclose(cov.logdet(), logdet, rtol=RTOL)


def test_solve_matrix_matches_dense_inverse(case):
    cov, _, _, R, Sigma = case
    expected = R @ np.linalg.inv(Sigma)
    assert _rel_max(cov.solve(R), expected) <= RTOL
    # and against a solve that never forms the inverse
    expected2 = np.linalg.solve(Sigma, R.T).T
    assert _rel_max(cov.solve(R), expected2) <= RTOL


def test_solve_vector(case):
    cov, _, _, R, Sigma = case
    r = R[0]
    assert _rel_max(cov.solve(r), np.linalg.solve(Sigma, r)) <= RTOL
    assert cov.solve(r).shape == (K_SMALL,)


def test_matvec_matches_dense(case):
    cov, _, _, R, Sigma = case
    assert _rel_max(cov.matvec(R), R @ Sigma) <= RTOL
    assert _rel_max(cov.matvec(R[2]), Sigma @ R[2]) <= RTOL
    # matvec and solve are inverse maps
    assert _rel_max(cov.solve(cov.matvec(R)), R) <= RTOL


def test_inv_diag_matches_dense(case):
    cov, _, _, _, Sigma = case
    assert_allclose(cov.inv_diag(), np.diag(np.linalg.inv(Sigma)), rtol=RTOL)


def test_diag_matches_dense(case):
    cov, _, _, _, Sigma = case
    assert_allclose(cov.diag(), np.diag(Sigma), rtol=RTOL)


def test_to_dense_and_inv_dense(case):
    cov, _, _, _, Sigma = case
    S = cov.to_dense()
    assert S.shape == (K_SMALL, K_SMALL)
    assert _rel_max(S, Sigma) <= RTOL
    assert _rel_max(cov.inv_dense(), np.linalg.inv(Sigma)) <= RTOL
    assert_allclose(cov.inv_dense(), cov.inv_dense().T, rtol=0, atol=1e-14)


def test_loglike_matches_scipy_mvn(case):
    cov, _, _, R, Sigma = case
    logpdf = stats.multivariate_normal(mean=np.zeros(K_SMALL), cov=Sigma).logpdf(R)
    assert_allclose(cov.loglike(R), np.sum(logpdf), rtol=RTOL)
    assert_allclose(cov.quad_form_sum(R), np.trace(R @ np.linalg.inv(Sigma) @ R.T), rtol=RTOL)


def test_loglikeobs_matches_scipy_mvn(case):
    cov, _, _, R, Sigma = case
    logpdf = stats.multivariate_normal(mean=np.zeros(K_SMALL), cov=Sigma).logpdf(R)
    obs = cov.loglikeobs(R)
    assert obs.shape == (N_ROWS,)
    assert_allclose(obs, logpdf, rtol=RTOL)
    assert_allclose(np.sum(obs), cov.loglike(R), rtol=1e-12)


def test_w_factor_reproduces_inverse(case):
    cov, _, D, _, Sigma = case
    W = cov.W
    assert _rel_max(np.diag(1.0 / D) - W @ W.T, np.linalg.inv(Sigma)) <= RTOL


@pytest.mark.parametrize("k", [1, 3])
def test_rotation_of_f_leaves_loglike_unchanged(k):
    F, D, R, Sigma = _make(k, seed=42)
    Q = stats.ortho_group.rvs(k, random_state=3) if k > 1 else np.array([[-1.0]])
    assert_allclose(Q.T @ Q, np.eye(k), atol=1e-12)
    a, b = LowRankCovariance(F, D), LowRankCovariance(F @ Q, D)
    assert_allclose(b.loglike(R), a.loglike(R), rtol=1e-13)
    assert_allclose(b.loglikeobs(R), a.loglikeobs(R), rtol=1e-13)
    assert_allclose(b.logdet(), a.logdet(), rtol=1e-13)
    assert _rel_max(b.to_dense(), Sigma) <= 1e-13


def test_rank_zero_accepts_empty_f():
    D = np.array([1.0, 2.0, 3.0])
    cov = LowRankCovariance(np.zeros(0), D)
    assert cov.rank == 0
    assert_allclose(cov.to_dense(), np.diag(D), rtol=0, atol=0)


def test_dense_refuses_past_dense_max_k(monkeypatch):
    F, D, _, Sigma = _make(2, seed=5)
    cov = LowRankCovariance(F, D)
    monkeypatch.setattr(covariance_module, "DENSE_MAX_K", K_SMALL - 1)
    with pytest.raises(MemoryError, match="force=True"):
        cov.to_dense()
    with pytest.raises(MemoryError):
        cov.inv_dense()
    with pytest.raises(MemoryError):
        cov.to_corr()
    # explicitly forced, it still works
    assert _rel_max(cov.to_dense(force=True), Sigma) <= RTOL
    assert _rel_max(cov.inv_dense(force=True), np.linalg.inv(Sigma)) <= RTOL
    # exactly at the limit is allowed
    monkeypatch.setattr(covariance_module, "DENSE_MAX_K", K_SMALL)
    assert cov.to_dense().shape == (K_SMALL, K_SMALL)


@pytest.mark.parametrize(
    ("F", "D", "match"),
    [
        (np.ones((3, 1)), np.array([1.0, 0.0, 1.0]), "positive"),
        (np.ones((3, 1)), np.array([1.0, -1.0, 1.0]), "positive"),
        (np.ones((3, 1)), np.array([1.0, np.nan, 1.0]), "finite"),
        (np.ones((4, 1)), np.ones(3), "shape"),
        (np.array([[1.0], [np.inf], [1.0]]), np.ones(3), "finite"),
    ],
)
def test_invalid_parameters_raise(F, D, match):
    with pytest.raises(ValueError, match=match):
        LowRankCovariance(F, D)
