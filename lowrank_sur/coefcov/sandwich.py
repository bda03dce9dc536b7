"""Sandwich covariances of the GLS coefficients, without P x P, NK x P or K x K arrays.

With residuals ``R`` (N x K) and ``U = R Sigma^{-1}`` (one solve of the fitted
:class:`~lowrank_sur.covariance.Covariance`, low-rank or dense), the per-observation
coefficient score of equation j is ``s_tj = x_tj u_tj``. The sandwich is

    V = A^{-1} (S' W S) A^{-1},    A = X'(Sigma^{-1} kron I) X,

where ``S`` (N x P) stacks the scores and ``W`` (N x N, symmetric) is the meat's
weighting: the identity (heteroskedasticity-robust), a kernel band (HAC) or the
cluster indicator ``G G'`` (:mod:`lowrank_sur.coefcov.robust`). ``S`` is never formed.

On the whitened design (``X_j = Q_j R_j``) the score of block j is ``q_tj u_tj`` and
``A~ = blockdiag(I / d_j) - U_w'U_w`` (see :mod:`.nonrobust`), so that by Woodbury

    A~^{-1} = B + B U_w' C^{-1} U_w B,    B = blockdiag(d_j I),  C = I - U_w B U_w'.

The bread-applied scores ``Z~ = S~ A~^{-1}`` are then, equation by equation,
``Z~_j = d_j (S~_j + G U_wj)`` with ``G = (S~ B U_w') C^{-1}`` (N x N k): one pass over
the design builds ``C`` and ``S~ B U_w'``, one Cholesky factor of ``C``, and a second
pass forms each chunk of ``Z~`` and reduces it at once to its equations' p_j x p_j
meats. Memory: ``C`` (N k x N k), ``G`` and one chunk. When ``P`` is the smaller side
(or Sigma is dense) ``A~`` itself is factored; at rank 0 ``A~^{-1} = B``.

Linear combinations ``R V R'`` (Wald tests) use conjugate-gradient solves
``A^{-1} R'`` (:meth:`NonrobustCovariance.solve <.nonrobust.NonrobustCovariance.solve>`)
and the scores applied to them, ``S A^{-1} R'`` (N x q).

Small-sample factors are per equation: ``V_ab`` is multiplied by ``sqrt(c_a c_b)``
where ``c_a`` is the factor of the equation of coefficient ``a`` (``N / (N - p_j)``
for HC1, as statsmodels' OLS does per equation and linearmodels' ``debiased`` does
in a system).

References
----------
White, H. (1980). A heteroskedasticity-consistent covariance matrix estimator and a
direct test for heteroskedasticity. Econometrica 48(4), 817-838.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg
from scipy.linalg import blas

from ..covariance import LowRankCovariance
from ..design import SURDesign
from ..exceptions import external_stacklevel
from .nonrobust import _CHUNK_BYTES, NonrobustCovariance
from .registry import CoefCovEstimator

__all__ = ["SandwichCovariance", "Meat"]


class Meat:
    """The weighting ``W`` of a sandwich's meat: ``A' W B`` over the N rows.

    Subclasses implement :meth:`cross` for stacks of matrices (``(..., N, a)`` and
    ``(..., N, b)``, the leading axes broadcast).
    """

    label: str = ""

    def cross(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:  # pragma: no cover
        """Return ``A' W B`` (``(..., a, b)``)."""
        raise NotImplementedError


#: Passed as ``record`` by :meth:`SandwichCovariance.check_options`.
_OPTIONS_ONLY = object()


def _t(A: np.ndarray) -> np.ndarray:
    return np.swapaxes(A, -1, -2)


