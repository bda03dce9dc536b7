"""Calibration of lowrank_sur's inference: Monte Carlo with a known truth.

For each design (N, K, k) the script simulates ``reps`` systems with
:func:`lowrank_sur.simulate_sur` (p = 3 regressors per equation including the
constant, loadings N(0, 1), D ~ U(0.5, 1.5); replication r uses seed
``--seed + 1000 * design + r``) and measures, per inference option:

``coverage``
    share of nominal 95% intervals (``conf_int(0.05)``) of the slopes (all
    non-constant coefficients) that contain the true value;
``wald_size``
    rejection rate at 5% of the true joint restriction "the slopes of the first
    ``min(K, 5)`` equations equal their true values" (``wald_test``; F with
    ``use_t``);
``lr_boot_size`` / ``lr_chi2_size``
    rejection rate at 5% of the true null "rank k" against rank k + 1
    (``compare_lr_test``: the parametric bootstrap, and the chi2 reference kept only
    to show it is not valid), on the first ``lr_reps`` replications;
``lr_unres_size``
    rejection rate of ``lr_test_unrestricted()`` (Bartlett's factor with N - p) where
    the unrestricted maximum exists;
``select_<criterion>``
    share of replications where ``rank=<criterion>`` (candidates 0 .. k + 3)
    finds the true k.

Options: ``default`` (GLS covariance at the MLE, normal reference), ``debiased``
(Stata's dfk), ``debiased+use_t`` (dfk and t(N - p), ``t_df="equation"``), ``bootstrap+use_t``
(``cov_type="bootstrap"``, parametric bootstrap covariance, with t(N - p)), and
every fit with one start (``n_starts=1``); beside them
linearmodels' iterated GLS (``SUR(...).fit(method="gls", iterate=True,
cov_type="unadjusted")``, with and without ``debiased=True``) where it runs (K < N).

Usage::

    python benchmarks/calibration.py --preset quick --output-dir /tmp/calib
    nice python benchmarks/calibration.py --preset full --output-dir docs/calibration

Results are written after every design (``calibration.json``, ``calibration.md``,
``coverage.png``), so an interrupted full run keeps what finished.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from surbench.measure import loadavg, machine_info  # noqa: E402
from surbench.report import fmt, md_row, md_rule, write_json  # noqa: E402

from lowrank_sur import LowRankSUR, simulate_sur  # noqa: E402
from lowrank_sur.selection import choose_rank  # noqa: E402

#: Inference options of lowrank_sur: fit keywords.
OPTIONS = {
    "default": {},
    "debiased": {"debiased": True},
    "debiased+use_t": {"debiased": True, "use_t": True, "t_df": "equation"},
    "bootstrap+use_t": {"cov_type": "bootstrap", "use_t": True, "t_df": "equation"},
}

CRITERIA = ("aic", "bic", "ic_p1", "ic_p2", "er")

#: Options of every fit: one start (the principal-component start) to keep the Monte
#: Carlo affordable; the bootstrap refits inherit them.
FIT = {"n_starts": 1}

PRESETS = {
    "quick": {"designs": [[40, 5, 1]], "reps": 2, "lr_reps": 1, "n_boot_cov": 19,
              "n_boot_lr": 19, "select_designs": [[40, 5, 1]]},
    "full": {"designs": [[200, 20, 2], [100, 100, 3], [60, 120, 2]], "reps": 200,
             "lr_reps": 100, "n_boot_cov": 99, "n_boot_lr": 99,
             "select_designs": [[200, 20, 2], [100, 100, 3], [60, 120, 2], [40, 60, 2]]},
}


def _pairs(sim) -> dict:
    return {f"e{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(sim.Y.shape[1])}


def _slopes(sim) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the slope coefficients in params and their true values."""
    p = len(sim.coefs[0])
    idx = np.array([j * p + i for j in range(len(sim.coefs)) for i in range(1, p)])
    truth = np.concatenate([b for b in sim.coefs])
    return idx, truth


