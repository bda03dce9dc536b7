"""Our fits of the Stata ``sureg`` systems and the comparison with every Stata block.

Shared by ``test_fgls.py`` (the ``base`` and ``ss`` blocks) and ``test_constraints.py``
(the ``constrained`` blocks). The reference numbers are read by
``tests/results/stata_sureg.py`` (provenance in ``tests/results/stata_sureg/README.md``).
A number matches when it is within ``RTOL`` relative of Stata's, or within the rounding of
Stata's printing (half a unit in the last printed digit), whichever is larger.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from lowrank_sur import LowRankSUR

RESULTS = Path(__file__).resolve().parent / "results"
RTOL = 1e-6


def load_result_module(name: str):
    """Import ``tests/results/<name>.py`` by path (``tests`` is not a package), once."""
    key = f"_lowrank_sur_results_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, RESULTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


stata = load_result_module("stata_sureg")


def our_label(eq: str, coef: str) -> str:
    """Stata's ``equation:coefficient`` as our parameter label (``_cons`` is ``Intercept``)."""
    return f"{eq}_{'Intercept' if coef == stata.CONSTANT else coef}"


def model_for(block, data) -> LowRankSUR:
    """The system of a block as formulas (regressors in Stata's order, constant added)."""
    eqs = {eq: f"{eq} ~ " + " + ".join(c for c in coefs if c != stata.CONSTANT)
           for eq, coefs in block.coef_names.items()}
    return LowRankSUR(eqs, data)


def constraint_string(block) -> str:
    """Stata's constraints 1 and 2: the first regressor's coefficient equal in all equations."""
    firsts = [our_label(eq, coefs[0]) for eq, coefs in block.coef_names.items()]
    return f"{firsts[0]} = {firsts[1]}, {firsts[0]} = {firsts[2]}"


#: Stata's normal p-values are ``2 (1 - Phi(|z|))`` in double precision: an absolute error
#: of up to two units of 2^-52 (``0`` is printed below it, ``2.220446e-16`` is 2^-52).
P_ATOL = 2.0**-51


def assert_matches(ours, ref, rounding, what: str, atol: float = 0.0) -> float:
    """Every entry within max(RTOL |ref|, rounding, atol); returns the largest relative error.

    ``atol`` allows for an absolute error of Stata's own (:data:`P_ATOL` for p-values).
    """
    ours, ref, rounding = (np.asarray(a, dtype=float) for a in (ours, ref, rounding))
    assert ours.shape == ref.shape, what
    err = np.abs(ours - ref)
    allowed = np.maximum(np.maximum(RTOL * np.abs(ref), rounding), atol)
    bad = ~(err <= allowed)
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} entries differ, e.g. ours {ours[bad][:3]} Stata "
        f"{ref[bad][:3]}"
    )
    big = np.abs(ref) > max(atol, 0.0) * 1e6  # relative errors where they mean something
    return float(np.max(err[big] / np.abs(ref[big]))) if big.any() else 0.0


def compare_block(res, block) -> dict:
    """Compare a fit with all of a block's numbers; returns the largest relative errors."""
    labels = [our_label(eq, c) for eq, c in block.params.index]
    rnd = block.rounding
    params = res.params[labels]
    out = {
        "b": assert_matches(params, block.params["b"], rnd["params"]["b"], "b"),
        "t": assert_matches(res.tvalues[labels], block.params["t"], rnd["params"]["t"], "t"),
        "p": assert_matches(res.pvalues[labels], block.params["p"], rnd["params"]["p"], "p",
                            atol=P_ATOL),
    }
    V = res.cov_params().loc[labels, labels]
    out["V"] = assert_matches(V, block.cov, rnd["cov"], "e(V)")
    eqs = list(block.equations)
    out["Sigma"] = assert_matches(res.sigma.loc[eqs, eqs], block.sigma, rnd["sigma"], "e(Sigma)")
    st, srnd = block.stats, rnd["stats"]
    out["rss"] = assert_matches(res.ssr[eqs], st["rss"], srnd["rss"], "rss")
    out["r2"] = assert_matches(res.rsquared[eqs], st["r2"], srnd["r2"], "r2")
    # per-equation Wald test of the slopes: chi2 (large sample) or F = chi2 / df_m (small)
    chi2 = []
    for eq, coefs in block.coef_names.items():
        slopes = [res.model.param_names.index(our_label(eq, c)) for c in coefs[:-1]]
        Rm = np.zeros((len(slopes), len(res.params)))
        Rm[np.arange(len(slopes)), slopes] = 1.0
        b = Rm @ np.asarray(res.params)
        chi2.append(float(b @ np.linalg.solve(res.cov_params(r_matrix=Rm), b)))
    chi2 = np.array(chi2)
    if block.name.endswith("-ss"):
        out["F"] = assert_matches(chi2 / st["df_m"].to_numpy(), st["F"], srnd["F"], "F")
    else:
        out["chi2"] = assert_matches(chi2, st["chi2"], srnd["chi2"], "chi2")
    return out


def rel_max(actual, desired) -> float:
    """Largest absolute difference relative to the largest absolute entry of ``desired``."""
    actual, desired = np.asarray(actual, dtype=float), np.asarray(desired, dtype=float)
    assert actual.shape == desired.shape
    return float(np.max(np.abs(actual - desired)) / np.max(np.abs(desired)))
