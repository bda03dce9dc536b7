"""Multiple starts: look for the global maximum, and never prefer a degenerate point.

The likelihood of a factor model can have several local maxima, and Heywood points
(some ``D_j`` on its floor) that attract the alternating fitters although an
interior maximum exists. :func:`fit_with_starts` fits from the principal-component
start (or the user's ``start_params``), then, when asked (``n_starts`` > 1) or when
``n_starts="auto"`` sees trouble (equations on the floor, no convergence, a
degenerate point), the system is tiny (:data:`AUTO_SMALL_CELLS`) or has few
observations per parameter (:data:`AUTO_FEW_OBS_RATIO`; a few starts only), from
other starts:

``release``
    The first fit with its Heywood equations released: ``D_j`` reset to half the
    equation's residual variance and its loadings shrunk to match.
``grown``
    The rank k-1 solution plus a new factor along the leading direction of what it
    leaves unexplained.
``random-i``
    Seeded random loadings and variances (deterministic given ``seed``).

Each extra start runs :data:`SHORT_ITERATIONS` iterations; the best
:data:`N_POLISH` are continued to convergence.

Then, on tiny systems (:data:`AUTO_SMALL_CELLS`), or systems of few equations
(:data:`FLOOR_SEARCH_MAX_EQS`), where the extra starts ran and some start ended with
equations on the floor, :data:`FLOOR_SET_STARTS` ``moved-floor-...``
starts (:func:`~lowrank_sur.starts.floor_set_coefficients`): k equations on the floor
with their coefficients moved so that their residuals (the factors at such a point)
explain another equation's response as well as possible. With ``D`` on the floor the
alternating fitters cannot move those coefficients (the factors would no longer fit
the residuals), so a Heywood maximum whose coefficients are far from OLS is reached
from no start that begins at OLS (random small systems with few observations: 4 and
11 llf units missed, tests/test_global_maximum.py). The best is polished.

Then, on the same tiny systems,
a search over which equations are on the floor (``floor-...`` starts): with few
observations the Heywood points attract every start, and the highest one often has
another set of equations on the floor than the one the starts reach. Each
neighbouring set (one equation swapped, added or released) becomes a start
(:func:`~lowrank_sur.starts.heywood_start`: the residuals of the set as the first
factors) from the best fit's coefficients; the best is polished, and the search
moves there if it is higher (at most :data:`HEYWOOD_ROUNDS` moves, and
:data:`HEYWOOD_MAX_STARTS` starts a round).

The chosen fit is the best proper maximum (not degenerate); a degenerate point wins
only if every start ends on one. The warnings of the chosen fit are re-issued; those
of the others are dropped.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings

import numpy as np

from ..bounded import _basis, is_degenerate
from ..design import SURDesign
from ..exceptions import MultipleMaximaWarning, external_stacklevel
from ..options import FitOptions
from ..starts import floor_set_coefficients, heywood_start
from .common import Start
from .record import FitRecord

__all__ = ["fit_with_starts", "SHORT_ITERATIONS", "N_POLISH", "AUTO_STARTS"]

#: Iterations of each extra start before the best are polished.
SHORT_ITERATIONS = 25

#: Extra starts continued to convergence.
N_POLISH = 2

#: Starts in total when ``n_starts="auto"`` sees trouble in the first fit.
AUTO_STARTS = 6

#: With ``n_starts="auto"``, systems of at most this many response cells (N K) always
#: get the extra starts: they cost milliseconds there, and interior local maxima that
#: give no sign of trouble are most common with few observations.
AUTO_SMALL_CELLS = 300

#: With ``n_starts="auto"``, a first fit without trouble still gets
#: :data:`AUTO_FEW_OBS_STARTS` starts in all (the rank k-1 solution plus a factor, and a
#: random one) when N is below this multiple of the parameters per equation
#: (``max p_j + k``): with few observations per parameter, interior-looking fits are
#: often not the highest maximum (Munnell, N=17, p=5, rank 2: the principal-component
#: start stops at 2876.593, the grown start reaches 2877.622).
AUTO_FEW_OBS_RATIO = 5

#: Starts in all for those few-observation systems.
AUTO_FEW_OBS_STARTS = 3

#: Systems with at most this many equations get the searches over the equations on the
#: floor (like the tiny ones) whenever some start ended on the floor: with few
#: equations the sets are few, and the Heywood point the starts reach is often not the
#: highest (Stata's "common" system with two constraints, K=3, N=200, rank 1: ALS
#: stopped at -965.243 with equation 2 on the floor, the floor search reaches
#: EM's -959.809 with equation 3 on it).
FLOOR_SEARCH_MAX_EQS = 10

#: On few-observation systems (:data:`AUTO_FEW_OBS_RATIO`) that get no full floor search,
#: this many ``floor-...`` starts: the best fit with one more (or one other) equation on
#: the floor, the equations whose factors explain the most of their residual variance
#: first. Munnell, rank 2 (K=48, N=17): EM from every start stopped at the interior
#: 2876.593; with KY on the floor (the third most explained state) it reaches 2877.622,
#: the maximum ALS's grown start finds.
FEW_OBS_FLOOR_STARTS = 4

#: Relative llf difference beyond which two maxima count as distinct.
DISTINCT_RTOL = 1e-8

#: Moves of the search over the equations on the floor.
HEYWOOD_ROUNDS = 3

#: Starts per round of that search (sets beyond it are not tried).
HEYWOOD_MAX_STARTS = 24

#: Iterations of each start of that search before the best is polished.
HEYWOOD_SHORT = 10

#: Starts with ``rank`` equations on the floor and their coefficients moved
#: (:func:`~lowrank_sur.starts.floor_set_coefficients`), on tiny systems.
FLOOR_SET_STARTS = 3


def _run(fit, design, Y, rank, opts, start):
    """Fit, keeping the warnings instead of issuing them; return the record and them.

    A fitter whose likelihood is not the complete-data one (``missing="fiml"``) carries
    its own degeneracy check as the attribute ``is_degenerate(design, Y, rec, opts)``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = fit(design, Y, rank, opts, start)
    own_check = getattr(fit, "is_degenerate", None)
    if own_check is not None:
        rec.degenerate = bool(own_check(design, Y, rec, opts))
        return rec, list(caught)
    R = Y - design.fitted(rec.whitened_coefs)
    rec.degenerate = is_degenerate(R, rec.F, rec.D, rec.d_floor, rec.heywood,
                                   scale=rec.d_floor / opts.d_floor)
    return rec, list(caught)


