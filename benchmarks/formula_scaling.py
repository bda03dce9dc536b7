"""Building a large model from formulas against fitting it: panel, dict of formulas, pairs.

Each case runs in a fresh subprocess in the default configuration (no BLAS thread
variable set), the cases interleaved over ``--rounds``; every record has the machine's
load average at its start. Per case the child times, on one simulated panel
(N times, K entities, p = 3 regressors with the constant, k = 4 factors):

* ``panel``: ``LowRankSUR.from_panel("y ~ x1 + x2", long)`` (build), ``fit(rank=4)``
  and every standard error (``results.bse``), with the peak resident memory of the
  child (``ru_maxrss``);
* ``dict``: the same data wide, ``LowRankSUR({e: "y_e ~ x1_e + x2_e"}, wide)``;
* ``pairs``: the same system as ``(endog, exog)`` arrays;
* ``fit`` and ``alsgls`` (with ``--alsgls-python``): ``fit_arrays(Xs, Y, 4)`` against
  ``alsgls.als_gls(Xs, Y, 4)`` with its defaults, both in the default configuration,
  best of 3 after a warm-up.

The wall times are the targets; the CPU times of the process (``cpu``) are recorded
too, because on a shared machine the wall time grows with the load.

Usage::

    python benchmarks/formula_scaling.py [--quick] [--rounds 2] [--output FILE]
        [--alsgls-python PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

GRID = [("panel", 10000, 500), ("panel", 5000, 300), ("dict", 5000, 300),
        ("pairs", 5000, 300), ("fit", 1000, 300), ("alsgls", 1000, 300)]
QUICK = [("panel", 50, 60), ("dict", 50, 60), ("pairs", 50, 60), ("fit", 50, 60),
         ("alsgls", 50, 60)]


def _arrays(K: int, N: int, seed: int = 0):
    """Regressors (x1, x2: K x N), responses (K x N) with 4 factors in the errors."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=(K, N)), rng.normal(size=(K, N))
    F = rng.normal(size=(K, 4))
    y = 1.0 + x1 - 0.5 * x2 + F @ rng.normal(size=(4, N)) + rng.normal(size=(K, N))
    return x1, x2, y


def _data(K: int, N: int, seed: int = 0):
    import pandas as pd

    x1, x2, y = _arrays(K, N, seed)
    index = pd.MultiIndex.from_product([[f"e{j:05d}" for j in range(K)], range(N)],
                                       names=["entity", "time"])
    return pd.DataFrame({"y": y.ravel(), "x1": x1.ravel(), "x2": x2.ravel()}, index=index)


def child_fit(case: str, K: int, N: int) -> dict:
    """``fit_arrays`` or alsgls on the same arrays: best of 3 after a warm-up."""
    import numpy as np

    x1, x2, y = _arrays(K, N)
    Xs = [np.column_stack([np.ones(N), x1[j], x2[j]]) for j in range(K)]
    Y = np.ascontiguousarray(y.T)
    if case == "alsgls":
        from alsgls import als_gls

        def run():
            return als_gls(Xs, Y, 4)
    else:
        from lowrank_sur import fit_arrays

        def run():
            return fit_arrays(Xs, Y, 4)
    run()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {"case": case, "K": K, "N": N, "fit": min(times), "times": times}


def child(case: str, K: int, N: int) -> dict:
    """One measurement (in this process): build, fit and bse times, peak RSS."""
    import resource

    import numpy as np

    if case in ("fit", "alsgls"):
        return child_fit(case, K, N)

    from lowrank_sur import LowRankSUR

    long = _data(K, N)
    t0, c0 = time.perf_counter(), time.process_time()
    if case == "panel":
        model = LowRankSUR.from_panel("y ~ x1 + x2", long)
    elif case == "dict":
        wide = long.unstack(level=0)
        wide.columns = [f"{c}_{e}" for c, e in wide.columns]
        ents = long.index.levels[0]
        t0, c0 = time.perf_counter(), time.process_time()
        model = LowRankSUR({e: f"y_{e} ~ x1_{e} + x2_{e}" for e in ents}, wide)
    else:
        ents = long.index.levels[0]
        arrays = {c: long[c].to_numpy().reshape(K, N) for c in long.columns}
        ones = np.ones(N)
        eqs = {e: (arrays["y"][j], np.column_stack([ones, arrays["x1"][j], arrays["x2"][j]]))
               for j, e in enumerate(ents)}
        t0, c0 = time.perf_counter(), time.process_time()
        model = LowRankSUR(eqs)
    t_build, c_build = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    res = model.fit(rank=4)
    t_fit, c_fit = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    bse = np.asarray(res.bse)
    t_bse, c_bse = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GB (Linux: kB)
    return {"case": case, "K": K, "N": N, "build": t_build, "fit": t_fit, "bse": t_bse,
            "total": t_build + t_fit + t_bse, "peak_rss_gb": rss,
            "cpu": {"build": c_build, "fit": c_fit, "bse": c_bse},
            "finite_bse": bool(np.isfinite(bse).all())}


