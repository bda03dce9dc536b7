"""Compare SUR estimators on simulated systems with a known truth.

Which tool should fit a system of K seemingly unrelated regressions? This script
simulates SUR systems with equation-specific regressors and error covariance
``Sigma = F F' + diag(D)`` (plus an independent held-out sample from the same
model) over a grid of (K, N, p, k, replication), fits each system with every
method below, each (method, problem) in a fresh subprocess, and reports time, peak
memory and accuracy.

Methods
-------
``lowrank_sur-als``
    ``LowRankSUR(...).fit(rank=k, method="als")`` with default tolerances (to
    convergence); matrix-free, O(N K k) memory.
``lowrank_sur-em``
    the same with ``method="em"`` (the dense EM reference, SQUAREM-accelerated; to
    convergence); O(K^2 + P^2) memory.
``lowrank_sur-als-6`` and ``lowrank_sur-em-45`` (``--preset seed`` only)
    the alsgls seed pages' protocol: ALS stopped after 6 sweeps (``maxiter=6``) and
    textbook EM stopped after 45 iterations (``maxiter=45, accelerate=False``).
``linearmodels-gls``
    ``linearmodels.system.SUR(eqs).fit(method="gls", cov_type="unadjusted")``:
    two-step feasible GLS, Sigma-hat from the OLS residuals.
``linearmodels-igls``
    the same with ``iterate=True`` (iterated FGLS, which converges to the Gaussian
    MLE with an unrestricted Sigma; linearmodels' defaults ``tol=1e-6``,
    ``iter_limit=100``).
``statsmodels-gls``
    statsmodels has no SUR class; this is what a statsmodels user writes: OLS per
    equation, ``Sigma_hat = R'R / N`` from the OLS residuals, then
    ``sm.GLS(y_stacked, block_diag(*Xs), sigma=np.kron(Sigma_hat, np.eye(N))).fit()``
    on the equation-major stacked system (NK x P regressors, an NK x NK ``sigma``:
    O((NK)^2) memory, O((NK)^3) time).
``alsgls``
    ``alsgls.als_gls(Xs, Y, k)`` (alsgls 2.2) with its defaults (relative ridge
    ``lam_B=1e-3``, at most 8 sweeps), run with the interpreter given by
    ``--alsgls-python`` (default: this one). Its rows read "skipped: not installed"
    when ``import alsgls`` fails there.

Linearmodels uses ``cov_type="unadjusted"`` (classical GLS standard errors, like the
other methods; its default "robust" type needs still more memory). The low-rank
methods get the true rank k; the classic methods estimate an unrestricted Sigma.

Measurement (one subprocess per (method, problem))
--------------------------------------------------
The parent simulates each problem once (:func:`lowrank_sur.simulate_sur`) and
saves it to a temporary ``.npz`` file; every child loads the same file (the record's
``data_checksum`` proves it). A child imports its package, runs an untimed warm-up
fit on a 30 x 3 toy system (so that lazy imports and BLAS thread start-up are not
charged to the fit), loads the data, runs ``gc.collect()`` and then:

``time_s``
    wall time (:func:`time.perf_counter`) of what a user waits for to get a
    coefficient table: building the model object, fitting, and computing the
    standard errors (``.bse`` / ``.std_errors``; alsgls has none).
    ``time_build_s``, ``time_fit_s`` and ``time_se_s`` split it into these phases
    where the package allows (linearmodels computes its standard errors inside
    ``fit``; statsmodels' ``GLS(...)`` constructor already inverts and factors the
    NK x NK ``sigma``, so for it "build" is the expensive phase).
``peak_rss_mb``
    the process's peak resident set size during that timed run above its resident
    size just before it. On Linux the kernel's high-water mark is reset first
    (``echo 5 > /proc/self/clear_refs``), so the peak is ``VmHWM`` after the run
    minus ``VmRSS`` before it (``rss_method="vmhwm-reset"``). Elsewhere it is
    ``ru_maxrss`` (:func:`resource.getrusage`) after the run minus the resident
    size before it, which over-states the fit's peak when the process had been
    larger before (``rss_method="ru_maxrss"``). RSS counts everything: NumPy
    buffers, BLAS/LAPACK workspaces, Python objects, allocator slack. Small values
    (a few MB) are at the allocator's granularity and noisy.
``tracemalloc_mb``
    the peak of :mod:`tracemalloc`-traced memory (Python objects and NumPy array
    buffers, not BLAS internals) above the traced memory at the start, measured in
    a *second, separate* run of the same fit in the same child after the timed
    run (tracemalloc slows allocation-heavy Python code, so it never overlaps the
    timed run). Skipped (``null``, see ``tracemalloc_note``) when the timed run
    took longer than ``--trace-max-seconds``. ``tracemalloc_phase_mb`` splits it:
    for each phase (build, fit, se) the traced peak above the traced memory at the
    phase's start; its "fit" entry is the fitting algorithm's own working memory,
    which is what the seed pages' EM/ALS memory claim is about.

Caps: each child gets an address-space limit (``resource.setrlimit(RLIMIT_AS)``)
of its virtual size before the timed run plus ``--mem-cap-gb`` (default 8 GB;
note this caps *virtual* memory, which is at least the resident memory). Before a
child starts, the parent projects the fit's memory from the method's known growth
(:func:`projected_bytes`; factors measured on this machine, see there) and records
``"skipped: needs ~X GB ..."`` when the projection exceeds the cap or the memory
available right now. A child is killed after ``--time-cap`` seconds of fitting
(plus a start-up allowance) and recorded as ``"timeout"``; a method that timed out
or ran out of memory at some K is skipped at larger K of the same (N, p, k), and
a method is skipped at K when its time at a smaller K, scaled by K^alpha (alpha: 1
for the matrix-free fitters, 2 for linearmodels, 3 for EM and statsmodels),
projects past the time cap. Failures are recorded as ``"failed: <error>"``; a run
that takes longer than ``--slow-seconds`` is repeated for at most ``--slow-reps``
replications at that K (the others read "skipped: slow ...").

Metrics (computed by the parent from each child's estimates)
------------------------------------------------------------
``beta_rmse``
    root mean squared error of all P coefficients against the truth.
``oos_nll_per_obs``
    ``-loglike / n_test`` of the held-out residuals ``Y_test - X_test beta_hat``
    under the method's own Sigma-hat: :meth:`LowRankCovariance.loglike` for the
    low-rank methods, a dense Cholesky log-density for linearmodels (its
    ``results.sigma``) and statsmodels (the OLS-residual Sigma-hat). A dense
    Sigma-hat whose smallest eigenvalue is below ``K * eps * largest`` is
    singular (always when K >= N: it has rank at most N); its NLL is recorded as
    ``inf`` and a note says so. ``oracle_oos_nll_per_obs`` is the same under the
    true beta and Sigma.
``llf``
    in-sample Gaussian log-likelihood at (beta_hat, Sigma_hat) with the same code
    (``-inf`` for a singular Sigma-hat); for the ML fitters it is their maximized
    log-likelihood. ``llf_native`` is what the package itself reports
    (lowrank_sur, alsgls; linearmodels reports none, and statsmodels' GLS ``llf``,
    which has another definition, would cost an NK x NK log-determinant, so it is
    not requested).
``nan_se``
    number of NaN standard errors (``results.bse`` / ``res.std_errors`` /
    ``res.bse``; ``"n/a"`` for alsgls, which reports none).
``iterations``, ``converged``
    sweeps / EM cycles / FGLS iterations, and whether the package's stopping rule
    was met (linearmodels: fewer than ``iter_limit`` iterations).

Memory is in decimal units (1 MB = 10^6 bytes, 1 GB = 10^9 bytes). Non-finite
numbers are written to the JSON as the strings ``"inf"``, ``"-inf"`` and ``"nan"``
(``float()`` reads them back).

Outputs (``--output-dir``)
--------------------------
``compare_sur.json``
    every run (one record per (method, problem)) plus the machine (platform, CPU
    count, total RAM, load) and package versions; rewritten after each problem.
``compare_sur.md``
    medians over replications, one row per (K, method), notes, and for the seed
    preset the measured EM/ALS peak-memory ratios next to the seed's claims.
``compare_sur_time.png``, ``compare_sur_memory.png``, ``compare_sur_beta_rmse.png``
    time, peak RSS and beta RMSE against K, one line per method.

Examples
--------
::

    python benchmarks/compare_sur.py --preset quick --output-dir /tmp/q
    python benchmarks/compare_sur.py --preset seed --output-dir out/seed \\
        --alsgls-python /path/to/venv-with-alsgls/bin/python
    python benchmarks/compare_sur.py --preset scale --output-dir out/scale
    python benchmarks/compare_sur.py --ks 20 40 --nobs 100 --reps 3 \\
        --methods lowrank_sur-als linearmodels-igls --output-dir out/custom
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:  # optional: better RSS / RAM readings where /proc is absent
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None

SCRIPT = Path(__file__).resolve()
GB = 1e9  # decimal units throughout: 1 GB = 10^9 bytes, 1 MB = 10^6 bytes
MB = 1e6

#: The alsgls seed pages' claimed EM/ALS memory ratios (N=300, p=3, rank 3).
SEED_CLAIMS = {50: 10.0, 80: 17.0, 120: 29.0}

#: linearmodels' default iteration cap for iterated GLS.
LM_ITER_LIMIT = 100

#: Seconds a child may spend on imports, warm-up, loading and writing its output
#: (on top of ``--time-cap`` for the timed fit and the traced run's allowance).
STARTUP_ALLOWANCE = 120.0


# ======================================================================= methods
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

DEFAULT_METHODS = (
    "lowrank_sur-als",
    "lowrank_sur-em",
    "linearmodels-gls",
    "linearmodels-igls",
    "statsmodels-gls",
    "alsgls",
)

PRESETS: dict[str, dict] = {
    "quick": {
        "nobs": 60,
        "ks": [6, 12],
        "n_exog": 2,
        "rank": 2,
        "reps": 1,
        "n_test": 100,
        "methods": list(DEFAULT_METHODS),
        "time_cap": 60.0,
        "jobs": 2,
    },
    "seed": {
        "nobs": 300,
        "ks": [50, 80, 120],
        "n_exog": 3,
        "rank": 3,
        "reps": 6,
        "n_test": 300,
        "methods": [
            "lowrank_sur-als",
            "lowrank_sur-em",
            "lowrank_sur-als-6",
            "lowrank_sur-em-45",
            "linearmodels-gls",
            "linearmodels-igls",
            "statsmodels-gls",
            "alsgls",
        ],
        "time_cap": 600.0,
    },
    "scale": {
        "nobs": 300,
        "ks": [50, 200, 500, 1000, 2000, 5000],
        "n_exog": 3,
        "rank": 4,
        "reps": 1,
        "n_test": 300,
        "methods": list(DEFAULT_METHODS),
        "time_cap": 300.0,
    },
}


#: Settings of a custom grid (no ``--preset``); ``--ks`` is required.
CUSTOM_DEFAULTS: dict = {
    "nobs": 300,
    "n_exog": 3,
    "rank": 3,
    "reps": 1,
    "n_test": 300,
    "methods": list(DEFAULT_METHODS),
    "time_cap": 300.0,
    "jobs": 1,
}


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
        measurements with this script (N=300, p=3, one BLAS thread) and are
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


# ============================================================ measuring (child)
def _status_value(key: str) -> int | None:
    """Read ``key`` (kB) from /proc/self/status, in bytes; None if unavailable."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _rss_bytes() -> int | None:
    """Current resident set size of this process."""
    if psutil is not None:
        return int(psutil.Process().memory_info().rss)
    return _status_value("VmRSS")


