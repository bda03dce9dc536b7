"""Model selection: the default rank, free-parameter counts, identification and criteria.

Used by the model (``rank=None`` and ``rank="aic"/"bic"``), the results (``aic``,
``bic``, ``df_ic``) and the fitters (the Ledermann warning); it imports neither.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .exceptions import IdentificationWarning, external_stacklevel

__all__ = [
    "default_rank",
    "n_free_params",
    "n_cov_params",
    "ledermann_ok",
    "warn_if_unidentified",
    "information_criteria",
    "CRITERIA",
]

#: Criteria accepted by ``rank=`` for automatic selection.
CRITERIA = ("aic", "bic")


def default_rank(k_eqs: int, nobs: int) -> int:
    """Default number of factors: ``min(8, ceil(K / 10))``, kept below K and N.

    The same rule as alsgls; choose ``rank="bic"`` to let the data decide.
    """
    return int(max(0, min(8, math.ceil(k_eqs / 10), k_eqs - 1, nobs - 1)))


def n_cov_params(k_eqs: int, rank: int | None) -> int:
    """Free parameters of Sigma: ``K k - k (k - 1) / 2 + K`` (loadings up to rotation, D).

    ``rank=None`` counts an unrestricted Sigma, ``K (K + 1) / 2``.
    """
    if rank is None:
        return int(k_eqs * (k_eqs + 1) // 2)
    return int(k_eqs * rank - rank * (rank - 1) // 2 + k_eqs)


def n_free_params(k_params: int, k_eqs: int, rank: int) -> int:
    """Free parameters ``P + K k - k (k - 1) / 2 + K`` (coefficients, loadings, D)."""
    return int(k_params) + n_cov_params(k_eqs, rank)


def ledermann_ok(k_eqs: int, rank: int) -> bool:
    """Whether ``(K - k)^2 >= K + k``: at or below the Ledermann bound, F and D are identified."""
    return (k_eqs - rank) ** 2 >= k_eqs + rank


def warn_if_unidentified(k_eqs: int, rank: int) -> None:
    """Issue an :class:`IdentificationWarning` when ``rank`` exceeds the Ledermann bound."""
    if 0 < rank < k_eqs and not ledermann_ok(k_eqs, rank):
        warnings.warn(
            f"rank={rank} exceeds the Ledermann bound for K={k_eqs} equations "
            "((K - k)^2 < K + k): Sigma is identified but the loadings F are not (nor D "
            "separately); interpret factor_loadings with care",
            IdentificationWarning,
            stacklevel=external_stacklevel(),
        )


def information_criteria(llf: float, df: int, nobs: int) -> dict[str, float]:
    """AIC and BIC for a log-likelihood with ``df`` free parameters and ``nobs`` rows.

    Returns
    -------
    dict
        ``{"aic": -2 llf + 2 df, "bic": -2 llf + log(nobs) df}``.
    """
    return {"aic": -2.0 * llf + 2.0 * df, "bic": -2.0 * llf + float(np.log(nobs)) * df}
