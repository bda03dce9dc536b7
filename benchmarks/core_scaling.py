"""Scaling benchmark of the core fitters against a high-precision reference and alsgls.

For ``N`` observations, ``p`` regressors per equation (constant first), ``k`` factors
and each number of equations ``K``, one system is simulated with
:func:`lowrank_sur.simulate_sur` and fitted by

``als``
    :func:`lowrank_sur.fit_arrays` with ``method="als"`` and default tolerances;
``em``
    the same with ``method="em"`` (dense ``K x K``; only for ``K <= --em-max-k``);
``alsgls``
    ``alsgls.als_gls(Xs, Y, k)`` from the PyPI package ``alsgls`` (2.2) with *its*
    defaults (``lam_B=1e-3`` relative ridge, ``sweeps=8`` cap, ``cg_tol=3e-7``,
    ``rel_tol=1e-6``), if it is importable; otherwise its rows are skipped with a note;
``alsgls-tight`` (only with ``--alsgls-tight``)
    alsgls with ``lam_B=0``, ``cg_tol=1e-10``, ``rel_tol=1e-14``, ``sweeps=100``,
    to separate the effect of its defaults from that of its algorithm.

Reference
    ``als-ref`` is :func:`lowrank_sur.fit_arrays` with ``tol=1e-14``,
    ``ptol=1e-10``, ``maxiter=20000``. Every method's log-likelihood is recomputed
    the same way, ``LowRankCovariance(F, D).loglike(Y - fitted)``, from the
    coefficients, ``F`` and ``D`` it returned (so alsgls is scored on our likelihood,
    without its ridge term), and the table reports ``llf_ref - llf`` (positive: the
    method stopped below the reference maximum; tiny negative values are rounding)
    and that gap relative to ``|llf_ref|``. ``coef_dev`` is the largest absolute
    coefficient difference from the reference.

Timing and memory
    Everything runs in this one process, one (method, K) after another, after an
    untimed warm-up fit. The time is the minimum over ``--repeat`` runs of
    :func:`time.perf_counter` around the fit call alone (simulation and scoring
    excluded). The memory is measured in a *separate* run of the same fit under
    :mod:`tracemalloc` (which slows allocation-heavy code, so it never overlaps a
    timed run): ``peak_mb`` is the peak of traced memory minus the traced memory
    just before the fit, i.e. what the fit allocated on top of its inputs. NumPy
    and SciPy array buffers are traced; BLAS/LAPACK internal workspaces
    allocated by the BLAS library itself (OpenBLAS thread buffers) are not.

BLAS threads
    BLAS threading is left as the environment sets it unless ``--blas-threads N``
    is given (which sets ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` and
    ``MKL_NUM_THREADS`` before NumPy is imported); it is recorded in the output.
    On a small or shared machine, multi-threaded OpenBLAS can stall for seconds
    inside one LAPACK call when another process holds a core (seen on a 2-core
    box: a 300 x 3000 SVD taking 0.2 s or 9 s at random with two threads, a
    steady 0.11 s with one; the quick grid taking 79 s instead of 4.5 s), so for
    comparable numbers use ``--blas-threads 1 --repeat 3`` and check
    ``loadavg_at_start`` in the JSON.

Counts
    ``sweeps`` is ``FitRecord.iterations`` for our fitters (ALS sweeps, EM/SQUAREM
    cycles) and ``len(info["nll_trace"]) - 1`` for alsgls (its final beta refresh
    is not counted). ``inner`` lists the inner work: conjugate-gradient
    iterations and factor-step EM maps for ALS, EM maps for EM, L-BFGS-B
    iterations of alsgls's Sigma steps.

Examples
--------
Full run (K in {200, 1000, 3000}, N=300, p=3, k=4)::

    python benchmarks/core_scaling.py --blas-threads 1 --repeat 3 --output scaling.json

Quick run for tests (K in {50, 100}, N=100)::

    python benchmarks/core_scaling.py --quick --blas-threads 1
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

_BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _preset_blas_threads(argv: list[str]) -> None:
    """Apply ``--blas-threads N`` before NumPy is imported (BLAS reads it at load)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--blas-threads", type=int)
    known, _ = pre.parse_known_args(argv)
    if known.blas_threads is not None:
        for var in _BLAS_VARS:
            os.environ[var] = str(known.blas_threads)


if __name__ == "__main__":
    _preset_blas_threads(sys.argv[1:])

import numpy as np  # noqa: E402
import scipy  # noqa: E402

