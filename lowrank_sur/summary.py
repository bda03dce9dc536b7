"""The results summary: header, one coefficient table per equation, the factor structure.

:func:`build_summary` is what :meth:`LowRankSURResults.summary
<lowrank_sur.results.LowRankSURResults.summary>` returns; it reads only what the
results keep after ``remove_data()``.
"""

from __future__ import annotations

import numpy as np
from statsmodels.iolib.summary import Summary, summary_params
from statsmodels.iolib.table import SimpleTable

from .constraints import describe_constraints
from .covariance import LowRankCovariance
from .exceptions import DataRemovedError
from .fitters import get_fitter
from .options import check_int

__all__ = ["build_summary", "check_alpha", "shown_equations"]


def check_alpha(alpha) -> float:
    """Validate a significance level: a number in (0, 1)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise TypeError(
            f"alpha must be a number in (0, 1), e.g. 0.05 for 95% intervals, got {alpha!r}"
        )
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(
            f"alpha must be in (0, 1), e.g. 0.05 for 95% intervals, got {alpha!r}"
        )
    return float(alpha)


def shown_equations(labels: list[str], max_equations, equations) -> list[int]:
    """Indices of the equation blocks to show."""
    if equations is None:
        n = check_int("max_equations", max_equations, 0)
        return list(range(min(len(labels), n)))
    if isinstance(equations, str):
        equations = [equations]
    try:
        equations = list(equations)
    except TypeError:
        raise TypeError(
            f"equations must be a list of equation labels, got {type(equations).__name__}"
        ) from None
    unknown = [e for e in equations if e not in labels]
    if unknown:
        raise KeyError(
            f"unknown equation label(s) {unknown[:10]}; the labels are {labels[:10]}"
            f"{' ...' if len(labels) > 10 else ''}"
        )
    return list(dict.fromkeys(labels.index(e) for e in equations))  # each once, in order


def _header(res) -> tuple[list, list]:
    left = [
        ("Model:", ["LowRankSUR"]),
        ("Method:", [res._record.label or get_fitter(res.method).label]),
        ("Rank (factors):", ["full" if _full(res) else str(res.rank)]),
        ("No. Equations:", [str(res.k_eqs)]),
        ("No. Observations:", [str(res.nobs)]),
        ("Rows dropped:", [str(res.n_dropped)]),
        ("Restrictions:", [str(res.k_constraints) if res.k_constraints else "none"]),
        ("Starts (maxima):", [f"{len(res.starts) if res.starts is not None else 1} "
                              f"({res.n_maxima})"]),
        ("Date:", None),
        ("Time:", None),
    ]
    right = [
        ("Log-Likelihood:", [f"{res.llf:#.6g}"]),
        ("AIC:", [f"{res.aic:#.6g}"]),
        ("BIC:", [f"{res.bic:#.6g}"]),
        ("Converged:", [str(res.converged)]),
        ("Iterations:", [str(res.iterations)]),
        ("Heywood cases:", [str(len(res.heywood))]),
        ("Covariance Type:", [res.cov_type]),
        ("Df Residuals:", [str(res.df_resid)]),
        ("Bounded likelihood:", [str(res.likelihood_bounded)]),
        ("Degenerate:", [str(res.degenerate)]),
    ]
    model = res.model
    if getattr(model, "missing", "drop") == "fiml":
        cells = model.nobs * model.k_eqs
        left.insert(5, ("Observed cells:", [f"{model.nobs_cells} of {cells} "
                                            f"({100.0 * model.nobs_cells / cells:.1f}%)"]))
        right.insert(0, ("Missing responses:", ["FIML (MAR)"]))
    return left, right


def _missing_note(res) -> list[str]:
    """Observed rows per equation, for a fit with missing responses."""
    model = res.model
    if getattr(model, "missing", "drop") != "fiml":
        return []
    counts = model.nobs_eqs
    listed = ", ".join(f"{lab} {n}" for lab, n in list(counts.items())[:10])
    more = f", ... ({len(counts) - 10} more)" if len(counts) > 10 else ""
    return [f"Missing responses by full-information ML: {model.nobs_cells} observed cells "
            f"in {model.nobs} rows; observed rows per equation: {listed}{more} "
            "(model.nobs_eqs)."]


def _maximum_notes(res) -> list[str]:
    """What the summary says about the maximum: bounded, degenerate, several maxima."""
    notes = []
    if not res.likelihood_bounded:
        notes.append(
            "WARNING: the likelihood at this rank is unbounded for these data; the "
            "estimate is at best a local maximum, not the MLE (use a lower rank)."
        )
    if res.degenerate:
        notes.append(
            "WARNING: degenerate fit: the likelihood keeps rising as the floor on D is "
            "lowered; these estimates are not at a maximum."
        )
    if res.n_maxima > 1:
        notes.append(
            f"{res.n_maxima} distinct maxima were found from {len(res.starts)} starts; "
            "the best proper one is reported (results.starts)."
        )
    return notes


def _notes(res, shown, labels) -> list[str]:
    notes = []
    if len(shown) < len(labels):
        notes.append(
            f"Showing {len(shown)} of {len(labels)} equations; results.params, "
            "results.bse and results.factor_summary() hold all of them, and "
            "summary(equations=[...]) selects others."
        )
    if not res.converged:
        notes.append(
            f"WARNING: the fit did not converge in {res.iterations} iterations; "
            "the estimates are not the MLE (increase maxiter)."
        )
    notes.extend(_maximum_notes(res))
    notes.extend(_missing_note(res))
    if (res._record.label or "").startswith("Two-step"):
        notes.append(
            "Two-step FGLS is a one-step estimator, not a maximum of the likelihood: the "
            "log-likelihood is evaluated at its estimates (iterate=True gives the MLE)."
        )
    if res.heywood:
        notes.append(
            "Heywood case(s): idiosyncratic variance at its floor for "
            f"{', '.join(res.heywood[:10])}{' ...' if len(res.heywood) > 10 else ''}."
        )
    if res._record.constraints is not None:
        R, q = res._record.constraints
        notes.append("Restrictions imposed in estimation: "
                     + "; ".join(describe_constraints(R, q, list(res.model.param_names))) + ".")
    notes.append(res._coef_cov.note)
    if not res.use_t:
        notes.append("p-values and intervals use the normal distribution (use_t=False).")
    else:
        if getattr(res._coef_cov, "df_inference", None) is not None:
            what = "G - 1, G clusters"
        elif res._fit_options.t_df == "equation":
            what = "N minus the largest number of regressors in an equation"
        else:
            what = "N K - P" + (" + q, q restrictions" if res.k_constraints else "")
        notes.append(f"use_t=True: p-values and intervals use t({res.df_resid_inference}) "
                     f"({what}), Wald tests F.")
    if getattr(res, "debiased", False):
        notes.append("debiased=True: the coefficient covariance uses Sigma scaled as "
                     "Stata's dfk, Sigma_ij N / sqrt((N - p_i)(N - p_j)), with D scaled by "
                     "N / (N - p_j - k).")
    return notes


def _full(res) -> bool:
    """Whether the fit has an unrestricted Sigma (no factor structure)."""
    return not isinstance(res.error_cov, LowRankCovariance)


def _rsquared_text(res, j: int) -> str:
    """``"    R-squared: 0.9213"`` for equation j, or empty when it cannot be computed."""
    try:
        return f"    R-squared: {res.rsquared.iloc[j]:.4f}"
    except DataRemovedError:
        return ""
def column_format(values) -> str:
    """One format for a whole column: fixed point when the magnitudes allow, else ``.3e``.

    Fixed point with four significant digits for the largest entry, when that leaves
    every nonzero entry at least two (magnitudes from 1e-3 to 1e6, within a ratio 1e2
    of each other); scientific notation for all entries otherwise.
    """
    a = np.abs(np.asarray(values, dtype=float))
    a = a[np.isfinite(a) & (a > 0)]
    if a.size == 0:
        return ".3f"
    top, low = float(a.max()), float(a.min())
    decimals = max(0, 3 - int(np.floor(np.log10(top))))
    if top >= 1e6 or low < 10.0 ** (1 - decimals) or top < 1e-3:
        return ".3e"
    return f".{decimals}f"


def factor_table(res, shown) -> SimpleTable:
    """The per-equation factor structure of the shown equations.

    Loadings on the correlation scale (``std_factor_r``, comparable across equations),
    uniqueness, communality and common share; one number format per column
    (:func:`column_format`).
    """
    fs = res.factor_summary()
    show_loadings = 0 < res.rank <= 5
    cols = ["uniqueness", "communality", "common_share"]
    if show_loadings:
        cols = [f"std_factor_{r + 1}" for r in range(res.rank)] + cols
    sub = fs.iloc[list(shown)]
    fmts = {c: ".3f" if c.startswith("std_") or c == "common_share" else column_format(sub[c])
            for c in cols}
    data = [[format(sub.iloc[i][c], fmts[c]) for c in cols] for i in range(len(sub))]
    stubs = [res.equation_labels[j] for j in shown]
    title = f"Error factor structure (rank {res.rank}"
    if res.rank:
        share = fs.attrs["factor_share"]
        title += "; share of error variance: " + ", ".join(f"{v:.1%}" for v in share.to_numpy())
    title += ")"
    return SimpleTable(data, headers=cols, stubs=stubs, title=title)


def _short_reason(reason: str) -> str:
    return reason.split(" (")[0].split(":")[0]


def rank_selection_table(res) -> SimpleTable | None:
    """The candidate ranks of ``rank="aic"/"bic"/...``: criterion and why any was excluded."""
    table = res.rank_selection
    if table is None:
        return None
    crit = table.attrs.get("criterion", "bic")
    cols = ["llf", "df", crit]
    data, stubs = [], []
    for k, row in table.iterrows():
        status = ("selected" if row["selected"] else
                  f"excluded: {_short_reason(row['excluded'])}" if row["excluded"] else "")
        data.append([("" if np.isnan(row[c]) else f"{row[c]:#.6g}") for c in cols] + [status])
        stubs.append(str(k))
    return SimpleTable(data, headers=cols + ["status"], stubs=stubs,
                       title=f"Rank selection by {crit.upper()} (results.rank_selection)")


def build_summary(res, alpha: float = 0.05, max_equations: int = 20,
                  equations=None) -> Summary:
    """The summary of a :class:`~lowrank_sur.results.LowRankSURResults` (see its method)."""
    alpha = check_alpha(alpha)
    labels = res.equation_labels
    shown = shown_equations(labels, max_equations, equations)
    left, right = _header(res)
    smry = Summary()
    smry.add_table_2cols(res, gleft=left, gright=right, title="Low-Rank SUR Results")
    params = np.asarray(res.params)
    bse = np.asarray(res.bse)
    tv = params / bse
    pv = np.asarray(res.pvalues)
    ci = np.asarray(res.conf_int(alpha))
    d = res.model.design
    for j in shown:
        eq = res.model.system.equations[j]
        sl = slice(d.offsets[j], d.offsets[j + 1])
        tab = summary_params(
            (res, params[sl], bse[sl], tv[sl], pv[sl], ci[sl]),
            yname=eq.dep_name,
            xname=list(eq.exog_names),
            alpha=alpha,
            use_t=res.use_t,
            title=(f"Equation: {eq.label}    Dependent variable: {eq.dep_name}"
                   f"{_rsquared_text(res, j)}"),
        )
        smry.tables.append(tab)
    if not _full(res):
        smry.tables.append(factor_table(res, shown))
    selection = rank_selection_table(res)
    if selection is not None:
        smry.tables.append(selection)
    smry.add_extra_txt(_notes(res, shown, labels))
    return smry
