"""Rank selection by fitting: every candidate rank, a comparison table, the chosen fit.

The criteria themselves (AIC/BIC, Bai-Ng, Ahn-Horenstein, the exclusion rules and the
choice) live in :mod:`lowrank_sur.selection`; this module runs the candidate fits
(:func:`~lowrank_sur.fitters.api.fit_design`) and collects what they say.

References
----------
Bai, J. and Ng, S. (2002). Determining the number of factors in approximate factor
models. Econometrica 70, 191-221.

Ahn, S. C. and Horenstein, A. R. (2013). Eigenvalue ratio test for the number of
factors. Econometrica 81, 1203-1227.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..bounded import Boundedness, check_bounded, check_bounded_observed
from ..design import SURDesign
from ..exceptions import (
    ConvergenceWarning,
    HeywoodWarning,
    IdentificationWarning,
    RankSelectionWarning,
    external_stacklevel,
)
from ..options import FitOptions, check_int
from ..selection import (
    choose_rank,
    exclusion_after_fit,
    exclusion_before_fit,
    factor_criteria,
    information_criteria,
    n_free_params,
    residual_eigenvalues,
)
from .api import fit_design
from .record import FitRecord

__all__ = ["select_rank", "candidate_max_rank"]


def candidate_max_rank(design: SURDesign, max_rank: int | None) -> int:
    """The largest candidate rank: ``max_rank`` checked, or ``min(K - 1, N - 1, 10)``."""
    limit = min(design.k_eqs - 1, design.nobs - 1)
    if max_rank is None:
        return max(0, min(limit, 10))
    max_rank = check_int("max_rank", max_rank, 0)
    if max_rank > limit:
        raise ValueError(
            f"max_rank={max_rank} is too large: ranks must be below the number of "
            f"equations K={design.k_eqs} and of observations N={design.nobs}; use at most "
            f"max_rank={limit}"
        )
    return max_rank


def _bounded(design: SURDesign, Y: np.ndarray, rank: int) -> Boundedness:
    """:func:`~lowrank_sur.bounded.check_bounded`, or for missing responses its variant.

    With unobserved cells, :func:`~lowrank_sur.bounded.check_bounded_observed` (each
    set of equations on its jointly observed rows).
    """
    if getattr(design, "observed", None) is not None:
        return check_bounded_observed(design, Y, rank, design.observed)
    return check_bounded(design, Y, rank)


def select_rank(design: SURDesign, Y: np.ndarray, crit: str, max_rank: int | None,
                opts: FitOptions) -> tuple[FitRecord, pd.DataFrame]:
    """Fit the candidate ranks; return the chosen fit's record and the comparison table.

    Parameters
    ----------
    design : SURDesign
        The system's design.
    Y : ndarray, shape (N, K)
        The responses.
    crit : str
        A criterion of :data:`lowrank_sur.selection.CRITERIA` (lower case).
    max_rank : int or None
        The largest candidate (:func:`candidate_max_rank`).
    opts : FitOptions
        Options of every candidate fit.

    Returns
    -------
    record : FitRecord
        The selected rank's fit.
    table : DataFrame
        One row per candidate rank: llf, df, the criteria, convergence, Heywood and
        degenerate flags, ``excluded`` (why a rank was not eligible) and ``selected``.

    Notes
    -----
    Ranks past the Ledermann bound or with an unbounded likelihood are not fitted;
    fitted ranks that did not converge or are degenerate are excluded (the ``excluded``
    column says why). ``ic_p1``, ``ic_p2`` and ``er`` come from the OLS residuals
    (:func:`~lowrank_sur.selection.factor_criteria`). The selected fit's warnings are
    issued again, the other candidates' summarised in one warning.
    """
    top = candidate_max_rank(design, max_rank)
    eigs = residual_eigenvalues(Y - design.fitted(design.ols(Y)))
    factor_ic = factor_criteria(eigs, design.nobs, design.k_eqs, range(top + 1))
    rows, records, caught = [], {}, {}
    for k in range(top + 1):
        df = n_free_params(design.k_params, design.k_eqs, k)
        row = {"rank": k, "llf": np.nan, "df": df, "aic": np.nan, "bic": np.nan,
               **{c: v[k] for c, v in factor_ic.items()},
               "converged": pd.NA, "degenerate": pd.NA, "iterations": pd.NA,
               "heywood": pd.NA,
               "excluded": exclusion_before_fit(k, design.k_eqs, _bounded(design, Y, k))}
        if not row["excluded"]:
            with warnings.catch_warnings(record=True) as got:
                warnings.simplefilter("always")
                rec = fit_design(design, Y, k, opts)
            records[k] = rec
            caught[k] = [w for w in got if not issubclass(w.category, IdentificationWarning)]
            row.update(llf=rec.llf, **information_criteria(rec.llf, df, design.nobs),
                       converged=rec.converged, degenerate=rec.degenerate,
                       iterations=rec.iterations, heywood=len(rec.heywood),
                       excluded=exclusion_after_fit(rec))
        rows.append(row)
    table = pd.DataFrame(rows).set_index("rank")
    for col in ("iterations", "heywood"):
        table[col] = table[col].astype("Int64")
    for col in ("converged", "degenerate"):
        table[col] = table[col].astype("boolean")
    best = choose_rank(table, crit)
    if best not in records:  # nothing eligible was fitted: rank 0 is always bounded
        records[best] = fit_design(design, Y, best, opts)
        caught[best] = []
    table["selected"] = table.index == best
    table.attrs["criterion"] = crit
    _selection_warnings(crit, table, caught, best)
    return records[best], table


def _selection_warnings(crit: str, table: pd.DataFrame, caught: dict, best: int) -> None:
    """Re-issue the selected fit's warnings; summarise the other candidates' in one."""
    stacklevel = external_stacklevel()
    for w in caught.get(best, []):
        warnings.warn(str(w.message), w.category, stacklevel=stacklevel)
    others = table.drop(index=best)
    excluded = [int(k) for k in others.index[others["excluded"] != ""]]
    heywood = [int(k) for k in others.index[(others["heywood"].fillna(0) > 0)
                                            & (others["excluded"] == "")]]
    if not excluded and not heywood:
        return
    parts = []
    if excluded:
        fitted = [k for k in excluded if not pd.isna(table.loc[k, "converged"])]
        unconverged = [k for k in fitted if not table.loc[k, "converged"]]
        parts.append(f"rank(s) {excluded} were excluded (" + "; ".join(
            f"{k}: {table.loc[k, 'excluded'].split(' (')[0].split(':')[0]}"
            for k in excluded) + ")")
    if heywood:
        parts.append(f"rank(s) {heywood} had Heywood cases")
    category = HeywoodWarning
    if excluded and unconverged:
        category = ConvergenceWarning
    elif excluded:
        category = RankSelectionWarning
    warnings.warn(
        f"rank selection by {crit.upper()} chose rank {best}; among the other candidates "
        f"{' and '.join(parts)}; see results.rank_selection",
        category,
        stacklevel=stacklevel,
    )
