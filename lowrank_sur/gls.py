"""The beta step: generalized least squares for the stacked system given Sigma.

The normal equations are ``A b = c`` with ``A = X'(Sigma^{-1} kron I_N) X``. On the
whitened design (``X_j = Q_j R_j``) they read ``A~ a = c~`` with
``A~ = Q'(Sigma^{-1} kron I_N) Q``, whose diagonal blocks are ``(Sigma^{-1})_jj I``.

* :class:`GLSOperator` applies ``A~`` matrix-free in O(N K (p + k)) through the
  factored covariance and solves with preconditioned conjugate gradients
  (:func:`scipy.sparse.linalg.cg`); never a K x K or P x P array. With
  ``Sigma^{-1} = D^{-1} - W W'`` and ``Q_j'Q_j = I``,
  ``(A~ v)_j = v_j / d_j - Q_j' Z' w_j`` with ``Z = sum_l w_l (Q_l v_l)'`` (k x N):
  two passes over the stored design and no K x N temporary
  (:meth:`~lowrank_sur.design.SURDesign.fitted_mixed`,
  :meth:`~lowrank_sur.design.SURDesign.rmul_mixed`).
* :func:`gls_dense` forms ``Sigma^{-1}`` and ``A~`` densely (the textbook route, used
  by the EM reference fitter; O(K^2 + P^2) memory).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.sparse.linalg import LinearOperator, cg

from .covariance import Covariance, LowRankCovariance
from .design import SURDesign

__all__ = ["GLSOperator", "gls_dense", "dense_normal_matrix"]


class GLSOperator:
    """Matrix-free normal-equation operator ``A~`` for one covariance.

    Parameters
    ----------
    design : SURDesign
        The whitened design.
    cov : Covariance
        The error covariance (the low-rank one in the fitters).
    """

    def __init__(self, design: SURDesign, cov: Covariance) -> None:
        self.design = design
        self.cov = cov
        K, pm = design.k_eqs, design.pmax
        self.shape = (K * pm, K * pm)
        # Block-Jacobi preconditioner: blocks (Sigma^{-1})_jj I on the whitened scale.
        self._precond = np.repeat(1.0 / cov.inv_diag(), pm)
        self.cg_iterations = 0
        self._lowrank = isinstance(cov, LowRankCovariance)
        if self._lowrank:
            # the D^{-1} part, zero on the padding of equations with p_j < pmax
            self._dinv = design.real_mask / cov.D[:, None]

    def _apply_lowrank(self, V: np.ndarray, Z: np.ndarray) -> np.ndarray:
        """``V / D - [Q_j' Z' w_j]_j`` (K x pmax); ``Z`` is ``W'`` times the fitted values."""
        out = V * self._dinv
        if self.cov.rank:
            out -= self.design.rmul_mixed(Z, self.cov.W)
        return out

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """Return ``A~ v`` for a flattened K x pmax coefficient vector."""
        d = self.design
        V = v.reshape(d.k_eqs, d.pmax)
        if self._lowrank:
            Z = d.fitted_mixed(V, self.cov.W) if self.cov.rank else None
            return self._apply_lowrank(V, Z).ravel()
        return d.rmul_t(self.cov.solve_t(d.fitted_t(V))).ravel()

    def rhs(self, Y: np.ndarray, QtY: np.ndarray | None = None) -> np.ndarray:
        """Return ``c~ = Q'(Sigma^{-1} kron I) y`` for the N x K response ``Y``.

        ``QtY``, the rows ``Q_j' y_j`` (:meth:`~lowrank_sur.design.SURDesign.rmul` of
        ``Y``, the OLS coefficients), may be passed when the caller has them: the
        low-rank part then needs one pass over ``Y`` and one over the design.
        """
        if self._lowrank:
            QtY = self.design.rmul(Y) if QtY is None else QtY
            Z = (Y @ self.cov.W).T if self.cov.rank else None
            return self._apply_lowrank(QtY, Z).ravel()
        return self.design.rmul_t(self.cov.solve_t(np.ascontiguousarray(Y.T))).ravel()

    def as_linear_operator(self) -> LinearOperator:
        """The operator as a :class:`scipy.sparse.linalg.LinearOperator`."""
        return LinearOperator(self.shape, matvec=self.matvec, dtype=float)

    def preconditioner(self) -> LinearOperator:
        """Block-Jacobi preconditioner as a :class:`~scipy.sparse.linalg.LinearOperator`."""
        p = self._precond
        return LinearOperator(self.shape, matvec=lambda r: p * np.ravel(r), dtype=float)

    def residual_system(self, QtY: np.ndarray, A0: np.ndarray, Y: np.ndarray,
                        R: np.ndarray) -> tuple[np.ndarray, float]:
        """The residual ``c~ - A~ a0`` of the normal equations at ``a0``, and ``||c~||``.

        Parameters
        ----------
        QtY : ndarray, shape (K, pmax)
            Rows ``Q_j' y_j`` (the whitened OLS coefficients).
        A0 : ndarray, shape (K, pmax)
            The current whitened coefficients.
        Y, R : ndarray, shape (N, K)
            The responses and the residuals ``Y - fitted(A0)``.

        Notes
        -----
        ``c~ - A~ a0 = [Q_j' (R Sigma^{-1})_j] = (Q_j'y_j - a0_j) / d_j - Q_j' (R W) w_j``
        (``Q_j'Q_j = I``), so a warm-started solve needs one pass over ``Y``, one over
        ``R`` and one over the design instead of the right-hand side and a product with
        ``A~``; and the residual carries no cancellation between ``c~`` and ``A~ a0``.
        Only for a :class:`~lowrank_sur.covariance.LowRankCovariance`.
        """
        c = QtY * self._dinv
        r0 = (QtY - A0) * self._dinv
        if self.cov.rank:
            W = self.cov.W
            T = self.design.rmul_mixed(np.stack([(Y @ W).T, (R @ W).T]), W)
            c -= T[0]
            r0 -= T[1]
        return r0.ravel(), float(np.linalg.norm(c))

    def solve(
        self, b: np.ndarray, x0: np.ndarray | None = None, rtol: float = 1e-10, maxiter=None,
        atol: float = 0.0,
    ) -> np.ndarray:
        """Solve ``A~ x = b`` by preconditioned conjugate gradients.

        Parameters
        ----------
        b : ndarray
            Right-hand side, length K * pmax.
        x0 : ndarray, optional
            Warm start.
        rtol : float
            Relative residual tolerance (against ``||b||``).
        maxiter : int, optional
            Iteration cap (default ``10 * K * pmax``, effectively exact).
        atol : float
            Absolute residual tolerance; CG stops at ``max(rtol ||b||, atol)``.

        Returns
        -------
        ndarray
            The solution, length K * pmax.
        """
        x, iterations = pcg_solve(self.as_linear_operator(), b, self.preconditioner(), x0,
                                  rtol, atol, maxiter)
        self.cg_iterations += iterations
        return x


