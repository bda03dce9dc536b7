"""Time and memory of every coefficient standard error at large K.

For N=300, p=3, k=4 and K in {500, 1000, 5000} (``--quick``: K in {100, 200}, N=60),
fits ``LowRankSUR`` with ALS and then measures, separately:

* the wall time of ``results.bse`` (all P = K p standard errors), and
* the tracemalloc peak of the same computation (a second, traced run),

next to the bytes one P x P array would need. Nothing here forms a K x K or P x P
array: the standard errors come from the N k x N k Woodbury system or, when P is the
smaller side, the P x P normal matrix, whichever costs fewer flops (see
``lowrank_sur/coefcov/nonrobust.py``). ``bse / fit`` is the ratio of the two times,
measured one after the other in this process (the issue's target: at most 1).

Usage::

    python benchmarks/bse_scaling.py [--quick] [--blas-threads N] [--k-eqs 20000 --nobs 500]
"""

from __future__ import annotations

import argparse
import sys

from surbench.blas import set_blas_threads


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny grid for the test suite")
    ap.add_argument("--blas-threads", type=int, default=None, help="limit BLAS threads")
    ap.add_argument("--k-eqs", type=int, nargs="+", help="numbers of equations (the grid)")
    ap.add_argument("--nobs", type=int, help="observations per equation (default 300)")
    args = ap.parse_args(argv)
    if args.blas_threads:
        set_blas_threads(args.blas_threads)  # before NumPy is imported

    import time
    import tracemalloc

    import numpy as np

    from lowrank_sur import LowRankSUR, simulate_sur

    grid = [100, 200] if args.quick else [500, 1000, 5000]
    nobs, p, k = (60, 3, 2) if args.quick else (300, 3, 4)
    grid = args.k_eqs or grid
    nobs = args.nobs or nobs
    print(f"N={nobs} p={p} k={k}")
    print(f"{'K':>6} {'P':>7} {'fit [s]':>8} {'bse [s]':>8} {'bse peak [MB]':>14} "
          f"{'P x P [MB]':>11} {'NaN SEs':>8} {'bse / fit':>10}")
    for K in grid:
        sim = simulate_sur(nobs, K, p, k, seed=K)
        eqs = {f"e{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(K)}
        model = LowRankSUR(eqs)
        t0 = time.perf_counter()
        res = model.fit(rank=k)
        t_fit = time.perf_counter() - t0
        inner = res._results
        t0 = time.perf_counter()
        bse = inner._coef_cov.bse()
        t_bse = time.perf_counter() - t0
        inner._coef_cov._blocks = None  # recompute under tracemalloc
        tracemalloc.start()
        inner._coef_cov.bse()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        P = bse.size
        print(f"{K:>6} {P:>7} {t_fit:>8.2f} {t_bse:>8.2f} {peak / 1e6:>14.1f} "
              f"{P * P * 8 / 1e6:>11.0f} {int(np.isnan(bse).sum()):>8} {t_bse / t_fit:>10.2f}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
