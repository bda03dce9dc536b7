"""Missing rows across equations: the rows every equation has, and the ``missing=`` policy.

Each equation arrives as a :class:`Part` (float arrays on some of the data's rows);
:func:`complete_rows` checks the values (inf, a constant response) and finds the rows
with no missing value in any equation, :func:`check_kept` and :func:`report_dropped`
apply ``missing="drop"`` / ``"raise"``, and :func:`aligned_arrays` returns the model's
own N x K responses and K regressor matrices on the kept rows.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .exceptions import DroppedRowsWarning, SpecificationError, external_stacklevel

__all__ = ["Part", "check_finite", "complete_rows", "report_dropped", "check_kept",
           "aligned_arrays", "observed_cells", "observed_arrays", "report_regressor_gaps"]


def check_finite(label: str, name: str, values: np.ndarray, what: str) -> None:
    """Refuse inf in one variable of equation ``label`` (NaN is a missing value)."""
    if np.any(np.isinf(values)):
        raise SpecificationError(
            f"equation {label!r}: {what} {name!r} contains inf; replace or drop those rows"
        )


@dataclass
class Part:
    """One equation's response and regressors as float arrays on some of the data's rows.

    ``pos`` holds the positions of those rows in the common index (None: every row, in
    order); ``design_info`` is patsy's design for a formula equation.
    """

    y: np.ndarray
    X: np.ndarray
    pos: np.ndarray | None = None
    design_info: object | None = None
    plain: bool = False  # a formula of bare float columns, built without patsy


def _check_values(e, yv: np.ndarray, Xv: np.ndarray) -> np.ndarray:
    """Rows of one equation with no missing value (after the inf and constant checks)."""
    if np.isfinite(yv).all() and np.isfinite(Xv).all():
        ok = None
    else:
        check_finite(e.label, e.dep_name, yv, "response")
        inf_cols = np.flatnonzero(np.isinf(Xv).any(axis=0))
        if inf_cols.size:
            check_finite(e.label, e.exog_names[inf_cols[0]], Xv[:, inf_cols[0]], "regressor")
        ok = ~np.isnan(yv) & ~np.isnan(Xv).any(axis=1)
    finite_y = yv if ok is None else yv[~np.isnan(yv)]
    if finite_y.size > 1 and finite_y.max() == finite_y.min():
        raise SpecificationError(
            f"equation {e.label!r}: the response {e.dep_name!r} is constant "
            f"({float(finite_y[0])!r} in every row); its error variance is zero and the "
            "likelihood is unbounded. Drop the equation"
        )
    return ok


def complete_rows(eqs, parts, n_rows: int) -> np.ndarray:
    """Rows with no missing value in any equation (after the inf and constant checks).

    Formula matrices hold only their complete rows (patsy drops the others); pairs hold
    every row, with NaN where values are missing.
    """
    keep = np.ones(n_rows, dtype=bool)
    for e, part in zip(eqs, parts):
        ok = _check_values(e, part.y, part.X)
        if ok is None and part.pos is None:
            continue
        complete = np.zeros(n_rows, dtype=bool)
        if part.pos is None:
            complete[:] = ok
        else:
            complete[part.pos] = True if ok is None else ok
        if not complete.any():
            raise SpecificationError(
                f"equation {e.label!r}: every row has a missing value in its variables "
                f"({e.formula!r} or its endog/exog), so no observation is left; check "
                "those columns"
                if e.formula is not None else
                f"equation {e.label!r}: every row has a missing value in its endog or exog, "
                "so no observation is left"
            )
        keep &= complete
    return keep


def report_dropped(notes: list[str], missing: str) -> None:
    """Warn (or raise, with ``missing="raise"``) about rows the transforms made missing."""
    if not notes:
        return
    if missing == "raise":
        raise SpecificationError("; ".join(notes) + "; missing='raise' refuses them: fix the "
                                 "data or the formula, or use missing='drop'")
    warnings.warn(
        "; ".join(notes) + "; these rows are dropped from every equation (see n_dropped)",
        DroppedRowsWarning,
        stacklevel=external_stacklevel(),
    )


def check_kept(n_dropped: int, keep: np.ndarray, missing: str) -> None:
    """Refuse dropped rows with ``missing="raise"``, and a system with no row left."""
    if n_dropped and missing == "raise":
        raise SpecificationError(
            f"{n_dropped} rows have missing values and missing='raise'; use missing='drop'"
        )
    if not keep.any():
        raise SpecificationError(
            "every row has a missing value in some equation's variables, so no observation "
            "is left; check the columns with many NaNs"
        )


def aligned_arrays(parts, keep: np.ndarray, n_dropped: int):
    """The N x K responses and the K regressor matrices on the kept rows (own copies)."""
    n_kept = int(keep.sum())
    endog = np.empty((n_kept, len(parts)))
    exog = []
    for j, part in enumerate(parts):
        full = part.y.shape[0] == n_kept  # formula designs rebuilt on the kept rows
        endog[:, j] = part.y if full else part.y[keep]
        exog.append(part.X if full and (part.X.flags.owndata or part.plain) else
                    np.array(part.X if full else part.X[keep], dtype=float))
    return endog, exog


def _full_rows(part: Part, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """One equation's response and regressors on all ``n_rows`` rows (NaN where absent)."""
    if part.pos is None:
        return part.y, part.X
    y = np.full(n_rows, np.nan)
    X = np.full((n_rows, part.X.shape[1]), np.nan)
    y[part.pos] = part.y
    X[part.pos] = part.X
    return y, X


