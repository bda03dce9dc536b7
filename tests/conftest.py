"""Shared fixtures: the Grunfeld five-firm system, its linearmodels iterated-SUR fit and
the Stata ``sureg`` blocks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from stata_check import stata

GRUNFELD_FIRMS = (
    "General Motors",
    "Chrysler",
    "General Electric",
    "Westinghouse",
    "US Steel",
)


@dataclass
class GrunfeldSystem:
    """invest ~ 1 + value + capital for the five classic Grunfeld firms, rows sorted by year."""

    firms: tuple[str, ...]
    years: np.ndarray
    Xs: list[np.ndarray]
    Y: np.ndarray
    exog_names: tuple[str, ...] = ("const", "value", "capital")

    @property
    def nobs(self) -> int:
        return self.Y.shape[0]

    @property
    def k_eqs(self) -> int:
        return self.Y.shape[1]

    def linearmodels_equations(self) -> dict:
        """The same system as the ``equations`` dict of :class:`linearmodels.system.SUR`."""
        eqs = {}
        for j, firm in enumerate(self.firms):
            eqs[firm.replace(" ", "_")] = {
                "dependent": pd.Series(self.Y[:, j], name="invest"),
                "exog": pd.DataFrame(self.Xs[j], columns=list(self.exog_names)),
            }
        return eqs


@pytest.fixture(scope="session")
def grunfeld() -> GrunfeldSystem:
    """The Grunfeld data from statsmodels, five firms, 20 years each."""
    from statsmodels.datasets import grunfeld as grunfeld_data

    df = grunfeld_data.load_pandas().data
    Xs, ys, years = [], [], []
    for firm in GRUNFELD_FIRMS:
        d = df[df["firm"] == firm].sort_values("year")
        assert len(d) == 20, firm
        years.append(d["year"].to_numpy(dtype=float))
        Xs.append(
            np.column_stack(
                [
                    np.ones(len(d)),
                    d["value"].to_numpy(dtype=float),
                    d["capital"].to_numpy(dtype=float),
                ]
            )
        )
        ys.append(d["invest"].to_numpy(dtype=float))
    for y in years[1:]:
        np.testing.assert_array_equal(y, years[0])
    return GrunfeldSystem(GRUNFELD_FIRMS, years[0], Xs, np.column_stack(ys))


@pytest.fixture(scope="session")
def grunfeld_linearmodels_igls(grunfeld):
    """linearmodels' iterated feasible GLS (iterated SUR) on the Grunfeld system."""
    from linearmodels.system import SUR

    res = SUR(grunfeld.linearmodels_equations()).fit(
        method="gls", iterate=True, tol=1e-12, iter_limit=10000, cov_type="unadjusted"
    )
    return res


@pytest.fixture(scope="module")
def blocks():
    """Every Stata ``sureg`` block of ``tests/results/stata_sureg`` (parsed once)."""
    return stata.load_blocks()


@pytest.fixture(scope="module")
def stata_data():
    """The data the Stata blocks were fitted on."""
    return stata.load_data()
