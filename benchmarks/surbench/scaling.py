"""``core_scaling.py``: our fitters and alsgls against a high-precision reference, in one process.

Import this only after the BLAS thread variables are set (it imports NumPy and
``lowrank_sur``); see the docstring of ``core_scaling.py`` for the definitions.
"""

from __future__ import annotations

import gc
import json
import math
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from lowrank_sur import LowRankCovariance, fit_arrays, simulate_sur

from .cli import scaling_parser
from .measure import environment
from .methods import (
    Outcome,
    alsgls_fitter,
    alsgls_import_error,
    fit_alsgls,
    lowrank_arrays_fitter,
    lowrank_inner,
)
from .report import fmt, md_row, md_rule

REF_OPTIONS = {"tol": 1e-14, "ptol": 1e-10, "maxiter": 20000}
ALSGLS_TIGHT = {"lam_B": 0.0, "cg_tol": 1e-10, "rel_tol": 1e-14, "sweeps": 100}

FULL = {"nobs": 300, "k_eqs": (200, 1000, 3000), "n_exog": 3, "rank": 4}
QUICK = {"nobs": 100, "k_eqs": (50, 100), "n_exog": 3, "rank": 4}


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


# ================================================================ measuring
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


def _reference(K: int, sim, rank: int, log) -> tuple[Row, dict]:
    """The high-precision reference fit: its row and (llf, coefs) for the others."""
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        rec = fit_arrays(sim.Xs, sim.Y, rank, **REF_OPTIONS)
        t_ref = time.perf_counter() - t0
    llf_ref = _loglike(sim.Xs, sim.Y, rec.coefs, rec.F, rec.D)
    row = Row(
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
        inner=lowrank_inner("als", rec),
        native_llf=rec.llf,
    )
    log(f"  {'als-ref':<13s} {t_ref:8.3f} s  sweeps {rec.iterations:4d}  llf {llf_ref:.6f}")
    return row, {"llf": llf_ref, "coefs": rec.coefs}


def _methods_at(K: int, em_max_k: int, use_alsgls: bool, alsgls_tight: bool):
    methods: list[tuple[str, Callable]] = [("als", lowrank_arrays_fitter("als"))]
    if K <= em_max_k:
        methods.append(("em", lowrank_arrays_fitter("em")))
    if use_alsgls:
        methods.append(("alsgls", alsgls_fitter()))
        if alsgls_tight:
            methods.append(("alsgls-tight", alsgls_fitter(**ALSGLS_TIGHT)))
    return methods


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
            fit_alsgls(warm.Xs, warm.Y, 2)
    rows: list[Row] = []
    for K in config["k_eqs"]:
        sim = simulate_sur(n, K, p, rank, seed=seed + K)
        log(f"K={K} (N={n}, p={p}, k={rank})")
        ref_row, ref = _reference(K, sim, rank, log)
        rows.append(ref_row)
        for name, fn in _methods_at(K, em_max_k, use_alsgls, alsgls_tight):
            rows.append(_row(K, name, fn, sim, rank, ref, repeat, memory, log))
    return rows


# ================================================================ reporting
def format_table(rows: list[Row]) -> str:
    """Render the rows as a markdown table (one line per row)."""
    head = ["K", "method", "time [s]", "sweeps", "peak [MB]", "llf", "llf_ref - llf",
            "rel gap", "max abs coef dev", "converged", "inner"]
    lines = [md_row(head), md_rule(len(head))]
    for r in rows:
        lines.append(md_row([
            r.k_eqs, r.method, f"{r.time_s:.3f}", r.sweeps, fmt(r.peak_mb, ".1f"),
            f"{r.llf:.6f}", f"{r.gap:.3e}", f"{r.rel_gap:.2e}", f"{r.coef_dev:.2e}",
            "yes" if r.converged else "no", r.inner,
        ]))
    return "\n".join(lines)


def format_ratios(rows: list[Row]) -> str:
    """Markdown table of time ratios of alsgls to our fitters at each K ("" without alsgls)."""
    by = {(r.k_eqs, r.method): r for r in rows}
    ks = sorted({r.k_eqs for r in rows})
    if not any((k, "alsgls") in by for k in ks):
        return ""
    head = ["K", "time_alsgls / time_als", "time_alsgls / time_em", "llf_als - llf_alsgls",
            "our llf >= alsgls llf"]
    lines = [md_row(head), md_rule(len(head))]
    for k in ks:
        a, g, e = by.get((k, "als")), by.get((k, "alsgls")), by.get((k, "em"))
        if a is None or g is None:
            continue
        re_ = f"{g.time_s / e.time_s:.2f}" if e is not None else "-"
        diff = a.llf - g.llf
        # "equal" within rounding of the likelihood (a few ulps of |llf|)
        ok = "yes" if diff >= -1e-12 * abs(a.llf) else "no"
        lines.append(md_row([k, f"{g.time_s / a.time_s:.2f}", re_, f"{diff:.3e}", ok]))
    return "\n".join(lines)


# =================================================================== driver
def _config(args) -> dict:
    config = dict(QUICK if args.quick else FULL)
    if args.ks:
        config["k_eqs"] = tuple(args.ks)
    for key, val in (("nobs", args.nobs), ("rank", args.rank), ("n_exog", args.n_exog)):
        if val is not None:
            config[key] = val
    return config


def _use_alsgls(args) -> bool:
    """Whether to run alsgls; prints why not."""
    if args.no_alsgls:
        print("note: alsgls skipped (--no-alsgls)")
        return False
    error = alsgls_import_error()
    if error:
        print(
            f"note: alsgls is not importable ({error}); skipping its rows. "
            "Install it in a scratch environment (pip install alsgls==2.2.0) to compare."
        )
        return False
    return True


def _write_output(path: str, config: dict, args, env: dict, rows: list[Row]) -> None:
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
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2)
    print(f"\nwrote {path}")


def main(argv: list[str] | None = None, description: str = "") -> int:
    """Command-line entry point of ``core_scaling.py`` (``description``: its first doc line)."""
    args = scaling_parser(description).parse_args(argv)
    config = _config(args)
    use_alsgls = _use_alsgls(args)
    env = environment(alsgls_importable=not alsgls_import_error())
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
        _write_output(args.output, config, args, env, rows)
    return 0
