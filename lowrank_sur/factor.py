"""The factor step: maximum-likelihood ``(F, D)`` given a residual matrix, in O(N K k).

Given residuals ``R`` (N x K), maximize the Gaussian log-likelihood of the rows of
``R`` over ``Sigma = F F' + diag(D)``. This is Gaussian factor analysis of ``R``
with a known (zero) mean. Nothing here forms a K x K array (no ``R'R``, no dense
Sigma); the work per step is a few products of ``R`` with K x k or N x k blocks,
and the Sigma algebra comes from :class:`~lowrank_sur.covariance.LowRankCovariance`.

:func:`fit_factor` reads as: start check, EM stage, profile stage, choose.

1. The EM algorithm of Rubin and Thayer (1982) written on ``R`` itself, optionally
   in its parameter-expanded form (PX-EM, Liu, Rubin and Wu 1998), accelerated by
   SQUAREM. On regular problems it converges in a few cycles.
2. When EM has not converged after ``em_cycles`` cycles (weakly identified
   problems, Heywood cases where some ``D_j`` heads to its floor: EM then converges
   sub-linearly and its steps are tiny far from the maximum), the profile likelihood
   in ``log D`` (:mod:`lowrank_sur.profile`): L-BFGS-B, then projected Newton-CG.

"Converged" is judged from the gradient, not from the size of a step (EM's steps
are tiny far from the maximum near a boundary): the projected gradient of
``llf / N`` in ``log D_j`` and in the standardized loadings ``F_j / sigma_j``
(``sigma_j^2 = ||R_j||^2 / N``) is small, and so are the estimated Newton step in
``log D`` and the estimated gain in ``llf / N`` (:meth:`FactorProblem.stationarity`;
after the Newton-CG steps, their exact values). All of it is dimensionless, and the
SQUAREM step length is computed in the same units, so the iterates are
scale-equivariant (``R -> c R`` gives ``F -> c F``, ``D -> c^2 D`` up to rounding).
Results are deterministic (no random starts; the subspace iteration starts from a
fixed basis).

References
----------
Rubin, D. B. and Thayer, D. T. (1982). EM algorithms for ML factor analysis.
Psychometrika 47, 69-76.

Liu, C., Rubin, D. B. and Wu, Y. N. (1998). Parameter expansion to accelerate EM:
the PX-EM algorithm. Biometrika 85, 755-770.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import linalg

from .acceleration import squarem
from .covariance import LowRankCovariance, gaussian_llf
from .profile import AT_FLOOR, curvature, profile_stage, stationarity_D
from .threads import single_threaded

__all__ = ["FactorProblem", "FactorFit", "FactorOptions", "fit_factor", "EM_CYCLES"]

#: SQUAREM cycles before the profile stage (weakly determined regular problems need 15-65).
EM_CYCLES = 40


@dataclass(frozen=True)
class FactorOptions:
    """Stopping rule and stages of :func:`fit_factor`.

    Attributes
    ----------
    tol : float
        Convergence asks for the estimated log-likelihood gain still available
        (:meth:`FactorProblem.stationarity`, per observation) to be at most
        ``tol * K``: a scale-free version of a relative tolerance on the llf
        (``|llf| / N`` is of order K).
    ptol : float
        ... and for the estimated Newton step in ``log D`` (the relative distance of
        D to the maximum) to be at most ``ptol``.
    gtol : float, optional
        ... and for the largest entry of the projected gradient of ``llf / N`` in
        ``log D_j`` and in ``F_j / sigma_j`` to be at most ``gtol`` (default
        ``ptol``). Checked after every EM cycle (the gradient is a by-product of the
        EM map); after the profile stage, the Newton-CG polish's exact step and
        decrement decide (the gain condition alone if rounding stops it first).
    maxiter : int
        Maximum number of SQUAREM cycles, and of L-BFGS-B iterations.
    px : bool
        Use parameter-expanded EM.
    accelerate : bool
        Use SQUAREM.
    polish : bool
        Allow the profile-likelihood stage. If False, only EM is run (up to
        ``maxiter`` cycles).
    em_cycles : int
        SQUAREM cycles before switching to the profile-likelihood stage.
    """

    tol: float = 1e-12
    ptol: float = 1e-7
    gtol: float | None = None
    maxiter: int = 2000
    px: bool = True
    accelerate: bool = True
    polish: bool = True
    em_cycles: int = EM_CYCLES

    @property
    def gradient_tol(self) -> float:
        """``gtol``, defaulting to ``ptol``."""
        return self.ptol if self.gtol is None else self.gtol

    def done(self, stat: tuple[float, float, float], K: int) -> bool:
        """The convergence rule on ``(gmax, gain, step)`` of :meth:`FactorProblem.stationarity`."""
        return stat[0] <= self.gradient_tol and stat[1] <= self.tol * K and stat[2] <= self.ptol


@dataclass
class FactorFit:
    """Result of :func:`fit_factor`.

    Attributes
    ----------
    F : ndarray, shape (K, k)
        Loadings.
    D : ndarray, shape (K,)
        Idiosyncratic variances.
    llf : float
        Log-likelihood of the residuals at ``(F, D)``.
    iterations : int
        SQUAREM cycles plus L-BFGS-B iterations.
    evaluations : int
        EM maps plus profile-likelihood evaluations.
    converged : bool
        Whether the convergence rule of :func:`fit_factor` holds at ``(F, D)``.
    profile_evaluations : int
        The profile-likelihood evaluations among them (each a top-k eigen-decomposition).
    grad : float
        Largest entry of the scale-free projected gradient at ``(F, D)``
        (see :meth:`FactorProblem.stationarity`).
    stage : str
        ``"start"`` (the start was already converged), ``"em"`` or ``"profile"``:
        which stage produced the returned point.
    """

    F: np.ndarray
    D: np.ndarray
    llf: float
    iterations: int
    evaluations: int
    converged: bool
    profile_evaluations: int = 0
    grad: float = float("nan")
    stage: str = "em"


@dataclass
class _EMPoint:
    """One evaluated EM map: the point, its image, its llf and what the gradient needs."""

    x: np.ndarray
    Tx: np.ndarray
    llf: float
    cov: LowRankCovariance | None = None
    Minv: np.ndarray | None = None
    RW: np.ndarray | None = None
    G: np.ndarray | None = None
    gradient: tuple | None = field(default=None, repr=False)


class FactorProblem:
    """Factor analysis of a fixed residual matrix.

    Parameters
    ----------
    R : ndarray, shape (N, K)
        Residuals.
    rank : int
        Number of factors k.
    floor : ndarray, shape (K,)
        Lower bounds for D.
    px : bool
        Use the parameter-expanded EM map.
    """

    def __init__(self, R: np.ndarray, rank: int, floor: np.ndarray, px: bool = True) -> None:
        self.R = R
        self.n, self.K = R.shape
        self.k = rank
        self.floor = floor
        self.px = px
        self.colss = np.einsum("ij,ij->j", R, R)
        #: per-equation mean square ``S_jj`` (the unit of D_j) and its square root
        self.s = np.maximum(self.colss / self.n, np.finfo(float).tiny)
        self.sd = np.sqrt(self.s)
        self._last: _EMPoint | None = None  # the last map evaluated

    # ---------------------------------------------------------------- packing
    def pack(self, F: np.ndarray, D: np.ndarray) -> np.ndarray:
        """Flatten ``(F, D)`` into one vector."""
        return np.concatenate([F.ravel(), D])

    def unpack(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`pack`."""
        Kk = self.K * self.k
        return x[:Kk].reshape(self.K, self.k), x[Kk:]

    def project(self, x: np.ndarray) -> np.ndarray:
        """Clip D at its floor."""
        x = x.copy()
        x[self.K * self.k :] = np.maximum(x[self.K * self.k :], self.floor)
        return x

    def scale(self) -> np.ndarray:
        """Units of the packed coordinates: ``sigma_j`` for row j of F, ``sigma_j^2`` for D_j."""
        return self.pack(np.repeat(self.sd[:, None], self.k, axis=1), self.s)

    # ------------------------------------------------------------------- map
    def em_step(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """One EM (or PX-EM) update; also returns the log-likelihood at ``x``.

        The result of the last call is kept, with what :meth:`gradient` needs at
        ``x`` (calling again with the same ``x`` costs nothing, and the gradient at
        ``x`` then costs O(K k^2 + N k^2)).
        """
        last = self._last
        if last is None or not np.array_equal(last.x, x):
            self._last = last = self._em(np.array(x, dtype=float))
        return last.Tx, last.llf

    def _em(self, x: np.ndarray) -> _EMPoint:
        F, D = self.unpack(x)
        n, k = self.n, self.k
        if k == 0:
            D_new = np.maximum(self.colss / n, self.floor)
            pt = _EMPoint(x, D_new, self._llf_diag(D))
            pt.gradient = (np.zeros((self.K, 0)), -0.5 * (1.0 - self.colss / (n * D)),
                           np.full(self.K, 0.5))
            return pt
        try:
            cov = LowRankCovariance(F, D, validate=False)
        except np.linalg.LinAlgError:
            return _EMPoint(x, x, -np.inf)
        RW = self.R @ cov.W  # N x k; (R W)'(R W) is the Woodbury part of the quadratic form
        quad = cov.quad_form_sum(self.R, col_ss=self.colss, RW=RW)
        llf = float(gaussian_llf(n, self.K, cov.logdet(), quad))
        Minv = cov.m_inv()
        Ez = RW @ cov.L_inv  # N x k posterior means R D^{-1} F M^{-1}
        G = self.R.T @ Ez  # K x k
        pt = _EMPoint(x, x, llf, cov, Minv, RW, G)
        Szz = n * Minv + Ez.T @ Ez
        try:
            Lz = np.linalg.cholesky(Szz)
        except np.linalg.LinAlgError:
            return pt
        F_new = linalg.cho_solve((Lz, True), G.T, check_finite=False).T
        D_new = (self.colss - np.einsum("ij,ij->i", F_new, G)) / n
        D_new = np.maximum(D_new, self.floor)
        if self.px:
            F_new = F_new @ (Lz / np.sqrt(n))
        pt.Tx = self.pack(F_new, D_new)
        return pt

    def _gradient_from_em(self, pt: _EMPoint):
        """Gradient at ``pt`` from the EM quantities, in O(K k^2 + N k^2).

        ``Sigma^{-1} = D^{-1} - W W'`` with ``W = D^{-1} F L^{-T}``,
        ``Sigma^{-1} F = D^{-1} F M^{-1}``, ``R' R Sigma^{-1} F = R' E[z] = G``,
        ``R' R W = G L`` and ``(R W)'(R W)``.
        """
        n, cov = self.n, pt.cov
        F, D, W, L, Minv, G = cov.F, cov.D, cov.W, cov.L, pt.Minv, pt.G
        Fd = F / D[:, None]
        gF = ((G / D[:, None] - W @ (W.T @ G)) * (1.0 / n) - Fd @ Minv) * self.sd[:, None]
        # D_j [Sigma^{-1}]_jj and D_j [Sigma^{-1} S Sigma^{-1}]_jj, all terms dimensionless
        rho = 1.0 - D * np.einsum("ij,ij->i", W, W)
        q = (
            self.colss / (n * D)
            - (2.0 / n) * np.einsum("ij,ij->i", G @ L, W)
            + D * np.einsum("ij,ij->i", W @ ((pt.RW.T @ pt.RW) * (1.0 / n)), W)
        )
        gD = -0.5 * (rho - q)
        # sqrt(D_j) [Sigma^{-1} F]_j and F' Sigma^{-1} F = I - M^{-1}, for the curvature
        b = (Fd @ Minv) * np.sqrt(D)[:, None]
        P = -Minv
        P[np.diag_indices(self.k)] += 1.0
        return gF, gD, (rho, b, P)

    def _llf_diag(self, D: np.ndarray) -> float:
        return float(gaussian_llf(self.n, self.K, np.sum(np.log(D)), np.sum(self.colss / D)))

    def loglike(self, F: np.ndarray, D: np.ndarray) -> float:
        """Log-likelihood of the residuals under ``F F' + diag(D)``."""
        return self.em_step(self.pack(F, D))[1]

    def covariance(self, F: np.ndarray, D: np.ndarray) -> LowRankCovariance | None:
        """``F F' + diag(D)`` as the EM map at ``(F, D)`` built it (None if not definite)."""
        self.em_step(self.pack(F, D))
        return self._last.cov

    def loglike_accurate(self, F: np.ndarray, D: np.ndarray) -> float:
        """Log-likelihood without cancellation; ``-inf`` if not positive definite.

        For comparisons of nearby points; see
        :meth:`lowrank_sur.covariance.LowRankCovariance.loglike_accurate`.
        """
        if self.k == 0:
            return self._llf_diag(D)
        try:
            cov = LowRankCovariance(F, D, validate=False)
        except np.linalg.LinAlgError:
            return -np.inf
        return cov.loglike_accurate(self.R)

    # -------------------------------------------------------------- gradient
    def gradient(self, F: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient of ``llf / N`` in standardized coordinates, in O(N K k).

        Parameters
        ----------
        F, D : ndarray
            Loadings (K x k) and idiosyncratic variances (K,).

        Returns
        -------
        gF : ndarray, shape (K, k)
            Derivative with respect to ``F_jr / sigma_j``:
            ``-sigma_j [Sigma^{-1} (Sigma - S) Sigma^{-1} F]_jr``.
        gD : ndarray, shape (K,)
            Derivative with respect to ``log D_j``:
            ``-(D_j / 2) [Sigma^{-1} - Sigma^{-1} S Sigma^{-1}]_jj``.

        Notes
        -----
        Computed with one EM map (see :meth:`em_step`), never with a K x K or an
        N x K temporary: ``[Sigma^{-1} S Sigma^{-1}]_jj`` is expanded through
        ``R' (R W)`` and ``(R W)'(R W)``. Both outputs are dimensionless
        (invariant to ``R -> c R``). Infinite if ``I + F' D^{-1} F`` is not
        numerically positive definite.
        """
        gF, gD, _ = self._gradient_parts(F, D)
        return gF, gD

    def _gradient_parts(self, F: np.ndarray, D: np.ndarray):
        """``(gF, gD, curvature)``; the curvature may be the tuple of its inputs."""
        self.em_step(self.pack(F, D))
        pt = self._last
        if pt.gradient is None:
            if pt.cov is None:
                return np.full_like(F, np.inf), np.full_like(D, np.inf), np.full_like(D, 0.5)
            pt.gradient = self._gradient_from_em(pt)
        return pt.gradient

    def stationarity(
        self, F: np.ndarray, D: np.ndarray, gtol: float = np.inf
    ) -> tuple[float, float, float]:
        """Scale-free distance to a maximum: largest gradient and estimated remaining gain.

        Returns
        -------
        gmax : float
            Largest entry of the projected gradient of ``llf / N``: the row norms
            ``||gF_j||`` (rotation invariant) and ``|gD_j|`` (zero when ``D_j`` sits at
            its floor and the gradient points below it), with ``gF, gD`` from
            :meth:`gradient`.
        gain : float
            Estimated increase of ``llf / N`` still available in D: the sum over
            equations of ``|gD_j|`` times a diagonal Newton step ``|gD_j| / h_j`` in
            ``log D_j``, capped by the distance ``log(D_j / floor_j)`` when it points
            to the floor. ``h_j`` is the Fisher information of ``log D_j`` per
            observation after profiling out equation j's own loadings ``f_j`` (a
            (k+1) x (k+1) Schur complement; close to the diagonal of the Hessian of
            the profile likelihood). Near a Heywood boundary the gradient in
            ``log D_j`` shrinks like ``D_j`` while the gain left stays about
            ``|gD_j|``; this term catches that case, in which a small gradient (or a
            small EM step) says nothing about the distance.
        step : float
            Largest of those Newton steps: the estimated distance to the maximum in
            ``log D``.

        Parameters
        ----------
        F, D : ndarray
            The point.
        gtol : float
            If ``gmax > gtol``, skip the curvature and return infinite ``gain`` and
            ``step``.
        """
        gF, gD, curv = self._gradient_parts(F, D)
        dist = np.log(np.maximum(D / self.floor, 1.0))
        gmax = float(np.max(np.abs(np.where((gD < 0) & (dist <= AT_FLOOR), 0.0, gD))))
        if self.k:
            gmax = max(gmax, float(np.max(np.sqrt(np.einsum("ij,ij->i", gF, gF)))))
        if not np.isfinite(gmax):
            return np.inf, np.inf, np.inf
        if gmax > gtol:
            return gmax, np.inf, np.inf
        if isinstance(curv, tuple):
            curv = curvature(*curv)
        return gmax, *stationarity_D(gD, curv, dist)[1:]


def _em_stage(prob: FactorProblem, F0: np.ndarray, D0: np.ndarray, opts: FactorOptions):
    """SQUAREM-accelerated (PX-)EM until the convergence rule holds or the budget ends."""
    Kk = prob.K * prob.k
    stol = opts.ptol
    state = {"stat": (np.inf, np.inf, np.inf)}

    def check(x: np.ndarray, Tx: np.ndarray, ll_prev: float, ll: float) -> bool:
        # The EM step is a lower bound on the distance to the fixed point (up to a
        # factor 1 + rate): a step much larger than ptol cannot be converged.
        D_, D1 = x[Kk:], Tx[Kk:]
        h0 = np.einsum("ij,ij->i", x[:Kk].reshape(-1, prob.k), x[:Kk].reshape(-1, prob.k))
        h1 = np.einsum("ij,ij->i", Tx[:Kk].reshape(-1, prob.k), Tx[:Kk].reshape(-1, prob.k))
        if np.max((np.abs(D1 - D_) + np.abs(h1 - h0)) / (D_ + h0)) > 10.0 * stol:
            return False
        # nearly free: em_step(x) was the last map evaluated
        state["stat"] = prob.stationarity(*prob.unpack(x), opts.gradient_tol)
        return opts.done(state["stat"], prob.K)

    res = squarem(
        prob.em_step,
        prob.pack(F0, D0),
        check=check,
        project=prob.project,
        maxiter=min(opts.maxiter, opts.em_cycles) if opts.polish else opts.maxiter,
        accelerate=opts.accelerate,
        scale=prob.scale(),
    )
    F, D = prob.unpack(res.x)
    return res, F.copy(), D.copy(), state["stat"][0]


@single_threaded
def fit_factor(
    R: np.ndarray,
    F0: np.ndarray,
    D0: np.ndarray,
    floor: np.ndarray,
    options: FactorOptions | None = None,
    **kwargs,
) -> FactorFit:
    """Maximize the log-likelihood of ``R`` over ``(F, D)`` from a starting point.

    Parameters
    ----------
    R : ndarray, shape (N, K)
        Residuals.
    F0, D0 : ndarray
        Starting loadings (K x k) and variances (K,).
    floor : ndarray, shape (K,)
        Lower bounds for D.
    options : FactorOptions, optional
        Stopping rule and stages (default ``FactorOptions()``).
    **kwargs
        Fields of :class:`FactorOptions` overriding ``options``.

    Returns
    -------
    FactorFit
        Never worse than the start: EM is monotone, and the profile point is only
        returned if its log-likelihood (computed by
        :meth:`FactorProblem.loglike_accurate`) is at least those of the start
        and of the EM point.

    Notes
    -----
    The start is returned as it is when it already meets the convergence rule
    (warm starts in later sweeps of the ALS fitter). Otherwise SQUAREM-accelerated
    (PX-)EM runs until the rule is met or for ``em_cycles`` cycles; in the latter
    case :func:`~lowrank_sur.profile.profile_stage` minimizes the profile
    ``-2 llf / N`` over ``theta_j = log(D_j / S_jj) >= log(floor_j / S_jj)`` from
    the EM point and stops as soon as the rule is met; projected Newton-CG steps
    follow. The better of the two points is returned. Everything is deterministic.
    """
    opts = replace(options or FactorOptions(), **kwargs)
    return solve_factor(FactorProblem(R, F0.shape[1], floor, px=opts.px), F0, D0, opts)


def solve_factor(prob: FactorProblem, F0: np.ndarray, D0: np.ndarray,
                 opts: FactorOptions) -> FactorFit:
    """:func:`fit_factor` on a built problem (its start check, EM, profile and choose stages).

    ``prob`` may be any :class:`FactorProblem` (the distributed one of
    :mod:`lowrank_sur.dask` runs it with ``opts.polish=False``: start check and EM only).
    """
    k = F0.shape[1]
    floor = prob.floor
    D0 = np.maximum(D0, floor)
    if k == 0:
        D = np.maximum(prob.colss / prob.n, floor)
        return FactorFit(F0, D, prob._llf_diag(D), 1, 1, True, 0, 0.0, "em")
    F0 = np.array(F0, dtype=float)

    # ---- start check (one EM map, reused by SQUAREM)
    stat = prob.stationarity(F0, D0, opts.gradient_tol)
    if opts.done(stat, prob.K):
        return FactorFit(F0, D0.copy(), prob.loglike(F0, D0), 0, 1, True, 0, stat[0], "start")
    # ---- EM stage
    res, F, D, gmax = _em_stage(prob, F0, D0, opts)
    if res.converged or not opts.polish:
        return FactorFit(F, D, res.llf, res.iterations, res.evaluations, res.converged, 0,
                         gmax, "em")
    # ---- profile stage
    prof = profile_stage(prob, F, D, lambda s: opts.done(s, prob.K), stol=opts.ptol,
                         gain_tol=opts.tol * prob.K, maxiter=opts.maxiter)
    # ---- choose: by the accurate llf (the usual one has rounding errors of order
    # 1e-16 N S_jj / D_j, ~1e-8 when some D_j is on its floor: more than what is at
    # stake here); never go below the start.
    acc = prob.loglike_accurate
    if acc(prof.F, prof.D) >= max(acc(F, D), acc(F0, D0)):
        F, D, llf, stage = prof.F, prof.D, prob.loglike(prof.F, prof.D), "profile"
    else:
        llf, stage = res.llf, "em"
    gmax, gain, step = prob.stationarity(F, D)
    gain_ok = gain <= opts.tol * prob.K
    converged = bool(
        (stage == "profile" and prof.converged)
        or (gain_ok and ((gmax <= opts.gradient_tol and step <= opts.ptol)
                         or not prof.budget_hit))
    )
    return FactorFit(F, D, llf, res.iterations + prof.iterations,
                     res.evaluations + prof.evaluations, converged, prof.evaluations, gmax,
                     stage)
