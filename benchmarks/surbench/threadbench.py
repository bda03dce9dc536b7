"""``default_threads.py``: the user's BLAS configuration against one BLAS thread, side by side.

Every measurement runs in a fresh subprocess (``default_threads.py --child SPEC``) whose
environment either has no BLAS thread variable at all (``default``: what a user who sets
nothing gets) or ``OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = MKL_NUM_THREADS = 1``.
The two modes (and the code versions, with ``--baseline``) alternate within each round,
so both see the same machine load. The problems are simulated once by the parent and
saved as ``.npz`` files; the children only load them.

Cases
-----
``fit``
    :func:`lowrank_sur.fit_arrays` (N, p, k as given, one K per case); time of the call,
    after an untimed warm-up fit of a toy system.
``bse``
    every standard error of a fitted ``LowRankSUR`` (the coefficient-covariance
    estimator's ``bse()`` with its cache cleared before each timed call).
``sweep``
    one ALS sweep (beta step and factor step), from the time stamps of the fit's
    ``callback``: the median over sweeps 2 to the last (the first includes the largest
    factor step). Next to it the one-pass bound: the bytes of the regressors and the
    responses (``8 N K (p + 1)``) divided by the read bandwidth the child measures with
    ``numpy.sum`` over an array of that size (the copy bandwidth is recorded as well).
``bic``
    the README's quick start: ``LowRankSUR(grunfeld_formulas(), grunfeld_wide())
    .fit(rank="bic")`` and its ``summary()``.
``weak`` (with ``--alsgls-python``)
    the weak-factor case at a tight tolerance: K=500, N=300, p=3, k=4, loadings scaled
    so that the eigenvalues of ``F' D^-1 F`` are about 1, ``fit_arrays(tol=1e-14)``
    against ``alsgls.als_gls`` with ``lam_B=0, cg_tol=1e-10, rel_tol=1e-14,
    sweeps=100`` (alsgls with one BLAS thread, its best case); both scored on the same
    log-likelihood.

Each child times ``--repeat`` runs (10 for the fits of K <= 500, 5 for Grunfeld) and
reports the minimum; the table shows the median over ``--rounds`` rounds of those minima
and, for the default configuration, the worst of them (BLAS stalls come and go with the
machine's load).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .blas import BLAS_VARS, blas_env
from .measure import jsonable, loadavg, machine_info
from .report import fmt, md_row, md_rule, median

#: The entry script the children run.
SCRIPT = Path(__file__).resolve().parents[1] / "default_threads.py"

FULL = {"nobs": 300, "fit_ks": (200, 1000, 5000), "bse_k": 1000, "sweep_k": 5000,
        "n_exog": 3, "rank": 4, "rounds": 3, "repeat": 3, "short_repeat": 10}
QUICK = {"nobs": 100, "fit_ks": (50, 100), "bse_k": 100, "sweep_k": 200,
         "n_exog": 3, "rank": 4, "rounds": 1, "repeat": 1, "short_repeat": 1}
WEAK = {"nobs": 300, "k_eqs": 500, "n_exog": 3, "rank": 4, "tol": 1e-14}
ALSGLS_TIGHT = {"lam_B": 0.0, "cg_tol": 1e-10, "rel_tol": 1e-14, "sweeps": 100}

MODES = {"default": None, "1 thread": "1"}


@dataclass
class Case:
    """One row of the tables: what the child runs and on which problem file."""

    kind: str
    label: str
    path: str
    k_eqs: int
    nobs: int
    rank: int
    repeat: int
    extra: dict = field(default_factory=dict)


# ==================================================================== child
def _warm_up(rank: int) -> None:
    import warnings

    from lowrank_sur import fit_arrays

    rng = np.random.default_rng(1)
    Xs = [np.column_stack([np.ones(30), rng.normal(size=(30, 2))]) for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_arrays(Xs, rng.normal(size=(30, 4)), min(rank, 2))


def _load(path: str):
    with np.load(path) as data:
        X3, Y = data["X"], data["Y"]
    return [X3[j] for j in range(X3.shape[0])], Y


def _child_fit(spec: dict) -> dict:
    from lowrank_sur import fit_arrays

    Xs, Y = _load(spec["path"])
    _warm_up(spec["rank"])
    times, rec = [], None
    for _ in range(spec["repeat"]):
        t0 = time.perf_counter()
        rec = fit_arrays(Xs, Y, spec["rank"], **spec.get("options", {}))
        times.append(time.perf_counter() - t0)
    return {"time_s": min(times), "times": times, "sweeps": rec.iterations,
            "evaluations": rec.evaluations, "llf": rec.llf, "converged": rec.converged}


def _child_bse(spec: dict) -> dict:
    from lowrank_sur import LowRankSUR

    Xs, Y = _load(spec["path"])
    _warm_up(spec["rank"])
    model = LowRankSUR({f"y{j}": (Y[:, j], X) for j, X in enumerate(Xs)})
    est = model.fit(rank=spec["rank"])._results._coef_cov
    times = []
    for _ in range(spec["repeat"]):
        est._blocks = None
        t0 = time.perf_counter()
        bse = est.bse()
        times.append(time.perf_counter() - t0)
    route = est.route() if hasattr(est, "route") else None  # older versions: no route()
    return {"time_s": min(times), "times": times, "route": route,
            "nan_se": int(np.sum(~np.isfinite(bse)))}


def _child_bic(spec: dict) -> dict:
    import warnings

    from lowrank_sur import LowRankSUR
    from lowrank_sur.datasets import grunfeld_formulas, grunfeld_wide

    _warm_up(1)
    times, res = [], None
    for _ in range(spec["repeat"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            res = LowRankSUR(grunfeld_formulas(), grunfeld_wide()).fit(rank="bic")
            res.summary()
            times.append(time.perf_counter() - t0)
    return {"time_s": min(times), "times": times, "rank": int(res.rank)}


def _bandwidth(nbytes: int) -> dict:
    """Read (``sum``) and copy bandwidth over ``nbytes`` bytes, best of 10, in GB/s."""
    a = np.ones(max(nbytes // 8, 1))
    b = np.empty_like(a)
    reads, copies = [], []
    for _ in range(10):
        t0 = time.perf_counter()
        a.sum()
        reads.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        np.copyto(b, a)
        copies.append(time.perf_counter() - t0)
    return {"read_gbs": a.nbytes / min(reads) / 1e9, "copy_gbs": 2 * a.nbytes / min(copies) / 1e9,
            "one_pass_s": min(reads)}


def _child_sweep(spec: dict) -> dict:
    from lowrank_sur import fit_arrays

    Xs, Y = _load(spec["path"])
    _warm_up(spec["rank"])
    best = None
    for _ in range(spec["repeat"]):
        stamps: list[float] = []

        def stamp(_i, _llf, stamps=stamps):
            stamps.append(time.perf_counter())

        fit_arrays(Xs, Y, spec["rank"], callback=stamp)
        sweeps = np.diff(stamps)
        value = float(np.median(sweeps)) if sweeps.size else float("nan")
        best = value if best is None else min(best, value)
    nbytes = sum(X.nbytes for X in Xs) + Y.nbytes
    return {"time_s": best, "sweeps": len(stamps), "bytes": nbytes, **_bandwidth(nbytes)}


def _child_alsgls(spec: dict) -> dict:
    from alsgls import als_gls

    Xs, Y = _load(spec["path"])
    als_gls(Xs[:5], Y[:, :5], 1)  # warm-up
    times, out = [], None
    for _ in range(spec["repeat"]):
        t0 = time.perf_counter()
        out = als_gls(Xs, Y, spec["rank"], **ALSGLS_TIGHT)
        times.append(time.perf_counter() - t0)
    B, F, D, _, info = out
    np.savez(spec["out_path"], coefs=np.concatenate([np.ravel(b) for b in B]), F=F, D=D)
    return {"time_s": min(times), "times": times, "sweeps": len(info["nll_trace"]) - 1}


CHILDREN = {"fit": _child_fit, "bse": _child_bse, "sweep": _child_sweep,
            "alsgls": _child_alsgls, "bic": _child_bic}


def child_main(spec_text: str) -> int:
    """Entry point of a child: run the JSON spec, print one JSON line."""
    spec = json.loads(spec_text)
    out = CHILDREN[spec["kind"]](spec)
    out["blas_env"] = blas_env()
    print("RESULT " + json.dumps(jsonable(out)))
    return 0


# =================================================================== parent
def _env(mode_value: str | None, pythonpath: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in BLAS_VARS}
    if mode_value is not None:
        env.update({v: mode_value for v in BLAS_VARS})
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_child(spec: dict, env: dict, python: str = sys.executable, timeout: float = 3600):
    """Run one child; its result dict, or ``{"error": ...}``."""
    try:
        proc = subprocess.run([python, str(SCRIPT), "--child", json.dumps(spec)], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s", "timeout_s": timeout}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}


def make_cases(cfg: dict, workdir: Path, weak: bool) -> list[Case]:
    """Simulate every problem once (parent side) and describe the cases."""
    from lowrank_sur import simulate_sur

    n, p, k, rep = cfg["nobs"], cfg["n_exog"], cfg["rank"], cfg["repeat"]

    def problem(K, nobs=n, scale=1.0, seed=None):
        path = workdir / f"problem_N{nobs}_K{K}_s{scale:.3g}.npz"
        if not path.exists():
            sim = simulate_sur(nobs, K, p, k, factor_scale=scale,
                               seed=20240601 + K if seed is None else seed)
            np.savez(path, X=np.stack(sim.Xs), Y=sim.Y)
        return str(path)

    # runs of a few tens of milliseconds get more repeats (their minimum is noisy)
    cases = [Case("fit", f"fit_arrays K={K}", problem(K), K, n, k,
                  max(rep, cfg["short_repeat"]) if K <= 500 else rep) for K in cfg["fit_ks"]]
    cases.append(Case("bse", f"all bse K={cfg['bse_k']}", problem(cfg["bse_k"]), cfg["bse_k"],
                      n, k, rep))
    cases.append(Case("sweep", f"ALS sweep K={cfg['sweep_k']}", problem(cfg["sweep_k"]),
                      cfg["sweep_k"], n, k, rep))
    cases.append(Case("bic", "Grunfeld fit(rank='bic') + summary", "", 5, 20, 0,
                      max(rep, cfg["short_repeat"] // 2)))
    if weak:
        w = WEAK
        scale = float(np.sqrt(1.0 / (w["k_eqs"] * np.log(3.0))))  # E[1/D] = log 3
        path = problem(w["k_eqs"], w["nobs"], scale, seed=0)
        cases.append(Case("fit", f"weak factors K={w['k_eqs']}, tol=1e-14", path, w["k_eqs"],
                          w["nobs"], w["rank"], 1, {"options": {"tol": w["tol"]}, "weak": True}))
    return cases


def _spec(case: Case, out_path: str | None = None, kind: str | None = None) -> dict:
    spec = {"kind": kind or case.kind, "path": case.path, "rank": case.rank,
            "repeat": case.repeat, **{k: v for k, v in case.extra.items() if k != "weak"}}
    if out_path:
        spec["out_path"] = out_path
    return spec


def measure(cases: list[Case], versions: dict, rounds: int, alsgls_python: str | None,
            workdir: Path, log=print, timeout: float = 3600.0, sink=None) -> list[dict]:
    """Every (case, version, mode) once per round, interleaved; the raw records.

    ``sink(record)`` is called after each child (to save partial results).
    """
    records = []
    sink = sink or (lambda record: None)
    for rnd in range(rounds):
        for i, case in enumerate(cases):
            for version, path in versions.items():
                for mode, value in MODES.items():
                    out = run_child(_spec(case), _env(value, path), timeout=timeout)
                    records.append({"round": rnd, "case": i, "version": version, "mode": mode,
                                    **out})
                    sink(records[-1])
                    log(f"  round {rnd + 1} {case.label:<34} {version:<9} {mode:<9} "
                        f"{fmt(out.get('time_s'), '.3f')} s {out.get('error', '')}", flush=True)
            if case.extra.get("weak") and alsgls_python:
                out_path = str(workdir / f"alsgls_{rnd}.npz")
                # alsgls with one BLAS thread, its best case (with the default threads its
                # SVDs stall: 119 s and 277 s measured here against 8.5 s)
                out = run_child(_spec(case, out_path, kind="alsgls"), _env("1", None),
                                python=alsgls_python, timeout=timeout)
                out["llf_ours_scale"] = _score(case.path, out_path) if "error" not in out else None
                records.append({"round": rnd, "case": i, "version": "alsgls",
                                "mode": "1 thread", **out})
                sink(records[-1])
                log(f"  round {rnd + 1} {case.label:<34} alsgls    1 thread  "
                    f"{fmt(out.get('time_s'), '.3f')} s {out.get('error', '')}", flush=True)
    return records


def _score(problem_path: str, est_path: str) -> float:
    """Our log-likelihood at alsgls's estimates."""
    from lowrank_sur import LowRankCovariance

    with np.load(problem_path) as data:
        X3, Y = data["X"], data["Y"]
    with np.load(est_path) as e:
        coefs = e["coefs"].reshape(X3.shape[0], -1)
        R = Y - np.einsum("knp,kp->nk", X3, coefs)
        return float(LowRankCovariance(e["F"], e["D"]).loglike(R))


