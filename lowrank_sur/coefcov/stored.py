"""The coefficient covariance of a fit after ``remove_data()``: what was computed before.

Not a registered ``cov_type``: :meth:`LowRankSURResults.remove_data
<lowrank_sur.results.LowRankSURResults.remove_data>` swaps the fit's estimator for
:class:`StoredCovariance`, which answers from the standard errors and, when P is small,
the full P x P matrix computed before the data were dropped. Anything else raises
:class:`~lowrank_sur.exceptions.DataRemovedError`.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import DataRemovedError
from .registry import CoefCovEstimator

__all__ = ["StoredCovariance"]


class StoredCovariance(CoefCovEstimator):
    """Standard errors (and, if kept, the full covariance) of a fit without its data.

    Parameters
    ----------
    source : CoefCovEstimator
        The fit's estimator, while it still has the data.
    keep_full : bool
        Compute and keep the full P x P covariance (small P only).
    message : str
        What to say when something that was not kept is asked for.
    """

    def __init__(self, source: CoefCovEstimator, keep_full: bool, message: str) -> None:
        self.name = source.name
        self.note = source.note
        self._bse = np.asarray(source.bse(), dtype=float).copy()
        self._full = np.asarray(source.full(), dtype=float).copy() if keep_full else None
        self._message = message

    def bse(self) -> np.ndarray:
        """Standard errors of all P coefficients."""
        return self._bse.copy()

    def _need_full(self) -> np.ndarray:
        if self._full is None:
            raise DataRemovedError(self._message)
        return self._full

    def restricted(self, Rm: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
        """Return ``Rm V Rm'`` (or ``other V Rm'``) from the kept covariance."""
        V = self._need_full()
        Rm = np.atleast_2d(np.asarray(Rm, dtype=float))
        if Rm.shape[1] != V.shape[0]:
            raise ValueError(
                f"restriction matrix has {Rm.shape[1]} columns, expected {V.shape[0]}"
            )
        if other is not None:
            return np.atleast_2d(np.asarray(other, dtype=float)) @ V @ Rm.T
        out = Rm @ V @ Rm.T
        return 0.5 * (out + out.T)

    def full(self) -> np.ndarray:
        """The full P x P covariance, if it was kept."""
        return self._need_full().copy()
