"""Regenerate ``grunfeld2_linearmodels_robust.json``: linearmodels' robust SUR covariances.

Not run by the tests (they read the file, and call :func:`compute_case` to check that the
installed linearmodels still gives the stored numbers).

Run from the repository root, in an environment with linearmodels::

    python tests/results/make_robust_references.py            # write the file
    python tests/results/make_robust_references.py --check    # compare, write nothing

The system: two Grunfeld firms (General Motors and General Electric; 1935-1954, the
stored ``grunfeld_5firms.csv``), ``invest ~ const + value + capital`` per firm. With
K = 2, a rank-1 low-rank Sigma is unrestricted, so the low-rank ML fit at rank 1 is
linearmodels' iterated GLS ``SUR(equations).fit(method="gls", iterate=True, tol=1e-12,
iter_limit=10000, cov_type=..., **cov_config)``. Every case of :data:`CASES` stores
params, std_errors and the full covariance, with the linearmodels call and the
``cov_type`` / ``cov_kwds`` of ours that give the same covariance (the conventions are
in ``lowrank_sur/coefcov/robust.py``). Cluster labels are functions of the year, named
in :data:`CLUSTERS`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
OUT = HERE / "grunfeld2_linearmodels_robust.json"
GENERATOR = "tests/results/make_robust_references.py"
FIRMS = ("gm", "ge")

#: Cluster labels as functions of the year.
CLUSTERS = {
    "four-year periods": lambda year: (year - 1935) // 4,
    "year mod 3": lambda year: (year - 1935) % 3,
}

#: (linearmodels cov_type, its options, our cov_type, our cov_kwds); cluster options
#: name entries of CLUSTERS (one name, or a list of two for two-way).
CASES = [
    ("robust", {}, "HC0", {}),
    ("robust", {"debiased": True}, "HC1", {}),
    ("kernel", {"kernel": "bartlett", "bandwidth": 3}, "HAC", {"maxlags": 3}),
    ("kernel", {"kernel": "parzen", "bandwidth": 4, "debiased": True},
     "HAC", {"kernel": "parzen", "maxlags": 4, "use_correction": True}),
    ("kernel", {"kernel": "qs", "bandwidth": 2.5}, "HAC", {"kernel": "qs", "bandwidth": 2.5}),
    ("clustered", {"clusters": "four-year periods"},
     "cluster", {"groups": "four-year periods", "use_correction": False}),
    ("clustered", {"clusters": "four-year periods", "debiased": True, "group_debias": True},
     "cluster", {"groups": "four-year periods"}),
    ("clustered", {"clusters": ["four-year periods", "year mod 3"]},
     "cluster", {"groups": ["four-year periods", "year mod 3"], "use_correction": False}),
]


def _live():
    spec = importlib.util.spec_from_file_location("_lowrank_sur_results_live",
                                                  HERE / "make_live_references.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def cluster_labels(spec, years) -> np.ndarray:
    """The labels named by ``spec`` (a name of :data:`CLUSTERS` or a list of two)."""
    years = np.asarray(years)
    if isinstance(spec, str):
        return np.asarray(CLUSTERS[spec](years))
    return np.column_stack([CLUSTERS[s](years) for s in spec])


def resolve(kwds: dict, years) -> dict:
    """Options with cluster names replaced by their labels."""
    return {k: cluster_labels(v, years) if k in ("clusters", "groups") else v
            for k, v in kwds.items()}


def data() -> pd.DataFrame:
    return _live().read_grunfeld()


def linearmodels_equations(df: pd.DataFrame) -> dict:
    eqs = {}
    for f in FIRMS:
        exog = pd.DataFrame({"const": 1.0, "value": df[f"value_{f}"],
                             "capital": df[f"capital_{f}"]})
        eqs[f] = {"dependent": df[f"invest_{f}"].rename("invest"), "exog": exog}
    return eqs


def compute_case(df: pd.DataFrame, lm_type: str, lm_kwds: dict) -> dict:
    """linearmodels' iterated GLS with one covariance."""
    from linearmodels.system import SUR

    res = SUR(linearmodels_equations(df)).fit(
        method="gls", iterate=True, tol=1e-12, iter_limit=10000, cov_type=lm_type,
        **resolve(lm_kwds, df.index))
    return {"params": res.params.to_list(), "std_errors": res.std_errors.to_list(),
            "cov": res.cov.to_numpy().tolist(), "param_names": list(res.params.index)}


def compute_all() -> dict:
    live = _live()
    df = data()
    cases = []
    for lm_type, lm_kwds, ours, our_kwds in CASES:
        cases.append({"linearmodels_cov_type": lm_type, "linearmodels_options": lm_kwds,
                      "cov_type": ours, "cov_kwds": our_kwds,
                      **compute_case(df, lm_type, lm_kwds)})
    call = ('SUR(equations).fit(method="gls", iterate=True, tol=1e-12, iter_limit=10000, '
            'cov_type=<linearmodels_cov_type>, **<linearmodels_options>)')
    prov = live._provenance(
        "linearmodels", call,
        "tests/results/grunfeld_5firms.csv, firms gm and ge: invest ~ const + value + capital",
        clusters={k: "(year - 1935) // 4" if "four" in k else "(year - 1935) % 3"
                  for k in CLUSTERS})
    prov["generator"] = f"python {GENERATOR}"
    return {"provenance": prov, "firms": list(FIRMS), "cases": cases}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare only, write nothing")
    args = ap.parse_args(argv)
    fresh = compute_all()
    if args.check:
        stored = json.loads(OUT.read_text())
        worst = max(float(np.max(np.abs(np.subtract(a["cov"], b["cov"]))
                                 / np.max(np.abs(b["cov"]))))
                    for a, b in zip(fresh["cases"], stored["cases"]))
        print(f"largest relative change of a stored covariance: {worst:.2e}")
        return 0 if worst < 1e-9 else 1
    OUT.write_text(json.dumps(fresh, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
