"""Inference after a distributed fit: chosen standard errors and a few tests, by distributed CG.

The coefficient covariance is the in-memory one (``cov_type="nonrobust"``,
:class:`~lowrank_sur.coefcov.nonrobust.NonrobustCovariance`: ``Cov(b) = A^{-1}``, GLS
at the MLE), on the distributed design: each row of a restriction matrix costs one
conjugate-gradient solve of ``A~ x = z`` whose matrix-vector products are the beta
step's (two passes over the design on the cluster). The standard errors of m chosen
equations cost ``m p`` solves; a test of q restrictions costs q solves. All P standard
errors need the in-memory route (the diagonal blocks of ``A~^{-1}`` through one
N k x N k system and the whole design): only when that fits in the client's memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from statsmodels.stats.contrast import ContrastResults

from ..coefcov.nonrobust import NonrobustCovariance

__all__ = ["DaskInference", "ALL_BSE_MAX_BYTES"]

#: Client memory the all-P standard errors may use (the gathered design and the
#: N k x N k system), unless ``max_bytes`` says otherwise.
ALL_BSE_MAX_BYTES = 2e9


class DaskInference:
    """Standard errors and tests for a :class:`~lowrank_sur.dask.fit.DaskFitRecord`.

    Parameters
    ----------
    record : DaskFitRecord
        A distributed fit whose design is still on the cluster.
    rtol : float
        Relative residual tolerance of each conjugate-gradient solve (the in-memory
        default).
    """

    def __init__(self, record, rtol: float = 1e-11) -> None:
        if record.design is None:
            raise ValueError("the record's design was released (release()); refit to "
                             "compute standard errors or tests")
        self.record = record
        self.design = record.design
        self.rtol = rtol
        self._cov = NonrobustCovariance(self.design, record=record)
        self.params = np.concatenate(record.coefs)

    # --------------------------------------------------------------- helpers
    def _equations(self, equations) -> list[int]:
        d = self.design
        if isinstance(equations, (str, int, np.integer)):
            equations = [equations]
        out = []
        index = {n: j for j, n in enumerate(d.eq_names)}
        for e in equations:
            if isinstance(e, str):
                if e not in index:
                    raise KeyError(f"equation {e!r} is not one of the fit's eq_names")
                out.append(index[e])
            elif isinstance(e, (int, np.integer)) and -d.k_eqs <= e < d.k_eqs:
                out.append(int(e) % d.k_eqs)
            else:
                raise KeyError(f"equation {e!r}: give equation names or indices 0..{d.k_eqs - 1}")
        return out

    def _selector(self, eqs: list[int]) -> np.ndarray:
        d = self.design
        Rm = np.zeros((len(eqs) * d.pmax, d.k_params))
        for i, j in enumerate(eqs):
            for c in range(d.pmax):
                Rm[i * d.pmax + c, d.offsets[j] + c] = 1.0
        return Rm

    def _restriction(self, r_matrix, q_matrix) -> tuple[np.ndarray, np.ndarray]:
        Rm = np.atleast_2d(np.asarray(r_matrix, dtype=float))
        P = self.design.k_params
        if Rm.ndim != 2 or Rm.shape[1] != P:
            raise ValueError(f"r_matrix must have P={P} columns (one per coefficient, "
                             f"equation by equation), got shape {Rm.shape}")
        if not np.all(np.isfinite(Rm)):
            raise ValueError("r_matrix contains NaN or inf")
        q = np.zeros(Rm.shape[0]) if q_matrix is None else np.ravel(
            np.asarray(q_matrix, dtype=float))
        if q.shape != (Rm.shape[0],):
            raise ValueError(f"q_matrix must hold {Rm.shape[0]} values, one per restriction")
        return Rm, q

    # ------------------------------------------------------------ interface
    def cov_params(self, equations: Sequence) -> np.ndarray:
        """Covariance of the coefficients of the chosen equations ((m p) x (m p)).

        Parameters
        ----------
        equations : sequence of str or int
            Equation names or indices; the rows follow them, p coefficients each.
        """
        Rm = self._selector(self._equations(equations))
        return self._cov.restricted(Rm, rtol=self.rtol)

    def bse(self, equations: Sequence | None = None,
            max_bytes: float = ALL_BSE_MAX_BYTES) -> np.ndarray:
        """Standard errors: of the chosen equations (m x p), or of all P (K x p).

        Parameters
        ----------
        equations : sequence of str or int, optional
            Equation names or indices (``m p`` conjugate-gradient solves). Without it,
            all P standard errors through the in-memory route, when the design and its
            N k x N k system fit in ``max_bytes`` of the client's memory.
        max_bytes : float
            Client memory the all-P route may use.
        """
        d = self.design
        if equations is not None:
            V = self.cov_params(equations)
            return np.sqrt(np.diag(V)).reshape(-1, d.pmax)
        nk = d.nobs * self.record.rank
        need = 8.0 * (d.k_eqs * d.pmax * d.nobs + nk * nk)
        if need > max_bytes:
            raise MemoryError(
                f"all P={d.k_params} standard errors need the whole design and an "
                f"{nk} x {nk} system in the client's memory (about {need / 1e9:.1f} GB, "
                f"over max_bytes={max_bytes / 1e9:.1f} GB); ask for chosen equations, "
                "inference.bse(equations=['name', ...]) or cov_params(equations=[...]), "
                "or test restrictions with inference.t_test(r_matrix) / wald_test(r_matrix)"
            )
        return NonrobustCovariance(d.gather(), record=self.record).bse().reshape(-1, d.pmax)

    def t_test(self, r_matrix, q_matrix=None) -> ContrastResults:
        """Tests of ``r_matrix b = q_matrix``, row by row (z statistics, normal p-values).

        Parameters
        ----------
        r_matrix : array_like, shape (q, P)
            Restrictions, one row each; the columns are the coefficients equation by
            equation (``np.concatenate(record.coefs)``).
        q_matrix : array_like, shape (q,), optional
            Right-hand sides (default zero).
        """
        Rm, q = self._restriction(r_matrix, q_matrix)
        V = self._cov.restricted(Rm, rtol=self.rtol)
        effect = Rm @ self.params - q
        sd = np.sqrt(np.diag(V))
        return ContrastResults(effect=effect, sd=sd, statistic=effect / sd,
                               distribution="norm")

    def wald_test(self, r_matrix, q_matrix=None) -> ContrastResults:
        """Wald chi-squared test of the joint restrictions ``r_matrix b = q_matrix``.

        Parameters
        ----------
        r_matrix, q_matrix
            As in :meth:`t_test`.
        """
        Rm, q = self._restriction(r_matrix, q_matrix)
        V = self._cov.restricted(Rm, rtol=self.rtol)
        e = Rm @ self.params - q
        chi2 = float(e @ np.linalg.solve(V, e))
        return ContrastResults(statistic=chi2, distribution="chi2", df_denom=Rm.shape[0],
                               dist_args=(Rm.shape[0],))
