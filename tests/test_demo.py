"""The README's main job, ``python -m lowrank_sur``, runs (quick size) and prints its report."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def test_demo_quick_runs_and_prints_the_report():
    env = dict(os.environ)
    env.pop("_LOWRANK_SUR_DEMO_CHILD", None)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)  # the user's default configuration
    proc = subprocess.run(
        [sys.executable, "-m", "lowrank_sur", "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for section in (
        "1. Grunfeld investment data",
        "Rank selection by BIC",
        "Selected rank:",
        "Low-Rank SUR Results",
        "Error factor structure",
        "Tests of the error covariance structure",
        "Breusch-Pagan LM test",
        "LR test: diagonal Sigma vs rank-",
        "vs unrestricted Sigma",
        "2. Simulated system with more equations than observations: K=300, N=100",
        "Fit time (ALS, rank 4):",
        "Peak memory of the fit",
        "Time to get all 900 standard errors:",
        "Factor summary, first rows",
        "Total demo time:",
    ):
        assert section in out, f"missing {section!r} in:\n{out}"
    # the demo runs in the default BLAS configuration (the library limits its own threads)
    assert "BLAS thread settings: library defaults" in out
    # the rank-selection table lists ranks 0..4 for the five Grunfeld firms
    table = out.split("Rank selection by BIC", 1)[1].split("Selected rank:", 1)[0]
    assert [int(m) for m in re.findall(r"^(\d)\s", table, flags=re.M)] == [0, 1, 2, 3, 4]
    assert re.search(r"Peak memory of the fit .*: \d+\.\d MB", out.replace("\n", " "))
    assert "converged=True" in out


def test_demo_help():
    proc = subprocess.run(
        [sys.executable, "-m", "lowrank_sur", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--quick" in proc.stdout and "--blas-threads" in proc.stdout