def _vms_bytes() -> int | None:
    """Current virtual size (address space) of this process."""
    if psutil is not None:
        return int(psutil.Process().memory_info().vms)
    return _status_value("VmSize")


def _ru_maxrss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(v) if sys.platform == "darwin" else int(v) * 1024


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return _status_value("VmHWM") is not None


def _set_address_space_cap(cap_bytes: float) -> str:
    """Limit the address space to the current virtual size plus ``cap_bytes``."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return "not enforced (no resource module)"
    vms = _vms_bytes()
    if vms is None:
        return "not enforced (virtual size unknown)"
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = int(vms + cap_bytes)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError) as exc:  # pragma: no cover - platform dependent
        return f"not enforced ({exc})"
    return f"RLIMIT_AS = {limit / GB:.2f} GB (virtual size {vms / GB:.2f} GB + cap)"


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


class Phases:
    """Marks the end of each phase of a fit (build, fit, se): wall time and traced peak.

    Parameters
    ----------
    trace : bool
        Also record, per phase, the :mod:`tracemalloc` peak above the traced memory
        at the phase's start (tracemalloc must be running).
    """

    def __init__(self, trace: bool = False) -> None:
        self.trace = trace
        self.times: dict[str, float] = {}
        self.peaks_mb: dict[str, float] = {}
        self.overall_bytes = 0
        self._t = time.perf_counter()
        if trace:
            self._start = self._mem = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()

    def __call__(self, name: str) -> None:
        """End phase ``name``."""
        now = time.perf_counter()
        self.times[name] = now - self._t
        self._t = now
        if self.trace:
            cur, peak = tracemalloc.get_traced_memory()
            self.peaks_mb[name] = (peak - self._mem) / MB
            self.overall_bytes = max(self.overall_bytes, peak - self._start)
            tracemalloc.reset_peak()
            self._mem = cur


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
    from alsgls import als_gls

    # alsgls 2.2: als_gls(Xs, Y, k, lam_B=1e-3, sweeps=8, d_floor=1e-8, cg_maxit=800,
    # cg_tol=3e-7, *, rel_tol=1e-6) -> (B list of (p_j, 1), F, D, mem_MB_est, info)
    B, F, D, mem_est, info = als_gls(Xs, Y, rank)
    mark("fit")
    trace = [float(v) for v in info["nll_trace"]]
    sweeps = len(trace) - 1
    last = (trace[-2] - trace[-1]) / max(1.0, abs(trace[-2])) if sweeps else 0.0
    return FitOutput(
        params=np.concatenate([np.ravel(b) for b in B]).astype(float),
        sigma_kind="lowrank",
        sigma=(np.asarray(F, dtype=float), np.asarray(D, dtype=float)),
        se=None,
        llf_native=-Y.shape[0] * trace[-1],
        iterations=sweeps,
        converged=bool(sweeps < 8 or last < 1e-6),
        extra={"alsgls_mem_mb_est": float(mem_est)},
    )


def _fitter(method: Method):
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


def _error_text(exc: BaseException, limit: int = 300) -> str:
    msg = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_worker(spec: dict) -> dict:
    """Run one (method, problem) inside this (child) process and measure it.

    Parameters
    ----------
    spec : dict
        ``method``, ``data_path`` (the problem's ``.npz``), ``rank``,
        ``mem_cap_bytes``, ``tracemalloc`` (bool), ``trace_max_seconds`` and
        ``out_path`` (where the estimates are saved as ``.npz``).

    Returns
    -------
    dict
        Measurements and status; the estimates go to ``spec["out_path"]``.
    """
    method = METHODS[spec["method"]]
    fit = _fitter(method)
    out: dict = {"status": "ok", "warnings": [], "notes": []}

    # warm-up on a toy system: imports, lazy modules, BLAS threads
    rng = np.random.default_rng(12345)
    p = int(spec["n_exog"])
    toy_X = [np.column_stack([np.ones(30), rng.normal(size=(30, p - 1))]) for _ in range(3)]
    toy_Y = rng.normal(size=(30, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(toy_X, toy_Y, 1, Phases())

    with np.load(spec["data_path"]) as data:
        X3, Y = data["X"], data["Y"]
    Xs = [X3[j] for j in range(X3.shape[0])]
    out["data_checksum"] = float(np.sum(Y))
    rank = int(spec["rank"])
    del toy_X, toy_Y
    gc.collect()

    rss0 = _rss_bytes()
    reset = _reset_hwm()
    hwm0 = _ru_maxrss_bytes()
    out["rss_baseline_mb"] = None if rss0 is None else rss0 / MB
    out["mem_cap"] = _set_address_space_cap(float(spec["mem_cap_bytes"]))

    result = None
    mark = Phases()
    Path(spec["progress_path"]).write_text("fitting", encoding="ascii")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        try:
            result = fit(Xs, Y, rank, mark)
        except MemoryError as exc:
            out["status"] = (
                f"failed: MemoryError (address-space cap {spec['mem_cap_bytes'] / GB:.1f} GB"
                f" over baseline) {_error_text(exc, 120)}"
            ).rstrip()
        except Exception as exc:  # noqa: BLE001 - any failure is a result
            out["status"] = f"failed: {_error_text(exc)}"
        elapsed = time.perf_counter() - t0
    out["time_s"] = elapsed
    Path(spec["progress_path"]).write_text("fitted", encoding="ascii")
    if reset:
        peak = _status_value("VmHWM")
        out["rss_method"] = "vmhwm-reset"
    else:
        peak = _ru_maxrss_bytes()
        out["rss_method"] = "ru_maxrss"
        if peak is not None and hwm0 is not None and peak <= hwm0:
            out["notes"].append("peak RSS is an upper bound (pre-fit high-water mark)")
    out["peak_rss_mb"] = (
        None if (peak is None or rss0 is None) else max(peak - rss0, 0) / MB
    )
    seen = []
    for w in caught:
        text = f"{w.category.__name__}: {' '.join(str(w.message).split())[:160]}"
        if text not in seen:
            seen.append(text)
    out["warnings"] = seen[:10]
    if result is None:
        return out

    out.update(
        time_build_s=mark.times.get("build"),
        time_fit_s=mark.times.get("fit"),
        time_se_s=mark.times.get("se"),
        llf_native=result.llf_native,
        iterations=result.iterations,
        converged=result.converged,
        n_params=int(result.params.size),
        nan_se="n/a" if result.se is None else int(np.sum(np.isnan(result.se))),
        extra=result.extra,
    )
    arrays = {"params": result.params, "kind": np.array(result.sigma_kind)}
    if result.sigma_kind == "lowrank":
        arrays["F"], arrays["D"] = result.sigma
    else:
        arrays["S"] = result.sigma[0]
    np.savez(spec["out_path"], **arrays)
    result = None
    gc.collect()

    # second, separate run under tracemalloc
    out["tracemalloc_mb"] = None
    if not spec.get("tracemalloc", True):
        out["tracemalloc_note"] = "disabled (--no-tracemalloc)"
    elif elapsed > spec["trace_max_seconds"]:
        out["tracemalloc_note"] = (
            f"not traced: the timed run took {elapsed:.0f} s > --trace-max-seconds "
            f"{spec['trace_max_seconds']:g}"
        )
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tracemalloc.start()
            try:
                traced = Phases(trace=True)
                fit(Xs, Y, rank, traced)
                out["tracemalloc_mb"] = traced.overall_bytes / MB
                out["tracemalloc_phase_mb"] = traced.peaks_mb
                out["tracemalloc_note"] = "separate traced run"
            except Exception as exc:  # noqa: BLE001
                out["tracemalloc_note"] = f"traced run failed: {_error_text(exc, 120)}"
            finally:
                tracemalloc.stop()
    return out


def _worker_main(spec_text: str) -> int:
    spec = json.loads(spec_text)
    try:
        out = run_worker(spec)
    except BaseException as exc:  # noqa: BLE001 - report instead of a bare traceback
        out = {"status": f"failed: {_error_text(exc)}"}
    with open(spec["result_path"], "w", encoding="utf-8") as fh:
        json.dump(_jsonable(out), fh)
    return 0


# ============================================================== running (parent)
@dataclass
class Problem:
    """One simulated system and where its data file is."""

    nobs: int
    k_eqs: int
    n_exog: int
    rank: int
    rep: int
    seed: int
    n_test: int
    path: Path
    sim: object


def _available_bytes() -> float | None:
    if psutil is not None:
        return float(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024.0
    except OSError:
        pass
    return None


def _total_ram_bytes() -> float | None:
    if psutil is not None:
        return float(psutil.virtual_memory().total)
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return None


def make_problem(nobs, k_eqs, n_exog, rank, rep, n_test, base_seed, workdir) -> Problem:
    """Simulate one system with :func:`lowrank_sur.simulate_sur` and save it for the children.

    Parameters
    ----------
    nobs, k_eqs, n_exog, rank : int
        N, K, p and k.
    rep : int
        Replication number.
    n_test : int
        Size of the held-out sample.
    base_seed : int
        The problem's seed is ``base_seed + 7919 * rep + 31 * k_eqs + nobs``.
    workdir : Path
        Where the ``.npz`` goes.

    Returns
    -------
    Problem
    """
    from lowrank_sur import simulate_sur

    seed = int(base_seed + 7919 * rep + 31 * k_eqs + nobs)
    sim = simulate_sur(nobs, k_eqs, n_exog, rank, n_test=n_test, seed=seed)
    path = Path(workdir) / f"problem_N{nobs}_K{k_eqs}_p{n_exog}_k{rank}_r{rep}.npz"
    np.savez(path, X=np.stack(sim.Xs), Y=sim.Y)
    return Problem(nobs, k_eqs, n_exog, rank, rep, seed, n_test, path, sim)


def _dense_loglike(R: np.ndarray, S: np.ndarray) -> tuple[float, str | None, float]:
    """Gaussian log-likelihood of the rows of R under a dense S; -inf if S is singular.

    Returns the log-likelihood, a note when S is singular (smallest eigenvalue at
    most ``K * eps`` times the largest, or no Cholesky factor), and the smallest
    eigenvalue.
    """
    K = S.shape[0]
    S = (S + S.T) / 2.0
    evals = np.linalg.eigvalsh(S)
    lo, hi = float(evals[0]), float(evals[-1])
    singular = f"Sigma-hat singular (smallest eigenvalue {lo:.1e}, largest {hi:.1e})"
    if not np.all(np.isfinite(evals)) or hi <= 0 or lo <= K * np.finfo(float).eps * hi:
        return -math.inf, singular, lo
    try:
        L = np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        return -math.inf, singular, lo
    Z = np.linalg.solve(L, R.T)
    logdet = 2.0 * float(np.sum(np.log(np.diag(L))))
    n = R.shape[0]
    return -0.5 * (n * (K * math.log(2 * math.pi) + logdet) + float(np.sum(Z * Z))), None, lo


def score(problem: Problem, est: dict) -> dict:
    """Accuracy metrics of one method's estimates against the truth.

    Parameters
    ----------
    problem : Problem
        The simulated system (with truth and held-out sample).
    est : dict
        ``params`` (P,), ``kind`` ("lowrank" or "dense"), and ``F``, ``D`` or ``S``.

    Returns
    -------
    dict
        ``beta_rmse``, ``llf``, ``oos_nll_per_obs`` and notes.
    """
    from lowrank_sur import LowRankCovariance

    sim = problem.sim
    params = np.asarray(est["params"], dtype=float)
    truth = np.concatenate(sim.coefs)
    out: dict = {"notes": []}
    if params.shape != truth.shape:
        out["notes"].append(f"estimate has {params.size} coefficients, truth {truth.size}")
        return out
    out["beta_rmse"] = float(np.sqrt(np.mean((params - truth) ** 2)))
    coefs = np.split(params, np.cumsum([X.shape[1] for X in sim.Xs])[:-1])

    def resid(Xs, Y):
        return Y - np.column_stack([X @ b for X, b in zip(Xs, coefs, strict=True)])

    R_in, R_out = resid(sim.Xs, sim.Y), resid(sim.Xs_test, sim.Y_test)
    if str(est["kind"]) == "lowrank":
        cov = LowRankCovariance(est["F"], est["D"])
        out["llf"] = float(cov.loglike(R_in))
        out["oos_nll_per_obs"] = float(-cov.loglike(R_out) / R_out.shape[0])
    else:
        llf, note, lo = _dense_loglike(R_in, est["S"])
        out["llf"] = llf
        out["sigma_min_eig"] = lo
        if note is None:
            out["oos_nll_per_obs"] = -_dense_loglike(R_out, est["S"])[0] / R_out.shape[0]
        else:
            out["oos_nll_per_obs"] = math.inf
            K, n = problem.k_eqs, problem.nobs
            why = f" (K={K} >= N={n}: rank(Sigma-hat) <= N)" if K >= n else ""
            out["notes"].append(f"{note}{why}: llf = -inf, oos NLL = inf")
    return out


def oracle(problem: Problem) -> float:
    """Held-out NLL per observation under the true coefficients and covariance."""
    sim = problem.sim
    R = sim.Y_test - np.column_stack([X @ b for X, b in zip(sim.Xs_test, sim.coefs, strict=True)])
    return float(-sim.cov.loglike(R) / R.shape[0])


@dataclass
class Settings:
    """Run-wide options."""

    mem_cap_bytes: float
    time_cap: float
    tracemalloc: bool
    trace_max_seconds: float
    slow_seconds: float
    slow_reps: int
    alsgls_python: str | None
    alsgls_reason: str
    blas_threads: int | None
    use_projections: bool = True


def _base_record(problem: Problem, method: str) -> dict:
    return {
        "method": method,
        "package": METHODS[method].package,
        "nobs": problem.nobs,
        "k_eqs": problem.k_eqs,
        "n_exog": problem.n_exog,
        "rank": problem.rank,
        "rep": problem.rep,
        "seed": problem.seed,
        "n_test": problem.n_test,
        "n_params": problem.k_eqs * problem.n_exog,
        "projected_gb": projected_bytes(
            method, problem.nobs, problem.k_eqs, problem.n_exog, problem.rank
        ) / GB,
        "status": "",
        "warnings": [],
        "notes": [],
    }


def _skip_reason(problem: Problem, method: str, records: list[dict], st: Settings) -> str | None:
    """Why ``method`` should not run on ``problem`` (None: run it)."""
    kind = METHODS[method].kind
    if kind == "alsgls" and st.alsgls_python is None:
        return f"skipped: not installed ({st.alsgls_reason})"
    if kind == "linearmodels" and importlib.util.find_spec("linearmodels") is None:
        return "skipped: not installed (pip install linearmodels, or the bench extra)"
    if not st.use_projections:
        return None
    need = projected_bytes(method, problem.nobs, problem.k_eqs, problem.n_exog, problem.rank)
    if need > st.mem_cap_bytes:
        return f"skipped: needs ~{need / GB:.1f} GB > memory cap {st.mem_cap_bytes / GB:.1f} GB"
    avail = _available_bytes()
    if avail is not None and need > avail - 1 * GB:
        return f"skipped: needs ~{need / GB:.1f} GB, {avail / GB:.1f} GB available now"
    same = [
        r for r in records
        if r["method"] == method and (r["nobs"], r["n_exog"], r["rank"])
        == (problem.nobs, problem.n_exog, problem.rank)
    ]
    for r in same:
        if r["k_eqs"] < problem.k_eqs and r["status"].startswith("timeout"):
            return f"skipped: timed out at K={r['k_eqs']}"
        if r["k_eqs"] < problem.k_eqs and "MemoryError" in r["status"]:
            return f"skipped: out of memory at K={r['k_eqs']}"
    here = [r for r in same if r["k_eqs"] == problem.k_eqs and r["status"] == "ok"]
    slow = [r for r in here if r["time_s"] > st.slow_seconds]
    if slow and len(here) >= st.slow_reps:
        return (
            f"skipped: slow ({slow[0]['time_s']:.0f} s per run > --slow-seconds "
            f"{st.slow_seconds:g}; kept {len(here)} replication(s), --slow-reps {st.slow_reps})"
        )
    smaller = [r for r in same if r["k_eqs"] < problem.k_eqs and r["status"] == "ok"]
    if smaller:
        k0 = max(r["k_eqs"] for r in smaller)
        t0 = float(np.median([r["time_s"] for r in smaller if r["k_eqs"] == k0]))
        alpha = METHODS[method].time_exponent
        proj = t0 * (problem.k_eqs / k0) ** alpha
        if proj > st.time_cap:
            return (
                f"skipped: projected ~{proj:.0f} s > time cap {st.time_cap:g} s "
                f"({t0:.1f} s at K={k0}, time ~ K^{alpha:g})"
            )
    return None


def _child_env(st: Settings) -> dict:
    env = dict(os.environ)
    if st.blas_threads is not None:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(st.blas_threads)
    return env


def run_one(problem: Problem, method: str, st: Settings, workdir: Path) -> dict:
    """Run one (method, problem) in a subprocess and score it.

    Parameters
    ----------
    problem : Problem
        The system.
    method : str
        Method name.
    st : Settings
        Caps and options.
    workdir : Path
        Scratch directory for the child's files.

    Returns
    -------
    dict
        The record.
    """
    rec = _base_record(problem, method)
    stem = f"{method}_K{problem.k_eqs}_N{problem.nobs}_r{problem.rep}"
    result_path = workdir / f"{stem}.json"
    out_path = workdir / f"{stem}.npz"
    log_path = workdir / f"{stem}.log"
    progress_path = workdir / f"{stem}.progress"
    spec = {
        "method": method,
        "data_path": str(problem.path),
        "rank": problem.rank,
        "n_exog": problem.n_exog,
        "mem_cap_bytes": st.mem_cap_bytes,
        "tracemalloc": st.tracemalloc,
        "trace_max_seconds": st.trace_max_seconds,
        "result_path": str(result_path),
        "out_path": str(out_path),
        "progress_path": str(progress_path),
    }
    python = st.alsgls_python if METHODS[method].kind == "alsgls" else sys.executable
    cmd = [python, str(SCRIPT), "--worker", json.dumps(spec)]
    rec["mem_cap_gb"] = st.mem_cap_bytes / GB
    t0 = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=_child_env(st),
            start_new_session=True,
        )
        # Kill the child (its own process group) when the timed fit runs past the
        # time cap, or when the whole child runs past a generous overall limit.
        overall = st.time_cap + 2.0 * st.trace_max_seconds + STARTUP_ALLOWANCE
        fit_start, fitted = None, False
        while proc.poll() is None:
            time.sleep(0.05)
            now = time.perf_counter()
            if not fitted and progress_path.exists():
                state = progress_path.read_text(encoding="ascii").strip()
                if state == "fitting" and fit_start is None:
                    fit_start = now
                elif state == "fitted":
                    fitted = True
            over_fit = not fitted and fit_start is not None and now - fit_start > st.time_cap
            if over_fit or now - t0 > overall:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                rec["status"] = f"timeout (> {st.time_cap:g} s time cap)" if over_fit else (
                    f"timeout (child ran > {overall:g} s in all)"
                )
                break
    rec["child_wall_s"] = time.perf_counter() - t0
    if rec["status"]:
        return rec
    if not result_path.exists():
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        code = proc.returncode
        if code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit code {code}"
        hint = " (likely the memory cap)" if code < 0 else ""
        rec["status"] = f"failed: child {how}{hint}: {' | '.join(tail)[:300]}"
        return rec
    child = json.loads(result_path.read_text(encoding="utf-8"))
    notes = child.pop("notes", [])
    rec.update(child)
    rec["notes"] = rec.get("notes", []) + notes
    if rec["status"] == "ok" and out_path.exists():
        with np.load(out_path) as est:
            metrics = score(problem, {k: est[k] for k in est.files})
        rec["notes"] += metrics.pop("notes")
        rec.update(metrics)
        out_path.unlink()
    return rec


def _probe_alsgls(python: str) -> tuple[str | None, str | None, str]:
    """Return (interpreter, version, reason) for alsgls."""
    code = "import alsgls, importlib.metadata as m; print(m.version('alsgls'))"
    try:
        proc = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, None, f"{python}: {_error_text(exc, 120)}"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["import failed"])[-1]
        return None, None, f"import alsgls failed with {python}: {last[:120]}"
    return python, proc.stdout.strip(), ""


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def machine_info(alsgls_python: str | None, alsgls_version: str | None) -> dict:
    """Platform, CPUs, RAM, load and package versions of this run."""
    info = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "total_ram_gb": (lambda b: None if b is None else b / GB)(_total_ram_bytes()),
        "available_ram_gb_at_start": (lambda b: None if b is None else b / GB)(
            _available_bytes()
        ),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "blas_threads_env": {
            v: os.environ.get(v)
            for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
        },
        "versions": {
            d: _version(d)
            for d in ("numpy", "scipy", "statsmodels", "linearmodels", "lowrank_sur",
                      "pandas", "matplotlib", "psutil")
        },
    }
    info["versions"]["alsgls"] = alsgls_version
    info["alsgls_python"] = alsgls_python
    info["lowrank_sur_git"] = _git_state()
    return info


def _git_state() -> str | None:
    """Commit of the repository this script sits in, with "+dirty" for local changes."""
    root = SCRIPT.parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "lowrank_sur"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


# =============================================================== reporting
def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        if math.isfinite(v):
            return v
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _num(v) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _median(values) -> float | None:
    vals = [v for v in (_num(x) for x in values) if v is not None]
    if not vals:
        return None
    if any(math.isnan(v) for v in vals):
        return math.nan
    return float(np.median(vals))


def _fmt(v, spec: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return format(v, spec)


def _group_status(rows: list[dict]) -> str:
    """Statuses of a group of replications, with flags for suspicious ok runs."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    if len(counts) == 1:
        (status,) = counts
        text = status if len(rows) == 1 else f"{status} ({len(rows)}/{len(rows)})"
    else:
        text = "; ".join(f"{s} ({c}/{len(rows)})" for s, c in counts.items())
    ok = [r for r in rows if r["status"] == "ok"]
    flags = []
    singular = sum(any("singular" in n for n in r.get("notes", [])) for r in ok)
    if singular:
        flags.append(f"Sigma-hat singular {singular}/{len(ok)}")
    unconverged = sum(r.get("converged") is False for r in ok)
    if unconverged:
        flags.append(f"not converged {unconverged}/{len(ok)}")
    return text + (f" [{'; '.join(flags)}]" if flags else "")


def summarize(records: list[dict]) -> list[dict]:
    """Medians over replications, one row per (N, p, k, K, method).

    Parameters
    ----------
    records : list of dict
        Run records.

    Returns
    -------
    list of dict
        Summary rows in grid order.
    """
    order = list(dict.fromkeys(r["method"] for r in records))
    keys = sorted(
        {(r["nobs"], r["n_exog"], r["rank"], r["k_eqs"], r["method"]) for r in records},
        key=lambda t: (t[0], t[1], t[2], t[3], order.index(t[4])),
    )
    rows = []
    for key in keys:
        group = [
            r for r in records
            if (r["nobs"], r["n_exog"], r["rank"], r["k_eqs"], r["method"]) == key
        ]
        ok = [r for r in group if r["status"] == "ok"]
        nan_se = [r.get("nan_se") for r in ok]
        rows.append(
            {
                "nobs": key[0],
                "n_exog": key[1],
                "rank": key[2],
                "k_eqs": key[3],
                "method": key[4],
                "n_ok": len(ok),
                "n_runs": len(group),
                "time_s": _median(r.get("time_s") for r in ok),
                "peak_rss_mb": _median(r.get("peak_rss_mb") for r in ok),
                "tracemalloc_mb": _median(r.get("tracemalloc_mb") for r in ok),
                "tracemalloc_fit_mb": _median(
                    (r.get("tracemalloc_phase_mb") or {}).get("fit") for r in ok
                ),
                "beta_rmse": _median(r.get("beta_rmse") for r in ok),
                "oos_nll_per_obs": _median(r.get("oos_nll_per_obs") for r in ok),
                "llf": _median(r.get("llf") for r in ok),
                "nan_se": (
                    "n/a" if nan_se and all(v == "n/a" for v in nan_se)
                    else _median(v for v in nan_se if v != "n/a")
                ),
                "iterations": _median(r.get("iterations") for r in ok),
                "status": _group_status(group),
                "projected_gb": group[0].get("projected_gb"),
            }
        )
    return rows


def markdown_table(rows: list[dict], records: list[dict]) -> str:
    """The main results table in markdown (medians over replications).

    Parameters
    ----------
    rows : list of dict
        Output of :func:`summarize`.
    records : list of dict
        Run records (for the oracle rows).

    Returns
    -------
    str
    """
    combos = list(dict.fromkeys((r["nobs"], r["n_exog"], r["rank"]) for r in rows))
    multi = len(combos) > 1
    head = (
        ("| N | p | k " if multi else "")
        + "| K | method | time [s] | peak RSS [MB] | tracemalloc [MB] | beta RMSE "
        "| oos NLL/obs | llf | NaN SEs | iterations | status |"
    )
    ncol = head.count("|") - 1
    lines = [head, "|" + "|".join(["---"] * ncol) + "|"]
    last_key = None
    for r in rows:
        key = (r["nobs"], r["n_exog"], r["rank"], r["k_eqs"])
        if key != last_key:
            orc = _median(
                x.get("oracle_oos_nll_per_obs") for x in records
                if (x["nobs"], x["n_exog"], x["rank"], x["k_eqs"]) == key
            )
            pre = f"| {key[0]} | {key[1]} | {key[2]} " if multi else ""
            lines.append(
                pre + f"| {key[3]} | *truth (oracle)* | - | - | - | 0 | {_fmt(orc, '.4f')} "
                "| - | - | - | - |"
            )
            last_key = key
        nan_se = r["nan_se"]
        nan_txt = nan_se if isinstance(nan_se, str) else _fmt(nan_se, ".0f")
        pre = f"| {r['nobs']} | {r['n_exog']} | {r['rank']} " if multi else ""
        lines.append(
            pre
            + f"| {r['k_eqs']} | {r['method']} | {_fmt(r['time_s'], '.3g')} "
            f"| {_fmt(r['peak_rss_mb'], '.1f')} | {_fmt(r['tracemalloc_mb'], '.1f')} "
            f"| {_fmt(r['beta_rmse'], '.4f')} | {_fmt(r['oos_nll_per_obs'], '.4f')} "
            f"| {_fmt(r['llf'], '.2f')} | {nan_txt} | {_fmt(r['iterations'], '.0f')} "
            f"| {r['status']} |"
        )
    return "\n".join(lines)


def ratio_table(rows: list[dict]) -> str:
    """EM/ALS peak-memory ratios (of medians) per K, next to the seed's claims.

    Parameters
    ----------
    rows : list of dict
        Output of :func:`summarize`.

    Returns
    -------
    str
        Markdown table, or "" when no EM/ALS pair ran.
    """
    by = {(r["nobs"], r["n_exog"], r["rank"], r["k_eqs"], r["method"]): r for r in rows}
    keys = sorted({k[:4] for k in by})
    cols = [("peak_rss_mb", "peak RSS"), ("tracemalloc_mb", "tracemalloc"),
            ("tracemalloc_fit_mb", "tracemalloc, fit step")]

    def ratio(a, b, col):
        if a is None or b is None or _num(a.get(col)) is None or not _num(b.get(col)):
            return "-"
        return f"{a[col] / b[col]:.2f}x"

    pairs = []
    for em, als, tag in (
        ("lowrank_sur-em-45", "lowrank_sur-als-6", "EM-45 / ALS-6"),
        ("lowrank_sur-em", "lowrank_sur-als", "EM / ALS (converged)"),
    ):
        if any(ratio(by.get((*k, em)), by.get((*k, als)), "peak_rss_mb") != "-" for k in keys):
            pairs.append((em, als, tag))
    claims = any(k[:3] == (300, 3, 3) and k[3] in SEED_CLAIMS for k in keys)
    if not pairs:
        return ""
    head = ["K"] + [f"{tag} {label}" for _, _, tag in pairs for _, label in cols]
    if claims:
        head.append("seed's claim (EM-45 / ALS-6)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in keys:
        cells = [
            ratio(by.get((*key, em)), by.get((*key, als)), col)
            for em, als, _ in pairs
            for col, _ in cols
        ]
        if all(c == "-" for c in cells):
            continue
        if claims:
            claim = SEED_CLAIMS.get(key[3]) if key[:3] == (300, 3, 3) else None
            cells.append("-" if claim is None else f"{claim:g}x")
        lines.append(f"| {key[3]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _notes(records: list[dict]) -> list[str]:
    """One markdown bullet per distinct (K, method, status / note / warning).

    Messages that differ only in their numbers (for example the last llf change in
    a convergence warning) are counted together and shown once.
    """
    groups: dict[tuple, list] = {}
    for r in records:
        items = [f"status: {r['status']}"] if r["status"] != "ok" else []
        items += [f"note: {n}" for n in r.get("notes", [])]
        items += [f"warning: {w}" for w in r.get("warnings", [])]
        for item in dict.fromkeys(items):
            shape = re.sub(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?", "#", item)
            key = (r["nobs"], r["n_exog"], r["rank"], r["k_eqs"], r["method"], shape)
            group = groups.setdefault(key, [0, item, True])
            group[0] += 1
            group[2] &= item == group[1]
    lines = []
    for key in sorted(groups, key=lambda t: t[:4]):
        count, item, same = groups[key]
        many = "" if same else ", e.g."
        lines.append(f"- K={key[3]}, {key[4]} ({count} run(s){many}): {item}")
    return lines


def write_markdown(path: Path, payload: dict, rows: list[dict]) -> None:
    """Write the markdown report.

    Parameters
    ----------
    path : Path
        Output file.
    payload : dict
        Config, machine info and records.
    rows : list of dict
        Output of :func:`summarize`.
    """
    cfg, mach, records = payload["config"], payload["machine"], payload["records"]
    v = mach["versions"]
    lines = [
        f"# SUR estimators compared ({cfg['preset'] or 'custom grid'})",
        "",
        f"N={cfg['nobs']}, p={cfg['n_exog']} regressors per equation (constant included), "
        f"k={cfg['rank']} factors, K in {cfg['ks']}, {cfg['reps']} replication(s), "
        f"held-out sample of {cfg['n_test']} rows, base seed {cfg['seed']}. "
        f"Caps per run: {cfg['mem_cap_gb']:g} GB address space, {cfg['time_cap']:g} s. "
        f"Children ran with {payload['settings']['blas_threads'] or 'the inherited number of'}"
        f" BLAS thread(s), {payload['settings']['jobs']} at a time.",
        "",
        f"Machine: {mach['platform']}, {mach['cpu_count']} CPUs, "
        f"{_fmt(mach['total_ram_gb'], '.1f')} GB RAM, load average at start "
        f"{mach['loadavg_at_start']}. Versions: "
        + ", ".join(f"{k} {val}" for k, val in v.items() if val is not None)
        + (", alsgls not installed" if v.get("alsgls") is None else "")
        + (f" (lowrank_sur at git {mach['lowrank_sur_git']})" if mach.get("lowrank_sur_git")
           else "")
        + ".",
        "",
        "Medians over the replications that ran (status `ok`). Time: model construction + "
        "fit + standard errors, in a fresh subprocess after a warm-up. Peak RSS: high-water "
        "mark of the child's resident memory during the timed run above its resident memory "
        "before it. tracemalloc: peak traced allocation of a second, separate run. "
        "oos NLL/obs: negative Gaussian log-likelihood of the held-out residuals under the "
        "method's own Sigma-hat, per held-out observation (lower is better; the oracle row "
        "uses the true beta and Sigma). llf: in-sample Gaussian log-likelihood at the "
        "method's (beta, Sigma-hat).",
        "",
        markdown_table(rows, records),
        "",
    ]
    ratios = ratio_table(rows)
    if ratios:
        lines += [
            "## EM / ALS peak memory (ratios of the medians)",
            "",
            "Peak RSS and tracemalloc cover the whole timed call (model construction, fit, "
            "standard errors); \"fit step\" is the traced peak of the fitting algorithm "
            "alone, above the memory held when it starts.",
            "",
        ]
        if "seed's claim" in ratios:
            lines += [
                "The seed pages claim EM needs 10x / 17x / 29x the memory of ALS at "
                "K = 50 / 80 / 120 (N=300, p=3, rank 3; EM given 45 iterations, ALS 6 "
                "sweeps), comparing the largest array each holds (dense K x K inverse "
                "against K x k loadings).",
                "",
            ]
        lines += [ratios, ""]
    lines += ["## Methods", ""]
    for name in cfg["methods"]:
        lines.append(f"- `{name}`: {METHODS[name].description}")
    notes = _notes(records)
    if notes:
        lines += ["", "## Non-ok runs, notes and warnings", ""] + notes
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_plots(out_dir: Path, rows: list[dict], title: str) -> list[Path]:
    """Time, peak memory and beta RMSE against K, one line per method.

    Parameters
    ----------
    out_dir : Path
        Output directory.
    rows : list of dict
        Output of :func:`summarize`.
    title : str
        Figure title prefix.

    Returns
    -------
    list of Path
        The PNG files written (empty when matplotlib is missing).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; no plots written")
        return []
    combos = list(dict.fromkeys((r["nobs"], r["n_exog"], r["rank"]) for r in rows))
    written = []
    specs = [
        ("time", "time_s", "time [s] (build + fit + SEs)", True),
        ("memory", "peak_rss_mb", "peak RSS above baseline [MB]", True),
        ("beta_rmse", "beta_rmse", "beta RMSE vs truth", True),
    ]
    for combo in combos:
        suffix = "" if len(combos) == 1 else f"_N{combo[0]}_p{combo[1]}_k{combo[2]}"
        sub = [r for r in rows if (r["nobs"], r["n_exog"], r["rank"]) == combo]
        methods = list(dict.fromkeys(r["method"] for r in sub))
        for stem, col, ylabel, logy in specs:
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for i, m in enumerate(methods):
                pts = [
                    (r["k_eqs"], r[col]) for r in sub
                    if r["method"] == m and r[col] is not None and math.isfinite(r[col])
                    and (r[col] > 0 or not logy)
                ]
                if pts:
                    ks, vals = zip(*sorted(pts), strict=True)
                    ax.plot(
                        ks, vals, label=m, marker="osD^vP*X"[i % 8],
                        linestyle=("-", "--", ":", "-.")[i % 4], alpha=0.85,
                    )
            ax.set_xscale("log")
            grid_ks = sorted({r["k_eqs"] for r in sub})
            ax.set_xticks(grid_ks, [str(k) for k in grid_ks])
            ax.minorticks_off()
            if logy:
                ax.set_yscale("log")
            ax.set_xlabel("K (equations)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{title}: N={combo[0]}, p={combo[1]}, k={combo[2]}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            path = out_dir / f"compare_sur_{stem}{suffix}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written


# ==================================================================== driver
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            "Benchmark SUR estimators (lowrank_sur ALS/EM, linearmodels SUR, a statsmodels "
            "GLS baseline, alsgls) on simulated systems with known truth; each fit runs in "
            "its own subprocess with time and memory caps."
        ),
        epilog="See the module docstring (top of this file) for the exact definitions.",
    )
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default=None,
        help="quick: tiny grid for tests; seed: the alsgls seed case study (N=300, p=3, "
        "k=3, K in {50, 80, 120}, 6 replications); scale: N=300, p=3, k=4, "
        "K up to 5000. Options below override the preset; without one, --ks is required "
        "and the rest defaults to N=300, p=3, k=3, 1 replication, 300 held-out rows.",
    )
    parser.add_argument("--output-dir", type=Path, help="where the JSON, markdown and PNGs go")
    parser.add_argument("--ks", type=int, nargs="+", help="numbers of equations K")
    parser.add_argument("--nobs", type=int, help="observations N")
    parser.add_argument("--n-exog", type=int, help="regressors per equation p (with constant)")
    parser.add_argument("--rank", type=int, help="true and fitted number of factors k")
    parser.add_argument("--reps", type=int, help="replications per K")
    parser.add_argument("--n-test", type=int, help="rows of the held-out sample")
    parser.add_argument(
        "--methods", nargs="+", choices=list(METHODS), metavar="NAME",
        help="methods to run, from: " + ", ".join(METHODS)
        + f" (default: the preset's; without a preset {', '.join(DEFAULT_METHODS)})",
    )
    parser.add_argument("--seed", type=int, default=20240601, help="base random seed")
    parser.add_argument(
        "--mem-cap-gb", type=float, default=8.0,
        help="address-space cap per child above its baseline, GB (default 8)",
    )
    parser.add_argument("--time-cap", type=float, help="seconds per fit before a kill")
    parser.add_argument(
        "--no-tracemalloc", action="store_true", help="skip the separate tracemalloc runs"
    )
    parser.add_argument(
        "--trace-max-seconds", type=float, default=30.0,
        help="no tracemalloc run when the timed run took longer than this (default 30)",
    )
    parser.add_argument(
        "--slow-seconds", type=float, default=60.0,
        help="runs longer than this are repeated for at most --slow-reps replications",
    )
    parser.add_argument("--slow-reps", type=int, default=1, help="see --slow-seconds")
    parser.add_argument(
        "--alsgls-python", default=None,
        help="interpreter whose environment has alsgls (default: this one)",
    )
    parser.add_argument(
        "--blas-threads", type=int, default=1,
        help="OPENBLAS/OMP/MKL_NUM_THREADS in the children (default 1; 0 inherits the "
        "environment's setting)",
    )
    parser.add_argument(
        "--jobs", type=int, default=None,
        help="methods run concurrently on one problem (default 1, quick preset 2); meant "
        "for small grids: >1 distorts timings, and the memory checks are per child",
    )
    parser.add_argument(
        "--ignore-projections", action="store_true",
        help="run every configuration, even those projected to exceed the memory or time "
        "cap or following a timeout (the caps still apply inside the children)",
    )
    parser.add_argument(
        "--render", type=Path, metavar="JSON",
        help="only re-write the markdown and the plots from the compare_sur.json of an "
        "earlier run (into --output-dir, default: the JSON's directory)",
    )
    parser.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    return parser


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark described by parsed command-line arguments.

    Parameters
    ----------
    args : argparse.Namespace
        Output of the parser (see ``--help``).

    Returns
    -------
    dict
        The JSON payload (config, machine, records).
    """
    cfg = dict(PRESETS[args.preset] if args.preset is not None else CUSTOM_DEFAULTS)
    for key in ("ks", "nobs", "n_exog", "rank", "reps", "n_test", "methods", "time_cap", "jobs"):
        val = getattr(args, key)
        if val is not None:
            cfg[key] = val
    cfg["ks"] = sorted(set(cfg["ks"]))
    cfg.update(preset=args.preset, seed=args.seed, mem_cap_gb=args.mem_cap_gb)

    alsgls_python, alsgls_version, reason = None, None, "not requested"
    if "alsgls" in cfg["methods"]:
        alsgls_python, alsgls_version, reason = _probe_alsgls(
            args.alsgls_python or sys.executable
        )
        if alsgls_python is None:
            print(f"note: alsgls rows skipped ({reason})")
    st = Settings(
        mem_cap_bytes=args.mem_cap_gb * GB,
        time_cap=float(cfg["time_cap"]),
        tracemalloc=not args.no_tracemalloc,
        trace_max_seconds=args.trace_max_seconds,
        slow_seconds=args.slow_seconds,
        slow_reps=args.slow_reps,
        alsgls_python=alsgls_python,
        alsgls_reason=reason,
        blas_threads=args.blas_threads or None,
        use_projections=not args.ignore_projections,
    )
    out_dir = args.output_dir
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": cfg,
        "machine": machine_info(alsgls_python, alsgls_version),
        "settings": {
            "trace_max_seconds": st.trace_max_seconds,
            "slow_seconds": st.slow_seconds,
            "slow_reps": st.slow_reps,
            "blas_threads": st.blas_threads,
            "jobs": cfg.get("jobs", 1),
            "tracemalloc": st.tracemalloc,
        },
        "records": [],
    }
    records: list[dict] = payload["records"]
    print(
        f"config: N={cfg['nobs']} p={cfg['n_exog']} k={cfg['rank']} K={cfg['ks']} "
        f"reps={cfg['reps']} methods={cfg['methods']}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="compare_sur_"))
    t_start = time.perf_counter()
    try:
        for K in cfg["ks"]:
            for rep in range(cfg["reps"]):
                problem = make_problem(
                    cfg["nobs"], K, cfg["n_exog"], cfg["rank"], rep, cfg["n_test"],
                    args.seed, workdir,
                )
                ref = oracle(problem)
                todo, batch = [], []
                for m in cfg["methods"]:
                    reason_skip = _skip_reason(problem, m, records, st)
                    if reason_skip is None:
                        todo.append(m)
                    else:
                        rec = _base_record(problem, m)
                        rec["status"] = reason_skip
                        batch.append(rec)
                with ThreadPoolExecutor(max_workers=max(1, cfg.get("jobs", 1))) as pool:
                    futures = {m: pool.submit(run_one, problem, m, st, workdir) for m in todo}
                    batch += [f.result() for f in futures.values()]
                batch.sort(key=lambda r: cfg["methods"].index(r["method"]))
                for rec in batch:
                    rec["oracle_oos_nll_per_obs"] = ref
                    t = rec.get("time_s")
                    mem = rec.get("peak_rss_mb")
                    print(
                        f"K={K:<5d} rep={rep} {rec['method']:<19s} "
                        f"{'-' if t is None else f'{t:9.3f} s'}  "
                        f"{'-' if mem is None else f'{mem:9.1f} MB'}  {rec['status']}",
                        flush=True,
                    )
                records += batch
                problem.path.unlink()
                problem.sim = None
                if out_dir is not None:
                    _write_json(out_dir / "compare_sur.json", payload)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    payload["machine"]["loadavg_at_end"] = (
        list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    )
    payload["machine"]["total_wall_s"] = time.perf_counter() - t_start
    rows = summarize(records)
    payload["summary"] = rows
    print()
    print(markdown_table(rows, records))
    ratios = ratio_table(rows)
    if ratios:
        print()
        print("EM / ALS peak-memory ratios (seed's claims: 10x, 17x, 29x at K = 50, 80, 120):")
        print(ratios)
    if out_dir is not None:
        _write_json(out_dir / "compare_sur.json", payload)
        write_markdown(out_dir / "compare_sur.md", payload, rows)
        for p in write_plots(out_dir, rows, f"compare_sur ({cfg['preset'] or 'custom'})"):
            print(f"wrote {p}")
        print(f"wrote {out_dir / 'compare_sur.json'} and {out_dir / 'compare_sur.md'}")
    return payload


def render(json_path: Path, out_dir: Path | None = None) -> None:
    """Re-write the markdown report and the plots from a saved ``compare_sur.json``.

    Parameters
    ----------
    json_path : Path
        The JSON written by an earlier run.
    out_dir : Path, optional
        Output directory (default: the JSON's directory).
    """
    payload = json.loads(Path(json_path).read_text(encoding="utf-8"))
    out_dir = Path(json_path).parent if out_dir is None else Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summarize(payload["records"])
    write_markdown(out_dir / "compare_sur.md", payload, rows)
    preset = payload["config"].get("preset") or "custom"
    for p in write_plots(out_dir, rows, f"compare_sur ({preset})"):
        print(f"wrote {p}")
    print(f"wrote {out_dir / 'compare_sur.md'}")


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(payload), indent=1), encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.
    """
    args = _parser().parse_args(argv)
    if args.worker is not None:
        return _worker_main(args.worker)
    if args.render is not None:
        render(args.render, args.output_dir)
        return 0
    if args.preset is None and args.ks is None:
        _parser().error("give --preset, --ks or --render")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
