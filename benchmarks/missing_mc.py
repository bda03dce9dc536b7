"""Missing responses by FIML: Monte Carlo against the truth, and the cost of the missing cells.

Two parts, both seeded:

``mc``
    Cells missing completely at random (MCAR) at each rate, K equations, known truth
    (:func:`lowrank_sur.simulate_sur`). For each replication: the FIML fit
    (``missing="fiml"``, the true rank) and, for comparison, listwise deletion
    (``missing="drop"``, when enough complete rows are left to fit it) and OLS on each
    equation's own rows (the FIML fit at rank 0). Reported per (K, rate): the mean
    bias of the slope coefficients in units of their standard deviation across
    replications, the coverage of the nominal 95% intervals (all coefficients), and
    the RMSE ratios FIML / listwise and FIML / own-rows OLS (below 1: FIML is better).
``perf``
    K=2000, N=300, p=3, k=4 with 5% of the cells missing: fit time of ``missing="fiml"``
    against the complete-data fit of the same responses (both measured in this run,
    side by side: after a warm-up, ``rounds`` interleaved pairs, the median ratio), and
    the tracemalloc peak of the FIML fit against the bytes of the data (responses and
    regressors).

Usage::

    python benchmarks/missing_mc.py --preset quick|full [--output-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

from lowrank_sur import simulate_sur
from lowrank_sur.design import SURDesign
from lowrank_sur.fitters import fit_design

PRESETS = {
    "quick": {"k_eqs": [10], "rates": [0.05, 0.2], "nobs": 80, "reps": 4, "rank": 2,
              "n_exog": 3, "perf": {"k_eqs": 200, "nobs": 100, "n_exog": 3, "rank": 2,
                                    "rate": 0.05}},
    "full": {"k_eqs": [50, 500], "rates": [0.01, 0.05, 0.2], "nobs": 300, "reps": 20,
             "rank": 4, "n_exog": 3, "perf": {"k_eqs": 2000, "nobs": 300, "n_exog": 3,
                                              "rank": 4, "rate": 0.05, "rounds": 5}},
}

Z95 = 1.959963984540054


def masked(sim, obs):
    """Zero-filled responses and regressors and the design of an incomplete system."""
    Y = np.where(obs, sim.Y, 0.0)
    Xs = [np.where(obs[:, [j]], X, 0.0) for j, X in enumerate(sim.Xs)]
    return Y, Xs, SURDesign(Xs, observed=obs)


def fiml_fit(sim, obs, rank, dfk=False):
    """FIML estimates and standard errors (through the model's covariance estimator).

    ``dfk``: also the standard errors of ``debiased=True``
    (:func:`lowrank_sur.coefcov.smallsample.debiased_record`: with each equation's
    observed count ``n_j`` for N, ``F_j`` scaled by ``sqrt(n_j / (n_j - p_j))`` and
    ``D_j`` by ``n_j / (n_j - p_j - k)``).
    """
    from lowrank_sur.coefcov.fiml import FIMLNonrobustCovariance
    from lowrank_sur.coefcov.smallsample import debiased_record

    Y, _, design = masked(sim, obs)
    rec = fit_design(design, Y, rank)
    bse = FIMLNonrobustCovariance(design, Y, rec).bse()
    if not dfk:
        return np.concatenate(rec.coefs), bse, rec
    bse_dfk = FIMLNonrobustCovariance(design, Y, debiased_record(rec, design)).bse()
    return np.concatenate(rec.coefs), (bse, bse_dfk), rec


def listwise_fit(sim, obs, rank):
    """Listwise deletion: the complete-data fit on the complete rows (None if too few)."""
    rows = obs.all(axis=1)
    n = int(rows.sum())
    if n < max(3 * sim.Xs[0].shape[1], rank + 5, 10):
        return None, n
    rec = fit_design(SURDesign([X[rows] for X in sim.Xs]), sim.Y[rows], rank)
    return np.concatenate(rec.coefs), n


def _replication(k_eqs, rate, cfg, seed, rep):
    """One replication: FIML, own-rows OLS and listwise errors, and the FIML coverage."""
    sim = simulate_sur(nobs=cfg["nobs"], k_eqs=k_eqs, n_exog=cfg["n_exog"],
                       rank=cfg["rank"], seed=seed + 1000 * rep)
    rng = np.random.default_rng(seed + 1000 * rep + 1)
    obs = rng.random(sim.Y.shape) >= rate
    obs[~obs.any(axis=1), 0] = True
    if obs.all():
        obs[0, 0] = False
    truth = np.concatenate(sim.coefs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b, (bse, bse_dfk), rec = fiml_fit(sim, obs, cfg["rank"], dfk=True)
        b0 = blw = None
        n = int(obs.all(axis=1).sum())
        if not cfg.get("fiml_only"):
            b0, _, _ = fiml_fit(sim, obs, 0)
            blw, n = listwise_fit(sim, obs, cfg["rank"])
    df = int(obs.sum()) - truth.size  # df_resid = observed cells - P (for use_t)
    return {"err": b - truth, "z": np.abs(b - truth) / bse, "df": df,
            "z_dfk": np.abs(b - truth) / bse_dfk,
            "err_ols": None if b0 is None else b0 - truth,
            "err_lw": None if blw is None else blw - truth,
            "n_complete": n, "converged": rec.converged, "heywood": int(rec.heywood.size)}


def _share_and_se(hits: np.ndarray) -> tuple[float, float]:
    """Pooled share and its Monte Carlo s.e.: the s.d. over replications of the
    per-replication share / sqrt(reps) (intervals within a replication are correlated)."""
    per_rep = hits.mean(axis=1)
    return float(per_rep.mean()), float(per_rep.std(ddof=1) / np.sqrt(per_rep.size))


def mc_cell(k_eqs, rate, cfg, seed):
    """One (K, rate) cell: bias, coverage (with its Monte Carlo s.e.) and RMSE ratios."""
    from scipy import stats

    reps = [_replication(k_eqs, rate, cfg, seed, rep) for rep in range(cfg["reps"])]
    E = np.array([r["err"] for r in reps])  # reps x P
    Z = np.array([r["z"] for r in reps])
    R = len(reps)
    p = cfg["n_exog"]
    slopes = np.tile(np.arange(p) > 0, k_eqs)
    sd = E.std(axis=0, ddof=1)
    tbias = E.mean(axis=0) / (sd / np.sqrt(R))  # per coefficient, t(R-1) when unbiased
    rmse = float(np.sqrt(np.mean(E**2)))
    lw = [r["err_lw"] for r in reps if r["err_lw"] is not None]
    cov, cov_se = _share_and_se(Z <= Z95)
    cov_sl, cov_sl_se = _share_and_se(Z[:, slopes] <= Z95)
    tq = stats.t.ppf(0.975, np.array([r["df"] for r in reps]))[:, None]
    cov_t, cov_t_se = _share_and_se(Z <= tq)
    cov_dfk, cov_dfk_se = _share_and_se(np.array([r["z_dfk"] for r in reps]) <= Z95)
    ols = [r["err_ols"] for r in reps if r["err_ols"] is not None]
    return {
        "k_eqs": k_eqs, "rate": rate, "reps": R, "nobs": cfg["nobs"],
        "converged": int(sum(r["converged"] for r in reps)),
        "heywood_reps": int(sum(r["heywood"] > 0 for r in reps)),
        "bias_in_sd_mean_abs": float(np.mean(np.abs(E.mean(axis=0)[slopes] / sd[slopes]))),
        # with no bias, |mean error / sd| has expectation about sqrt(2 / pi / reps)
        "bias_in_sd_null_level": float(np.sqrt(2.0 / np.pi / R)),
        # mean over coefficients of the squared t-statistic of the mean error:
        # (R - 1) / (R - 3) when unbiased
        "bias_t2_mean": float(np.mean(tbias**2)),
        "bias_t2_null": (R - 1) / (R - 3) if R > 3 else float("nan"),
        "bias_t_max_abs": float(np.max(np.abs(tbias))),
        "coverage95": cov, "coverage95_se": cov_se,
        "coverage95_slopes": cov_sl, "coverage95_slopes_se": cov_sl_se,
        "coverage95_use_t": cov_t, "coverage95_use_t_se": cov_t_se,
        "coverage95_dfk": cov_dfk, "coverage95_dfk_se": cov_dfk_se,
        "rmse_fiml": rmse,
        "rmse_ratio_vs_own_rows_ols": (rmse / float(np.sqrt(np.mean(np.array(ols) ** 2)))
                                       if ols else None),
        "rmse_ratio_vs_listwise": (rmse / float(np.sqrt(np.mean(np.array(lw) ** 2)))
                                   if lw and len(lw) == R else None),
        "listwise_reps_fitted": len(lw),
        "complete_rows_mean": float(np.mean([r["n_complete"] for r in reps])),
    }


def perf(cfg, seed):
    """Time ratio FIML / complete data and the FIML tracemalloc peak / data bytes."""
    sim = simulate_sur(nobs=cfg["nobs"], k_eqs=cfg["k_eqs"], n_exog=cfg["n_exog"],
                       rank=cfg["rank"], seed=seed)
    rng = np.random.default_rng(seed + 1)
    obs = rng.random(sim.Y.shape) >= cfg["rate"]
    Y, Xs, design = masked(sim, obs)
    full = SURDesign(sim.Xs)
    data_bytes = Y.nbytes + sum(X.nbytes for X in Xs)
    times_c, times_f = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_design(full, sim.Y, cfg["rank"])  # warm-up (imports, first calls)
        for _ in range(cfg.get("rounds", 1)):  # interleaved: both see the same load
            t0 = time.perf_counter()
            rc = fit_design(full, sim.Y, cfg["rank"])
            times_c.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            rm = fit_design(design, Y, cfg["rank"])
            times_f.append(time.perf_counter() - t0)
        tracemalloc.start()
        try:
            fit_design(design, Y, cfg["rank"])
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    ratios = [f / c for f, c in zip(times_f, times_c)]
    return {**cfg, "time_complete_s": float(np.median(times_c)),
            "time_fiml_s": float(np.median(times_f)), "times_complete_s": times_c,
            "times_fiml_s": times_f, "time_ratios": ratios,
            "time_ratio": float(np.median(ratios)), "fiml_converged": rm.converged,
            "fiml_iterations": rm.iterations, "complete_converged": rc.converged,
            "llf_fiml": rm.llf, "llf_complete": rc.llf,
            "peak_bytes": peak, "data_bytes": data_bytes, "peak_ratio": peak / data_bytes,
            "loadavg": os.getloadavg()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    ap.add_argument("--output-dir", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=20261202)
    ap.add_argument("--reps", type=int, default=None, help="override the replications")
    ap.add_argument("--k-eqs", type=int, nargs="*", default=None, help="override K")
    ap.add_argument("--skip-perf", action="store_true")
    ap.add_argument("--skip-mc", action="store_true")
    ap.add_argument("--fiml-only", action="store_true",
                    help="skip the own-rows OLS and listwise fits (coverage only)")
    ap.add_argument("--rates", type=float, nargs="*", default=None, help="override the rates")
    ap.add_argument("--name", default=None, help="output file stem (default missing_mc_PRESET)")
    args = ap.parse_args(argv)
    cfg = dict(PRESETS[args.preset])
    if args.reps:
        cfg["reps"] = args.reps
    if args.k_eqs:
        cfg["k_eqs"] = args.k_eqs
    if args.rates:
        cfg["rates"] = args.rates
    cfg["fiml_only"] = args.fiml_only
    rows: list = []
    out = {"preset": args.preset, "config": {k: v for k, v in cfg.items() if k != "perf"},
           "seed": args.seed, "mc": rows, "python": sys.version.split()[0],
           "loadavg_start": os.getloadavg()}
    print("| K | rate | reps | conv | mean abs bias/sd | mean bias t^2 | coverage95 "
          "| coverage95 (t) | coverage95 (dfk) | RMSE FIML/listwise | RMSE FIML/own-rows OLS "
          "| complete rows |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for k_eqs in [] if args.skip_mc else cfg["k_eqs"]:
        for rate in cfg["rates"]:
            t0 = time.perf_counter()
            r = mc_cell(k_eqs, rate, cfg, args.seed)
            r["seconds"], r["loadavg"] = time.perf_counter() - t0, os.getloadavg()
            rows.append(r)
            lw = r["rmse_ratio_vs_listwise"]
            print(f"| {k_eqs} | {rate:.2f} | {r['reps']} | {r['converged']} | "
                  f"{r['bias_in_sd_mean_abs']:.3f} | {r['bias_t2_mean']:.3f} | "
                  f"{r['coverage95']:.4f} ± {r['coverage95_se']:.4f} | "
                  f"{r['coverage95_use_t']:.4f} | "
                  f"{r['coverage95_dfk']:.4f} ± {r['coverage95_dfk_se']:.4f} | "
                  f"{'infeasible' if lw is None else f'{lw:.3f}'} | "
                  f"{_fmt(r['rmse_ratio_vs_own_rows_ols'])} | {r['complete_rows_mean']:.1f} |",
                  flush=True)
            _write(args, out)
    print(f"(mean abs bias/sd has expectation {np.sqrt(2 / np.pi / cfg['reps']):.3f} and "
          "mean bias t^2 (R-1)/(R-3) when the estimates are unbiased)")
    if not args.skip_perf:
        p = perf(cfg["perf"], args.seed)
        out["perf"] = p
        print(f"perf K={p['k_eqs']} N={p['nobs']} p={p['n_exog']} k={p['rank']} "
              f"{p['rate']:.0%} missing: time FIML {p['time_fiml_s']:.2f}s / complete "
              f"{p['time_complete_s']:.2f}s = {p['time_ratio']:.2f}x (median of "
              f"{len(p['time_ratios'])} pairs; range {min(p['time_ratios']):.2f}-"
              f"{max(p['time_ratios']):.2f}); tracemalloc peak "
              f"{p['peak_bytes'] / 1e6:.1f} MB / data {p['data_bytes'] / 1e6:.1f} MB = "
              f"{p['peak_ratio']:.2f}x; load {p['loadavg'][0]:.2f}")
    _write(args, out)
    return 0


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _write(args, out) -> None:
    """The results so far, as JSON in ``--output-dir`` (rewritten after each cell)."""
    if args.output_dir:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        name = args.name or f"missing_mc_{args.preset}"
        (args.output_dir / f"{name}.json").write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    raise SystemExit(main())
