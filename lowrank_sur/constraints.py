"""Linear restrictions ``R b = q`` imposed in estimation, across equations.

:func:`parse_constraints` turns what :meth:`LowRankSUR.fit <lowrank_sur.LowRankSUR.fit>`
accepts as ``constraints`` (strings in the parameter names, parsed by statsmodels as
``t_test`` parses them, or an ``(R, q)`` pair) into checked arrays. The fitters impose
them in their beta step through :class:`WhitenedConstraints`: the constrained GLS
solution is the unconstrained one corrected along ``A~^{-1} R~'``,

``a_c = a - A~^{-1} R~' (R~ A~^{-1} R~')^{-1} (R~ a - q)``,

which needs q solves with the normal-equation operator ``A~`` (matrix-free conjugate
gradients in ALS, the dense Cholesky factor in EM and FGLS) and never a P x P array.
The restricted coefficient covariance is
``V - V R' (R V R')^{-1} R V`` (:class:`ConstrainedCoefCov`).

References
----------
Greene, W. H. (2012). *Econometric Analysis*, 7th ed., Section 10.2.3 (restricted
GLS in a SUR system) and Section 5.3.2 (the restricted least squares estimator).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .design import SURDesign
from .threads import single_threaded

__all__ = ["parse_constraints", "check_full_row_rank", "WhitenedConstraints",
           "ConstrainedCoefCov", "ConstrainedSandwich", "describe_constraints"]


def parse_constraints(spec, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(R, q)`` from a constraint string, a list of them, or an ``(R, q)`` pair.

    Parameters
    ----------
    spec : str, list of str or tuple
        ``"gm_value_gm = ge_value_ge, ch_value_ch = 0"`` (names as in ``results.params``;
        several restrictions separated by commas or given as a list), or ``(R, q)`` with
        ``R`` q x P (columns in the order of the parameters).
    names : list of str
        The parameter names.

    Returns
    -------
    R, q : ndarray
        The restrictions, checked to be consistent and linearly independent.
    """
    if isinstance(spec, np.ndarray) or (isinstance(spec, tuple) and len(spec) != 2):
        raise TypeError(
            "constraints must be restriction strings (e.g. 'gm_value_gm = ge_value_ge') or "
            f"a pair (R, q), got {type(spec).__name__}"
        )
    from .hypotheses import check_restriction  # the parser of t_test (a higher layer)

    try:
        parsed = check_restriction(spec, list(names))
    except (TypeError, ValueError) as exc:
        raise type(exc)(str(exc).replace("r_matrix", "constraints")) from exc
    if not isinstance(parsed, tuple):
        raise TypeError("constraints must be restriction strings or a pair (R, q)")
    R, q = (np.atleast_2d(np.asarray(parsed[0], dtype=float)),
            np.atleast_1d(np.asarray(parsed[1], dtype=float)).ravel())
    check_full_row_rank(R, q, names)
    return R, q


def check_full_row_rank(R: np.ndarray, q: np.ndarray, names=None) -> None:
    """Raise ValueError when the restrictions are redundant or contradict each other."""
    if R.shape[0] == 0:
        raise ValueError("constraints: no restriction given")
    zero = np.flatnonzero(~np.any(R != 0, axis=1))
    if zero.size:
        raise ValueError(f"constraints: restriction {int(zero[0])} involves no coefficient")
    s = np.linalg.svd(R, compute_uv=False)
    if s[-1] <= 1e-10 * s[0]:
        aug = np.linalg.svd(np.column_stack([R, q]), compute_uv=False)
        what = ("contradict each other (no coefficients satisfy them all)"
                if aug[-1] > 1e-10 * aug[0] else "are redundant (one follows from the others)")
        raise ValueError(
            f"constraints: the {R.shape[0]} restrictions {what}; drop the dependent ones"
        )


def describe_constraints(R: np.ndarray, q: np.ndarray, names: list[str]) -> list[str]:
    """The restrictions as text, ``"gm_value_gm - ge_value_ge = 0"``, one per row."""
    out = []
    for row, value in zip(R, q):
        terms = []
        for j in np.flatnonzero(row):
            c = row[j]
            sign = "-" if c < 0 else "+"
            mag = "" if abs(c) == 1 else f"{abs(c):g} "
            terms.append(f"{sign} {mag}{names[j]}")
        text = " ".join(terms)
        text = text[2:] if text.startswith("+ ") else "-" + text[1:]
        out.append(f"{text} = {value:g}")
    return out


