"""Per-equation results, goodness of fit, Sigma as a table, and predictions with intervals.

:class:`EquationResults` is mixed into :class:`~lowrank_sur.results.LowRankSURResults`:
``res.equations["gm"]`` (or ``res.equation("gm")``) is an :class:`EquationResult` with
the equation's slice of the system inference and its own fit statistics; ``rsquared`` is
a Series over equations and ``system_rsquared`` McElroy's (1977) system R^2; ``sigma``
and ``resid_corr`` are labelled K x K tables (small K only); ``get_prediction``
returns statsmodels' prediction results per equation.

R^2 follows statsmodels' ``OLS``: ``1 - SSR / TSS`` with the centred total sum of
squares when the equation has a constant, the uncentred one otherwise;
``rsquared_adj = 1 - (N - c) / (N - p) (1 - R^2)`` with ``c`` 1 for a constant, 0
otherwise.

References
----------
McElroy, M. B. (1977). Goodness of fit for seemingly unrelated regressions: Glahn's
R^2_{y.x} and Hooper's r^2. *Journal of Econometrics* 6, 381-387.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from statsmodels.iolib.summary import Summary, summary_params
from statsmodels.regression._prediction import PredictionResults

from .covariance import LowRankCovariance
from .missing import ObservedCovariance
from .summary import check_alpha

__all__ = ["EquationResults", "EquationResult", "SURPrediction", "SIGMA_MAX_K"]

#: Largest K for which ``sigma`` and ``resid_corr`` build the K x K table.
SIGMA_MAX_K = 2000


class EquationResult:
    """The results of one equation of a fitted system.

    Attributes
    ----------
    label, dep_name : str
        The equation's label and response name.
    params, bse, tvalues, pvalues : Series
        Its coefficients and their (system) inference, labelled by its regressor names.
    nobs, df_model, df_resid : int or float
        N, ``p - c`` and ``N - p`` (``c`` = 1 with a constant).
    ssr, rsquared, rsquared_adj : float
        Residual sum of squares and R^2 (see the module notes).
    """

    def __init__(self, res, j: int) -> None:
        self._res = res
        self._j = j
        system = res.model.system
        eq = system.equations[j]
        d = res.model.design
        self.label = eq.label
        self.dep_name = eq.dep_name
        self.exog_names = list(eq.exog_names)
        self._slice = slice(int(d.offsets[j]), int(d.offsets[j + 1]))
        self.nobs = int(res.model.nobs_eqs.iloc[j])  # its observed rows (missing="fiml")
        p = int(d.p[j])
        self.k_constant = int(res._eq_stats["k_constant"].iloc[j])
        self.df_model = p - self.k_constant
        self.df_resid = self.nobs - p
        self.use_t = res.use_t

    def _part(self, values) -> pd.Series:
        return pd.Series(np.asarray(values)[self._slice], index=self.exog_names)

    @property
    def params(self) -> pd.Series:
        """Coefficients."""
        return self._part(self._res.params)

    @property
    def bse(self) -> pd.Series:
        """Standard errors (from the system's coefficient covariance)."""
        return self._part(self._res.bse)

    @property
    def tvalues(self) -> pd.Series:
        """The z (or, with ``use_t``, t) statistics."""
        return self._part(self._res.tvalues)

    @property
    def pvalues(self) -> pd.Series:
        """Two-sided p-values (normal, or t with the system's ``df_resid_inference``)."""
        return self._part(self._res.pvalues)

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Confidence intervals (lower, upper), as the system's ``conf_int``."""
        ci = np.asarray(self._res.conf_int(alpha))[self._slice]
        return pd.DataFrame(ci, index=self.exog_names, columns=[0, 1])

    def cov_params(self) -> pd.DataFrame:
        """The p x p covariance of this equation's coefficients."""
        return self._res._equation_cov(self._j)

    @property
    def resid(self) -> pd.Series:
        """Residuals (N)."""
        return self._res.resid[self.label]

    @property
    def fittedvalues(self) -> pd.Series:
        """Fitted values (N)."""
        return self._res.fittedvalues[self.label]

    @property
    def ssr(self) -> float:
        """Residual sum of squares."""
        return float(self._res._eq_stats["ssr"].iloc[self._j])

    @property
    def rsquared(self) -> float:
        """R^2 (centred with a constant, uncentred otherwise)."""
        return float(self._res._eq_stats["rsquared"].iloc[self._j])

    @property
    def rsquared_adj(self) -> float:
        """Adjusted R^2."""
        return float(self._res._eq_stats["rsquared_adj"].iloc[self._j])

    def summary(self, alpha: float = 0.05) -> Summary:
        """A statsmodels :class:`~statsmodels.iolib.summary.Summary` of this equation."""
        alpha = check_alpha(alpha)
        res = self._res
        left = [("Equation:", [self.label]), ("Dep. Variable:", [self.dep_name]),
                ("Method:", [res._method_label]), ("No. Observations:", [str(self.nobs)]),
                ("Df Residuals:", [str(self.df_resid)]), ("Df Model:", [str(self.df_model)])]
        right = [("R-squared:", [f"{self.rsquared:#.4g}"]),
                 ("Adj. R-squared:", [f"{self.rsquared_adj:#.4g}"]),
                 ("SSR:", [f"{self.ssr:#.6g}"]),
                 ("Covariance Type:", [res.cov_type]), ("Rank (factors):", [res._rank_text]),
                 ("No. Equations:", [str(res.k_eqs)])]
        smry = Summary()
        smry.add_table_2cols(res, gleft=left, gright=right,
                             title=f"SUR equation {self.label!r} (of the system fit)")
        params = self.params.to_numpy()
        bse = self.bse.to_numpy()
        tab = summary_params(
            (res, params, bse, params / bse, self.pvalues.to_numpy(),
             self.conf_int(alpha).to_numpy()),
            yname=self.dep_name, xname=self.exog_names, alpha=alpha, use_t=res.use_t,
        )
        smry.tables.append(tab)
        smry.add_extra_txt([res._coef_cov.note])
        return smry

    def __repr__(self) -> str:
        return f"<EquationResult {self.label!r}: {len(self.exog_names)} coefficients>"


class _Equations(Mapping):
    """Read-only mapping label -> :class:`EquationResult`, in the model's order."""

    def __init__(self, res) -> None:
        self._res = res
        self._labels = list(res.equation_labels)

    def __getitem__(self, label: str) -> EquationResult:
        if label not in self._labels:
            raise KeyError(
                f"unknown equation {label!r}; the equations are {self._labels[:10]}"
                f"{' ...' if len(self._labels) > 10 else ''}"
            )
        return EquationResult(self._res, self._labels.index(label))

    def __iter__(self):
        return iter(self._labels)

    def __len__(self) -> int:
        return len(self._labels)


class SURPrediction:
    """Predictions of every equation with standard errors (statsmodels' per equation).

    Attributes
    ----------
    predicted_mean, se_mean, se_obs : DataFrame
        N_new x K: the predictions ``x_t' b_j``, the standard errors of the mean
        ``sqrt(x_t' V_j x_t)`` and of a new observation ``sqrt(x_t' V_j x_t + Sigma_jj)``.
    equations : dict
        Label -> :class:`statsmodels.regression._prediction.PredictionResults`.
    """

    def __init__(self, equations: dict, index) -> None:
        self.equations = equations
        labels = list(equations)

        def frame(get):
            return pd.DataFrame({k: get(equations[k]) for k in labels}, index=index)

        self.predicted_mean = frame(lambda p: np.asarray(p.predicted_mean))
        self.se_mean = frame(lambda p: np.asarray(p.se_mean))
        self.se_obs = frame(lambda p: np.asarray(p.se_obs))

    def summary_frame(self, alpha: float = 0.05, equation: str | None = None) -> pd.DataFrame:
        """The prediction table of statsmodels: mean, mean_se, mean_ci_*, obs_ci_*.

        Parameters
        ----------
        alpha : float
            Significance level of the intervals.
        equation : str, optional
            One equation's table; None stacks all (index: equation, row).
        """
        alpha = check_alpha(alpha)
        if equation is not None:
            if equation not in self.equations:
                raise KeyError(f"unknown equation {equation!r}; the equations are "
                               f"{list(self.equations)[:10]}")
            out = self.equations[equation].summary_frame(alpha=alpha)
            out.index = self.predicted_mean.index
            return out
        parts = {k: self.summary_frame(alpha, k) for k in self.equations}
        return pd.concat(parts, names=["equation", self.predicted_mean.index.name])


class EquationResults:
    """Per-equation results and goodness of fit (mixed into the system results)."""

    @property
    def _method_label(self) -> str:
        from .fitters import get_fitter

        return self._record.label or get_fitter(self.method).label

    @property
    def _rank_text(self) -> str:
        return "full" if not isinstance(self.error_cov, LowRankCovariance) else str(self.rank)

    def _observed_arrays(self):
        """Responses and residuals, zero in unobserved cells (``missing="fiml"``), the mask."""
        Y = self.model.system.endog.to_numpy()
        R = self.resid.to_numpy()
        obs = self.model.design.observed
        if obs is not None:
            Y, R = np.where(obs, Y, 0.0), np.where(obs, R, 0.0)
        return Y, R, obs

    @property
    def _eq_stats(self) -> pd.DataFrame:
        def compute():
            self._require_data("per-equation R-squared")
            Y, R, obs = self._observed_arrays()
            consts = self.model.has_constant.astype(int)
            ssr = np.einsum("ij,ij->j", R, R)
            n = self.model.nobs_eqs.to_numpy()
            Yc = Y - Y.sum(axis=0) / n
            if obs is not None:
                Yc = np.where(obs, Yc, 0.0)
            tss = np.where(consts == 1, np.einsum("ij,ij->j", Yc, Yc),
                           np.einsum("ij,ij->j", Y, Y))
            r2 = 1.0 - ssr / tss
            p = self.model.design.p
            adj = 1.0 - (n - consts) / (n - p) * (1.0 - r2)
            return pd.DataFrame({"ssr": ssr, "rsquared": r2, "rsquared_adj": adj,
                                 "k_constant": consts}, index=self.equation_labels)

        return self._kept("eq_stats", compute)

    @property
    def equations(self) -> Mapping:
        """Label -> :class:`EquationResult` (``res.equations["gm"]``)."""
        return _Equations(self)

    def equation(self, label: str) -> EquationResult:
        """The :class:`EquationResult` of equation ``label``."""
        return self.equations[label]

    @property
    def rsquared(self) -> pd.Series:
        """R^2 of every equation (see the module notes)."""
        return self._eq_stats["rsquared"].rename("rsquared")

    @property
    def rsquared_adj(self) -> pd.Series:
        """Adjusted R^2 of every equation."""
        return self._eq_stats["rsquared_adj"].rename("rsquared_adj")

    @property
    def ssr(self) -> pd.Series:
        """Residual sum of squares of every equation."""
        return self._eq_stats["ssr"].rename("ssr")

    @property
    def system_rsquared(self) -> float:
        """McElroy's system R^2: ``1 - e'(S^{-1} kron I) e / y'(S^{-1} kron M0) y``.

        ``S`` is the fitted error covariance, ``M0`` the centring matrix (``y`` is taken
        about each equation's mean); computed in O(N K k) for a low-rank Sigma.
        """
        def compute():
            self._require_data("system_rsquared")
            Y, R, obs = self._observed_arrays()
            Yc = Y - Y.sum(axis=0) / self.model.nobs_eqs.to_numpy()
            cov = self.error_cov
            if obs is not None:  # the observed blocks of each row
                Yc = np.where(obs, Yc, 0.0)
                cov = ObservedCovariance(cov.F, cov.D, obs)
            num = float(np.sum(cov.quad_form_obs(R)))
            den = float(np.sum(cov.quad_form_obs(Yc)))
            return 1.0 - num / den

        return self._kept("system_rsquared", compute)

    def _check_small_k(self, what: str) -> None:
        if self.k_eqs > SIGMA_MAX_K:
            raise MemoryError(
                f"{what} is a {self.k_eqs} x {self.k_eqs} table (K above {SIGMA_MAX_K}); use "
                "the factor representation instead: results.factor_loadings (F) and "
                "results.idiosyncratic_var (D), Sigma = F F' + diag(D), or "
                "results.error_cov for products with Sigma"
            )

    @property
    def sigma(self) -> pd.DataFrame:
        """The fitted error covariance Sigma as a labelled K x K DataFrame (small K)."""
        self._check_small_k("sigma")
        S = self.error_cov.to_dense(force=True)
        return pd.DataFrame(S, index=self.equation_labels, columns=self.equation_labels)

    @property
    def resid_corr(self) -> pd.DataFrame:
        """The error correlation implied by the fitted Sigma (K x K DataFrame, small K)."""
        S = self.sigma
        sd = np.sqrt(np.diag(S.to_numpy()))
        return S / np.outer(sd, sd)

    def _equation_cov(self, j: int) -> pd.DataFrame:
        names = self.model.system.equations[j].exog_names
        blocks = getattr(self._coef_cov, "blocks", None)
        if blocks is not None:  # the estimator's diagonal blocks, computed once
            cached = self._kept(f"cov_blocks_{id(self._coef_cov)}", blocks)
            return pd.DataFrame(cached[j], index=names, columns=names)
        d = self.model.design
        lo, hi = int(d.offsets[j]), int(d.offsets[j + 1])
        E = np.zeros((hi - lo, d.k_params))
        E[np.arange(hi - lo), np.arange(lo, hi)] = 1.0
        return pd.DataFrame(self.cov_params(r_matrix=E), index=names, columns=names)

    def get_prediction(self, exog=None, transform: bool = True) -> SURPrediction:
        """Predictions with standard errors for the mean and for a new observation.

        Parameters
        ----------
        exog : DataFrame, dict or list, optional
            New data, as for :meth:`predict`; None uses the estimation sample.
        transform : bool
            Apply the formula designs (True) or treat ``exog`` as design matrices.

        Returns
        -------
        SURPrediction
            ``summary_frame(alpha)`` gives statsmodels' columns per equation. The variance
            of a new observation adds ``Sigma_jj``; intervals use the normal distribution
            (t with ``df_resid_inference`` degrees of freedom under ``use_t``).
        """
        if exog is None:
            self._require_data("get_prediction() without new data")
            mats = list(self.model.system.exog)
            index = self.model.system.endog.index
        else:
            mats, index = self.model.system.new_exog(exog, transform=transform)
        params = np.asarray(self.params)
        d = self.model.design
        var_resid = self.error_cov.diag()
        dist = "t" if self.use_t else "norm"
        df = self.df_resid_inference if self.use_t else None
        out = {}
        for j, label in enumerate(self.equation_labels):
            X = np.asarray(mats[j], dtype=float)
            V = self._equation_cov(j).to_numpy()
            mean = X @ params[d.offsets[j]:d.offsets[j + 1]]
            var_mean = np.einsum("ij,jk,ik->i", X, V, X)
            out[label] = PredictionResults(mean, var_mean, var_resid[j], df=df, dist=dist)
        return SURPrediction(out, index)
