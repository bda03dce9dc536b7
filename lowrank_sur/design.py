"""The stacked SUR design, stored as one orthonormal basis per equation.

Each equation's regressor matrix is factored once, ``X_j = Q_j R_j`` (thin QR), and
the fitters work with the whitened coefficients ``a_j = R_j b_j``. This keeps the
beta step well conditioned whatever the scaling or near-collinearity of the
columns within an equation, turns the block-Jacobi preconditioner into a plain
diagonal scaling, and means the original ``X_j`` need not be kept.

When every equation has the same regressors, a single ``Q`` is stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .threads import single_threaded

__all__ = ["SURDesign", "CollinearityError", "constant_flags"]

#: Relative size of ``|R_ii|`` (against the largest) below which columns are collinear.
COLLINEARITY_RTOL = 1e-12

#: Root-mean-square sizes of a regressor column the fit can work with (zero is allowed).
REGRESSOR_RANGE = (1e-100, 1e100)

#: Equations per batched QR call.
_QR_CHUNK = 256


class CollinearityError(ValueError):
    """Raised when an equation's regressors are perfectly collinear."""


def _validated_arrays(Xs: Sequence[np.ndarray], names: list[str]) -> list[np.ndarray]:
    """The regressor matrices as 2-D float arrays with a common number of rows.

    Finiteness is checked on the stacked chunks the QR factors are computed from
    (:meth:`SURDesign._factor`), one call per chunk rather than per equation.
    """
    if len(Xs) == 0:
        raise ValueError("Xs is empty: give one regressor matrix per equation")
    arrays = []
    for j, X in enumerate(Xs):
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2:
            raise ValueError(f"{names[j]}: regressors must be 2-D, got shape {X.shape}")
        arrays.append(X)
    N = arrays[0].shape[0]
    for j, X in enumerate(arrays):
        if X.shape[0] != N:
            raise ValueError(
                f"{names[j]}: regressors have {X.shape[0]} rows but {names[0]} has {N}; "
                "every equation must use the same N observations"
            )
        if X.shape[1] > N:
            raise ValueError(
                f"{names[j]}: {X.shape[1]} regressors but only {N} observations; "
                "drop regressors or add observations"
            )
    return arrays


def _column_norms(Xc: np.ndarray) -> np.ndarray:
    """Euclidean norms of the columns of a stack (m, N, p), without overflow or underflow.

    The plain sum of squares when it is safely representable; otherwise each column is
    scaled by its largest absolute value first.
    """
    sq = np.einsum("mnp,mnp->mp", Xc, Xc)
    if np.all(np.isfinite(sq)) and sq.min() > 1e-280:  # zero may be an underflow: rescale
        return np.sqrt(sq)
    big = np.max(np.abs(Xc), axis=1)  # per column: scaled, so no overflow
    safe = np.where(big > 0, big, 1.0)
    scaled = Xc / safe[:, None, :]
    return big * np.sqrt(np.einsum("mnp,mnp->mp", scaled, scaled))


