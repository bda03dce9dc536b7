"""Registered sandwich covariances: ``HC0`` / ``HC1``, ``HAC`` and ``cluster``.

Each is a :class:`~.sandwich.SandwichCovariance` with its meat (the weighting of the
N rows of bread-applied scores) and its small-sample convention, with statsmodels'
names and ``cov_kwds`` and linearmodels' aliases and keywords:

* ``HC0`` (aliases ``robust``, ``heteroskedastic``): ``debiased`` (False; True is HC1).
* ``HC1``: no options; ``N / (N - p_j)`` per equation.
* ``HAC`` (alias ``kernel``): ``maxlags`` (statsmodels) or ``bandwidth`` (linearmodels),
  ``kernel`` (``"bartlett"``, ``"parzen"``, ``"qs"``, ``"uniform"``), ``use_correction``
  or ``debiased`` (False).
* ``cluster`` (alias ``clustered``): ``groups`` (statsmodels) or ``clusters``
  (linearmodels), one or two columns; ``use_correction`` (True) or linearmodels'
  ``debiased`` / ``group_debias``; ``df_correction`` (statsmodels: with ``use_t``, t and
  F with ``G - 1`` degrees of freedom).

Small-sample conventions (each multiplies the part of the covariance that belongs to
equations a and b by ``sqrt(c_a c_b)``, which at rank 0 is statsmodels' per-equation
OLS factor):

* HC1, HAC ``use_correction=True``, linearmodels ``debiased=True``: ``c_j = N / (N - p_j)``.
* cluster ``use_correction=True`` (statsmodels' default): ``G / (G - 1)`` times
  ``c_j = (N - 1) / (N - p_j)``, each of the two-way components with its own G.
  linearmodels' ``group_debias=True`` is ``G / (G - 1) (N - 1) / N`` and
  ``debiased=True`` is ``N / (N - p_j)``; both together equal statsmodels'
  ``use_correction=True``; neither (linearmodels' default) is ``use_correction=False``.

References
----------
Newey, W. K. and K. D. West (1987). A simple, positive semi-definite, heteroskedasticity
and autocorrelation consistent covariance matrix. Econometrica 55(3), 703-708.

Andrews, D. W. K. (1991). Heteroskedasticity and autocorrelation consistent covariance
matrix estimation. Econometrica 59(3), 817-858.

Cameron, A. C., J. B. Gelbach and D. L. Miller (2011). Robust inference with multiway
clustering. Journal of Business and Economic Statistics 29(2), 238-249.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .registry import register_cov_type
from .sandwich import Meat, SandwichCovariance, _t

__all__ = ["HC0Covariance", "HC1Covariance", "HACCovariance", "ClusterCovariance",
           "kernel_weights"]


# ----------------------------------------------------------------- meats
class WhiteMeat(Meat):
    """``W = I``: heteroskedasticity-robust."""

    def cross(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Return ``A' B``."""
        return np.matmul(_t(A), B)


