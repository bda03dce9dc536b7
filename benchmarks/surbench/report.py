"""Reports: summaries over replications, markdown tables, JSON files and plots.

The cell formatting and markdown-row helpers (:func:`fmt`, :func:`md_row`,
:func:`md_rule`) are shared by both benchmark scripts.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from .measure import jsonable
from .methods import METHODS

#: The alsgls seed pages' claimed EM/ALS memory ratios (N=300, p=3, rank 3).
SEED_CLAIMS = {50: 10.0, 80: 17.0, 120: 29.0}


# ============================================================ shared helpers
def num(v) -> float | None:
    """``v`` as a float, or None for None, booleans and non-numbers."""
    if v is None or isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def median(values) -> float | None:
    """Median of the numeric values (None when there are none, nan when one is nan)."""
    vals = [v for v in (num(x) for x in values) if v is not None]
    if not vals:
        return None
    if any(math.isnan(v) for v in vals):
        return math.nan
    return float(np.median(vals))


def fmt(v, spec: str) -> str:
    """A table cell: "-" for None, strings as they are, non-finite numbers spelled out."""
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return format(v, spec)


def md_row(cells) -> str:
    """One markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def md_rule(ncol: int) -> str:
    """The separator row under a markdown header of ``ncol`` columns."""
    return "|" + "|".join(["---"] * ncol) + "|"


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` as JSON through a temporary file (never a half-written file)."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(jsonable(payload), indent=1), encoding="utf-8")
    tmp.replace(path)


# =================================================================== summary
def _grid_key(r: dict) -> tuple:
    return (r["nobs"], r["n_exog"], r["rank"], r["k_eqs"])


def _group_status(rows: list[dict]) -> str:
    """Statuses of a group of replications, with flags for suspicious ok runs."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    if len(counts) == 1:
        (status,) = counts
        text = status if len(rows) == 1 else f"{status} ({len(rows)}/{len(rows)})"
    else:
        text = "; ".join(f"{s} ({c}/{len(rows)})" for s, c in counts.items())
    ok = [r for r in rows if r["status"] == "ok"]
    flags = []
    singular = sum(any("singular" in n for n in r.get("notes", [])) for r in ok)
    if singular:
        flags.append(f"Sigma-hat singular {singular}/{len(ok)}")
    unconverged = sum(r.get("converged") is False for r in ok)
    if unconverged:
        flags.append(f"not converged {unconverged}/{len(ok)}")
    return text + (f" [{'; '.join(flags)}]" if flags else "")


def _summary_row(key: tuple, group: list[dict]) -> dict:
    ok = [r for r in group if r["status"] == "ok"]
    nan_se = [r.get("nan_se") for r in ok]
    return {
        "nobs": key[0],
        "n_exog": key[1],
        "rank": key[2],
        "k_eqs": key[3],
        "method": key[4],
        "n_ok": len(ok),
        "n_runs": len(group),
        "time_s": median(r.get("time_s") for r in ok),
        "peak_rss_mb": median(r.get("peak_rss_mb") for r in ok),
        "tracemalloc_mb": median(r.get("tracemalloc_mb") for r in ok),
        "tracemalloc_fit_mb": median(
            (r.get("tracemalloc_phase_mb") or {}).get("fit") for r in ok
        ),
        "beta_rmse": median(r.get("beta_rmse") for r in ok),
        "oos_nll_per_obs": median(r.get("oos_nll_per_obs") for r in ok),
        "llf": median(r.get("llf") for r in ok),
        "nan_se": (
            "n/a" if nan_se and all(v == "n/a" for v in nan_se)
            else median(v for v in nan_se if v != "n/a")
        ),
        "iterations": median(r.get("iterations") for r in ok),
        "status": _group_status(group),
        "projected_gb": group[0].get("projected_gb"),
    }


def summarize(records: list[dict]) -> list[dict]:
    """Medians over replications, one row per (N, p, k, K, method), in grid order.

    Parameters
    ----------
    records : list of dict
        Run records.

    Returns
    -------
    list of dict
        Summary rows in grid order.
    """
    order = list(dict.fromkeys(r["method"] for r in records))
    keys = sorted(
        {(*_grid_key(r), r["method"]) for r in records},
        key=lambda t: (t[0], t[1], t[2], t[3], order.index(t[4])),
    )
    return [
        _summary_row(key, [r for r in records if (*_grid_key(r), r["method"]) == key])
        for key in keys
    ]


# ==================================================================== tables
def _oracle_row(key: tuple, records: list[dict], multi: bool) -> str:
    orc = median(x.get("oracle_oos_nll_per_obs") for x in records if _grid_key(x) == key)
    pre = list(key[:3]) if multi else []
    return md_row(pre + [key[3], "*truth (oracle)*", "-", "-", "-", 0, fmt(orc, ".4f"),
                         "-", "-", "-", "-"])


def _method_row(r: dict, multi: bool) -> str:
    nan_se = r["nan_se"]
    nan_txt = nan_se if isinstance(nan_se, str) else fmt(nan_se, ".0f")
    pre = [r["nobs"], r["n_exog"], r["rank"]] if multi else []
    return md_row(pre + [
        r["k_eqs"], r["method"], fmt(r["time_s"], ".3g"), fmt(r["peak_rss_mb"], ".1f"),
        fmt(r["tracemalloc_mb"], ".1f"), fmt(r["beta_rmse"], ".4f"),
        fmt(r["oos_nll_per_obs"], ".4f"), fmt(r["llf"], ".2f"), nan_txt,
        fmt(r["iterations"], ".0f"), r["status"],
    ])


def markdown_table(rows: list[dict], records: list[dict]) -> str:
    """The main results table in markdown (medians over replications).

    Parameters
    ----------
    rows : list of dict
        Output of :func:`summarize`.
    records : list of dict
        Run records (for the oracle rows).

    Returns
    -------
    str
    """
    multi = len({(r["nobs"], r["n_exog"], r["rank"]) for r in rows}) > 1
    head = (["N", "p", "k"] if multi else []) + [
        "K", "method", "time [s]", "peak RSS [MB]", "tracemalloc [MB]", "beta RMSE",
        "oos NLL/obs", "llf", "NaN SEs", "iterations", "status",
    ]
    lines = [md_row(head), md_rule(len(head))]
    last_key = None
    for r in rows:
        key = _grid_key(r)
        if key != last_key:
            lines.append(_oracle_row(key, records, multi))
            last_key = key
        lines.append(_method_row(r, multi))
    return "\n".join(lines)


_RATIO_COLS = [("peak_rss_mb", "peak RSS"), ("tracemalloc_mb", "tracemalloc"),
               ("tracemalloc_fit_mb", "tracemalloc, fit step")]
_RATIO_PAIRS = (
    ("lowrank_sur-em-45", "lowrank_sur-als-6", "EM-45 / ALS-6"),
    ("lowrank_sur-em", "lowrank_sur-als", "EM / ALS (converged)"),
)


def _ratio(a, b, col) -> str:
    if a is None or b is None or num(a.get(col)) is None or not num(b.get(col)):
        return "-"
    return f"{a[col] / b[col]:.2f}x"


def _ratio_cells(by: dict, key: tuple, pairs: list) -> list[str]:
    return [
        _ratio(by.get((*key, em)), by.get((*key, als)), col)
        for em, als, _ in pairs
        for col, _ in _RATIO_COLS
    ]


def ratio_table(rows: list[dict]) -> str:
    """EM/ALS peak-memory ratios (of medians) per K, next to the seed's claims.

    Parameters
    ----------
    rows : list of dict
        Output of :func:`summarize`.

    Returns
    -------
    str
        Markdown table, or "" when no EM/ALS pair ran.
    """
    by = {(*_grid_key(r), r["method"]): r for r in rows}
    keys = sorted({k[:4] for k in by})
    pairs = [
        (em, als, tag) for em, als, tag in _RATIO_PAIRS
        if any(_ratio(by.get((*k, em)), by.get((*k, als)), "peak_rss_mb") != "-" for k in keys)
    ]
    if not pairs:
        return ""
    claims = any(k[:3] == (300, 3, 3) and k[3] in SEED_CLAIMS for k in keys)
    head = ["K"] + [f"{tag} {label}" for _, _, tag in pairs for _, label in _RATIO_COLS]
    if claims:
        head.append("seed's claim (EM-45 / ALS-6)")
    lines = [md_row(head), md_rule(len(head))]
    for key in keys:
        cells = _ratio_cells(by, key, pairs)
        if all(c == "-" for c in cells):
            continue
        if claims:
            claim = SEED_CLAIMS.get(key[3]) if key[:3] == (300, 3, 3) else None
            cells.append("-" if claim is None else f"{claim:g}x")
        lines.append(md_row([key[3]] + cells))
    return "\n".join(lines)


def _notes(records: list[dict]) -> list[str]:
    """One markdown bullet per distinct (K, method, status / note / warning).

    Messages that differ only in their numbers (for example the last llf change in
    a convergence warning) are counted together and shown once.
    """
    groups: dict[tuple, list] = {}
    for r in records:
        items = [f"status: {r['status']}"] if r["status"] != "ok" else []
        items += [f"note: {n}" for n in r.get("notes", [])]
        items += [f"warning: {w}" for w in r.get("warnings", [])]
        for item in dict.fromkeys(items):
            shape = re.sub(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?", "#", item)
            group = groups.setdefault((*_grid_key(r), r["method"], shape), [0, item, True])
            group[0] += 1
            group[2] &= item == group[1]
    lines = []
    for key in sorted(groups, key=lambda t: t[:4]):
        count, item, same = groups[key]
        many = "" if same else ", e.g."
        lines.append(f"- K={key[3]}, {key[4]} ({count} run(s){many}): {item}")
    return lines


# ================================================================== markdown
def _intro(payload: dict) -> list[str]:
    """Title, grid, caps and machine paragraphs of the report."""
    cfg, mach = payload["config"], payload["machine"]
    v = mach["versions"]
    return [
        f"# SUR estimators compared ({cfg['preset'] or 'custom grid'})",
        "",
        f"N={cfg['nobs']}, p={cfg['n_exog']} regressors per equation (constant included), "
        f"k={cfg['rank']} factors, K in {cfg['ks']}, {cfg['reps']} replication(s), "
        f"held-out sample of {cfg['n_test']} rows, base seed {cfg['seed']}. "
        f"Caps per run: {cfg['mem_cap_gb']:g} GB address space, {cfg['time_cap']:g} s. "
        f"Children ran with {payload['settings']['blas_threads'] or 'the inherited number of'}"
        f" BLAS thread(s), {payload['settings']['jobs']} at a time.",
        "",
        f"Machine: {mach['platform']}, {mach['cpu_count']} CPUs, "
        f"{fmt(mach['total_ram_gb'], '.1f')} GB RAM, load average at start "
        f"{mach['loadavg_at_start']}. Versions: "
        + ", ".join(f"{k} {val}" for k, val in v.items() if val is not None)
        + (", alsgls not installed" if v.get("alsgls") is None else "")
        + (f" (lowrank_sur at git {mach['lowrank_sur_git']})" if mach.get("lowrank_sur_git")
           else "")
        + ".",
        "",
        "Medians over the replications that ran (status `ok`). Time: model construction + "
        "fit + standard errors, in a fresh subprocess after a warm-up. Peak RSS: high-water "
        "mark of the child's resident memory during the timed run above its resident memory "
        "before it. tracemalloc: peak traced allocation of a second, separate run. "
        "oos NLL/obs: negative Gaussian log-likelihood of the held-out residuals under the "
        "method's own Sigma-hat, per held-out observation (lower is better; the oracle row "
        "uses the true beta and Sigma). llf: in-sample Gaussian log-likelihood at the "
        "method's (beta, Sigma-hat).",
        "",
    ]


def _ratio_section(ratios: str) -> list[str]:
    if not ratios:
        return []
    lines = [
        "## EM / ALS peak memory (ratios of the medians)",
        "",
        "Peak RSS and tracemalloc cover the whole timed call (model construction, fit, "
        "standard errors); \"fit step\" is the traced peak of the fitting algorithm "
        "alone, above the memory held when it starts.",
        "",
    ]
    if "seed's claim" in ratios:
        lines += [
            "The seed pages claim EM needs 10x / 17x / 29x the memory of ALS at "
            "K = 50 / 80 / 120 (N=300, p=3, rank 3; EM given 45 iterations, ALS 6 "
            "sweeps), comparing the largest array each holds (dense K x K inverse "
            "against K x k loadings).",
            "",
        ]
    return lines + [ratios, ""]


def write_markdown(path: Path, payload: dict, rows: list[dict]) -> None:
    """Write the markdown report.

    Parameters
    ----------
    path : Path
        Output file.
    payload : dict
        Config, machine info and records.
    rows : list of dict
        Output of :func:`summarize`.
    """
    records = payload["records"]
    lines = _intro(payload) + [markdown_table(rows, records), ""]
    lines += _ratio_section(ratio_table(rows))
    lines += ["## Methods", ""]
    for name in payload["config"]["methods"]:
        lines.append(f"- `{name}`: {METHODS[name].description}")
    notes = _notes(records)
    if notes:
        lines += ["", "## Non-ok runs, notes and warnings", ""] + notes
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def render(json_path: Path, out_dir: Path | None = None) -> None:
    """Re-write the markdown report and the plots from a saved ``compare_sur.json``.

    Parameters
    ----------
    json_path : Path
        The JSON written by an earlier run.
    out_dir : Path, optional
        Output directory (default: the JSON's directory).
    """
    from .plots import write_plots

    payload = json.loads(Path(json_path).read_text(encoding="utf-8"))
    out_dir = Path(json_path).parent if out_dir is None else Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summarize(payload["records"])
    write_markdown(out_dir / "compare_sur.md", payload, rows)
    preset = payload["config"].get("preset") or "custom"
    for p in write_plots(out_dir, rows, f"compare_sur ({preset})"):
        print(f"wrote {p}")
    print(f"wrote {out_dir / 'compare_sur.md'}")
