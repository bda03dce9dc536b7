"""Patsy formulas: an equation's matrices with diagnostics, and the fitted design kept safe.

One job: everything that touches patsy. :func:`formula_matrices` builds one equation's
response and regressors and turns patsy's, numpy's and pandas' failures into messages
that name the equation and the column; :func:`referenced_columns` says which columns a
formula reads; :func:`apply_design` evaluates a fitted design on new data;
:func:`dump_design` / :func:`load_design` pickle a fitted design (patsy refuses to)
without the estimation data, so that an unpickled model predicts exactly as before.
"""

from __future__ import annotations

import ast
import builtins
import copy
import difflib
import functools
import importlib
import io
import numbers
import pickle
import types

import numpy as np
import pandas as pd
import patsy
import patsy.builtins as patsy_builtins

from .exceptions import SpecificationError

__all__ = [
    "DROP_NA",
    "NO_NA",
    "formula_matrices",
    "referenced_columns",
    "transform_nan_rows",
    "column_types",
    "apply_design",
    "dump_design",
    "load_design",
    "freeze_design",
]

#: Missing values (NaN, None, pd.NA, in numerical and categorical factors alike) drop the
#: row from an equation's matrices; :func:`lowrank_sur.system.build_system` then drops it
#: from every equation (or refuses it).
class _DropNA(patsy.NAAction):
    """Patsy's ``drop`` action, testing numerical factors on a plain array (fast on pandas)."""

    def is_numerical_NA(self, arr):
        """Rows of a numerical factor's values that hold NaN."""
        values = np.asarray(arr)
        if values.dtype.kind not in "fc":
            return super().is_numerical_NA(values)
        mask = np.isnan(values)
        return mask.any(axis=1) if mask.ndim > 1 else mask

    def _handle_NA_drop(self, values, is_NAs, origins):
        """Patsy's row drop, without copying every factor's values when nothing is missing."""
        if not any(np.any(is_NA) for is_NA in is_NAs):
            return list(values)
        return super()._handle_NA_drop(values, is_NAs, origins)


DROP_NA = _DropNA(on_NA="drop", NA_types=["None", "NaN"])

#: Patsy's missing-value handling switched off, for new data (checked column by column).
NO_NA = patsy.NAAction(NA_types=[])

_PATSY_NAMES = {id(v): k for k, v in vars(patsy_builtins).items() if not k.startswith("_")}


# ---------------------------------------------------------------- columns
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().split("\n")[0]
    return text if text else type(exc).__name__


@functools.lru_cache(maxsize=4096)
def _parse(formula: str) -> tuple[str, ...]:
    desc = patsy.ModelDesc.from_formula(formula)
    return tuple(getattr(f, "code", "") for term in desc.lhs_termlist + desc.rhs_termlist
                 for f in term.factors)


def _factor_codes(label: str, formula: str) -> tuple[str, ...]:
    try:
        return _parse(formula)
    except patsy.PatsyError as exc:
        raise SpecificationError(
            f"equation {label!r}: {formula!r} is not a valid patsy formula: "
            f"{_first_line(exc)}; write it as 'response ~ regressor + ...'"
        ) from exc


def _code_names(code: str) -> tuple[set[str], set[str]]:
    """Bare names in a factor's Python code, and the strings quoted by ``Q("...")``."""
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except SyntaxError:
        return set(), set()
    names, quoted = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "Q" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            quoted.add(node.args[0].value)
    return names, quoted


def referenced_columns(label: str, formula: str, columns) -> list[str]:
    """The columns of the data a formula reads (names and ``Q("...")`` strings)."""
    found: list[str] = []
    for code in _factor_codes(label, formula):
        names, quoted = _code_names(code)
        for name in sorted(names | quoted):
            if name in columns and name not in found:  # a hash lookup on a pandas Index
                found.append(name)
    return found


def _unknown_names(label: str, formula: str, frame: pd.DataFrame, eval_env) -> list[str]:
    """Names a formula uses that are neither columns nor defined where it was written."""
    env = eval_env.namespace if isinstance(eval_env, patsy.EvalEnvironment) else {}
    known = set(map(str, frame.columns)) | set(vars(builtins)) | set(vars(patsy_builtins))
    out = []
    for code in _factor_codes(label, formula):
        names, quoted = _code_names(code)
        out.extend(n for n in sorted(names) if n not in known and n not in env)
        out.extend(q for q in sorted(quoted) if q not in frame.columns)
    return sorted(set(out))


