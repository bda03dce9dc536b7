"""The parent side of ``compare_sur.py``: the grid, the skipping rules, one subprocess per fit."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .blas import set_blas_threads
from .measure import GB, available_bytes, error_text, loadavg, machine_info
from .methods import METHODS, projected_bytes
from .presets import config_from_args
from .problems import Problem, make_problem, oracle, score
from .report import markdown_table, ratio_table, summarize, write_json, write_markdown

#: The script the children run (``compare_sur.py --worker SPEC``).
WORKER_SCRIPT = Path(__file__).resolve().parents[1] / "compare_sur.py"

#: Seconds a child may spend on imports, warm-up, loading and writing its output
#: (on top of ``--time-cap`` for the timed fit and the traced run's allowance).
STARTUP_ALLOWANCE = 120.0

@dataclass
class Settings:
    """Run-wide options."""

    mem_cap_bytes: float
    time_cap: float
    tracemalloc: bool
    trace_max_seconds: float
    slow_seconds: float
    slow_reps: int
    alsgls_python: str | None
    alsgls_reason: str
    blas_threads: int | None
    use_projections: bool = True


def _projected(problem: Problem, method: str) -> float:
    return projected_bytes(method, problem.nobs, problem.k_eqs, problem.n_exog, problem.rank)


def base_record(problem: Problem, method: str) -> dict:
    """The fields every record of (method, problem) starts with."""
    return {
        "method": method,
        "package": METHODS[method].package,
        "nobs": problem.nobs,
        "k_eqs": problem.k_eqs,
        "n_exog": problem.n_exog,
        "rank": problem.rank,
        "rep": problem.rep,
        "seed": problem.seed,
        "n_test": problem.n_test,
        "n_params": problem.k_eqs * problem.n_exog,
        "projected_gb": _projected(problem, method) / GB,
        "status": "",
        "warnings": [],
        "notes": [],
    }


# ============================================================ skipping rules
def _install_reason(kind: str, st: Settings) -> str | None:
    if kind == "alsgls" and st.alsgls_python is None:
        return f"skipped: not installed ({st.alsgls_reason})"
    if kind == "linearmodels" and importlib.util.find_spec("linearmodels") is None:
        return "skipped: not installed (pip install linearmodels, or the bench extra)"
    return None


def _memory_reason(problem: Problem, method: str, st: Settings) -> str | None:
    need = _projected(problem, method)
    if need > st.mem_cap_bytes:
        return f"skipped: needs ~{need / GB:.1f} GB > memory cap {st.mem_cap_bytes / GB:.1f} GB"
    avail = available_bytes()
    if avail is not None and need > avail - 1 * GB:
        return f"skipped: needs ~{need / GB:.1f} GB, {avail / GB:.1f} GB available now"
    return None


def _failure_reason(same: list[dict], problem: Problem) -> str | None:
    """A timeout or out-of-memory failure at a smaller K."""
    for r in same:
        if r["k_eqs"] < problem.k_eqs and r["status"].startswith("timeout"):
            return f"skipped: timed out at K={r['k_eqs']}"
        if r["k_eqs"] < problem.k_eqs and "MemoryError" in r["status"]:
            return f"skipped: out of memory at K={r['k_eqs']}"
    return None


def _slow_reason(same: list[dict], problem: Problem, st: Settings) -> str | None:
    here = [r for r in same if r["k_eqs"] == problem.k_eqs and r["status"] == "ok"]
    slow = [r for r in here if r["time_s"] > st.slow_seconds]
    if slow and len(here) >= st.slow_reps:
        return (
            f"skipped: slow ({slow[0]['time_s']:.0f} s per run > --slow-seconds "
            f"{st.slow_seconds:g}; kept {len(here)} replication(s), --slow-reps {st.slow_reps})"
        )
    return None


def _time_reason(same: list[dict], problem: Problem, method: str, st: Settings) -> str | None:
    """The time at the largest smaller K, scaled by K^alpha, past the time cap."""
    smaller = [r for r in same if r["k_eqs"] < problem.k_eqs and r["status"] == "ok"]
    if not smaller:
        return None
    k0 = max(r["k_eqs"] for r in smaller)
    t0 = float(np.median([r["time_s"] for r in smaller if r["k_eqs"] == k0]))
    alpha = METHODS[method].time_exponent
    proj = t0 * (problem.k_eqs / k0) ** alpha
    if proj > st.time_cap:
        return (
            f"skipped: projected ~{proj:.0f} s > time cap {st.time_cap:g} s "
            f"({t0:.1f} s at K={k0}, time ~ K^{alpha:g})"
        )
    return None


def skip_reason(problem: Problem, method: str, records: list[dict], st: Settings) -> str | None:
    """Why ``method`` should not run on ``problem`` (None: run it)."""
    reason = _install_reason(METHODS[method].kind, st)
    if reason is not None or not st.use_projections:
        return reason
    grid = (problem.nobs, problem.n_exog, problem.rank)
    same = [
        r for r in records
        if r["method"] == method and (r["nobs"], r["n_exog"], r["rank"]) == grid
    ]
    return (
        _memory_reason(problem, method, st)
        or _failure_reason(same, problem)
        or _slow_reason(same, problem, st)
        or _time_reason(same, problem, method, st)
    )


# ================================================================ one child
def _child_env(st: Settings) -> dict:
    env = dict(os.environ)
    if st.blas_threads is not None:
        set_blas_threads(st.blas_threads, env)
    return env


def _child_files(problem: Problem, method: str, workdir: Path) -> dict[str, Path]:
    stem = f"{method}_K{problem.k_eqs}_N{problem.nobs}_r{problem.rep}"
    return {
        "result": workdir / f"{stem}.json",
        "out": workdir / f"{stem}.npz",
        "log": workdir / f"{stem}.log",
        "progress": workdir / f"{stem}.progress",
    }


def _spec(problem: Problem, method: str, st: Settings, files: dict[str, Path]) -> dict:
    return {
        "method": method,
        "data_path": str(problem.path),
        "rank": problem.rank,
        "n_exog": problem.n_exog,
        "mem_cap_bytes": st.mem_cap_bytes,
        "tracemalloc": st.tracemalloc,
        "trace_max_seconds": st.trace_max_seconds,
        "result_path": str(files["result"]),
        "out_path": str(files["out"]),
        "progress_path": str(files["progress"]),
    }


def _progress(path: Path, fit_start, fitted: bool, now: float):
    """Update (fit_start, fitted) from the child's progress file."""
    if not fitted and path.exists():
        state = path.read_text(encoding="ascii").strip()
        if state == "fitting" and fit_start is None:
            fit_start = now
        elif state == "fitted":
            fitted = True
    return fit_start, fitted


