"""Data sets used in the examples and tests (loaded from packages we depend on)."""

from __future__ import annotations

import pandas as pd

__all__ = ["GRUNFELD_FIRMS", "grunfeld_wide", "grunfeld_formulas"]

#: The five firms of the classic Grunfeld SUR example (Greene, ch. 10), short label -> name.
GRUNFELD_FIRMS = {
    "gm": "General Motors",
    "ch": "Chrysler",
    "ge": "General Electric",
    "wh": "Westinghouse",
    "us": "US Steel",
}


def grunfeld_wide(firms: dict[str, str] | None = None) -> pd.DataFrame:
    """Grunfeld investment data (statsmodels ships it) in wide form, one row per year.

    Parameters
    ----------
    firms : dict, optional
        Short label -> firm name in the statsmodels data; default :data:`GRUNFELD_FIRMS`.

    Returns
    -------
    DataFrame
        Index ``year`` (1935-1954); columns ``invest_<label>``, ``value_<label>``,
        ``capital_<label>``.
    """
    from statsmodels.datasets import grunfeld

    firms = GRUNFELD_FIRMS if firms is None else firms
    long = grunfeld.load_pandas().data
    parts = []
    for label, name in firms.items():
        d = long[long["firm"] == name].set_index("year").sort_index()
        if d.empty:
            raise KeyError(f"firm {name!r} is not in the Grunfeld data")
        parts.append(
            d[["invest", "value", "capital"]].add_suffix(f"_{label}").astype(float)
        )
    out = pd.concat(parts, axis=1)
    out.index = out.index.astype(int)
    return out


def grunfeld_formulas(firms: dict[str, str] | None = None) -> dict[str, str]:
    """Formulas ``invest_<f> ~ value_<f> + capital_<f>`` per firm, keyed by short label."""
    firms = GRUNFELD_FIRMS if firms is None else firms
    return {f: f"invest_{f} ~ value_{f} + capital_{f}" for f in firms}
