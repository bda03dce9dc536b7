"""The Sphinx documentation builds with warnings treated as errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")
pytest.importorskip("numpydoc")

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_build_without_warnings(tmp_path):
    out = tmp_path / "html"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in ("index", "getting_started", "user_guide", "mathematics", "benchmarks",
                 "architecture", "api"):
        assert (out / f"{page}.html").is_file(), page
    api = (out / "api.html").read_text(encoding="utf-8")
    for name in ("LowRankSUR", "LowRankSURResults", "fit_arrays", "FitRecord",
                 "LowRankCovariance", "simulate_sur", "breusch_pagan", "lr_test_unrestricted",
                 "HeywoodWarning", "plot_loadings"):
        # documented under the package or one of its modules
        assert re.search(rf'id="lowrank_sur\.(\w+\.)?{name}"', api), name
