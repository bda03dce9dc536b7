"""Full-information ML with missing responses (``LowRankSUR(..., missing="fiml")``).

Row t contributes the Gaussian likelihood of its observed responses under
``Sigma_{o_t o_t}`` (missing at random); the algebra is :mod:`lowrank_sur.missing`.
The design (:class:`~lowrank_sur.design.SURDesign`) carries the N x K mask
``observed``; its regressors and the responses are zero in the unobserved cells, so
each ``Q_j`` has zero rows there and ``Q_j' y_j`` is equation j's OLS on its own rows.

Two fitters, both monotone maps iterated with SQUAREM (Varadhan and Roland 2008):

``fiml-als``
    Exact GLS beta step with each row's observed covariance (matrix-free conjugate
    gradients, :class:`~lowrank_sur.missing.MissingGLSOperator`), then the factor step
    ``(F, D)`` given the residuals solved to convergence by EM over the factors and the
    unobserved errors.
``fiml-em``
    The same GLS step followed by a single EM step for ``(F, D)`` (an ECME
    algorithm, Liu and Rubin 1994).

:func:`~lowrank_sur.fitters.api.fit_design` selects them for ``method="als"`` /
``"em"`` when the design has unobserved cells; with every cell observed the
complete-data fitters run unchanged. Like the complete-data fitters they run through
the multi-start search (:func:`~lowrank_sur.fitters.multistart.fit_with_starts`:
release, grown, random and floor-set starts), which judges degenerate points by
:func:`is_degenerate`, the incomplete-data likelihood's own check (carried as the
fitters' ``is_degenerate`` attribute).

References
----------
Liu, C. and Rubin, D. B. (1994). The ECME algorithm: a simple extension of EM and ECM
with faster monotone convergence. Biometrika 81, 633-648.

Little, R. J. A. and Rubin, D. B. (2002). *Statistical Analysis with Missing Data*,
2nd ed. Wiley.

Varadhan, R. and Roland, C. (2008). Simple and globally convergent methods for
accelerating the convergence of any EM algorithm. Scandinavian Journal of
Statistics 35, 335-353.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import Bounds, minimize

from ..acceleration import squarem
from ..bounded import DEGENERATE_SLOPE
from ..design import SURDesign
from ..missing import (
    MissingGLSOperator,
    ObservedCovariance,
    factor_em_step,
    factor_llf_grad,
    observed_mask_t,
)
from ..options import FitOptions
from .common import Progress, Start, finish, llf_close, ols_start, param_change, report
from .record import FitRecord
from .registry import register_fitter

__all__ = ["fit_fiml_als", "fit_fiml_em", "fiml_method", "FIML_METHODS", "is_degenerate"]

#: SQUAREM cycles of the factor EM before the quasi-Newton polish (:meth:`_Problem.polish`).
FACTOR_EM_CYCLES = 200

#: L-BFGS-B iterations of that polish.
POLISH_MAXITER = 500

#: ECME cycles of ``fiml-em`` before its sweeps solve the factor step to convergence.
EM_CYCLES = 100

#: The incomplete-data fitter behind each complete-data ``method``.
FIML_METHODS = {"als": "fiml-als", "em": "fiml-em"}


def fiml_method(method: str) -> str:
    """The registered incomplete-data fitter for ``method`` (raises for the others)."""
    if method in FIML_METHODS.values():
        return method
    if method not in FIML_METHODS:
        raise NotImplementedError(
            f"method={method!r} does not handle missing responses (missing='fiml'); use "
            "method='als' or method='em', or missing='drop'"
        )
    return FIML_METHODS[method]


def _observed(design: SURDesign) -> np.ndarray:
    obs = getattr(design, "observed", None)
    if obs is None:
        return np.ones((design.nobs, design.k_eqs), dtype=bool)
    return obs


def fiml_start(design: SURDesign, Y: np.ndarray, rank: int, opts: FitOptions,
               start: Start | None = None) -> Progress:
    """OLS on each equation's own rows, the floor on D from those rows, and F, D to start.

    :func:`~lowrank_sur.fitters.common.ols_start` on the zero-filled arrays, with the
    residual variances (and so the floor) divided by each equation's observed count
    instead of N.
    """
    st, _ = ols_start(design, Y, rank, opts, start)
    scale = design.nobs / _observed(design).sum(axis=0)
    st.floor = st.floor * scale
    st.D = np.maximum(st.D * (scale if start is None else 1.0), st.floor)
    if start is None:
        st.F = st.F * np.sqrt(scale)[:, None]
    st.resid = None
    return st


class _Problem:
    """The incomplete-data problem: llf, GLS step and factor step on ``x = (A, F, D)``."""

    def __init__(self, design: SURDesign, Y: np.ndarray, rank: int, st: Progress,
                 opts: FitOptions) -> None:
        self.design, self.Y, self.rank, self.opts, self.st = design, Y, rank, opts, st
        self.obs = _observed(design)
        self.obs_t = observed_mask_t(self.obs)  # built once for every ObservedCovariance
        self.n_obs = self.obs.sum(axis=0)
        self.floor = st.floor
        K, pm = design.k_eqs, design.pmax
        self.nA, self.nF = K * pm, K * rank
        s2 = st.floor / opts.d_floor
        sd = np.sqrt(s2)
        self.scale = np.concatenate([np.repeat(sd, pm), np.repeat(sd, rank), s2])

    def pack(self, A, F, D) -> np.ndarray:
        return np.concatenate([A.ravel(), F.ravel(), D])

    def unpack(self, x):
        K, nA, nF = self.design.k_eqs, self.nA, self.nF
        return (x[:nA].reshape(K, self.design.pmax), x[nA:nA + nF].reshape(K, self.rank),
                x[nA + nF:])

    def project(self, x: np.ndarray) -> np.ndarray:
        x = x.copy()
        x[self.nA + self.nF:] = np.maximum(x[self.nA + self.nF:], self.floor)
        return x

    def resid(self, A: np.ndarray) -> np.ndarray:
        """N x K residuals in C order (zero in the unobserved cells, as Y is)."""
        return self.Y - self.design.fitted(A)

    def covariance(self, F: np.ndarray, D: np.ndarray) -> ObservedCovariance:
        return ObservedCovariance(F, D, self.obs, self.obs_t)

    def gls(self, A: np.ndarray, cov: ObservedCovariance) -> np.ndarray:
        """Exact GLS given the per-row observed covariance, warm-started at ``A``."""
        op = MissingGLSOperator(self.design, cov)
        c = op.rhs(self.Y)
        r0 = c - op.matvec(A.ravel())
        delta = op.solve(r0, rtol=0.0, atol=self.opts.cg_rtol * float(np.linalg.norm(c)))
        self.st.cg_iterations += op.cg_iterations
        return A + delta.reshape(A.shape)

    def closed_form_d(self, R: np.ndarray) -> np.ndarray:
        """Rank 0: ``d_j`` = equation j's residual sum of squares over its observed rows."""
        return np.maximum(np.einsum("tj,tj->j", R, R) / self.n_obs, self.floor)

    def factor_step(self, R: np.ndarray, F: np.ndarray, D: np.ndarray, cycles: int):
        """``(F, D)`` given residuals: EM steps (SQUAREM), to convergence or ``cycles``."""
        if self.rank == 0:
            return F, self.closed_form_d(R)
        K, k = R.shape[1], self.rank
        opts = self.opts

        def step(x):
            F0, D0 = x[:K * k].reshape(K, k), x[K * k:]
            F1, D1, ll = factor_em_step(R, F0, D0, self.obs, self.floor,
                                        observed_t=self.obs_t)
            self.st.evaluations += 1
            return np.concatenate([F1.ravel(), D1]), ll

        def check(x, Tx, ll_prev, ll):
            if not llf_close(ll_prev, ll, opts.tol * 1e-2):
                return False
            F0, D0, F1, D1 = x[:K * k], x[K * k:], Tx[:K * k], Tx[K * k:]
            return param_change(np.zeros((0, 1)), np.zeros((0, 1)), F0.reshape(K, k),
                                F1.reshape(K, k), D0, D1) <= opts.ptol * 0.1

        def project(x):
            x = x.copy()
            x[K * k:] = np.maximum(x[K * k:], self.floor)
            return x

        res = squarem(step, np.concatenate([F.ravel(), D]), check=check, project=project,
                      maxiter=min(cycles, FACTOR_EM_CYCLES), accelerate=opts.accelerate,
                      scale=self.scale[self.nA:])
        F1, D1 = res.x[:K * k].reshape(K, k).copy(), res.x[K * k:].copy()
        if res.converged and self.stationary(R, F1, D1):
            return F1, D1
        return self.polish(R, F1, D1, res.llf)

    def stationary(self, R: np.ndarray, F: np.ndarray, D: np.ndarray) -> bool:
        """Whether ``(F, D)`` is a maximum of the factor step: the polish has nothing to do.

        The rule of the complete-data factor step
        (:meth:`~lowrank_sur.options.FitOptions.factor_options`): the largest entry of
        the projected gradient of ``llf / N`` in standardized coordinates (``F_jr / s_j``
        and ``log D_j``) at most ``ptol / 10``. One gradient costs about an EM step; an
        L-BFGS-B call on ``K (k + 1)`` variables costs several.
        """
        try:
            _, gF, gD = factor_llf_grad(R, F, D, self.obs, self.obs_t)
        except np.linalg.LinAlgError:
            return False
        N = R.shape[0]
        sd = np.sqrt(self.floor / self.opts.d_floor)
        gd = gD * D / N
        gd[(D <= self.floor * (1.0 + 1e-12)) & (gd < 0)] = 0.0  # on the floor, pushing down
        gmax = max(float(np.max(np.abs(gF * sd[:, None]))) / N, float(np.max(np.abs(gd))))
        return gmax <= self.opts.ptol * 0.1

    def polish(self, R: np.ndarray, F: np.ndarray, D: np.ndarray, llf: float):
        """L-BFGS-B on ``(F / s_j, log(D / s_j^2))`` from the EM point; the better one.

        EM crawls where some ``d_j`` heads to its floor (a Heywood case) and its
        stopping rule then fires early; the quasi-Newton step (bounds: the floor) does not.
        """
        K, k = F.shape
        sd = np.sqrt(self.floor / self.opts.d_floor)
        s2 = self.floor / self.opts.d_floor
        norm = float(R.size)

        def fun(theta):
            Fc = theta[:K * k].reshape(K, k) * sd[:, None]
            Dc = s2 * np.exp(theta[K * k:])
            try:
                ll, gF, gD = factor_llf_grad(R, Fc, Dc, self.obs, self.obs_t)
            except np.linalg.LinAlgError:
                return np.inf, np.zeros_like(theta)
            self.st.evaluations += 1
            return -ll / norm, -np.concatenate([(gF * sd[:, None]).ravel(), gD * Dc]) / norm

        x0 = np.concatenate([(F / sd[:, None]).ravel(), np.log(D / s2)])
        # array bounds: a list of K (k + 1) pairs costs more to convert than the polish
        lb = np.concatenate([np.full(K * k, -np.inf), np.full(K, np.log(self.opts.d_floor))])
        bounds = Bounds(lb, np.full(lb.size, np.inf))
        out = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": POLISH_MAXITER, "ftol": 1e-15, "gtol": 1e-12})
        if np.isfinite(out.fun) and -out.fun * norm > llf:
            F = out.x[:K * k].reshape(K, k) * sd[:, None]
            D = np.maximum(s2 * np.exp(out.x[K * k:]), self.floor)
        return F, D

    def llf(self, x: np.ndarray) -> float:
        A, F, D = self.unpack(x)
        return self.covariance(F, D).loglike(self.resid(A))

    def sweep(self, x: np.ndarray, cycles: int | None):
        """One map: GLS, then the factor step (``cycles`` EM cycles; None: one EM step)."""
        A, F, D = self.unpack(x)
        try:
            cov = self.covariance(F, D)
        except np.linalg.LinAlgError:
            return x, -np.inf
        llf = cov.loglike(self.resid(A))
        A1 = self.gls(A, cov)
        R1 = self.resid(A1)
        if cycles is None and self.rank:
            F1, D1, _ = factor_em_step(R1, F, D, self.obs, self.floor, cov=cov)
            self.st.evaluations += 1
        else:
            F1, D1 = self.factor_step(R1, F, D, cycles or 1)
        return self.pack(A1, F1, D1), float(llf)


