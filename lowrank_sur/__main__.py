"""Demo: ``python -m lowrank_sur``.

Part 1 fits the classic Grunfeld five-firm investment system (the data ship with
statsmodels) through the formula interface, choosing the number of factors by
BIC, and prints the rank-selection table, the summary and the tests of the error
covariance structure. Part 2 fits a simulated system with more equations than
observations (K > N, where classic SUR's estimated covariance is singular) and
reports the fit time, the peak memory of the fit, the head of the factor summary
and the time to compute every standard error.

``python -m lowrank_sur --quick`` runs part 2 on a smaller system (K=300, N=100).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .covariance import LowRankCovariance
from .datasets import grunfeld_formulas, grunfeld_wide
from .model import LowRankSUR
from .results import LowRankSURResults
from .simulate import simulate_sur

__all__ = ["main", "grunfeld_demo", "large_k_demo"]

#: Environment variables through which BLAS libraries read their thread count at load.
BLAS_THREAD_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
_REEXEC_MARKER = "_LOWRANK_SUR_DEMO_CHILD"

#: Simulated system of part 2: full demo and ``--quick``.
FULL_SIZE = {"nobs": 500, "k_eqs": 2000, "n_exog": 3, "rank": 4}
QUICK_SIZE = {"nobs": 100, "k_eqs": 300, "n_exog": 3, "rank": 4}


def _heading(text: str) -> None:
    print()
    print(text)
    print("=" * len(text))


def _say(text: str) -> None:
    print(textwrap.fill(text, width=88))


def _print_test(label: str, compute) -> None:
    """Print a covariance-structure test, or why it is not defined for this fit."""
    print()
    try:
        print(compute())
    except ValueError as exc:
        print(f"{label}: not defined here ({exc})")


def grunfeld_demo() -> LowRankSURResults:
    """Fit the Grunfeld five-firm system with the rank chosen by BIC and print the report.

    Returns
    -------
    LowRankSURResults
        The fit at the BIC-selected rank.
    """
    _heading("1. Grunfeld investment data: 5 firms, 20 years (statsmodels data set)")
    formulas = grunfeld_formulas()
    for label, formula in formulas.items():
        print(f"  {label}: {formula}")
    model = LowRankSUR(formulas, grunfeld_wide())
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        # Ranks 3 and 4 over-fit five equations and may put a variance on its floor;
        # such warnings are reported below, after the table, instead of interrupting it.
        warnings.simplefilter("always")
        res = model.fit(rank="bic")
    elapsed = time.perf_counter() - t0
    print()
    _say(
        f"Rank selection by BIC (ranks 0..{res.rank_selection.index.max()} fitted in "
        f"{elapsed:.2f} s; rank 0 is a diagonal Sigma, rank K-1 = 4 an unrestricted one):"
    )
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(res.rank_selection.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"Selected rank: {res.rank}")
    messages = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    if messages:
        print("Warnings raised while fitting the candidate ranks:")
        for m in messages:
            print(textwrap.fill(m, width=88, initial_indent="  ", subsequent_indent="    "))
    print(f"Heywood cases in the selected fit: {res.heywood or 'none'}")
    print()
    print(res.summary())
    _heading("Tests of the error covariance structure")
    _print_test("Breusch-Pagan LM test", res.breusch_pagan)
    _print_test("LR test against a diagonal Sigma", res.lr_test_diagonal)
    _print_test("LR test against an unrestricted Sigma", res.lr_test_unrestricted)
    return res


def large_k_demo(
    nobs: int, k_eqs: int, n_exog: int, rank: int, seed: int = 2026
) -> LowRankSURResults:
    """Fit a simulated system with ``k_eqs`` equations and ``nobs`` observations and report.

    Parameters
    ----------
    nobs, k_eqs, n_exog, rank : int
        Observations N, equations K, regressors per equation p (constant included)
        and factors k of the simulated system; the fit uses the true rank.
    seed : int
        Random seed of :func:`~lowrank_sur.simulate_sur`.

    Returns
    -------
    LowRankSURResults
        The fit.
    """
    _heading(
        f"2. Simulated system with more equations than observations: "
        f"K={k_eqs}, N={nobs}, p={n_exog}, k={rank}"
    )
    sim = simulate_sur(nobs, k_eqs, n_exog, rank, seed=seed)
    width = len(str(k_eqs - 1))
    equations = {f"y{j:0{width}d}": (sim.Y[:, j], sim.Xs[j]) for j in range(k_eqs)}
    model = LowRankSUR(equations)
    n_params = model.k_params
    n_cov = k_eqs * rank - rank * (rank - 1) // 2 + k_eqs
    if k_eqs >= nobs:
        _say(
            f"Classic SUR estimates Sigma by R'R/N from N={nobs} residual rows: a K x K matrix "
            f"of rank at most {nobs} < K={k_eqs}, so it is singular and feasible GLS is "
            f"undefined. The low-rank model has {n_cov:,} covariance parameters instead of "
            f"{k_eqs * (k_eqs + 1) // 2:,}."
        )
    _say(
        f"For scale: one dense K x K array takes {k_eqs**2 * 8 / 1e6:.1f} MB and one "
        f"P x P array (P={n_params} coefficients) {n_params**2 * 8 / 1e6:.1f} MB; "
        f"the data (Y and the regressors) take {(1 + n_exog) * nobs * k_eqs * 8 / 1e6:.1f} MB."
    )

    t0 = time.perf_counter()
    res = model.fit(rank=rank)
    fit_time = time.perf_counter() - t0
    # Memory in a second, traced run of the same fit (tracemalloc slows allocation).
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    model.fit(rank=rank)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()

    print(
        f"Fit time (ALS, rank {rank}): {fit_time:.2f} s  "
        f"({res.iterations} sweeps, converged={res.converged}, llf={res.llf:.4f})"
    )
    _say(
        f"Peak memory of the fit (tracemalloc peak above the inputs, separate traced run): "
        f"{peak / 1e6:.1f} MB"
    )
    est = np.asarray(res.params)
    truth = np.concatenate(sim.coefs)
    rmse = float(np.sqrt(np.mean((est - truth) ** 2)))
    true_var = sim.cov.diag()
    var_err = float(np.median(np.abs(res.error_cov.diag() - true_var) / true_var))
    _say(
        f"Against the truth: coefficient RMSE {rmse:.4f}; median relative error of the "
        f"error variances Sigma_jj {var_err:.3f}"
    )

    t0 = time.perf_counter()
    bse = np.asarray(res.bse)
    bse_time = time.perf_counter() - t0
    print(
        f"Time to get all {bse.size} standard errors: {bse_time:.2f} s "
        f"(median {np.median(bse):.4f})"
    )

    fs = res.factor_summary()
    share = fs.attrs["factor_share"]
    print()
    _say(
        "Factor summary, first rows (canonical loadings; share of total error variance "
        "by factor: " + ", ".join(f"{v:.1%}" for v in share.to_numpy()) + "):"
    )
    with pd.option_context("display.width", 140, "display.max_columns", 20):
        print(fs.head(8).to_string(float_format=lambda v: f"{v:.3f}"))
    _report_loadings_recovery(res.error_cov, sim.cov)
    return res


def _report_loadings_recovery(fitted: LowRankCovariance, true: LowRankCovariance) -> None:
    """Print how well the fitted factor space matches the true one (rotation-free)."""
    if fitted.F.shape[1] == 0:
        return
    qa, _ = np.linalg.qr(fitted.F)
    qb, _ = np.linalg.qr(true.F)
    cosines = np.linalg.svd(qa.T @ qb, compute_uv=False)
    _say(
        "Cosines of the principal angles between fitted and true loading spaces: "
        + ", ".join(f"{c:.4f}" for c in cosines)
    )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lowrank_sur",
        description="Demo of low-rank SUR: the Grunfeld system and a large simulated one.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller simulated system (K=300, N=100) for a fast run",
    )
    parser.add_argument("--seed", type=int, default=2026, help="seed of the simulated system")
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=0,
        help="run with this many BLAS threads (default 0: leave the environment as it is; "
        "the library already runs its dense work on one thread)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.
    """
    args = _parse_args(argv)
    t0 = time.perf_counter()
    blas = {v: os.environ[v] for v in BLAS_THREAD_VARS if v in os.environ}
    print("lowrank_sur demo: SUR with Sigma = F F' + diag(D), fitted by maximum likelihood")
    print(f"BLAS thread settings: {blas or 'library defaults'} (lowrank_sur runs its own "
          "dense work with one BLAS thread)")
    grunfeld_demo()
    size = QUICK_SIZE if args.quick else FULL_SIZE
    large_k_demo(seed=args.seed, **size)
    print(f"\nTotal demo time: {time.perf_counter() - t0:.1f} s")
    return 0


def _reexec_with_blas_threads(argv: Sequence[str]) -> int | None:
    """Run the demo in a child process whose BLAS library starts with the requested threads.

    BLAS libraries read their thread count when NumPy loads them, which has happened
    by the time this module runs, so the setting only takes effect in a new process.
    Returns the child's exit status, or None when no new process is needed.
    """
    args = _parse_args(argv)
    wanted = str(args.blas_threads)
    if (
        args.blas_threads <= 0
        or os.environ.get(_REEXEC_MARKER)
        or all(os.environ.get(v) == wanted for v in BLAS_THREAD_VARS)
    ):
        return None
    env = dict(os.environ)
    env.update({v: wanted for v in BLAS_THREAD_VARS})
    env[_REEXEC_MARKER] = "1"
    cmd = [sys.executable, "-m", "lowrank_sur", *argv]
    sys.stdout.flush()
    if os.name == "posix":
        os.execve(sys.executable, cmd, env)
    return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    status = _reexec_with_blas_threads(sys.argv[1:])
    sys.exit(main() if status is None else status)
