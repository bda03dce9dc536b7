"""Incomplete responses under ``Sigma = F F' + diag(D)``: the per-row observed covariance.

Row t observes the equations ``o_t`` (a boolean N x K mask ``observed``); every
N x K array here holds zeros in the unobserved cells. With ``f_j`` the rows of F:

    M_t = I_k + sum_{j in o_t} f_j f_j' / d_j        (k x k; all rows at once: O(N K k^2))
    g_t = sum_{j in o_t} f_j r_tj / d_j
    log|Sigma_oo| = sum_{j in o_t} log d_j + log|M_t|
    r_o' Sigma_oo^{-1} r_o = sum_{j in o_t} r_tj^2 / d_j - g_t' M_t^{-1} g_t

so the incomplete-data log-likelihood, the solves ``Sigma_oo^{-1} v_o`` of every row
(the GLS beta step, :class:`MissingGLSOperator`) and the E-step over the factors
(:func:`factor_em_step`) cost O(N K k + N k^3) and never form a K x K array.

References
----------
Little, R. J. A. and Rubin, D. B. (2002). *Statistical Analysis with Missing Data*,
2nd ed. Wiley, ch. 11.

Rubin, D. B. and Thayer, D. T. (1982). EM algorithms for ML factor analysis.
Psychometrika 47, 69-76.

Liu, C., Rubin, D. B. and Wu, Y. N. (1998). Parameter expansion to accelerate EM: the
PX-EM algorithm. Biometrika 85, 755-770.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator

from .covariance import LOG_2PI
from .design import SURDesign
from .gls import pcg_solve

__all__ = ["ObservedCovariance", "MissingGLSOperator", "factor_em_step", "factor_llf_grad",
           "observed_llf", "observed_mask_t"]


class ObservedCovariance:
    """The observed blocks ``Sigma_{o_t o_t}`` of every row, through the per-row Woodbury form.

    Parameters
    ----------
    F : ndarray, shape (K, k)
        Loadings.
    D : ndarray, shape (K,)
        Idiosyncratic variances (positive).
    observed : ndarray of bool, shape (N, K)
        Which cells are observed.
    observed_t : ndarray of float, shape (K, N), optional
        The same mask transposed, as a C-contiguous float array (:func:`observed_t`);
        fitters that build many of these objects pass it once (default: built here).

    Notes
    -----
    The products run in the K x N layout of the design (:meth:`solve_t`,
    :meth:`inv_diag_t`; ``SURDesign.fitted_t`` / ``rmul_t``), where every array is
    C-contiguous: the N x K views of K x N arrays make the elementwise passes several
    times slower.
    """

    def __init__(self, F: np.ndarray, D: np.ndarray, observed: np.ndarray,
                 observed_t: np.ndarray | None = None) -> None:
        self.F = np.asarray(F, dtype=float)
        self.D = np.asarray(D, dtype=float)
        self.observed = observed
        self.O = observed  # boolean: products with it need no float copy
        self.OT = observed_mask_t(observed) if observed_t is None else observed_t
        N, K = observed.shape
        k = self.F.shape[1]
        self.rank = k
        self.Fd = self.F / self.D[:, None]  # D^{-1} F
        self.n_obs_row = observed.sum(axis=1)
        self._logd = np.log(self.D) @ self.OT  # sum over o_t of log d_j
        if k:
            FF = (self.Fd[:, :, None] * self.F[:, None, :]).reshape(K, k * k)
            M = np.ascontiguousarray((FF.T @ self.OT).T).reshape(N, k, k)
            M[:, np.arange(k), np.arange(k)] += 1.0
            self.M = M
            self.L = np.linalg.cholesky(M)  # (N, k, k), lower
            Linv = np.linalg.inv(self.L)
            self.Minv = np.matmul(Linv.transpose(0, 2, 1), Linv)  # (N, k, k)
            self.Linv = Linv
            self._logM = 2.0 * np.log(np.diagonal(self.L, axis1=1, axis2=2)).sum(axis=1)
        else:
            self._logM = np.zeros(N)

    # ----------------------------------------------------------- per row
    def _solve_m(self, G: np.ndarray) -> np.ndarray:
        """``M_t^{-1} g_t`` for every row of an N x k ``G`` (backward-stable batched solves)."""
        return np.linalg.solve(self.M, G[:, :, None])[:, :, 0]

    def posterior_mean(self, R: np.ndarray) -> np.ndarray:
        """``m_t = M_t^{-1} g_t`` (N x k): the factors' posterior means given ``r_o``."""
        return self._solve_m(R @ self.Fd)

    def quad_form_obs(self, R: np.ndarray, m: np.ndarray | None = None) -> np.ndarray:
        """``r_o' Sigma_oo^{-1} r_o`` per row (``R`` zero in the unobserved cells).

        As ``||D_o^{-1/2} (r_o - F_o m_t)||^2 + ||m_t||^2``: non-negative terms, with the
        error in ``m_t`` at second order (``sum r^2 / d - g' M^{-1} g`` loses digits to
        cancellation when some ``d_j`` is small; cf.
        :meth:`lowrank_sur.covariance.LowRankCovariance.loglike_accurate`). ``m``: the
        posterior means of ``R`` if already computed.
        """
        dinv = 1.0 / self.D
        if not self.rank:
            return np.einsum("tj,tj,j->t", R, R, dinv)
        m = self.posterior_mean(R) if m is None else m
        E = m @ self.F.T
        np.subtract(R, E, out=E)
        E *= self.O
        E *= E
        return E @ dinv + np.einsum("ta,ta->t", m, m)

    def loglike_obs(self, R: np.ndarray, m: np.ndarray | None = None) -> np.ndarray:
        """Each row's Gaussian log-likelihood of its observed residuals."""
        return -0.5 * (self.n_obs_row * LOG_2PI + self._logd + self._logM
                       + self.quad_form_obs(R, m))

    def loglike(self, R: np.ndarray, m: np.ndarray | None = None) -> float:
        """The incomplete-data log-likelihood ``sum_t log N(r_o; 0, Sigma_oo)``.

        ``m``: the posterior means :meth:`posterior_mean` of ``R``, if already computed.
        """
        return float(np.sum(self.loglike_obs(R, m)))

    def solve(self, V: np.ndarray) -> np.ndarray:
        """Rows ``Sigma_oo^{-1} v_o`` (N x K, zero in the unobserved cells) of an N x K ``V``.

        ``V`` must be zero in the unobserved cells.
        """
        S = V / self.D
        if self.rank:
            h = self._solve_m(V @ self.Fd)
            S -= h @ self.Fd.T
        S *= self.O
        return S

    def solve_t(self, VT: np.ndarray) -> np.ndarray:
        """:meth:`solve` in the K x N layout: ``VT`` and the result are K x N (C order)."""
        # D_o^{-1} (v_o - F_o h_t), h_t = M_t^{-1} F' D^{-1} v_t: three passes over K x N
        if not self.rank:
            return VT * self.OT_dinv
        h = self._solve_m((self.Fd.T @ VT).T)  # N x k
        S = self.F @ h.T
        np.subtract(VT, S, out=S)
        S *= self.OT_dinv
        return S

    @property
    def OT_dinv(self) -> np.ndarray:
        """The K x N mask times ``1 / d_j`` (built on first use, kept)."""
        if getattr(self, "_OT_dinv", None) is None:
            self._OT_dinv = self.OT * (1.0 / self.D)[:, None]
        return self._OT_dinv

    def inv_diag_t(self) -> np.ndarray:
        """:meth:`inv_diag` in the K x N layout (C order)."""
        out = np.repeat((1.0 / self.D)[:, None], self.O.shape[0], axis=1)
        if self.rank:
            k = self.rank
            FdFd = (self.Fd[:, :, None] * self.Fd[:, None, :]).reshape(-1, k * k)
            out -= FdFd @ self.Minv.reshape(-1, k * k).T
        out *= self.OT
        return out

    def inv_diag(self) -> np.ndarray:
        """``(Sigma_oo^{-1})_jj`` per observed cell (N x K, zero elsewhere)."""
        out = np.broadcast_to(1.0 / self.D, self.O.shape).copy()
        if self.rank:
            k = self.rank
            FdFd = (self.Fd[:, :, None] * self.Fd[:, None, :]).reshape(-1, k * k)
            out -= self.Minv.reshape(-1, k * k) @ FdFd.T
        return out * self.O

    def row_weights(self) -> np.ndarray:
        """``W_t = D^{-1} F L_t^{-T}`` per row, as a K x k x N array.

        ``Sigma_oo^{-1} = D_o^{-1} - W_{t,o} W_{t,o}'``: the per-row counterpart of
        :attr:`lowrank_sur.covariance.LowRankCovariance.W`.
        """
        return np.einsum("ja,tra->jrt", self.Fd, self.Linv, optimize=True)