def _fit(design: SURDesign, Y: np.ndarray, rank: int, opts: FitOptions, start: Start | None,
         name: str, em_cycles: int) -> FitRecord:
    """Fit: ``em_cycles`` ECME cycles, then sweeps with the factor step solved to convergence.

    An ECME cycle is the GLS step and one EM step for ``(F, D)``; the sweeps run until
    the stopping rule holds (or ``maxiter`` cycles in all).
    """
    st = fiml_start(design, Y, rank, opts, start)
    prob = _Problem(design, Y, rank, st, opts)
    count = [0]

    def check(x, Tx, ll_prev, ll):
        count[0] += 1
        report(opts, name, count[0], ll, ll - ll_prev)
        if not llf_close(ll_prev, ll, opts.tol):
            return False
        (A, F, D), (A1, F1, D1) = prob.unpack(x), prob.unpack(Tx)
        st.last_change = param_change(A, A1, F, F1, D, D1)
        return st.last_change <= opts.ptol

    x, history, iterations = prob.pack(st.A, st.F, st.D), [], 0
    for cycles, maxiter in ((None, min(em_cycles, opts.maxiter)),
                            (max(opts.maxiter, 1), opts.maxiter - min(em_cycles, opts.maxiter))):
        if maxiter <= 0:
            continue
        res = squarem(lambda z, c=cycles: prob.sweep(z, c), x, check=check,
                      project=prob.project, maxiter=maxiter, accelerate=opts.accelerate,
                      scale=prob.scale)
        x = res.x
        history.extend(res.llf_history if not history else res.llf_history[1:])
        iterations += res.iterations
    st.A, st.F, st.D = (v.copy() for v in prob.unpack(res.x))
    st.history = [float(v) for v in history]
    st.iterations, st.converged = iterations, res.converged
    llf = prob.llf(res.x)
    st.history[-1] = max(st.history[-1], llf) if np.isfinite(llf) else st.history[-1]
    return finish(design, st, opts, llf=llf)


