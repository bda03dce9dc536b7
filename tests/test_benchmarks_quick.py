"""Smoke test: the scaling benchmark runs in quick mode and our fitters reach the reference."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "core_scaling.py"


def run_benchmark(script: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """Run a benchmark script in a fresh interpreter (default BLAS threads); check it succeeds."""
    proc = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_core_scaling_quick(tmp_path):
    out = tmp_path / "scaling.json"
    proc = run_benchmark(SCRIPT, "--quick", "--output", str(out), timeout=120)

    table_rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    als_lines = [line for line in table_rows if line.split("|")[2].strip() == "als"]
    assert len(als_lines) == 2, proc.stdout  # K in {50, 100}

    payload = json.loads(out.read_text())
    assert payload["environment"]["blas_threads"]["OPENBLAS_NUM_THREADS"] == os.environ.get(
        "OPENBLAS_NUM_THREADS")
    rows = payload["rows"]
    assert sorted(payload["config"]["k_eqs"]) == [50, 100]
    for method in ("als-ref", "als", "em"):
        assert sorted(r["k_eqs"] for r in rows if r["method"] == method) == [50, 100], method

    for r in rows:
        assert math.isfinite(r["llf"]) and math.isfinite(r["time_s"]), r
        if r["method"] in ("als", "em"):
            # default tolerances land on the high-precision reference maximum
            assert abs(r["rel_gap"]) < 1e-6, r
            assert r["converged"], r
            assert r["sweeps"] >= 1
            assert r["peak_mb"] is not None and r["peak_mb"] > 0
        if r["method"].startswith("alsgls"):
            # only present when alsgls happens to be installed; scored on our likelihood
            assert r["rel_gap"] > -1e-9, r

    if payload["environment"]["alsgls"] is None:
        assert "alsgls is not importable" in proc.stdout


def test_bse_scaling_quick():
    script = SCRIPT.parent / "bse_scaling.py"
    proc = run_benchmark(script, "--quick", timeout=120)
    rows = [line.split() for line in proc.stdout.splitlines()[2:] if line.strip()]
    assert [int(r[0]) for r in rows] == [100, 200]
    for K, P, _fit, t_bse, peak, _pxp, nans, ratio in rows:
        assert int(P) == 3 * int(K) and int(nans) == 0
        assert float(t_bse) >= 0 and float(peak) > 0 and float(ratio) >= 0


def test_default_threads_quick(tmp_path):
    """The default-threads benchmark runs both configurations and writes its tables."""
    script = SCRIPT.parent / "default_threads.py"
    run_benchmark(script, "--quick", "--output-dir", str(tmp_path), timeout=300)
    payload = json.loads((tmp_path / "default_threads.json").read_text())
    records = payload["records"]
    assert {r["mode"] for r in records} == {"default", "1 thread"}
    assert [c["kind"] for c in payload["cases"]] == ["fit", "fit", "bse", "sweep", "bic"]
    for r in records:
        assert "error" not in r, r
        assert math.isfinite(r["time_s"]) and r["time_s"] > 0, r
    sweep = [r for r in records if payload["cases"][r["case"]]["kind"] == "sweep"]
    assert all(r["read_gbs"] > 0 and r["bytes"] > 0 for r in sweep)
    text = (tmp_path / "default_threads.md").read_text()
    assert "| fit_arrays K=50 |" in text and "| all bse K=100 |" in text
    assert "one-pass bound [ms]" in text
    # the children really ran without, and with, the BLAS thread variables
    for r in records:
        want = None if r["mode"] == "default" else "1"
        assert set(r["blas_env"].values()) == {want}, r


def test_robust_bse_quick(tmp_path):
    """The robust-bse benchmark runs both parts and reports every cov_type."""
    script = SCRIPT.parent / "robust_bse.py"
    out = tmp_path / "robust.json"
    proc = run_benchmark(script, "--quick", "--output", str(out), timeout=180)
    rows = json.loads(out.read_text())["rows"]
    large = [r for r in rows if r["part"] == "large"]
    assert sorted({r["k_eqs"] for r in large}) == [100, 200]
    assert {r["cov_type"] for r in large} == {"nonrobust", "HC1", "HAC", "cluster", "HC1+R",
                                              "cluster+R"}
    for r in large:
        assert r["nan_se"] == 0 and r["bse_s"] > 0 and r["peak_mb"] > 0, r
    assert "| 200 | 600 |" in proc.stdout
    side = [r for r in rows if r["part"] == "linearmodels"]
    if side:  # linearmodels installed
        assert sorted({r["k_eqs"] for r in side}) == [10, 20]
        assert {r["lm_cov_type"] for r in side} == {"unadjusted", "robust", "clustered"}
        assert all(r["lm_fit_s"] > 0 and r["lm_cov_s"] > 0 and r["lm_cov_peak_mb"] > 0
                   for r in side)


@pytest.mark.slow  # a LocalCluster of two processes and four fits: 52-70 s on a loaded 2-core box
def test_dask_scaling_quick(tmp_path):
    """The distributed benchmark writes zarr, fits on a LocalCluster and matches in memory."""
    pytest.importorskip("distributed")
    pytest.importorskip("zarr")
    out = tmp_path / "dask.json"
    proc = run_benchmark(SCRIPT.parent / "dask_scaling.py", "--quick", "--output", str(out),
                         "--dir", str(tmp_path / "data"), timeout=600)
    rows = json.loads(out.read_text())["rows"]
    assert [r["k_eqs"] for r in rows] == [80, 160]
    for r in rows:
        assert r["converged"] and r["sweeps"] == len(r["sweep_log"]) > 0, r
        assert r["llf_rel_diff"] <= 1e-10, r  # the in-memory fit, side by side
        assert r["read_once_s"] > 0 and r["sweep_median_s"] > 0
        assert r["largest_gathered"] < r["nobs"] * r["k_eqs"] * 8  # never an N x K array
        assert len(r["peak_rss_gb"]) == 2 and all(v > 0 for v in r["peak_rss_gb"].values())
        assert r["bytes_between_workers"] >= 0
    assert "| 160 |" in proc.stdout


def test_calibration_quick(tmp_path):
    """benchmarks/calibration.py --preset quick writes its JSON, markdown and plot."""
    script = SCRIPT.parent / "calibration.py"
    run_benchmark(script, "--preset", "quick", "--output-dir", str(tmp_path), timeout=600)
    payload = json.loads((tmp_path / "calibration.json").read_text())
    (design,) = payload["designs"]
    assert (design["nobs"], design["k_eqs"], design["rank"]) == (40, 5, 1)
    names = set(design["options"])
    assert {"default", "debiased", "debiased+use_t", "bootstrap+use_t",
            "linearmodels-igls"} <= names  # linearmodels runs: K < N
    for o in design["options"].values():
        assert o["reps"] == 2 and 0.0 <= o["coverage"] <= 1.0
        assert o["wald_size"] in (0.0, 0.5, 1.0)
    assert design["lr_reps"] == 1 and design["lr_boot_size"] in (0.0, 1.0)
    # the warp-speed bootstrap LR test: one statistic and one bootstrap draw per replication
    assert design["lr_warp_reps"] == 2 and len(design["lr_warp_boot_stats"]) == 2
    assert 0.0 <= design["lr_warp_size"] <= 1.0
    # and the fast double bootstrap's second-level draw per replication
    assert design["lr_fdb_warp_reps"] == 2 and len(design["lr_warp_boot2_stats"]) == 2
    assert 0.0 <= design["lr_fdb_warp_size"] <= 1.0
    assert design["selection_reps"] == 2
    assert set(design["selection"]) == {"aic", "bic", "ic_p1", "ic_p2", "er"}
    text = (tmp_path / "calibration.md").read_text()
    assert "Coverage of nominal 95% intervals" in text and "| 40 | 5 | 1 | default | 2 |" in text
    assert (tmp_path / "coverage.png").stat().st_size > 0
    rendered = subprocess.run(
        [sys.executable, str(script), "--render", str(tmp_path / "calibration.json")],
        capture_output=True, text=True, timeout=120,
    )
    assert rendered.returncode == 0, rendered.stderr
    assert "| 40 | 5 | 1 | default | 2 |" in rendered.stdout and "Runs:" in rendered.stdout


def test_multistart_quick(tmp_path):
    """benchmarks/multistart.py --quick: every configuration runs and extra starts never lose."""
    script = SCRIPT.parent / "multistart.py"
    run_benchmark(script, "--quick", "--output-dir", str(tmp_path), timeout=300)
    payload = json.loads((tmp_path / "multistart.json").read_text())
    records = payload["records"]
    cases = list(dict.fromkeys(r["case"] for r in records))
    assert cases == ["strong K=100", "weak K=50", "Grunfeld rank 1"]
    for case in cases:
        rows = {str(r["n_starts"]): r for r in records if r["case"] == case}
        assert set(rows) == {"1", "auto", "3"}, rows
        one = rows["1"]["llf"]
        for key in ("auto", "3"):
            assert rows[key]["llf"] >= one - 1e-8 * abs(one), (case, key, rows)
            assert rows[key]["starts"] >= 1 and rows[key]["sweeps_all"] >= rows[key]["sweeps"]
        assert rows["3"]["starts"] >= 3
    # strong factors: "auto" sees no trouble and runs the one start
    assert records[1]["n_starts"] == "auto" and records[1]["starts"] == 1
    table = (tmp_path / "multistart.md").read_text()
    assert table.count("\n| strong K=100 |") == 3


def test_missing_mc_quick(tmp_path):
    script = SCRIPT.parent / "missing_mc.py"
    proc = run_benchmark(script, "--preset", "quick", "--output-dir", str(tmp_path),
                         timeout=300)
    payload = json.loads((tmp_path / "missing_mc_quick.json").read_text())
    assert [(r["k_eqs"], r["rate"]) for r in payload["mc"]] == [(10, 0.05), (10, 0.2)]
    for r in payload["mc"]:
        assert r["converged"] == r["reps"], r
        assert 0.5 < r["coverage95"] <= 1.0, r
        # FIML uses every observed cell: more precise than OLS on each equation's rows
        assert 0.0 < r["rmse_ratio_vs_own_rows_ols"] < 1.0, r
    perf = payload["perf"]
    assert perf["fiml_converged"] and perf["complete_converged"]
    assert perf["peak_bytes"] > 0 and math.isfinite(perf["time_ratio"])
    assert "perf K=200" in proc.stdout
