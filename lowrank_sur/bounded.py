"""Is the likelihood bounded at this rank for these data? Checked before a fit, and after it.

Before the fit (:func:`check_bounded`, O(N K) plus a few small QRs): with ``X_S`` the
regressors of a set S of equations side by side and ``r_S`` their rank, the
likelihood with k factors (and ``D`` free down to 0) is unbounded when some k+1
equations can have linearly dependent residuals:

* ``r_S + k + 1 > N`` for a set S of k+1 equations: their residuals live in the
  ``N - r_S < k + 1`` dimensions left by the regressors, so they are always dependent
  and ``Sigma_SS = F_S F_S'`` fits them with ``D_S -> 0``. (For the unrestricted Sigma,
  k = K - 1, this is ``K + rank([X_1 ... X_K]) > N``.) S is grown greedily from the
  equation with the most regressors, adding the one that raises the rank most.
* Duplicate responses, or more generally m equations some combination of whose
  responses lies in the span of their regressors (the residuals can then be made
  linearly dependent): unbounded for k >= m - 1. Exact duplicates are found at any K;
  other sets while the number of subsets of up to k+1 equations stays small.

After the fit (:func:`is_degenerate`): a fit whose idiosyncratic variances sit on
their floor is either a proper Heywood maximum, whose log-likelihood levels off as
the floor is lowered (its derivative in ``log D_j`` at the floor is of the order of
the floor itself), or a degenerate point of an unbounded likelihood, where the
log-likelihood keeps rising like ``-(N/2) log d`` (a derivative of order 1/2 per
observation).

References
----------
Anderson, T. W. and Rubin, H. (1956). Statistical inference in factor analysis.
Proceedings of the Third Berkeley Symposium 5, 111-150.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .design import SURDesign
from .exceptions import UnboundedLikelihoodWarning, external_stacklevel
from .factor import FactorProblem

__all__ = ["Boundedness", "check_bounded", "check_bounded_observed", "is_degenerate",
           "warn_unbounded"]

#: Candidates examined per greedy step (the ones with the most regressors first).
_GREEDY_CANDIDATES = 200

#: Relative singular-value threshold for numerical rank.
_RANK_RTOL = 1e-10

#: Most subsets of equations examined for responses dependent modulo the regressors.
_MAX_SUBSETS = 5000

#: Derivative of ``llf / N`` in ``log D`` (summed over the equations on the floor)
#: beyond which a boundary point is degenerate; a proper Heywood maximum has a
#: derivative of the order of the floor (1e-6), a degenerate one about -1/2.
DEGENERATE_SLOPE = 0.05


@dataclass
class Boundedness:
    """Outcome of :func:`check_bounded`.

    Attributes
    ----------
    bounded : bool
        False when the check proves the likelihood unbounded at this rank.
    equations : list of int
        The equations whose residuals can be made dependent (empty when bounded).
    reason : str
        Why, in words (empty when bounded).
    max_bounded_rank : int or None
        The largest rank the regressor-rank condition allows for these data (None
        when even rank 0 is in doubt).
    """

    bounded: bool
    equations: list = field(default_factory=list)
    reason: str = ""
    max_bounded_rank: int | None = None


def _rank(Q: np.ndarray, scale: float | None = None) -> int:
    """Numerical rank; singular values are compared with ``scale`` (default the largest)."""
    if Q.shape[1] == 0:
        return 0
    s = np.linalg.svd(Q, compute_uv=False)
    ref = s[0] if scale is None else scale
    return int(np.sum(s > _RANK_RTOL * max(ref, np.finfo(float).tiny)))


def _basis(design: SURDesign, j: int) -> np.ndarray:
    """Orthonormal basis (N x p_j) of equation j's regressors."""
    q = design.Q[0 if design.shared else j]
    return q[: design.p[j]].T