def _column_hint(frame: pd.DataFrame, missing: list[str]) -> str:
    labels = [c for c in frame.columns if isinstance(c, str)]
    hint = f"; data has no column(s) {missing}"
    close = sorted({m for name in missing for m in difflib.get_close_matches(name, labels, 3)})
    if close:
        hint += f" (similar columns: {close})"
    if len(labels) < len(frame.columns):
        hint += (
            "; some of data's column labels are not strings, and formulas can only name "
            "string columns: rename them, e.g. df.columns = df.columns.map(str)"
        )
    return hint


# ------------------------------------------------------------ dtype checks
_UNSUPPORTED = (
    "complex numbers cannot be regressors or responses: use the real part or the "
    "modulus explicitly (np.real, np.abs)"
)


def _dtype_problem(series: pd.Series) -> str | None:
    """Why a column cannot enter a formula as it is (None when it can)."""
    dtype = series.dtype
    if pd.api.types.is_complex_dtype(dtype):
        return _UNSUPPORTED
    if (pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype)
            or isinstance(dtype, (pd.PeriodDtype, pd.IntervalDtype))):
        return (
            "dates and durations are not numbers: convert the column, e.g. a trend "
            "(df[col] - df[col].min()).dt.days or the year df[col].dt.year, or write "
            "C(col) to use its values as categories"
        )
    return None


def _holds_numbers(series: pd.Series) -> bool:
    """An object or text column whose every value is a number (or numeric text)."""
    values = series.dropna()
    if values.empty:
        return False
    if pd.api.types.is_object_dtype(series.dtype) and all(
        isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in values
    ):
        return True
    if not pd.api.types.is_string_dtype(series.dtype):
        return False
    try:
        pd.to_numeric(values.astype(str))
    except (TypeError, ValueError):
        return False
    return True


def _check_categorical_factors(label: str, frame: pd.DataFrame, design_info) -> None:
    """Refuse bare columns that patsy would silently turn into one dummy per value."""
    for factor, info in design_info.factor_infos.items():
        code = getattr(factor, "code", "").strip()
        if info.type != "categorical" or code not in frame.columns:
            continue
        col = frame[code]
        problem = _dtype_problem(col)
        if problem is None and _holds_numbers(col):
            problem = (
                f"it holds numbers stored as {col.dtype} values: convert it with "
                f"pd.to_numeric(df[{code!r}]), or write C({code}) to use its values as "
                "categories on purpose"
            )
        if problem is not None:
            raise SpecificationError(
                f"equation {label!r}: column {code!r} (dtype {col.dtype}) would become "
                f"{len(info.categories or ()) or 'many'} dummy columns, one per "
                f"distinct value; {problem}"
            )


def _is_integer(series: pd.Series) -> bool:
    return pd.api.types.is_integer_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
        series.dtype
    )


def _check_int_overflow(label, formula, frame, cols, eval_env, y, X) -> None:
    """Integer arithmetic wraps around silently: compare with the same formula on floats."""
    ints = [c for c in cols if _is_integer(frame[c])]
    if not ints:
        return
    as_float = frame[cols].astype({c: "float64" for c in ints})
    try:
        with np.errstate(all="ignore"):
            yf, Xf = patsy.dmatrices(formula, as_float, return_type="dataframe",
                                     NA_action=DROP_NA, eval_env=eval_env)
    except Exception:  # noqa: BLE001 - the float version is only a cross-check
        return
    for got, ref in ((y, yf), (X, Xf)):
        for name in got.columns:
            if name not in ref.columns or len(ref) != len(got):
                continue
            a, b = got[name].to_numpy(dtype=float), ref[name].to_numpy(dtype=float)
            with np.errstate(all="ignore"):
                off = ~np.isclose(a, b, rtol=1e-6, atol=0.0, equal_nan=True)
            if np.any(off):
                raise SpecificationError(
                    f"equation {label!r}: {name!r} overflows the integer type of column(s) "
                    f"{ints} (integer arithmetic wraps around silently: "
                    f"{int(off.sum())} wrong values); convert the column(s) to float first, "
                    f"e.g. df[{ints[0]!r}] = df[{ints[0]!r}].astype(float)"
                )


def _check_response(label: str, formula: str, y: pd.DataFrame) -> None:
    infos = y.design_info.factor_infos.values()
    if any(fi.type != "numerical" for fi in infos):
        raise SpecificationError(
            f"equation {label!r}: the response of {formula!r} is not numeric (patsy "
            f"coded it as categorical: {list(y.columns)[:5]}); give a numeric response"
        )
    if y.shape[1] != 1:
        raise SpecificationError(
            f"equation {label!r}: the left side of {formula!r} has {y.shape[1]} columns "
            f"{list(y.columns)[:5]}; each equation has one response: write one equation "
            "per response, or I(a + b) for a sum"
        )


