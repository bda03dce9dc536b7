"""The covariance-structure tests of a fit (mixed into the results).

:class:`CovStructureTests` gives :class:`~lowrank_sur.results.LowRankSURResults` its
``lr_test_diagonal``, ``compare_lr_test``, ``lr_test_unrestricted`` and
``breusch_pagan``: the statistics and references live in :mod:`lowrank_sur.covtests`,
the bootstrap draws in :mod:`lowrank_sur.bootstrap`; this class supplies the fit (its
design, responses, options and null values) and refits on the draws.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from . import covtests
from .covariance import LowRankCovariance
from .exceptions import DataRemovedError
from .fitters import fit_design

__all__ = ["CovStructureTests"]


class CovStructureTests:
    """Tests of the error-covariance structure, for the results class."""

    # -------------------------------------------------- covariance tests
    @property
    def _llf_diagonal(self) -> float:
        def compute():
            self._require_data("lr_test_diagonal")
            return covtests.diagonal_llf(self.model.design, self.model._Y)

        return self._kept("llf_diagonal", compute)

    @property
    def _breusch_pagan(self) -> covtests.CovStructureTest:
        def compute():
            self._require_data("breusch_pagan")
            return covtests.breusch_pagan(self.model.design, self.model._Y)

        return self._kept("breusch_pagan", compute)

    @property
    def _not_ml(self) -> str:
        """Why this fit's llf is not a maximum of the likelihood (empty when it is)."""
        opts = self._fit_options
        if opts.method == "fgls" and not opts.iterate:
            return ("two-step FGLS estimates are not maxima of the likelihood, so their "
                    "log-likelihoods do not give an LR test: fit with iterate=True (rank="
                    "'full') or method='als' / 'em'")
        if self._record.constraints is not None:
            return ("this fit has restrictions imposed on the coefficients; the LR tests "
                    "of the covariance structure compare unrestricted fits: refit without "
                    "constraints")
        return ""

    def _check_bootstrap(self, what: str) -> None:
        if not isinstance(self.error_cov, LowRankCovariance):
            raise NotImplementedError(
                f"{what}(method='bootstrap') refits low-rank models on draws; it is not "
                "available for an unrestricted Sigma (rank='full'): use method='chi2'"
            )

    def _refit_llf(self, Y: np.ndarray, rank: int, start=None) -> float:
        """Maximized llf at ``rank`` on responses ``Y`` (a bootstrap draw), same options."""
        opts = dataclasses.replace(self._fit_options, disp=False, callback=None)
        return fit_design(self.model.design, Y, rank, opts, start_params=start).llf

    def _null_start(self):
        return (np.asarray(self.params), self.error_cov.F, self.error_cov.D)

    def lr_test_diagonal(self, method: str = "chi2", n_boot: int = 199,
                         seed: int = 0) -> covtests.CovStructureTest:
        """LR test of this rank against a diagonal Sigma (rank 0).

        Parameters
        ----------
        method : {"chi2", "bootstrap"}
            ``"chi2"`` (default; conservative, k = 0 is on the boundary) or the
            parametric bootstrap from the diagonal fit (refits this rank on each
            draw).
        n_boot : int
            Bootstrap draws.
        seed : int
            Seed of the draws.

        Returns
        -------
        CovStructureTest
            Invalid (``is_valid=False``, with the reason) at rank 0.
        """
        name = f"LR test: diagonal Sigma vs rank-{self.rank} factor structure"
        if self._not_ml:
            return covtests.invalid_test(name, self._not_ml)
        boot = None
        if covtests.check_lr_method(method) == "bootstrap" and self.rank > 0:
            self._check_bootstrap("lr_test_diagonal")
            self._require_data("lr_test_diagonal(method='bootstrap')")
            design = self.model.design
            A0, cov0 = covtests.diagonal_null(design, self.model._Y)
            boot = covtests.bootstrap_lr(
                design, A0, cov0,
                lambda Yb: 2.0 * (self._refit_llf(Yb, self.rank)
                                  - covtests.diagonal_llf(design, Yb)),
                n_boot, seed)
        return covtests.lr_test_diagonal(self.llf, self._llf_diagonal, self.k_eqs, self.rank,
                                         boot_stats=boot)

    def compare_lr_test(self, other, method: str = "bootstrap", n_boot: int = 199,
                        seed: int = 0) -> covtests.CovStructureTest:
        """LR test between this fit and another of a different rank on the same model.

        The smaller rank is the null. The statistic ``2 (llf_big - llf_small)`` has no
        chi2 limit (the extra factors are not identified under the null), so the
        default p-value is a parametric bootstrap: ``n_boot`` responses drawn from the
        small-rank fit, both ranks refitted on each, ``p = (1 + #{LR_b >= LR}) /
        (1 + n_boot)``.

        Parameters
        ----------
        other : LowRankSURResults
            A fit of the same equations and data with a different rank.
        method : {"bootstrap", "chi2"}
            ``"chi2"`` gives the chi2 p-value with the difference in free parameters,
            labelled as not valid for nested factor ranks (it is far too small).
        n_boot : int
            Bootstrap draws (at least 19).
        seed : int
            Seed of the draws.

        Returns
        -------
        CovStructureTest
            Invalid (with the reason) when both ranks leave Sigma unrestricted.
        """
        other = getattr(other, "_results", other)
        if not isinstance(other, CovStructureTests):
            raise TypeError(
                f"other must be a LowRankSUR results instance, got {type(other).__name__}"
            )
        same = (
            other.nobs == self.nobs
            and other.k_eqs == self.k_eqs
            and list(other.model.param_names) == list(self.model.param_names)
            and other.model._data_key == self.model._data_key
        )
        if not same:
            raise ValueError(
                "compare_lr_test needs two fits of the same equations and data (other has "
                "different coefficients, equations or responses)"
            )
        if other.rank == self.rank:
            raise ValueError(
                f"both fits have rank {self.rank}; nothing to test: fit the other with a "
                "different rank"
            )
        small, big = (self, other) if self.rank < other.rank else (other, self)
        method = covtests.check_lr_method(method)
        for fit in (small, big):
            if fit._not_ml:
                return covtests.invalid_test(
                    f"LR test: rank {small.rank} vs rank {big.rank}", fit._not_ml)
        args = (small.llf, small.rank, big.llf, big.rank, self.k_eqs)
        test = covtests.lr_test_nested(*args, method="chi2")
        if method == "chi2" or not test.is_valid:
            return test
        small._check_bootstrap("compare_lr_test")
        big._check_bootstrap("compare_lr_test")
        if small.model._Y is None or small.model.design.Q is None:
            raise DataRemovedError(
                "compare_lr_test(method='bootstrap') refits on draws from the data's "
                "design, which remove_data() dropped; refit, or use method='chi2' "
                "(labelled as not valid for nested factor ranks)"
            )
        start = small._null_start()
        boot = covtests.bootstrap_lr(
            small.model.design, small._record.whitened_coefs, small.error_cov,
            lambda Yb: 2.0 * (small._refit_llf(Yb, big.rank)
                              - small._refit_llf(Yb, small.rank, start)),
            n_boot, seed)
        return covtests.lr_test_nested(*args, method="bootstrap", boot_stats=boot)

    def lr_test_unrestricted(self, method: str = "chi2", n_boot: int = 199,
                             seed: int = 0) -> covtests.CovStructureTest:
        """Bartlett-corrected LR test against an unrestricted Sigma (iterated SUR).

        Parameters
        ----------
        method : {"chi2", "bootstrap"}
            ``"chi2"`` (default; Bartlett's factor with ``N - p``, see
            :func:`~lowrank_sur.covtests.bartlett_factor`) or a parametric bootstrap
            from this fit (both models refitted on each draw).
        n_boot : int
            Bootstrap draws.
        seed : int
            Seed of the draws.

        Returns
        -------
        CovStructureTest
            Invalid, naming the reason, where the unrestricted maximum does not exist
            (generically ``K + rank([X_1 ... X_K]) > N``) or the rank is saturated.
        """
        self._require_data("lr_test_unrestricted")
        name = f"LR test: rank-{self.rank} factor structure vs unrestricted Sigma"
        if not isinstance(self.error_cov, LowRankCovariance):
            return covtests.invalid_test(name, "this fit has an unrestricted Sigma already "
                                         "(rank='full'): nothing to test")
        if self._not_ml:
            return covtests.invalid_test(name, self._not_ml)
        design, Y = self.model.design, self.model._Y
        if design.observed is not None:
            raise NotImplementedError(
                "lr_test_unrestricted is not available yet with missing responses "
                "(missing='fiml'): the unrestricted Sigma is not fitted with missing cells; "
                "use compare_lr_test against a higher rank"
            )
        p_bar = float(np.mean(design.p))
        reason = covtests.unrestricted_unavailable(design, Y)
        args = (self.nobs, self.k_eqs, self.rank, p_bar)
        test = covtests.lr_test_unrestricted(self.llf, np.nan, *args, reason=reason)
        if not test.is_valid:  # no maximum, or a saturated rank: nothing to fit
            return test
        llf_u, _ = covtests.unrestricted_llf(design, Y)
        boot = None
        if covtests.check_lr_method(method) == "bootstrap":
            factor = covtests.bartlett_factor(self.nobs, self.k_eqs, self.rank, p_bar)
            start = self._null_start()
            boot = covtests.bootstrap_lr(
                design, self._record.whitened_coefs, self.error_cov,
                lambda Yb: factor * 2.0 * (covtests.unrestricted_llf(design, Yb)[0]
                                           - self._refit_llf(Yb, self.rank, start)),
                n_boot, seed)
        return covtests.lr_test_unrestricted(self.llf, llf_u, *args, boot_stats=boot)

    def breusch_pagan(self) -> covtests.CovStructureTest:
        """Breusch-Pagan LM test of a diagonal Sigma on the OLS residuals."""
        return copy.deepcopy(self._breusch_pagan)
