"""Regenerate the stored live-captured reference results in ``tests/results/``.

Not run by the tests (they only read the files it writes, and call its ``compute_*``
functions to check that the installed peer libraries still give the stored numbers).

Run from the repository root, in an environment with statsmodels and linearmodels::

    python tests/results/make_live_references.py            # write every file
    python tests/results/make_live_references.py --check    # compare, write nothing

Each file records its provenance: the exact call, the data, the versions of the libraries
that produced the numbers and the capture date (files are JSON with a ``provenance`` key;
the CSV data files start with ``#`` comment lines). Regenerating updates the capture date
and versions; review the diff before committing: a changed number means the peer changed.

Files written:

``grunfeld_5firms.csv``
    The Grunfeld investment data for the five classic SUR firms (General Motors, Chrysler,
    General Electric, Westinghouse, US Steel; 1935-1954), from
    ``statsmodels.datasets.grunfeld.load_pandas().data``, in wide form:
    ``year, invest_<f>, value_<f>, capital_<f>`` for f in gm, ch, ge, wh, us. The same data as
    ``tests/conftest.py::grunfeld`` and ``lowrank_sur.datasets.grunfeld_wide()``.
``grunfeld_linearmodels_igls.json``
    linearmodels iterated feasible GLS (iterated SUR) on that system, the call of
    ``tests/conftest.py::grunfeld_linearmodels_igls``: ``SUR(equations).fit(method="gls",
    iterate=True, tol=1e-12, iter_limit=10000, cov_type="unadjusted")`` with, per firm,
    ``dependent=invest``, ``exog=[const, value, capital]``. Iterated SUR is the Gaussian
    maximum likelihood estimator with an unrestricted Sigma (our rank K - 1 = 4).
``grunfeld_linearmodels_ols_breusch_pagan.json``
    linearmodels ``SUR(equations).fit(method="ols").breusch_pagan()`` on the same system
    (the LM test of a diagonal Sigma; ``tests/test_model.py``).
``grunfeld_statsmodels_ols.json``
    statsmodels ``OLS(invest, add_constant([value, capital])).fit()`` per firm: the rank-0
    (diagonal Sigma) reference, as in ``tests/test_core.py::test_rank0_equals_statsmodels_ols``.
``factor_ml_sim2024.csv`` and ``factor_ml_sim2024.json``
    The simulated data of ``tests/test_core.py::
    test_intercept_only_equals_statsmodels_ml_factor_analysis`` (N = 500, K = 12, 2 factors,
    ``numpy.random.default_rng(2024)``; stored, since numpy does not promise that
    ``Generator`` streams never change) and statsmodels ``Factor(Y, n_factor=2,
    method="ml").fit(em_iter=20, opt={"maxiter": 10000, "gtol": 1e-8}, rng=0)`` on it.
    Intercept-only SUR with rank k is ML factor analysis.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lowrank_sur.datasets import GRUNFELD_FIRMS, grunfeld_wide

HERE = Path(__file__).resolve().parent
GENERATOR = "tests/results/make_live_references.py"

GRUNFELD_CSV = HERE / "grunfeld_5firms.csv"
IGLS_JSON = HERE / "grunfeld_linearmodels_igls.json"
BP_JSON = HERE / "grunfeld_linearmodels_ols_breusch_pagan.json"
OLS_JSON = HERE / "grunfeld_statsmodels_ols.json"
FACTOR_CSV = HERE / "factor_ml_sim2024.csv"
FACTOR_JSON = HERE / "factor_ml_sim2024.json"

IGLS_CALL = (
    'linearmodels.system.SUR(equations).fit(method="gls", iterate=True, tol=1e-12, '
    'iter_limit=10000, cov_type="unadjusted")'
)
BP_CALL = 'linearmodels.system.SUR(equations).fit(method="ols").breusch_pagan()'
OLS_CALL = (
    'statsmodels.api.OLS(df[f"invest_{f}"], '
    'statsmodels.api.add_constant(df[[f"value_{f}", f"capital_{f}"]])).fit()'
)
FACTOR_CALL = (
    'statsmodels.multivariate.factor.Factor(Y, n_factor=2, method="ml")'
    '.fit(em_iter=20, opt={"maxiter": 10000, "gtol": 1e-8}, rng=0)'
)
FACTOR_SIM = (
    "nobs, k_eqs, k = 500, 12, 2; rng = numpy.random.default_rng(2024); "
    "F = rng.normal(size=(k_eqs, k)); D = rng.uniform(0.5, 1.5, size=k_eqs); "
    "mu = rng.normal(scale=3.0, size=k_eqs); "
    "Y = mu + rng.normal(size=(nobs, k)) @ F.T + rng.normal(size=(nobs, k_eqs)) * numpy.sqrt(D)"
)
GRUNFELD_SOURCE = (
    "statsmodels.datasets.grunfeld.load_pandas().data (Grunfeld 1950, as recreated by "
    "Kleiber and Zeileis 2008), firms General Motors, Chrysler, General Electric, "
    "Westinghouse, US Steel, rows sorted by year (1935-1954), stored in "
    "tests/results/grunfeld_5firms.csv"
)


def versions() -> dict[str, str]:
    """Versions of Python and of the libraries that produce or feed the numbers."""
    import scipy
    import statsmodels

    out = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
        "statsmodels": statsmodels.__version__,
    }
    try:
        import linearmodels
    except ImportError:  # pragma: no cover - the generator needs it
        out["linearmodels"] = "not installed"
    else:
        out["linearmodels"] = linearmodels.__version__
    return out


def _provenance(tool: str, call: str, data: str, **extra) -> dict:
    return {
        "tool": tool,
        "call": call,
        "data": data,
        "capture_date": datetime.date.today().isoformat(),
        "versions": versions(),
        "platform": platform.platform(),
        "generator": f"python {GENERATOR}",
        **extra,
    }


# ------------------------------------------------------------------ data
def grunfeld_from_statsmodels() -> pd.DataFrame:
    """The five-firm Grunfeld system in wide form, straight from statsmodels.

    The loader is :func:`lowrank_sur.datasets.grunfeld_wide` (data loading only: the
    reference numbers themselves come from linearmodels and statsmodels).
    """
    out = grunfeld_wide()
    if len(out) != 20 or out.isna().any().any():
        raise ValueError(f"expected 20 complete years, got {len(out)} rows")
    return out


def read_grunfeld() -> pd.DataFrame:
    """The stored five-firm Grunfeld data (index ``year``)."""
    return pd.read_csv(GRUNFELD_CSV, comment="#", index_col="year")


def simulate_factor_data() -> np.ndarray:
    """The simulated intercept-only system (see :data:`FACTOR_SIM`)."""
    nobs, k_eqs, k = 500, 12, 2
    rng = np.random.default_rng(2024)
    F = rng.normal(size=(k_eqs, k))
    D = rng.uniform(0.5, 1.5, size=k_eqs)
    mu = rng.normal(scale=3.0, size=k_eqs)
    return mu + rng.normal(size=(nobs, k)) @ F.T + rng.normal(size=(nobs, k_eqs)) * np.sqrt(D)


def read_factor_data() -> np.ndarray:
    """The stored simulated factor-analysis data (500 x 12)."""
    return pd.read_csv(FACTOR_CSV, comment="#").to_numpy(dtype=float)


# ------------------------------------------------------------ live peers
def linearmodels_equations(df: pd.DataFrame) -> dict:
    """The ``equations`` of :class:`linearmodels.system.SUR`, as in ``tests/conftest.py``."""
    eqs = {}
    for label, name in GRUNFELD_FIRMS.items():
        exog = pd.DataFrame(
            {"const": 1.0, "value": df[f"value_{label}"], "capital": df[f"capital_{label}"]}
        )
        eqs[name.replace(" ", "_")] = {
            "dependent": df[f"invest_{label}"].rename("invest"),
            "exog": exog,
        }
    return eqs


def compute_igls(df: pd.DataFrame) -> dict:
    """linearmodels' iterated GLS: the numbers stored in ``grunfeld_linearmodels_igls.json``."""
    from linearmodels.system import SUR

    res = SUR(linearmodels_equations(df)).fit(
        method="gls", iterate=True, tol=1e-12, iter_limit=10000, cov_type="unadjusted"
    )
    return {
        "equations": list(GRUNFELD_FIRMS),
        "param_names": list(res.params.index),
        "params": res.params.to_list(),
        "std_errors": res.std_errors.to_list(),
        "cov": res.cov.to_numpy().tolist(),
        "sigma": np.asarray(res.sigma).tolist(),
        "iterations": int(res.iterations),
        "nobs_per_equation": int(df.shape[0]),
    }


