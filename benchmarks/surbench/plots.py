"""Plots of a ``compare_sur`` summary: time, peak memory and beta RMSE against K."""

from __future__ import annotations

import math
from pathlib import Path

#: (file stem, summary column, y label, log scale)
PLOT_SPECS = [
    ("time", "time_s", "time [s] (build + fit + SEs)", True),
    ("memory", "peak_rss_mb", "peak RSS above baseline [MB]", True),
    ("beta_rmse", "beta_rmse", "beta RMSE vs truth", True),
]


def _points(sub: list[dict], method: str, col: str, logy: bool) -> list[tuple]:
    return [
        (r["k_eqs"], r[col]) for r in sub
        if r["method"] == method and r[col] is not None and math.isfinite(r[col])
        and (r[col] > 0 or not logy)
    ]


def _plot_metric(plt, sub: list[dict], combo: tuple, spec: tuple, title: str, path: Path):
    """One figure: a summary column against K, one line per method."""
    _, col, ylabel, logy = spec
    methods = list(dict.fromkeys(r["method"] for r in sub))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, m in enumerate(methods):
        pts = _points(sub, m, col, logy)
        if pts:
            ks, vals = zip(*sorted(pts), strict=True)
            ax.plot(
                ks, vals, label=m, marker="osD^vP*X"[i % 8],
                linestyle=("-", "--", ":", "-.")[i % 4], alpha=0.85,
            )
    ax.set_xscale("log")
    grid_ks = sorted({r["k_eqs"] for r in sub})
    ax.set_xticks(grid_ks, [str(k) for k in grid_ks])
    ax.minorticks_off()
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("K (equations)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}: N={combo[0]}, p={combo[1]}, k={combo[2]}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(out_dir: Path, rows: list[dict], title: str) -> list[Path]:
    """Time, peak memory and beta RMSE against K, one line per method.

    Parameters
    ----------
    out_dir : Path
        Output directory.
    rows : list of dict
        Output of :func:`surbench.report.summarize`.
    title : str
        Figure title prefix.

    Returns
    -------
    list of Path
        The PNG files written (empty when matplotlib is missing).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; no plots written")
        return []
    combos = list(dict.fromkeys((r["nobs"], r["n_exog"], r["rank"]) for r in rows))
    written = []
    for combo in combos:
        suffix = "" if len(combos) == 1 else f"_N{combo[0]}_p{combo[1]}_k{combo[2]}"
        sub = [r for r in rows if (r["nobs"], r["n_exog"], r["rank"]) == combo]
        for spec in PLOT_SPECS:
            path = out_dir / f"compare_sur_{spec[0]}{suffix}.png"
            _plot_metric(plt, sub, combo, spec, title, path)
            written.append(path)
    return written
