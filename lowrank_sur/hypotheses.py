"""Linear restrictions on the coefficients: checked input for ``t_test`` and ``wald_test``.

statsmodels parses and runs the tests; :func:`check_restriction` first turns blank,
misspelt, misshapen or non-finite restrictions into messages naming ``r_matrix`` and
the parameter names to use, and :class:`RestrictionTests` puts the check in front of
the inherited methods.
"""

from __future__ import annotations

import difflib
import re

import numpy as np
import patsy

__all__ = ["check_restriction", "check_degenerate", "RestrictionTests"]


def _example(names: list[str]) -> str:
    return f"'{names[min(1, len(names) - 1)]} = 0'" if names else "'name = 0'"


def _linear_constraints(strings: list[str], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(R, q)`` for restriction strings, parsed as statsmodels parses them."""
    try:  # statsmodels >= 0.15 chooses the formula engine (patsy or formulaic)
        from statsmodels.formula._manager import FormulaManager
    except ImportError:  # pragma: no cover - statsmodels 0.14
        lc = patsy.DesignInfo(list(names)).linear_constraint(strings)
        return np.asarray(lc.coefs, dtype=float), np.asarray(lc.constants, dtype=float)
    lc = FormulaManager().get_linear_constraints(strings, list(names))
    return (np.asarray(lc.constraint_matrix, dtype=float),
            np.asarray(lc.constraint_values, dtype=float))


def _bad_token(exc: Exception, strings: list[str], names: list[str]) -> str:
    origin = getattr(exc, "origin", None)
    if origin is not None:
        m = re.match(r"[\w.\[\]()]+", origin.code[origin.start:])
        return m.group(0) if m else origin.code[origin.start:origin.end]
    known = set(names)
    for text in strings:
        for token in re.findall(r"[A-Za-z_][\w.\[\]()]*", text):
            if token not in known:
                return token
    return ""


def _parse_strings(strings: list[str], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    for text in strings:
        if not text.strip():
            raise ValueError(
                f"r_matrix contains an empty restriction; write one like {_example(names)} "
                "(the names are model.param_names)"
            )
    try:
        return _linear_constraints(strings, names)
    except Exception as exc:  # noqa: BLE001 - patsy's and formulaic's parse errors
        token = _bad_token(exc, strings, names)
        close = difflib.get_close_matches(token, names, 3) if token else []
        near = f"; did you mean {close}?" if close else ""
        what = f" at {token!r}" if token else ""
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(
            f"r_matrix: cannot read the restriction(s) {strings}{what}: {first}{near} "
            f"Restrictions use the names in model.param_names, e.g. {_example(names)}"
        ) from exc


def _check_matrix(R, n_params: int) -> np.ndarray:
    try:
        R = np.atleast_2d(np.asarray(R, dtype=float))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            "r_matrix must be restriction strings, a q x P matrix or a tuple (R, q); "
            f"got {type(R).__name__} that is not numeric ({exc})"
        ) from exc
    if R.ndim != 2 or R.shape[1] != n_params:
        raise ValueError(
            f"r_matrix has shape {R.shape} but the model has {n_params} coefficients: give "
            f"a q x {n_params} matrix (columns in the order of model.param_names)"
        )
    if not np.all(np.isfinite(R)):
        raise ValueError("r_matrix contains NaN or inf; every restriction must be finite")
    return R


def check_restriction(r_matrix, names: list[str]):
    """Validate a restriction for statsmodels' ``t_test`` / ``wald_test``.

    Parameters
    ----------
    r_matrix : str, list of str, array_like or tuple
        Restriction strings in the parameter names, a q x P matrix, or ``(R, q)``.
    names : list of str
        The parameter names.

    Returns
    -------
    ndarray, tuple or dict
        The restriction as a float matrix or ``(R, q)`` (strings are parsed once here).
    """
    if r_matrix is None:
        raise TypeError(
            f"r_matrix is required: restriction strings such as {_example(names)}, a "
            "q x P matrix or a tuple (R, q)"
        )
    if isinstance(r_matrix, str):
        return _parse_strings([r_matrix], names)
    if isinstance(r_matrix, (list, tuple)) and len(r_matrix) == 0:
        raise ValueError(f"r_matrix is empty; give at least one restriction, e.g. "
                         f"{_example(names)}")
    if isinstance(r_matrix, (list, tuple)) and all(isinstance(r, str) for r in r_matrix):
        return _parse_strings(list(r_matrix), names)
    if isinstance(r_matrix, tuple) and len(r_matrix) == 2:
        R = _check_matrix(r_matrix[0], len(names))
        q = np.atleast_1d(np.asarray(r_matrix[1], dtype=float))
        if q.size != R.shape[0] or not np.all(np.isfinite(q)):
            raise ValueError(
                f"r_matrix = (R, q): q must hold {R.shape[0]} finite values, one per row of R"
            )
        return R, q
    if isinstance(r_matrix, dict):
        return r_matrix
    return _check_matrix(r_matrix, len(names))


def _as_pair(r, n_params: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(R, q)`` of a checked restriction (None for a dict, which statsmodels handles)."""
    if isinstance(r, dict):
        return None
    if isinstance(r, tuple):
        return np.atleast_2d(np.asarray(r[0], dtype=float)), np.atleast_1d(r[1]).astype(float)
    R = np.atleast_2d(np.asarray(r, dtype=float))
    return R, np.zeros(R.shape[0])


def check_degenerate(r, names: list[str], joint: bool) -> None:
    """Refuse restrictions with nothing to test or that contradict each other.

    A zero row of ``R`` restricts no coefficient (``0 = q``: vacuous when q = 0,
    impossible otherwise). For a joint (Wald) test the rows must also be linearly
    independent: dependent rows make ``R V R'`` singular, and when their ``q``
    disagree the restrictions contradict each other (no coefficient vector satisfies
    them). Raises ``ValueError`` naming the rows.
    """
    pair = _as_pair(r, len(names))
    if pair is None:
        return
    R, q = pair
    scale = np.max(np.abs(R), axis=1)
    zero = np.flatnonzero(scale == 0)
    if zero.size:
        rows = [int(i) for i in zero]
        what = ("impossible (0 = q with q != 0)" if np.any(q[zero] != 0)
                else "vacuous (0 = 0)")
        raise ValueError(
            f"r_matrix row(s) {rows} restrict no coefficient (all zeros): the restriction "
            f"is {what}, so there is nothing to test; drop those rows"
        )
    if not joint or R.shape[0] == 1:
        return
    Rn = R / scale[:, None]
    rank = np.linalg.matrix_rank(Rn, tol=1e-10 * max(R.shape))
    if rank == R.shape[0]:
        return
    # consistent iff q lies in the column space of R (least squares leaves no residual)
    qn = q / scale
    sol = np.linalg.lstsq(Rn, qn, rcond=None)[0]
    resid = float(np.max(np.abs(Rn @ sol - qn)))
    if resid > 1e-8 * max(1.0, float(np.max(np.abs(qn)))):
        raise ValueError(
            f"r_matrix: the {R.shape[0]} restrictions contradict each other (their rows "
            f"have rank {rank} and no coefficient vector satisfies R b = q); check the "
            "restrictions"
        )
    raise ValueError(
        f"r_matrix: the {R.shape[0]} restrictions are linearly dependent (rank {rank}): "
        f"some restate others, so R V R' is singular; keep {rank} independent ones"
    )


class RestrictionTests:
    """``t_test`` and ``wald_test`` with checked restrictions (mixed into the results)."""

    def t_test(self, r_matrix, cov_p=None, use_t=None):
        """Tests (z, or t with ``use_t``) of linear restrictions ``R params = q``.

        Parameters
        ----------
        r_matrix : str, list of str, array_like or tuple
            Restrictions as strings in the parameter names
            (``"gm_value_gm = ch_value_ch"``), a q x P matrix, or ``(R, q)``.
        cov_p : array_like, optional
            A P x P covariance to use instead of the model's.
        use_t : bool, optional
            Use the t distribution (default: normal, as everywhere in these results).

        Returns
        -------
        ContrastResults
        """
        r_matrix = check_restriction(r_matrix, self.model.param_names)
        check_degenerate(r_matrix, self.model.param_names, joint=False)
        return super().t_test(r_matrix, cov_p=cov_p, use_t=use_t)

    def wald_test(self, r_matrix, cov_p=None, invcov=None, use_f=None, df_constraints=None,
                  scalar=True):
        """Wald test of the joint linear restrictions ``R params = q``.

        Parameters
        ----------
        r_matrix : str, list of str, array_like or tuple
            As for :meth:`t_test`.
        cov_p, invcov : array_like, optional
            A P x P covariance (or the inverse of ``R V R'``) to use instead.
        use_f : bool, optional
            Report an F statistic (default: chi-squared).
        df_constraints : int, optional
            Number of constraints, when ``invcov`` is given.
        scalar : bool
            Return the statistic as a scalar (statsmodels' future default).

        Returns
        -------
        ContrastResults
        """
        r_matrix = check_restriction(r_matrix, self.model.param_names)
        check_degenerate(r_matrix, self.model.param_names, joint=True)
        return super().wald_test(r_matrix, cov_p=cov_p, invcov=invcov, use_f=use_f,
                                 df_constraints=df_constraints, scalar=scalar)

    def t_test_pairwise(self, *args, **kwargs):
        """Not available (raises NotImplementedError saying what to use instead)."""
        raise NotImplementedError(
            "t_test_pairwise is not available for LowRankSUR (its terms are per equation); "
            "test each pair with t_test, e.g. t_test(['gm_C(g)[T.b] = 0', "
            "'gm_C(g)[T.b] - gm_C(g)[T.c] = 0']) using names from model.param_names, and "
            "adjust the p-values with statsmodels.stats.multitest.multipletests"
        )