def compute_breusch_pagan(df: pd.DataFrame) -> dict:
    """linearmodels' Breusch-Pagan LM test of a diagonal Sigma after equation-by-equation OLS."""
    from linearmodels.system import SUR

    bp = SUR(linearmodels_equations(df)).fit(method="ols").breusch_pagan()
    return {"stat": float(bp.stat), "df": int(bp.df), "pval": float(bp.pval)}


def compute_ols(df: pd.DataFrame) -> dict:
    """statsmodels OLS per firm: the numbers stored in ``grunfeld_statsmodels_ols.json``."""
    import statsmodels.api as sm

    out = {}
    for f in GRUNFELD_FIRMS:
        res = sm.OLS(df[f"invest_{f}"], sm.add_constant(df[[f"value_{f}", f"capital_{f}"]])).fit()
        out[f] = {
            "param_names": list(res.params.index),
            "params": res.params.to_list(),
            "bse": res.bse.to_list(),
            "ssr": float(res.ssr),
            "llf": float(res.llf),
            "nobs": int(res.nobs),
            "df_resid": int(res.df_resid),
        }
    return {"equations": out}


def compute_factor(Y: np.ndarray) -> dict:
    """statsmodels ML factor analysis: the numbers stored in ``factor_ml_sim2024.json``."""
    import warnings

    from statsmodels.multivariate.factor import Factor
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    nobs, k_eqs = Y.shape
    fa = Factor(Y, n_factor=2, method="ml")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = fa.fit(em_iter=20, opt={"maxiter": 10000, "gtol": 1e-8}, rng=0)
    loglike_corr = float(fa.loglike((res.loadings, res.uniqueness)))
    s2 = Y.var(axis=0)  # divisor N: the MLE of the mean is the sample mean
    llf = -0.5 * nobs * (k_eqs * np.log(2 * np.pi) + np.sum(np.log(s2))) + (
        nobs * k_eqs * loglike_corr
    )
    fitted_corr = res.loadings @ res.loadings.T + np.diag(res.uniqueness)
    return {
        "success": bool(res.mle_retvals.success),
        "loadings": res.loadings.tolist(),
        "uniqueness": res.uniqueness.tolist(),
        "fitted_corr": fitted_corr.tolist(),
        "loglike_corr": loglike_corr,
        "sample_var": s2.tolist(),
        "llf": float(llf),
    }


