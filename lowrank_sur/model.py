"""``LowRankSUR``: the statsmodels model class with the formula interface."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
import patsy
from statsmodels.base.model import LikelihoodModel

from .coefcov import get_cov_type
from .covariance import LowRankCovariance
from .design import SURDesign
from .exceptions import IdentificationWarning
from .fitters import fit_design
from .options import FitOptions, check_rank
from .results import LowRankSURResults, LowRankSURResultsWrapper
from .selection import CRITERIA, default_rank, information_criteria, n_free_params
from .system import build_system

__all__ = ["LowRankSUR"]


class LowRankSUR(LikelihoodModel):
    """Seemingly Unrelated Regressions with ``Sigma = F F' + diag(D)``.

    Parameters
    ----------
    equations : dict
        In the user's order, equation label -> patsy formula string (then ``data``
        is required), or label -> ``(endog, exog)`` pair of arrays or pandas objects
        (``exog`` holds its own constant).
    data : DataFrame or mapping, optional
        Data for the formulas. Never modified.
    missing : {"drop", "raise"}
        Rows with a missing value in any equation's variables are dropped from
        every equation (as linearmodels does) or raise an error.

    Attributes
    ----------
    k_eqs : int
        Number of equations K.
    nobs : int
        Observations per equation N (after dropping incomplete rows).
    n_dropped : int
        Rows dropped for missing values.
    equation_labels : list of str
        Equation labels.
    param_names : list of str
        ``"{label}_{column}"`` for every coefficient.

    Examples
    --------
    >>> import statsmodels.api as sm
    >>> from lowrank_sur import LowRankSUR
    >>> from lowrank_sur.datasets import grunfeld_wide
    >>> df = grunfeld_wide()
    >>> eqs = {f: f"invest_{f} ~ value_{f} + capital_{f}" for f in ["gm", "ch", "ge"]}
    >>> res = LowRankSUR(eqs, df).fit(rank=1)
    >>> res.params.index[:3].tolist()
    ['gm_Intercept', 'gm_value_gm', 'gm_capital_gm']
    """

    def __init__(self, equations: Mapping, data=None, *, missing: str = "drop", **kwargs):
        eval_env = kwargs.pop("eval_env", None)
        if eval_env is None:
            eval_env = patsy.EvalEnvironment.capture(1)
        if kwargs:
            raise TypeError(f"unexpected keyword argument(s): {sorted(kwargs)}")
        system = build_system(equations, data, missing=missing, eval_env=eval_env)
        self.system = system
        super().__init__(system.endog, None, missing="none")
        names = system.param_names
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(
                f"parameter names clash: {dup[:5]}; give equations labels that do not "
                "collide after joining with column names"
            )
        self.data.param_names = names
        self.data.cov_names = names
        self.design = SURDesign(
            system.exog,
            eq_names=[f"equation {lab!r}" for lab in system.labels],
            exog_names=[e.exog_names for e in system.equations],
        )
        self.k_eqs = self.design.k_eqs
        self.nobs = self.design.nobs
        self.n_dropped = system.n_dropped
        self.k_params = self.design.k_params
        self.k_constant = int(
            sum(np.any(np.all(X == 1.0, axis=0)) if X.size else 0 for X in system.exog)
        )
        self.df_model = self.k_params - self.k_constant
        self.df_resid = self.nobs * self.k_eqs - self.k_params
        self._Y = system.endog.to_numpy()
        # arrays with N rows, wiped by ``results.remove_data()`` (statsmodels' convention)
        self._data_attr.extend(
            ["_Y", "design.Q", "system.endog", "system.exog", "system.formula_data"]
        )

    @classmethod
    def from_formula(cls, formulas: Mapping, data, subset=None, drop_cols=None, *args, **kwargs):
        """Create a model from a dict of label -> patsy formula.

        Parameters
        ----------
        formulas : dict
            Equation label -> formula string.
        data : DataFrame or mapping
            The data.
        subset : array_like, optional
            Boolean mask or index labels selecting rows of ``data``.
        drop_cols : list, optional
            Unused; accepted for statsmodels compatibility.
        *args, **kwargs
            Passed to :class:`LowRankSUR` (``missing``).
        """
        if subset is not None:
            data = data.loc[subset]
        kwargs.setdefault("eval_env", patsy.EvalEnvironment.capture(1))
        return cls(formulas, data, *args, **kwargs)

    # --------------------------------------------------------------- names
    @property
    def exog_names(self) -> list[str]:
        """Parameter names ``"{label}_{column}"`` (statsmodels' constraint strings use them)."""
        return self.data.param_names

    @property
    def endog_names(self) -> list[str]:
        """Equation labels."""
        return self.system.labels

    @property
    def equation_labels(self) -> list[str]:
        """Equation labels in order."""
        return self.system.labels

    @property
    def param_names(self) -> list[str]:
        """All coefficient labels."""
        return self.data.param_names

    # ------------------------------------------------------------ likelihood
    def loglike(self, params, F=None, D=None) -> float:
        """Log-likelihood at coefficients ``params`` and covariance ``F F' + diag(D)``.

        Parameters
        ----------
        params : array_like
            All P coefficients in the order of :attr:`param_names`.
        F, D : array_like
            Loadings (K x k) and idiosyncratic variances (K,).
        """
        if F is None or D is None:
            raise TypeError("loglike needs the covariance: loglike(params, F, D)")
        R = self._Y - self.predict(params)
        return LowRankCovariance(F, D).loglike(R)

    def predict(self, params, exog=None) -> np.ndarray:
        """Fitted values N x K for coefficients ``params`` (training design if ``exog`` is None).

        Parameters
        ----------
        params : array_like
            All P coefficients.
        exog : list of array_like, optional
            One regressor matrix per equation (new data). For formula models use
            ``results.predict(DataFrame)``.
        """
        params = np.asarray(params, dtype=float)
        d = self.design
        coefs = [params[d.offsets[j] : d.offsets[j + 1]] for j in range(d.k_eqs)]
        if exog is None:
            return d.fitted(d.from_coefs(coefs))
        if len(exog) != d.k_eqs:
            raise ValueError(f"exog must hold {d.k_eqs} matrices, one per equation")
        cols = []
        for j, (X, b) in enumerate(zip(exog, coefs)):
            X = np.asarray(X, dtype=float)
            if X.ndim == 1:
                X = X[:, None]
            if X.shape[1] != b.size:
                raise ValueError(
                    f"equation {self.equation_labels[j]!r}: exog has {X.shape[1]} columns, "
                    f"the model has {b.size}"
                )
            cols.append(X @ b)
        return np.column_stack(cols)

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        rank: int | str | None = None,
        method: str = "als",
        *,
        max_rank: int | None = None,
        cov_type: str = "nonrobust",
        cov_kwds: dict | None = None,
        **options,
    ):
        """Fit by maximum likelihood.

        Parameters
        ----------
        rank : int, "aic", "bic" or None
            Number of factors k (``0 <= k < K`` and ``k < N``). ``None`` uses
            :func:`~lowrank_sur.selection.default_rank`, ``min(8, ceil(K / 10))``.
            ``"aic"`` / ``"bic"`` fit every rank from 0 to ``max_rank`` and keep the
            best by the criterion; the comparison table is ``results.rank_selection``.
        method : str
            A registered fitter: ``"als"`` (matrix-free, O(N K k) memory; default)
            or ``"em"`` (the dense EM reference, O(K^2 + P^2) memory).
        max_rank : int, optional
            Largest rank tried by ``"aic"`` / ``"bic"`` (default ``min(K - 1, N - 1, 10)``).
        cov_type : str
            Covariance of the coefficients, from the registry
            (:func:`lowrank_sur.coefcov.available_cov_types`): ``"nonrobust"``
            (GLS at the MLE; aliases ``"unadjusted"``, ``"homoskedastic"``).
        cov_kwds : dict, optional
            Options of the covariance estimator.
        **options
            Fitting options (see :class:`~lowrank_sur.options.FitOptions`):
            ``maxiter`` (sweeps or EM cycles; reaching it issues a
            :class:`~statsmodels.tools.sm_exceptions.ConvergenceWarning`), ``tol``
            (relative log-likelihood change, with ``ptol`` the largest parameter
            change, for convergence), ``d_floor`` (floor for ``D_j`` relative to
            equation j's OLS residual variance), ``accelerate`` (EM only: SQUAREM),
            ``disp`` (print one line per iteration), ``callback``. Unknown keywords
            raise ``TypeError``.

        Returns
        -------
        LowRankSURResults
            Wrapped so that outputs carry pandas labels.
        """
        opts = FitOptions.from_kwargs(method=method, **options)
        estimator = get_cov_type(cov_type)
        cov_kwds = dict(cov_kwds or {})
        selection = None
        if isinstance(rank, str):
            crit = rank.lower()
            if crit not in CRITERIA:
                raise ValueError(f"rank must be an integer, 'aic', 'bic' or None, got {rank!r}")
            record, selection = self._select_rank(crit, max_rank, opts)
        else:
            if rank is None:
                rank = default_rank(self.k_eqs, self.nobs)
            record = fit_design(self.design, self._Y, rank, opts)
        coef_cov = estimator(self.design, self._Y, record, **cov_kwds)
        res = LowRankSURResults(self, record, coef_cov, cov_kwds=cov_kwds,
                                rank_selection=selection)
        return LowRankSURResultsWrapper(res)

    def _select_rank(self, crit: str, max_rank, opts: FitOptions):
        """Fit ranks 0..max_rank; return the best fit's record and the comparison table."""
        top = min(self.k_eqs - 1, self.nobs - 1, 10) if max_rank is None else max_rank
        top = check_rank(top, self.k_eqs, self.nobs) if top > 0 else 0
        rows, records = [], []
        for k in range(top + 1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", IdentificationWarning)
                rec = fit_design(self.design, self._Y, k, opts)
            records.append(rec)
            df = n_free_params(self.k_params, self.k_eqs, k)
            rows.append(
                {"rank": k, "llf": rec.llf, "df": df,
                 **information_criteria(rec.llf, df, self.nobs),
                 "converged": rec.converged, "iterations": rec.iterations}
            )
        table = pd.DataFrame(rows).set_index("rank")
        best = int(table[crit].idxmin())
        table["selected"] = table.index == best
        return records[best], table

