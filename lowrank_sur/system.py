"""Turning the user's equations into aligned arrays: formulas, (endog, exog) pairs, missing rows.

One job: validate what the user gave and produce, per equation, a response vector
and a regressor matrix on a common set of rows, with names for everything. The
arrays are the model's own copies: nothing refers to the caller's objects. Patsy's
part (building a formula's matrices, applying and pickling its design) lives in
:mod:`lowrank_sur.formula`.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import patsy

from .exceptions import (
    PicklingWarning,
    SpecificationError,
    external_stacklevel,
)
from .formula import (
    column_types,
    dump_design,
    formula_matrices,
    freeze_design,
    load_design,
    referenced_columns,
    transform_nan_rows,
)
from .newdata import new_exog
from .pairs import pair_arrays
from .plain import PlainColumns, plain_design
from .rows import (
    Part,
    aligned_arrays,
    check_kept,
    complete_rows,
    observed_arrays,
    observed_cells,
    report_dropped,
    report_regressor_gaps,
)

__all__ = ["Equation", "EquationSystem", "build_system"]


@dataclass
class Equation:
    """One equation of the system.

    Attributes
    ----------
    label : str
        The user's label (the key of the equations dict).
    dep_name : str
        Name of the dependent variable.
    exog_names : list of str
        Column names of the regressors (patsy's names for formulas).
    formula : str or None
        The patsy formula, when the equation was given as one.
    design_info : patsy.DesignInfo or None
        The fitted patsy design (kept through pickling, see :mod:`lowrank_sur.formula`).
    columns : list of str
        The data columns the formula reads.
    column_types : dict
        Column -> (dtype, numeric) at fit time, to check new data against.
    design_error : str or None
        Why the design is missing (it could not be pickled or unpickled).
    """

    label: str
    dep_name: str
    exog_names: list[str]
    formula: str | None = None
    design_info: object | None = field(default=None, repr=False)
    columns: list[str] = field(default_factory=list)
    column_types: dict = field(default_factory=dict, repr=False)
    design_error: str | None = field(default=None, repr=False)

    @property
    def param_names(self) -> list[str]:
        """Parameter labels ``"{label}_{column}"``."""
        return [f"{self.label}_{c}" for c in self.exog_names]

    # ------------------------------------------------------------ pickling
    def __getstate__(self):
        # patsy refuses to pickle its designs; formula.dump_design does it without data
        state = self.__dict__.copy()
        if self.design_info is not None and not isinstance(self.design_info, bytes):
            blob, reason = dump_design(self.label, self.formula, self.design_info)
            state["design_info"], state["design_error"] = blob, reason
        return state

    def __deepcopy__(self, memo):
        # a fitted patsy design is not changed by predict(), so the copy may share it
        new = object.__new__(type(self))
        new.__dict__.update({k: v if k == "design_info" else copy.deepcopy(v, memo)
                             for k, v in self.__dict__.items()})
        return new

    def __setstate__(self, state):
        blob = state.get("design_info")
        if isinstance(blob, bytes):
            try:
                state["design_info"] = load_design(blob)
            except Exception as exc:  # noqa: BLE001 - e.g. a function no longer importable
                state["design_info"] = None
                state["design_error"] = (
                    f"equation {state['label']!r}: the design of {state['formula']!r} could "
                    f"not be restored ({type(exc).__name__}: {exc}); define or import what "
                    "the formula uses before unpickling"
                )
        self.__dict__.update(state)


@dataclass
class EquationSystem:
    """Aligned data for all equations, and the designs of new data for prediction."""

    equations: list[Equation]
    endog: pd.DataFrame  # N x K, columns = labels
    exog: list[np.ndarray]  # K arrays N x p_j
    n_dropped: int
    formula_data: pd.DataFrame | None = None  # copy of the columns the formulas use, rows used
    panel: object | None = None  # panel.PanelInfo for LowRankSUR.from_panel
    observed: np.ndarray | None = None  # missing="fiml": N x K observed cells (None: all)
    n_regressor_missing: dict = field(default_factory=dict)  # fiml: label -> cells

    @property
    def labels(self) -> list[str]:
        """Equation labels in order."""
        return [e.label for e in self.equations]

    def __deepcopy__(self, memo):
        new = object.__new__(type(self))
        new.__dict__.update({k: copy.deepcopy(v, memo) for k, v in self.__dict__.items()})
        return new

    def __getstate__(self):
        state = self.__dict__.copy()
        shells = []
        for e in self.equations:
            shell = object.__new__(type(e))
            shell.__dict__.update(e.__getstate__())  # the design as bytes (or its error)
            shells.append(shell)
        lost = [e.design_error for e in shells if e.design_info is None and e.design_error]
        if self.panel is not None:
            spec = object.__new__(type(self.panel.spec))
            spec.__dict__.update(self.panel.spec.__getstate__())
            if spec.design_info is None and spec.design_error:
                lost.append(spec.design_error)
        if lost:
            more = f" (and {len(lost) - 2} more equations)" if len(lost) > 2 else ""
            warnings.warn(
                f"{'; '.join(lost[:2])}{more}. The pickle keeps everything else; after "
                "unpickling, predict() needs design matrices (transform=False) for "
                f"{'this equation' if len(lost) == 1 else 'these equations'}",
                PicklingWarning,
                stacklevel=external_stacklevel(),
            )
        state["equations"] = shells
        return state

    @property
    def param_names(self) -> list[str]:
        """All parameter labels in order."""
        return [n for e in self.equations for n in e.param_names]

    def design_info(self, j: int):
        """Patsy's design of formula equation ``j`` (None for an ``(endog, exog)`` pair)."""
        eq = self.equations[j]
        if eq.formula is None:
            return None
        if eq.design_info is None and eq.design_error is None:
            eq.design_info = plain_design(eq.formula, eq.columns)  # a plain formula
        if eq.design_info is None:
            raise RuntimeError(
                f"{eq.design_error or f'equation {eq.label!r}: its formula design is missing'}"
                "; pass design matrices instead: predict({label: matrix, ...}, "
                "transform=False)"
            )
        return eq.design_info

    # ------------------------------------------------------------ new data
    def new_exog(self, exog, transform: bool = True) -> tuple[list[np.ndarray], pd.Index | None]:
        """Regressor matrices of every equation for new data, and their row index.

        See :func:`lowrank_sur.newdata.new_exog`. A panel model's new long data go
        through :func:`lowrank_sur.panel.panel_predict` instead (long output).
        """
        if self.panel is not None and transform and isinstance(exog, pd.DataFrame):
            raise TypeError("a panel model predicts new long data row by row: use "
                            "results.predict(long_df) or model.predict_panel(params, long_df)")
        return new_exog(self, exog, transform)


def _check_labels(equations: Mapping) -> list[str]:
    if not isinstance(equations, Mapping):
        raise TypeError(
            "equations must be a dict mapping each equation label to a patsy formula "
            f"string or an (endog, exog) pair, got {type(equations).__name__}"
        )
    if len(equations) == 0:
        raise SpecificationError(
            "equations is empty: give at least one equation, e.g. {'eq1': 'y1 ~ x1'}"
        )
    labels = list(equations)
    for lab in labels:
        if not isinstance(lab, str):
            raise TypeError(
                f"equation labels must be non-empty strings, got {lab!r} "
                f"({type(lab).__name__}); use e.g. str({lab!r})"
            )
        if not lab.strip():
            raise SpecificationError(
                f"equation label {lab!r} is blank; give every equation a name"
            )
    names = {}
    for lab in labels:
        key = lab.strip()
        if key in names:
            raise SpecificationError(
                f"equation labels {names[key]!r} and {lab!r} clash (they differ only in "
                "surrounding whitespace); give distinct labels"
            )
        names[key] = lab
    return labels


def _as_frame(data) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, Mapping):
        try:
            frame = pd.DataFrame(dict(data))
        except ValueError as exc:
            raise SpecificationError(
                f"data could not be turned into a DataFrame: {exc}"
            ) from exc
    else:
        hint = "; convert it with data.to_pandas()" if hasattr(data, "to_pandas") else ""
        raise TypeError(
            f"data must be a pandas DataFrame or a mapping of column name to values, "
            f"got {type(data).__name__}{hint}"
        )
    if isinstance(frame.columns, pd.MultiIndex):
        raise SpecificationError(
            "data has MultiIndex columns, which formulas cannot name; flatten them first, "
            "e.g. df.columns = ['_'.join(map(str, c)) for c in df.columns]"
        )
    if len(frame) == 0:
        raise SpecificationError("data has no rows; give at least one observation")
    if not frame.index.is_unique:
        raise SpecificationError("data's index has duplicate labels; reset_index() first")
    return frame


