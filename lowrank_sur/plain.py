"""Formulas of bare float columns and their interactions, built without patsy per equation.

Large systems written as a dict of formulas usually repeat one shape with other
variable names (``y_a ~ x1_a + x2_a``, ``y_b ~ x1_b + x2_b``, ...). A formula whose
terms are bare column names and their interactions (``a:b``, ``a*b``, ``- 1``) has no
state learned from the data, so patsy is called once per *shape* (the formula with its
names replaced by placeholders) to fix the column order and names, and each equation's
columns are read from the data directly: exactly the matrices patsy builds. Anything
else (functions, ``C()``, ``I()``, ``Q()``, integer, boolean or text columns) returns
None and goes through :func:`lowrank_sur.formula.formula_matrices`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import patsy

__all__ = ["PlainShape", "PlainColumns", "plain_shape", "plain_matrices", "plain_design"]

_IDENT = re.compile(r"(?<![\w.'\"])[A-Za-z_]\w*(?![\w.(])")
_PLACEHOLDER = re.compile(r"_v(\d+)_")


@dataclass(frozen=True)
class PlainShape:
    """A formula whose terms are bare column names and their interactions (``a:b``).

    ``columns`` lists, per design column, the positions of the formula's names whose
    product it is (empty: the intercept); ``names`` patsy's column names with the
    names' positions as placeholders ``_v{i}_``; ``response`` the position of the
    response.
    """

    columns: tuple[tuple[int, ...], ...]
    names: tuple[str, ...]
    response: int
    n_names: int


@functools.lru_cache(maxsize=256)
def _plain_template(key: str, n_names: int) -> PlainShape | None:
    """Patsy's design of a placeholder formula, once per shape (None: not plain)."""
    try:
        desc = patsy.ModelDesc.from_formula(key)
    except patsy.PatsyError:
        return None
    codes = [f.code for t in desc.lhs_termlist + desc.rhs_termlist for f in t.factors]
    if len(desc.lhs_termlist) != 1 or not all(_PLACEHOLDER.fullmatch(c) for c in codes):
        return None
    frame = pd.DataFrame({f"_v{i}_": [1.0, 2.0] for i in range(n_names)})
    try:
        y, X = patsy.dmatrices(key, frame, eval_env=patsy.EvalEnvironment([{}]))
    except patsy.PatsyError:
        return None
    (lhs,) = y.design_info.term_names
    columns = []
    for term in X.design_info.terms:
        columns.append(tuple(int(_PLACEHOLDER.fullmatch(f.code).group(1))
                             for f in term.factors))
    return PlainShape(tuple(columns), tuple(X.design_info.column_names),
                      int(_PLACEHOLDER.fullmatch(lhs).group(1)), n_names)


def plain_shape(formula: str) -> tuple[PlainShape, list[str]] | None:
    """The shape of a formula made of bare names and their interactions, and its names.

    Formulas identical up to their variable names share one shape, built by one patsy
    call (:func:`_plain_template`). None for anything else (functions, ``C()``,
    ``Q()``, ``I()``, powers): those go through patsy.
    """
    names: list[str] = []

    def sub(match) -> str:
        name = match.group(0)
        if name not in names:
            names.append(name)
        return f"_v{names.index(name)}_"

    key = _IDENT.sub(sub, formula)
    shape = _plain_template(key, len(names))
    return None if shape is None else (shape, names)


def _name_formats(shape: PlainShape) -> tuple[str, ...]:
    """Patsy's column names of a shape as format strings of the formula's names."""
    return tuple(_PLACEHOLDER.sub(lambda m: "{" + m.group(1) + "}", n) for n in shape.names)


def plain_matrices(shape: PlainShape, values: np.ndarray, idx: np.ndarray):
    """Responses and regressors of equations sharing one plain shape, built together.

    Parameters
    ----------
    shape : PlainShape
        Their shape.
    values : ndarray, shape (N, M)
        The data columns they read.
    idx : ndarray of int, shape (E, n_names)
        Per equation, the columns of ``values`` holding its names.

    Returns
    -------
    y : ndarray, shape (E, N)
    X : ndarray, shape (E, N, p)
        Every row, NaN kept (missing rows are dropped for all equations later).
    """
    V = values[:, idx]  # (N, E, n_names)
    E, N = idx.shape[0], values.shape[0]
    X = np.empty((E, N, len(shape.columns)))
    for c, factors in enumerate(shape.columns):
        if not factors:
            X[:, :, c] = 1.0
            continue
        col = V[:, :, factors[0]].copy() if len(factors) > 1 else V[:, :, factors[0]]
        for f in factors[1:]:
            col *= V[:, :, f]
        X[:, :, c] = col.T
    return np.ascontiguousarray(V[:, :, shape.response].T), X


def plain_design(formula: str, columns: list[str]):
    """Patsy's design (regressors) of a plain formula, built on two rows of float values.

    A plain formula has no state learned from the data, so this is the design patsy
    would build on the estimation sample.
    """
    frame = pd.DataFrame({c: [1.0, 2.0] for c in columns})
    _, X = patsy.dmatrices(formula, frame, eval_env=patsy.EvalEnvironment([{}]))
    return X.design_info


class PlainColumns:
    """The equations with plain formulas, built together per formula shape.

    The float columns they read are taken from the frame in one call; equations that
    share a shape are built ``chunk`` at a time by :func:`plain_matrices`.
    """

    def __init__(self, frame: pd.DataFrame, equations: Mapping, labels: list[str],
                 chunk: int = 1024) -> None:
        self.dtypes = frame.dtypes.to_dict() if frame.columns.is_unique else None
        self.built: dict[str, tuple] = {}
        if self.dtypes is None:
            return
        groups: dict[PlainShape, list[tuple[str, list[str]]]] = {}
        wanted: dict[str, None] = {}
        for lab in labels:
            spec = equations[lab]
            found = plain_shape(spec) if isinstance(spec, str) else None
            if found is not None and all(self._is_float(n) for n in found[1]):
                groups.setdefault(found[0], []).append((lab, found[1]))
                wanted.update(dict.fromkeys(found[1]))
        if not wanted:
            return
        position = {name: i for i, name in enumerate(wanted)}
        values = frame[list(wanted)].to_numpy(dtype=float)
        type_names: dict = {}
        for shape, members in groups.items():
            formats = _name_formats(shape)
            for lo in range(0, len(members), chunk):
                part = members[lo : lo + chunk]
                idx = np.array([[position[n] for n in names] for _, names in part])
                Y, X = plain_matrices(shape, values, idx)
                for e, (lab, names) in enumerate(part):
                    types = {}
                    for c in names:
                        dtype = self.dtypes[c]
                        if dtype not in type_names:
                            type_names[dtype] = str(dtype)
                        types[c] = (type_names[dtype], True)
                    self.built[lab] = (names[shape.response],
                                       [f.format(*names) for f in formats], list(names),
                                       types, Y[e], X[e])

    def _is_float(self, name: str) -> bool:
        dtype = self.dtypes.get(name)
        return (dtype is not None and not isinstance(dtype, pd.api.extensions.ExtensionDtype)
                and dtype.kind == "f")

    def build(self, lab: str):
        """Equation ``lab`` without a patsy call, or None when its formula is not plain.

        Returns the response name, the column names, the data columns read with their
        dtypes (``column_types``), the response and the regressors (views of the arrays
        built for its shape). The rows keep their missing values (as a pair's do); the
        patsy design is built when first needed (:func:`plain_design`).
        """
        return self.built.get(lab)
