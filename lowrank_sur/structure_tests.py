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
                f"{what}(method='bootstrap' / 'fdb') refits low-rank models on draws; it "
                "is not available for an unrestricted Sigma (rank='full'): use "
                "method='chi2'"
            )

    def _refit(self, Y: np.ndarray, rank: int, start=None):
        """The fit at ``rank`` on responses ``Y`` (a bootstrap draw), same options."""
        opts = dataclasses.replace(self._fit_options, disp=False, callback=None)
        return fit_design(self.model.design, Y, rank, opts, start_params=start)

    def _refit_llf(self, Y: np.ndarray, rank: int, start=None) -> float:
        """Maximized llf at ``rank`` on responses ``Y`` (a bootstrap draw), same options."""
        return self._refit(Y, rank, start).llf

    def _null_start(self):
        return (np.asarray(self.params), self.error_cov.F, self.error_cov.D)

    def _refit_this_null(self, Y: np.ndarray):
        """The rank of this fit refitted on ``Y`` from this fit: ``(llf, coefs, cov)``."""
        rec = self._refit(Y, self.rank, self._null_start())
        return rec.llf, rec.whitened_coefs, rec.cov

    def _bootstrap_lr(self, alt_llf, method: str, n_boot: int, seed, factor: float = 1.0,
                      null=None):
        """Bootstrap LR statistics ``factor * 2 (alt_llf(Y) - llf_null(Y))`` on draws.

        The one refit block of the three LR tests. ``null`` is ``(coefs, cov,
        refit)`` of the null model, ``refit(Y) -> (llf, coefs, cov)``; by default this
        fit (refitted at its rank from its own estimates). ``method`` is
        ``"bootstrap"`` or ``"fdb"`` (second level drawn from each null refit).
        Returns the first- and second-level statistics.
        """
        coefs, cov, refit_null = null or (self._record.whitened_coefs, self.error_cov,
                                          self._refit_this_null)
        return covtests.bootstrap_lr(self.model.design, coefs, cov,
                                     self._lr_refit(alt_llf, refit_null, factor), n_boot,
                                     seed, method)

    def _lr_refit(self, alt_llf, refit_null=None, factor: float = 1.0):
        """``refit(Y) -> (factor * 2 (alt_llf(Y) - llf_null(Y)), null coefs, null cov)``."""
        refit_null = refit_null or self._refit_this_null

        def refit(Y):
            llf0, coefs0, cov0 = refit_null(Y)
            return factor * 2.0 * (alt_llf(Y) - llf0), coefs0, cov0

        return refit

    def lr_test_diagonal(self, method: str = "chi2", n_boot: int = 199,
                         seed: int = 0) -> covtests.CovStructureTest:
        """LR test of this rank against a diagonal Sigma (rank 0).

        Parameters
        ----------
        method : {"chi2", "bootstrap", "fdb"}
            ``"chi2"`` (default; conservative, k = 0 is on the boundary), the
            parametric bootstrap from the diagonal fit (refits this rank on each
            draw) or its fast double bootstrap (``"fdb"``, also spelled
            ``"fast_double_bootstrap"``; see :meth:`compare_lr_test`).
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
        boot = boot2 = None
        method = covtests.check_lr_method(method)
        if method in covtests.BOOTSTRAP_METHODS and self.rank > 0:
            self._check_bootstrap("lr_test_diagonal")
            self._require_data(f"lr_test_diagonal(method={method!r})")
            design = self.model.design

            def diagonal(Y):
                A, cov = covtests.diagonal_null(design, Y)
                return covtests.diagonal_llf(design, Y), A, cov

            boot, boot2 = self._bootstrap_lr(
                lambda Yb: self._refit_llf(Yb, self.rank), method, n_boot, seed,
                null=(*covtests.diagonal_null(design, self.model._Y), diagonal))
        return covtests.lr_test_diagonal(self.llf, self._llf_diagonal, self.k_eqs, self.rank,
                                         boot_stats=boot, boot_stats2=boot2)

    def compare_lr_test(self, other, method: str = "bootstrap", n_boot: int = 199,
                        seed: int = 0) -> covtests.CovStructureTest:
        """LR test between this fit and another of a different rank on the same model.

        The smaller rank is the null. The statistic ``2 (llf_big - llf_small)`` has no
        chi2 limit (the extra factors are not identified under the null), so the
        p-value is a parametric bootstrap: ``n_boot`` responses drawn from the
        small-rank fit, both ranks refitted on each. ``method="bootstrap"`` gives
        ``p = (1 + #{LR_b >= LR}) / (1 + n_boot)``; the fast double bootstrap
        (``method="fdb"``) also refits the small rank on each draw, draws one response
        matrix from that refit and refits both ranks on it (``LR**_b``), and reports
        Davidson and MacKinnon's (2007) ``p** = #{LR_b > Q**(1 - p*)} / n_boot`` with
        ``p* = #{LR_b >= LR} / n_boot`` and ``Q**`` the quantile of the ``LR**_b``
        (:func:`~lowrank_sur.bootstrap.fdb_pvalue`), at about twice the refits. The
        default is the single bootstrap: in the Monte Carlo of ``docs/calibration.md``
        (warp-speed sizes at 5%) the FDB did not hold the size better: it was larger
        than the single bootstrap's at all four designs (0.087 against 0.065 at N=60,
        K=120, k=2 over 1200 replications) and noisier.

        Parameters
        ----------
        other : LowRankSURResults
            A fit of the same equations and data with a different rank.
        method : {"bootstrap", "fdb", "chi2"}
            The reference (``"fast_double_bootstrap"`` is ``"fdb"``). ``"chi2"`` gives
            the chi2 p-value with the difference in free parameters, labelled as not
            valid for nested factor ranks (it is far too small).
        n_boot : int
            Bootstrap draws (at least 19).
        seed : int
            Seed of the draws.

        Returns
        -------
        CovStructureTest
            Invalid (with the reason) when both ranks leave Sigma unrestricted; its
            ``method`` names the reference used.

        References
        ----------
        Davidson, R. and MacKinnon, J. G. (2007). Improving the reliability of
        bootstrap tests with the fast double bootstrap. *Computational Statistics &
        Data Analysis* 51, 3259-3281.
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
                f"compare_lr_test(method={method!r}) refits on draws from the data's "
                "design, which remove_data() dropped; refit, or use method='chi2' "
                "(labelled as not valid for nested factor ranks)"
            )
        boot, boot2 = small._bootstrap_lr(lambda Yb: small._refit_llf(Yb, big.rank),
                                          method, n_boot, seed)
        return covtests.lr_test_nested(*args, method=method, boot_stats=boot,
                                       boot_stats2=boot2)

    def lr_test_unrestricted(self, method: str = "chi2", n_boot: int = 199,
                             seed: int = 0) -> covtests.CovStructureTest:
        """Bartlett-corrected LR test against an unrestricted Sigma (iterated SUR).

        Parameters
        ----------
        method : {"chi2", "bootstrap", "fdb"}
            ``"chi2"`` (default; Bartlett's factor with ``N - p``, see
            :func:`~lowrank_sur.covtests.bartlett_factor`), a parametric bootstrap
            from this fit (both models refitted on each draw) or its fast double
            bootstrap (``"fdb"``; see :meth:`compare_lr_test`).
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
        boot = boot2 = None
        method = covtests.check_lr_method(method)
        if method in covtests.BOOTSTRAP_METHODS:
            boot, boot2 = self._bootstrap_lr(
                lambda Yb: covtests.unrestricted_llf(design, Yb)[0], method, n_boot, seed,
                factor=covtests.bartlett_factor(self.nobs, self.k_eqs, self.rank, p_bar))
        return covtests.lr_test_unrestricted(self.llf, llf_u, *args, boot_stats=boot,
                                             boot_stats2=boot2)

    def breusch_pagan(self) -> covtests.CovStructureTest:
        """Breusch-Pagan LM test of a diagonal Sigma on the OLS residuals."""
        return copy.deepcopy(self._breusch_pagan)