def _outcome(rec: FitRecord, label: str) -> dict:
    return {"label": label, "llf": rec.llf, "converged": rec.converged,
            "degenerate": rec.degenerate, "heywood": int(rec.heywood.size),
            "iterations": rec.iterations, "evaluations": rec.evaluations,
            "polish_evaluations": rec.polish_evaluations}


def _release(rec: FitRecord, var: np.ndarray) -> Start | None:
    if rec.heywood.size == 0:
        return None
    F, D = rec.F.copy(), rec.D.copy()
    h = rec.heywood
    D[h] = 0.5 * var[h]
    comm = np.einsum("ij,ij->i", F[h], F[h])
    F[h] *= np.sqrt(np.clip(0.5 * var[h] / np.maximum(comm, np.finfo(float).tiny), 0, 1))[:, None]
    return Start(rec.whitened_coefs, F, D, "release")


def _grown(fit, design, Y, rank, opts) -> Start | None:
    if rank < 1:
        return None
    base, _ = _run(fit, design, Y, rank - 1, dataclasses.replace(opts, n_starts=1), None)
    R = Y - design.fitted(base.whitened_coefs)
    F, D = base.F, base.D
    # what the k-1 factors leave: R minus its posterior factor part, scaled by D^{-1/2}
    E = R.copy()
    if rank > 1:
        cov = base.cov
        E -= (R @ cov.W) @ (cov.L_inv @ F.T)
    E /= np.sqrt(D)
    _, s, vt = np.linalg.svd(E / np.sqrt(design.nobs), full_matrices=False)
    lam = max(s[0] ** 2 - 1.0, 0.1)
    f = np.sqrt(D) * vt[0] * np.sqrt(lam)
    return Start(base.whitened_coefs, np.column_stack([F, f]), D, "grown")


def _random(var: np.ndarray, rank: int, rng: np.random.Generator, label: str) -> Start:
    F = rng.standard_normal((var.size, rank)) * np.sqrt(var / (2.0 * max(rank, 1)))[:, None]
    D = rng.uniform(0.2, 0.8, var.size) * var
    return Start(None, F, D, label)


def _candidates(first: FitRecord, fit, design, Y, rank, opts, n_extra: int):
    """Yield up to ``n_extra`` extra starting points, the cheap informed ones first."""
    var = first.d_floor / opts.d_floor
    made = 0
    for make in (lambda: _release(first, var), lambda: _grown(fit, design, Y, rank, opts)):
        if made >= n_extra:
            return
        start = make()
        if start is not None:
            made += 1
            yield start
    rng = np.random.default_rng(opts.seed)
    for i in range(n_extra - made):
        yield _random(var, rank, rng, f"random-{i + 1}")