# ----------------------------------------------------------------- write
def _write_json(path: Path, provenance: dict, numbers: dict) -> None:
    path.write_text(json.dumps({"provenance": provenance, **numbers}, indent=1) + "\n")


def _write_csv(path: Path, header: list[str], frame: pd.DataFrame, index: bool) -> None:
    with path.open("w") as fh:
        for line in header:
            fh.write(f"# {line}\n")
        # repr(float): the shortest digits that read back to the same double
        frame.to_csv(fh, index=index, float_format=lambda x: repr(float(x)),
                     lineterminator="\n")


def build_all() -> dict[Path, tuple[dict, dict]]:
    """Every JSON reference as path -> (provenance, numbers), from a live run."""
    df = grunfeld_from_statsmodels()
    Y = simulate_factor_data()
    data_note = "the Grunfeld five-firm system: " + GRUNFELD_SOURCE
    return {
        IGLS_JSON: (
            _provenance(
                "linearmodels", IGLS_CALL, data_note,
                equations_exog="per firm: dependent invest, exog const, value, capital",
                note="iterated SUR = Gaussian ML with unrestricted Sigma; sigma has divisor N",
            ),
            compute_igls(df),
        ),
        BP_JSON: (_provenance("linearmodels", BP_CALL, data_note), compute_breusch_pagan(df)),
        OLS_JSON: (
            _provenance(
                "statsmodels", OLS_CALL, data_note,
                note="llf uses sigma^2 = ssr / nobs; bse uses ssr / df_resid",
            ),
            compute_ols(df),
        ),
        FACTOR_JSON: (
            _provenance(
                "statsmodels", FACTOR_CALL,
                f"simulated, stored in tests/results/factor_ml_sim2024.csv: {FACTOR_SIM}",
                note=(
                    "statsmodels fits the correlation matrix: loadings, uniqueness and "
                    "fitted_corr = loadings @ loadings.T + diag(uniqueness) are on the "
                    "correlation scale (loadings only up to rotation); loglike_corr is "
                    "fa.loglike((loadings, uniqueness)); llf (data scale) = -N/2 (K log(2 pi)"
                    " + sum(log sample_var)) + N K loglike_corr, sample_var with divisor N"
                ),
            ),
            compute_factor(Y),
        ),
    }