def observed_cells(eqs, parts, n_rows: int) -> np.ndarray:
    """``missing="fiml"``: the N x K mask of cells whose response and regressors are observed.

    Runs the inf and constant-response checks of :func:`complete_rows`; an equation with
    no observed row raises.
    """
    obs = np.zeros((n_rows, len(parts)), dtype=bool)
    for j, (e, part) in enumerate(zip(eqs, parts)):
        ok = _check_values(e, part.y, part.X)
        local = np.ones(part.y.shape[0], dtype=bool) if ok is None else ok
        if part.pos is None:
            obs[:, j] = local
        else:
            obs[part.pos[local], j] = True
        if not obs[:, j].any():
            raise SpecificationError(
                f"equation {e.label!r}: every row has a missing value in its response or "
                "regressors, so no observation is left; check those columns"
            )
    return obs


def observed_arrays(parts, obs: np.ndarray, keep: np.ndarray):
    """``missing="fiml"``: responses (NaN where unobserved) and zero-filled regressors.

    On the kept rows (those where some equation is observed); own copies.
    """
    n_rows = obs.shape[0]
    endog = np.empty((int(keep.sum()), len(parts)))
    exog = []
    for j, part in enumerate(parts):
        y, X = _full_rows(part, n_rows)
        o = obs[keep, j]
        endog[:, j] = np.where(o, y[keep], np.nan)
        exog.append(np.where(o[:, None], X[keep], 0.0))
    return endog, exog


def report_regressor_gaps(eqs, parts, obs: np.ndarray, frame=None) -> dict:
    """``missing="fiml"``: warn about responses treated as missing for a missing regressor.

    Returns ``{label: count}`` for the equations with such rows. Formula equations are
    counted when their response is a column of ``frame``.
    """
    gaps = {}
    for j, (e, part) in enumerate(zip(eqs, parts)):
        if part.pos is None:
            seen = ~np.isnan(part.y)
        elif frame is not None and e.dep_name in frame.columns:
            seen = frame[e.dep_name].notna().to_numpy()
        else:
            continue
        n = int(np.sum(seen & ~obs[:, j]))
        if n:
            gaps[e.label] = n
    if gaps:
        listed = ", ".join(f"{lab!r} ({n})" for lab, n in list(gaps.items())[:10])
        more = f" and {len(gaps) - 10} more" if len(gaps) > 10 else ""
        warnings.warn(
            f"missing='fiml': equation(s) {listed}{more} have a missing regressor in rows "
            "where the response is observed; those responses are treated as missing "
            "(see model.n_regressor_missing)",
            DroppedRowsWarning,
            stacklevel=external_stacklevel(),
        )
    return gaps