class KernelMeat(Meat):
    """``W_ts = w_|t-s|``: the kernel (HAC) weighting of rows in time order."""

    def __init__(self, weights: np.ndarray) -> None:
        self.weights = np.asarray(weights, dtype=float)

    def cross(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Return ``A'B + sum_l w_l (A_{t}' B_{t-l} + A_{t-l}' B_{t})``."""
        out = np.matmul(_t(A), B)
        for lag in range(1, min(self.weights.size, A.shape[-2])):
            w = self.weights[lag]
            if w != 0.0:
                out += w * (np.matmul(_t(A[..., lag:, :]), B[..., :-lag, :])
                            + np.matmul(_t(A[..., :-lag, :]), B[..., lag:, :]))
        return out


class ClusterMeat(Meat):
    """``W = sum_c f_c G_c G_c'``: sums within clusters, components added with factors."""

    def __init__(self, components: list[tuple[np.ndarray, float]]) -> None:
        # each component: (integer codes 0..G-1, factor); sorted once for reduceat
        self._parts = []
        for codes, factor in components:
            order = np.argsort(codes, kind="stable")
            starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
            self._parts.append((order, starts, float(factor)))

    def cross(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Return ``sum_c f_c (G_c' A)' (G_c' B)``."""
        out = None
        for order, starts, factor in self._parts:
            Ag = np.add.reduceat(A[..., order, :], starts, axis=-2)
            Bg = Ag if B is A else np.add.reduceat(B[..., order, :], starts, axis=-2)
            term = factor * np.matmul(_t(Ag), Bg)
            out = term if out is None else out + term
        return out


# --------------------------------------------------------------- kernels
def _bartlett(bw: float, nobs: int) -> np.ndarray:
    L = int(bw)
    return 1.0 - np.arange(L + 1) / (L + 1)


def _parzen(bw: float, nobs: int) -> np.ndarray:
    L = int(bw)
    z = np.arange(L + 1) / (L + 1)
    return np.where(z <= 0.5, 1.0 - 6.0 * z**2 + 6.0 * z**3, 2.0 * (1.0 - z) ** 3)


def _quadratic_spectral(bw: float, nobs: int) -> np.ndarray:
    w = np.zeros(nobs)
    w[0] = 1.0
    if bw > 0:
        z = 6.0 * np.pi * (np.arange(1, nobs) / float(bw)) / 5.0
        w[1:] = 3.0 / z**2 * (np.sin(z) / z - np.cos(z))
    return w


def _uniform(bw: float, nobs: int) -> np.ndarray:
    return np.ones(int(bw) + 1)


_KERNELS = {"bartlett": _bartlett, "newey-west": _bartlett, "parzen": _parzen,
            "gallant": _parzen, "qs": _quadratic_spectral,
            "quadratic-spectral": _quadratic_spectral, "andrews": _quadratic_spectral,
            "uniform": _uniform}


def kernel_weights(kernel: str, bandwidth: float, nobs: int) -> np.ndarray:
    """Weights ``w_0 = 1, w_1, ...`` of a HAC kernel (as linearmodels and statsmodels).

    Parameters
    ----------
    kernel : str
        ``"bartlett"`` (``"newey-west"``): ``1 - l / (L + 1)``; ``"parzen"``
        (``"gallant"``); ``"qs"`` (``"quadratic-spectral"``, ``"andrews"``), which uses
        every lag; ``"uniform"``: ones up to lag L.
    bandwidth : float
        ``L`` (statsmodels' ``maxlags``; truncated to an integer except for QS).
    nobs : int
        Number of observations (QS weights for lags up to ``nobs - 1``).

    Returns
    -------
    ndarray
        Weights indexed by lag.
    """
    if not isinstance(kernel, str) or kernel.lower() not in _KERNELS:
        raise ValueError(f"kernel={kernel!r} is not a known HAC kernel; use one of "
                         f"{sorted(_KERNELS)}")
    return _KERNELS[kernel.lower()](bandwidth, nobs)


# ------------------------------------------------------------ conventions
def _flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"cov_kwds {name!r} must be True or False, got {value!r}")
    return bool(value)


def _dof_factor(design, debiased: bool, minus_one: bool = False) -> np.ndarray:
    """Per-equation ``N / (N - p_j)`` (or ``(N - 1) / (N - p_j)``), ones if not debiased."""
    N, p = design.nobs, design.p.astype(float)
    if not debiased:
        return np.ones(design.k_eqs)
    if np.any(p >= N):
        raise ValueError("a small-sample correction needs more observations than "
                         "regressors in every equation")
    return ((N - 1.0) if minus_one else float(N)) / (N - p)


@register_cov_type("HC0", aliases=("robust", "heteroskedastic"))
class HC0Covariance(SandwichCovariance):
    """Heteroskedasticity-robust (White) sandwich from the scores ``X_t' Sigma^{-1} r_t``.

    Parameters
    ----------
    design, Y, record
        The fitted system (see :class:`~.registry.CoefCovEstimator`).
    debiased : bool
        Multiply by ``N / (N - p_j)`` per equation (HC1; linearmodels' ``debiased``).
    """

    note = ("Standard errors are heteroskedasticity-robust (HC0) sandwich standard errors "
            "from the GLS scores; p-values use the normal distribution.")

    def __init__(self, design, Y, record, debiased: bool = False) -> None:
        debiased = _flag("debiased", debiased)
        if debiased:  # linearmodels' "robust" with debiased=True is HC1
            self.name, self.note = "HC1", HC1Covariance.note
        super().__init__(design, Y, record, WhiteMeat(), _dof_factor(design, debiased))


@register_cov_type("HC1")
class HC1Covariance(SandwichCovariance):
    """HC0 times ``N / (N - p_j)`` per equation (statsmodels' HC1 at rank 0).

    Parameters
    ----------
    design, Y, record
        The fitted system (see :class:`~.registry.CoefCovEstimator`).
    """

    note = ("Standard errors are heteroskedasticity-robust (HC1: N/(N-p_j) per equation) "
            "sandwich standard errors from the GLS scores; p-values use the normal "
            "distribution.")

    def __init__(self, design, Y, record) -> None:
        super().__init__(design, Y, record, WhiteMeat(), _dof_factor(design, True))


def _one_of(kwds: dict, names: tuple[str, str], default):
    """The value of one of two synonymous keywords (error when both disagree)."""
    given = {n: kwds[n] for n in names if kwds.get(n) is not None}
    if len(given) == 2 and given[names[0]] != given[names[1]]:
        raise ValueError(f"cov_kwds {names[0]!r} and {names[1]!r} are synonyms; give one")
    return next(iter(given.values())) if given else default


@register_cov_type("HAC", aliases=("kernel",))
class HACCovariance(SandwichCovariance):
    """Heteroskedasticity- and autocorrelation-robust (kernel) sandwich; rows in time order.

    Parameters
    ----------
    design, Y, record
        The fitted system (see :class:`~.registry.CoefCovEstimator`).
    maxlags, bandwidth : int or float
        The kernel's bandwidth L (synonyms: statsmodels' and linearmodels' names);
        required.
    kernel : str
        ``"bartlett"`` (default), ``"parzen"``, ``"qs"`` or ``"uniform"``
        (:func:`kernel_weights`).
    use_correction, debiased : bool
        Multiply by ``N / (N - p_j)`` per equation (synonyms; default False).
    """

    def __init__(self, design, Y, record, maxlags=None, bandwidth=None,
                 kernel: str = "bartlett", use_correction=None, debiased=None) -> None:
        bw = _one_of({"maxlags": maxlags, "bandwidth": bandwidth}, ("maxlags", "bandwidth"),
                     None)
        if bw is None:
            raise ValueError("cov_type='HAC' needs the bandwidth: cov_kwds={'maxlags': L} "
                             "(or 'bandwidth')")
        if not np.isscalar(bw) or not np.isfinite(bw) or bw < 0:
            raise ValueError(f"the HAC bandwidth must be a non-negative number, got {bw!r}")
        corr = _flag("use_correction", _one_of(
            {"use_correction": use_correction, "debiased": debiased},
            ("use_correction", "debiased"), False))
        weights = kernel_weights(kernel, bw, design.nobs)
        self.kernel, self.bandwidth = kernel.lower(), bw
        self.note = (f"Standard errors are HAC sandwich standard errors ({self.kernel} kernel, "
                     f"bandwidth {bw:g}{', N/(N-p_j) correction' if corr else ''}) from the "
                     "GLS scores, rows in time order; p-values use the normal distribution.")
        super().__init__(design, Y, record, KernelMeat(weights), _dof_factor(design, corr))


def _cluster_codes(groups, nobs: int) -> list[np.ndarray]:
    """One or two columns of group labels as integer codes (length N each)."""
    if isinstance(groups, pd.DataFrame):
        cols = [groups.iloc[:, i].to_numpy() for i in range(groups.shape[1])]
    else:
        arr = np.asarray(groups)
        if arr.ndim == 1:
            cols = [arr]
        elif arr.ndim == 2:
            cols = [arr[:, i] for i in range(arr.shape[1])]
        else:
            raise ValueError("cov_kwds 'groups' must have one or two columns")
    if not 1 <= len(cols) <= 2:
        raise ValueError(f"cov_kwds 'groups' must have one or two columns, got {len(cols)}")
    codes = []
    for i, col in enumerate(cols):
        if col.shape[0] != nobs:
            raise ValueError(f"cov_kwds 'groups' column {i} has {col.shape[0]} rows; the model "
                             f"has {nobs} observations (after dropping rows with missing values)")
        c, uniques = pd.factorize(col)
        if np.any(c < 0):
            raise ValueError(f"cov_kwds 'groups' column {i} has missing values")
        if uniques.size < 2:
            raise ValueError(f"cov_kwds 'groups' column {i} has one group; clustering "
                             "needs at least two")
        codes.append(c)
    if len(codes) == 2:
        codes.append(pd.factorize(codes[0] * (codes[1].max() + 1) + codes[1])[0])
    return codes


@register_cov_type("cluster", aliases=("clustered",))
class ClusterCovariance(SandwichCovariance):
    """Cluster-robust sandwich, one- or two-way (Cameron, Gelbach and Miller 2011).

    Parameters
    ----------
    design, Y, record
        The fitted system (see :class:`~.registry.CoefCovEstimator`).
    groups, clusters : array_like
        Group labels, length N, one or two columns (synonyms: statsmodels' and
        linearmodels' names). Two-way is ``V_A + V_B - V_AB``.
    use_correction : bool
        statsmodels' correction (the default): ``G / (G - 1) (N - 1) / (N - p_j)``.
    debiased, group_debias : bool
        linearmodels' corrections, ``N / (N - p_j)`` and ``G / (G - 1) (N - 1) / N``;
        giving either selects linearmodels' convention (the other then defaults to
        False). Not together with ``use_correction``.
    df_correction : bool, optional
        statsmodels' option: with ``use_t``, t and F references with ``G - 1`` degrees
        of freedom (the smaller G of two ways) instead of the system's residual df.
        Default True, except with linearmodels' keywords (linearmodels uses the
        residual df).

    Attributes
    ----------
    df_inference : int or None
        ``G - 1`` when ``df_correction`` applies (read by the results under ``use_t``).
    """

    def __init__(self, design, Y, record, groups=None, clusters=None, use_correction=None,
                 debiased=None, group_debias=None, df_correction=None) -> None:
        if groups is not None and clusters is not None:
            raise ValueError("cov_kwds 'groups' and 'clusters' are synonyms; give one")
        labels = groups if groups is not None else clusters
        if labels is None:
            raise ValueError("cov_type='cluster' needs cov_kwds={'groups': labels}")
        codes = _cluster_codes(labels, design.nobs)
        lm = debiased is not None or group_debias is not None
        if lm and use_correction is not None:
            raise ValueError("give statsmodels' use_correction or linearmodels' debiased / "
                             "group_debias, not both")
        N = float(design.nobs)
        if lm:
            eq = _dof_factor(design, _flag("debiased", bool(debiased)))
            gd = _flag("group_debias", bool(group_debias))
            conv = "debiased" * bool(debiased) + " group_debias" * gd
        else:
            corr = _flag("use_correction", True if use_correction is None else use_correction)
            eq, gd = _dof_factor(design, corr, minus_one=True), corr
            conv = "G/(G-1) (N-1)/(N-p_j)" if corr else ""
        n_groups = [int(c.max()) + 1 for c in codes]
        adjust = _flag("df_correction", not lm if df_correction is None else df_correction)
        self.df_inference = min(n_groups[:2]) - 1 if adjust else None
        factors = [(G / (G - 1.0)) * ((N - 1.0) / N if lm else 1.0) if gd else 1.0
                   for G in n_groups]
        signs = [1.0, 1.0, -1.0]
        meat = ClusterMeat([(c, s * f) for c, s, f in zip(codes, signs, factors)])
        self.n_groups = n_groups[:2]
        way = "two-way" if len(codes) == 3 else "one-way"
        self.note = (f"Standard errors are {way} cluster-robust sandwich standard errors "
                     f"({' and '.join(map(str, self.n_groups))} groups"
                     f"{', ' + conv.strip() if conv.strip() else ''}) from the GLS scores; "
                     "p-values use the normal distribution.")
        super().__init__(design, Y, record, meat, eq)
