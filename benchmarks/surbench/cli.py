"""Command-line parsers of ``compare_sur.py`` and ``core_scaling.py``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .methods import DEFAULT_METHODS, METHODS
from .presets import PRESETS


def _add_grid_options(parser: argparse.ArgumentParser) -> None:
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


def _add_cap_options(parser: argparse.ArgumentParser) -> None:
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


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--alsgls-python", default=None,
        help="interpreter whose environment has alsgls (default: this one)",
    )
    parser.add_argument(
        "--blas-threads", type=int, default=0,
        help="OPENBLAS/OMP/MKL_NUM_THREADS in the children (default 0: inherit the "
        "environment's setting, the configuration users have)",
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


def compare_parser() -> argparse.ArgumentParser:
    """The parser of ``compare_sur.py``."""
    parser = argparse.ArgumentParser(
        description=(
            "Benchmark SUR estimators (lowrank_sur ALS/EM, linearmodels SUR, a statsmodels "
            "GLS baseline, alsgls) on simulated systems with known truth; each fit runs in "
            "its own subprocess with time and memory caps."
        ),
        epilog="See the module docstring (top of this file) for the exact definitions.",
    )
    _add_grid_options(parser)
    _add_cap_options(parser)
    _add_run_options(parser)
    return parser


def scaling_parser(description: str) -> argparse.ArgumentParser:
    """The parser of ``core_scaling.py``."""
    parser = argparse.ArgumentParser(description=description)
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
        help="set OPENBLAS/OMP/MKL_NUM_THREADS before NumPy loads (script runs only; "
        "default: inherit the environment's setting)",
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--output", help="write the results as JSON to this file")
    return parser