def _neighbour_sets(heywood, k_eqs: int, rank: int) -> list[tuple[int, ...]]:
    """The sets of 1 to ``rank`` equations one swap, addition or release from ``heywood``.

    From an interior fit (no equation on the floor) these are the single equations;
    from more than ``rank`` equations on the floor, its subsets of ``rank``.
    """
    H = set(int(j) for j in heywood)
    if len(H) > rank:
        return list(itertools.combinations(sorted(H), rank))
    out = []
    for i in sorted(H):
        out += [tuple(sorted(H - {i} | {j})) for j in range(k_eqs) if j not in H]
    if len(H) < rank:
        out += [tuple(sorted(H | {j})) for j in range(k_eqs) if j not in H]
    out += [tuple(sorted(H - {i})) for i in sorted(H) if len(H) > 1]
    return list(dict.fromkeys(out))


def _heywood_search(fit, design, Y, rank, quiet, runs: list,
                    max_starts: int | None = None) -> None:
    """Move the set of equations on the floor while that finds a higher maximum.

    With ``max_starts``, only that many sets per round, those whose equations the
    factors explain best (smallest ``D_j / S_jj`` at the best fit) first; otherwise up
    to :data:`HEYWOOD_MAX_STARTS` in the order of :func:`_neighbour_sets`. Appends every
    run to ``runs``.
    """
    short = dataclasses.replace(quiet, maxiter=min(quiet.maxiter, HEYWOOD_SHORT))
    tried: set = set()
    best = runs[_best(runs)][0]
    for _ in range(HEYWOOD_ROUNDS):
        # from an interior fit too: its equations one at a time on the floor
        tried.add(tuple(int(j) for j in best.heywood))
        R = Y - design.fitted(best.whitened_coefs)
        sets = [S for S in _neighbour_sets(best.heywood, design.k_eqs, rank) if S not in tried]
        if max_starts is not None:
            share = best.D / np.maximum(np.einsum("ij,ij->j", R, R) / R.shape[0],
                                        np.finfo(float).tiny)
            sets = sorted(sets, key=lambda S: float(share[list(S)].sum()))[:max_starts]
        sets = sets[:HEYWOOD_MAX_STARTS]
        if not sets:
            return
        tried.update(sets)
        trial = []
        for S in sets:
            F, D = heywood_start(R, rank, best.d_floor, S)
            label = "floor-" + ",".join(design.eq_names[j] for j in S)
            start = Start(best.whitened_coefs, F, D, label)
            trial.append((*_run(fit, design, Y, rank, short, start), label))
        trial.sort(key=lambda r: (not r[0].degenerate, r[0].llf), reverse=True)
        rec, _, label = trial[0]
        top = _run(fit, design, Y, rank, quiet, Start(rec.whitened_coefs, rec.F, rec.D, label))
        runs.extend([(*top, label)] + trial[1:])
        new = top[0]
        if new.degenerate or new.llf <= best.llf + DISTINCT_RTOL * max(1.0, abs(best.llf)):
            return
        best = new


def _floor_set_starts(fit, design, Y, rank, quiet, runs: list) -> None:
    """Heywood starts whose coefficients let the equations on the floor explain another one.

    Only when some start has ended with equations on the floor (Heywood points
    attract the fits). The best of :data:`FLOOR_SET_STARTS` short runs is polished;
    every run is appended to ``runs``.
    """
    if not any(rec.heywood.size for rec, _, _ in runs):
        return
    bases = [_basis(design, j) for j in range(design.k_eqs)]
    floor = runs[0][0].d_floor
    short = dataclasses.replace(quiet, maxiter=min(quiet.maxiter, SHORT_ITERATIONS))
    trial = []
    for S, fits in floor_set_coefficients(Y, bases, rank, FLOOR_SET_STARTS):
        F, D = heywood_start(Y - fits, rank, floor, S)
        label = "moved-floor-" + ",".join(design.eq_names[j] for j in S)
        start = Start(design.rmul(fits), F, D, label)
        trial.append((*_run(fit, design, Y, rank, short, start), label))
    if not trial:
        return
    trial.sort(key=lambda r: (not r[0].degenerate, r[0].llf), reverse=True)
    rec, _, label = trial[0]
    resumed = Start(rec.whitened_coefs, rec.F, rec.D, label)
    runs.append((*_run(fit, design, Y, rank, quiet, resumed), label))
    runs.extend(trial[1:])


def _search_floor(design: SURDesign, runs: list) -> bool:
    """Whether to search over the equations on the floor.

    On tiny systems always; on systems of few equations (:data:`FLOOR_SEARCH_MAX_EQS`)
    when some start ended on the floor.
    """
    if design.nobs * design.k_eqs <= AUTO_SMALL_CELLS:
        return True
    return (design.k_eqs <= FLOOR_SEARCH_MAX_EQS
            and any(rec.heywood.size for rec, _, _ in runs))


def _few_observations(design: SURDesign, rank: int) -> bool:
    """Fewer than :data:`AUTO_FEW_OBS_RATIO` observations per parameter of an equation."""
    return design.nobs < AUTO_FEW_OBS_RATIO * (design.pmax + rank)


