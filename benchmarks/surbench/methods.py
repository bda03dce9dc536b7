"""The fitters under test: the method table and one adapter per package.

``compare_sur.py`` runs the :data:`METHODS` table through :func:`fitter` (each adapter
returns a :class:`FitOutput`); ``core_scaling.py`` runs :func:`lowrank_arrays_fitter`
and :func:`alsgls_fitter` (each returns an :class:`Outcome`). Both scripts call alsgls
through the one adapter :func:`fit_alsgls`. The packages are imported inside the
adapters, so a worker imports only the one it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: linearmodels' default iteration cap for iterated GLS.
LM_ITER_LIMIT = 100


@dataclass(frozen=True)
class Method:
    """A fitter under test.

    Attributes
    ----------
    name : str
        Identifier used in records, tables and ``--methods``.
    package : str
        Distribution that provides it.
    kind : str
        Which adapter runs it (``"lowrank_sur"``, ``"linearmodels"``,
        ``"statsmodels"``, ``"alsgls"``).
    options : dict
        Keyword arguments for the adapter.
    time_exponent : float
        Growth of the run time in K at fixed N, p, k (used to skip runs that would
        exceed the time cap).
    description : str
        One line for the report.
    """

    name: str
    package: str
    kind: str
    options: dict = field(default_factory=dict)
    time_exponent: float = 1.0
    description: str = ""


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "lowrank_sur-als", "lowrank_sur", "lowrank_sur", {"method": "als"}, 1.0,
            "LowRankSUR.fit(method='als'), to convergence",
        ),
        Method(
            "lowrank_sur-em", "lowrank_sur", "lowrank_sur", {"method": "em"}, 3.0,
            "LowRankSUR.fit(method='em'), SQUAREM EM, to convergence",
        ),
        Method(
            "lowrank_sur-als-6", "lowrank_sur", "lowrank_sur",
            {"method": "als", "maxiter": 6}, 1.0,
            "LowRankSUR.fit(method='als', maxiter=6): 6 sweeps as in the seed",
        ),
        Method(
            "lowrank_sur-em-45", "lowrank_sur", "lowrank_sur",
            {"method": "em", "maxiter": 45, "accelerate": False}, 3.0,
            "LowRankSUR.fit(method='em', maxiter=45, accelerate=False): textbook EM, "
            "45 iterations as in the seed",
        ),
        Method(
            "linearmodels-gls", "linearmodels", "linearmodels", {"iterate": False}, 2.0,
            "linearmodels SUR.fit(method='gls'): two-step FGLS",
        ),
        Method(
            "linearmodels-igls", "linearmodels", "linearmodels", {"iterate": True}, 2.0,
            "linearmodels SUR.fit(method='gls', iterate=True): iterated FGLS",
        ),
        Method(
            "statsmodels-gls", "statsmodels", "statsmodels", {}, 3.0,
            "OLS per equation, then sm.GLS on the stacked system with kron(Sigma_hat, I_N)",
        ),
        Method(
            "alsgls", "alsgls", "alsgls", {}, 1.0,
            "alsgls.als_gls(Xs, Y, k) with its defaults (lam_B=1e-3, sweeps<=8)",
        ),
    )
}

#: The methods run by default (and by the quick and scale presets).
DEFAULT_METHODS = (
    "lowrank_sur-als",
    "lowrank_sur-em",
    "linearmodels-gls",
    "linearmodels-igls",
    "statsmodels-gls",
    "alsgls",
)


def projected_bytes(method: str, nobs: int, k_eqs: int, n_exog: int, rank: int) -> float:
    """Projected peak memory of one fit above the child's baseline, in bytes.

    Parameters
    ----------
    method : str
        Method name (a key of :data:`METHODS`).
    nobs, k_eqs, n_exog, rank : int
        N, K, p (per equation) and k.

    Returns
    -------
    float
        Bytes. The leading terms are the arrays each method is known to build
        (8-byte floats, ``P = K p``); the factors in front come from peak-RSS
        measurements with ``compare_sur.py`` (N=300, p=3, one BLAS thread) and are
        rounded up:

        * ``statsmodels-gls``: the NK x NK ``sigma``, its inverse and its Cholesky
          factor, not all alive at once: ``2.2 (NK)^2`` doubles (measured 2.07, 3.7 GB,
          at K = 50; asking for ``res.llf`` as well would add an LU copy for the
          log-determinant, 3.0);
        * ``linearmodels-*``: the dense NK x P blocked products that ``fit`` builds
          after the GLS loop (``blocked_diag_product`` of the weighted and the plain
          regressors) and a ``vstack`` copy: ``3.2 N K P`` doubles (measured 3.0 at
          K = 100, 200), plus ``4 P^2`` for ``X' Sigma^-1 X`` and its pieces;
        * ``lowrank_sur-em*``: the P x P normal matrix of the dense GLS step and its
          pieces, ``3 P^2``, plus ``2 K^2`` for Sigma and its inverse, plus the
          O(N K (p + k)) terms of the ALS line;
        * ``lowrank_sur-als*`` and ``alsgls``: a few copies of the N x K x p design
          and the N x K residuals, ``6 N K (p + k + 1)`` doubles plus 32 MB (measured
          below that: about 71 MB and 16 MB at K = 500).
    """
    n, K, p, k = nobs, k_eqs, n_exog, rank
    P = K * p
    design = 8.0 * n * K * (p + k + 1)
    kind = METHODS[method].kind
    if kind == "statsmodels":
        return 2.2 * 8.0 * (n * K) ** 2 + 4.0 * design
    if kind == "linearmodels":
        return 3.2 * 8.0 * n * K * P + 4.0 * 8.0 * P * P + 4.0 * design
    if method.startswith("lowrank_sur-em"):
        return 3.0 * 8.0 * P * P + 2.0 * 8.0 * K * K + 6.0 * design + 32e6
    return 6.0 * design + 32e6


# ====================================================================== alsgls
@dataclass
class AlsglsFit:
    """What ``alsgls.als_gls`` returned, unpacked."""

    coefs: list[np.ndarray]
    F: np.ndarray
    D: np.ndarray
    sweeps: int
    converged: bool
    native_llf: float
    mem_mb_est: float
    info: dict


def fit_alsgls(Xs, Y, rank, **options) -> AlsglsFit:
    """Fit with ``alsgls.als_gls(Xs, Y, rank, **options)`` (its defaults unless given).

    ``sweeps`` counts the entries of ``info["nll_trace"]`` after the first (the final
    beta refresh is not counted); ``converged`` means fewer sweeps than the cap or a
    last relative NLL change below ``rel_tol``; ``native_llf`` is ``-N`` times the
    last per-row NLL of the trace.
    """
    from alsgls import als_gls

    # alsgls 2.2: als_gls(Xs, Y, k, lam_B=1e-3, sweeps=8, d_floor=1e-8, cg_maxit=800,
    # cg_tol=3e-7, *, rel_tol=1e-6, init_D=None)
    # -> (B list of (p_j, 1) arrays, F (K, k), D (K,), mem_MB_est, info)
    B, F, D, mem_est, info = als_gls(Xs, Y, rank, **options)
    trace = [float(v) for v in info["nll_trace"]]
    sweeps = len(trace) - 1
    last = (trace[-2] - trace[-1]) / max(1.0, abs(trace[-2])) if len(trace) > 1 else 0.0
    converged = sweeps < options.get("sweeps", 8) or last < options.get("rel_tol", 1e-6)
    return AlsglsFit(
        coefs=[np.asarray(b, dtype=float).ravel() for b in B],
        F=np.asarray(F, dtype=float),
        D=np.asarray(D, dtype=float),
        sweeps=sweeps,
        converged=bool(converged),
        native_llf=-Y.shape[0] * trace[-1],
        mem_mb_est=float(mem_est),
        info=info,
    )


def alsgls_import_error() -> str:
    """Why ``from alsgls import als_gls`` fails here ("" when it works)."""
    try:
        from alsgls import als_gls  # noqa: F401
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


# ====================================================== compare_sur adapters
@dataclass
class FitOutput:
    """Estimates of one fit on a common footing (built inside the child)."""

    params: np.ndarray
    sigma_kind: str  # "lowrank" or "dense"
    sigma: tuple
    se: np.ndarray | None
    llf_native: float | None
    iterations: int | None
    converged: bool | None
    extra: dict = field(default_factory=dict)


def _fit_lowrank_sur(Xs, Y, rank, mark, **options) -> FitOutput:
    from lowrank_sur import LowRankSUR

    model = LowRankSUR({f"y{j}": (Y[:, j], X) for j, X in enumerate(Xs)})
    mark("build")
    res = model.fit(rank=rank, **options)
    mark("fit")
    se = np.asarray(res.bse, dtype=float)
    mark("se")
    cov = res.error_cov
    return FitOutput(
        params=np.asarray(res.params, dtype=float),
        sigma_kind="lowrank",
        sigma=(cov.F, cov.D),
        se=se,
        llf_native=float(res.llf),
        iterations=int(res.iterations),
        converged=bool(res.converged),
        extra={"heywood": len(res.heywood)},
    )


def _fit_linearmodels(Xs, Y, rank, mark, *, iterate: bool) -> FitOutput:
    from linearmodels.system import SUR

    model = SUR({f"y{j}": (Y[:, j], X) for j, X in enumerate(Xs)})
    mark("build")
    # the standard errors are computed inside fit()
    res = model.fit(method="gls", iterate=iterate, cov_type="unadjusted")
    se = np.asarray(res.std_errors, dtype=float)
    mark("fit")
    iters = int(res.iterations)
    return FitOutput(
        params=np.asarray(res.params, dtype=float),
        sigma_kind="dense",
        sigma=(np.asarray(res.sigma, dtype=float),),
        se=se,
        llf_native=None,
        iterations=iters,
        converged=(iters < LM_ITER_LIMIT) if iterate else None,
    )


def _fit_statsmodels(Xs, Y, rank, mark) -> FitOutput:
    import statsmodels.api as sm
    from scipy.linalg import block_diag

    n = Y.shape[0]
    resid = np.column_stack([sm.OLS(Y[:, j], X).fit().resid for j, X in enumerate(Xs)])
    sigma_hat = resid.T @ resid / n
    y = Y.T.ravel()  # equation-major stacking: y_1, ..., y_K
    X = block_diag(*Xs)  # NK x P
    # GLS.__init__ inverts the NK x NK sigma and takes its Cholesky factor
    model = sm.GLS(y, X, sigma=np.kron(sigma_hat, np.eye(n)))
    mark("build")
    res = model.fit()
    mark("fit")
    se = np.asarray(res.bse, dtype=float)
    mark("se")
    return FitOutput(
        params=np.asarray(res.params, dtype=float),
        sigma_kind="dense",
        sigma=(sigma_hat,),
        se=se,
        # res.llf is not asked for: statsmodels computes it with a log-determinant of
        # the NK x NK sigma, which costs about as much as the fit itself
        llf_native=None,
        iterations=None,
        converged=None,
    )


def _fit_alsgls(Xs, Y, rank, mark) -> FitOutput:
    fit = fit_alsgls(Xs, Y, rank)
    mark("fit")
    return FitOutput(
        params=np.concatenate(fit.coefs),
        sigma_kind="lowrank",
        sigma=(fit.F, fit.D),
        se=None,
        llf_native=fit.native_llf,
        iterations=fit.sweeps,
        converged=fit.converged,
        extra={"alsgls_mem_mb_est": fit.mem_mb_est},
    )


def fitter(method: Method):
    """Return ``fit(Xs, Y, rank, mark) -> FitOutput`` for a method."""
    if method.kind == "lowrank_sur":
        return lambda Xs, Y, rank, mark: _fit_lowrank_sur(Xs, Y, rank, mark, **method.options)
    if method.kind == "linearmodels":
        return lambda Xs, Y, rank, mark: _fit_linearmodels(Xs, Y, rank, mark, **method.options)
    if method.kind == "statsmodels":
        return _fit_statsmodels
    if method.kind == "alsgls":
        return _fit_alsgls
    raise ValueError(f"unknown method kind {method.kind!r}")


# ===================================================== core_scaling adapters
@dataclass
class Outcome:
    """What one fit returned, on a common footing (``core_scaling``)."""

    coefs: list[np.ndarray]
    F: np.ndarray
    D: np.ndarray
    sweeps: int
    converged: bool
    inner: str
    native_llf: float


def lowrank_inner(method: str, rec) -> str:
    """The inner work of a :func:`lowrank_sur.fit_arrays` record, as a table cell."""
    if method == "als":
        return f"cg={rec.cg_iterations} fa={rec.evaluations}"
    return f"maps={rec.evaluations}"


def lowrank_arrays_fitter(method: str, **options) -> Callable[[list, np.ndarray, int], Outcome]:
    """``fit(Xs, Y, rank) -> Outcome`` running :func:`lowrank_sur.fit_arrays`."""
    from lowrank_sur import fit_arrays

    def run(Xs, Y, rank):
        rec = fit_arrays(Xs, Y, rank, method=method, **options)
        inner = lowrank_inner(method, rec)
        return Outcome(rec.coefs, rec.F, rec.D, rec.iterations, rec.converged, inner, rec.llf)

    return run


def alsgls_fitter(**options) -> Callable[[list, np.ndarray, int], Outcome]:
    """``fit(Xs, Y, rank) -> Outcome`` running :func:`fit_alsgls` with ``options``."""

    def run(Xs, Y, rank):
        fit = fit_alsgls(Xs, Y, rank, **options)
        info = fit.info
        inner = f"lbfgs={sum(info['sigma_iters'])} cg_last={info['cg']['iterations']}"
        return Outcome(fit.coefs, fit.F, fit.D, fit.sweeps, fit.converged, inner,
                       fit.native_llf)

    return run