def observed_mask_t(observed: np.ndarray) -> np.ndarray:
    """The K x N float mask (C order) of an N x K boolean ``observed``."""
    return np.ascontiguousarray(observed.T, dtype=float)


def observed_llf(R: np.ndarray, F: np.ndarray, D: np.ndarray, observed: np.ndarray) -> float:
    """The incomplete-data log-likelihood of residuals ``R`` (any values in missing cells)."""
    return ObservedCovariance(F, D, observed).loglike(np.where(observed, R, 0.0))


def factor_em_step(R: np.ndarray, F: np.ndarray, D: np.ndarray, observed: np.ndarray,
                   floor: np.ndarray, cov: ObservedCovariance | None = None,
                   px: bool = True, observed_t: np.ndarray | None = None):
    """One EM step for ``(F, D)`` given residuals with unobserved cells (Little-Rubin).

    Parameters
    ----------
    R : ndarray, shape (N, K)
        Residuals, zero in the unobserved cells.
    F, D : ndarray
        The current loadings and idiosyncratic variances.
    observed : ndarray of bool, shape (N, K)
        Observed cells.
    floor : ndarray, shape (K,)
        Floor on the new D.
    cov : ObservedCovariance, optional
        The observed covariance at ``(F, D)`` if already built.
    px : bool
        Parameter-expanded EM (Liu, Rubin and Wu 1998): also estimate the factors'
        covariance ``C = S / N`` and map the loadings back, ``F <- F chol(C)``; the
        D-step is unchanged. Still monotone, and far fewer steps with strong factors.
    observed_t : ndarray, optional
        The transposed float mask (see :class:`ObservedCovariance`).

    Returns
    -------
    F_new, D_new : ndarray
        The M-step's loadings and variances.
    llf : float
        The incomplete-data log-likelihood at ``(F, D)``.

    Notes
    -----
    E-step: ``z_t | r_o ~ N(m_t, V_t)`` with ``V_t = M_t^{-1}``; an unobserved error
    ``e_tj`` has ``E[e_tj z_t'] = f_j'(m_t m_t' + V_t)``. M-step over all N rows:
    ``f_j = (sum_t E[e_tj z_t']) (sum_t m_t m_t' + V_t)^{-1}`` and ``d_j`` the mean of
    ``E[(e_tj - f_j' z_t)^2]``.
    """
    cov = ObservedCovariance(F, D, observed, observed_t) if cov is None else cov
    m = cov.posterior_mean(R) if F.shape[1] else None
    llf = cov.loglike(R, m)
    N, K = R.shape
    ss = np.einsum("tj,tj->j", R, R)
    n_miss = N - cov.O.sum(axis=0)
    k = F.shape[1]
    if k == 0:
        D_new = (ss + n_miss * D) / N
        return F, np.maximum(D_new, floor), llf
    Ssum, Pmiss, Rm = _moments(R, F, cov, m)  # Pmiss: over each equation's missing rows
    G = Rm + np.einsum("jab,jb->ja", Pmiss, F)
    F_new = np.linalg.solve(Ssum, G.T).T
    Pobs = Ssum[None] - Pmiss
    quad_obs = np.einsum("ja,jab,jb->j", F_new, Pobs, F_new)
    delta = F - F_new
    quad_miss = np.einsum("ja,jab,jb->j", delta, Pmiss, delta)
    D_new = (ss - 2.0 * np.einsum("ja,ja->j", F_new, Rm) + quad_obs + quad_miss
             + n_miss * D) / N
    if px:  # PX-EM: the factors' covariance S / N, mapped back (Liu, Rubin and Wu 1998)
        F_new = F_new @ np.linalg.cholesky(Ssum / N)
    return F_new, np.maximum(D_new, floor), llf