def _greedy_ranks(design: SURDesign, size: int) -> tuple[list[int], list[int]]:
    """Greedy set of ``size`` equations maximizing the regressors' rank; ranks by set size."""
    K, N = design.k_eqs, design.nobs
    if design.shared:
        r = _rank(_basis(design, 0))
        return list(range(min(size, K))), [r] * min(size, K)
    order = list(np.argsort(-design.p, kind="stable"))
    chosen = [int(order[0])]
    U = np.linalg.qr(_basis(design, chosen[0]))[0] if design.p[chosen[0]] else np.zeros((N, 0))
    ranks = [_rank(U)]
    U = U[:, : ranks[0]]
    while len(chosen) < min(size, K):
        best, best_gain, best_resid = None, -1, None
        for j in [int(j) for j in order if j not in chosen][:_GREEDY_CANDIDATES]:
            B = _basis(design, j)
            resid = B - U @ (U.T @ B)
            gain = _rank(resid, scale=1.0)  # B has orthonormal columns
            if gain > best_gain:
                best, best_gain, best_resid = j, gain, resid
            if gain == design.p[j]:  # cannot do better than all its columns
                break
        chosen.append(best)
        if best_gain:
            u, s, _ = np.linalg.svd(best_resid, full_matrices=False)
            U = np.hstack([U, u[:, :best_gain]])
        ranks.append(ranks[-1] + best_gain)
    return chosen, ranks


def _duplicates(Y: np.ndarray) -> list[int] | None:
    """Two identical response columns (exactly), if any."""
    seen: dict[bytes, int] = {}
    for j in range(Y.shape[1]):
        key = np.ascontiguousarray(Y[:, j]).tobytes()
        if key in seen:
            return [seen[key], j]
        seen[key] = j
    return None


def _dependent_set(design: SURDesign, Y: np.ndarray, size: int) -> list[int] | None:
    """A set of at most ``size`` equations whose responses are dependent modulo their regressors.

    Some combination of ``y_S`` lying in the span of ``X_S`` lets the residuals of S be
    made linearly dependent. Subsets of 2 .. ``size`` equations are examined while
    there are at most ``_MAX_SUBSETS`` of them (small and moderate K).
    """
    from itertools import combinations
    from math import comb

    K = design.k_eqs
    big = np.max(np.abs(Y), axis=0)  # on each response's own scale first: no overflow
    Yn = Y / np.where(big > 0, big, 1.0)
    norm = np.linalg.norm(Yn, axis=0)
    Yn = Yn / np.where(norm > 0, norm, 1.0)
    for m in range(2, min(size, K) + 1):
        if comb(K, m) > _MAX_SUBSETS:
            return None
        for S in combinations(range(K), m):
            B = np.hstack([_basis(design, j) for j in S])
            U = np.linalg.svd(B, full_matrices=False)[0][:, : _rank(B)] if B.size else B
            E = Yn[:, S] - U @ (U.T @ Yn[:, S])
            if np.linalg.svd(E, compute_uv=False)[-1] <= 1e-9:
                return list(S)
    return None


def check_bounded(design: SURDesign, Y: np.ndarray, rank: int) -> Boundedness:
    """Check whether the log-likelihood can be unbounded at ``rank`` for these data.

    Parameters
    ----------
    design : SURDesign
        The design.
    Y : ndarray, shape (N, K)
        Responses.
    rank : int
        Number of factors k.

    Returns
    -------
    Boundedness
        ``bounded=False`` with the equations and the reason when a set of k+1
        equations can have linearly dependent residuals (see the module notes). A
        ``True`` answer means the check found no such set, not a proof.
    """
    N = design.nobs
    chosen, ranks = _greedy_ranks(design, rank + 1)
    max_rank = None
    for m, r in enumerate(ranks):  # m + 1 equations, rank m
        if r + m + 1 <= N:
            max_rank = m
    if rank == 0:
        return Boundedness(True, max_bounded_rank=max_rank)
    if ranks[rank] + rank + 1 > N:
        S = chosen[: rank + 1]
        return Boundedness(
            False, S,
            f"their regressors have rank {ranks[rank]} and {ranks[rank]} + k + 1 = "
            f"{ranks[rank] + rank + 1} > N = {N}: the residuals of these {rank + 1} "
            "equations can be made linearly dependent", max_rank,
        )
    dup = _duplicates(Y)
    if dup is not None:
        return Boundedness(False, dup, "they have the same response", 0)
    dep = _dependent_set(design, Y, rank + 1)
    if dep is not None:
        return Boundedness(
            False, dep, "a combination of their responses lies in the span of their "
            "regressors, so their residuals can be made linearly dependent",
            min(max_rank if max_rank is not None else 0, len(dep) - 2),
        )
    return Boundedness(True, max_bounded_rank=max_rank)


