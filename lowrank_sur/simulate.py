"""Simulated SUR systems with a known low-rank plus diagonal error covariance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .covariance import LowRankCovariance

__all__ = ["simulate_sur", "SimulatedSUR"]


@dataclass
class SimulatedSUR:
    """A simulated system and the truth behind it.

    Attributes
    ----------
    Xs : list of ndarray
        K regressor matrices (N x p, first column a constant).
    Y : ndarray, shape (N, K)
        Responses.
    coefs : list of ndarray
        True coefficients.
    F, D : ndarray
        True loadings (K x k) and idiosyncratic variances (K,).
    Xs_test, Y_test : list of ndarray, ndarray
        A held-out sample from the same model (``n_test`` rows; empty if 0).
    """

    Xs: list
    Y: np.ndarray
    coefs: list
    F: np.ndarray
    D: np.ndarray
    Xs_test: list
    Y_test: np.ndarray

    @property
    def cov(self) -> LowRankCovariance:
        """The true error covariance."""
        return LowRankCovariance(self.F, self.D)


def simulate_sur(
    nobs: int,
    k_eqs: int,
    n_exog: int = 3,
    rank: int = 3,
    *,
    n_test: int = 0,
    factor_scale: float = 1.0,
    shared_exog: bool = False,
    seed: int | np.random.Generator | None = None,
) -> SimulatedSUR:
    """Simulate ``y_tj = x_tj' b_j + e_tj`` with ``e_t ~ N(0, F F' + diag(D))``.

    Parameters
    ----------
    nobs : int
        Number of (training) observations N.
    k_eqs : int
        Number of equations K.
    n_exog : int
        Regressors per equation p, including the constant.
    rank : int
        Number of factors k.
    n_test : int
        Size of an independent held-out sample.
    factor_scale : float
        Standard deviation of the loadings (D is drawn from U(0.5, 1.5)).
    shared_exog : bool
        Give every equation the same regressors.
    seed : int or Generator, optional
        Random seed.

    Returns
    -------
    SimulatedSUR
    """
    rng = np.random.default_rng(seed)
    F = rng.normal(scale=factor_scale, size=(k_eqs, rank))
    D = rng.uniform(0.5, 1.5, size=k_eqs)
    coefs = [rng.normal(size=n_exog) for _ in range(k_eqs)]
    cov = LowRankCovariance(F, D)

    def draw(n):
        if shared_exog:
            X = np.column_stack([np.ones(n), rng.normal(size=(n, n_exog - 1))])
            Xs = [X] * k_eqs
        else:
            Xs = [
                np.column_stack([np.ones(n), rng.normal(size=(n, n_exog - 1))])
                for _ in range(k_eqs)
            ]
        mean = np.column_stack([X @ b for X, b in zip(Xs, coefs)]) if n else np.zeros((0, k_eqs))
        return Xs, mean + cov.sample(n, rng)

    Xs, Y = draw(nobs)
    Xs_test, Y_test = draw(n_test) if n_test else ([], np.zeros((0, k_eqs)))
    return SimulatedSUR(Xs, Y, coefs, F, D, Xs_test, Y_test)
