"""One formula for every entity of a long panel: the system of :meth:`LowRankSUR.from_panel`.

The data follow linearmodels' panel convention: a long DataFrame whose index is an
(entity, time) MultiIndex. Every entity is one equation, every time one observation,
and the formula is evaluated by **one** patsy call on the long frame (so every term
patsy allows works, ``C()``, transforms and interactions included). The long matrices
are then cut into one response and one regressor matrix per entity on the common time
index.

Conventions (documented in the user guide):

* Equation labels are ``str(entity)`` with the entities sorted (as linearmodels sorts
  them; in order of first appearance when they cannot be compared), times sorted too;
  parameter names are ``"{entity}_{column}"`` with patsy's column names.
* Missing values follow ``missing="drop"`` of the dict-of-formulas path: a time at
  which any entity has a missing value, or no row, is dropped for every entity.
* Stateful transforms (``center``, ``standardize``, ``C()`` levels, spline knots) are
  learned once, on the pooled estimation sample (all entities at the kept times),
  so every entity uses the same transform. With plain columns, functions and
  interactions the fit is the one of the dict of formulas ``{entity: formula}`` on the
  wide data; with ``center(x)`` the slopes are the same and only the intercepts move.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .exceptions import SpecificationError
from .formula import (
    apply_design,
    column_types,
    formula_matrices,
    freeze_design,
    referenced_columns,
    transform_nan_rows,
)
from .rows import check_kept, report_dropped
from .system import Equation, EquationSystem

__all__ = ["PANEL_LABEL", "PanelInfo", "build_panel_system", "is_panel", "panel_predict"]

#: The label of the panel formula in messages (its equations are the entities).
PANEL_LABEL = "panel formula"


class PanelInfo:
    """What a panel model keeps to apply its formula to new long data.

    Attributes
    ----------
    spec : Equation
        The formula, its fitted patsy design (pickled like an equation's), the columns
        it reads and their dtypes.
    entities : pandas.Index
        The entities (original values) in the order of the equations.
    index_names : list
        The names of the (entity, time) index levels.
    """

    def __init__(self, spec, entities: pd.Index, index_names) -> None:
        self.spec = spec
        self.entities = entities
        self.index_names = list(index_names)


def _check_panel_data(data) -> pd.DataFrame:
    if not isinstance(data, pd.DataFrame):
        raise TypeError(
            "data must be a long pandas DataFrame with an (entity, time) MultiIndex, got "
            f"{type(data).__name__}"
        )
    if not isinstance(data.index, pd.MultiIndex) or data.index.nlevels != 2:
        raise SpecificationError(
            "data must have a two-level (entity, time) MultiIndex, linearmodels' panel "
            "convention; e.g. df.set_index(['firm', 'year'])"
        )
    if len(data) == 0:
        raise SpecificationError("data has no rows; give at least one observation")
    if not data.index.is_unique:
        dup = data.index[data.index.duplicated()][0]
        raise SpecificationError(
            f"data has several rows for (entity, time) {dup!r}; each entity needs one row "
            "per time"
        )
    if isinstance(data.columns, pd.MultiIndex):
        raise SpecificationError(
            "data has MultiIndex columns, which formulas cannot name; flatten them first"
        )
    return data


def _codes(index: pd.MultiIndex, level: int) -> tuple[np.ndarray, pd.Index]:
    """Integer codes of one index level and its values, sorted (unused values left out).

    Read from the MultiIndex's own codes and levels, not from the level's values row by
    row; values that cannot be compared keep their order.
    """
    codes = np.asarray(index.codes[level], dtype=np.intp)
    values = index.levels[level]
    if codes.size and codes.min() < 0:
        raise SpecificationError("data's index has missing entity or time labels; drop them")
    used = np.zeros(len(values), dtype=bool)
    used[codes] = True
    if not used.all():
        codes = (np.cumsum(used) - 1)[codes]
        values = values[used]
    if not values.is_monotonic_increasing:
        try:
            order = np.asarray(values.argsort())
        except TypeError:
            order = np.arange(len(values))
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        codes, values = rank[codes], values[order]
    return codes, values


def _entity_codes(info: PanelInfo, index: pd.MultiIndex) -> np.ndarray:
    """The equation of every row of new long data; unknown entities raise."""
    per_level = info.entities.get_indexer(index.levels[0])
    ent = per_level[np.asarray(index.codes[0])]
    if np.any(ent < 0):
        unknown = index.levels[0][per_level < 0]
        raise SpecificationError(
            f"the new data have entities the model was not fitted on: {list(unknown[:5])}; "
            "predict only for the fitted entities"
        )
    return ent


def _entity_labels(entities: pd.Index) -> list[str]:
    labels = [str(e) for e in entities]
    if len(set(labels)) != len(labels):
        seen: dict[str, object] = {}
        for e, lab in zip(entities, labels):
            if lab in seen:
                raise SpecificationError(
                    f"entities {seen[lab]!r} and {e!r} have the same label {lab!r} as "
                    "strings; equation labels must be distinct"
                )
            seen[lab] = e
    return labels


def _long_matrices(formula: str, frame: pd.DataFrame, eval_env):
    """Response and regressors of the long frame (positional index), one patsy call."""
    y, X = formula_matrices(PANEL_LABEL, formula, frame, eval_env)
    pos = X.index.to_numpy()
    return y.to_numpy(dtype=float)[:, 0], X.to_numpy(dtype=float), pos, y, X


def _check_long_values(y, X, ent, labels, dep, names) -> np.ndarray:
    """Inf refused naming the entity; returns the rows without NaN."""
    ok = np.isfinite(y) & np.isfinite(X).all(axis=1)
    if ok.all():
        return ok
    bad_inf = np.isinf(y) | np.isinf(X).any(axis=1)
    if bad_inf.any():
        i = int(np.flatnonzero(bad_inf)[0])
        col = dep if np.isinf(y[i]) else names[int(np.flatnonzero(np.isinf(X[i]))[0])]
        raise SpecificationError(
            f"equation {labels[ent[i]]!r}: {col!r} contains inf; replace or drop those rows"
        )
    return ok


def _transform_notes(frame, cols, pos, ent, labels, formula) -> list[str]:
    """Rows patsy dropped although the data have values there, per entity."""
    if pos.size == len(frame):
        return []
    made = transform_nan_rows(frame, cols, pos)
    if not made.any():
        return []
    counts = np.bincount(ent[made], minlength=len(labels))
    hit = np.flatnonzero(counts)
    shown = ", ".join(f"{labels[j]!r} ({counts[j]} rows)" for j in hit[:3])
    more = f" and {hit.size - 3} more" if hit.size > 3 else ""
    return [
        f"equations {shown}{more}: rows are NaN after evaluating {formula!r} although the "
        "data have values there (e.g. the log of a non-positive number)"
    ]


def build_panel_system(formula: str, data, missing: str = "drop", eval_env=0):
    """The :class:`~lowrank_sur.system.EquationSystem` of one formula on a long panel.

    Parameters
    ----------
    formula : str
        A patsy formula, the same for every entity.
    data : DataFrame
        Long data with an (entity, time) MultiIndex.
    missing : {"drop", "raise"}
        A time at which some entity has a missing value (or no row) is dropped for every
        entity, or raises.
    eval_env : patsy.EvalEnvironment or int
        Where the formula looks up functions.

    Returns
    -------
    EquationSystem
        With ``panel`` set (a :class:`PanelInfo`).
    """
    if missing not in ("drop", "raise"):
        raise ValueError(f"missing must be 'drop' or 'raise', got {missing!r}")
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a patsy formula string, got {type(formula).__name__}")
    data = _check_panel_data(data)
    ent_all, entities = _codes(data.index, 0)
    time_all, times = _codes(data.index, 1)
    labels = _entity_labels(entities)
    K, T = len(entities), len(times)
    cols = referenced_columns(PANEL_LABEL, formula, data.columns)
    frame = data[cols].reset_index(drop=True) if cols else pd.DataFrame(index=range(len(data)))
    try:
        yv, Xv, pos, y, X = _long_matrices(formula, frame, eval_env)
    except SpecificationError:
        if cols == list(data.columns):
            raise
        # the message with every column of the data (similar names), then the original
        formula_matrices(PANEL_LABEL, formula, data.reset_index(drop=True), eval_env)
        raise
    dep, names = str(y.columns[0]), [str(c) for c in X.columns]
    ok = _check_long_values(yv, Xv, ent_all[pos], labels, dep, names)
    report_dropped(_transform_notes(frame, cols, pos, ent_all, labels, formula), missing)
    present = np.zeros((K, T), dtype=bool)
    present[ent_all[pos[ok]], time_all[pos[ok]]] = True
    keep = present.all(axis=0)
    n_dropped = int((~keep).sum())
    check_kept(n_dropped, keep, missing)
    rows = np.flatnonzero(keep[time_all])  # long rows at the kept times
    if rows.size != pos.size:  # learn stateful transforms on the estimation sample
        yv, Xv, pos2, y, X = _long_matrices(formula, frame.iloc[rows].reset_index(drop=True),
                                           eval_env)
        if pos2.size != rows.size:  # pragma: no cover - transforms of the subset
            raise SpecificationError(
                f"{formula!r} gives missing values on the rows kept for estimation when "
                "evaluated on them alone; compute the transformed columns in the data first"
            )
        pos = rows
    kept_times = np.flatnonzero(keep)
    slot = np.full(T, -1)
    slot[kept_times] = np.arange(kept_times.size)
    where = np.empty((K, kept_times.size), dtype=np.intp)  # long row of (entity, time)
    where[ent_all[pos], slot[time_all[pos]]] = np.arange(pos.size)
    endog = np.ascontiguousarray(yv[where].T)
    _check_constant_responses(endog, labels, dep)
    X3 = Xv[where]  # (K, T, p): one gather, the equations' matrices are views of it
    exog = [X3[j] for j in range(K)]
    design_info = X.design_info
    freeze_design(design_info)
    spec = Equation(PANEL_LABEL, dep, names, formula, design_info=design_info, columns=cols,
                    column_types=column_types(data, cols))
    eqs = [Equation(lab, dep, list(names), formula, columns=cols,
                    column_types=spec.column_types) for lab in labels]
    index = pd.Index(times[kept_times], name=data.index.names[1])
    formula_data = data[cols].iloc[rows].copy(deep=True)
    system = EquationSystem(eqs, pd.DataFrame(endog, index=index, columns=labels), exog,
                            n_dropped, formula_data)
    system.panel = PanelInfo(spec, entities, data.index.names)
    return system


def _check_constant_responses(endog: np.ndarray, labels: list[str], dep: str) -> None:
    if endog.shape[0] < 2:
        return
    const = np.flatnonzero(endog.max(axis=0) == endog.min(axis=0))
    if const.size:
        j = int(const[0])
        raise SpecificationError(
            f"equation {labels[j]!r}: the response {dep!r} is constant "
            f"({float(endog[0, j])!r} at every time); its error variance is zero and the "
            "likelihood is unbounded. Drop the entity"
        )


def _new_long(system, data) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """The regressors of new long data (one patsy call) and each row's equation."""
    info: PanelInfo = system.panel
    data = _check_panel_data(data)
    spec = info.spec
    if spec.design_info is None:
        raise RuntimeError(
            f"{spec.design_error or 'the panel formula design is missing'}; pass design "
            "matrices instead: predict({label: matrix, ...}, transform=False)"
        )
    frame = data.reset_index(drop=True)
    X = apply_design(PANEL_LABEL, spec.formula, spec.design_info, frame, spec.column_types)
    return X, _entity_codes(info, data.index), data


def panel_predict(system, coefs: list[np.ndarray], data) -> pd.Series:
    """Predictions for every row of new long data, indexed like it (long format)."""
    X, ent, data = _new_long(system, data)
    B = np.vstack(coefs)  # K x p: one formula, the same columns for every entity
    out = np.einsum("np,np->n", X, B[ent])
    return pd.Series(out, index=data.index, name=system.panel.spec.dep_name)


def is_panel(system) -> bool:
    """Whether ``system`` was built by :func:`build_panel_system`."""
    return getattr(system, "panel", None) is not None