class SandwichCovariance(CoefCovEstimator):
    """``A^{-1} (S' W S) A^{-1}`` from the per-observation scores ``X_t' Sigma^{-1} r_t``.

    Parameters
    ----------
    design : SURDesign
        The whitened design.
    Y : ndarray, shape (N, K)
        The responses.
    record : FitRecord
        The fit: coefficients and the error covariance (any
        :class:`~lowrank_sur.covariance.Covariance`).
    meat : Meat
        The weighting of the rows.
    eq_factor : ndarray, shape (K,)
        Small-sample factor of each equation (ones for none).
    """

    def __init__(self, design: SURDesign, Y: np.ndarray, record, meat: Meat,
                 eq_factor: np.ndarray) -> None:
        if record is _OPTIONS_ONLY:  # check_options: the options parsed, nothing computed
            return
        if Y is None:
            raise ValueError(f"cov_type={self.name!r} needs the responses (the data were "
                             "removed)")
        self.design = design
        self.cov = record.cov
        self.meat = meat
        self._sqrt_c = np.sqrt(np.asarray(eq_factor, dtype=float))
        self._bread = NonrobustCovariance(design, Y, record)
        resid = np.asarray(Y, dtype=float) - design.fitted(record.whitened_coefs)
        self._UT = np.ascontiguousarray(self.cov.solve(resid).T)  # K x N, Sigma^{-1} r_t
        self._blocks: np.ndarray | None = None

    @classmethod
    def check_options(cls, design: SURDesign, **cov_kwds) -> None:
        """Validate ``cov_kwds`` for ``design`` before a fit (raises as the constructor would)."""
        cls(design, None, _OPTIONS_ONLY, **cov_kwds)

    # ------------------------------------------------------------ routes
    def route(self) -> str:
        """``"diagonal"`` (rank 0), ``"dense"`` (``A~`` factored) or ``"woodbury"``."""
        if not isinstance(self.cov, LowRankCovariance):
            return "dense"
        return self._bread.route()

    def _Q(self, lo: int, hi: int) -> np.ndarray:
        d = self.design
        return d.Q[lo:hi] if not d.shared else np.broadcast_to(d.Q, (hi - lo,) + d.Q.shape[1:])

    def _scores(self, lo: int, hi: int, first: int = 0) -> np.ndarray:
        """Whitened scores ``q_tjc u_tj`` of equations lo..hi, columns ``c >= first``.

        Shape (N, (hi - lo) * (pmax - first)).
        """
        S = self._Q(lo, hi)[:, first:] * self._UT[lo:hi, None, :]  # (m, pmax - first, N)
        return np.ascontiguousarray(S.transpose(2, 0, 1)).reshape(self.design.nobs, -1)

    def _gram_blocks(self, Z: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Per-equation meats of bread-applied scores ``Z`` (N, m * pmax): (m, pmax, pmax)."""
        Z3 = Z.reshape(self.design.nobs, hi - lo, self.design.pmax).transpose(1, 0, 2)
        return self.meat.cross(Z3, Z3)

    def _blocks_diagonal(self) -> np.ndarray:
        d = self.design
        out = np.empty((d.k_eqs, d.pmax, d.pmax))
        for lo, hi in self._bread._eq_chunks():
            Z = self._scores(lo, hi) * np.repeat(self.cov.D[lo:hi], d.pmax)
            out[lo:hi] = self._gram_blocks(Z, lo, hi)
        return out

    def _blocks_woodbury(self) -> np.ndarray:
        """Per-equation whitened meats of ``Z~ = S~ A~^{-1}`` through the N k x N k system.

        Leading design columns shared by every equation (``q_c``, a constant) enter
        ``U_w B U_w'`` as ``(W' B W) kron (q_c q_c')``, ``S~ B U_w'`` as
        ``(U B W) x (q_c q_c')`` and ``G U_w`` as ``(G (I kron q_c)) W'``: computed once,
        outside the passes over the design (as in :mod:`.nonrobust`).
        """
        d, D, W = self.design, self.cov.D, self.cov.W
        N, k = d.nobs, self.cov.rank
        nk, sh, rest = N * k, self._bread._shared_columns(), d.pmax - self._bread._shared_columns()
        sqrt_d = np.sqrt(D)
        C = np.zeros((nk, nk), order="F")
        E = np.zeros((N, nk))  # S~ B U_w'
        chunks = list(self._bread._eq_chunks()) if rest else []
        for lo, hi in chunks:
            Us = self._bread._U_chunk(lo, hi, scale=sqrt_d, first=sh)  # U_w B^{1/2}
            C = blas.dsyrk(-1.0, Us, beta=1.0, c=C, lower=1, overwrite_c=1)
            E += (self._scores(lo, hi, sh) * np.repeat(sqrt_d[lo:hi], rest)) @ Us.T
        Qs = d.Q[0, :sh]  # (sh, N)
        if sh:
            H = Qs.T @ Qs
            C -= np.kron((W.T * D) @ W, H)
            E += (((self._UT.T * D) @ W)[:, :, None] * H[:, None, :]).reshape(N, nk)
        C[np.diag_indices(nk)] += 1.0
        factor = linalg.cho_factor(C, lower=True, overwrite_a=True, check_finite=False)
        G = linalg.cho_solve(factor, E.T, check_finite=False).T  # N x nk
        del E, C
        M = G.reshape(N, k, N) @ Qs.T  # (N, k, sh): G (I kron q_c)
        out = np.empty((d.k_eqs, d.pmax, d.pmax))
        for lo, hi in self._bread._eq_chunks():
            m = hi - lo
            Z = np.empty((N, m, d.pmax))
            Z[:, :, :sh] = (self._UT[lo:hi].T[:, :, None] * Qs.T[:, None, :]
                            + np.einsum("trc,jr->tjc", M, W[lo:hi])) * D[lo:hi, None]
            if rest:
                Us = self._bread._U_chunk(lo, hi, scale=sqrt_d, first=sh)
                sc = np.repeat(sqrt_d[lo:hi], rest)
                Zr = self._scores(lo, hi, sh) * (sc * sc) + (G @ Us) * sc
                Z[:, :, sh:] = Zr.reshape(N, m, rest)
            out[lo:hi] = self._gram_blocks(Z.reshape(N, -1), lo, hi)
        return out

    def _dense_white_inv(self) -> np.ndarray:
        """``A~^{-1}`` (P x P, packed) from ``Sigma^{-1}`` as a dense K x K array."""
        d = self.design
        Qp = self._Q(0, d.k_eqs).reshape(-1, d.nobs)[d.packed_index()]  # P x N
        eq = np.repeat(np.arange(d.k_eqs), d.p)
        A = (Qp @ Qp.T) * self.cov.inv_dense(force=True)[np.ix_(eq, eq)]
        return linalg.cho_solve(linalg.cho_factor(A, lower=True), np.eye(A.shape[0]))

    def _white_scores_dense(self) -> np.ndarray:
        """``Z~ = S~ A~^{-1}`` as a dense N x P array (packed; small P only)."""
        d = self.design
        S = self._scores(0, d.k_eqs)[:, d.packed_index()]
        return S @ self._dense_white_inv()

    def _blocks_dense(self) -> np.ndarray:
        d = self.design
        Zp = self._white_scores_dense()
        Z = np.zeros((d.nobs, d.k_eqs * d.pmax))
        Z[:, d.packed_index()] = Zp
        return self._gram_blocks(Z, 0, d.k_eqs)

    def _block_array(self) -> np.ndarray:
        """Whitened diagonal blocks of the meat-in-bread, (K, pmax, pmax), cached."""
        if self._blocks is None:
            route = self.route()
            if route == "diagonal":
                self._blocks = self._blocks_diagonal()
            elif route == "woodbury":
                self._blocks = self._blocks_woodbury()
            else:
                self._blocks = self._blocks_dense()
        return self._blocks

    # ------------------------------------------------------------ interface
    def blocks(self) -> list[np.ndarray]:
        """Diagonal blocks of ``Cov(b)`` on the scale of the original regressors."""
        Rinv = self.design.Rinv
        V = np.matmul(np.matmul(Rinv, self._block_array()), _t(Rinv))
        V = V * (self._sqrt_c**2)[:, None, None]
        return [V[j, :p, :p] for j, p in enumerate(self.design.p)]

    def variances(self) -> np.ndarray:
        """Variances of all P coefficients (the diagonal of ``V``; may be negative)."""
        return np.concatenate([np.diag(B) for B in self.blocks()])

    def standard_errors(self, var: np.ndarray) -> np.ndarray:
        """``sqrt(var)``, NaN (with a warning) where a variance is negative."""
        bad = np.flatnonzero(var < 0)
        if bad.size:
            warnings.warn(f"{bad.size} coefficient variance(s) of cov_type={self.name!r} are "
                          "negative (a two-way cluster covariance need not be positive "
                          "semi-definite); their standard errors are NaN", RuntimeWarning,
                          stacklevel=external_stacklevel())
        return np.sqrt(np.where(var < 0, np.nan, var))

    def bse(self) -> np.ndarray:
        """Standard errors of all P coefficients (NaN where a variance is negative)."""
        return self.standard_errors(self.variances())

    def _coef_factor(self) -> np.ndarray:
        return np.repeat(self._sqrt_c, self.design.p)

    def coef_factor(self) -> np.ndarray:
        """``sqrt(c_a)`` for every coefficient (the small-sample factors, P)."""
        return self._coef_factor()

    def score_products(self, Yc: np.ndarray) -> np.ndarray:
        """``S Yc`` (N x q) for coefficient directions ``Yc`` (P x q, original scale)."""
        d = self.design
        H = np.empty((d.nobs, Yc.shape[1]))
        for i in range(Yc.shape[1]):
            coefs = [Yc[lo:hi, i] for lo, hi in zip(d.offsets[:-1], d.offsets[1:])]
            H[:, i] = np.einsum("kn,kn->n", self._UT, d.fitted_t(d.from_coefs(coefs)))
        return H

    def bread_solve(self, Rm: np.ndarray) -> np.ndarray:
        """``A^{-1} Rm'`` (P x q) by conjugate-gradient solves (the GLS bread)."""
        return self._bread.solve(Rm)

    def bread_scores_cross(self, H: np.ndarray) -> np.ndarray:
        """``A^{-1} S' W H`` (P x q) for ``H`` (N x q): one pass over the scores, q solves.

        ``S' W H`` is reduced equation chunk by equation chunk (whitened scores against
        ``H`` through the meat), then q conjugate-gradient solves with the bread.
        """
        d = self.design
        Zw = np.zeros((H.shape[1], d.k_eqs * d.pmax))
        step = max(1, int(_CHUNK_BYTES // (8 * d.nobs * d.pmax)))
        for lo in range(0, d.k_eqs, step):
            hi = min(d.k_eqs, lo + step)
            Zw[:, lo * d.pmax : hi * d.pmax] = self.meat.cross(self._scores(lo, hi), H).T
        return self._bread.solve_whitened(Zw)

    def bread_applied_scores_dense(self) -> np.ndarray:
        """``Z = S A^{-1}`` (N x P, original scale; small P only)."""
        d = self.design
        Tinv = linalg.block_diag(*[d.rinv(j) for j in range(d.k_eqs)])
        return self._white_scores_dense() @ Tinv.T

    def _applied_scores(self, Rm: np.ndarray) -> np.ndarray:
        """``S A^{-1} (Rm C)'`` (N x q), ``C`` the small-sample factors, by CG solves."""
        Rm = np.atleast_2d(np.asarray(Rm, dtype=float)) * self._coef_factor()
        return self.score_products(self._bread.solve(Rm))

    def restricted(self, Rm: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
        """Return ``Rm V Rm'`` (or ``other V Rm'``) without forming V."""
        Rm = np.atleast_2d(np.asarray(Rm, dtype=float))
        if Rm.shape[1] != self.design.k_params:
            raise ValueError(f"restriction matrix has {Rm.shape[1]} columns, expected "
                             f"{self.design.k_params}")
        H = self._applied_scores(Rm)
        if other is not None:
            return self.meat.cross(self._applied_scores(other), H)
        V = self.meat.cross(H, H)
        return 0.5 * (V + V.T)

    def full(self) -> np.ndarray:
        """The full P x P covariance (small P: ``A~`` is factored densely)."""
        Z = self.bread_applied_scores_dense()
        c = self._coef_factor()
        V = self.meat.cross(Z, Z) * np.outer(c, c)
        return 0.5 * (V + V.T)