def pcg_solve(op: LinearOperator, b: np.ndarray, M: LinearOperator, x0: np.ndarray | None,
              rtol: float, atol: float, maxiter: int | None,
              hint: str = "the regressors are likely close to collinear",
              ) -> tuple[np.ndarray, int]:
    """Preconditioned conjugate gradients (scipy's ``cg``) with the package's stall check.

    Parameters
    ----------
    op, M : LinearOperator
        The symmetric positive definite operator and its preconditioner.
    b, x0 : ndarray
        Right-hand side and warm start (or None).
    rtol, atol : float
        Stop at a residual of ``max(rtol ||b||, atol)``.
    maxiter : int or None
        Iteration cap (default ``10 n + 100``, effectively exact).
    hint : str
        The likely cause named when CG stalls above rounding level.

    Returns
    -------
    x : ndarray
        The solution.
    iterations : int
        CG iterations run.

    Raises
    ------
    RuntimeError
        When CG stops at the cap with a true residual more than 1e3 times the tolerance
        (a stall at rounding level below that is accepted).
    """
    count = [0]

    def callback(_xk):
        count[0] += 1

    if maxiter is None:
        maxiter = 10 * op.shape[0] + 100
    x, info = cg(op, b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, M=M, callback=callback)
    if info > 0:
        res = np.linalg.norm(op.matvec(x) - b)
        if res > 1e3 * max(rtol * np.linalg.norm(b), atol):
            raise RuntimeError(
                f"conjugate gradients did not converge in {maxiter} iterations "
                f"(relative residual {res / np.linalg.norm(b):.2e}); {hint}"
            )
    return x, count[0]


def gls_dense(design: SURDesign, cov: Covariance, Y: np.ndarray,
              constraints=None) -> np.ndarray:
    """Exact GLS with the dense ``Sigma^{-1}`` (K x K); returns whitened coefs (K x pmax).

    Parameters
    ----------
    design : SURDesign
        The whitened design.
    cov : Covariance
        The error covariance; its dense inverse is formed (small K only).
    Y : ndarray, shape (N, K)
        Responses.
    constraints : WhitenedConstraints, optional
        Linear restrictions imposed on the solution
        (:class:`lowrank_sur.constraints.WhitenedConstraints`).
    """
    K, pm = design.k_eqs, design.pmax
    idx = design.packed_index()
    if design.shared and constraints is None:
        # Q'Q = I, so A~ = Sigma^{-1} kron I and c~ = (Q'Y Sigma^{-1}) ...: GLS is OLS.
        return design.ols(Y)
    Sigma_inv = cov.inv_dense()
    A = dense_normal_matrix(design, Sigma_inv)
    c = design.rmul(Y @ Sigma_inv).ravel()[idx]
    if constraints is None:
        a = linalg.solve(A, c, assume_a="pos")
    else:
        cf = linalg.cho_factor(A, lower=True)
        a = constraints.project(linalg.cho_solve(cf, c), lambda B: linalg.cho_solve(cf, B),
                                index=idx)
    out = np.zeros(K * pm)
    out[idx] = a
    return out.reshape(K, pm)


def dense_normal_matrix(design: SURDesign, Sigma_inv: np.ndarray) -> np.ndarray:
    """``A~ = Q'(Sigma^{-1} kron I) Q``, packed (P x P, no padding), for a dense ``Sigma^{-1}``."""
    pm = design.pmax
    if design.shared:
        return np.kron(Sigma_inv, np.eye(pm))
    idx = design.packed_index()
    eq = idx // pm
    Qall = design.Q.transpose(2, 0, 1).reshape(design.nobs, design.k_eqs * pm)[:, idx]
    return (Qall.T @ Qall) * Sigma_inv[np.ix_(eq, eq)]