def _n_extra(first: FitRecord, opts: FitOptions, design: SURDesign) -> int:
    if opts.n_starts == "auto":
        if design.nobs * design.k_eqs <= AUTO_SMALL_CELLS:
            return AUTO_STARTS - 1
        trouble = first.heywood.size > 0 or not first.converged or first.degenerate
        if trouble:
            return AUTO_STARTS - 1
        return AUTO_FEW_OBS_STARTS - 1 if _few_observations(design, first.rank) else 0
    return int(opts.n_starts) - 1


def _best(runs: list) -> int:
    """Index of the best proper maximum (converged first; a degenerate point only if all are).

    Runs within ``DISTINCT_RTOL`` of the best llf are the same maximum: the earliest
    of them is kept, so extra starts change the answer only when they find more.
    """
    for keep in (lambda r: not r.degenerate and r.converged, lambda r: not r.degenerate,
                 lambda r: True):
        pool = [i for i, (rec, _, _) in enumerate(runs) if keep(rec)]
        if pool:
            break
    top = max(runs[i][0].llf for i in pool)
    tol = DISTINCT_RTOL * max(1.0, abs(top))
    return next(i for i in pool if runs[i][0].llf >= top - tol)


def _count_maxima(runs: list) -> list[float]:
    """Distinct llf values of the proper, converged runs, in decreasing order."""
    values = sorted((rec.llf for rec, _, _ in runs if rec.converged and not rec.degenerate),
                    reverse=True)
    distinct: list[float] = []
    for v in values:
        if not distinct or abs(distinct[-1] - v) > DISTINCT_RTOL * max(1.0, abs(v)):
            distinct.append(v)
    return distinct


def fit_with_starts(fit, design: SURDesign, Y: np.ndarray, rank: int, opts: FitOptions,
                    start: Start | None = None) -> FitRecord:
    """Fit from one or several starting points and return the best proper maximum.

    Parameters
    ----------
    fit : callable
        A registered fitter's function.
    design, Y, rank, opts
        As for the fitter.
    start : Start, optional
        The user's starting point (``start_params``); default principal components.

    Returns
    -------
    FitRecord
        The chosen fit, with ``starts`` (every start's outcome, the chosen first) and
        ``n_maxima``.
    """
    first, caught = _run(fit, design, Y, rank, opts, start)
    runs = [(first, caught, start.label if start is not None else "principal components")]
    n_extra = _n_extra(first, opts, design) if rank > 0 else 0
    if n_extra:
        # only the first fit prints (disp) and calls back; the others are silent
        quiet = dataclasses.replace(opts, disp=False, callback=None)
        short = dataclasses.replace(quiet, maxiter=min(opts.maxiter, SHORT_ITERATIONS))
        trial = [(*_run(fit, design, Y, rank, short, s), s.label)
                 for s in _candidates(first, fit, design, Y, rank, opts, n_extra)]
        trial.sort(key=lambda r: (not r[0].degenerate, r[0].llf), reverse=True)
        for rec, _, label in trial[:N_POLISH]:
            resumed = Start(rec.whitened_coefs, rec.F, rec.D, label)
            runs.append((*_run(fit, design, Y, rank, quiet, resumed), label))
        runs.extend(trial[N_POLISH:])
        # the floor searches look among floor points: none when every start is degenerate
        proper = not all(rec.degenerate for rec, _, _ in runs)
        if proper and _search_floor(design, runs):
            _floor_set_starts(fit, design, Y, rank, quiet, runs)
            _heywood_search(fit, design, Y, rank, quiet, runs)
        elif proper and _few_observations(design, rank):
            _heywood_search(fit, design, Y, rank, quiet, runs, FEW_OBS_FLOOR_STARTS)
    best = _best(runs)
    if (best and not runs[best][0].converged and not runs[best][0].degenerate
            and runs[best][0].iterations < opts.maxiter):
        # a short run chosen because none converged: continue it (its warnings would
        # name the short maxiter)
        rec = runs[best][0]
        resumed = Start(rec.whitened_coefs, rec.F, rec.D, runs[best][2])
        quiet = dataclasses.replace(opts, disp=False, callback=None)
        runs[best] = (*_run(fit, design, Y, rank, quiet, resumed), runs[best][2])
    rec, caught, label = runs[best]
    maxima = _count_maxima(runs)
    rec.n_maxima = max(len(maxima), 1)
    rec.starts = [_outcome(rec, label)] + [_outcome(r, lab) for i, (r, _, lab) in
                                            enumerate(runs) if i != best]
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=external_stacklevel())
    if len(maxima) > 1:
        warnings.warn(
            f"the starts reached {len(maxima)} distinct maxima (llf {maxima[0]:.6g} chosen, "
            f"next {maxima[1]:.6g}); results.starts lists them",
            MultipleMaximaWarning,
            stacklevel=external_stacklevel(),
        )
    return rec
