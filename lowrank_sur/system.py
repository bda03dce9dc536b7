"""Turning the user's equations into aligned arrays: formulas, (endog, exog) pairs, missing rows.

One job: validate what the user gave and produce, per equation, a response vector
and a regressor matrix on a common set of rows, with names for everything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import patsy

from .exceptions import SpecificationError

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
    """

    label: str
    dep_name: str
    exog_names: list[str]
    formula: str | None = None
    design_info: object | None = field(default=None, repr=False)

    @property
    def param_names(self) -> list[str]:
        """Parameter labels ``"{label}_{column}"``."""
        return [f"{self.label}_{c}" for c in self.exog_names]


@dataclass
class EquationSystem:
    """Aligned data for all equations, and the designs of new data for prediction."""

    equations: list[Equation]
    endog: pd.DataFrame  # N x K, columns = labels
    exog: list[np.ndarray]  # K arrays N x p_j
    n_dropped: int
    formula_data: pd.DataFrame | None = None  # rows used, for rebuilding designs

    @property
    def labels(self) -> list[str]:
        """Equation labels in order."""
        return [e.label for e in self.equations]

    @property
    def param_names(self) -> list[str]:
        """All parameter labels in order."""
        return [n for e in self.equations for n in e.param_names]

    # ------------------------------------------------------------ pickling
    def __getstate__(self):
        # patsy's DesignInfo cannot be pickled; it is rebuilt from the formula on demand.
        state = self.__dict__.copy()
        state["equations"] = [
            Equation(e.label, e.dep_name, list(e.exog_names), e.formula) for e in self.equations
        ]
        return state

    def design_info(self, j: int):
        """Patsy's design of formula equation ``j`` (None for an ``(endog, exog)`` pair)."""
        eq = self.equations[j]
        if eq.formula is None:
            return None
        if eq.design_info is None:
            if self.formula_data is None:
                raise ValueError(
                    "the formula design was not kept (the model was pickled after "
                    "remove_data()); predict from arrays instead"
                )
            _, X = patsy.dmatrices(eq.formula, self.formula_data, return_type="dataframe",
                                   NA_action=_NO_NA)
            eq.design_info = X.design_info
        return eq.design_info

    # ------------------------------------------------------------ new data
    def new_exog(self, exog, transform: bool = True) -> tuple[list[np.ndarray], pd.Index | None]:
        """Regressor matrices of every equation for new data, and their row index.

        Parameters
        ----------
        exog : DataFrame, dict or list
            For formula equations (with ``transform``), a DataFrame with the variables
            the formulas use: each equation's stored patsy design is applied. Otherwise
            a dict label -> regressor matrix or a list of K matrices.
        transform : bool
            Apply the formula designs (True) or treat ``exog`` as design matrices.
        """
        if isinstance(exog, pd.DataFrame) and transform:
            return [self._formula_exog(j, exog) for j in range(len(self.equations))], exog.index
        if isinstance(exog, dict):
            missing = [lab for lab in self.labels if lab not in exog]
            if missing:
                raise KeyError(f"exog has no regressors for equation(s) {missing}")
            exog = [exog[lab] for lab in self.labels]
        first = exog[0]
        index = first.index if isinstance(first, (pd.DataFrame, pd.Series)) else None
        return [np.asarray(X, dtype=float) for X in exog], index

    def _formula_exog(self, j: int, frame: pd.DataFrame) -> np.ndarray:
        eq = self.equations[j]
        if eq.formula is None:
            raise ValueError(
                f"equation {eq.label!r} was not given as a formula; pass a dict "
                "label -> regressor matrix instead of a DataFrame"
            )
        (X,) = patsy.build_design_matrices([self.design_info(j)], frame,
                                           return_type="dataframe")
        if len(X) != len(frame):
            raise ValueError(
                f"equation {eq.label!r}: new data has missing values in "
                f"{eq.formula!r}; drop or fill them first"
            )
        return X.to_numpy(dtype=float)


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
        if not isinstance(lab, str) or not lab:
            raise TypeError(f"equation labels must be non-empty strings, got {lab!r}")
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
        return data
    if isinstance(data, Mapping):
        try:
            return pd.DataFrame(dict(data))
        except ValueError as exc:
            raise SpecificationError(f"data could not be turned into a DataFrame: {exc}") from exc
    raise TypeError(
        f"data must be a pandas DataFrame or a mapping of column name to values, "
        f"got {type(data).__name__}"
    )


_NO_NA = patsy.NAAction(NA_types=[])


