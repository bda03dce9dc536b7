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
    DroppedRowsWarning,
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
    plain_design,
    plain_matrices,
    plain_shape,
    referenced_columns,
    transform_nan_rows,
)
from .newdata import new_exog
from .pairs import pair_arrays

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

        See :func:`lowrank_sur.newdata.new_exog`.
        """
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


def _check_finite(label: str, name: str, values: np.ndarray, what: str) -> None:
    if np.any(np.isinf(values)):
        raise SpecificationError(
            f"equation {label!r}: {what} {name!r} contains inf; replace or drop those rows"
        )


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


@dataclass
class _Part:
    """One equation's response and regressors as float arrays on some of the data's rows.

    ``pos`` holds the positions of those rows in the common index (None: every row, in
    order); ``design_info`` is patsy's design for a formula equation.
    """

    y: np.ndarray
    X: np.ndarray
    pos: np.ndarray | None = None
    design_info: object | None = None
    plain: bool = False  # a formula of bare float columns, built without patsy


class _PlainColumns:
    """The float columns of the data that plain formulas read, taken from the frame once."""

    def __init__(self, frame: pd.DataFrame, equations: Mapping, labels: list[str]) -> None:
        self.dtypes = frame.dtypes.to_dict() if frame.columns.is_unique else None
        self.shapes: dict[str, tuple] = {}
        if self.dtypes is None:
            return
        wanted: dict[str, None] = {}
        for lab in labels:
            spec = equations[lab]
            found = plain_shape(spec) if isinstance(spec, str) else None
            if found is not None and all(self._is_float(n) for n in found[1]):
                self.shapes[lab] = found
                wanted.update(dict.fromkeys(found[1]))
        self.position = {name: i for i, name in enumerate(wanted)}
        self.values = (np.asfortranarray(frame[list(wanted)].to_numpy(dtype=float))
                       if wanted else None)
        self.n_rows = len(frame)
        self._type_names: dict = {}

    def _is_float(self, name: str) -> bool:
        dtype = self.dtypes.get(name)
        return (dtype is not None and not isinstance(dtype, pd.api.extensions.ExtensionDtype)
                and dtype.kind == "f")

    def column(self, name: str) -> np.ndarray:
        """The values of column ``name``."""
        return self.values[:, self.position[name]]

    def part(self, lab: str, spec: str):
        """Equation ``lab`` without a patsy call, or None when its formula is not plain.

        Its rows keep their missing values (as a pair's do) and its patsy design is
        built when first needed (:meth:`EquationSystem.design_info`).
        """
        found = self.shapes.get(lab)
        if found is None:
            return None
        shape, names = found
        y, X, col_names = plain_matrices(shape, names, self.column, self.n_rows, self.dtypes)
        types = {}
        for c in names:
            dtype = self.dtypes[c]
            if dtype not in self._type_names:
                self._type_names[dtype] = str(dtype)
            types[c] = (self._type_names[dtype], True)
        eq = Equation(lab, names[shape.response], col_names, spec, columns=list(names),
                      column_types=types)
        return eq, _Part(y, X, plain=True)


def _formula_part(lab: str, spec: str, frame: pd.DataFrame, eval_env):
    y, X = formula_matrices(lab, spec, frame, eval_env)
    cols = referenced_columns(lab, spec, frame.columns)
    eq = Equation(lab, str(y.columns[0]), [str(c) for c in X.columns], spec, columns=cols,
                  column_types=column_types(frame, cols))
    pos = None if len(X) == len(frame) else frame.index.get_indexer(X.index)
    part = _Part(y.to_numpy(dtype=float)[:, 0], X.to_numpy(dtype=float), pos, X.design_info)
    return eq, part


def _collect(equations: Mapping, labels: list[str], frame, eval_env):
    """Per equation: its :class:`Equation` and its arrays (:class:`_Part`); the row index."""
    eqs: list[Equation] = []
    parts: list[_Part] = []
    plain = _PlainColumns(frame, equations, labels) if frame is not None else None
    n_expected = len(frame) if frame is not None else None
    index_expected = frame.index if frame is not None else None
    for lab in labels:
        spec = equations[lab]
        if isinstance(spec, str):
            found = plain.part(lab, spec)
            eq, part = found if found else _formula_part(lab, spec, frame, eval_env)
            eqs.append(eq)
            parts.append(part)
            continue
        dep, names, y, X, index = pair_arrays(lab, spec, n_expected, index_expected)
        n_expected = y.shape[0]
        if index is not None:
            index_expected = index
        eqs.append(Equation(lab, dep, names))
        parts.append(_Part(y, X))
    if index_expected is None:
        index_expected = pd.RangeIndex(n_expected)
    return eqs, parts, index_expected


def _check_values(e: Equation, yv: np.ndarray, Xv: np.ndarray) -> np.ndarray:
    """Rows of one equation with no missing value (after the inf and constant checks)."""
    if np.isfinite(yv).all() and np.isfinite(Xv).all():
        ok = None
    else:
        _check_finite(e.label, e.dep_name, yv, "response")
        inf_cols = np.flatnonzero(np.isinf(Xv).any(axis=0))
        if inf_cols.size:
            _check_finite(e.label, e.exog_names[inf_cols[0]], Xv[:, inf_cols[0]], "regressor")
        ok = ~np.isnan(yv) & ~np.isnan(Xv).any(axis=1)
    finite_y = yv if ok is None else yv[~np.isnan(yv)]
    if finite_y.size > 1 and finite_y.max() == finite_y.min():
        raise SpecificationError(
            f"equation {e.label!r}: the response {e.dep_name!r} is constant "
            f"({float(finite_y[0])!r} in every row); its error variance is zero and the "
            "likelihood is unbounded. Drop the equation"
        )
    return ok


def _complete_rows(eqs, parts, n_rows: int) -> np.ndarray:
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
            parts[i] = _Part(y.to_numpy(dtype=float)[:, 0], X.to_numpy(dtype=float), None,
                             X.design_info)
            e.exog_names = [str(c) for c in X.columns]


def _formula_data(eqs, frame: pd.DataFrame, rows: pd.Index) -> pd.DataFrame:
    """A copy of the columns the formulas read, on the rows used."""
    cols: dict[str, None] = {}
    for e in eqs:
        cols.update(dict.fromkeys(e.columns))
    return frame.loc[rows, list(cols)].copy(deep=True)


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
        exog.append(part.X if full and part.X.flags.owndata else
                    np.array(part.X if full else part.X[keep], dtype=float))
    return endog, exog


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
    missing : {"drop", "raise"}
        Rows with a missing value in any equation's variables are dropped from every
        equation (``"drop"``) or raise an error (``"raise"``).
    eval_env : patsy.EvalEnvironment or int
        Where formulas look up functions.

    Returns
    -------
    EquationSystem
    """
    if missing not in ("drop", "raise"):
        raise ValueError(f"missing must be 'drop' or 'raise', got {missing!r}")
    labels = _check_labels(equations)
    frame = _formula_frame(equations, labels, data)
    eqs, parts, index = _collect(equations, labels, frame, eval_env)
    keep = _complete_rows(eqs, parts, len(index))
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
