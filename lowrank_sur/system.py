"""Turning the user's equations into aligned arrays: formulas, (endog, exog) pairs, missing rows.

One job: validate what the user gave and produce, per equation, a response vector
and a regressor matrix on a common set of rows, with names for everything.
"""

from __future__ import annotations

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
    """Aligned data for all equations."""

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
    import re

    return sorted(set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", formula)))


def _check_finite(label: str, name: str, values: np.ndarray, what: str) -> None:
    if np.any(np.isinf(values)):
        raise SpecificationError(
            f"equation {label!r}: {what} {name!r} contains inf; replace or drop those rows"
        )


def _pair_arrays(label, pair, n_expected, index_expected):
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise TypeError(
            f"equation {label!r}: expected a patsy formula string or an (endog, exog) pair, "
            f"got {type(pair).__name__}"
        )
    endog, exog = pair
    index = None
    if isinstance(endog, pd.DataFrame):
        if endog.shape[1] != 1:
            raise SpecificationError(
                f"equation {label!r}: endog must be one column, got {endog.shape[1]}"
            )
        endog = endog.iloc[:, 0]
    if isinstance(endog, pd.Series):
        dep = str(endog.name) if endog.name is not None else label
        index = endog.index
        y = endog.to_numpy()
    else:
        dep = label
        y = np.asarray(endog)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise SpecificationError(
                f"equation {label!r}: endog must be one-dimensional, got shape {y.shape}"
            )
    if isinstance(exog, pd.Series):
        exog = exog.to_frame()
    if isinstance(exog, pd.DataFrame):
        names = [str(c) for c in exog.columns]
        if index is not None and not exog.index.equals(index):
            raise SpecificationError(
                f"equation {label!r}: endog and exog have different indexes; align them "
                "(e.g. exog.reindex(endog.index)) first"
            )
        index = exog.index if index is None else index
        X = exog.to_numpy()
    else:
        X = np.asarray(exog)
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2:
            raise SpecificationError(
                f"equation {label!r}: exog must be 2-D (N x p), got shape {X.shape}"
            )
        names = [f"x{i}" for i in range(X.shape[1])]
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
    try:
        y = y.astype(float)
    except (TypeError, ValueError) as exc:
        raise SpecificationError(f"equation {label!r}: endog {dep!r} is not numeric") from exc
    try:
        X = X.astype(float)
    except (TypeError, ValueError) as exc:
        raise SpecificationError(f"equation {label!r}: exog is not numeric") from exc
    return dep, names, y, X, index


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
    frame = None
    if any(isinstance(equations[lab], str) for lab in labels):
        if data is None:
            lab = next(lab for lab in labels if isinstance(equations[lab], str))
            raise SpecificationError(
                f"equation {lab!r} is a formula but no data was given; pass "
                "data=<DataFrame> (or give (endog, exog) pairs instead)"
            )
        frame = _as_frame(data)
        if not frame.index.is_unique:
            raise SpecificationError("data's index has duplicate labels; reset_index() first")

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
        else:
            dep, names, y, X, index = _pair_arrays(lab, spec, n_expected, index_expected)
            n_expected = y.shape[0]
            if index is None:
                index = index_expected if index_expected is not None else pd.RangeIndex(len(y))
            index_expected = index
            eqs.append(Equation(lab, dep, names))
            ys.append(pd.Series(y, index=index))
            Xs.append(pd.DataFrame(X, index=index, columns=names))

    # Align (all indexes are equal by construction) and find incomplete rows.
    index = ys[0].index
    keep = np.ones(len(index), dtype=bool)
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
            # Rebuild the formula designs on the kept rows so that stateful transforms
            # (centering, categorical levels) are learned on the estimation sample.
            for i, (e, lab) in enumerate(zip(eqs, labels)):
                if e.formula is not None:
                    y, X = _formula_matrices(lab, e.formula, formula_data, eval_env, _NO_NA)
                    ys[i], Xs[i] = y.iloc[:, 0], X
                    e.exog_names = [str(c) for c in X.columns]
        for e, X in zip(eqs, Xs):
            if e.formula is not None:
                e.design_info = X.design_info if hasattr(X, "design_info") else None
    kept = index[keep]

    def rows(values: np.ndarray) -> np.ndarray:
        # formula designs rebuilt on the kept rows already have len(kept) rows
        return values if len(values) == len(kept) else values[keep]

    endog = pd.DataFrame(
        {e.label: rows(y.to_numpy(dtype=float)) for e, y in zip(eqs, ys)}, index=kept
    )
    exog = [rows(X.to_numpy(dtype=float)) for X in Xs]
    for e in eqs:
        if e.formula is not None and e.design_info is None:
            raise SpecificationError(f"equation {e.label!r}: patsy returned no design info")
    return EquationSystem(eqs, endog, exog, n_dropped, formula_data)