def _formula_matrices(label: str, formula: str, frame: pd.DataFrame, eval_env, na_action):
    try:
        y, X = patsy.dmatrices(
            formula, frame, return_type="dataframe", NA_action=na_action, eval_env=eval_env
        )
    except patsy.PatsyError as exc:
        msg = str(exc).split("\n")[0]
        missing = [c for c in _names_in(formula) if c not in frame.columns]
        hint = f"; data has no column(s) {missing}" if missing else ""
        raise SpecificationError(
            f"equation {label!r}: cannot build {formula!r}: {msg}{hint}"
        ) from exc
    except (NameError, KeyError) as exc:
        raise SpecificationError(
            f"equation {label!r}: formula {formula!r} names {exc} which is not a column of "
            f"data (columns: {list(frame.columns)[:20]})"
        ) from exc
    if y.shape[1] != 1 or any(
        fi.type != "numerical" for fi in y.design_info.factor_infos.values()
    ):
        raise SpecificationError(
            f"equation {label!r}: the response of {formula!r} is not numeric (patsy "
            f"coded it as categorical: {list(y.columns)[:5]}); give a numeric "
            "response"
        )
    return y, X


def _names_in(formula: str) -> list[str]:
    return sorted(set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", formula)))


def _check_finite(label: str, name: str, values: np.ndarray, what: str) -> None:
    if np.any(np.isinf(values)):
        raise SpecificationError(
            f"equation {label!r}: {what} {name!r} contains inf; replace or drop those rows"
        )


def _endog_vector(label: str, endog) -> tuple[str, np.ndarray, pd.Index | None]:
    """The response of an ``(endog, exog)`` pair: its name, values and index (if any)."""
    if isinstance(endog, pd.DataFrame):
        if endog.shape[1] != 1:
            raise SpecificationError(
                f"equation {label!r}: endog must be one column, got {endog.shape[1]}"
            )
        endog = endog.iloc[:, 0]
    if isinstance(endog, pd.Series):
        dep = str(endog.name) if endog.name is not None else label
        return dep, endog.to_numpy(), endog.index
    y = np.asarray(endog)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise SpecificationError(
            f"equation {label!r}: endog must be one-dimensional, got shape {y.shape}"
        )
    return label, y, None


def _exog_matrix(label: str, exog, index) -> tuple[list[str], np.ndarray, pd.Index | None]:
    """The regressors of an ``(endog, exog)`` pair: column names, values and index."""
    if isinstance(exog, pd.Series):
        exog = exog.to_frame()
    if isinstance(exog, pd.DataFrame):
        if index is not None and not exog.index.equals(index):
            raise SpecificationError(
                f"equation {label!r}: endog and exog have different indexes; align them "
                "(e.g. exog.reindex(endog.index)) first"
            )
        return [str(c) for c in exog.columns], exog.to_numpy(), exog.index
    X = np.asarray(exog)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise SpecificationError(
            f"equation {label!r}: exog must be 2-D (N x p), got shape {X.shape}"
        )
    return [f"x{i}" for i in range(X.shape[1])], X, index


def _check_pair_rows(label, y, X, index, n_expected, index_expected) -> None:
    if X.shape[0] != y.shape[0]:
        raise SpecificationError(
            f"equation {label!r}: endog has {y.shape[0]} rows but exog has {X.shape[0]}"
        )
    if n_expected is not None and y.shape[0] != n_expected:
        raise SpecificationError(
            f"equation {label!r}: {y.shape[0]} rows, but earlier equations have {n_expected}; "
            "every equation must cover the same observations"
        )
    if index is not None and index_expected is not None and not index.equals(index_expected):
        raise SpecificationError(
            f"equation {label!r}: its index differs from the earlier equations'; every "
            "equation must be indexed by the same observations (reindex first)"
        )


def _as_float(values: np.ndarray, message: str) -> np.ndarray:
    try:
        return values.astype(float)
    except (TypeError, ValueError) as exc:
        raise SpecificationError(message) from exc


def _pair_arrays(label, pair, n_expected, index_expected):
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise TypeError(
            f"equation {label!r}: expected a patsy formula string or an (endog, exog) pair, "
            f"got {type(pair).__name__}"
        )
    dep, y, index = _endog_vector(label, pair[0])
    names, X, index = _exog_matrix(label, pair[1], index)
    _check_pair_rows(label, y, X, index, n_expected, index_expected)
    y = _as_float(y, f"equation {label!r}: endog {dep!r} is not numeric")
    X = _as_float(X, f"equation {label!r}: exog is not numeric")
    return dep, names, y, X, index


def _formula_frame(equations: Mapping, labels: list[str], data) -> pd.DataFrame | None:
    if not any(isinstance(equations[lab], str) for lab in labels):
        return None
    if data is None:
        lab = next(lab for lab in labels if isinstance(equations[lab], str))
        raise SpecificationError(
            f"equation {lab!r} is a formula but no data was given; pass "
            "data=<DataFrame> (or give (endog, exog) pairs instead)"
        )
    frame = _as_frame(data)
    if not frame.index.is_unique:
        raise SpecificationError("data's index has duplicate labels; reset_index() first")
    return frame


def _collect(equations: Mapping, labels: list[str], frame, eval_env):
    """Per equation: its :class:`Equation`, response Series and regressor DataFrame."""
    eqs: list[Equation] = []
    ys: list[pd.Series] = []
    Xs: list[pd.DataFrame] = []
    n_expected = len(frame) if frame is not None else None
    index_expected = frame.index if frame is not None else None
    for lab in labels:
        spec = equations[lab]
        if isinstance(spec, str):
            y, X = _formula_matrices(lab, spec, frame, eval_env, _NO_NA)
            eqs.append(Equation(lab, str(y.columns[0]), [str(c) for c in X.columns], spec))
            ys.append(y.iloc[:, 0])
            Xs.append(X)
            continue
        dep, names, y, X, index = _pair_arrays(lab, spec, n_expected, index_expected)
        n_expected = y.shape[0]
        if index is None:
            index = index_expected if index_expected is not None else pd.RangeIndex(len(y))
        index_expected = index
        eqs.append(Equation(lab, dep, names))
        ys.append(pd.Series(y, index=index))
        Xs.append(pd.DataFrame(X, index=index, columns=names))
    return eqs, ys, Xs


def _complete_rows(eqs, ys, Xs) -> np.ndarray:
    """Rows with no missing value in any equation (after the inf and constant checks)."""
    keep = np.ones(len(ys[0].index), dtype=bool)
    for e, y, X in zip(eqs, ys, Xs):
        yv, Xv = y.to_numpy(dtype=float), X.to_numpy(dtype=float)
        _check_finite(e.label, e.dep_name, yv, "response")
        for c, name in enumerate(e.exog_names):
            _check_finite(e.label, name, Xv[:, c], "regressor")
        finite_y = yv[~np.isnan(yv)]
        if finite_y.size > 1 and np.ptp(finite_y) == 0:
            raise SpecificationError(
                f"equation {e.label!r}: the response {e.dep_name!r} is constant "
                f"({finite_y[0]!r} in every row); its error variance is zero and the "
                "likelihood is unbounded. Drop the equation"
            )
        keep &= ~np.isnan(yv)
        keep &= ~np.any(np.isnan(Xv), axis=1)
    return keep


def _rebuild_formulas(eqs, ys, Xs, formula_data, eval_env) -> None:
    """Rebuild the formula designs on the kept rows.

    Stateful transforms (centering, categorical levels) are then learned on the
    estimation sample.
    """
    for i, e in enumerate(eqs):
        if e.formula is not None:
            y, X = _formula_matrices(e.label, e.formula, formula_data, eval_env, _NO_NA)
            ys[i], Xs[i] = y.iloc[:, 0], X
            e.exog_names = [str(c) for c in X.columns]


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
        Data for the formulas.
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
    eqs, ys, Xs = _collect(equations, labels, frame, eval_env)
    index = ys[0].index
    keep = _complete_rows(eqs, ys, Xs)
    n_dropped = int((~keep).sum())
    if n_dropped and missing == "raise":
        raise SpecificationError(
            f"{n_dropped} rows have missing values and missing='raise'; use missing='drop'"
        )
    if not keep.any():
        raise SpecificationError(
            "every row has a missing value in some equation's variables, so no observation "
            "is left; check the columns with many NaNs"
        )
    formula_data = None
    if frame is not None:
        formula_data = frame.loc[index[keep]] if n_dropped else frame
        if n_dropped:
            _rebuild_formulas(eqs, ys, Xs, formula_data, eval_env)
        for e, X in zip(eqs, Xs):
            if e.formula is not None:
                e.design_info = getattr(X, "design_info", None)
                if e.design_info is None:
                    raise SpecificationError(
                        f"equation {e.label!r}: patsy returned no design info"
                    )
    kept = index[keep]

    def rows(values: np.ndarray) -> np.ndarray:
        # formula designs rebuilt on the kept rows already have len(kept) rows
        return values if len(values) == len(kept) else values[keep]

    endog = pd.DataFrame(
        {e.label: rows(y.to_numpy(dtype=float)) for e, y in zip(eqs, ys)}, index=kept
    )
    exog = [rows(X.to_numpy(dtype=float)) for X in Xs]
    return EquationSystem(eqs, endog, exog, n_dropped, formula_data)