def _diagnose(label, formula, frame, cols, eval_env, exc) -> SpecificationError:
    """A message for a formula patsy could not evaluate."""
    for c in cols:
        problem = _dtype_problem(frame[c])
        if problem is not None:
            return SpecificationError(
                f"equation {label!r}: column {c!r} has dtype {frame[c].dtype}; {problem}"
            )
    missing = _unknown_names(label, formula, frame, eval_env)
    hint = _column_hint(frame, missing) if missing else ""
    kind = "" if isinstance(exc, patsy.PatsyError) else f"{type(exc).__name__}: "
    return SpecificationError(
        f"equation {label!r}: cannot build {formula!r}: {kind}{_first_line(exc)}{hint}"
    )


def _nullable_as_float(frame: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Nullable numeric columns holding pd.NA as float64 with NaN (patsy cannot test pd.NA)."""
    convert = {
        c: frame[c].astype("float64") for c in cols
        if pd.api.types.is_extension_array_dtype(frame[c].dtype)
        and pd.api.types.is_numeric_dtype(frame[c].dtype)
        and not pd.api.types.is_bool_dtype(frame[c].dtype) and frame[c].isna().any()
    }
    return frame.assign(**convert) if convert else frame


def formula_matrices(label: str, formula: str, frame: pd.DataFrame, eval_env):
    """Response and regressor DataFrames of one formula equation, with patsy designs.

    Raises :class:`~lowrank_sur.exceptions.SpecificationError` naming the equation (and
    the column) for anything patsy cannot build or would build silently wrong: unknown
    names, duplicate columns, several responses, dates, complex numbers, numbers stored
    as objects or text, integer overflow.
    """
    if "~" not in formula:
        raise SpecificationError(
            f"equation {label!r}: formula {formula!r} has no '~'; write it as "
            "'response ~ regressor + ...'"
        )
    cols = referenced_columns(label, formula, frame.columns)
    dup = [] if frame.columns.is_unique else sorted(
        {c for c in cols if int(np.sum(frame.columns == c)) > 1})
    if dup:
        raise SpecificationError(
            f"equation {label!r}: data has several columns named {dup}; rename them so "
            "that every column the formula uses is unique"
        )
    data = _nullable_as_float(frame, cols)
    try:
        with np.errstate(all="ignore"):  # NaN from e.g. log(-1) is reported as dropped rows
            y, X = patsy.dmatrices(formula, data, return_type="dataframe",
                                   NA_action=DROP_NA, eval_env=eval_env)
    except Exception as exc:  # noqa: BLE001 - patsy, numpy, pandas and user functions
        raise _diagnose(label, formula, frame, cols, eval_env, exc) from exc
    _check_response(label, formula, y)
    _check_categorical_factors(label, frame, X.design_info)
    _check_int_overflow(label, formula, data, cols, eval_env, y, X)
    return y, X


def transform_nan_rows(frame: pd.DataFrame, cols: list[str], kept: pd.Index) -> np.ndarray:
    """Rows missing from an equation's matrices (``kept``) although its columns have values.

    Those missing values come from the formula's transforms (``np.log`` of a negative
    number, say), not from the data.
    """
    dropped = ~frame.index.isin(kept)
    raw = frame[cols].isna().to_numpy().any(axis=1) if cols else np.zeros(len(frame), bool)
    return dropped & ~raw


# ---------------------------------------------------------------- new data
def _label(value) -> str:
    """A row label as the user wrote it (1940, 'a'), not numpy's repr."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def column_types(frame: pd.DataFrame, cols: list[str]) -> dict[str, tuple[str, bool]]:
    """Per column: its dtype and whether it is numeric (to check new data against)."""
    return {
        c: (str(frame[c].dtype), bool(pd.api.types.is_numeric_dtype(frame[c].dtype)
                                      and not pd.api.types.is_bool_dtype(frame[c].dtype)))
        for c in cols
    }