def _formula_frame(equations: Mapping, labels: list[str], data) -> pd.DataFrame | None:
    if not any(isinstance(equations[lab], str) for lab in labels):
        return None
    if data is None:
        lab = next(lab for lab in labels if isinstance(equations[lab], str))
        raise SpecificationError(
            f"equation {lab!r} is a formula but no data was given; pass "
            "data=<DataFrame> (or give (endog, exog) pairs instead)"
        )
    return _as_frame(data)


def _plain_part(plain: PlainColumns | None, lab: str, spec: str):
    """Equation ``lab`` built without a patsy call (None when its formula is not plain)."""
    built = plain.build(lab) if plain is not None else None
    if built is None:
        return None
    dep, col_names, cols, types, y, X = built
    eq = Equation(lab, dep, col_names, spec, columns=cols, column_types=types)
    return eq, Part(y, X, plain=True)


def _formula_part(lab: str, spec: str, frame: pd.DataFrame, eval_env):
    y, X = formula_matrices(lab, spec, frame, eval_env)
    cols = referenced_columns(lab, spec, frame.columns)
    eq = Equation(lab, str(y.columns[0]), [str(c) for c in X.columns], spec, columns=cols,
                  column_types=column_types(frame, cols))
    pos = None if len(X) == len(frame) else frame.index.get_indexer(X.index)
    part = Part(y.to_numpy(dtype=float)[:, 0], X.to_numpy(dtype=float), pos, X.design_info)
    return eq, part


