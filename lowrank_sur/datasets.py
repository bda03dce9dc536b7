"""Data sets used in the examples and tests, loaded from packages that ship them.

The Grunfeld data come with statsmodels (a dependency); the Munnell data come with
linearmodels, which is needed only for :func:`munnell_wide` (it is in the ``test``
extra).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "GRUNFELD_FIRMS",
    "grunfeld_wide",
    "grunfeld_formulas",
    "munnell_wide",
    "munnell_formulas",
]

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
    """Formulas ``invest_<f> ~ value_<f> + capital_<f>`` per firm, keyed by short label.

    Parameters
    ----------
    firms : dict, optional
        Short label -> firm name; default :data:`GRUNFELD_FIRMS`.

    Returns
    -------
    dict
        Label -> patsy formula for the columns of :func:`grunfeld_wide`.
    """
    firms = GRUNFELD_FIRMS if firms is None else firms
    return {f: f"invest_{f} ~ value_{f} + capital_{f}" for f in firms}


def munnell_wide() -> pd.DataFrame:
    """Munnell's state production data (linearmodels ships it) in wide form, one row per year.

    The 48 contiguous US states, 1970-1986. For each state (two-letter code ``<s>``) the
    columns are the logarithms of gross state product ``lgsp_<s>``, public capital
    ``lpcap_<s>``, private capital ``lpc_<s>`` and employment ``lemp_<s>``, and the
    unemployment rate ``unemp_<s>``.

    Returns
    -------
    DataFrame
        Index ``year`` (17 rows); 5 columns per state, 240 in all.

    Raises
    ------
    ImportError
        If linearmodels is not installed.
    """
    try:
        from linearmodels.datasets import munnell
    except ImportError as exc:
        raise ImportError(
            "the Munnell data ship with linearmodels: pip install linearmodels"
        ) from exc

    raw = munnell.load()
    values = pd.DataFrame(
        {
            "lgsp": np.log(raw["GSP"].astype(float)),
            "lpcap": np.log(raw["P_CAP"].astype(float)),
            "lpc": np.log(raw["PC"].astype(float)),
            "lemp": np.log(raw["EMP"].astype(float)),
            "unemp": raw["UNEMP"].astype(float),
            "state": raw["ST_ABB"].astype(str),
            "year": raw["YR"].astype(int),
        }
    )
    wide = values.pivot(index="year", columns="state")
    variables = ["lgsp", "lpcap", "lpc", "lemp", "unemp"]
    states = sorted(values["state"].unique())
    wide = wide[[(v, s) for s in states for v in variables]]
    wide.columns = [f"{v}_{s}" for v, s in wide.columns]
    return wide


def munnell_formulas(states: list[str] | None = None) -> dict[str, str]:
    """Production-function formulas for the Munnell data, one equation per state.

    ``lgsp_<s> ~ lpcap_<s> + lpc_<s> + lemp_<s> + unemp_<s>``: log gross state product
    on log public capital, log private capital, log employment and unemployment.

    Parameters
    ----------
    states : list of str, optional
        Two-letter state codes; default: all 48 columns of :func:`munnell_wide`.

    Returns
    -------
    dict
        State code -> patsy formula.
    """
    if states is None:
        states = sorted({c.split("_", 1)[1] for c in munnell_wide().columns})
    return {s: f"lgsp_{s} ~ lpcap_{s} + lpc_{s} + lemp_{s} + unemp_{s}" for s in states}
