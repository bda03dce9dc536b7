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

``--compare-threads 1,2`` then times ``bse`` again with the library's own BLAS limit
(:data:`lowrank_sur.threads.LIBRARY_BLAS_THREADS`, one thread by default) set to each
count in turn, ``--rounds`` interleaved rounds, with the load average beside each time:
whether the large products of the N k x N k route gain from more threads.

Usage::

    python benchmarks/bse_scaling.py [--quick] [--blas-threads N] [--k-eqs 20000 --nobs 500]
        [--compare-threads 1,2 --rounds 2]
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
    ap.add_argument("--compare-threads", help="comma-separated BLAS thread counts for bse")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of --compare-threads")
    ap.add_argument("--cpu-times", action="store_true",
                    help="also print the CPU times of the fit and of bse (a loaded machine)")
    args = ap.parse_args(argv)
    if args.blas_threads:
        set_blas_threads(args.blas_threads)  # before NumPy is imported

    import os
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
        t0, c0 = time.perf_counter(), time.process_time()
        res = model.fit(rank=k)
        t_fit, c_fit = time.perf_counter() - t0, time.process_time() - c0
        inner = res._results
        t0, c0 = time.perf_counter(), time.process_time()
        bse = inner._coef_cov.bse()
        t_bse, c_bse = time.perf_counter() - t0, time.process_time() - c0
        inner._coef_cov._blocks = None  # recompute under tracemalloc
        tracemalloc.start()
        inner._coef_cov.bse()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        P = bse.size
        print(f"{K:>6} {P:>7} {t_fit:>8.2f} {t_bse:>8.2f} {peak / 1e6:>14.1f} "
              f"{P * P * 8 / 1e6:>11.0f} {int(np.isnan(bse).sum()):>8} {t_bse / t_fit:>10.2f}")
        if args.cpu_times:
            print(f"  CPU time: fit {c_fit:.2f} s, bse {c_bse:.2f} s, bse / fit "
                  f"{c_bse / c_fit:.2f}; load average {os.getloadavg()[0]:.1f}")
        sys.stdout.flush()
        if args.compare_threads:
            _compare_threads(inner._coef_cov, bse, args.compare_threads, args.rounds)
    return 0


def _compare_threads(est, ref, counts: str, rounds: int) -> None:
    """Time ``est.bse()`` with the library's BLAS limit at each count, interleaved."""
    import os
    import time

    import numpy as np

    from lowrank_sur import threads

    for r in range(rounds):
        for n in (int(c) for c in counts.split(",")):
            threads.LIBRARY_BLAS_THREADS = n
            est._blocks = None
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            bse = est.bse()
            wall = time.perf_counter() - t0
            threads.LIBRARY_BLAS_THREADS = 1
            diff = float(np.max(np.abs(bse - ref) / np.abs(ref)))
            print(f"  round {r}, {n} BLAS thread(s): bse {wall:.2f} s (load {load:.1f}, "
                  f"max rel. difference {diff:.1e})")
            sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
