"""``multistart.py``: what multiple starts cost and find, next to alsgls.

Cases (all fitted with :func:`lowrank_sur.fit_arrays` at the default options):

``strong``
    simulated, K=1000, N=300, p=3, k=4, default factor strength (the problem of
    ``default_threads.py``).
``weak``
    simulated, K=500, N=300, p=3, k=4, loadings scaled so that the eigenvalues of
    ``F' D^-1 F`` are about 1.
``munnell-1``, ``munnell-2``
    Munnell's state production data (linearmodels), 48 equations, N=17, ranks 1 and 2.
``harman74-5``
    Harman's 24 psychological tests (tests/results/harman74, R's Harman74.cor),
    intercept-only equations whose sample correlation matrix is that matrix, N=145,
    5 factors.
``grunfeld-1``, ``grunfeld-2``
    Grunfeld's 5 firms (statsmodels), N=20, ranks 1 and 2.

For each case and each ``n_starts`` (1, ``"auto"``, 10): the wall time (minimum over
``--repeat`` runs), the sweeps of the chosen fit and of all starts together (each joint
polish counts as one), the evaluations of the joint polish (of the chosen fit and of all
starts: each a log-likelihood and gradient of all parameters, about an EM map plus a
residual pass), the llf,
how many starts ran and how many distinct maxima they reached. With
``--alsgls-python`` (an interpreter where ``alsgls`` imports), ``alsgls.als_gls`` on
the same arrays (one start; ``lam_B=0`` so that it maximizes the same likelihood,
``rel_tol=1e-10``, ``cg_tol=1e-10``, at most 200 sweeps, one BLAS thread: its best
case), scored on our log-likelihood. Ours run in this process with the BLAS threads
the environment gives (the library limits its own).
``--quick``: small simulated cases and Grunfeld only, ``n_starts`` in (1, "auto", 3).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from .blas import set_blas_threads
from .measure import jsonable, loadavg, machine_info
from .report import fmt, md_row, md_rule

#: The entry script (the alsgls child runs it with the other interpreter).
SCRIPT = Path(__file__).resolve().parents[1] / "multistart.py"
HARMAN = (Path(__file__).resolve().parents[2] / "tests" / "results" / "harman74"
          / "harman74_cor.csv")

FULL = {"strong_k": 1000, "weak_k": 500, "nobs": 300, "n_exog": 3, "rank": 4,
        "starts": (1, "auto", 10), "repeat": 3, "real": True}
QUICK = {"strong_k": 100, "weak_k": 50, "nobs": 100, "n_exog": 3, "rank": 2,
         "starts": (1, "auto", 3), "repeat": 1, "real": False}
ALSGLS_OPTIONS = {"lam_B": 0.0, "cg_tol": 1e-10, "rel_tol": 1e-10, "sweeps": 200}


# ==================================================================== problems
def _simulated(K: int, cfg: dict, weak: bool):
    from lowrank_sur import simulate_sur

    scale = float(np.sqrt(1.0 / (K * np.log(3.0)))) if weak else 1.0  # E[1/D] = log 3
    sim = simulate_sur(cfg["nobs"], K, cfg["n_exog"], cfg["rank"], factor_scale=scale,
                       seed=0 if weak else 20240601 + K)
    return list(sim.Xs), sim.Y


def _formulas(formulas: dict, data):
    from patsy import dmatrices

    Xs, ys = [], []
    for f in formulas.values():
        y, X = dmatrices(f, data, return_type="matrix")
        ys.append(np.asarray(y)[:, 0])
        Xs.append(np.asarray(X))
    return Xs, np.column_stack(ys)


def _harman():
    import pandas as pd

    C = pd.read_csv(HARMAN, comment="#", index_col=0).to_numpy()
    n, K = 145, C.shape[0]
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(np.column_stack([np.ones(n), rng.standard_normal((n, K))]))
    Y = Q[:, 1:] * np.sqrt(n) @ np.linalg.cholesky(C).T  # Y'Y / n = C, column means 0
    return [np.ones((n, 1)) for _ in range(K)], Y


def make_cases(cfg: dict) -> list[dict]:
    """Every case: label, arrays, rank."""
    k = cfg["rank"]
    cases = [{"label": f"strong K={cfg['strong_k']}", "rank": k,
              "data": _simulated(cfg["strong_k"], cfg, weak=False)},
             {"label": f"weak K={cfg['weak_k']}", "rank": k,
              "data": _simulated(cfg["weak_k"], cfg, weak=True)}]
    from lowrank_sur.datasets import grunfeld_formulas, grunfeld_wide

    grunfeld = _formulas(grunfeld_formulas(), grunfeld_wide())
    if cfg["real"]:
        from lowrank_sur.datasets import munnell_formulas, munnell_wide

        munnell = _formulas(munnell_formulas(), munnell_wide())
        cases += [{"label": f"Munnell rank {r}", "rank": r, "data": munnell} for r in (1, 2)]
        cases.append({"label": "Harman74 5 factors", "rank": 5, "data": _harman()})
    cases += [{"label": f"Grunfeld rank {r}", "rank": r, "data": grunfeld}
              for r in ((1, 2) if cfg["real"] else (1,))]
    return cases


# ==================================================================== measuring
def measure_ours(case: dict, n_starts, repeat: int) -> dict:
    """Time (minimum of ``repeat``), sweeps, llf and the starts of one configuration."""
    from lowrank_sur import fit_arrays

    Xs, Y = case["data"]
    times = []
    for _ in range(repeat):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            rec = fit_arrays(Xs, Y, case["rank"], n_starts=n_starts)
            times.append(time.perf_counter() - t0)
    return {"time_s": min(times), "sweeps": rec.iterations,
            "sweeps_all": int(sum(s["iterations"] for s in rec.starts)),
            "polish_evals": rec.polish_evaluations,
            "polish_evals_all": int(sum(s.get("polish_evaluations", 0) for s in rec.starts)),
            "evaluations": rec.evaluations,
            "llf": rec.llf, "starts": len(rec.starts), "n_maxima": rec.n_maxima,
            "heywood": int(rec.heywood.size), "converged": rec.converged}


def alsgls_child(spec_text: str) -> int:
    """Run ``alsgls.als_gls`` on a saved problem (inside the alsgls interpreter)."""
    from alsgls import als_gls

    spec = json.loads(spec_text)
    with np.load(spec["path"]) as data:
        Xs = [data[f"X{j}"] for j in range(int(data["K"]))]
        Y = data["Y"]
    times = []
    for _ in range(spec["repeat"]):
        t0 = time.perf_counter()
        B, F, D, _, info = als_gls(Xs, Y, spec["rank"], **ALSGLS_OPTIONS)
        times.append(time.perf_counter() - t0)
    np.savez(spec["out"], coefs=np.concatenate([np.ravel(b) for b in B]), F=F, D=D)
    print("RESULT " + json.dumps({"time_s": min(times),
                                  "sweeps": len(info["nll_trace"]) - 1}))
    return 0


def measure_alsgls(case: dict, python: str, repeat: int, workdir: Path) -> dict:
    """alsgls in its own interpreter; scored with our log-likelihood at its estimates."""
    from lowrank_sur import LowRankCovariance

    Xs, Y = case["data"]
    path, out = workdir / "problem.npz", workdir / "alsgls.npz"
    np.savez(path, Y=Y, K=len(Xs), **{f"X{j}": X for j, X in enumerate(Xs)})
    spec = {"path": str(path), "out": str(out), "rank": case["rank"], "repeat": repeat}
    try:
        # alsgls with one BLAS thread, its best case (as in default_threads.py)
        proc = subprocess.run([python, str(SCRIPT), "--alsgls-child", json.dumps(spec)],
                              capture_output=True, text=True, timeout=3600,
                              env=set_blas_threads(1, dict(os.environ)))
    except subprocess.TimeoutExpired:
        return {"error": "timeout"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    res = json.loads(lines[0][7:])
    with np.load(out) as e:
        offsets = np.cumsum([0] + [X.shape[1] for X in Xs])
        coefs = [e["coefs"][offsets[j]:offsets[j + 1]] for j in range(len(Xs))]
        R = Y - np.column_stack([X @ b for X, b in zip(Xs, coefs)])
        try:
            res["llf"] = float(LowRankCovariance(e["F"], e["D"]).loglike(R))
        except (ValueError, np.linalg.LinAlgError) as exc:
            res["llf"], res["error"] = None, f"not scored: {exc}"[:200]
    return res


# ==================================================================== report
def table(records: list[dict], starts) -> str:
    head = ["case", "n_starts", "time (s)", "vs 1 start", "sweeps (chosen / all)",
            "polish evals (chosen / all)", "llf", "starts run", "distinct maxima", "Heywood"]
    lines = [md_row(head), md_rule(len(head))]
    for case in dict.fromkeys(r["case"] for r in records):
        rows = [r for r in records if r["case"] == case]
        base = next((r for r in rows if r["n_starts"] == 1), None)
        for r in rows:
            if r["n_starts"] == "alsgls":
                lines.append(md_row([case, "alsgls (1 start)", fmt(r.get("time_s"), ".3f"),
                                     _ratio(r, base), str(r.get("sweeps", "")), "",
                                     fmt(r.get("llf"), ".4f"), "1", "", r.get("error", "")]))
                continue
            lines.append(md_row([case, str(r["n_starts"]), fmt(r["time_s"], ".3f"),
                                 _ratio(r, base), f"{r['sweeps']} / {r['sweeps_all']}",
                                 f"{r.get('polish_evals', '')} / {r.get('polish_evals_all', '')}",
                                 fmt(r["llf"], ".4f"), str(r["starts"]), str(r["n_maxima"]),
                                 str(r["heywood"])]))
    return "\n".join(lines)


def _ratio(r: dict, base: dict | None) -> str:
    if base is None or r.get("time_s") is None or not base["time_s"]:
        return ""
    return f"{r['time_s'] / base['time_s']:.2f}x"


def run(args) -> int:
    cfg = dict(QUICK if args.quick else FULL)
    if args.repeat:
        cfg["repeat"] = args.repeat
    print(f"load average before: {loadavg()}", flush=True)
    cases = make_cases(cfg)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            for n_starts in cfg["starts"]:
                out = measure_ours(case, n_starts, cfg["repeat"])
                records.append({"case": case["label"], "n_starts": n_starts, **out})
                print(f"  {case['label']:<22} n_starts={n_starts!s:<5} "
                      f"{out['time_s']:.3f} s  sweeps {out['sweeps']}/{out['sweeps_all']}  "
                      f"polish {out['polish_evals']}/{out['polish_evals_all']}  "
                      f"llf {out['llf']:.4f}  maxima {out['n_maxima']}", flush=True)
            if args.alsgls_python:
                out = measure_alsgls(case, args.alsgls_python, cfg["repeat"], Path(tmp))
                records.append({"case": case["label"], "n_starts": "alsgls", **out})
                print(f"  {case['label']:<22} alsgls        {fmt(out.get('time_s'), '.3f')} s "
                      f"llf {fmt(out.get('llf'), '.4f')} {out.get('error', '')}", flush=True)
    text = table(records, cfg["starts"])
    print(text)
    print(f"load average after: {loadavg()}")
    if args.output_dir:
        out_dir = Path(args.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "multistart.md").write_text(text + "\n")
        payload = {"config": cfg, "records": records, "load": loadavg(),
                   "machine": machine_info(args.alsgls_python, None)}
        (out_dir / "multistart.json").write_text(json.dumps(jsonable(payload), indent=1))
    return 0