# =================================================================== report
def _vals(records, case, version, mode, key="time_s"):
    """The values of ``key``; a timed-out child counts as infinitely slow."""
    return [math.inf if key == "time_s" and _timed_out(r) else r.get(key) for r in records
            if r["case"] == case and r["version"] == version and r["mode"] == mode]


def _timed_out(r: dict) -> bool:
    return "timeout_s" in r or str(r.get("error", "")).startswith("timeout")


def _cell(records, case, version, mode, key="time_s"):
    vals = sorted(v for v in _vals(records, case, version, mode, key) if v is not None)
    return vals[(len(vals) - 1) // 2] if len(vals) % 2 else median(vals) if vals else None


def _worst(records, case, version, mode):
    vals = [v for v in _vals(records, case, version, mode) if v is not None]
    return max(vals) if vals else None


def _timeout(records) -> float | None:
    limits = [float(r.get("timeout_s") or str(r["error"]).split()[2]) for r in records
              if _timed_out(r)]
    return max(limits, default=None)


def _ratio(a, b):
    return a / b if a is not None and b and math.isfinite(a) and math.isfinite(b) else None


def _seconds(v, timeout) -> str:
    return f"> {timeout:.0f} (timeout)" if v is not None and math.isinf(v) else fmt(v, ".3f")


def tables(cases: list[Case], records: list[dict], versions: list[str]) -> str:
    """The markdown tables: timings by mode, the sweep against its bound, the weak case."""
    lines = []
    head = ["case"]
    for v in versions:
        head += [f"{v}: default [s]", f"{v}: default, worst [s]", f"{v}: 1 thread [s]",
                 f"{v}: default / 1 thread"]
    if len(versions) > 1:
        head.append(f"{versions[-1]} / {versions[0]} (default)")
    lines += [md_row(head), md_rule(len(head))]
    limit = _timeout(records)
    for i, case in enumerate(cases):
        row = [case.label]
        for v in versions:
            a, b = _cell(records, i, v, "default"), _cell(records, i, v, "1 thread")
            row += [_seconds(a, limit), _seconds(_worst(records, i, v, "default"), limit),
                    _seconds(b, limit), fmt(_ratio(a, b), ".2f")]
        if len(versions) > 1:
            row.append(fmt(_ratio(_cell(records, i, versions[-1], "default"),
                                  _cell(records, i, versions[0], "default")), ".2f"))
        lines.append(md_row(row))
    lines += ["", *_sweep_table(cases, records, versions), "",
              *_weak_table(cases, records, versions)]
    return "\n".join(lines).rstrip() + "\n"


def _sweep_table(cases, records, versions) -> list[str]:
    out = []
    head = ["case", "version", "mode", "sweep [ms]", "bytes of X and Y [MB]",
            "read bandwidth [GB/s]", "one-pass bound [ms]", "sweep / bound"]
    for i, case in enumerate(cases):
        if case.kind != "sweep":
            continue
        out += [md_row(head), md_rule(len(head))]
        for version in versions:
            for mode in MODES:
                t = _cell(records, i, version, mode)
                bound = _cell(records, i, version, mode, "one_pass_s")
                nbytes = _cell(records, i, version, mode, "bytes")
                bw = _cell(records, i, version, mode, "read_gbs")
                out.append(md_row([
                    case.label, version, mode, fmt(None if t is None else 1e3 * t, ".1f"),
                    fmt(None if nbytes is None else nbytes / 1e6, ".0f"), fmt(bw, ".1f"),
                    fmt(None if bound is None else 1e3 * bound, ".1f"),
                    fmt(_ratio(t, bound), ".1f")]))
    return out


def _weak_table(cases, records, versions) -> list[str]:
    out = []
    head = ["case", "version", "lowrank_sur, default threads [s]", "alsgls, 1 thread [s]",
            "ratio", "lowrank_sur llf", "alsgls llf (our definition)"]
    for i, case in enumerate(cases):
        theirs = _cell(records, i, "alsgls", "1 thread")
        if not case.extra.get("weak") or theirs is None:
            continue
        out += [md_row(head), md_rule(len(head))]
        for version in versions:
            ours = _cell(records, i, version, "default")
            out.append(md_row([
                case.label, version, _seconds(ours, _timeout(records)), fmt(theirs, ".2f"),
                fmt(_ratio(ours, theirs), ".2f"),
                fmt(_cell(records, i, version, "default", "llf"), ".6f"),
                fmt(_cell(records, i, "alsgls", "1 thread", "llf_ours_scale"), ".6f")]))
    return out


def render(json_path: str) -> str:
    """The tables again from the JSON of an earlier run."""
    payload = json.loads(Path(json_path).read_text())
    cases = [Case(**c) for c in payload["cases"]]
    return tables(cases, payload["records"], list(payload["versions"]))


# ===================================================================== main
def run(args) -> int:
    """Parent side: simulate, measure, print and save."""
    cfg = dict(QUICK if args.quick else FULL)
    if args.rounds:
        cfg["rounds"] = args.rounds
    if args.repeat:
        cfg["repeat"] = args.repeat
    versions = {"this": None}
    if args.baseline:
        versions = {"baseline": str(Path(args.baseline).resolve()), "this": None}
    if args.render:
        print(render(args.render))
        return 0
    with tempfile.TemporaryDirectory(prefix="default_threads_") as tmp:
        workdir = Path(tmp)
        cases = make_cases(cfg, workdir, weak=bool(args.alsgls_python) and not args.quick)
        if getattr(args, "cases", None):  # --cases: only these kinds
            cases = [c for c in cases if c.kind in args.cases.split(",")]
        info = machine_info(args.alsgls_python, None)
        print(f"{len(cases)} cases x {len(versions)} version(s) x {len(MODES)} modes x "
              f"{cfg['rounds']} round(s); load average at start {info['loadavg_at_start']}")
        payload = {"config": cfg, "machine": info, "cases": [c.__dict__ for c in cases],
                   "records": [], "versions": versions}
        out = Path(args.output_dir) if args.output_dir else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)

        def save(record=None):
            if record is not None:
                payload["records"].append(record)
            if out is not None:  # after every child: a killed run leaves its records
                (out / "default_threads.json").write_text(json.dumps(jsonable(payload), indent=1))

        records = measure(cases, versions, cfg["rounds"], args.alsgls_python, workdir,
                          timeout=args.child_timeout, sink=save)
    info["loadavg_at_end"] = loadavg()
    save()
    text = tables(cases, records, list(versions))
    print()
    print(text)
    if out is not None:
        (out / "default_threads.md").write_text(text)
    return 0
