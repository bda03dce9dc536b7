"""``LowRankSUR``: the statsmodels model class with the formula interface."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from statsmodels.base.model import LikelihoodModel

from .coefcov import get_cov_type
from .coefcov.fullcov import check_missing_cov_type, coefficient_covariance
from .coefcov.registry import check_cov_kwds as _check_cov_kwds
from .constraints import parse_constraints
from .covariance import LowRankCovariance
from .design import SURDesign, constant_flags
from .exceptions import (
    DataRemovedError,
    IdentificationWarning,
    data_removed_message,
)
from .fitters import fit_design
from .fitters.api import FULL_RANK
from .fitters.rank_search import select_rank
from .missing import observed_llf
from .newdata import exog_matrices
from .options import FitOptions
from .results import LowRankSURResults, LowRankSURResultsWrapper
from .selection import (
    CRITERIA,
    default_rank,
)
from .system import build_system, eval_env_of, subset_rows

__all__ = ["LowRankSUR"]


def _fingerprint(Y: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(Y).tobytes(), digest_size=16).hexdigest() + (
        f"/{Y.shape}"
    )


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
    missing : {"drop", "raise", "fiml"}
        Rows with a missing value in any equation's variables are dropped from every
        equation (``"drop"``, as linearmodels does) or raise an error (``"raise"``).
        ``"fiml"`` keeps every observed response: row t contributes the likelihood of
        its observed responses (full-information ML under missing at random; an
        equation with a missing regressor in row t treats its response there as
        missing, with a warning). See the user guide page "Missing responses".

    Attributes
    ----------
    k_eqs : int
        Number of equations K.
    nobs : int
        Number of rows N: with ``"drop"`` the complete rows, with ``"fiml"`` the rows
        where at least one equation is observed. AIC/BIC use it.
    nobs_eqs : Series
        Observed rows per equation (all equal to ``nobs`` without missing cells).
    nobs_cells : int
        Observed response cells, ``nobs_eqs.sum()``; ``df_resid = nobs_cells - P``.
    missing : str
        ``"fiml"`` when some cell is unobserved, else ``"drop"`` (complete data).
    n_regressor_missing : dict
        ``missing="fiml"``: equation label -> responses treated as missing because a
        regressor is missing in that row.
    n_dropped : int
        Rows dropped for missing values (with ``"fiml"``: rows with no observed cell).
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
        eval_env = eval_env_of(kwargs.pop("eval_env", None))
        if kwargs:
            raise TypeError(f"unexpected keyword argument(s): {sorted(kwargs)}")
        self._setup(build_system(equations, data, missing=missing, eval_env=eval_env))

    def _setup(self, system) -> None:
        """The model of an :class:`~lowrank_sur.system.EquationSystem`: design, names, counts."""
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
        observed = getattr(system, "observed", None)
        self.design = SURDesign(
            system.exog,
            eq_names=[f"equation {lab!r}" for lab in system.labels],
            exog_names=[e.exog_names for e in system.equations],
            observed=observed,
        )
        self.k_eqs = self.design.k_eqs
        self.nobs = self.design.nobs
        self.n_dropped = system.n_dropped
        self.k_params = self.design.k_params
        self.missing = "fiml" if observed is not None else "drop"
        counts = (observed.sum(axis=0) if observed is not None
                  else np.full(self.k_eqs, self.nobs))
        self.nobs_eqs = pd.Series(counts.astype(int), index=system.labels, name="nobs")
        self.nobs_cells = int(counts.sum())
        self.n_regressor_missing = dict(getattr(system, "n_regressor_missing", {}) or {})
        #: per equation: whether it has a constant non-zero column (an intercept) in its rows
        self.has_constant = constant_flags(
            system.exog if observed is None
            else [X[o] for X, o in zip(system.exog, observed.T)])
        self.k_constant = int(self.has_constant.sum())
        self.df_model = self.k_params - self.k_constant
        self.df_resid = self.nobs_cells - self.k_params
        self._Y = system.endog.to_numpy()
        if observed is not None:  # zero in the unobserved cells for the linear algebra
            self._Y = np.where(observed, self._Y, 0.0)
        # identifies the responses after remove_data() (compare_lr_test)
        self._data_key = _fingerprint(self._Y)
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
            data = subset_rows(data, subset)
        kwargs["eval_env"] = eval_env_of(kwargs.get("eval_env"))
        return cls(formulas, data, *args, **kwargs)

    @classmethod
    def from_panel(cls, formula: str, data, *, missing: str = "drop", eval_env=None):
        """One equation per entity of a long panel, all with the same formula.

        Parameters
        ----------
        formula : str
            A patsy formula (every term patsy allows: ``C()``, transforms,
            interactions), evaluated by one patsy call on the long frame.
        data : DataFrame
            Long data with an (entity, time) MultiIndex (linearmodels' panel
            convention): one equation per entity, one observation per time.
        missing : {"drop", "raise"}
            A time at which some entity has a missing value or no row is dropped for
            every entity (as the dict-of-formulas path does), or raises.
        eval_env : patsy.EvalEnvironment or int, optional
            Where the formula looks up functions (default: the caller's namespace).

        Returns
        -------
        LowRankSUR
            Equation labels ``str(entity)`` (entities sorted), rows the sorted times,
            parameter names ``"{entity}_{column}"``.

        Notes
        -----
        Stateful transforms (``center``, ``standardize``, ``C()`` levels, spline
        knots) are learned once on the pooled estimation sample, so every entity uses
        the same transform; see :mod:`lowrank_sur.panel`. ``results.predict(long_df)``
        and :meth:`predict_panel` return one prediction per row of any long frame
        (unbalanced, any order), a Series indexed like it.

        Examples
        --------
        >>> from statsmodels.datasets import grunfeld
        >>> from lowrank_sur import LowRankSUR
        >>> df = grunfeld.load_pandas().data.set_index(["firm", "year"])
        >>> model = LowRankSUR.from_panel("invest ~ value + capital", df)
        >>> model.k_eqs, model.nobs, model.param_names[:2]
        (11, 20, ['General Motors_Intercept', 'General Motors_value'])
        """
        from .panel import build_panel_system

        system = build_panel_system(formula, data, missing=missing, eval_env=eval_env_of(eval_env))
        model = cls.__new__(cls)
        model._setup(system)
        return model

    def predict_panel(self, params, data) -> pd.Series:
        """Predictions for every row of new long data (a model from :meth:`from_panel`).

        Parameters
        ----------
        params : array_like
            All P coefficients (e.g. ``results.params``).
        data : DataFrame
            Long data with an (entity, time) MultiIndex and the columns the formula
            reads; entities must be fitted ones, times and balance are free.

        Returns
        -------
        Series
            One prediction per row, indexed like ``data``.
        """
        from .panel import is_panel, panel_predict

        if not is_panel(self.system):
            raise TypeError("predict_panel needs a model built by LowRankSUR.from_panel")
        return panel_predict(self.system, self._coefs(params), data)

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
    def _require_data(self, what: str) -> None:
        if self._Y is None or self.design.Q is None:
            raise DataRemovedError(data_removed_message(what))

    def _coefs(self, params) -> list[np.ndarray]:
        """``params`` (length P, finite) split per equation."""
        params = np.asarray(params, dtype=float)
        if params.ndim != 1 or params.size != self.k_params:
            raise ValueError(
                f"params has shape {params.shape} but the model has {self.k_params} "
                "coefficients (in the order of model.param_names)"
            )
        d = self.design
        return [params[d.offsets[j] : d.offsets[j + 1]] for j in range(d.k_eqs)]

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
            raise TypeError(
                "loglike needs the covariance: loglike(params, F, D), e.g. with "
                "results.error_cov.F and results.error_cov.D"
            )
        self._require_data("model.loglike")
        R = self._Y - self.predict(params)
        if self.design.observed is not None:  # missing="fiml": observed cells only
            return observed_llf(R, np.asarray(F, dtype=float), np.asarray(D, dtype=float),
                                self.design.observed)
        return LowRankCovariance(F, D).loglike(R)

    def _no_derivatives(self, name: str):
        raise NotImplementedError(
            f"LowRankSUR.{name} is not implemented: the fit maximizes the likelihood by "
            "alternating GLS and factor steps without analytic derivatives. Use "
            "model.loglike(params, F, D) with statsmodels.tools.numdiff (approx_fprime, "
            "approx_hess) for numerical ones; results.bse and cov_params() already give "
            "the coefficients' covariance"
        )

    def score(self, params, *args, **kwargs):
        """Not implemented (raises NotImplementedError saying what to use instead)."""
        self._no_derivatives("score")

    def score_obs(self, params, *args, **kwargs):
        """Not implemented (raises NotImplementedError saying what to use instead)."""
        self._no_derivatives("score_obs")

    def hessian(self, params, *args, **kwargs):
        """Not implemented (raises NotImplementedError saying what to use instead)."""
        self._no_derivatives("hessian")

    def information(self, params, *args, **kwargs):
        """Not implemented (raises NotImplementedError saying what to use instead)."""
        self._no_derivatives("information")

    def predict(self, params, exog=None) -> np.ndarray:
        """Fitted values N x K for coefficients ``params`` (training design if ``exog`` is None).

        Parameters
        ----------
        params : array_like
            All P coefficients.
        exog : dict or list of array_like, optional
            One regressor matrix per equation (new data), as a dict label -> matrix or
            a list of K matrices. For formula models use ``results.predict(DataFrame)``.
        """
        coefs = self._coefs(params)
        if exog is None:
            self._require_data("model.predict(params) without exog")
            d = self.design
            return d.fitted(d.from_coefs(coefs))
        mats, _ = exog_matrices(self.system, exog)
        return np.column_stack([X @ b for X, b in zip(mats, coefs)])

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
        rank : int, "full", "aic", "bic" or None
            Number of factors k (``0 <= k < K`` and ``k < N``). ``"full"`` is an
            unrestricted Sigma (K < N), fitted by ``method="fgls"``: two-step FGLS, or
            with ``iterate=True`` iterated FGLS (the MLE). ``None`` uses
            :func:`~lowrank_sur.selection.default_rank`, ``min(8, ceil(K / 10))``.
            ``"aic"`` / ``"bic"`` fit every rank from 0 to ``max_rank`` and keep the
            best by the criterion; the comparison table is ``results.rank_selection``.
            The warnings of the selected fit are issued, those of the other candidates
            summarised in one warning.
        method : str
            A registered fitter: ``"als"`` (matrix-free, O(N K k) memory; default),
            ``"em"`` (the dense EM reference, O(K^2 + P^2) memory) or ``"fgls"``
            (feasible GLS, :mod:`lowrank_sur.fitters.fgls`; two-step at an integer
            rank: OLS, factor fit of its residuals, one GLS step).
        max_rank : int, optional
            Largest rank tried by ``"aic"`` / ``"bic"`` (default ``min(K - 1, N - 1, 10)``);
            only with those.
        cov_type : str
            Covariance of the coefficients, from the registry
            (:func:`lowrank_sur.coefcov.available_cov_types`): ``"nonrobust"``
            (GLS at the MLE; aliases ``"unadjusted"``, ``"homoskedastic"``),
            ``"HC0"`` / ``"HC1"`` (alias ``"robust"``), ``"HAC"`` (alias ``"kernel"``)
            and ``"cluster"`` (alias ``"clustered"``): sandwiches from the scores
            (:mod:`lowrank_sur.coefcov.robust`). ``results.get_robustcov_results``
            switches later without refitting; ``"bootstrap"`` (parametric bootstrap, which
            includes the estimation of Sigma; ``cov_kwds={"n_boot": 199, "seed": 0}``).
        cov_kwds : dict, optional
            Options of the covariance estimator, e.g. ``{"maxlags": 2}`` for HAC or
            ``{"groups": labels}`` for cluster.
        **options
            Fitting options (see :class:`~lowrank_sur.options.FitOptions`):
            ``maxiter`` (sweeps or EM cycles; reaching it issues a
            :class:`~statsmodels.tools.sm_exceptions.ConvergenceWarning`), ``tol``
            (relative log-likelihood change, with ``ptol`` the largest parameter
            change, for convergence), ``d_floor`` (floor for ``D_j`` relative to
            equation j's OLS residual variance), ``accelerate`` (EM only: SQUAREM),
            ``disp`` (print one line per iteration), ``callback``, the
            small-sample options ``use_t`` (t and F references with
            ``results.df_resid_inference`` degrees of freedom: ``N K - P + q``, Stata's
            ``small``, or ``N - max_j p_j`` with ``t_df="equation"``) and ``debiased``
            (Stata's ``dfk``: the scaling of Sigma in the coefficient covariance; for
            ``method="fgls"`` at ``rank="full"`` the divisor of Sigma-hat itself), for
            ``"fgls"`` ``iterate`` and ``sigma_df`` (the divisor of Sigma-hat);
            ``constraints``: linear restrictions imposed in estimation, as strings in
            the parameter names (``"gm_value_gm = ge_value_ge, ch_value_ch = 0"``) or
            a pair ``(R, q)``, for every fitter and rank (the coefficient covariance is
            then the restricted one). Unknown keywords raise ``TypeError``.

        Returns
        -------
        LowRankSURResults
            Wrapped so that outputs carry pandas labels.
        """
        self._require_data("model.fit")
        if options.get("constraints") is not None:
            options["constraints"] = parse_constraints(options["constraints"], self.param_names)
        opts = FitOptions.from_kwargs(method=method, **options)
        estimator = get_cov_type(cov_type)
        cov_kwds = _check_cov_kwds(estimator, cov_kwds)
        if self.design.observed is not None:  # what missing="fiml" does not support yet
            check_missing_cov_type(estimator, cov_type)
        estimator.check_options(self.design, **cov_kwds)  # bad options fail before the fit
        selection = None
        if isinstance(rank, str) and rank.lower() == FULL_RANK:
            if max_rank is not None:
                raise ValueError(f"max_rank={max_rank!r} is used only by rank='aic' or 'bic'")
            record = fit_design(self.design, self._Y, FULL_RANK, opts)
        elif isinstance(rank, str):
            crit = rank.lower()
            if crit not in CRITERIA:
                raise ValueError(
                    f"rank must be an integer, 'full', 'aic', 'bic' or None, got {rank!r}"
                )
            record, selection = select_rank(self.design, self._Y, crit, max_rank, opts)
        elif max_rank is not None:
            raise ValueError(
                f"max_rank={max_rank!r} is used only by rank='aic' or rank='bic'; with "
                f"rank={rank!r} it would be ignored: drop it, or select the rank by a criterion"
            )
        elif rank is None:
            # the default rank is not the user's choice: no warning that it is past the
            # Ledermann bound (at K = 2 it is the only rank, an unrestricted Sigma)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", IdentificationWarning)
                record = fit_design(self.design, self._Y,
                                    default_rank(self.k_eqs, self.nobs), opts)
        else:
            record = fit_design(self.design, self._Y, rank, opts)
        coef_cov = coefficient_covariance(cov_type, self.design, self._Y, record, cov_kwds,
                                          debiased=opts.debiased)
        res = LowRankSURResults(self, record, coef_cov, cov_kwds=cov_kwds,
                                rank_selection=selection, fit_options=opts)
        return LowRankSURResultsWrapper(res)
