"""Covariance of the GLS coefficients at the MLE, without P x P or K x K arrays.

At the MLE the Gaussian information matrix is block diagonal between the
coefficients and ``(F, D)``, so ``Cov(b) = A^{-1}`` with
``A = X'(Sigma^{-1} kron I_N) X``. On the whitened design (``X_j = Q_j R_j``)
``A = T' A~ T`` with ``T = blockdiag(R_j)`` and

    A~ = blockdiag(I_{p_j} / d_j) - U'U,    U = [w_{jr} Q_j]  (N k x P),

where ``Sigma^{-1} = D^{-1} - W W'``. Woodbury turns this into one N k x N k
system ``C = I - U B^{-1} U'``, from which every diagonal block of ``A~^{-1}``
follows; when ``P <= N k`` the P x P matrix ``A~`` itself is the smaller object and is
factored instead. Restrictions ``R b`` use matrix-free conjugate-gradient solves.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.linalg import blas, lapack

from ..design import SURDesign
from ..gls import GLSOperator
from .registry import CoefCovEstimator, register_cov_type

__all__ = ["NonrobustCovariance"]

#: Equations processed per chunk when assembling the N k x N k system.
_CHUNK_BYTES = 8 * 2**20


@register_cov_type("nonrobust", aliases=("unadjusted", "homoskedastic"))
class NonrobustCovariance(CoefCovEstimator):
    """``Cov(b) = (X'(Sigma^{-1} kron I) X)^{-1}`` for a fitted system: GLS at the MLE.

    Parameters
    ----------
    design : SURDesign
        The whitened design.
    Y : ndarray or None
        The responses (not needed).
    record : FitRecord
        The fit; its error covariance (a ``LowRankCovariance``) is used.
    """

    note = "Standard errors are GLS standard errors at the MLE of Sigma."

    def __init__(self, design: SURDesign, Y=None, record=None) -> None:
        self.design = design
        self.cov = record.cov
        self._op = GLSOperator(design, self.cov)
        self._blocks: list[np.ndarray] | None = None

    # ------------------------------------------------------------ helpers
    def _to_white(self, Rm: np.ndarray) -> np.ndarray:
        """Map rows of a P-column restriction matrix to whitened space: ``Rm T^{-1}``."""
        d = self.design
        if Rm.shape[1] != d.k_params:
            raise ValueError(
                f"restriction matrix has {Rm.shape[1]} columns, expected {d.k_params}"
            )
        out = np.zeros((Rm.shape[0], d.k_eqs * d.pmax))
        cols = np.flatnonzero(np.any(Rm != 0, axis=0))
        for j in np.unique(np.searchsorted(d.offsets, cols, side="right") - 1):
            lo, hi = d.offsets[j], d.offsets[j + 1]
            out[:, j * d.pmax : j * d.pmax + (hi - lo)] = Rm[:, lo:hi] @ d.rinv(j)
        return out

    def _white_solve(self, Zw: np.ndarray, rtol: float) -> np.ndarray:
        """``A~^{-1} Zw'`` (K pmax x q) by one conjugate-gradient solve per row."""
        X = np.zeros((Zw.shape[1], Zw.shape[0]))
        for i, z in enumerate(Zw):
            if np.any(z):
                X[:, i] = self._op.solve(z, rtol=rtol)
        return X

    def _eq_chunks(self, per_rank: bool = True):
        """Ranges of equations whose ``U`` columns (``per_rank``) or ``Q`` columns fill a chunk."""
        d = self.design
        per_eq = d.nobs * (max(self.cov.rank, 1) if per_rank else 1) * d.pmax * 8
        step = max(1, int(_CHUNK_BYTES // max(per_eq, 1)))
        for start in range(0, d.k_eqs, step):
            yield start, min(d.k_eqs, start + step)

    def _U_chunk(self, lo: int, hi: int, scale: np.ndarray | None = None,
                 first: int = 0) -> np.ndarray:
        """Columns of ``U`` for equations lo..hi (N k x (hi-lo) * (pmax - first)).

        Only the design columns ``first`` to ``pmax`` of each equation (padded columns
        zero). With ``scale``, column block j is multiplied by ``scale[j]``. The array is
        Fortran-ordered (its transpose is C-contiguous), the layout BLAS works on in place.
        """
        d = self.design
        W = self.cov.W[lo:hi]  # (m, k)
        if scale is not None:
            W = W * scale[lo:hi, None]
        Q = d.Q if not d.shared else np.broadcast_to(d.Q, (d.k_eqs,) + d.Q.shape[1:])
        # U[r*N + t, j*pmax + c] = W[j, r] * Q[j, c, t]: its transpose, indexed (j, c, r, t)
        UT = W[:, None, :, None] * Q[lo:hi, first:, None, :]
        return UT.reshape((hi - lo) * (d.pmax - first), self.cov.rank * d.nobs).T

    def _shared_columns(self) -> int:
        """How many leading columns of ``Q_j`` are the same vector in every equation.

        A constant that every equation has first is one; a shared design has all
        (:meth:`~lowrank_sur.design.SURDesign.shared_columns`).
        """
        return self.design.shared_columns()

    # --------------------------------------------------------- diag blocks
    def route(self) -> str:
        """How :meth:`whitened_blocks` computes: ``"diagonal"``, ``"dense"`` or ``"woodbury"``.

        By flop count: the P x P route forms ``A~`` (``P^2 N k``) and inverts it
        (about ``7 P^3 / 3``); the Woodbury route forms and factors the N k x N k
        system (``P (N k)^2 + (N k)^3 / 3``) and solves it for every equation's
        columns (``P (N k)^2``). That is the cost of the sandwich estimators'
        Woodbury route, which share this choice; the nonrobust one
        (:meth:`_blocks_woodbury`) needs ``k (k + 1) N^2`` instead of ``(N k)^2`` per
        column, so the estimate is conservative for it.
        """
        d, k = self.design, self.cov.rank
        if k == 0:
            return "diagonal"
        P, nk = float(d.k_params), float(d.nobs * k)
        dense = P * P * nk + 7.0 * P**3 / 3.0
        woodbury = 2.0 * P * nk * nk + nk**3 / 3.0
        return "dense" if dense < woodbury else "woodbury"

    def _block_array(self) -> np.ndarray:
        """Diagonal blocks of ``A~^{-1}`` padded to pmax x pmax (K x pmax x pmax), cached."""
        if self._blocks is None:
            d, D = self.design, self.cov.D
            route = self.route()
            if route == "diagonal":
                A = D[:, None, None] * np.eye(d.pmax)
            elif route == "dense":
                A = np.zeros((d.k_eqs, d.pmax, d.pmax))
                for j, B in enumerate(self._blocks_dense()):
                    A[j, : d.p[j], : d.p[j]] = B
            else:
                A = self._blocks_woodbury()
            self._blocks = A
        return self._blocks

    def whitened_blocks(self) -> list[np.ndarray]:
        """Diagonal blocks of ``A~^{-1}`` (p_j x p_j each, whitened scale)."""
        A = self._block_array()
        return [A[j, :p, :p] for j, p in enumerate(self.design.p)]

    def _blocks_woodbury(self) -> np.ndarray:
        """``d_j I + d_j^2 U_j' C^{-1} U_j`` with ``C = I - U B U'`` (N k x N k), ``B = diag(d)``.

        ``U_j = w_j kron Q_j``, so ``C = I - sum_j d_j (w_j w_j') kron (Q_j Q_j')``: its
        N x N blocks ``C_rs = C_sr`` are symmetric, and only the k (k + 1) / 2 distinct
        ones are formed. With ``T_ab = sum_j d_j (w_ja + w_jb)^2 Q_j Q_j'`` (a positive
        semi-definite rank update, ``dsyrk``) the off-diagonal blocks are
        ``-(T_ab - T_aa - T_bb) / 2``. The same polarization gives the Grams:
        ``U_j' H U_j = sum_rs w_jr w_js Q_j' H_rs Q_j`` for ``H = C^{-1}``, and
        ``Q' (H_ab + H_ba) Q = Q' K_ab Q - Q' H_aa Q - Q' H_bb Q`` with the positive
        definite ``K_ab = H_aa + H_bb + H_ab + H_ba``; each ``Q' K Q`` is the Gram of
        ``L_K' Q`` (``dtrmm`` with the Cholesky factor of the N x N ``K``). Both passes
        over the design cost ``k (k + 1) N^2`` flops per column instead of the
        ``(N k)^2`` of the plain ``dsyrk`` and ``dtrmm`` with the N k x N k system
        (0.625 of it for k = 4); exact, nothing is approximated. Memory: ``C`` (then
        ``H``), the ``k (k + 1) / 2`` N x N blocks and one chunk.

        Leading design columns that every equation shares (``q_c``, a constant) enter
        ``C`` as ``(W' B W) kron (q_c q_c')`` and the Grams through ``q_c' H_rs``:
        computed once, they take their share (a third for p = 3 with a constant) out
        of the two passes.
        """
        d, D = self.design, self.cov.D
        k, s = self.cov.rank, self._shared_columns()
        pairs = [(a, a) for a in range(k)] + [(a, b) for a in range(k) for b in range(a + 1, k)]
        H = self._woodbury_inverse(pairs, s)  # the blocks H_rs
        Qs = d.Q[0, :s]  # (s, N)
        # the rows q_c' H_rs and q_c' H_rs q_d (for the blocks of the shared columns)
        V = np.stack([np.stack([Qs @ H[r, t] for t in range(k)]) for r in range(k)])
        M = np.einsum("rscu,du->crds", V, Qs, optimize=True)
        factors = []
        if s < d.pmax:
            for a, b in pairs:
                Kab = H[a, a] if a == b else H[a, a] + H[b, b] + H[a, b] + H[b, a]
                factors.append(self._cholesky(np.asfortranarray(Kab)))
        out = np.empty((d.k_eqs, d.pmax, d.pmax))
        buf = self._chunk_buffer(s) if s < d.pmax else None
        for lo, hi in self._eq_chunks(per_rank=False):
            out[lo:hi] = self._chunk_grams(pairs, factors, V, M, lo, hi, s, buf)
        out *= (D**2)[:, None, None]
        out[:, np.arange(d.pmax), np.arange(d.pmax)] += D[:, None]
        return out

    @staticmethod
    def _cholesky(A: np.ndarray, overwrite: bool = False) -> np.ndarray:
        L, info = lapack.dpotrf(A, lower=1, clean=1, overwrite_a=int(overwrite))
        if info != 0:
            raise np.linalg.LinAlgError("the Woodbury system of the coefficient covariance "
                                        "is not positive definite")
        return L

    def _design_chunk(self, lo: int, hi: int, first: int, buf: np.ndarray,
                      scale=None) -> np.ndarray:
        """Columns ``first..pmax`` of ``Q_j`` for equations lo..hi as N x m (pmax - first).

        Written into ``buf`` (at least m x (pmax - first) x N; reused, so BLAS may
        overwrite the result) and returned as its Fortran-ordered N x m (pmax - first)
        view; with ``scale`` (length m) equation j's columns are multiplied by ``scale[j]``.
        """
        d = self.design  # not shared: a shared design has every column shared
        Q = d.Q[lo:hi, first:, :]
        out = buf[: hi - lo]
        if scale is not None:
            np.multiply(Q, scale[:, None, None], out=out)
        else:
            np.copyto(out, Q)
        return out.reshape(-1, d.nobs).T

    def _woodbury_inverse(self, pairs, s: int) -> np.ndarray:
        """``H = C^{-1}`` (N k x N k) from the k (k + 1) / 2 distinct blocks of ``C``."""
        d, D, W = self.design, self.cov.D, self.cov.W
        k, N = self.cov.rank, d.nobs
        T = {pair: np.zeros((N, N), order="F") for pair in pairs}
        sqrt_d = np.sqrt(D)
        if s < d.pmax:
            buf = self._chunk_buffer(s)
            for lo, hi in self._eq_chunks(per_rank=False):
                for a, b in pairs:
                    w = W[lo:hi, a] if a == b else W[lo:hi, a] + W[lo:hi, b]
                    X = self._design_chunk(lo, hi, s, buf, scale=sqrt_d[lo:hi] * w)
                    T[a, b] = blas.dsyrk(1.0, X, beta=1.0, c=T[a, b], lower=1, overwrite_c=1)
        Qs = d.Q[0, :s]
        QsQs = Qs.T @ Qs
        C = np.empty((N * k, N * k), order="F")
        for a, b in pairs:
            Tab = np.tril(T[a, b])
            Tab = Tab + np.tril(Tab, -1).T
            if s:  # shared columns: sum_j d_j (w_ja + w_jb)^2 Qs'Qs
                w = W[:, a] if a == b else W[:, a] + W[:, b]
                Tab += float(np.sum(D * w * w)) * QsQs
            T[a, b] = Tab
        for a, b in pairs:
            blk = -T[a, b] if a == b else -0.5 * (T[a, b] - T[a, a] - T[b, b])
            C[a * N:(a + 1) * N, b * N:(b + 1) * N] = blk
            C[b * N:(b + 1) * N, a * N:(a + 1) * N] = blk
        del T
        C[np.diag_indices(N * k)] += 1.0
        L = self._cholesky(C, overwrite=True)
        H, info = lapack.dpotri(L, lower=1, overwrite_c=1)
        if info != 0:
            raise np.linalg.LinAlgError("the Woodbury system of the coefficient covariance "
                                        "is not positive definite")
        # the lower triangle holds H; its N x N blocks H_ab (a >= b), each made whole
        blocks = {}
        for a in range(k):
            for b in range(a + 1):
                blk = H[a * N:(a + 1) * N, b * N:(b + 1) * N]
                if a == b:
                    blk = np.tril(blk) + np.tril(blk, -1).T
                blocks[a, b] = np.ascontiguousarray(blk)
                blocks[b, a] = blocks[a, b].T
        return blocks

    def _chunk_buffer(self, first: int) -> np.ndarray:
        """A reusable buffer for :meth:`_design_chunk` (the largest chunk of equations)."""
        d = self.design
        m = max(hi - lo for lo, hi in self._eq_chunks(per_rank=False))
        return np.empty((m, d.pmax - first, d.nobs))

    def _chunk_grams(self, pairs, factors, V, M, lo: int, hi: int, s: int,
                     buf) -> np.ndarray:
        """``U_j' C^{-1} U_j`` (m x pmax x pmax) for equations lo..hi (see above)."""
        Wc = self.cov.W[lo:hi]
        m, pm, N = hi - lo, self.design.pmax, self.design.nobs
        G = np.empty((m, pm, pm))
        G[:, :s, :s] = np.einsum("jr,crds,js->jcd", Wc, M, Wc, optimize=True)
        if s < pm:
            q = pm - s
            total = Wc.sum(axis=1)
            acc = np.zeros((m, q, q))
            for (a, b), L in zip(pairs, factors):
                Z = blas.dtrmm(1.0, L, self._design_chunk(lo, hi, s, buf), lower=1,
                               trans_a=1, overwrite_b=1)
                Z3 = Z.T.reshape(m, q, N)  # Z is Fortran-ordered: a view
                # the m q x q Grams; einsum's loop beats a batched matmul of 2 x N blocks
                g = np.einsum("jcn,jdn->jcd", Z3, Z3, optimize=False)
                # Q'H_aa Q enters with w_a^2 - w_a sum_{b != a} w_b, Q'K_ab Q with w_a w_b
                coef = (Wc[:, a] * (2.0 * Wc[:, a] - total) if a == b
                        else Wc[:, a] * Wc[:, b])
                acc += coef[:, None, None] * g
            G[:, s:, s:] = acc
            if s:
                Qn = self._design_chunk(lo, hi, s, buf)  # N x m q
                k = Wc.shape[1]
                Tc = (V.reshape(-1, N) @ Qn).reshape(k, k, s, m, q)  # (r, s', c, j, e)
                G[:, :s, s:] = np.einsum("jr,rpcje,jp->jce", Wc, Tc, Wc, optimize=True)
                G[:, s:, :s] = G[:, :s, s:].transpose(0, 2, 1)
        return G

    def _dense_white_inv(self) -> np.ndarray:
        """``A~^{-1}`` as a dense P x P array (packed, no padding)."""
        d, D = self.design, self.cov.D
        idx = d.packed_index()
        A = np.zeros((d.k_params, d.k_params))
        if self.cov.rank:
            U = np.hstack([self._U_chunk(lo, hi) for lo, hi in self._eq_chunks()])[:, idx]
            A -= U.T @ U
        A[np.diag_indices_from(A)] += np.repeat(1.0 / D, d.p)
        return linalg.cho_solve(linalg.cho_factor(A, lower=True), np.eye(A.shape[0]))

    def _blocks_dense(self) -> list[np.ndarray]:
        Ainv = self._dense_white_inv()
        d = self.design
        return [Ainv[lo:hi, lo:hi].copy() for lo, hi in zip(d.offsets[:-1], d.offsets[1:])]

    def _cov_block_array(self) -> np.ndarray:
        """``R_j^{-1} B_j R_j^{-T}`` for every whitened block (K x pmax x pmax, padded)."""
        Rinv = self.design.Rinv  # (K or 1, pmax, pmax)
        return np.matmul(np.matmul(Rinv, self._block_array()), Rinv.transpose(0, 2, 1))

    def blocks(self) -> list[np.ndarray]:
        """Diagonal blocks of ``Cov(b)`` on the scale of the original regressors."""
        V = self._cov_block_array()
        return [V[j, :p, :p] for j, p in enumerate(self.design.p)]

    def bse(self) -> np.ndarray:
        """Standard errors of all P coefficients."""
        V = self._cov_block_array()
        var = np.diagonal(V, axis1=1, axis2=2).ravel()[self.design.packed_index()]
        return np.sqrt(var)

    # ------------------------------------------------------- restrictions
    def solve(self, Rm: np.ndarray, rtol: float = 1e-11) -> np.ndarray:
        """Return ``A^{-1} Rm'`` (P x q) by conjugate-gradient solves, one per row."""
        Rm = np.atleast_2d(np.asarray(Rm, dtype=float))
        return self.solve_whitened(self._to_white(Rm), rtol)

    def solve_whitened(self, Zw: np.ndarray, rtol: float = 1e-11) -> np.ndarray:
        """``A^{-1} v`` (P x q, original scale) for whitened right-hand sides.

        ``Zw`` (q x K pmax) holds ``T^{-T} v`` for each right-hand side ``v``, e.g. a
        restriction ``Rm T^{-1}`` or a whitened score sum ``S~' g``.
        """
        d = self.design
        X = self._white_solve(Zw, rtol).reshape(d.k_eqs, d.pmax, -1)
        out = np.empty((d.k_params, Zw.shape[0]))
        for j in range(d.k_eqs):  # back to the original scale: b_j = R_j^{-1} a_j
            p = d.p[j]
            out[d.offsets[j] : d.offsets[j + 1]] = d.rinv(j) @ X[j, :p]
        return out

    def restricted(self, Rm: np.ndarray, other: np.ndarray | None = None,
                   rtol: float = 1e-11) -> np.ndarray:
        """Return ``Rm A^{-1} Rm'`` (or ``other A^{-1} Rm'``) without forming ``A^{-1}``."""
        Rm = np.atleast_2d(np.asarray(Rm, dtype=float))
        Zw = self._to_white(Rm)
        X = self._white_solve(Zw, rtol)
        if other is not None:
            return self._to_white(np.atleast_2d(np.asarray(other, dtype=float))) @ X
        V = Zw @ X
        return 0.5 * (V + V.T)

    def full(self) -> np.ndarray:
        """The full P x P covariance ``T^{-1} A~^{-1} T^{-T}``."""
        d = self.design
        Tinv = linalg.block_diag(*[d.rinv(j) for j in range(d.k_eqs)])
        V = Tinv @ self._dense_white_inv() @ Tinv.T
        return 0.5 * (V + V.T)
