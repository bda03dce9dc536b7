"""The record every fitter returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..covariance import Covariance, LowRankCovariance

__all__ = ["FitRecord"]


@dataclass
class FitRecord:
    """What a fitter found.

    Attributes
    ----------
    coefs : list of ndarray
        Coefficients per equation (on the scale of the given regressors).
    cov : Covariance
        The fitted error covariance: a :class:`~lowrank_sur.covariance.LowRankCovariance`
        for the factor fitters, a :class:`~lowrank_sur.covariance.DenseCovariance`
        for an unrestricted Sigma.
    llf : float
        Maximized log-likelihood.
    llf_history : list of float
        Log-likelihood at the start and after each iteration (never decreasing).
    iterations : int
        Outer iterations: sweeps (ALS) or EM cycles plus ECM polishing sweeps (EM).
    converged : bool
        Whether the stopping rule was met before ``maxiter``.
    heywood : ndarray of int
        Indices of equations whose D sits at its floor.
    method : str
        The registered fitter's name.
    rank : int
        Number of factors k.
    d_floor : ndarray, shape (K,)
        The floor used for D (relative floor times each equation's OLS residual variance).
    cg_iterations : int
        Conjugate-gradient iterations of the beta steps (ALS).
    evaluations : int
        Evaluations spent in the factor step (EM maps and profile-likelihood evaluations)
        and in the joint polish.
    polish_evaluations : int
        Of those, the evaluations of the log-likelihood and its gradient in the joint
        polish of all parameters (:mod:`lowrank_sur.fitters.polish`); each costs about
        as much as one factor-step EM map plus one beta-step residual.
    whitened_coefs : ndarray, shape (K, pmax)
        Coefficients on the orthonormalized design (internal, reused for inference).
    likelihood_bounded : bool
        False when the check before the fit found the likelihood unbounded at this
        rank for these data (:func:`lowrank_sur.bounded.check_bounded`): the result
        can then only be a local maximum.
    degenerate : bool
        True when the fit ran to the floor on D on a rising likelihood (lowering the
        floor would raise the llf without bound): not a maximum.
    starts : list of dict
        One entry per start tried (``label``, ``llf``, ``converged``, ``degenerate``,
        ``heywood``, ``iterations``, ``evaluations``, ``polish_evaluations``), the chosen
        one first.
    n_maxima : int
        Number of distinct maxima (llf differing by more than ``1e-8`` relative)
        among the proper, converged maxima the starts reached.
    label : str, optional
        How the summary names the estimator when it depends on the options (e.g.
        two-step or iterated FGLS); None uses the fitter's registered label.
    constraints : tuple of (ndarray, ndarray), optional
        The restrictions ``R b = q`` imposed in estimation.
    """

    coefs: list[np.ndarray]
    cov: Covariance
    llf: float
    llf_history: list[float]
    iterations: int
    converged: bool
    heywood: np.ndarray
    method: str
    rank: int
    d_floor: np.ndarray
    cg_iterations: int = 0
    evaluations: int = 0
    polish_evaluations: int = 0
    whitened_coefs: np.ndarray | None = field(default=None, repr=False)
    likelihood_bounded: bool = True
    degenerate: bool = False
    starts: list = field(default_factory=list, repr=False)
    n_maxima: int = 1
    label: str | None = None
    constraints: tuple | None = field(default=None, repr=False)

    @property
    def F(self) -> np.ndarray | None:
        """Factor loadings (K x k, any rotation), or None for an unrestricted Sigma."""
        return self.cov.F if isinstance(self.cov, LowRankCovariance) else None

    @property
    def D(self) -> np.ndarray | None:
        """Idiosyncratic variances (K,), or None for an unrestricted Sigma."""
        return self.cov.D if isinstance(self.cov, LowRankCovariance) else None
