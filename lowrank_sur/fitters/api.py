"""Entry points of the fitters: :func:`fit_design` (a prepared design) and :func:`fit_arrays`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..design import SURDesign
from ..options import FitOptions, check_rank
from ..selection import warn_if_unidentified
from .record import FitRecord
from .registry import get_fitter

__all__ = ["fit_design", "fit_arrays"]


def fit_design(
    design: SURDesign,
    Y: np.ndarray,
    rank: int,
    options: FitOptions | None = None,
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
    **kwargs
        Fields of :class:`~lowrank_sur.options.FitOptions`.

    Returns
    -------
    FitRecord
    """
    opts = FitOptions.from_kwargs(options, **kwargs)
    rank = check_rank(rank, design.k_eqs, design.nobs)
    warn_if_unidentified(design.k_eqs, rank)
    return get_fitter(opts.method).fit(design, Y, rank, opts)


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
    **kwargs
        Fitting options by name, overriding ``options``: ``method`` (``"als"``,
        the default, matrix-free with O(N K k) memory; ``"em"``, the dense EM
        reference), ``tol``, ``ptol``, ``maxiter``, ``d_floor``, ``accelerate``,
        ``disp``, ``callback``; see :class:`~lowrank_sur.options.FitOptions`.

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
    return fit_design(design, Y, rank, opts)