def is_degenerate(design: SURDesign, Y: np.ndarray, rec: FitRecord, opts: FitOptions) -> bool:
    """Whether a FIML fit sits where the incomplete-data llf keeps rising as some ``D_j`` fall.

    The incomplete-data analogue of :func:`lowrank_sur.bounded.is_degenerate`, used by
    :func:`~lowrank_sur.fitters.multistart.fit_with_starts` (the fitters carry it as
    their ``is_degenerate`` attribute): the derivative of the llf in ``log D_j`` per
    observed row of equation j, summed over the equations on the floor or with ``D_j``
    below a thousandth of their residual variance, below ``-DEGENERATE_SLOPE``. A
    proper maximum (Heywood or not) has a derivative there of the order of the floor;
    a degenerate point about -1/2 per equation.
    """
    F, D = rec.F, rec.D
    if F is None or F.shape[1] == 0:
        return False
    var = rec.d_floor / opts.d_floor
    small = D <= 1e-3 * var
    small[rec.heywood] = True
    if not np.any(small):
        return False
    obs = _observed(design)
    R = Y - design.fitted(rec.whitened_coefs)  # zero in the unobserved cells
    try:
        _, _, gD = factor_llf_grad(R, F, D, obs)
    except np.linalg.LinAlgError:
        return True
    slope = gD * D / np.maximum(obs.sum(axis=0), 1)
    return bool(np.sum(slope[small]) < -DEGENERATE_SLOPE)


@register_fitter("fiml-als", "ALS, missing responses by FIML (maximum likelihood)")
def fit_fiml_als(design: SURDesign, Y: np.ndarray, rank: int, opts: FitOptions,
                 start: Start | None = None) -> FitRecord:
    """GLS with the per-row observed covariance, then the factor step to convergence."""
    return _fit(design, Y, rank, opts, start, "FIML ALS sweep", em_cycles=0)


@register_fitter("fiml-em", "EM, missing responses by FIML (maximum likelihood)")
def fit_fiml_em(design: SURDesign, Y: np.ndarray, rank: int, opts: FitOptions,
                start: Start | None = None) -> FitRecord:
    """ECME: GLS with the per-row observed covariance, then one EM step for ``(F, D)``."""
    return _fit(design, Y, rank, opts, start, "FIML EM iteration", em_cycles=EM_CYCLES)


# the multi-start search (fitters/multistart.py) judges degenerate points by this check
fit_fiml_als.is_degenerate = is_degenerate  # type: ignore[attr-defined]
fit_fiml_em.is_degenerate = is_degenerate  # type: ignore[attr-defined]