def _moments(R: np.ndarray, F: np.ndarray, cov: ObservedCovariance,
             m: np.ndarray | None = None):
    """E-step sums: ``sum_t E[z z']``, per equation over its missing rows, ``R' m``."""
    N, K = R.shape
    k = F.shape[1]
    m = cov.posterior_mean(R) if m is None else m
    Pflat = (cov.Minv + m[:, :, None] * m[:, None, :]).reshape(N, k * k)
    Ssum = Pflat.sum(axis=0).reshape(k, k)
    Pmiss = (Pflat.sum(axis=0)[None, :] - cov.OT @ Pflat).reshape(K, k, k)
    return Ssum, Pmiss, R.T @ m


def factor_llf_grad(R: np.ndarray, F: np.ndarray, D: np.ndarray, observed: np.ndarray,
                    observed_t: np.ndarray | None = None):
    """The incomplete-data llf in ``(F, D)`` given residuals, and its gradient.

    By Fisher's identity the gradient is that of the EM surrogate at the current point:
    ``d llf / d f_j = (G_j - S f_j) / d_j`` and
    ``d llf / d d_j = N (dhat_j - d_j) / (2 d_j^2)``, with ``S = sum_t E[z_t z_t']``,
    ``G_j = sum_t E[e_tj z_t]`` and ``dhat_j`` the mean of ``E[(e_tj - f_j' z_t)^2]``.

    ``observed_t``: the transposed float mask (see :class:`ObservedCovariance`).

    Returns
    -------
    llf : float
    gF : ndarray, shape (K, k)
    gD : ndarray, shape (K,)
    """
    cov = ObservedCovariance(F, D, observed, observed_t)
    m = cov.posterior_mean(R) if F.shape[1] else None
    llf = cov.loglike(R, m)
    N = R.shape[0]
    ss = np.einsum("tj,tj->j", R, R)
    n_miss = N - cov.O.sum(axis=0)
    if F.shape[1] == 0:
        return llf, F.copy(), N * ((ss + n_miss * D) / N - D) / (2.0 * D * D)
    Ssum, Pmiss, Rm = _moments(R, F, cov, m)
    G = Rm + np.einsum("jab,jb->ja", Pmiss, F)
    SF = F @ Ssum
    gF = (G - SF) / D[:, None]
    quad_obs = np.einsum("ja,ja->j", F, SF) - np.einsum("ja,jab,jb->j", F, Pmiss, F)
    dhat = (ss - 2.0 * np.einsum("ja,ja->j", F, Rm) + quad_obs + n_miss * D) / N
    return llf, gF, N * (dhat - D) / (2.0 * D * D)