def _watch(proc: subprocess.Popen, progress: Path, st: Settings, t0: float) -> str:
    """Wait for the child; kill it (its process group) past the caps. Returns a timeout status."""
    # the timed fit may run for the time cap; the whole child for a generous overall limit
    overall = st.time_cap + 2.0 * st.trace_max_seconds + STARTUP_ALLOWANCE
    fit_start, fitted = None, False
    while proc.poll() is None:
        time.sleep(0.05)
        now = time.perf_counter()
        fit_start, fitted = _progress(progress, fit_start, fitted, now)
        over_fit = not fitted and fit_start is not None and now - fit_start > st.time_cap
        if over_fit or now - t0 > overall:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if over_fit:
                return f"timeout (> {st.time_cap:g} s time cap)"
            return f"timeout (child ran > {overall:g} s in all)"
    return ""


def _child_failure(log_path: Path, code: int) -> str:
    """Status of a child that wrote no result file."""
    tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
    if code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    else:
        how = f"exit code {code}"
    hint = " (likely the memory cap)" if code < 0 else ""
    return f"failed: child {how}{hint}: {' | '.join(tail)[:300]}"


def _merge_child(rec: dict, problem: Problem, files: dict[str, Path]) -> None:
    """The child's measurements into ``rec``, and the scores of its estimates."""
    child = json.loads(files["result"].read_text(encoding="utf-8"))
    notes = child.pop("notes", [])
    rec.update(child)
    rec["notes"] = rec.get("notes", []) + notes
    if rec["status"] == "ok" and files["out"].exists():
        with np.load(files["out"]) as est:
            metrics = score(problem, {k: est[k] for k in est.files})
        rec["notes"] += metrics.pop("notes")
        rec.update(metrics)
        files["out"].unlink()