def _joint_rank(design: SURDesign, S: list[int], rows: np.ndarray) -> int:
    """Rank of the regressors of the equations ``S`` side by side on ``rows``."""
    B = np.hstack([_basis(design, j)[rows] for j in S])
    if B.size == 0:
        return 0
    s = np.linalg.svd(B, compute_uv=False)
    return int(np.sum(s > _RANK_RTOL * max(1.0, float(s[0]))))


def _greedy_observed(design: SURDesign, observed: np.ndarray, size: int,
                     first: int) -> tuple[list[int], list[int], list[int]]:
    """A greedy set of equations from ``first``, the ranks and the joint counts by size.

    Each step adds the equation that most raises ``r_S + |S| - n_S`` (``n_S`` the rows
    where all of S are observed, ``r_S`` the rank of their regressors there).
    """
    chosen = [first]
    rows = observed[:, first].copy()
    ranks, counts = [_joint_rank(design, chosen, rows)], [int(rows.sum())]
    while len(chosen) < min(size, design.k_eqs):
        joint = observed[rows].sum(axis=0)  # n_{S + j} for every j
        # the score with full-rank regressors bounds it: candidates by that bound,
        # none whose bound cannot beat the best score found
        bound = sum(int(design.p[j]) for j in chosen) + design.p + len(chosen) + 1 - joint
        bound[chosen] = np.iinfo(np.int64).min
        best, best_score = None, None
        for j in np.argsort(-bound, kind="stable")[:_GREEDY_CANDIDATES]:
            j = int(j)
            if best_score is not None and bound[j] <= best_score:
                break
            r = _joint_rank(design, chosen + [j], rows & observed[:, j])
            score = r + len(chosen) + 1 - int(joint[j])
            if best_score is None or score > best_score:
                best, best_score, best_r = j, score, r
        chosen.append(best)
        rows &= observed[:, best]
        ranks.append(best_r)
        counts.append(int(rows.sum()))
    return chosen, ranks, counts


def check_bounded_observed(design: SURDesign, Y: np.ndarray, rank: int,
                           observed: np.ndarray) -> Boundedness:
    """:func:`check_bounded` for responses with unobserved cells (``missing="fiml"``).

    Parameters
    ----------
    design : SURDesign
        The design (its regressors zero in the unobserved cells).
    Y : ndarray, shape (N, K)
        Responses (zero in the unobserved cells).
    rank : int
        Number of factors k.
    observed : ndarray of bool, shape (N, K)
        The observed cells.

    Returns
    -------
    Boundedness
        ``bounded=False`` when some set S of k+1 equations has ``r_S + k + 1 > n_S``,
        with ``n_S`` the rows where every equation of S is observed and ``r_S`` the rank
        of their regressors on those rows: the residuals of S on those rows can then
        be made linearly dependent, and with ``D_S -> 0`` those rows' likelihood rises
        without bound while the rows observing only part of S keep a nonsingular
        ``Sigma_TT``. S is grown greedily twice, from the equation with the fewest
        observed rows and from the one with the most regressors (as
        :func:`check_bounded` does). Identical responses are checked on equations
        observed in the same rows. A ``True`` answer means no such set was found, not
        a proof.
    """
    n_obs = observed.sum(axis=0)
    firsts = dict.fromkeys([int(np.lexsort((-design.p, n_obs))[0]),
                            int(np.argsort(-design.p, kind="stable")[0])])
    found, max_rank = None, None
    for first in firsts:
        chosen, ranks, counts = _greedy_observed(design, observed, rank + 1, first)
        ok = [m for m, (r, n) in enumerate(zip(ranks, counts)) if r + m + 1 <= n]
        m_ok = -1
        while m_ok + 1 in ok:
            m_ok += 1
        max_rank = m_ok if max_rank is None else min(max_rank, m_ok)
        if rank and ranks[rank] + rank + 1 > counts[rank] and found is None:
            found = (chosen[: rank + 1], ranks[rank], counts[rank])
    max_rank = None if max_rank is None or max_rank < 0 else max_rank
    if rank == 0:
        return Boundedness(True, max_bounded_rank=max_rank)
    if found is not None:
        S, r, n = found
        return Boundedness(
            False, S,
            f"on the {n} rows where all of them are observed their regressors have rank "
            f"{r} and {r} + k + 1 = {r + rank + 1} > {n}: the residuals of these "
            f"{rank + 1} equations can be made linearly dependent there", max_rank,
        )
    dup = _duplicates(Y)
    if dup is not None and np.array_equal(observed[:, dup[0]], observed[:, dup[1]]):
        return Boundedness(False, dup, "they have the same response", 0)
    return Boundedness(True, max_bounded_rank=max_rank)