def apply_design(label: str, formula: str, design_info, frame: pd.DataFrame,
                 types_at_fit: dict[str, tuple[str, bool]]) -> np.ndarray:
    """Evaluate equation ``label``'s fitted design on new data (finite, float)."""
    missing = [c for c in types_at_fit if c not in frame.columns]
    if missing:
        raise SpecificationError(
            f"equation {label!r}: the new data have no column(s) {missing}, which "
            f"{formula!r} uses; add them"
        )
    for c, (was, numeric) in types_at_fit.items():
        now = frame[c].dtype
        na = frame[c].isna().to_numpy()
        if np.any(na):
            first = frame.index[np.flatnonzero(na)[0]]
            raise SpecificationError(
                f"equation {label!r}: column {c!r} of the new data has {int(na.sum())} missing "
                f"value(s) (first: row {_label(first)}); drop or fill those rows before "
                "predicting"
            )
        if numeric and not (pd.api.types.is_numeric_dtype(now) or pd.api.types.is_bool_dtype(now)):
            raise SpecificationError(
                f"equation {label!r}: column {c!r} of the new data has dtype {now}, but it "
                f"was numeric ({was}) when the model was fitted; convert it, e.g. "
                f"pd.to_numeric(df[{c!r}])"
            )
    try:
        with np.errstate(all="ignore"):
            (X,) = patsy.build_design_matrices([design_info], frame, NA_action=NO_NA,
                                               return_type="dataframe")
    except Exception as exc:  # noqa: BLE001 - patsy, numpy, pandas and user functions
        kind = "" if isinstance(exc, patsy.PatsyError) else f"{type(exc).__name__}: "
        raise SpecificationError(
            f"equation {label!r}: cannot apply {formula!r} to the new data: "
            f"{kind}{_first_line(exc)}"
        ) from exc
    values = X.to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if np.any(bad):
        c = int(np.flatnonzero(bad.any(axis=0))[0])
        rows = np.flatnonzero(bad[:, c])
        raise SpecificationError(
            f"equation {label!r}: the new data give NaN or inf in {X.columns[c]!r} for "
            f"{rows.size} row(s) (first: {_label(frame.index[rows[0]])}); drop or fill those rows "
            "before predicting"
        )
    return values


# ---------------------------------------------------------------- pickling
def _new_instance(cls):
    return cls.__new__(cls)


class _DesignPickler(pickle.Pickler):
    """Pickles patsy's objects by their attributes; modules by name; patsy's builtins."""

    def reducer_override(self, obj):
        if isinstance(obj, types.ModuleType):
            return importlib.import_module, (obj.__name__,)
        name = _PATSY_NAMES.get(id(obj))
        if name is not None and getattr(patsy_builtins, name, None) is obj:
            return getattr, (patsy_builtins, name)
        cls = type(obj)
        if cls.__module__.split(".")[0] == "patsy" and hasattr(obj, "__dict__"):
            return _new_instance, (cls,), dict(obj.__dict__)
        return NotImplemented


def _dumps(obj) -> bytes:
    buf = io.BytesIO()
    _DesignPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


def _namespaces(design_info):
    """The namespaces (dicts) a fitted design looks names up in, one per factor."""
    for info in getattr(design_info, "factor_infos", {}).values():
        state = getattr(info, "state", None)
        env = state.get("eval_env") if isinstance(state, dict) else None
        yield from getattr(env, "_namespaces", [])


def dump_design(label: str, formula: str, design_info) -> tuple[bytes | None, str | None]:
    """Pickle a fitted patsy design; on failure, None and the reason (naming the object)."""
    try:
        return _dumps(design_info), None
    except Exception as exc:  # noqa: BLE001 - whatever the user's objects raise
        culprits = []
        for ns in _namespaces(design_info):
            for name, value in ns.items():
                try:
                    _dumps(value)
                except Exception:  # noqa: BLE001
                    culprits.append(name)
        what = f"{culprits}" if culprits else "an object it uses"
        return None, (
            f"equation {label!r}: the design of {formula!r} could not be pickled because "
            f"{what} cannot be ({_first_line(exc)}); define functions used in formulas with "
            "def at module level (not lambda or inside a function) to keep predict() "
            "working after unpickling"
        )


def load_design(blob: bytes):
    """The patsy design pickled by :func:`dump_design`."""
    return pickle.loads(blob)


def freeze_design(design_info) -> None:
    """Copy the mutable objects (arrays, frames, lists, dicts) a design captured.

    Patsy keeps references to the variables a formula takes from the caller's
    namespace; copying them means that changing those objects later does not change
    the fitted model's predictions.
    """
    mutable = (np.ndarray, pd.Series, pd.DataFrame, list, dict, set, bytearray)
    for ns in _namespaces(design_info):
        for name, value in list(ns.items()):
            if isinstance(value, mutable):
                ns[name] = copy.deepcopy(value)