def _wald_restriction(sim) -> tuple[np.ndarray, np.ndarray]:
    idx, truth = _slopes(sim)
    P = truth.size
    rows = idx[: 2 * min(len(sim.coefs), 5)]
    R = np.zeros((rows.size, P))
    R[np.arange(rows.size), rows] = 1.0
    return R, truth[rows]


def _lowrank_inference(model, sim, rank, opts: dict, n_boot_cov: int) -> dict:
    kw = dict(opts)
    if kw.get("cov_type") == "bootstrap":
        kw["cov_kwds"] = {"n_boot": n_boot_cov, "seed": 0}
    res = model.fit(rank=rank, **FIT, **kw)
    idx, truth = _slopes(sim)
    ci = np.asarray(res.conf_int(0.05))[idx]
    covered = (ci[:, 0] <= truth[idx]) & (truth[idx] <= ci[:, 1])
    R, q = _wald_restriction(sim)
    w = res.wald_test((R, q), use_f=res.use_t, scalar=True)
    return {"coverage": float(np.mean(covered)), "wald_reject": float(w.pvalue) < 0.05}, res


def _linearmodels_inference(sim, debiased: bool) -> dict:
    from linearmodels.system import SUR

    eqs = {f"e{j}": {"dependent": sim.Y[:, j], "exog": sim.Xs[j]}
           for j in range(sim.Y.shape[1])}
    res = SUR(eqs).fit(method="gls", iterate=True, cov_type="unadjusted",
                       debiased=debiased, iter_limit=500)
    b = np.asarray(res.params)
    V = np.asarray(res.cov)
    idx, truth = _slopes(sim)
    se = np.sqrt(np.diag(V))[idx]
    z = stats.norm.ppf(0.975) if not debiased else stats.t.ppf(0.975, sim.Y.shape[0] - 3)
    covered = np.abs(b[idx] - truth[idx]) <= z * se
    R, q = _wald_restriction(sim)
    d = R @ b - q
    stat = float(d @ np.linalg.solve(R @ V @ R.T, d))
    if debiased:
        pv = stats.f.sf(stat / R.shape[0], R.shape[0], sim.Y.shape[0] - 3)
    else:
        pv = stats.chi2.sf(stat, R.shape[0])
    return {"coverage": float(np.mean(covered)), "wald_reject": pv < 0.05}


def _selection(model, rank: int) -> dict:
    res = model.fit(rank="bic", max_rank=min(rank + 3, model.k_eqs - 1, model.nobs - 1),
                    **FIT)
    return {c: choose_rank(res.rank_selection, c) == rank for c in CRITERIA}


def run_design(design, cfg, seed, design_no, log, save=None) -> dict:
    """Every measurement of one design (N, K, k); ``save(partial)`` after each replication."""
    N, K, k = design
    acc = {name: {"coverage": [], "wald_reject": []} for name in OPTIONS}
    lm_names = ["linearmodels-igls", "linearmodels-igls-debiased"] if K < N else []
    acc.update({name: {"coverage": [], "wald_reject": []} for name in lm_names})
    lr = {"boot": [], "chi2": [], "unres": []}
    select = {c: [] for c in CRITERIA}
    t0 = time.perf_counter()
    for r in range(cfg["reps"]):
        sim = simulate_sur(N, K, 3, k, seed=seed + 1000 * design_no + r)
        model = LowRankSUR(_pairs(sim))
        for name, opts in OPTIONS.items():
            out, res = _lowrank_inference(model, sim, k, opts, cfg["n_boot_cov"])
            for key, v in out.items():
                acc[name][key].append(v)
            if name == "default":
                base = res
        for name in lm_names:
            out = _linearmodels_inference(sim, debiased=name.endswith("debiased"))
            for key, v in out.items():
                acc[name][key].append(v)
        if r < cfg["lr_reps"]:
            big = model.fit(rank=k + 1, **FIT)
            lr["boot"].append(base.compare_lr_test(big, n_boot=cfg["n_boot_lr"],
                                                   seed=r).pvalue < 0.05)
            lr["chi2"].append(base.compare_lr_test(big, method="chi2").pvalue < 0.05)
            u = base.lr_test_unrestricted()
            if u.is_valid:
                lr["unres"].append(u.pvalue < 0.05)
        if list(design) in cfg["select_designs"]:
            for c, ok in _selection(model, k).items():
                select[c].append(ok)
        log(f"  N={N} K={K} k={k}: replication {r + 1}/{cfg['reps']} "
            f"({time.perf_counter() - t0:.0f} s)")
        if save is not None:
            save(_design_summary(design, acc, lr, select, time.perf_counter() - t0))
    return _design_summary(design, acc, lr, select, time.perf_counter() - t0)


