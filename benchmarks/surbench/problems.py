"""Simulated SUR problems with a known truth, the oracle, and the scoring of estimates.

``lowrank_sur`` is imported inside the functions: the workers import this module's
package with interpreters that may only have NumPy and the peer under test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Problem:
    """One simulated system and where its data file is."""

    nobs: int
    k_eqs: int
    n_exog: int
    rank: int
    rep: int
    seed: int
    n_test: int
    path: Path
    sim: object


def make_problem(nobs, k_eqs, n_exog, rank, rep, n_test, base_seed, workdir) -> Problem:
    """Simulate one system with :func:`lowrank_sur.simulate_sur` and save it for the children.

    Parameters
    ----------
    nobs, k_eqs, n_exog, rank : int
        N, K, p and k.
    rep : int
        Replication number.
    n_test : int
        Size of the held-out sample.
    base_seed : int
        The problem's seed is ``base_seed + 7919 * rep + 31 * k_eqs + nobs``.
    workdir : Path
        Where the ``.npz`` goes.

    Returns
    -------
    Problem
    """
    from lowrank_sur import simulate_sur

    seed = int(base_seed + 7919 * rep + 31 * k_eqs + nobs)
    sim = simulate_sur(nobs, k_eqs, n_exog, rank, n_test=n_test, seed=seed)
    path = Path(workdir) / f"problem_N{nobs}_K{k_eqs}_p{n_exog}_k{rank}_r{rep}.npz"
    np.savez(path, X=np.stack(sim.Xs), Y=sim.Y)
    return Problem(nobs, k_eqs, n_exog, rank, rep, seed, n_test, path, sim)


def _resid(Xs, Y, coefs) -> np.ndarray:
    return Y - np.column_stack([X @ b for X, b in zip(Xs, coefs, strict=True)])


def oracle(problem: Problem) -> float:
    """Held-out NLL per observation under the true coefficients and covariance."""
    sim = problem.sim
    R = _resid(sim.Xs_test, sim.Y_test, sim.coefs)
    return float(-sim.cov.loglike(R) / R.shape[0])


def dense_covariance(S: np.ndarray):
    """A :class:`lowrank_sur.covariance.DenseCovariance` of S, or None when S is singular.

    Returns
    -------
    cov : DenseCovariance or None
        None when S is singular: smallest eigenvalue at most ``K * eps`` times the
        largest, or no Cholesky factor.
    note : str or None
        Says so when S is singular.
    lo : float
        The smallest eigenvalue.
    """
    from lowrank_sur.covariance import DenseCovariance

    K = S.shape[0]
    S = (S + S.T) / 2.0
    evals = np.linalg.eigvalsh(S)
    lo, hi = float(evals[0]), float(evals[-1])
    singular = f"Sigma-hat singular (smallest eigenvalue {lo:.1e}, largest {hi:.1e})"
    if not np.all(np.isfinite(evals)) or hi <= 0 or lo <= K * np.finfo(float).eps * hi:
        return None, singular, lo
    try:
        return DenseCovariance(S), None, lo
    except np.linalg.LinAlgError:
        return None, singular, lo


def dense_loglike(R: np.ndarray, S: np.ndarray) -> tuple[float, str | None, float]:
    """Gaussian log-likelihood of the rows of R under a dense S; -inf if S is singular.

    Returns the log-likelihood (:meth:`DenseCovariance.loglike`), a note when S is
    singular (see :func:`dense_covariance`), and the smallest eigenvalue.
    """
    cov, note, lo = dense_covariance(S)
    if cov is None:
        return -math.inf, note, lo
    return cov.loglike(R), None, lo


def _score_dense(out: dict, problem: Problem, S, R_in, R_out) -> None:
    cov, note, lo = dense_covariance(S)
    out["llf"] = -math.inf if cov is None else cov.loglike(R_in)
    out["sigma_min_eig"] = lo
    if cov is not None:
        out["oos_nll_per_obs"] = -cov.loglike(R_out) / R_out.shape[0]
        return
    out["oos_nll_per_obs"] = math.inf
    K, n = problem.k_eqs, problem.nobs
    why = f" (K={K} >= N={n}: rank(Sigma-hat) <= N)" if K >= n else ""
    out["notes"].append(f"{note}{why}: llf = -inf, oos NLL = inf")


def score(problem: Problem, est: dict) -> dict:
    """Accuracy metrics of one method's estimates against the truth.

    Parameters
    ----------
    problem : Problem
        The simulated system (with truth and held-out sample).
    est : dict
        ``params`` (P,), ``kind`` ("lowrank" or "dense"), and ``F``, ``D`` or ``S``.

    Returns
    -------
    dict
        ``beta_rmse``, ``llf``, ``oos_nll_per_obs`` and notes.
    """
    from lowrank_sur import LowRankCovariance

    sim = problem.sim
    params = np.asarray(est["params"], dtype=float)
    truth = np.concatenate(sim.coefs)
    out: dict = {"notes": []}
    if params.shape != truth.shape:
        out["notes"].append(f"estimate has {params.size} coefficients, truth {truth.size}")
        return out
    out["beta_rmse"] = float(np.sqrt(np.mean((params - truth) ** 2)))
    coefs = np.split(params, np.cumsum([X.shape[1] for X in sim.Xs])[:-1])
    R_in = _resid(sim.Xs, sim.Y, coefs)
    R_out = _resid(sim.Xs_test, sim.Y_test, coefs)
    if str(est["kind"]) == "lowrank":
        cov = LowRankCovariance(est["F"], est["D"])
        out["llf"] = float(cov.loglike(R_in))
        out["oos_nll_per_obs"] = float(-cov.loglike(R_out) / R_out.shape[0])
    else:
        _score_dense(out, problem, est["S"], R_in, R_out)
    return out