import lowrank_sur  # noqa: E402
from lowrank_sur import LowRankCovariance, fit_arrays, simulate_sur  # noqa: E402

try:  # optional competitor; never a dependency of the project
    from alsgls import als_gls as _als_gls
except ImportError as exc:  # pragma: no cover - depends on the environment
    _als_gls = None
    _ALSGLS_IMPORT_ERROR = f"{type(exc).__name__}: {exc}"
else:
    _ALSGLS_IMPORT_ERROR = ""

REF_OPTIONS = {"tol": 1e-14, "ptol": 1e-10, "maxiter": 20000}
ALSGLS_TIGHT = {"lam_B": 0.0, "cg_tol": 1e-10, "rel_tol": 1e-14, "sweeps": 100}

FULL = {"nobs": 300, "k_eqs": (200, 1000, 3000), "n_exog": 3, "rank": 4}
QUICK = {"nobs": 100, "k_eqs": (50, 100), "n_exog": 3, "rank": 4}


@dataclass
class Outcome:
    """What one fit returned, on a common footing."""

    coefs: list[np.ndarray]
    F: np.ndarray
    D: np.ndarray
    sweeps: int
    converged: bool
    inner: str
    native_llf: float


@dataclass
class Row:
    """One line of the results table."""

    k_eqs: int
    method: str
    time_s: float
    sweeps: int
    peak_mb: float | None
    llf: float
    llf_ref: float
    gap: float
    rel_gap: float
    coef_dev: float
    converged: bool
    inner: str
    native_llf: float
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- fitters
def _ours(method: str, **options) -> Callable[[list, np.ndarray, int], Outcome]:
    def run(Xs, Y, rank):
        rec = fit_arrays(Xs, Y, rank, method=method, **options)
        if method == "als":
            inner = f"cg={rec.cg_iterations} fa={rec.factor_iterations}"
        else:
            inner = f"maps={rec.factor_iterations}"
        return Outcome(rec.coefs, rec.F, rec.D, rec.iterations, rec.converged, inner, rec.llf)

    return run


def _alsgls(**options) -> Callable[[list, np.ndarray, int], Outcome]:
    def run(Xs, Y, rank):
        # alsgls 2.2: als_gls(Xs, Y, k, lam_B=1e-3, sweeps=8, d_floor=1e-8,
        # cg_maxit=800, cg_tol=3e-7, *, rel_tol=1e-6, init_D=None)
        # -> (B_list of (p_j, 1) arrays, F (K, k), D (K,), mem_MB_est, info)
        B, F, D, _mem, info = _als_gls(Xs, Y, rank, **options)
        n_sweeps = len(info["nll_trace"]) - 1
        cap = options.get("sweeps", 8)
        trace = info["nll_trace"]
        rel_tol = options.get("rel_tol", 1e-6)
        last = (trace[-2] - trace[-1]) / max(1.0, abs(trace[-2])) if len(trace) > 1 else 0.0
        converged = n_sweeps < cap or last < rel_tol
        inner = f"lbfgs={sum(info['sigma_iters'])} cg_last={info['cg']['iterations']}"
        native = -Y.shape[0] * float(trace[-1])
        coefs = [np.asarray(b, dtype=float).ravel() for b in B]
        return Outcome(coefs, np.asarray(F), np.asarray(D), n_sweeps, converged, inner, native)

    return run


# ---------------------------------------------------------------- measuring
def _loglike(Xs, Y, coefs, F, D) -> float:
    """Log-likelihood on our definition at the given coefficients and covariance."""
    fitted = np.column_stack([X @ b for X, b in zip(Xs, coefs, strict=True)])
    return LowRankCovariance(F, D).loglike(Y - fitted)


def _timed(fn, Xs, Y, rank, repeat: int) -> tuple[float, Outcome, list[str]]:
    best = math.inf
    out = None
    caught: list[str] = []
    for _ in range(repeat):
        gc.collect()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            out = fn(Xs, Y, rank)
            elapsed = time.perf_counter() - t0
        best = min(best, elapsed)
        caught = sorted({m.category.__name__ for m in w})
    return best, out, caught


def _peak_mb(fn, Xs, Y, rank) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(Xs, Y, rank)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - base) / 2**20


