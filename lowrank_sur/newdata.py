"""The regressor matrices of new data for ``predict``, validated per equation.

A DataFrame goes through each formula equation's fitted patsy design
(:func:`lowrank_sur.formula.apply_design`); design matrices (a dict label -> matrix or
a list of K matrices) are checked for shape, columns and finiteness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .exceptions import SpecificationError
from .formula import apply_design

__all__ = ["new_exog", "exog_matrices", "as_float"]


def as_float(values: np.ndarray, what: str) -> np.ndarray:
    """``values`` as a float array (a copy); complex or non-numeric values raise."""
    if np.iscomplexobj(values):
        raise SpecificationError(
            f"{what} is complex; the model needs real numbers: use the real part or the "
            "modulus explicitly (np.real, np.abs)"
        )
    try:
        return np.array(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise SpecificationError(f"{what} is not numeric ({exc}); convert it to numbers") from exc


def new_exog(system, exog, transform: bool = True) -> tuple[list[np.ndarray], pd.Index | None]:
    """Regressor matrices of every equation for new data, and their row index.

    Parameters
    ----------
    system : EquationSystem
        The fitted model's equations.
    exog : DataFrame, dict or list
        For formula equations (with ``transform``), a DataFrame with the variables
        the formulas use: each equation's stored patsy design is applied. Otherwise
        a dict label -> regressor matrix or a list of K matrices.
    transform : bool
        Apply the formula designs (True) or treat ``exog`` as design matrices.
    """
    if not isinstance(transform, (bool, np.bool_)):
        raise TypeError(f"transform must be True or False, got {transform!r}")
    if isinstance(exog, pd.Series):
        raise TypeError(
            "exog is a Series; pass a DataFrame (for one row: df.iloc[[i]] or "
            "series.to_frame().T)"
        )
    if isinstance(exog, pd.DataFrame) and transform:
        mats = [_formula_exog(system, j, exog) for j in range(len(system.equations))]
        return mats, exog.index
    return exog_matrices(system, exog)


def _formula_exog(system, j: int, frame: pd.DataFrame) -> np.ndarray:
    eq = system.equations[j]
    if eq.formula is None:
        raise TypeError(
            f"equation {eq.label!r} was not given as a formula; pass a dict "
            "label -> regressor matrix instead of a DataFrame"
        )
    return apply_design(eq.label, eq.formula, system.design_info(j), frame, eq.column_types)


def _as_list(labels: list[str], exog) -> list:
    K = len(labels)
    if isinstance(exog, pd.DataFrame):
        raise TypeError(
            "with transform=False, exog must be a dict label -> design matrix or a list "
            f"of {K} design matrices (one per equation), not a DataFrame; "
            "pass transform=True to apply the formulas to a DataFrame"
        )
    if isinstance(exog, Mapping):
        missing = [lab for lab in labels if lab not in exog]
        extra = [k for k in exog if k not in labels]
        if missing or extra:
            raise KeyError(
                f"exog must have one regressor matrix per equation label {labels[:10]}: "
                f"missing {missing[:10]}, unknown {extra[:10]}"
            )
        return [exog[lab] for lab in labels]
    if isinstance(exog, (np.ndarray, str, bytes)) or not isinstance(exog, Sequence):
        raise TypeError(
            f"exog must be a dict label -> regressor matrix or a list of {K} matrices "
            f"(one per equation), got {type(exog).__name__}"
        )
    if len(exog) != K:
        raise ValueError(
            f"exog has {len(exog)} entries but the model has {K} equations; give one "
            "regressor matrix per equation"
        )
    return list(exog)


def exog_matrices(system, exog) -> tuple[list[np.ndarray], pd.Index | None]:
    """Validated regressor matrices (one per equation) and their row index.

    Parameters
    ----------
    system : EquationSystem
        The fitted model's equations.
    exog : dict or sequence
        Label -> matrix, or K matrices in the order of the equations.
    """
    labels = system.labels
    exog = _as_list(labels, exog)
    mats = [_matrix(eq, X) for eq, X in zip(system.equations, exog)]
    for j, X in enumerate(mats[1:], start=1):
        if X.shape[0] != mats[0].shape[0]:
            raise ValueError(
                f"equation {labels[j]!r}: exog has {X.shape[0]} rows but equation "
                f"{labels[0]!r} has {mats[0].shape[0]}; every equation needs the same rows"
            )
    pandas = (pd.DataFrame, pd.Series)
    indexes = [(j, X.index) for j, X in enumerate(exog) if isinstance(X, pandas)]
    for j, idx in indexes[1:]:
        if not idx.equals(indexes[0][1]):
            raise ValueError(
                f"equation {labels[j]!r}: exog's index differs from equation "
                f"{labels[indexes[0][0]]!r}'s; rows are matched by position, so align them "
                "first (e.g. X.reindex(index))"
            )
    index = indexes[0][1] if indexes else None
    return mats, index


def _matrix(eq, X) -> np.ndarray:
    if isinstance(X, pd.DataFrame) and set(X.columns) == set(eq.exog_names):
        X = X[eq.exog_names]  # the columns by name, whatever their order
    values = as_float(np.asarray(X), f"equation {eq.label!r}: exog")
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise ValueError(
            f"equation {eq.label!r}: exog must be 2-D (rows x {len(eq.exog_names)} "
            f"columns), got shape {values.shape}"
        )
    if values.shape[1] != len(eq.exog_names):
        raise ValueError(
            f"equation {eq.label!r}: exog has {values.shape[1]} columns, the model has "
            f"{len(eq.exog_names)} ({eq.exog_names[:8]})"
        )
    if not np.all(np.isfinite(values)):
        rows = np.flatnonzero(~np.all(np.isfinite(values), axis=1))
        raise ValueError(
            f"equation {eq.label!r}: exog has NaN or inf in {rows.size} row(s) (first: "
            f"row {rows[0]}); drop or fill those rows before predicting"
        )
    return values
