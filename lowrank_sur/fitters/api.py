"""Entry points of the fitters: :func:`fit_design` (a prepared design) and :func:`fit_arrays`."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from ..bounded import check_bounded, check_bounded_observed, warn_unbounded
from ..design import SURDesign
from ..exceptions import PerformanceWarning, external_stacklevel
from ..options import FitOptions, check_rank
from ..selection import warn_if_unidentified
from .common import Start
from .fiml import fiml_method
from .multistart import fit_with_starts
from .record import FitRecord
from .registry import available_methods, get_fitter

__all__ = ["fit_design", "fit_arrays", "FULL_RANK"]


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
    rank : int or "full"
        Number of factors, or ``"full"`` for an unrestricted Sigma (``method="fgls"``).
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
    fitter = get_fitter(opts.method)
    if opts.constraints is not None and opts.constraints[0].shape[1] != design.k_params:
        raise ValueError(
            f"constraints: R has {opts.constraints[0].shape[1]} columns but the model has "
            f"{design.k_params} coefficients"
        )
    if getattr(design, "observed", None) is not None:
        return _fit_missing(design, Y, rank, opts, start_params)
    if isinstance(rank, str) and rank.lower() == FULL_RANK:
        return _fit_full(fitter, design, Y, opts, start_params)
    rank = check_rank(rank, design.k_eqs, design.nobs)
    warn_if_unidentified(design.k_eqs, rank)
    bounded = check_bounded(design, Y, rank)
    if not bounded.bounded:
        warn_unbounded(bounded, rank, design.eq_names)
    start = _user_start(design, rank, start_params)
    if fitter.dense:
        _warn_if_dense_is_large(design, opts.method)
    if fitter.starts:
        rec = fit_with_starts(fitter.fit, design, Y, rank, opts, start)
    else:
        rec = fitter.fit(design, Y, rank, opts, start)
    rec.likelihood_bounded = bounded.bounded
    rec.constraints = opts.constraints
    return rec


#: The ``rank`` of an unrestricted Sigma.
FULL_RANK = "full"


def _fit_missing(design: SURDesign, Y: np.ndarray, rank, opts: FitOptions,
                 start_params) -> FitRecord:
    """Unobserved response cells (``missing="fiml"``): the incomplete-data fitter of ``method``.

    The boundedness check uses each set's jointly observed rows
    (:func:`~lowrank_sur.bounded.check_bounded_observed`); the multi-start search of
    complete-data fits (:func:`~lowrank_sur.fitters.multistart.fit_with_starts`) runs
    unchanged, with the fitter's own degeneracy check (``is_degenerate``).
    """
    if isinstance(rank, str):
        raise NotImplementedError(
            f"rank={rank!r} is not available with missing responses (missing='fiml'); "
            "give an integer rank, or use missing='drop'"
        )
    if opts.constraints is not None:
        raise NotImplementedError(
            "constraints are not yet supported with missing responses (missing='fiml'); "
            "use missing='drop'"
        )
    rank = check_rank(rank, design.k_eqs, design.nobs)
    warn_if_unidentified(design.k_eqs, rank)
    bounded = check_bounded_observed(design, Y, rank, design.observed)
    if not bounded.bounded:
        warn_unbounded(bounded, rank, design.eq_names)
    fitter = get_fitter(fiml_method(opts.method))
    start = _user_start(design, rank, start_params)
    if fitter.starts:
        rec = fit_with_starts(fitter.fit, design, Y, rank, opts, start)
    else:
        rec = fitter.fit(design, Y, rank, opts, start)
    rec.label = fitter.label
    rec.likelihood_bounded = bounded.bounded
    return rec


def _fit_full(fitter, design: SURDesign, Y: np.ndarray, opts: FitOptions,
              start_params) -> FitRecord:
    """``rank="full"``: an unrestricted Sigma (K < N), by a fitter that supports it."""
    if not fitter.full:
        full = [n for n in available_methods() if get_fitter(n).full]
        raise ValueError(
            f"rank='full' (an unrestricted Sigma) is fitted by method={full[0]!r} "
            f"(two-step FGLS; iterate=True for maximum likelihood), not method="
            f"{opts.method!r}"
        )
    if design.k_eqs >= design.nobs:
        raise ValueError(
            f"rank='full' needs fewer equations than observations (K={design.k_eqs}, "
            f"N={design.nobs}): Sigma-hat is singular otherwise; use a low rank"
        )
    if start_params is not None:
        raise ValueError("start_params is not used with rank='full'")
    _warn_if_dense_is_large(design, opts.method)
    bounded = None
    if opts.iterate:  # iterated to the maximum likelihood: is there one?
        bounded = check_bounded(design, Y, design.k_eqs - 1)
        if not bounded.bounded:
            warn_unbounded(bounded, design.k_eqs - 1, design.eq_names, full=True)
    rec = fitter.fit(design, Y, design.k_eqs, opts, None)
    rec.constraints = opts.constraints
    if bounded is not None:
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


#: A dense fitter warns above this many equations, or this projected memory (bytes).
DENSE_WARN_K = 2000
DENSE_WARN_BYTES = 2e9


def _warn_if_dense_is_large(design: SURDesign, method: str) -> None:
    """Warn before a dense fitter builds K x K (and, unshared, P x P) arrays that are large."""
    K, P = design.k_eqs, 0 if design.shared else design.k_params
    # Sigma and its inverse (2 K^2) and the dense GLS normal matrix and its pieces (3 P^2),
    # as measured for the benchmarks (benchmarks/surbench/methods.py)
    need = 8.0 * (2.0 * K * K + 3.0 * P * P)
    if K <= DENSE_WARN_K and need <= DENSE_WARN_BYTES:
        return
    warnings.warn(
        f"method={method!r} is the dense reference: with K={K} equations"
        f"{f' and P={P} coefficients' if P else ''} it builds K x K"
        f"{' and P x P' if P else ''} arrays (about {need / 1e9:.1f} GB) and factors them "
        "every iteration, which can take minutes to hours; method='als' (the default) "
        "gives the same estimates with O(N K k) memory",
        PerformanceWarning,
        stacklevel=external_stacklevel(),
    )


def _check_response(Y, Xs, names) -> np.ndarray:
    if np.iscomplexobj(Y) or any(np.iscomplexobj(X) for X in Xs):
        raise ValueError(
            "Y or Xs holds complex numbers; the model needs real numbers: use the real part "
            "or the modulus explicitly (np.real, np.abs)"
        )
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
    rank : int or "full"
        Number of factors k, ``0 <= k < K`` and ``k < N``. ``0`` is a diagonal Sigma
        (OLS per equation); ``K - 1`` leaves Sigma unrestricted (iterated SUR).
        ``"full"`` (with ``method="fgls"``, K < N) fits an unrestricted Sigma by
        feasible GLS.
    eq_names : sequence of str, optional
        Equation labels for messages (one per equation).
    options : FitOptions, optional
        Fitting options as one object.
    start_params : dict or tuple, optional
        A starting point (see :func:`fit_design`).
    **kwargs
        Fitting options by name, overriding ``options``: ``method`` (``"als"``,
        the default, matrix-free with O(N K k) memory; ``"em"``, the dense EM
        reference; ``"fgls"``, feasible GLS), ``tol``, ``ptol``, ``maxiter``,
        ``d_floor``, ``accelerate``, ``disp``, ``callback``, ``n_starts``, ``seed``,
        ``use_t``, ``debiased``, ``iterate``, ``sigma_df``, ``constraints`` (a pair
        ``(R, q)``); see :class:`~lowrank_sur.options.FitOptions`.

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
    if isinstance(Xs, (Mapping, str, np.ndarray)) and not (
        isinstance(Xs, np.ndarray) and Xs.ndim == 3
    ):
        raise TypeError(
            "Xs must be a sequence of K regressor matrices (one per equation), got "
            f"{type(Xs).__name__}"
        )
    Xs = list(Xs)  # any iterable, e.g. a generator
    if isinstance(eq_names, str):
        raise TypeError(f"eq_names must be a sequence of K labels, not one string {eq_names!r}")
    names = [str(n) for n in eq_names] if eq_names is not None else None
    Y = _check_response(Y, Xs, names)
    design = SURDesign(Xs, eq_names=names)
    if Y.shape[0] != design.nobs:
        raise ValueError(f"Y has {Y.shape[0]} rows but the regressors have {design.nobs}")
    return fit_design(design, Y, rank, opts, start_params=start_params)