def _collect(equations: Mapping, labels: list[str], frame, eval_env):
    """Per equation: its :class:`Equation` and arrays (a :class:`Part`); the row index."""
    eqs: list[Equation] = []
    parts: list[Part] = []
    plain = PlainColumns(frame, equations, labels) if frame is not None else None
    n_expected = len(frame) if frame is not None else None
    index_expected = frame.index if frame is not None else None
    for lab in labels:
        spec = equations[lab]
        if isinstance(spec, str):
            found = _plain_part(plain, lab, spec)
            eq, part = found if found else _formula_part(lab, spec, frame, eval_env)
            eqs.append(eq)
            parts.append(part)
            continue
        dep, names, y, X, index = pair_arrays(lab, spec, n_expected, index_expected)
        n_expected = y.shape[0]
        if index is not None:
            index_expected = index
        eqs.append(Equation(lab, dep, names))
        parts.append(Part(y, X))
    if index_expected is None:
        index_expected = pd.RangeIndex(n_expected)
    return eqs, parts, index_expected


def _report_transform_nans(eqs, parts, frame, missing: str) -> None:
    """Warn (or raise) when transforms, not the data, create the missing values."""
    notes = []
    for e, part in zip(eqs, parts):
        if e.formula is None or part.pos is None:
            continue
        made = int(transform_nan_rows(frame, e.columns, frame.index[part.pos]).sum())
        if made:
            notes.append(
                f"equation {e.label!r}: {made} of {len(frame)} rows are NaN after evaluating "
                f"{e.formula!r} although the data have values there (e.g. the log of a "
                "non-positive number)"
            )
    report_dropped(notes, missing)


def _rebuild_formulas(eqs, parts, formula_data, eval_env) -> None:
    """Rebuild the formula designs on the kept rows.

    Stateful transforms (centering, categorical levels) are then learned on the
    estimation sample.
    """
    for i, e in enumerate(eqs):
        if e.formula is not None and not parts[i].plain:
            y, X = formula_matrices(e.label, e.formula, formula_data, eval_env)
            if len(X) != len(formula_data):  # pragma: no cover - transforms of the subset
                raise SpecificationError(
                    f"equation {e.label!r}: {e.formula!r} gives missing values on the rows "
                    "kept for estimation when evaluated on them alone; compute the "
                    "transformed columns in the data first"
                )
            parts[i] = Part(y.to_numpy(dtype=float)[:, 0], X.to_numpy(dtype=float), None,
                             X.design_info)
            e.exog_names = [str(c) for c in X.columns]


def _formula_data(eqs, frame: pd.DataFrame, rows: pd.Index) -> pd.DataFrame:
    """A copy of the columns the formulas read, on the rows used."""
    cols: dict[str, None] = {}
    for e in eqs:
        cols.update(dict.fromkeys(e.columns))
    return frame.loc[rows, list(cols)].copy(deep=True)