def write_all() -> None:
    """Capture everything live and write the files."""
    df = grunfeld_from_statsmodels()
    today = datetime.date.today().isoformat()
    _write_csv(
        GRUNFELD_CSV,
        [
            f"Source: {GRUNFELD_SOURCE}.",
            "Columns: invest_<f>, value_<f>, capital_<f> for "
            + ", ".join(f"{k} = {v}" for k, v in GRUNFELD_FIRMS.items()) + ".",
            f"statsmodels {versions()['statsmodels']}; captured {today} by {GENERATOR}.",
        ],
        df,
        index=True,
    )
    Y = simulate_factor_data()
    _write_csv(
        FACTOR_CSV,
        [
            f"Simulated: {FACTOR_SIM}",
            f"numpy {np.__version__}; captured {today} by {GENERATOR}.",
        ],
        pd.DataFrame(Y, columns=[f"y{j}" for j in range(Y.shape[1])]),
        index=False,
    )
    for path, (prov, numbers) in build_all().items():
        _write_json(path, prov, numbers)
        print(f"wrote {path.relative_to(HERE.parents[1])}")


def _differences(stored, live, where: str, rtol: float = 1e-8) -> list[str]:
    """Where ``live`` differs from ``stored`` (numbers to ``rtol``, the rest exactly)."""
    if isinstance(live, dict):
        if not isinstance(stored, dict) or set(stored) != set(live):
            return [f"{where}: keys differ"]
        return [d for k in live for d in _differences(stored[k], live[k], f"{where}.{k}", rtol)]
    if isinstance(live, (bool, str)) or (isinstance(live, list) and live
                                          and isinstance(live[0], str)):
        return [] if stored == live else [f"{where}: {stored!r} != {live!r}"]
    a, b = np.asarray(stored, dtype=float), np.asarray(live, dtype=float)
    if a.shape != b.shape or not np.allclose(a, b, rtol=rtol, atol=0.0):
        return [f"{where}: numbers differ"]
    return []


def check_all() -> int:
    """Compare a live run with the stored files; return the number of differences."""
    diffs = []
    stored_df = read_grunfeld()
    if not stored_df.equals(grunfeld_from_statsmodels()):
        diffs.append(f"{GRUNFELD_CSV.name}: data differ")
    if not np.array_equal(read_factor_data(), simulate_factor_data()):
        diffs.append(f"{FACTOR_CSV.name}: data differ (numpy's Generator stream changed?)")
    for path, (_, numbers) in build_all().items():
        stored = json.loads(path.read_text())
        stored.pop("provenance")
        diffs += _differences(stored, numbers, path.name)
    for d in diffs:
        print(d)
    print(f"{len(diffs)} difference(s)" if diffs else "all stored references match a live run")
    return len(diffs)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only, write nothing")
    args = parser.parse_args(argv)
    if args.check:
        return 1 if check_all() else 0
    write_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
