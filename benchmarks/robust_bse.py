"""Time and memory of robust, HAC and clustered standard errors against the nonrobust ones.

Part 1, large K (N=300, p=3, k=4, K in {1000, 5000}; ``--quick``: N=60, k=2,
K in {100, 200}): fits ``LowRankSUR`` once with ALS, then for each ``cov_type``
(``nonrobust``, ``HC1``, ``HAC`` with ``maxlags=4``, one-way ``cluster`` on groups of
10 consecutive rows) builds the estimator and computes all P standard errors:

* the wall time of estimator construction plus ``bse()`` (median of ``--repeats``);
* the :mod:`tracemalloc` peak of the same computation (a separate, traced run);
* the ratio of the time to the nonrobust one.

Two more rows per K time the restricted sandwiches of a fit with q = 3 restrictions
imposed in estimation (``HC1`` and ``cluster`` with ``R``,
:class:`~lowrank_sur.constraints.ConstrainedSandwich`, the bread of the constrained
estimator): built on the same fit, since their cost does not depend on the coefficients
(2 q more CG solves and one pass over the scores).

Part 2, side by side with linearmodels at K <= 200 (K in {50, 100, 200}; ``--quick``:
{10, 20}): linearmodels' two-step ``SUR(...).fit(method="gls", cov_type=...)`` for
``unadjusted``, ``robust`` and ``clustered``; its covariance class (the one the fit runs)
timed and traced alone on the fitted residuals and Sigma, next to our time and peak for
the same covariance (``nonrobust``, ``HC0``, ``cluster``) on our ML fit. The fits are
different estimators of the coefficients; the comparison is of the covariance
computation (the linearmodels fit time is shown for scale).

Usage::

    python benchmarks/robust_bse.py [--quick] [--repeats R] [--output results.json]
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
from surbench.measure import MB, dist_version, git_state, loadavg
from surbench.report import md_row, md_rule, write_json

COV_TYPES = ("nonrobust", "HC1", "HAC", "cluster", "HC1+R", "cluster+R")
LM_TYPES = {"nonrobust": "unadjusted", "HC0": "robust", "cluster": "clustered"}


def _cov_kwds(cov_type: str, nobs: int) -> dict:
    groups = np.arange(nobs) // 10
    return {"HAC": {"maxlags": 4}, "cluster": {"groups": groups}}.get(cov_type, {})


def _timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall time of ``fn()`` over ``repeats`` runs and the traced peak of one more."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return float(np.median(times)), peak / MB


def _fit(nobs: int, k_eqs: int, p: int, k: int):
    from lowrank_sur import LowRankSUR, simulate_sur

    sim = simulate_sur(nobs, k_eqs, p, k, seed=k_eqs)
    model = LowRankSUR({f"e{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(k_eqs)})
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(rank=k)
    return sim, res._results, time.perf_counter() - t0


def _restrictions(P: int) -> np.ndarray:
    """q = 3 cross-equation restrictions (equal slopes of equations 0, 1 and K/2; a sum)."""
    R = np.zeros((3, P))
    R[0, [1, 4]] = 1.0, -1.0
    R[1, [1, 3 * (P // 6) + 1]] = 1.0, -1.0
    R[2, [2, P - 1]] = 1.0, 1.0
    return R


def _our_bse(inner, cov_type: str, repeats: int) -> tuple[float, float, np.ndarray]:
    from lowrank_sur.coefcov import get_cov_type
    from lowrank_sur.constraints import ConstrainedSandwich

    name, restricted = cov_type.removesuffix("+R"), cov_type.endswith("+R")
    cls = get_cov_type(name)
    kwds = _cov_kwds(name, inner.nobs)
    model = inner.model
    R = _restrictions(model.design.k_params) if restricted else None

    def run():
        est = cls(model.design, model._Y, inner._record, **kwds)
        return (ConstrainedSandwich(est, R) if restricted else est).bse()

    t, peak = _timed(run, repeats)
    return t, peak, run()


def part_large(grid, nobs, p, k, repeats) -> list[dict]:
    rows = []
    print(f"## Part 1: all P standard errors after an ALS fit (N={nobs}, p={p}, k={k})\n")
    print(md_row(["K", "P", "fit [s]", "cov_type", "bse [s]", "x nonrobust", "peak [MB]",
                  "P x P [MB]", "NaN SEs"]))
    print(md_rule(9))
    for K in grid:
        _, inner, t_fit = _fit(nobs, K, p, k)
        base = None
        for ct in COV_TYPES:
            t, peak, bse = _our_bse(inner, ct, repeats)
            base = t if base is None else base
            P = bse.size
            row = {"part": "large", "k_eqs": K, "k_params": P, "nobs": nobs, "rank": k,
                   "fit_s": t_fit, "cov_type": ct, "bse_s": t, "ratio": t / base,
                   "peak_mb": peak, "pxp_mb": P * P * 8 / MB,
                   "nan_se": int(np.isnan(bse).sum())}
            rows.append(row)
            print(md_row([K, P, f"{t_fit:.2f}", ct, f"{t:.3f}", f"{t / base:.2f}",
                          f"{peak:.1f}", f"{P * P * 8 / MB:.0f}", row["nan_se"]]))
            sys.stdout.flush()
    return rows


def _lm_covariances(sim, repeats: int) -> dict[str, tuple[float, float, float]]:
    """linearmodels' two-step GLS fit, then each of its covariance estimators timed alone.

    Returns, per linearmodels ``cov_type``: the fit time with that ``cov_type``, and the
    time and traced peak of its covariance class (``HomoskedasticCovariance``,
    ``HeteroskedasticCovariance``, ``ClusteredCovariance`` with ``gls=True``) given the
    fitted residuals and Sigma, which is what the fit runs to get the covariance.
    """
    from linearmodels.system import SUR
    from linearmodels.system import covariance as lmcov

    K, N = sim.Y.shape[1], sim.Y.shape[0]
    eqs = {f"e{j}": {"dependent": sim.Y[:, j], "exog": sim.Xs[j]} for j in range(K)}
    clusters = np.arange(N) // 10
    classes = {"unadjusted": (lmcov.HomoskedasticCovariance, {}),
               "robust": (lmcov.HeteroskedasticCovariance, {}),
               "clustered": (lmcov.ClusteredCovariance, {"clusters": clusters})}
    out = {}
    for lm_ct, (cls, extra) in classes.items():
        kw = {"clusters": clusters} if lm_ct == "clustered" else {}
        t0 = time.perf_counter()
        res = SUR(eqs).fit(method="gls", cov_type=lm_ct, **kw)
        t_fit = time.perf_counter() - t0
        x = [np.asarray(X, dtype=float) for X in sim.Xs]
        eps, sigma = np.asarray(res.resids, dtype=float), np.asarray(res.sigma, dtype=float)

        def run(cls=cls, extra=extra, x=x, eps=eps, sigma=sigma):
            return cls(x, eps, sigma, sigma, gls=True, **extra).cov

        t, peak = _timed(run, repeats)
        out[lm_ct] = (t_fit, t, peak)
    return out


def part_linearmodels(grid, nobs, p, k, repeats) -> list[dict]:
    rows = []
    print(f"\n## Part 2: side by side with linearmodels {dist_version('linearmodels')} "
          f"(N={nobs}, p={p}, k={k})\n")
    print(md_row(["K", "cov_type", "ours: bse [s]", "ours: peak [MB]",
                  "linearmodels: cov [s]", "linearmodels: cov peak [MB]",
                  "linearmodels: fit [s]"]))
    print(md_rule(7))
    for K in grid:
        sim, inner, _ = _fit(nobs, K, p, k)
        lm = _lm_covariances(sim, repeats)
        for ct, lm_ct in LM_TYPES.items():
            t, peak, _ = _our_bse(inner, ct, repeats)
            t_fit, lt, lpeak = lm[lm_ct]
            rows.append({"part": "linearmodels", "k_eqs": K, "nobs": nobs, "rank": k,
                         "cov_type": ct, "bse_s": t, "peak_mb": peak, "lm_cov_type": lm_ct,
                         "lm_cov_s": lt, "lm_cov_peak_mb": lpeak, "lm_fit_s": t_fit})
            print(md_row([K, ct, f"{t:.3f}", f"{peak:.1f}", f"{lt:.3f}", f"{lpeak:.1f}",
                          f"{t_fit:.2f}"]))
            sys.stdout.flush()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny grid for the test suite")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per cell")
    ap.add_argument("--output", type=Path, default=None, help="write the rows as JSON")
    args = ap.parse_args(argv)
    if args.quick:
        large, lm_grid, nobs, p, k, repeats = [100, 200], [10, 20], 60, 3, 2, 1
    else:
        large, lm_grid, nobs, p, k, repeats = [1000, 5000], [50, 100, 200], 300, 3, 4, 3
    repeats = args.repeats or repeats
    print(f"load average at start: {loadavg()}; lowrank_sur {git_state()}\n")
    rows = part_large(large, nobs, p, k, repeats)
    try:
        import linearmodels  # noqa: F401
    except ImportError:
        print("\nlinearmodels is not importable: part 2 skipped")
    else:
        rows += part_linearmodels(lm_grid, nobs, p, k, repeats)
    if args.output:
        write_json(args.output, {"rows": rows, "loadavg_at_end": loadavg(),
                                 "git": git_state(), "repeats": repeats,
                                 "versions": {d: dist_version(d) for d in
                                              ("numpy", "scipy", "linearmodels")}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