def eval_env_of(value) -> patsy.EvalEnvironment:
    """The formulas' namespace: the frame that called the caller of this function.

    ``value`` may be a :class:`patsy.EvalEnvironment` (used as is), an integer ``n``
    (``n`` frames further up; 0 is the caller) or None (0).
    """
    if isinstance(value, patsy.EvalEnvironment):
        return value
    if value is None:
        value = 0
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise TypeError(
            "eval_env must be a patsy.EvalEnvironment or a number of frames above the "
            f"caller (0 = the caller), got {value!r}"
        )
    return patsy.EvalEnvironment.capture(int(value) + 2)


def subset_rows(data, subset):
    """Rows of ``data`` selected by a boolean mask or by index labels."""
    if not isinstance(data, pd.DataFrame):
        data = pd.DataFrame(dict(data))
    mask = np.asarray(subset)
    if mask.dtype == bool and isinstance(subset, pd.Series) and not subset.index.equals(
        data.index
    ):
        raise SpecificationError(
            "subset is a boolean Series whose index differs from data's; align it first "
            "(subset.reindex(data.index, fill_value=False))"
        )
    if mask.dtype == bool and mask.shape != (len(data),):
        raise SpecificationError(
            f"subset is a boolean mask of {mask.size} values but data has {len(data)} rows; "
            "give one value per row (or index labels)"
        )
    try:
        return data.loc[mask] if mask.dtype == bool else data.loc[subset]
    except KeyError as exc:
        raise SpecificationError(
            f"subset names rows that data does not have ({exc}); give a boolean mask or "
            "labels of data.index"
        ) from exc


def build_system(
    equations: Mapping,
    data=None,
    missing: str = "drop",
    eval_env: patsy.EvalEnvironment | int = 0,
) -> EquationSystem:
    """Validate the equations and align them on common rows.

    Parameters
    ----------
    equations : dict
        Label -> patsy formula string (needs ``data``) or label -> ``(endog, exog)``.
    data : DataFrame or mapping, optional
        Data for the formulas. Never modified, and not referred to afterwards.
    missing : {"drop", "raise", "fiml"}
        Rows with a missing value in any equation's variables are dropped from every
        equation (``"drop"``) or raise an error (``"raise"``); ``"fiml"`` keeps every
        observed cell (rows where no equation is observed are dropped).
    eval_env : patsy.EvalEnvironment or int
        Where formulas look up functions.

    Returns
    -------
    EquationSystem
    """
    if missing not in ("drop", "raise", "fiml"):
        raise ValueError(f"missing must be 'drop', 'raise' or 'fiml', got {missing!r}")
    labels = _check_labels(equations)
    frame = _formula_frame(equations, labels, data)
    eqs, parts, index = _collect(equations, labels, frame, eval_env)
    if missing == "fiml":
        obs = observed_cells(eqs, parts, len(index))
        if not obs[obs.any(axis=1)].all():
            return _fiml_system(eqs, parts, index, frame, obs)
        missing = "drop"  # no cell is missing on the rows kept: the complete-data system
    keep = complete_rows(eqs, parts, len(index))
    n_dropped = int((~keep).sum())
    if frame is not None:
        _report_transform_nans(eqs, parts, frame, missing)
    check_kept(n_dropped, keep, missing)
    kept = index[keep] if n_dropped else index
    formula_data = None
    if frame is not None:
        formula_data = _formula_data(eqs, frame, kept)
        if n_dropped:
            _rebuild_formulas(eqs, parts, formula_data, eval_env)
        for e, part in zip(eqs, parts):
            if e.formula is not None and not part.plain:
                e.design_info = part.design_info
                freeze_design(e.design_info)
    endog, exog = aligned_arrays(parts, keep, n_dropped)
    endog = pd.DataFrame(endog, index=kept, columns=labels)
    return EquationSystem(eqs, endog, exog, n_dropped, formula_data)


def _fiml_system(eqs, parts, index: pd.Index, frame, obs: np.ndarray) -> EquationSystem:
    """``missing="fiml"``: every equation on its own observed rows, zero-filled elsewhere."""
    gaps = report_regressor_gaps(eqs, parts, obs, frame)
    keep = obs.any(axis=1)
    kept = index[keep]
    formula_data = None
    if frame is not None:
        formula_data = _formula_data(eqs, frame, kept)
        for e, part in zip(eqs, parts):
            if e.formula is not None and not part.plain:
                e.design_info = part.design_info
                freeze_design(e.design_info)
    endog, exog = observed_arrays(parts, obs, keep)
    endog = pd.DataFrame(endog, index=kept, columns=[e.label for e in eqs])
    return EquationSystem(eqs, endog, exog, int((~keep).sum()), formula_data,
                          observed=obs[keep], n_regressor_missing=gaps)
