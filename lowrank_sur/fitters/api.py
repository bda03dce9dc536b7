"""Entry points of the fitters: :func:`fit_design` (a prepared design) and :func:`fit_arrays`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..bounded import check_bounded, warn_unbounded
from ..design import SURDesign
from ..options import FitOptions, check_rank
from ..selection import warn_if_unidentified
from .common import Start
from .multistart import fit_with_starts
from .record import FitRecord
from .registry import get_fitter

__all__ = ["fit_design", "fit_arrays"]


def fit_design(
    design: SURDesign,
    Y: np.ndarray,
    rank: int,
    options: FitOptions | None = None,
    *,
    start_params=None,
    **kwargs,
) -> FitRecord:
    """Fit on a prepared :class:`~lowrank_sur.design.SURDesign` (see :func:`fit_arrays`).

    Parameters
    ----------
    design : SURDesign
        The whitened design.
    Y : ndarray, shape (N, K)
        Responses.
    rank : int
        Number of factors.
    options : FitOptions, optional
        Validated options; keywords (fields of :class:`~lowrank_sur.options.FitOptions`)
        override them.
    start_params : dict or tuple, optional
        A starting point: ``{"params": P coefficients (optional), "F": K x k loadings,
        "D": K variances}`` or the tuple ``(params, F, D)`` (``params`` may be None).
    **kwargs
        Fields of :class:`~lowrank_sur.options.FitOptions`.

    Returns
    -------
    FitRecord
        Also says whether the likelihood is bounded at this rank for these data
        (``likelihood_bounded``; an :class:`~lowrank_sur.exceptions.UnboundedLikelihoodWarning`
        names the equations otherwise), whether the fit is degenerate
        (``degenerate``), and what every start reached (``starts``, ``n_maxima``).
    """
    opts = FitOptions.from_kwargs(options, **kwargs)
    rank = check_rank(rank, design.k_eqs, design.nobs)
    warn_if_unidentified(design.k_eqs, rank)
    bounded = check_bounded(design, Y, rank)
    if not bounded.bounded:
        warn_unbounded(bounded, rank, design.eq_names)
    start = _user_start(design, rank, start_params)
    rec = fit_with_starts(get_fitter(opts.method).fit, design, Y, rank, opts, start)
    rec.likelihood_bounded = bounded.bounded
    return rec


def _user_start(design: SURDesign, rank: int, start_params) -> Start | None:
    """``start_params`` as a :class:`Start` (whitened coefficients), validated."""
    if start_params is None:
        return None
    if isinstance(start_params, dict):
        unknown = sorted(set(start_params) - {"params", "F", "D"})
        if unknown:
            raise ValueError(f"start_params has unknown key(s) {unknown}; use params, F, D")
        params, F, D = (start_params.get(k) for k in ("params", "F", "D"))
    else:
        params, F, D = start_params
    K = design.k_eqs
    F = np.asarray(F, dtype=float).reshape(K, -1) if F is not None else None
    D = np.asarray(D, dtype=float) if D is not None else None
    if F is None or D is None or F.shape != (K, rank) or D.shape != (K,):
        raise ValueError(
            f"start_params needs F of shape ({K}, {rank}) and D of shape ({K},)"
        )
    if not (np.all(np.isfinite(F)) and np.all(np.isfinite(D)) and np.all(D > 0)):
        raise ValueError("start_params: F must be finite and D finite and positive")
    A = None
    if params is not None:
        b = np.asarray(params, dtype=float).ravel()
        if b.size != design.k_params or not np.all(np.isfinite(b)):
            raise ValueError(
                f"start_params['params'] must hold {design.k_params} finite coefficients"
            )
        A = design.from_coefs([b[design.offsets[j]:design.offsets[j + 1]] for j in range(K)])
    return Start(A, F, D, "start_params")


def _check_response(Y, Xs, names) -> np.ndarray:
    Y = np.asarray(Y, dtype=float)
    if Y.ndim != 2:
        raise ValueError(f"Y must be 2-D (N x K), got shape {Y.shape}")
    if len(Xs) != Y.shape[1]:
        raise ValueError(
            f"Xs has {len(Xs)} regressor matrices but Y has {Y.shape[1]} columns; "
            "give one regressor matrix per equation"
        )
    if names is not None and len(names) != Y.shape[1]:
        raise ValueError(
            f"eq_names has {len(names)} labels but Y has {Y.shape[1]} columns; give one "
            "label per equation"
        )
    if not np.all(np.isfinite(Y)):
        bad = np.flatnonzero(~np.all(np.isfinite(Y), axis=0))
        label = names[bad[0]] if names else f"equation {bad[0]}"
        raise ValueError(f"{label}: the response contains NaN or inf")
    return Y


def fit_arrays(
    Xs: Sequence[np.ndarray],
    Y: np.ndarray,
    rank: int,
    *,
    eq_names: Sequence[str] | None = None,
    options: FitOptions | None = None,
    start_params=None,
    **kwargs,
) -> FitRecord:
    """Fit a SUR system with ``Sigma = F F' + diag(D)`` by maximum likelihood.

    Parameters
    ----------
    Xs : sequence of array_like
        K regressor matrices, ``Xs[j]`` of shape (N, p_j); each holds its own
        constant column if one is wanted.
    Y : array_like, shape (N, K)
        Responses, one column per equation.
    rank : int
        Number of factors k, ``0 <= k < K`` and ``k < N``. ``0`` is a diagonal Sigma
        (OLS per equation); ``K - 1`` leaves Sigma unrestricted (iterated SUR).
    eq_names : sequence of str, optional
        Equation labels for messages (one per equation).
    options : FitOptions, optional
        Fitting options as one object.
    start_params : dict or tuple, optional
        A starting point (see :func:`fit_design`).
    **kwargs
        Fitting options by name, overriding ``options``: ``method`` (``"als"``,
        the default, matrix-free with O(N K k) memory; ``"em"``, the dense EM
        reference), ``tol``, ``ptol``, ``maxiter``, ``d_floor``, ``accelerate``,
        ``disp``, ``callback``, ``n_starts``, ``seed``; see
        :class:`~lowrank_sur.options.FitOptions`.

    Returns
    -------
    FitRecord
        ``coefs``, ``cov``, ``F``, ``D``, ``llf``, ``llf_history``, ``iterations``,
        ``converged``, ``heywood`` and diagnostics.

    Examples
    --------
    >>> from lowrank_sur import fit_arrays, simulate_sur
    >>> sim = simulate_sur(nobs=200, k_eqs=20, n_exog=3, rank=2, seed=0)
    >>> rec = fit_arrays(sim.Xs, sim.Y, rank=2)
    >>> rec.converged
    True
    """
    opts = FitOptions.from_kwargs(options, **kwargs)
    names = list(eq_names) if eq_names is not None else None
    Y = _check_response(Y, Xs, names)
    design = SURDesign(Xs, eq_names=names)
    if Y.shape[0] != design.nobs:
        raise ValueError(f"Y has {Y.shape[0]} rows but the regressors have {design.nobs}")
    return fit_design(design, Y, rank, opts, start_params=start_params)