def _design_summary(design, acc, lr, select, seconds) -> dict:
    def rate(v):
        return None if not v else float(np.mean(v))

    return {
        "nobs": design[0], "k_eqs": design[1], "rank": design[2],
        "options": {name: {"coverage": rate(a["coverage"]), "wald_size": rate(a["wald_reject"]),
                           "reps": len(a["coverage"])} for name, a in acc.items()},
        "lr_boot_size": rate(lr["boot"]), "lr_chi2_size": rate(lr["chi2"]),
        "lr_unres_size": rate(lr["unres"]), "lr_reps": len(lr["boot"]),
        "lr_unres_reps": len(lr["unres"]),
        "selection": {c: rate(v) for c, v in select.items()},
        "selection_reps": len(next(iter(select.values()))),
        "seconds": seconds,
    }


def select_only(design, cfg, seed, design_no, log, save=None) -> dict:
    """Rank-selection accuracy for a design measured for selection only."""
    N, K, k = design
    select = {c: [] for c in CRITERIA}
    t0 = time.perf_counter()
    for r in range(cfg["reps"]):
        sim = simulate_sur(N, K, 3, k, seed=seed + 1000 * design_no + r)
        for c, ok in _selection(LowRankSUR(_pairs(sim)), k).items():
            select[c].append(ok)
        log(f"  N={N} K={K} k={k} (selection): replication {r + 1}/{cfg['reps']}")
        if save is not None:
            save(_design_summary(design, {}, {"boot": [], "chi2": [], "unres": []}, select,
                                 time.perf_counter() - t0))
    return _design_summary(design, {}, {"boot": [], "chi2": [], "unres": []}, select,
                           time.perf_counter() - t0)