def _line(rec: dict) -> str:
    if rec["case"] in ("fit", "alsgls"):
        return f"{rec['case']:>6} K={rec['K']:>6} N={rec['N']:>4} fit {rec['fit']:7.3f} s"
    return (f"{rec['case']:>6} K={rec['K']:>6} N={rec['N']:>4} build {rec['build']:7.2f} s  "
            f"fit {rec['fit']:6.2f} s  bse {rec['bse']:6.2f} s  total {rec['total']:6.2f} s  "
            f"peak {rec['peak_rss_gb']:.2f} GB")


def run(grid, rounds: int, alsgls_python: str | None = None) -> list[dict]:
    records = []
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    for r in range(rounds):
        for case, K, N in grid:
            if case == "alsgls" and not alsgls_python:
                continue
            load = os.getloadavg()[0]
            python = alsgls_python if case == "alsgls" else sys.executable
            out = subprocess.run(
                [python, __file__, "--child", f"{case},{K},{N}"],
                capture_output=True, text=True, env=env, check=True,
            )
            rec = json.loads(out.stdout.strip().splitlines()[-1])
            rec.update(round=r, load=load)
            records.append(rec)
            print(f"{_line(rec)}  load {load:.2f}", flush=True)
    return records


def render(records: list[dict]) -> str:
    """Markdown tables: per case, the median over rounds (and the range) of each time."""
    import statistics

    def cell(recs, get, fmt="{:.2f}"):
        vals = [get(r) for r in recs]
        med = statistics.median(vals)
        return fmt.format(med) + (f" ({fmt.format(min(vals))}-{fmt.format(max(vals))})"
                                  if len(vals) > 1 else "")

    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["case"], r["K"], r["N"]), []).append(r)
    lines = ["| case | K | N | build [s] | fit [s] | all bse [s] | total [s] | build / fit "
             "| peak RSS [GB] | CPU build / fit / bse [s] | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    fits = []
    for (case, K, N), recs in groups.items():
        load = cell(recs, lambda r: r["load"], "{:.1f}")
        if case in ("fit", "alsgls"):
            fits.append(f"| {case} | {K} | {N} | {cell(recs, lambda r: r['fit'], '{:.3f}')} "
                        f"| {load} |")
            continue
        timed = [r for r in recs if "cpu" in r]
        cpu = "{:.2f} / {:.2f} / {:.2f}".format(*(
            statistics.median(r["cpu"][k] for r in timed) for k in ("build", "fit", "bse"))
        ) if timed else "n/a"
        lines.append(
            f"| {case} | {K} | {N} | {cell(recs, lambda r: r['build'])} "
            f"| {cell(recs, lambda r: r['fit'])} | {cell(recs, lambda r: r['bse'])} "
            f"| {cell(recs, lambda r: r['total'])} "
            f"| {cell(recs, lambda r: r['build'] / r['fit'])} "
            f"| {cell(recs, lambda r: r['peak_rss_gb'])} | {cpu} | {load} |")
    if fits:
        lines += ["", "| case | K | N | fit, best of 3 [s] | load |", "|---|---|---|---|---|"]
        lines += fits
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one round (tests)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 2)")
    ap.add_argument("--output", help="write the records as JSON")
    ap.add_argument("--alsgls-python", help="interpreter with alsgls (the alsgls case)")
    ap.add_argument("--render", metavar="JSON", help="only print the tables of an earlier run")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.render:
        with open(args.render) as fh:
            print(render(json.load(fh)))
        return 0
    if args.child:
        case, K, N = args.child.split(",")
        print(json.dumps(child(case, int(K), int(N))))
        return 0
    rounds = args.rounds or (1 if args.quick else 2)
    records = run(QUICK if args.quick else GRID, rounds, args.alsgls_python)
    if args.output:
        with open(args.output, "w") as fh:
            json.dump(records, fh, indent=1)
    print(render(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
