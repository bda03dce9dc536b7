"""The sweep loop shared by the factor fitters, with SQUAREM on the whole sweep map.

A sweep maps ``x = (A, F, D)`` to ``T(x)``: the beta step (a GLS solve given
Sigma, supplied by the fitter) and then the factor step
(:func:`~lowrank_sur.factor.fit_factor` on the new residuals). Block coordinate
ascent never lowers the log-likelihood, but where the coefficients and the
covariance are strongly coupled (few observations per equation) it converges
slowly. SQUAREM (Varadhan and Roland 2008) extrapolates along ``T(x) - x`` and
``T(T(x)) - 2 T(x) + x`` (loadings in the canonical rotation, every coordinate in
the units of its equation) and keeps the extrapolated point only when the sweep
from it reaches a higher log-likelihood than the two plain sweeps, so the
sequence stays monotone.

References
----------
Varadhan, R. and Roland, C. (2008). Simple and globally convergent methods for
accelerating the convergence of any EM algorithm. Scandinavian Journal of
Statistics 35, 335-353.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..bounded import check_bounded
from ..covariance import LowRankCovariance, canonical_loadings
from ..design import SURDesign
from ..factor import EM_CYCLES, fit_factor
from ..options import FitOptions
from .common import Progress, llf_close, param_change, report, whitened_constraints
from .polish import ACCURATE_LLF_RATIO, joint_polish

__all__ = ["run_sweeps", "EM_CYCLES_AFTER_PROFILE", "POLISH_AFTER"]

#: Factor step: EM cycles before L-BFGS when the previous sweep needed L-BFGS.
EM_CYCLES_AFTER_PROFILE = 2

#: Sweeps without convergence before the joint quasi-Newton step (:mod:`.polish`).
#: Well-conditioned fits converge before it (strong and weak simulated factors, K=1000
#: and 500: 7 and 12 sweeps; at 10 the weak one paid a 47-evaluation polish it did not
#: need); Munnell (K=48, N=17) ranks 1 and 2 then converge in 19 ALS sweeps (183 and 290
#: without the polish).
POLISH_AFTER = 15

#: Stop the sweeps when the joint polish ends on a degenerate point of a likelihood that
#: :func:`~lowrank_sur.bounded.check_bounded` finds unbounded (:func:`_polish`). Going on
#: only follows the likelihood up to the floor on D (N=4, K=5, p=3: 600 to 1100 polish
#: evaluations per start, 4 s of the default fit's 4.1 s); the floor experiment of
#: tests/test_trustworthy.py switches it off to run its fits to the floor.
STOP_AT_DEGENERATE = True

#: Sweeps between that step and the next while the fit has not converged.
POLISH_EVERY = 5

#: Largest convergence rate the stopping rule assumes (:meth:`_Sweeper.converged`).
RATE_MAX = 0.99

#: Growth (and shrinkage) factor of the largest SQUAREM step.
_MSTEP = 4.0

BetaStep = Callable[[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"], np.ndarray]


class _Sweeper:
    """One sweep ``(A, F, D) -> (A', F', D', llf')``, counting the work in ``st``."""

    def __init__(self, design: SURDesign, Y: np.ndarray, beta_step: BetaStep, st: Progress,
                 opts: FitOptions, name: str) -> None:
        self.design, self.Y, self.beta_step, self.st, self.opts = design, Y, beta_step, st, opts
        self.name = name
        self.em_cycles = EM_CYCLES
        self.YT = np.ascontiguousarray(Y.T)
        self._resid: dict = {}
        self._buffers: list[np.ndarray] = []  # K x N residual buffers, reused across sweeps
        if st.resid is not None:
            self._resid[id(st.A)] = (st.A, st.resid)
        # units of each coordinate: sigma_j for coefficients and loadings, sigma_j^2 for D_j
        self.s2 = st.floor / opts.d_floor
        self.sd = np.sqrt(self.s2)
        self.prev_change: float | None = None
        self._bounded: bool | None = None

    def __call__(self, A, F, D):
        st = self.st
        st.iterations += 1
        known = self._resid.get(id(A))
        R0 = known[1] if known is not None and known[0] is A else None
        A1 = self.beta_step(A, F, D, R0)
        # the residuals of the last few iterates, for the beta step that starts there
        self._resid = {k: v for k, v in list(self._resid.items())[-2:]}
        # residuals in the K x N layout of the design (an N x K view)
        R1 = self.design.residuals(self.YT, A1, out=self._free_buffer())
        ff = fit_factor(R1, F, D, st.floor, self.opts.factor_options(self.em_cycles))
        self._resid[id(A1)] = (A1, R1)
        st.evaluations += ff.evaluations
        # EM crawled in this sweep (near a Heywood boundary): next time go to L-BFGS sooner
        self.em_cycles = EM_CYCLES_AFTER_PROFILE if ff.profile_evaluations else EM_CYCLES
        return A1, canonical_loadings(ff.F, ff.D), ff.D, self._llf(ff, R1)

    def likelihood_bounded(self) -> bool:
        """:func:`~lowrank_sur.bounded.check_bounded` at this rank (computed once, O(N K))."""
        if self._bounded is None:
            self._bounded = check_bounded(self.design, self.Y, self.st.F.shape[1]).bounded
        return self._bounded

    def point_llf(self, A: np.ndarray, F: np.ndarray, D: np.ndarray) -> float:
        """The llf at ``(A, F, D)`` as the sweeps compute it (see :meth:`_llf`)."""
        R = self.Y - self.design.fitted(A)
        cov = LowRankCovariance(F, D, validate=False)
        if np.max(self.s2 / D) <= ACCURATE_LLF_RATIO:
            return cov.loglike(R)
        return cov.loglike_accurate(R)

    def _llf(self, ff, R1: np.ndarray) -> float:
        """The sweep's llf; without the Woodbury cancellation when a ``D_j`` is small.

        :meth:`~lowrank_sur.covariance.LowRankCovariance.loglike` has rounding errors of
        order ``1e-16 N max_j S_jj / D_j``: 1e-7 on the Stata ``common`` system with
        constraints at rank 1 (an equation on its floor), far above ``tol |llf|`` for a
        tight ``tol``, so that the stopping rule and SQUAREM's acceptance test read noise
        and the sweeps ran to ``maxiter``. One more O(N K k) pass removes it.
        """
        if np.max(self.s2 / ff.D) <= ACCURATE_LLF_RATIO:
            return ff.llf
        return LowRankCovariance(ff.F, ff.D, validate=False).loglike_accurate(R1)

    def _free_buffer(self) -> np.ndarray:
        """A K x N buffer that no kept residual matrix uses (fresh pages cost a pass)."""
        held = {id(R.base) for _, R in self._resid.values()}
        for buf in self._buffers:
            if id(buf) not in held:
                return buf
        self._buffers.append(np.empty_like(self.YT))
        return self._buffers[-1]

    def converged(self, x0, x1, llf0: float, llf1: float) -> bool:
        """The stopping rule on the distance to the fixed point, not on the last step.

        A linearly convergent map with rate ``rho`` is about ``step rho / (1 - rho)``
        from its fixed point after a step; the rule asks ``step / (1 - rho)`` (and the
        llf change times the same factor) to meet ``ptol`` (and ``tol``), with ``rho``
        the ratio of the last two parameter changes, capped at :data:`RATE_MAX`.
        """
        change = param_change(x0[0], x1[0], x0[1], x1[1], x0[2], x1[2])
        prev, self.prev_change = self.prev_change, change
        self.st.last_change = change
        rate = min(change / prev, RATE_MAX) if prev else 0.0
        factor = 1.0 / (1.0 - rate)
        return (llf_close(llf0, llf0 + factor * (llf1 - llf0), self.opts.tol)
                and factor * change <= self.opts.ptol)

    def accept(self, x, llf: float) -> None:
        st = self.st
        change = llf - st.history[-1]
        st.A, st.F, st.D = x
        st.history.append(llf)
        report(self.opts, self.name, st.iterations, llf, change)

    def extrapolate(self, x0, x1, x2, step_max: float):
        """The SQUAREM point from three iterates, or None when the step length is 1."""
        units = (self.sd[:, None], self.sd[:, None], self.s2)
        r = [(b - a) / u for a, b, u in zip(x0, x1, units)]
        v = [(c - 2.0 * b + a) / u for a, b, c, u in zip(x0, x1, x2, units)]
        sr2 = sum(float(np.sum(z * z)) for z in r)
        sv2 = sum(float(np.sum(z * z)) for z in v)
        alpha = min(max(np.sqrt(sr2 / sv2), 1.0), step_max) if sv2 > 0 else 1.0
        if alpha <= 1.0:
            return None, alpha
        xe = [a + u * (2.0 * alpha * ri + alpha * alpha * vi)
              for a, ri, vi, u in zip(x0, r, v, units)]
        xe[2] = np.maximum(xe[2], self.st.floor)
        return tuple(xe), alpha


def _cycle(sw: _Sweeper, step_max: float) -> tuple[bool, float]:
    """One SQUAREM cycle (two plain sweeps, then one from the extrapolated point).

    Returns whether the fit converged and the new largest step.
    """
    st, opts = sw.st, sw.opts
    x0, llf0 = (st.A, st.F, st.D), st.history[-1]
    *x1, llf1 = sw(*x0)
    sw.accept(tuple(x1), llf1)
    st.converged = sw.converged(x0, x1, llf0, llf1)
    if st.converged or not opts.accelerate or st.iterations >= opts.maxiter:
        return st.converged, step_max
    *x2, llf2 = sw(*x1)
    sw.accept(tuple(x2), llf2)
    st.converged = sw.converged(x1, x2, llf1, llf2)
    if st.converged:
        return True, step_max
    xe, alpha = sw.extrapolate(x0, x1, x2, step_max)
    if xe is not None and st.iterations < opts.maxiter:
        *x3, llf3 = sw(*xe)
        if np.isfinite(llf3) and llf3 >= llf2:
            sw.accept(tuple(x3), llf3)
            st.converged = sw.converged(xe, x3, llf2, llf3)
            if st.converged:
                return True, step_max
        else:  # rejected: the iterate stays at the second plain sweep's point
            sw.accept(tuple(x2), llf2)
            if alpha == step_max:
                step_max = max(1.0, step_max / _MSTEP)
    if alpha == step_max:
        step_max *= _MSTEP
    return False, step_max


def _polish(sw: _Sweeper) -> bool:
    """The sweeps crawl: one joint quasi-Newton step; the sweeps then confirm it.

    Returns whether its point is degenerate (the llf rises as ``D`` runs to the floor:
    not a maximum, and none is reached by going on; the sweeps then stop). Asked only
    where :func:`~lowrank_sur.bounded.check_bounded` finds the likelihood unbounded, so
    that a bounded likelihood's Heywood maximum is never cut short by a point on the
    way to it.
    """
    st = sw.st
    before, llf_before = (st.A, st.F, st.D), st.history[-1]
    heywood = bool(np.any(st.D <= st.floor * (1.0 + 1e-6)))
    ask = STOP_AT_DEGENERATE and heywood and not sw.likelihood_bounded()
    improved, degenerate = joint_polish(
        sw.design, sw.Y, st, constraints=whitened_constraints(sw.design, sw.opts),
        step_tol=0.1 * sw.opts.ptol, scale=sw.s2 if ask else None)
    if improved:
        # the polish compares Woodbury llfs; the history holds the sweeps' llf (without
        # the cancellation near the floor, :meth:`_Sweeper._llf`): a gain below its
        # rounding is undone, so that the history never decreases
        st.F = canonical_loadings(st.F, st.D)
        llf = sw.point_llf(st.A, st.F, st.D)
        if llf >= llf_before:
            st.history[-1] = llf
        else:
            (st.A, st.F, st.D), st.history[-1] = before, llf_before
    else:
        st.history[-1] = llf_before
    report(sw.opts, "joint L-BFGS-B", st.iterations, st.history[-1],
           st.history[-1] - st.history[-2])
    return degenerate


def run_sweeps(design: SURDesign, Y: np.ndarray, beta_step: BetaStep, st: Progress,
               opts: FitOptions, name: str) -> Progress:
    """Sweep until converged (or ``maxiter`` sweeps), SQUAREM-accelerated if ``accelerate``.

    Parameters
    ----------
    design, Y
        The problem.
    beta_step : callable
        ``beta_step(A, F, D, R)``: the new whitened coefficients given Sigma (``A`` is
        the warm start, ``R`` its residuals when known, else None).
    st : Progress
        The state; updated in place (``history`` gets the llf of the current iterate
        after every sweep, never decreasing; a rejected extrapolation leaves the
        iterate where it was) and returned. The sweeps stop unconverged, with
        ``stopped_degenerate``, when the joint polish (after :data:`POLISH_AFTER`
        sweeps without convergence) ends on a degenerate point.
    opts : FitOptions
        ``tol``, ``ptol``, ``maxiter`` (sweeps), ``accelerate``, ``disp``, ``callback``.
    name : str
        Label of the ``disp`` lines.
    """
    sw = _Sweeper(design, Y, beta_step, st, opts, name)
    step_max, wait, last = 1.0, POLISH_AFTER, st.iterations
    while st.iterations < opts.maxiter:
        if st.iterations - last >= wait:
            wait, last, step_max = POLISH_EVERY, st.iterations + 1, 1.0
            if _polish(sw):
                st.converged, st.stopped_degenerate = False, True
                break
            sw.prev_change = None
            continue
        done, step_max = _cycle(sw, step_max)
        if done:
            break
    return st