def run_one(problem: Problem, method: str, st: Settings, workdir: Path) -> dict:
    """Run one (method, problem) in a subprocess and score it.

    Parameters
    ----------
    problem : Problem
        The system.
    method : str
        Method name.
    st : Settings
        Caps and options.
    workdir : Path
        Scratch directory for the child's files.

    Returns
    -------
    dict
        The record.
    """
    rec = base_record(problem, method)
    files = _child_files(problem, method, workdir)
    python = st.alsgls_python if METHODS[method].kind == "alsgls" else sys.executable
    spec = json.dumps(_spec(problem, method, st, files))
    cmd = [python, str(WORKER_SCRIPT), "--worker", spec]
    rec["mem_cap_gb"] = st.mem_cap_bytes / GB
    t0 = time.perf_counter()
    with open(files["log"], "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=_child_env(st),
            start_new_session=True,
        )
        rec["status"] = _watch(proc, files["progress"], st, t0)
    rec["child_wall_s"] = time.perf_counter() - t0
    if rec["status"]:
        return rec
    if not files["result"].exists():
        rec["status"] = _child_failure(files["log"], proc.returncode)
        return rec
    _merge_child(rec, problem, files)
    return rec


# =================================================================== the grid
def probe_alsgls(python: str) -> tuple[str | None, str | None, str]:
    """Return (interpreter, version, reason) for alsgls."""
    code = "import alsgls, importlib.metadata as m; print(m.version('alsgls'))"
    try:
        proc = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, None, f"{python}: {error_text(exc, 120)}"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["import failed"])[-1]
        return None, None, f"import alsgls failed with {python}: {last[:120]}"
    return python, proc.stdout.strip(), ""


def settings_from_args(args: argparse.Namespace, cfg: dict, alsgls_python, reason) -> Settings:
    """Caps and run-wide options."""
    return Settings(
        mem_cap_bytes=args.mem_cap_gb * GB,
        time_cap=float(cfg["time_cap"]),
        tracemalloc=not args.no_tracemalloc,
        trace_max_seconds=args.trace_max_seconds,
        slow_seconds=args.slow_seconds,
        slow_reps=args.slow_reps,
        alsgls_python=alsgls_python,
        alsgls_reason=reason,
        blas_threads=args.blas_threads or None,
        use_projections=not args.ignore_projections,
    )


def new_payload(cfg: dict, st: Settings, alsgls_version: str | None) -> dict:
    """The JSON payload before any record: config, machine, settings."""
    return {
        "config": cfg,
        "machine": machine_info(st.alsgls_python, alsgls_version),
        "settings": {
            "trace_max_seconds": st.trace_max_seconds,
            "slow_seconds": st.slow_seconds,
            "slow_reps": st.slow_reps,
            "blas_threads": st.blas_threads,
            "jobs": cfg.get("jobs", 1),
            "tracemalloc": st.tracemalloc,
        },
        "records": [],
    }


def _print_record(K: int, rep: int, rec: dict) -> None:
    t = rec.get("time_s")
    mem = rec.get("peak_rss_mb")
    print(
        f"K={K:<5d} rep={rep} {rec['method']:<19s} "
        f"{'-' if t is None else f'{t:9.3f} s'}  "
        f"{'-' if mem is None else f'{mem:9.1f} MB'}  {rec['status']}",
        flush=True,
    )


