"""Building a large model from formulas against fitting it: panel, dict of formulas, pairs.

Each case runs in a fresh subprocess in the default configuration (no BLAS thread
variable set), the cases interleaved over ``--rounds``; every record has the machine's
load average at its start. Per case the child times, on one simulated panel
(N times, K entities, p = 3 regressors with the constant, k = 4 factors):

* ``panel``: ``LowRankSUR.from_panel("y ~ x1 + x2", long)`` (build), ``fit(rank=4)``
  and every standard error (``results.bse``), with the peak resident memory of the
  child (``ru_maxrss``);
* ``dict``: the same data wide, ``LowRankSUR({e: "y_e ~ x1_e + x2_e"}, wide)``;
* ``pairs``: the same system as ``(endog, exog)`` arrays.

Usage::

    python benchmarks/formula_scaling.py [--quick] [--rounds 2] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

GRID = [("panel", 10000, 500), ("panel", 5000, 300), ("dict", 5000, 300),
        ("pairs", 5000, 300)]
QUICK = [("panel", 50, 60), ("dict", 50, 60), ("pairs", 50, 60)]


def _data(K: int, N: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=(K, N)), rng.normal(size=(K, N))
    F = rng.normal(size=(K, 4))
    y = 1.0 + x1 - 0.5 * x2 + F @ rng.normal(size=(4, N)) + rng.normal(size=(K, N))
    index = pd.MultiIndex.from_product([[f"e{j:05d}" for j in range(K)], range(N)],
                                       names=["entity", "time"])
    return pd.DataFrame({"y": y.ravel(), "x1": x1.ravel(), "x2": x2.ravel()}, index=index)


def child(case: str, K: int, N: int) -> dict:
    """One measurement (in this process): build, fit and bse times, peak RSS."""
    import resource

    import numpy as np

    from lowrank_sur import LowRankSUR

    long = _data(K, N)
    t0 = time.perf_counter()
    if case == "panel":
        model = LowRankSUR.from_panel("y ~ x1 + x2", long)
    elif case == "dict":
        wide = long.unstack(level=0)
        wide.columns = [f"{c}_{e}" for c, e in wide.columns]
        ents = long.index.levels[0]
        t0 = time.perf_counter()
        model = LowRankSUR({e: f"y_{e} ~ x1_{e} + x2_{e}" for e in ents}, wide)
    else:
        ents = long.index.levels[0]
        arrays = {c: long[c].to_numpy().reshape(K, N) for c in long.columns}
        ones = np.ones(N)
        eqs = {e: (arrays["y"][j], np.column_stack([ones, arrays["x1"][j], arrays["x2"][j]]))
               for j, e in enumerate(ents)}
        t0 = time.perf_counter()
        model = LowRankSUR(eqs)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = model.fit(rank=4)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    bse = np.asarray(res.bse)
    t_bse = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GB (Linux: kB)
    return {"case": case, "K": K, "N": N, "build": t_build, "fit": t_fit, "bse": t_bse,
            "total": t_build + t_fit + t_bse, "peak_rss_gb": rss,
            "finite_bse": bool(np.isfinite(bse).all())}


def run(grid, rounds: int) -> list[dict]:
    records = []
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    for r in range(rounds):
        for case, K, N in grid:
            load = os.getloadavg()[0]
            out = subprocess.run(
                [sys.executable, __file__, "--child", f"{case},{K},{N}"],
                capture_output=True, text=True, env=env, check=True,
            )
            rec = json.loads(out.stdout.strip().splitlines()[-1])
            rec.update(round=r, load=load)
            records.append(rec)
            print(f"{case:>6} K={K:>6} N={N:>4} build {rec['build']:7.2f} s  fit "
                  f"{rec['fit']:6.2f} s  bse {rec['bse']:6.2f} s  total {rec['total']:6.2f} s"
                  f"  peak {rec['peak_rss_gb']:.2f} GB  load {load:.2f}", flush=True)
    return records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one round (tests)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 2)")
    ap.add_argument("--output", help="write the records as JSON")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        case, K, N = args.child.split(",")
        print(json.dumps(child(case, int(K), int(N))))
        return 0
    rounds = args.rounds or (1 if args.quick else 2)
    records = run(QUICK if args.quick else GRID, rounds)
    if args.output:
        with open(args.output, "w") as fh:
            json.dump(records, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