class SURDesign:
    """Per-equation QR factors of a SUR system.

    Parameters
    ----------
    Xs : sequence of array_like
        K regressor matrices, each N x p_j (p_j may differ, p_j may be 0).
    eq_names : sequence of str, optional
        Equation labels used in error messages.
    exog_names : sequence of sequence of str, optional
        Column names per equation used in error messages.
    observed : ndarray of bool, shape (N, K), optional
        Observed response cells (``missing="fiml"``; the regressors must be zero in the
        other cells). None: every cell is observed.

    Attributes
    ----------
    k_eqs, nobs : int
        K and N.
    p : ndarray of int
        Number of regressors per equation.
    shared : bool
        True when every equation has identical regressors.
    """

    @single_threaded
    def __init__(
        self,
        Xs: Sequence[np.ndarray],
        eq_names: Sequence[str] | None = None,
        exog_names: Sequence[Sequence[str]] | None = None,
        observed: np.ndarray | None = None,
    ) -> None:
        if eq_names is None:
            eq_names = [f"equation {j}" for j in range(len(Xs))]
        names = list(eq_names)
        arrays = _validated_arrays(Xs, names)
        K, N = len(arrays), arrays[0].shape[0]
        self.k_eqs = K
        self.nobs = N
        self.p = np.array([X.shape[1] for X in arrays], dtype=int)
        self.pmax = int(self.p.max())
        self.offsets = np.concatenate([[0], np.cumsum(self.p)])
        self.eq_names = names
        first = arrays[0]
        self.shared = all(X is first or np.array_equal(X, first) for X in arrays[1:])
        # missing="fiml": the N x K mask of observed cells (the regressors are zero in the
        # others, so each Q_j has zero rows there); None when every cell is observed
        self.observed = observed
        self._factor(arrays, exog_names)

    def _factor(self, arrays: list[np.ndarray], exog_names) -> None:
        """Thin QR of every equation's regressors (one, when they are shared)."""
        pm, N = self.pmax, self.nobs
        if self.shared:
            groups = {int(self.p[0]): np.array([0])}
            n_stored = 1
        else:
            groups = {int(p): np.flatnonzero(self.p == p) for p in np.unique(self.p)}
            n_stored = self.k_eqs
        self.Q = np.zeros((n_stored, pm, N))
        self.R = np.zeros((n_stored, pm, pm))
        idx = np.arange(pm)
        self.R[:, idx, idx] = 1.0
        for p, group in groups.items():
            if p == 0:
                continue
            # Batched LAPACK QR over chunks of equations with the same p_j, so the
            # transient copies stay small next to the stored Q.
            for start in range(0, group.size, _QR_CHUNK):
                members = group[start : start + _QR_CHUNK]
                Xc = np.stack([arrays[j] for j in members])  # (m, N, p)
                self._check_finite(Xc, members)
                q, r = np.linalg.qr(Xc)
                self._check_collinear(Xc, members, r, exog_names)
                sign = np.sign(np.diagonal(r, axis1=1, axis2=2)).copy()
                sign[sign == 0] = 1.0
                if members[-1] - members[0] == members.size - 1:  # contiguous: a slice
                    members = slice(int(members[0]), int(members[-1]) + 1)
                self.Q[members, :p, :] = np.swapaxes(q * sign[:, None, :], 1, 2)
                self.R[members, :p, :p] = r * sign[:, :, None]
        self.Rinv = np.linalg.inv(self.R)

    # ----------------------------------------------------------------- build
    def _check_finite(self, Xc: np.ndarray, members: np.ndarray) -> None:
        finite = np.isfinite(Xc).all(axis=(1, 2))
        if not finite.all():
            j = int(members[np.flatnonzero(~finite)[0]])
            raise ValueError(f"{self.eq_names[j]}: regressors contain NaN or inf")

    def _check_collinear(self, Xc, members, r, exog_names) -> None:
        # |r_ii| / ||x_i|| is the sine of the angle between column i and the span of
        # the columns before it: (numerically) zero means column i is redundant.
        diag = np.abs(np.diagonal(r, axis1=1, axis2=2))
        colnorm = _column_norms(Xc)
        self._check_scale(members, colnorm, exog_names)
        bad = (diag <= COLLINEARITY_RTOL * colnorm) | (colnorm == 0)
        if not np.any(bad):
            return
        i = int(np.flatnonzero(np.any(bad, axis=1))[0])
        j = int(members[i])
        cols = [int(c) for c in np.flatnonzero(bad[i])]
        if exog_names is not None:
            labels = [repr(str(exog_names[j][c])) for c in cols]
        else:
            labels = [f"column {c}" for c in cols]
        which = ", ".join(labels)
        raise CollinearityError(
            f"{self.eq_names[j]}: regressors are perfectly collinear: {which} "
            f"{'is a linear combination' if len(cols) == 1 else 'are linear combinations'}"
            " of the columns before it (or is all zero). Drop the redundant column(s)."
        )

    def _check_scale(self, members, colnorm, exog_names) -> None:
        # coefficients scale as 1 / column size and their variances as its inverse square
        rms = colnorm / np.sqrt(self.nobs)
        bad = (rms > 0) & ((rms < REGRESSOR_RANGE[0]) | (rms > REGRESSOR_RANGE[1]))
        if np.any(bad):
            i, c = (int(v[0]) for v in np.nonzero(bad))
            j = int(members[i])
            name = repr(str(exog_names[j][c])) if exog_names is not None else f"column {c}"
            raise ValueError(
                f"{self.eq_names[j]}: regressor {name} has values of order {rms[i, c]:.1e}, "
                f"outside {REGRESSOR_RANGE[0]:g} to {REGRESSOR_RANGE[1]:g}: its coefficient "
                "and standard error would not be representable in double precision; "
                f"rescale it, e.g. divide it by {rms[i, c]:.0e}"
            )

    # ------------------------------------------------------------- operators
    def fitted_t(self, A: np.ndarray) -> np.ndarray:
        """Return the K x N matrix with rows ``Q_j a_j`` for whitened coefs ``A`` (K x pmax)."""
        if self.shared:
            return A @ self.Q[0]
        return np.einsum("kpn,kp->kn", self.Q, A, optimize=False)

    def rmul_t(self, ST: np.ndarray) -> np.ndarray:
        """Return the K x pmax matrix with rows ``Q_j' s_j`` for a K x N matrix ``ST``."""
        if self.shared:
            return ST @ self.Q[0].T
        return np.einsum("kpn,kn->kp", self.Q, ST, optimize=False)

    def fitted_mixed(self, A: np.ndarray, W: np.ndarray) -> np.ndarray:
        """Return ``W' M`` (k x N) for ``M`` = :meth:`fitted_t` of ``A``, without forming M.

        One pass over the stored Q: ``sum_j w_j (Q_j a_j)'`` is a single (k x K pmax) by
        (K pmax x N) product.
        """
        if self.shared:
            return (W.T @ A) @ self.Q[0]
        B = (W.T[:, :, None] * A[None, :, :]).reshape(W.shape[1], -1)
        return B @ self._Qflat

    def rmul_mixed(self, Z: np.ndarray, W: np.ndarray) -> np.ndarray:
        """Return the K x pmax matrix with rows ``Q_j' Z' w_j`` for ``Z`` (k x N), ``W`` (K x k).

        One pass over the stored Q (a (k x N) by (N x K pmax) product); with
        :meth:`fitted_mixed` it applies the low-rank part of ``Sigma^{-1}`` to the
        whole design without a K x N temporary. ``Z`` may be a stack (s x k x N) of
        such matrices: the result is then s x K x pmax, still from one pass.
        """
        lead, (k, n) = Z.shape[:-2], Z.shape[-2:]
        if self.shared:
            T = np.matmul(Z, self.Q[0].T)  # (..., k, pmax)
            return np.matmul(W, T)
        T = (Z.reshape(-1, n) @ self._Qflat.T).reshape(*lead, k, self.k_eqs, self.pmax)
        return np.einsum("...rjc,jr->...jc", T, W, optimize=False)

    def residuals(self, YT: np.ndarray, A: np.ndarray, out: np.ndarray | None = None):
        """Return ``Y - fitted(A)`` as an N x K view of a contiguous K x N array.

        Parameters
        ----------
        YT : ndarray, shape (K, N)
            The responses, transposed and C-contiguous.
        A : ndarray, shape (K, pmax)
            Whitened coefficients.
        out : ndarray, shape (K, N), optional
            Buffer to write the transposed residuals into (reused across sweeps).
        """
        if self.shared:
            out = np.matmul(A, self.Q[0], out=out)
        else:
            out = np.einsum("kpn,kp->kn", self.Q, A, optimize=False, out=out)
        np.subtract(YT, out, out=out)
        return out.T

    def shared_columns(self) -> int:
        """How many leading columns of ``Q_j`` are the same vector in every equation.

        A constant that every equation has first is one; a shared design has all
        ``pmax``. On these columns the normal matrix decouples exactly: ``Q_l``'s other
        columns are orthogonal to them (thin QR of each equation), so the block of
        ``A~`` for the shared columns is ``Sigma^{-1} kron I_s`` and nothing couples it
        to the rest (used by :class:`~lowrank_sur.gls.GLSOperator`'s preconditioner and
        the coefficient covariances). Computed once (one pass over the shared columns).
        """
        if getattr(self, "_n_shared", None) is None:
            if self.shared:
                count = self.pmax
            else:
                count = 0
                for c in range(int(self.p.min())):
                    col = self.Q[:, c, :]
                    if not np.array_equal(col, np.broadcast_to(self.Q[0, c], col.shape)):
                        break
                    count += 1
            self._n_shared = count
        return self._n_shared

    @property
    def _Qflat(self) -> np.ndarray:
        return self.Q.reshape(-1, self.nobs)

    @property
    def real_mask(self) -> np.ndarray:
        """K x pmax array: 1 for real coefficients, 0 for the padding."""
        return (np.arange(self.pmax)[None, :] < self.p[:, None]).astype(float)

    def fitted(self, A: np.ndarray) -> np.ndarray:
        """Return the N x K matrix ``[Q_1 a_1, ..., Q_K a_K]`` for whitened coefs ``A``."""
        return self.fitted_t(A).T

    def rmul(self, S: np.ndarray) -> np.ndarray:
        """Return the K x pmax matrix with rows ``Q_j' S[:, j]`` for an N x K matrix ``S``."""
        return self.rmul_t(S.T)

    def ols(self, Y: np.ndarray) -> np.ndarray:
        """Whitened OLS coefficients (K x pmax) of each column of ``Y`` on its own regressors."""
        return self.rmul(Y)

    def _Rinv(self) -> np.ndarray:
        return np.broadcast_to(self.Rinv, (self.k_eqs,) + self.Rinv.shape[1:])

    def to_coefs(self, A: np.ndarray) -> list[np.ndarray]:
        """Map whitened coefficients back to the user's scale: ``b_j = R_j^{-1} a_j``."""
        B = np.einsum("kpq,kq->kp", self._Rinv(), A)
        return [B[j, : self.p[j]].copy() for j in range(self.k_eqs)]

    def from_coefs(self, coefs: Sequence[np.ndarray]) -> np.ndarray:
        """Map coefficients on the user's scale to whitened ones: ``a_j = R_j b_j``."""
        B = np.zeros((self.k_eqs, self.pmax))
        for j, b in enumerate(coefs):
            B[j, : self.p[j]] = np.asarray(b, dtype=float)
        R = np.broadcast_to(self.R, (self.k_eqs,) + self.R.shape[1:])
        return np.einsum("kpq,kq->kp", R, B)

    def rinv(self, j: int) -> np.ndarray:
        """Return ``R_j^{-1}`` (p_j x p_j), the map from whitened to original coefficients."""
        p = self.p[j]
        return self.Rinv[0 if self.shared else j, :p, :p]

    def packed_index(self) -> np.ndarray:
        """Flat indices of the real (non-padded) entries of a K x pmax coefficient array."""
        rows = np.repeat(np.arange(self.k_eqs), self.p)
        cols = np.concatenate([np.arange(p) for p in self.p]) if self.k_eqs else np.zeros(0, int)
        return rows * self.pmax + cols

    @property
    def k_params(self) -> int:
        """Total number of regression coefficients P."""
        return int(self.p.sum())


def constant_flags(Xs: list[np.ndarray], chunk: int = 256) -> np.ndarray:
    """Per equation, whether some column is constant and non-zero (an intercept, any value).

    Equations with the same shape are checked together, ``chunk`` at a time.

    Parameters
    ----------
    Xs : list of ndarray
        The N x p_j regressor matrices.

    Returns
    -------
    ndarray of bool, shape (K,)
    """
    flags = np.zeros(len(Xs), dtype=bool)
    shapes: dict[tuple, list[int]] = {}
    for j, X in enumerate(Xs):
        if X.shape[0] and X.shape[1]:
            shapes.setdefault(X.shape, []).append(j)
    for members in shapes.values():
        for lo in range(0, len(members), chunk):
            idx = members[lo : lo + chunk]
            S = np.stack([Xs[j] for j in idx])  # (m, N, p)
            const = (S[:, 0] != 0) & (S.max(axis=1) == S.min(axis=1))
            flags[idx] = const.any(axis=1)
    return flags
