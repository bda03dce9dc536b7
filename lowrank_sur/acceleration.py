"""SQUAREM acceleration of a monotone fixed-point map (Varadhan and Roland, 2008).

The map ``step(x) -> (T(x), llf(x))`` must not decrease the objective. Every
extrapolated point is checked against the objective and replaced by the plain
two-step result when it is worse (beyond the objective's rounding, :data:`LLF_RTOL`),
so the accelerated sequence stays monotone up to rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["squarem", "FixedPointResult", "LLF_RTOL"]

#: Relative rounding level of a log-likelihood (a sum of N K terms): an extrapolated
#: point whose objective is below the plain one by less than this is not rejected.
#: Near convergence both values agree to rounding, and a strict comparison would let
#: the rounding of the last digits decide whether the extrapolation is kept.
LLF_RTOL = 64 * float(np.finfo(float).eps)

StepFn = Callable[[np.ndarray], tuple[np.ndarray, float]]


@dataclass
class FixedPointResult:
    """Outcome of :func:`squarem`.

    Attributes
    ----------
    x : ndarray
        The last iterate.
    llf : float
        The objective at ``x``.
    iterations : int
        Cycles (each two or three evaluations of the map when accelerated).
    evaluations : int
        Evaluations of the map.
    converged : bool
        Whether ``check`` accepted ``x``.
    llf_history : list of float
        The objective at the start and after each cycle.
    """

    x: np.ndarray
    llf: float
    iterations: int
    evaluations: int
    converged: bool
    llf_history: list[float] = field(default_factory=list)


def squarem(
    step: StepFn,
    x0: np.ndarray,
    *,
    check: Callable[[np.ndarray, np.ndarray, float, float], bool],
    project: Callable[[np.ndarray], np.ndarray] | None = None,
    maxiter: int = 1000,
    accelerate: bool = True,
    step_max0: float = 1.0,
    mstep: float = 4.0,
    scale: np.ndarray | None = None,
) -> FixedPointResult:
    """Iterate a monotone map to its fixed point, with SQUAREM extrapolation.

    Parameters
    ----------
    step : callable
        ``step(x)`` returns ``(T(x), llf(x))``: the next iterate and the objective
        at the *input* (which the map computes anyway).
    x0 : ndarray
        Starting point (1-D).
    check : callable
        ``check(x, Tx, llf_prev, llf_x)`` returns True when ``x`` is converged;
        ``Tx`` is one plain map of ``x``, so ``Tx - x`` is the fixed-point residual.
    project : callable, optional
        Maps an extrapolated point back into the feasible set.
    maxiter : int
        Maximum number of cycles (each costs two or three maps).
    accelerate : bool
        If False, plain iteration of ``step`` (one map per cycle).
    step_max0, mstep : float
        Initial largest step length and its growth factor (the SqS3 defaults).
    scale : ndarray, optional
        Typical magnitude of each coordinate (positive, same shape as ``x0``). The
        step length is computed from ``(T(x) - x) / scale``, so that it does not
        depend on the units of the coordinates: with a scale that follows the
        units (for example ``sigma_j`` for loadings and ``sigma_j^2`` for
        variances), rescaling the data rescales the whole sequence exactly.
        Default: all ones.

    Returns
    -------
    FixedPointResult
    """
    project = project or (lambda z: z)
    x = np.asarray(x0, dtype=float)
    inv_scale = None if scale is None else 1.0 / np.asarray(scale, dtype=float)
    x1, ll = step(x)
    evaluations = 1
    history = [ll]
    step_max = step_max0
    for cycle in range(1, maxiter + 1):
        if not accelerate:
            x_new = x1
            x1, ll_new = step(x_new)
            evaluations += 1
        else:
            x2, ll1 = step(x1)
            evaluations += 1
            r = x1 - x
            v = x2 - x1 - r
            if inv_scale is None:
                sr2, sv2 = float(r @ r), float(v @ v)
            else:
                rs, vs = r * inv_scale, v * inv_scale
                sr2, sv2 = float(rs @ rs), float(vs @ vs)
            alpha = np.sqrt(sr2 / sv2) if sv2 > 0 else 1.0
            alpha = float(min(max(alpha, 1.0), step_max))
            accepted = False
            if alpha > 1.0:
                xe = project(x + 2.0 * alpha * r + alpha * alpha * v)
                x3, lle = step(xe)
                evaluations += 1
                if np.isfinite(lle) and lle >= ll1 - LLF_RTOL * abs(ll1):
                    x_new, x1, ll_new = xe, x3, lle
                    accepted = True
                elif alpha == step_max:
                    step_max = max(step_max0, step_max / mstep)
            if not accepted:
                x_new = x2
                x1, ll_new = step(x_new)
                evaluations += 1
            if alpha == step_max:
                step_max *= mstep
        done = check(x_new, x1, ll, ll_new)
        x, ll = x_new, ll_new
        history.append(ll)
        if done:
            return FixedPointResult(x, ll, cycle, evaluations, True, history)
    return FixedPointResult(x, ll, maxiter, evaluations, False, history)