#: Equations per block when the block-Jacobi preconditioner is built.
_BLOCK_EQS = 256


class MissingGLSOperator:
    """Normal equations of GLS with each row's observed covariance, matrix-free.

    ``A~ = sum_t Q_{t,o}' Sigma_oo^{-1} Q_{t,o}`` on the whitened design (whose ``Q_j``
    are zero in the rows where equation j is unobserved). ``A~ v`` costs
    O(N K (p + k) + N k^2); solves by preconditioned conjugate gradients with the exact
    block-Jacobi preconditioner ``[Q_j' diag((Sigma_oo^{-1})_jj) Q_j]_j``. No K x K or
    P x P array.

    Parameters
    ----------
    design : SURDesign
        The whitened design (zero rows in the unobserved cells).
    cov : ObservedCovariance
        The per-row observed covariance.
    """

    def __init__(self, design: SURDesign, cov: ObservedCovariance) -> None:
        self.design, self.cov = design, cov
        K, pm = design.k_eqs, design.pmax
        self.shape = (K * pm, K * pm)
        c = cov.inv_diag_t()  # (K, N)
        B = np.empty((K, pm, pm))
        for lo in range(0, K, _BLOCK_EQS):  # blocks of equations: a small temporary
            Q = design.Q[lo:lo + _BLOCK_EQS]
            np.matmul(Q * c[lo:lo + _BLOCK_EQS, None, :], Q.transpose(0, 2, 1),
                      out=B[lo:lo + _BLOCK_EQS])
        pad = 1.0 - design.real_mask  # identity on the padding
        B[:, np.arange(pm), np.arange(pm)] += pad
        self._pinv = np.linalg.inv(B)
        self._dinv = design.real_mask / cov.D[:, None]  # zero on the padding
        self.cg_iterations = 0

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """``A~ v`` for a flattened K x pmax coefficient vector.

        ``V / D - [Q_j' H' (D^{-1} F)_j]_j`` with ``h_t = M_t^{-1} F' D^{-1} (Q v)_t``:
        ``Q_j' D_o^{-1} Q_j = I / d_j`` (``Q_j`` is zero in the unobserved rows), so the
        observed mask drops out and two passes over the design with k-wide products
        (``fitted_mixed`` / ``rmul_mixed``, as in :class:`~lowrank_sur.gls.GLSOperator`)
        replace the K x N temporaries.
        """
        d, cov = self.design, self.cov
        V = v.reshape(d.k_eqs, d.pmax)
        out = V * self._dinv
        if cov.rank:
            H = cov._solve_m(d.fitted_mixed(V, cov.Fd).T)  # N x k
            out -= d.rmul_mixed(np.ascontiguousarray(H.T), cov.Fd)
        return out.ravel()

    def rhs(self, Y: np.ndarray) -> np.ndarray:
        """``c~ = sum_t Q_{t,o}' Sigma_oo^{-1} y_{t,o}`` (``Y`` zero in unobserved cells)."""
        return self.design.rmul_t(self.cov.solve_t(np.ascontiguousarray(Y.T))).ravel()

    def _precond(self, r: np.ndarray) -> np.ndarray:
        K, pm = self.design.k_eqs, self.design.pmax
        return np.einsum("kpq,kq->kp", self._pinv, np.reshape(r, (K, pm))).ravel()

    def solve(self, b: np.ndarray, x0: np.ndarray | None = None, rtol: float = 1e-10,
              maxiter=None, atol: float = 0.0) -> np.ndarray:
        """Solve ``A~ x = b`` by preconditioned conjugate gradients (see ``GLSOperator.solve``)."""
        op = LinearOperator(self.shape, matvec=self.matvec, dtype=float)
        M = LinearOperator(self.shape, matvec=self._precond, dtype=float)
        x, iterations = pcg_solve(op, b, M, x0, rtol, atol, maxiter,
                                  "the regressors are likely close to collinear on the "
                                  "observed rows")
        self.cg_iterations += iterations
        return x