def markdown(rows: list[dict], cfg: dict) -> str:
    """The calibration tables."""
    lines = ["## Coverage of nominal 95% intervals (slopes) and Wald size at 5%", "",
             md_row(["N", "K", "k", "option", "reps", "coverage", "Wald size"]), md_rule(7)]
    for d in rows:
        for name, o in d["options"].items():
            lines.append(md_row([d["nobs"], d["k_eqs"], d["rank"], name, o["reps"],
                                 fmt(o["coverage"], ".3f"), fmt(o["wald_size"], ".3f")]))
    lines += ["", "## Likelihood-ratio tests: rejection rate of a true null at 5%", "",
              md_row(["N", "K", "k", "reps", "rank k vs k+1 bootstrap",
                      "rank k vs k+1 chi2 (not valid)", "vs unrestricted (reps)"]),
              md_rule(7)]
    for d in rows:
        if d["lr_reps"]:
            lines.append(md_row([d["nobs"], d["k_eqs"], d["rank"], d["lr_reps"],
                                 fmt(d["lr_boot_size"], ".3f"), fmt(d["lr_chi2_size"], ".3f"),
                                 f"{fmt(d['lr_unres_size'], '.3f')} ({d['lr_unres_reps']})"]))
    lines += ["", "## Rank selection: share of replications finding the true k", "",
              md_row(["N", "K", "k", "reps", *CRITERIA]), md_rule(4 + len(CRITERIA))]
    for d in rows:
        if d["selection_reps"]:
            lines.append(md_row([d["nobs"], d["k_eqs"], d["rank"], d["selection_reps"],
                                 *[fmt(d["selection"][c], ".3f") for c in CRITERIA]]))
    lines += ["", f"Bootstrap draws: {cfg['n_boot_cov']} (covariance), {cfg['n_boot_lr']} "
              "(LR tests). p = 3 regressors per equation, loadings N(0, 1), "
              "D ~ U(0.5, 1.5)."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> Path | None:
    """Coverage per option and design, with the 94-96% band."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a docs/benchmark extra
        return None
    rows = [d for d in rows if d["options"]]
    names = list(dict.fromkeys(n for d in rows for n in d["options"]))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        vals = [d["options"].get(name, {}).get("coverage") for d in rows]
        xs = [j + i * width for j, v in enumerate(vals) if v is not None]
        ax.bar(xs, [v for v in vals if v is not None], width, label=name)
    ax.axhspan(0.94, 0.96, color="grey", alpha=0.3, label="94-96%")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))])
    ax.set_xticklabels([f"N={d['nobs']}, K={d['k_eqs']}, k={d['rank']}" for d in rows])
    ax.set_ylim(0.85, 1.0)
    ax.set_ylabel("coverage of nominal 95% intervals")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def parser() -> argparse.ArgumentParser:
    """The command line (the same ``--preset`` / ``--output-dir`` as compare_sur.py)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    ap.add_argument("--output-dir", type=Path, help="where the JSON, markdown and PNG go")
    ap.add_argument("--reps", type=int, help="replications per design (overrides the preset)")
    ap.add_argument("--lr-reps", type=int, help="replications with the bootstrap LR test")
    ap.add_argument("--n-boot", type=int, help="bootstrap draws (covariance and LR tests)")
    ap.add_argument("--designs", nargs="+", metavar="N,K,k",
                    help="designs to run (overrides the preset's; selection is measured "
                    "for each)")
    ap.add_argument("--seed", type=int, default=20250101, help="base random seed")
    ap.add_argument("--render", nargs="+", type=Path, metavar="JSON",
                    help="print the tables of earlier runs' calibration.json files and exit")
    return ap


def render(paths: list[Path]) -> str:
    """The tables of several runs (one design each, say) in one markdown text."""
    import json

    rows, notes = [], []
    for path in paths:
        payload = json.loads(path.read_text(encoding="utf-8"))
        rows.extend(payload["designs"])
        cfg = payload["config"]
        m = payload["machine"]
        for d in payload["designs"]:
            notes.append(
                f"- N={d['nobs']}, K={d['k_eqs']}, k={d['rank']}: {d['selection_reps']} "
                f"replications ({d['lr_reps']} with the bootstrap LR test), "
                f"{cfg['n_boot_cov']} bootstrap draws, {d['seconds']:.0f} s, lowrank_sur "
                f"{m.get('lowrank_sur_git')}, load average at start "
                f"{m.get('loadavg_at_start')}")
    return markdown(rows, cfg) + "\nRuns:\n\n" + "\n".join(notes) + "\n"


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.render:
        print(render(args.render))
        return 0
    cfg = dict(PRESETS[args.preset])
    if args.reps is not None:
        cfg["reps"] = args.reps
    if args.lr_reps is not None:
        cfg["lr_reps"] = args.lr_reps
    if args.n_boot is not None:
        cfg["n_boot_cov"] = cfg["n_boot_lr"] = args.n_boot
    if args.designs:
        cfg["designs"] = [[int(v) for v in d.split(",")] for d in args.designs]
        cfg["select_designs"] = [list(d) for d in cfg["designs"]]
    out = args.output_dir
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    rows = []
    designs = [list(d) for d in cfg["designs"]]
    extra = [d for d in cfg["select_designs"] if d not in designs]
    machine = machine_info(None, None)

    def save(partial=None):
        done = rows + ([partial] if partial is not None else [])
        text = markdown(done, cfg)
        if out is not None:  # after every replication: an interrupted run keeps its part
            write_json(out / "calibration.json", {
                "preset": args.preset, "config": cfg, "seed": args.seed, "machine": machine,
                "loadavg_at_end": loadavg(), "designs": done})
            (out / "calibration.md").write_text(text, encoding="utf-8")
        return text

    for no, design in enumerate(designs + extra):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run = run_design if design in designs else select_only
            rows.append(run(design, cfg, args.seed, no, log, save))
        text = save()
        if out is not None:
            plot(rows, out / "coverage.png")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
