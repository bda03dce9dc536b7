"""``(endog, exog)`` equations: their response and regressors as checked float arrays.

Names come from pandas objects (or ``x0, x1, ...`` for arrays); row counts and indexes
must agree across equations; complex, non-numeric or duplicate columns raise naming the
equation (and the column).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .exceptions import SpecificationError
from .newdata import as_float as _as_float

__all__ = ["pair_arrays"]


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
        names = [str(c) for c in exog.columns]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise SpecificationError(
                f"equation {label!r}: exog has several columns named {dup}; rename them"
            )
        bad = [str(c) for c, t in exog.dtypes.items()
               if not (pd.api.types.is_numeric_dtype(t) or pd.api.types.is_bool_dtype(t))]
        if bad:
            raise SpecificationError(
                f"equation {label!r}: exog column(s) {bad} are not numeric "
                f"({[str(exog[c].dtype) for c in exog.columns if str(c) in bad]}); convert "
                "them (pd.to_numeric) or code them as dummies (pd.get_dummies)"
            )
        return names, exog.to_numpy(), exog.index
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
    if y.shape[0] == 0:
        raise SpecificationError(f"equation {label!r}: endog and exog have no rows")
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


def pair_arrays(label, pair, n_expected, index_expected):
    """Response name, regressor names, float arrays and index of one ``(endog, exog)`` pair.

    Parameters
    ----------
    label : str
        The equation's label (for messages).
    pair : tuple
        ``(endog, exog)``: arrays or pandas objects.
    n_expected : int or None
        Rows of the earlier equations.
    index_expected : pandas.Index or None
        Index of the earlier equations.
    """
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise TypeError(
            f"equation {label!r}: expected a patsy formula string or an (endog, exog) pair, "
            f"got {type(pair).__name__}"
        )
    dep, y, index = _endog_vector(label, pair[0])
    names, X, index = _exog_matrix(label, pair[1], index)
    _check_pair_rows(label, y, X, index, n_expected, index_expected)
    y = _as_float(y, f"equation {label!r}: endog {dep!r}")
    X = _as_float(X, f"equation {label!r}: exog")
    return dep, names, y, X, index