class WhitenedConstraints:
    """``R b = q`` on the whitened coefficients of a design: ``R~ a = q``, ``R~ = R T^{-1}``.

    Parameters
    ----------
    design : SURDesign
        The whitened design (``b_j = R_j^{-1} a_j``).
    R, q : ndarray
        The restrictions on the user's coefficients (q x P and length q).
    """

    def __init__(self, design: SURDesign, R: np.ndarray, q: np.ndarray) -> None:
        if R.shape[1] != design.k_params:
            raise ValueError(
                f"constraints: R has {R.shape[1]} columns but the model has "
                f"{design.k_params} coefficients"
            )
        self.q = q
        d = design
        Rw = np.zeros((R.shape[0], d.k_eqs * d.pmax))
        cols = np.flatnonzero(np.any(R != 0, axis=0))
        for j in np.unique(np.searchsorted(d.offsets, cols, side="right") - 1):
            lo, hi = d.offsets[j], d.offsets[j + 1]
            Rw[:, j * d.pmax : j * d.pmax + (hi - lo)] = R[:, lo:hi] @ d.rinv(j)
        self.Rw = Rw  # q x K pmax, zero on the padding

    def project(self, a: np.ndarray, solve: Callable[[np.ndarray], np.ndarray] | None = None,
                index: np.ndarray | None = None) -> np.ndarray:
        """The constrained minimizer of ``(x - a)' A~ (x - a)`` subject to ``R~ x = q``.

        Parameters
        ----------
        a : ndarray
            The unconstrained solution (flattened K x pmax, or packed with ``index``).
        solve : callable, optional
            ``solve(B)`` returns ``A~^{-1} B`` for a matrix ``B`` of columns in the layout
            of ``a``; None is ``A~ = I`` (least squares with identity weights).
        index : ndarray of int, optional
            The packed positions (``design.packed_index()``) when ``a`` is packed.
        """
        Rw = self.Rw if index is None else self.Rw[:, index]
        X = Rw.T.copy() if solve is None else solve(Rw.T)
        M = Rw @ X
        shape = a.shape
        flat = a.ravel()
        return (flat - X @ np.linalg.solve(0.5 * (M + M.T), Rw @ flat - self.q)).reshape(shape)


