"""Smoke test: ``benchmarks/formula_scaling.py --quick`` runs and records every case."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "formula_scaling.py"


def test_formula_scaling_quick(tmp_path):
    out = tmp_path / "formula.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = json.loads(out.read_text())
    by_case = {r["case"]: r for r in records}
    assert set(by_case) == {"panel", "dict", "pairs", "fit"}  # alsgls only when given
    for case in ("panel", "dict", "pairs"):
        r = by_case[case]
        assert r["K"] == 50 and r["N"] == 60 and r["finite_bse"], r
        for key in ("build", "fit", "bse", "peak_rss_gb", "load"):
            assert math.isfinite(r[key]) and r[key] >= 0, (case, key, r)
        assert math.isclose(r["total"], r["build"] + r["fit"] + r["bse"])
    assert len(by_case["fit"]["times"]) == 3
    assert "panel K=    50 N=  60 build" in proc.stdout
