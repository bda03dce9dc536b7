"""The coefficient covariance the model builds after a fit (:func:`coefficient_covariance`).

The registered ``cov_type`` estimator, except

* for an unrestricted Sigma (``rank="full"``, a
  :class:`~lowrank_sur.covariance.DenseCovariance`), where ``"nonrobust"`` is
  :class:`DenseNonrobustCovariance`: ``(X'(Sigma^{-1} kron I) X)^{-1}`` through the dense
  P x P normal matrix (K < N, small systems);
* for a fit with missing responses (``missing="fiml"``), where ``"nonrobust"`` is
  :class:`~lowrank_sur.coefcov.fiml.FIMLNonrobustCovariance` (the incomplete-data
  information) and the other types raise ``NotImplementedError``;
* for a fit with constraints imposed, where the covariance is the restricted one:
  ``V - V R' (R V R')^{-1} R V`` for ``"nonrobust"``
  (:class:`~lowrank_sur.constraints.ConstrainedCoefCov`) and the sandwich with the
  constrained estimator's bread for ``HC0``/``HC1``, ``HAC`` and ``cluster``
  (:class:`~lowrank_sur.constraints.ConstrainedSandwich`); ``"bootstrap"`` refits
  without the constraints and is refused.

The sandwich types work with an unrestricted Sigma as they are (they need only the
:class:`~lowrank_sur.covariance.Covariance` protocol).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from ..constraints import ConstrainedCoefCov, ConstrainedSandwich
from ..covariance import DenseCovariance
from ..gls import dense_normal_matrix
from .fiml import FIMLNonrobustCovariance
from .nonrobust import NonrobustCovariance
from .registry import get_cov_type
from .sandwich import SandwichCovariance
from .smallsample import debiased_record

__all__ = ["DenseNonrobustCovariance", "coefficient_covariance", "check_missing_cov_type"]


def check_missing_cov_type(estimator: type, cov_type: str) -> None:
    """Refuse the covariance types not built yet for missing responses (``missing="fiml"``)."""
    if estimator is not NonrobustCovariance:
        raise NotImplementedError(
            f"cov_type={cov_type!r} is not available yet with missing responses "
            "(missing='fiml'); use cov_type='nonrobust' (the incomplete-data information), "
            "or missing='drop'"
        )


class DenseNonrobustCovariance(NonrobustCovariance):
    """``(X'(Sigma^{-1} kron I) X)^{-1}`` for an unrestricted (dense) Sigma.

    The whitened normal matrix ``A~`` is formed (P x P) and factored once; standard
    errors, restrictions and the full matrix come from its inverse.
    """

    name = "nonrobust"
    note = ("Standard errors are GLS standard errors at the estimated (unrestricted) "
            "Sigma.")

    def __init__(self, design, Y=None, record=None) -> None:
        super().__init__(design, Y, record)
        self._ainv: np.ndarray | None = None

    def route(self) -> str:
        """Always ``"dense"``."""
        return "dense"

    def _dense_white_inv(self) -> np.ndarray:
        if self._ainv is None:
            A = dense_normal_matrix(self.design, self.cov.inv_dense())
            self._ainv = linalg.cho_solve(linalg.cho_factor(A, lower=True), np.eye(A.shape[0]))
        return self._ainv

    def _block_array(self) -> np.ndarray:
        if self._blocks is None:
            d = self.design
            A = np.zeros((d.k_eqs, d.pmax, d.pmax))
            for j, B in enumerate(self._blocks_dense()):
                A[j, : d.p[j], : d.p[j]] = B
            self._blocks = A
        return self._blocks

    def _white_solve(self, Zw: np.ndarray, rtol: float) -> np.ndarray:
        idx = self.design.packed_index()
        X = np.zeros((Zw.shape[1], Zw.shape[0]))
        X[idx] = self._dense_white_inv() @ Zw[:, idx].T
        return X


def coefficient_covariance(cov_type: str, design, Y, record, cov_kwds: dict,
                           debiased: bool = False):
    """The coefficient-covariance estimator of a finished fit (see the module notes).

    With ``debiased`` (Stata's ``dfk``) the estimator sees the error covariance scaled
    by :func:`~.smallsample.debiased_record`, except an unrestricted Sigma-hat from
    ``method="fgls"``, which has the ``dfk`` divisor already. The model's ``fit`` and
    the results' ``get_robustcov_results`` both come here, so they agree.
    """
    if debiased and not isinstance(record.cov, DenseCovariance):
        record = debiased_record(record, design)
    estimator = get_cov_type(cov_type)
    if getattr(design, "observed", None) is not None:
        check_missing_cov_type(estimator, cov_type)
        return FIMLNonrobustCovariance(design, Y, record)
    constrained = record.constraints is not None
    if constrained and not (estimator is NonrobustCovariance
                            or issubclass(estimator, SandwichCovariance)):
        raise NotImplementedError(
            f"cov_type={cov_type!r} is not available for fits with constraints imposed in "
            "estimation (its refits would ignore them); use 'nonrobust', 'HC0', 'HC1', "
            "'HAC' or 'cluster'"
        )
    if isinstance(record.cov, DenseCovariance) and estimator is NonrobustCovariance:
        base = DenseNonrobustCovariance(design, Y, record, **cov_kwds)
    else:
        base = estimator(design, Y, record, **cov_kwds)
    if not constrained:
        return base
    if isinstance(base, SandwichCovariance):
        return ConstrainedSandwich(base, record.constraints[0])
    return ConstrainedCoefCov(base, record.constraints[0])