def _row(k_eqs, method, fn, sim, rank, ref, repeat, memory, log) -> Row:
    t, out, caught = _timed(fn, sim.Xs, sim.Y, rank, repeat)
    peak = _peak_mb(fn, sim.Xs, sim.Y, rank) if memory else None
    llf = _loglike(sim.Xs, sim.Y, out.coefs, out.F, out.D)
    llf_ref = ref["llf"]
    dev = max(float(np.max(np.abs(b - r))) for b, r in zip(out.coefs, ref["coefs"], strict=True))
    row = Row(
        k_eqs=k_eqs,
        method=method,
        time_s=t,
        sweeps=out.sweeps,
        peak_mb=peak,
        llf=llf,
        llf_ref=llf_ref,
        gap=llf_ref - llf,
        rel_gap=(llf_ref - llf) / abs(llf_ref),
        coef_dev=dev,
        converged=out.converged,
        inner=out.inner,
        native_llf=out.native_llf,
        warnings=caught,
    )
    log(
        f"  {method:<13s} {t:8.3f} s  sweeps {out.sweeps:4d}  "
        f"peak {'-' if peak is None else f'{peak:.1f} MB'}  gap {row.gap:.3e}"
    )
    return row


# ---------------------------------------------------------------- reporting
def _fmt_peak(v):
    return "-" if v is None else f"{v:.1f}"


def format_table(rows: list[Row]) -> str:
    """Render the rows as a markdown table.

    Parameters
    ----------
    rows : list of Row
        Benchmark results.

    Returns
    -------
    str
        The table, one line per row.
    """
    head = (
        "| K | method | time [s] | sweeps | peak [MB] | llf | llf_ref - llf | rel gap "
        "| max abs coef dev | converged | inner |"
    )
    sep = "|" + "|".join(["---"] * 11) + "|"
    lines = [head, sep]
    for r in rows:
        lines.append(
            f"| {r.k_eqs} | {r.method} | {r.time_s:.3f} | {r.sweeps} | {_fmt_peak(r.peak_mb)} "
            f"| {r.llf:.6f} | {r.gap:.3e} | {r.rel_gap:.2e} | {r.coef_dev:.2e} "
            f"| {'yes' if r.converged else 'no'} | {r.inner} |"
        )
    return "\n".join(lines)


def format_ratios(rows: list[Row]) -> str:
    """Markdown table of time ratios of alsgls to our fitters at each K.

    Parameters
    ----------
    rows : list of Row
        Benchmark results.

    Returns
    -------
    str
        The table, or an empty string when there are no alsgls rows.
    """
    by = {(r.k_eqs, r.method): r for r in rows}
    ks = sorted({r.k_eqs for r in rows})
    if not any((k, "alsgls") in by for k in ks):
        return ""
    lines = [
        "| K | time_alsgls / time_als | time_alsgls / time_em | llf_als - llf_alsgls "
        "| our llf >= alsgls llf |",
        "|---|---|---|---|---|",
    ]
    for k in ks:
        a, g, e = by.get((k, "als")), by.get((k, "alsgls")), by.get((k, "em"))
        if a is None or g is None:
            continue
        re_ = f"{g.time_s / e.time_s:.2f}" if e is not None else "-"
        diff = a.llf - g.llf
        # "equal" within rounding of the likelihood (a few ulps of |llf|)
        ok = "yes" if diff >= -1e-12 * abs(a.llf) else "no"
        lines.append(f"| {k} | {g.time_s / a.time_s:.2f} | {re_} | {diff:.3e} | {ok} |")
    return "\n".join(lines)


def _version(dist: str) -> str | None:
    try:
        return _dist_version(dist)
    except PackageNotFoundError:
        return None