def run_problem(problem: Problem, cfg: dict, st: Settings, records: list[dict],
                workdir: Path) -> list[dict]:
    """Every method of the grid on one problem (skipped ones recorded as such)."""
    ref = oracle(problem)
    todo, batch = [], []
    for m in cfg["methods"]:
        reason = skip_reason(problem, m, records, st)
        if reason is None:
            todo.append(m)
        else:
            rec = base_record(problem, m)
            rec["status"] = reason
            batch.append(rec)
    with ThreadPoolExecutor(max_workers=max(1, cfg.get("jobs", 1))) as pool:
        futures = {m: pool.submit(run_one, problem, m, st, workdir) for m in todo}
        batch += [f.result() for f in futures.values()]
    batch.sort(key=lambda r: cfg["methods"].index(r["method"]))
    for rec in batch:
        rec["oracle_oos_nll_per_obs"] = ref
        _print_record(problem.k_eqs, problem.rep, rec)
    return batch


def run_grid(cfg: dict, st: Settings, payload: dict, out_dir: Path | None) -> None:
    """All problems of the grid, one after another; the JSON rewritten after each."""
    records: list[dict] = payload["records"]
    workdir = Path(tempfile.mkdtemp(prefix="compare_sur_"))
    try:
        for K in cfg["ks"]:
            for rep in range(cfg["reps"]):
                problem = make_problem(
                    cfg["nobs"], K, cfg["n_exog"], cfg["rank"], rep, cfg["n_test"],
                    cfg["seed"], workdir,
                )
                records += run_problem(problem, cfg, st, records, workdir)
                problem.path.unlink()
                problem.sim = None
                if out_dir is not None:
                    write_json(out_dir / "compare_sur.json", payload)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _finish(payload: dict, out_dir: Path | None, t_start: float) -> None:
    """Summary, tables and output files after the grid."""
    from .plots import write_plots

    load = loadavg()
    payload["machine"]["loadavg_at_end"] = None if load is None else list(load)
    payload["machine"]["total_wall_s"] = time.perf_counter() - t_start
    records = payload["records"]
    rows = summarize(records)
    payload["summary"] = rows
    print()
    print(markdown_table(rows, records))
    ratios = ratio_table(rows)
    if ratios:
        print()
        print("EM / ALS peak-memory ratios (seed's claims: 10x, 17x, 29x at K = 50, 80, 120):")
        print(ratios)
    if out_dir is None:
        return
    write_json(out_dir / "compare_sur.json", payload)
    write_markdown(out_dir / "compare_sur.md", payload, rows)
    preset = payload["config"]["preset"] or "custom"
    for p in write_plots(out_dir, rows, f"compare_sur ({preset})"):
        print(f"wrote {p}")
    print(f"wrote {out_dir / 'compare_sur.json'} and {out_dir / 'compare_sur.md'}")


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark described by parsed command-line arguments.

    Parameters
    ----------
    args : argparse.Namespace
        Output of the parser (see ``--help``).

    Returns
    -------
    dict
        The JSON payload (config, machine, records).
    """
    cfg = config_from_args(args)
    alsgls_python, alsgls_version, reason = None, None, "not requested"
    if "alsgls" in cfg["methods"]:
        alsgls_python, alsgls_version, reason = probe_alsgls(
            args.alsgls_python or sys.executable
        )
        if alsgls_python is None:
            print(f"note: alsgls rows skipped ({reason})")
    st = settings_from_args(args, cfg, alsgls_python, reason)
    out_dir = args.output_dir
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    payload = new_payload(cfg, st, alsgls_version)
    print(
        f"config: N={cfg['nobs']} p={cfg['n_exog']} k={cfg['rank']} K={cfg['ks']} "
        f"reps={cfg['reps']} methods={cfg['methods']}"
    )
    t_start = time.perf_counter()
    run_grid(cfg, st, payload, out_dir)
    _finish(payload, out_dir, t_start)
    return payload
