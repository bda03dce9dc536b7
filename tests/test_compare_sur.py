"""Smoke test: the SUR comparison benchmark runs its quick preset end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "compare_sur.py"

# the benchmark scripts' shared package lives next to them, outside the installed package
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from surbench.methods import DEFAULT_METHODS as METHODS  # noqa: E402


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    pytest.importorskip("linearmodels")
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("compare_sur")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--preset", "quick", "--output-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=170,
    )
    return proc, out


def test_quick_preset_exits_cleanly(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in (
        "compare_sur.json",
        "compare_sur.md",
        "compare_sur_time.png",
        "compare_sur_memory.png",
        "compare_sur_beta_rmse.png",
    ):
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
    assert (out / "compare_sur_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_preset_records(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    payload = json.loads((out / "compare_sur.json").read_text())
    machine = payload["machine"]
    for key in ("platform", "cpu_count", "total_ram_gb", "versions"):
        assert key in machine, key
    for dist in ("numpy", "scipy", "statsmodels", "linearmodels", "lowrank_sur", "alsgls"):
        assert dist in machine["versions"], dist

    records = payload["records"]
    ks = payload["config"]["ks"]
    for method in METHODS:
        mine = [r for r in records if r["method"] == method]
        assert sorted(r["k_eqs"] for r in mine) == sorted(ks), method
        for r in mine:
            if method == "alsgls" and machine["versions"]["alsgls"] is None:
                assert r["status"].startswith("skipped: not installed"), r
                continue
            assert r["status"] == "ok", r
            assert math.isfinite(float(r["beta_rmse"])) and float(r["beta_rmse"]) < 1.0, r
            assert math.isfinite(float(r["oos_nll_per_obs"])), r
            assert math.isfinite(float(r["llf"])), r
            assert r["time_s"] > 0 and r["peak_rss_mb"] is not None, r
            assert r["tracemalloc_mb"] is not None and r["tracemalloc_mb"] > 0, r
            if method == "alsgls":
                assert r["nan_se"] == "n/a"
            else:
                assert r["nan_se"] == 0, r

    # every child fitted the same data
    for k in ks:
        sums = {r["data_checksum"] for r in records if r["k_eqs"] == k and "data_checksum" in r}
        assert len(sums) == 1, sums

    # ALS and EM reach the same maximum; the oracle NLL is finite
    for k in ks:
        by = {r["method"]: r for r in records if r["k_eqs"] == k}
        als, em = by["lowrank_sur-als"], by["lowrank_sur-em"]
        assert abs(als["llf"] - em["llf"]) <= 1e-6 * abs(als["llf"]), (als["llf"], em["llf"])
        assert als["llf"] == pytest.approx(als["llf_native"], rel=1e-10)
        assert math.isfinite(float(als["oracle_oos_nll_per_obs"]))
        # two-step FGLS is one formula, whichever package computes it
        lm, sm = by["linearmodels-gls"], by["statsmodels-gls"]
        assert lm["beta_rmse"] == pytest.approx(sm["beta_rmse"], rel=1e-6)


def test_quick_preset_markdown(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = (out / "compare_sur.md").read_text()
    header = [line for line in text.splitlines() if line.startswith("| K | method |")]
    assert header and "peak RSS [MB]" in header[0] and "oos NLL/obs" in header[0]
    for method in METHODS:
        assert f"| {method} |" in text, method

    # the report can be re-rendered from the JSON alone, with the same table
    again = out / "rendered"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--render", str(out / "compare_sur.json"),
         "--output-dir", str(again)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = [line for line in text.splitlines() if line.startswith("| ")]
    rendered = (again / "compare_sur.md").read_text()
    assert table == [line for line in rendered.splitlines() if line.startswith("| ")]
    assert (again / "compare_sur_memory.png").is_file()


def test_help():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert "--preset" in proc.stdout and "--mem-cap-gb" in proc.stdout