def environment() -> dict:
    """Versions of the interpreter and libraries in this run."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "lowrank_sur": lowrank_sur.__version__,
        "cpus": os.cpu_count(),
        "blas_threads": {v: os.environ.get(v) for v in _BLAS_VARS},
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "alsgls": _version("alsgls") if _als_gls is not None else None,
    }


# ---------------------------------------------------------------- driver
def run(
    config: dict,
    *,
    repeat: int,
    memory: bool,
    em_max_k: int,
    use_alsgls: bool,
    alsgls_tight: bool,
    seed: int,
    log=print,
) -> list[Row]:
    """Run the benchmark grid.

    Parameters
    ----------
    config : dict
        ``nobs``, ``k_eqs`` (sequence), ``n_exog`` and ``rank``.
    repeat : int
        Timed runs per (method, K); the minimum is reported.
    memory : bool
        Measure the tracemalloc peak in a separate run.
    em_max_k : int
        Largest K at which the dense EM fitter is run.
    use_alsgls : bool
        Include alsgls rows (when it is importable).
    alsgls_tight : bool
        Also run alsgls without ridge and with tight tolerances.
    seed : int
        Base seed; the system with K equations uses ``seed + K``.
    log : callable
        Progress printer.

    Returns
    -------
    list of Row
    """
    n, p, rank = config["nobs"], config["n_exog"], config["rank"]
    # untimed warm-up so that import/BLAS start-up costs land nowhere
    warm = simulate_sur(50, 20, p, 2, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_arrays(warm.Xs, warm.Y, 2)
        if use_alsgls:
            _als_gls(warm.Xs, warm.Y, 2)
    rows: list[Row] = []
    for K in config["k_eqs"]:
        sim = simulate_sur(n, K, p, rank, seed=seed + K)
        log(f"K={K} (N={n}, p={p}, k={rank})")
        gc.collect()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            rec = fit_arrays(sim.Xs, sim.Y, rank, **REF_OPTIONS)
            t_ref = time.perf_counter() - t0
        llf_ref = _loglike(sim.Xs, sim.Y, rec.coefs, rec.F, rec.D)
        ref = {"llf": llf_ref, "coefs": rec.coefs}
        rows.append(
            Row(
                k_eqs=K,
                method="als-ref",
                time_s=t_ref,
                sweeps=rec.iterations,
                peak_mb=None,
                llf=llf_ref,
                llf_ref=llf_ref,
                gap=0.0,
                rel_gap=0.0,
                coef_dev=0.0,
                converged=rec.converged,
                inner=f"cg={rec.cg_iterations} fa={rec.factor_iterations}",
                native_llf=rec.llf,
            )
        )
        log(f"  {'als-ref':<13s} {t_ref:8.3f} s  sweeps {rec.iterations:4d}  llf {llf_ref:.6f}")
        methods: list[tuple[str, Callable]] = [("als", _ours("als"))]
        if K <= em_max_k:
            methods.append(("em", _ours("em")))
        if use_alsgls:
            methods.append(("alsgls", _alsgls()))
            if alsgls_tight:
                methods.append(("alsgls-tight", _alsgls(**ALSGLS_TIGHT)))
        for name, fn in methods:
            rows.append(_row(K, name, fn, sim, rank, ref, repeat, memory, log))
    return rows


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small grid (N=100, K in {50, 100}) that runs in seconds",
    )
    parser.add_argument("--ks", type=int, nargs="+", help="override the list of K")
    parser.add_argument("--nobs", type=int, help="override N")
    parser.add_argument("--rank", type=int, help="override k")
    parser.add_argument("--n-exog", type=int, help="override p (including the constant)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs; the minimum is kept")
    parser.add_argument("--em-max-k", type=int, default=500, help="largest K for EM")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc runs")
    parser.add_argument("--no-alsgls", action="store_true", help="skip alsgls even if present")
    parser.add_argument(
        "--alsgls-tight",
        action="store_true",
        help="also run alsgls with lam_B=0 and tight tolerances",
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        help="set OPENBLAS/OMP/MKL_NUM_THREADS before NumPy loads (script runs only)",
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--output", help="write the results as JSON to this file")
    args = parser.parse_args(argv)

    config = dict(QUICK if args.quick else FULL)
    if args.ks:
        config["k_eqs"] = tuple(args.ks)
    for key, val in (("nobs", args.nobs), ("rank", args.rank), ("n_exog", args.n_exog)):
        if val is not None:
            config[key] = val

    use_alsgls = not args.no_alsgls and _als_gls is not None
    if args.no_alsgls:
        print("note: alsgls skipped (--no-alsgls)")
    elif _als_gls is None:
        print(
            f"note: alsgls is not importable ({_ALSGLS_IMPORT_ERROR}); skipping its rows. "
            "Install it in a scratch environment (pip install alsgls==2.2.0) to compare."
        )
    env = environment()
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    print(f"config: {config}, repeat={args.repeat}, reference={REF_OPTIONS}")

    rows = run(
        config,
        repeat=args.repeat,
        memory=not args.no_memory,
        em_max_k=args.em_max_k,
        use_alsgls=use_alsgls,
        alsgls_tight=args.alsgls_tight,
        seed=args.seed,
    )

    print()
    print(format_table(rows))
    ratios = format_ratios(rows)
    if ratios:
        print()
        print(ratios)
    if args.output:
        payload = {
            "config": {
                **config,
                "k_eqs": list(config["k_eqs"]),
                "repeat": args.repeat,
                "reference": REF_OPTIONS,
                "em_max_k": args.em_max_k,
            },
            "environment": env,
            "rows": [asdict(r) for r in rows],
        }
        with open(args.output, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
