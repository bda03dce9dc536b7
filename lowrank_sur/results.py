"""Results of a ``LowRankSUR`` fit: statsmodels-style inference, factor report, summary."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
from statsmodels.base import wrapper as wrap
from statsmodels.base.model import LikelihoodModelResults, LikelihoodResultsWrapper
from statsmodels.iolib.summary import Summary

from . import factor_report, plotting
from .coefcov import CoefCovEstimator, get_cov_type
from .coefcov.fullcov import coefficient_covariance
from .coefcov.registry import check_cov_kwds
from .coefcov.stored import StoredCovariance
from .covariance import LowRankCovariance
from .equations import EquationResults
from .exceptions import DataRemovedError, data_removed_message
from .fitters import FitRecord
from .hypotheses import RestrictionTests
from .options import FitOptions
from .selection import information_criteria, n_free_params
from .structure_tests import CovStructureTests
from .summary import build_summary, check_alpha

try:  # statsmodels >= 0.15 made the module private
    from statsmodels.tools._decorators import cache_readonly, cached_data
except ImportError:  # pragma: no cover - statsmodels 0.14
    from statsmodels.tools.decorators import cache_readonly, cached_data

__all__ = ["LowRankSURResults", "LowRankSURResultsWrapper"]

#: Largest P for which ``cov_params()`` builds the full P x P matrix by default.
FULL_COV_MAX_PARAMS = 4000

#: ``remove_data()`` keeps the full P x P covariance (for ``t_test``, ``wald_test`` and
#: ``cov_params``) up to this P, when building it needs at most ``KEEP_COV_MAX_BYTES``.
KEEP_COV_MAX_PARAMS = 500
KEEP_COV_MAX_BYTES = 256 * 2**20


class LowRankSURResults(EquationResults, CovStructureTests, RestrictionTests,
                        LikelihoodModelResults):
    """Results of :meth:`LowRankSUR.fit <lowrank_sur.LowRankSUR.fit>`.

    The coefficient covariance comes from the estimator registered for ``cov_type``
    (:mod:`lowrank_sur.coefcov`); the default, ``"nonrobust"``, is GLS at the MLE,
    ``(X'(Sigma^{-1} kron I) X)^{-1}`` (the information matrix is block diagonal
    between coefficients and the covariance parameters), computed without any
    P x P, K x K or NK x NK array; p-values and intervals use the normal
    distribution unless the fit asked for ``use_t=True`` (t and F with
    ``df_resid_inference`` degrees of freedom: ``N K - P + q`` by default (q restrictions
    imposed in estimation), Stata's and statsmodels' convention, or ``N - max_j p_j``
    with ``t_df="equation"``).

    Attributes
    ----------
    params, bse, tvalues, pvalues : Series
        Coefficients labelled ``"{equation}_{column}"`` and their inference.
    llf, nll, nll_per_obs, aic, bic : float
        Log-likelihood, its negative, negative per observation, and criteria with
        ``P + min(K k - k (k - 1) / 2 + K, K (K + 1) / 2)`` free parameters.
    nobs, k_eqs, rank, df_model, df_resid : int
        Observations per equation, equations, factors, ``P`` minus constants,
        ``N K - P + q``.
    k_constraints : int
        ``q``, the number of restrictions imposed in estimation (0 without).
    converged, iterations, llf_history, method : bool, int, list, str
        Fitter diagnostics.
    evaluations, polish_evaluations : int
        Evaluations of the factor-step maps and of the joint polish together, and those
        of the joint polish (log-likelihood and gradient of all parameters at once) alone.
    likelihood_bounded, degenerate : bool
        Whether the likelihood at this rank is bounded for these data (checked before
        the fit), and whether the fit ran to the floor on a rising likelihood (not a
        maximum).
    starts : DataFrame
        The llf every start reached (the chosen one first); ``n_maxima`` counts the
        distinct proper maxima among them.
    cov_type, cov_kwds : str, dict
        The coefficient-covariance estimator and its options.
    use_t, debiased : bool
        The small-sample options of the fit (see :class:`~lowrank_sur.options.FitOptions`).
    df_resid_inference : int
        With ``use_t``: the degrees of freedom of the t and F references,
        ``df_resid = N K - P + q`` or, with ``t_df="equation"``, ``N - max_j p_j``.
    rank_selection : DataFrame or None
        The information-criterion table when ``rank="aic"`` or ``"bic"``.
    """

    def __init__(self, model, record: FitRecord, coef_cov: CoefCovEstimator,
                 cov_kwds: dict | None = None, rank_selection: pd.DataFrame | None = None,
                 fit_options: FitOptions | None = None):
        params = np.concatenate(record.coefs) if record.coefs else np.zeros(0)
        super().__init__(model, params, normalized_cov_params=None, scale=1.0)
        # arrays with N rows, wiped by remove_data() (statsmodels' convention)
        self._data_attr.append("_record.whitened_coefs")
        self._cache = {}
        self._record = record
        self.rank = record.rank
        self.k_eqs = model.k_eqs
        self.nobs = model.nobs
        self.n_dropped = model.n_dropped
        self.df_model = model.df_model
        # q restrictions imposed in estimation free q residual degrees of freedom:
        # N K - P + q (statsmodels' fit_constrained; linearmodels 7.1 keeps N K - P)
        self.k_constraints = (0 if record.constraints is None
                              else int(record.constraints[0].shape[0]))
        self.df_resid = model.df_resid + self.k_constraints
        self.converged = record.converged
        self.iterations = record.iterations
        self.evaluations = record.evaluations
        self.polish_evaluations = record.polish_evaluations
        self.llf_history = list(record.llf_history)
        self.method = record.method
        self.likelihood_bounded = record.likelihood_bounded
        self.degenerate = record.degenerate
        self.n_maxima = record.n_maxima
        self.starts = pd.DataFrame(record.starts) if record.starts else None
        self.rank_selection = rank_selection
        self._fit_options = fit_options if fit_options is not None else FitOptions()
        self.error_cov = record.cov
        self._coef_cov = coef_cov
        self.debiased = bool(self._fit_options.debiased)
        self._set_use_t(self._fit_options.use_t)
        self.cov_type = coef_cov.name
        self.cov_kwds = dict(cov_kwds or {})

    def _set_use_t(self, use_t) -> None:
        """Set ``use_t`` (t and F references) and their degrees of freedom.

        The system's residual df ``N K - P + q`` (Stata's ``small``), with
        ``t_df="equation"`` that of the equation with the most regressors, and for
        ``cov_type="cluster"`` ``G - 1`` (statsmodels' ``df_correction``).
        """
        self.use_t = bool(use_t)
        if not self.use_t:
            self.__dict__.pop("df_resid_inference", None)
            return
        cluster_df = getattr(self._coef_cov, "df_inference", None)
        if cluster_df is not None:  # statsmodels' cluster df_correction: G - 1
            self.df_resid_inference = int(cluster_df)
        elif self._fit_options.t_df == "equation":
            self.df_resid_inference = int(self.nobs - np.max(self.model.design.p))
        else:
            self.df_resid_inference = int(self.df_resid)

    # statsmodels' t_test / wald_test need this to exist; cov_params() does the work.
    cov_params_default = None

    # ------------------------------------------------------------- basics
    @property
    def equation_labels(self) -> list[str]:
        """Equation labels."""
        return self.model.equation_labels

    @property
    def llf(self) -> float:
        """Maximized log-likelihood."""
        return self._record.llf

    @property
    def nll(self) -> float:
        """Negative log-likelihood."""
        return -self.llf

    @property
    def nll_per_obs(self) -> float:
        """Negative log-likelihood per observation, ``-llf / nobs``."""
        return -self.llf / self.nobs

    @property
    def df_ic(self) -> int:
        """Free parameters counted by AIC/BIC, less one per restriction imposed.

        :func:`~lowrank_sur.selection.n_free_params` (capped at the saturated count).
        """
        q = 0 if self._record.constraints is None else self._record.constraints[0].shape[0]
        return n_free_params(self.model.k_params, self.k_eqs, self._cov_rank) - q

    @property
    def aic(self) -> float:
        """Akaike information criterion."""
        return information_criteria(self.llf, self.df_ic, self.nobs)["aic"]

    @property
    def bic(self) -> float:
        """Bayesian information criterion (``log(nobs)`` per free parameter)."""
        return information_criteria(self.llf, self.df_ic, self.nobs)["bic"]

    @property
    def heywood(self) -> list[str]:
        """Labels of equations whose idiosyncratic variance sits at its floor."""
        return [self.equation_labels[j] for j in self._record.heywood]

    # ---------------------------------------------------------- inference
    @cache_readonly
    def bse(self) -> np.ndarray:
        """Standard errors from the diagonal blocks of ``A^{-1}`` (no P x P array)."""
        return self._coef_cov.bse()

    def _require_data(self, what: str) -> None:
        if self.model._Y is None or self.model.design.Q is None:
            raise DataRemovedError(data_removed_message(what))

    def cov_params(self, r_matrix=None, column=None, scale=None, cov_p=None, other=None):
        """Covariance of the coefficients, or of linear combinations of them.

        Parameters
        ----------
        r_matrix : array_like, optional
            q x P restriction matrix: returns ``R A^{-1} R'`` (q x q) through
            conjugate-gradient solves, never the P x P inverse.
        column : int or array_like of int, optional
            Return the covariance of these coefficients only.
        scale : float, optional
            Ignored (the likelihood has no free scale); accepted for compatibility.
        cov_p : array_like, optional
            Use this P x P covariance instead of the model's.
        other : array_like, optional
            With ``r_matrix``: returns ``R A^{-1} other'``.

        Returns
        -------
        ndarray or DataFrame
            The full P x P covariance is a labelled DataFrame; only built when asked
            and when P is at most ``FULL_COV_MAX_PARAMS``.
        """
        if cov_p is not None:
            cov_p = np.asarray(cov_p)
            if r_matrix is None:
                return cov_p if column is None else cov_p[np.ix_(column, column)]
            r_matrix = np.atleast_2d(r_matrix)
            other = r_matrix if other is None else np.atleast_2d(other)
            return r_matrix @ cov_p @ other.T
        if r_matrix is not None:
            r_matrix = np.atleast_2d(np.asarray(r_matrix, dtype=float))
            return self._coef_cov.restricted(r_matrix, other=other)
        if column is not None:
            column = np.atleast_1d(np.asarray(column, dtype=int))
            sel = np.zeros((column.size, self.params.size))
            sel[np.arange(column.size), column] = 1.0
            return self._coef_cov.restricted(sel)
        P = self.params.size
        if P > FULL_COV_MAX_PARAMS:
            gb = P * P * 8 / 1e9
            raise MemoryError(
                f"the full {P} x {P} covariance of the coefficients needs {gb:.1f} GB; use "
                "bse for standard errors, cov_params(r_matrix=R) for linear combinations, or "
                "t_test / wald_test, which never build it"
            )
        names = self.model.param_names
        return pd.DataFrame(self._coef_cov.full(), index=names, columns=names)

    def get_robustcov_results(self, cov_type: str = "HC1", use_t=None, **kwargs):
        """The same fit with another coefficient covariance (statsmodels' name; no refit).

        Parameters
        ----------
        cov_type : str
            A registered ``cov_type`` or alias, as in :meth:`LowRankSUR.fit`.
        use_t : bool, optional
            t and F reference distributions (with ``df_resid_inference`` degrees of
            freedom, as ``fit(use_t=True)``); None keeps this fit's choice (statsmodels'
            convention).
        **kwargs
            The estimator's ``cov_kwds`` (``maxlags``, ``kernel``, ``groups``, ...).

        Returns
        -------
        LowRankSURResults
            A new (wrapped) results instance sharing the model; this one is unchanged.
        """
        self._require_data("get_robustcov_results")
        if use_t is not None and not isinstance(use_t, (bool, np.bool_)):
            raise TypeError(f"use_t must be True, False or None, got {use_t!r}")
        kwds = check_cov_kwds(get_cov_type(cov_type), kwargs)
        new = copy.copy(self)
        new._cache = {}
        new._coef_cov = coefficient_covariance(cov_type, self.model.design, self.model._Y,
                                               self._record, kwds, debiased=self.debiased)
        new.cov_type, new.cov_kwds = new._coef_cov.name, kwds
        new._set_use_t(self.use_t if use_t is None else use_t)
        return LowRankSURResultsWrapper(new)

    def conf_int(self, alpha: float = 0.05):
        """Confidence intervals ``params -/+ z_{1 - alpha/2} bse`` (t quantiles with ``use_t``).

        Parameters
        ----------
        alpha : float
            Significance level in (0, 1): 0.05 gives 95% intervals.

        Returns
        -------
        ndarray or DataFrame
            P x 2 (lower, upper); labelled through the results wrapper.
        """
        alpha = check_alpha(alpha)
        return super().conf_int(alpha=alpha)

    # ------------------------------------------------------ fitted values
    @cached_data
    def _fitted(self) -> pd.DataFrame:
        self._require_data("fittedvalues")
        d = self.model.design
        fitted = d.fitted(self._record.whitened_coefs)
        if d.observed is not None:  # missing="fiml": no fitted value in unobserved cells
            fitted = np.where(d.observed, fitted, np.nan)
        return pd.DataFrame(fitted, index=self.model.system.endog.index,
                            columns=self.equation_labels)

    @property
    def fittedvalues(self) -> pd.DataFrame:
        """Fitted values, N x K (columns are equation labels); a new copy on every access."""
        self._require_data("fittedvalues")
        return self._fitted.copy()

    @property
    def resid(self) -> pd.DataFrame:
        """Residuals, N x K (columns are equation labels); a new copy on every access."""
        self._require_data("resid")
        return self.model.system.endog - self._fitted

    def predict(self, exog=None, transform=True, *args, **kwargs) -> pd.DataFrame | pd.Series:
        """Predictions for each equation.

        Parameters
        ----------
        exog : DataFrame, dict or list, optional
            New data. For formula equations a DataFrame with the variables the
            formulas use (each equation's stored patsy design is applied). For a
            model from :meth:`LowRankSUR.from_panel`, long data with an (entity,
            time) MultiIndex. For ``(endog, exog)`` equations, or with
            ``transform=False``, a dict label -> regressor matrix or a list of K
            matrices. None returns :attr:`fittedvalues`.
        transform : bool
            Apply the formula designs (True) or treat ``exog`` as design matrices.
        *args, **kwargs
            Unused; accepted for compatibility.

        Returns
        -------
        DataFrame or Series
            N_new x K predictions, columns are equation labels; for a panel model
            given long data, a Series with one prediction per row of ``exog``,
            indexed like it (as linearmodels' panel models return;
            :meth:`LowRankSUR.predict_panel`).
        """
        if exog is None:
            self._require_data("predict() without new data")
            return self.fittedvalues
        if self.model.system.panel is not None and transform and isinstance(exog, pd.DataFrame):
            return self.model.predict_panel(self.params, exog)
        mats, index = self.model.system.new_exog(exog, transform=transform)
        out = self.model.predict(np.asarray(self.params), exog=mats)
        return pd.DataFrame(out, index=index, columns=self.equation_labels)

    # ---------------------------------------------------------- factors
    def _kept(self, key: str, compute):
        """A value computed once and kept through ``remove_data()`` (which clears the cache)."""
        kept = self.__dict__.setdefault("_kept_values", {})
        if key not in kept:
            kept[key] = compute()
        return kept[key]

    @property
    def _cov_rank(self) -> int | None:
        """The rank as the parameter counts take it: None for an unrestricted Sigma."""
        return self.rank if isinstance(self.error_cov, LowRankCovariance) else None

    @property
    def _loadings(self) -> pd.DataFrame:
        if not isinstance(self.error_cov, LowRankCovariance):
            raise ValueError(
                "this fit has an unrestricted Sigma (rank='full'): it has no factor "
                "structure; see results.sigma and results.resid_corr"
            )

        def compute():
            F = factor_report.report_loadings(self.error_cov.F, self.error_cov.D)
            cols = [f"factor_{r + 1}" for r in range(self.rank)]
            return pd.DataFrame(F, index=self.equation_labels, columns=cols)

        return self._kept("loadings", compute)

    @property
    def factor_loadings(self) -> pd.DataFrame:
        """Loadings (K x k): ``F' D^{-1} F`` diagonal, factors by decreasing variance share."""
        return self._loadings.copy()

    @property
    def idiosyncratic_var(self) -> pd.Series:
        """Idiosyncratic (equation-specific) error variances D."""
        _ = self._loadings  # an unrestricted Sigma has none: say so
        return pd.Series(np.array(self.error_cov.D, dtype=float), index=self.equation_labels,
                         name="idiosyncratic_var")

    def factor_summary(self) -> pd.DataFrame:
        """Per-equation factor structure (:func:`lowrank_sur.factor_report.factor_table`).

        Returns
        -------
        DataFrame
            One row per equation: the loadings ``factor_r``, the same on the correlation
            scale ``std_factor_r`` (``f_jr / sqrt(Sigma_jj)``), ``uniqueness`` (D_j),
            ``communality`` (``h_j = ||f_j||^2``), ``error_var`` (``Sigma_jj``) and
            ``common_share`` (``h_j / Sigma_jj``). ``attrs["factor_share"]`` holds
            each factor's share of the total error variance, in decreasing order.
        """
        return factor_report.factor_table(self.factor_loadings, self.error_cov.D)

    def remove_data(self) -> None:
        """Drop every array with N rows from the results and the model.

        Standard errors, loadings, the covariance tests' statistics and (for at most
        ``KEEP_COV_MAX_PARAMS`` coefficients) the full coefficient covariance are
        computed first and kept, so ``params``, ``bse``, ``conf_int()``,
        ``factor_summary()``, ``summary()``, ``lr_test_diagonal()``,
        ``breusch_pagan()``, ``compare_lr_test(method="chi2")``, ``predict(new data)`` and (small
        P) ``t_test``, ``wald_test`` and ``cov_params()`` keep working. Whatever needs
        the data (residuals, fitted values, ``loglike``, refitting) raises
        :class:`~lowrank_sur.exceptions.DataRemovedError` afterwards. What is dropped
        is listed in ``model._data_attr`` and ``results._data_attr`` (statsmodels'
        convention).
        """
        if self.model._Y is not None and self.model.design.Q is not None:
            _ = self.bse, self._llf_diagonal, self._breusch_pagan, self._eq_stats
            if isinstance(self.error_cov, LowRankCovariance):
                _ = self._loadings
            P, N, k = self.params.size, self.nobs, max(self.rank, 1)
            keep = P <= KEEP_COV_MAX_PARAMS and 8 * N * k * P <= KEEP_COV_MAX_BYTES
            self._coef_cov = StoredCovariance(
                self._coef_cov, keep,
                data_removed_message(f"the covariance of the {P} coefficients beyond bse"),
            )
        super().remove_data()

    # ------------------------------------------------------------ summary
    def summary(self, alpha: float = 0.05, max_equations: int = 20, equations=None) -> Summary:
        """A statsmodels :class:`~statsmodels.iolib.summary.Summary`.

        Parameters
        ----------
        alpha : float
            Significance level of the confidence intervals, in (0, 1).
        max_equations : int
            Show at most this many equation blocks (a note says where the rest is).
        equations : str or list of str, optional
            Label(s) of the equations to show (default: the first ``max_equations``).

        Returns
        -------
        Summary
            Renders with ``as_text()``, ``as_html()`` and ``as_latex()``.
        """
        return build_summary(self, alpha=alpha, max_equations=max_equations,
                             equations=equations)

    # -------------------------------------------------------------- plots
    def plot_llf_trace(self, ax=None):
        """Plot the log-likelihood after each iteration (needs matplotlib).

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on; a new figure is created when omitted.

        Returns
        -------
        matplotlib.figure.Figure
            See :func:`lowrank_sur.plotting.plot_llf_trace`.
        """
        return plotting.plot_llf_trace(self, ax=ax)

    def plot_loadings(self, factors=(0, 1), ax=None, scale: str = "correlation"):
        """Scatter the equations by their loadings on two factors (needs matplotlib).

        See :func:`lowrank_sur.plotting.plot_loadings`: ``factors`` are the zero-based
        indices of the x and y factors, ``scale`` is ``"correlation"`` (loadings over
        each equation's error standard deviation; default) or ``"covariance"``.
        """
        return plotting.plot_loadings(self, factors=factors, ax=ax, scale=scale)

    def plot_scree(self, max_eigenvalues: int = 30, ax=None):
        """Eigenvalues of the OLS residual correlation matrix (needs matplotlib).

        See :func:`lowrank_sur.plotting.plot_scree`; ``max_eigenvalues`` caps the bars.
        """
        return plotting.plot_scree(self, max_eigenvalues=max_eigenvalues, ax=ax)


class LowRankSURResultsWrapper(wrap.ResultsWrapper):
    """Attach pandas labels to :class:`LowRankSURResults` outputs."""

    _attrs = {"params": "columns", "bse": "columns", "pvalues": "columns", "tvalues": "columns"}
    _wrap_attrs = wrap.union_dicts(
        {k: v for k, v in LikelihoodResultsWrapper._wrap_attrs.items()
         if k not in ("resid", "fittedvalues", "normalized_cov_params")},
        _attrs,
    )
    _wrap_methods = {"conf_int": "columns"}


wrap.populate_wrapper(LowRankSURResultsWrapper, LowRankSURResults)
