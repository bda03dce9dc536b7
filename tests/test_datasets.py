"""The bundled data-set helpers: shapes, names, and that the formulas fit their frames."""

from __future__ import annotations

import numpy as np
import pytest

from lowrank_sur import LowRankSUR
from lowrank_sur.datasets import (
    GRUNFELD_FIRMS,
    grunfeld_formulas,
    grunfeld_wide,
    munnell_formulas,
    munnell_wide,
)


def test_grunfeld_wide_and_formulas():
    df = grunfeld_wide()
    assert df.shape == (20, 15)
    assert df.index.min() == 1935 and df.index.max() == 1954
    formulas = grunfeld_formulas()
    assert list(formulas) == list(GRUNFELD_FIRMS)
    model = LowRankSUR(formulas, df)
    assert model.k_eqs == 5 and model.nobs == 20 and model.k_params == 15


def test_grunfeld_unknown_firm_raises():
    with pytest.raises(KeyError, match="not in the Grunfeld data"):
        grunfeld_wide({"xx": "No Such Firm"})


def test_munnell_wide_and_formulas():
    pytest.importorskip("linearmodels")
    df = munnell_wide()
    assert df.shape == (17, 240)
    assert list(df.index) == list(range(1970, 1987))
    assert np.all(np.isfinite(df.to_numpy()))
    formulas = munnell_formulas()
    assert len(formulas) == 48 and formulas["CA"].startswith("lgsp_CA ~ lpcap_CA")
    model = LowRankSUR(munnell_formulas(["CA", "NY", "TX"]), df)
    assert model.k_eqs == 3 and model.nobs == 17 and model.k_params == 15