class ConstrainedCoefCov:
    """The restricted coefficient covariance ``V - V R' (R V R')^{-1} R V``.

    Wraps a fitted estimator of ``V`` (the GLS covariance at the fitted Sigma); used with
    ``cov_type="nonrobust"``. Needs from it ``bse``, ``restricted`` and ``full``.

    Parameters
    ----------
    base : CoefCovEstimator
        The unrestricted estimator.
    R : ndarray
        The q x P restrictions imposed in estimation.
    """

    def __init__(self, base, R: np.ndarray) -> None:
        self.base = base
        self.R = R
        self.name = base.name
        self.note = (base.note + " The coefficients and their covariance are restricted by "
                     "the constraints imposed in estimation.")
        M = base.restricted(R)
        self._Minv = np.linalg.inv(0.5 * (M + M.T))

    def _VRt(self, Rm: np.ndarray) -> np.ndarray:
        """``Rm V R'`` (rows of Rm against the imposed restrictions)."""
        return self.base.restricted(self.R, other=Rm)

    def bse(self) -> np.ndarray:
        """Standard errors of all P coefficients (q covariance solves, no P x P array)."""
        P = self.R.shape[1]
        var = self.base.bse() ** 2
        if hasattr(self.base, "solve"):  # V R' (P x q) by q solves
            G = self.base.solve(self.R)
            var -= np.einsum("ij,jk,ik->i", G, self._Minv, G)
            return np.sqrt(np.maximum(var, 0.0))
        # otherwise V R' in chunks of identity rows
        step = 256
        for lo in range(0, P, step):
            hi = min(P, lo + step)
            E = np.zeros((hi - lo, P))
            E[np.arange(hi - lo), np.arange(lo, hi)] = 1.0
            G = self._VRt(E)
            var[lo:hi] -= np.einsum("ij,jk,ik->i", G, self._Minv, G)
        return np.sqrt(np.maximum(var, 0.0))

    def restricted(self, Rm: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
        """``Rm V_c Rm'`` (or ``other V_c Rm'``)."""
        G = self._VRt(Rm)
        if other is None:
            V = self.base.restricted(Rm) - G @ self._Minv @ G.T
            return 0.5 * (V + V.T)
        H = self._VRt(np.atleast_2d(other))
        return self.base.restricted(Rm, other=other) - H @ self._Minv @ G.T

    def full(self) -> np.ndarray:
        """The full P x P restricted covariance (small P only)."""
        V = self.base.full()
        G = V @ self.R.T
        out = V - G @ self._Minv @ G.T
        return 0.5 * (out + out.T)


class ConstrainedSandwich:
    """The restricted sandwich ``C A_c^- (S' W S) A_c^- C`` of a constrained GLS fit.

    The bread of the constrained estimator is the null-space projection of the
    information, ``A_c^- = Z (Z' A Z)^{-1} Z' = A^{-1} - Y (R Y)^{-1} Y'`` with ``Z`` a
    basis of ``null(R)`` and ``Y = A^{-1} R'`` (q conjugate-gradient solves); ``S``
    holds the per-observation scores at the constrained coefficients, ``W`` is the
    meat's weighting and ``C`` the per-equation small-sample factors (as
    linearmodels applies them after its constraint transform). The bread-applied
    scores are those of the unconstrained sandwich less a rank-q correction,

    ``S A_c^- = S A^{-1} - (S Y) (R Y)^{-1} Y'``,

    so standard errors need, beyond the unconstrained ones, ``H = S Y`` (N x q),
    ``A^{-1} S' W H`` (q more solves) and q x q products: no P x P, NK x P or K x K
    array, whatever the route of the unconstrained sandwich.

    Parameters
    ----------
    base : SandwichCovariance
        The unconstrained sandwich at the constrained fit (scores at its residuals).
    R : ndarray
        The q x P restrictions imposed in estimation.

    References
    ----------
    Greene, W. H. (2012). *Econometric Analysis*, 7th ed., Section 5.3.2 (the
    restricted least squares estimator and its covariance).
    """

    def __init__(self, base, R: np.ndarray) -> None:
        self.base = base
        self.R = R
        self.name = base.name
        self.df_inference = getattr(base, "df_inference", None)
        self.note = (base.note + " The coefficients are restricted by the constraints "
                     "imposed in estimation, and so is the sandwich's bread.")
        self._Y = base.bread_solve(R)  # P x q: A^{-1} R'
        M = R @ self._Y
        self._Minv = np.linalg.inv(0.5 * (M + M.T))
        self._H = base.score_products(self._Y)  # N x q: S Y
        self._HM = self._H @ self._Minv
        self._c = base.coef_factor()

    def _applied(self, Rm: np.ndarray) -> np.ndarray:
        """``S A_c^- (Rm C)'`` (N x r)."""
        Rm = np.atleast_2d(np.asarray(Rm, dtype=float))
        return self.base._applied_scores(Rm) - self._HM @ (self._Y.T @ (Rm * self._c).T)

    @single_threaded
    def bse(self) -> np.ndarray:
        """Standard errors of all P coefficients (q + q solves beyond the unconstrained)."""
        G = self.base.bread_scores_cross(self._H)  # P x q: A^{-1} S' W H
        YM = self._Y @ self._Minv
        HWH = self.base.meat.cross(self._H, self._H)
        corr = 2.0 * np.einsum("ij,ij->i", G, YM) - np.einsum("ij,jk,ik->i", YM, HWH, YM)
        return self.base.standard_errors(self.base.variances() - self._c**2 * corr)

    @single_threaded
    def restricted(self, Rm: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
        """``Rm V_c Rm'`` (or ``other V_c Rm'``) without forming V_c."""
        Rm = np.atleast_2d(np.asarray(Rm, dtype=float))
        if Rm.shape[1] != self.R.shape[1]:
            raise ValueError(f"restriction matrix has {Rm.shape[1]} columns, expected "
                             f"{self.R.shape[1]}")
        H = self._applied(Rm)
        if other is not None:
            return self.base.meat.cross(self._applied(other), H)
        V = self.base.meat.cross(H, H)
        return 0.5 * (V + V.T)

    @single_threaded
    def full(self) -> np.ndarray:
        """The full P x P restricted sandwich (small P only)."""
        Z = self.base.bread_applied_scores_dense() - self._HM @ self._Y.T
        V = self.base.meat.cross(Z, Z) * np.outer(self._c, self._c)
        return 0.5 * (V + V.T)