def warn_unbounded(check: Boundedness, rank: int, eq_names: list[str],
                   full: bool = False) -> None:
    """Issue an :class:`UnboundedLikelihoodWarning` for an unbounded ``check``.

    ``full``: the unrestricted Sigma of iterated FGLS (``rank="full"``) rather than a
    factor rank.
    """
    names = [eq_names[j] for j in check.equations[:8]]
    more = f" and {len(check.equations) - 8} more" if len(check.equations) > 8 else ""
    lower = ""
    if check.max_bounded_rank is not None and check.max_bounded_rank < rank:
        lower = f"; the largest rank these data allow is {check.max_bounded_rank}"
    if full:
        what = "with an unrestricted Sigma"
        then = ("iterated FGLS cannot converge (Sigma-hat tends to a singular matrix). "
                "The two-step estimate (iterate=False) is well defined")
    else:
        what = f"at rank {rank}"
        then = ("the fit can only reach a local maximum or run to the floor on D "
                f"(results.degenerate). Use a lower rank{lower}, or more observations")
    warnings.warn(
        f"the likelihood {what} is unbounded for these data ({', '.join(names)}"
        f"{more}: {check.reason}). No maximum-likelihood estimate exists: {then}",
        UnboundedLikelihoodWarning,
        stacklevel=external_stacklevel(),
    )


def is_degenerate(R: np.ndarray, F: np.ndarray, D: np.ndarray, floor: np.ndarray,
                  heywood: np.ndarray, scale: np.ndarray | None = None) -> bool:
    """Whether a fit sits on a likelihood that keeps rising as some ``D_j`` go to zero.

    Parameters
    ----------
    R : ndarray, shape (N, K)
        Residuals at the fit.
    F, D : ndarray
        The fitted loadings and idiosyncratic variances.
    floor : ndarray
        The floor on D.
    heywood : ndarray of int
        Equations on the floor.
    scale : ndarray, optional
        Each equation's residual variance (default ``R'R / N`` per column).

    Returns
    -------
    bool
        True when the derivative of ``llf / N`` in ``log D``, summed over the
        equations on the floor or with ``D_j`` below a thousandth of their residual
        variance, is below ``-DEGENERATE_SLOPE``: lowering those ``D_j`` (and the
        floor) would raise the log-likelihood without bound. A proper maximum, Heywood
        or not, has a derivative there of the order of the floor.
    """
    if F.shape[1] == 0:
        return False
    var = np.einsum("ij,ij->j", R, R) / R.shape[0] if scale is None else scale
    small = D <= 1e-3 * var
    small[heywood] = True
    if not np.any(small):
        return False
    _, gD = FactorProblem(R, F.shape[1], floor).gradient(F, D)
    return bool(np.sum(gD[small]) < -DEGENERATE_SLOPE)
