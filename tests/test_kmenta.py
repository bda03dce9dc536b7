"""Kmenta's demand and supply system: the same response in both equations.

Demand ``q ~ 1 + p + d`` and supply ``q ~ 1 + p + f + a`` (Kmenta 1986; the system of
systemfit's documentation). The two-step FGLS estimate is well defined; the likelihood
is not bounded (the two residuals can be made identical: both equations hold the
constant and ``p``), so the iterated/ML estimate does not exist, and the package says so.
Data: ``tests/results/kmenta`` (provenance in its README). Reference: linearmodels' SUR
(two-step GLS), live.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lowrank_sur import fit_arrays
from lowrank_sur.exceptions import ConvergenceWarning, UnboundedLikelihoodWarning

DATA = Path(__file__).parent / "results" / "kmenta" / "kmenta.csv"
NAMES = ["demand", "supply"]


@pytest.fixture(scope="module")
def kmenta():
    df = pd.read_csv(DATA)
    assert df.shape == (20, 5) and list(df.columns) == ["q", "p", "d", "f", "a"]
    one = np.ones(len(df))
    Xd = np.column_stack([one, df["p"], df["d"]])
    Xs = np.column_stack([one, df["p"], df["f"], df["a"]])
    Y = np.column_stack([df["q"], df["q"]])
    return df, [Xd, Xs], Y


def _fit(kmenta, rank, **kwargs):
    _, Xs, Y = kmenta
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = fit_arrays(Xs, Y, rank, eq_names=NAMES, **kwargs)
    return rec, caught


def _unbounded_messages(caught):
    return [str(w.message) for w in caught if issubclass(w.category, UnboundedLikelihoodWarning)]


@pytest.mark.parametrize(("sigma_df", "debiased"), [("nobs", False), ("geomean", True)])
def test_two_step_fgls_matches_linearmodels(kmenta, sigma_df, debiased):
    """Two-step FGLS (rank="full") is well defined and equals linearmodels' SUR."""
    from linearmodels.system import SUR

    df, Xs, _ = kmenta
    eqs = {
        "demand": {"dependent": df["q"], "exog": pd.DataFrame(Xs[0], columns=["c", "p", "d"])},
        "supply": {"dependent": df["q"],
                   "exog": pd.DataFrame(Xs[1], columns=["c", "p", "f", "a"])},
    }
    ref = SUR(eqs).fit(method="gls", iterate=False, debiased=debiased, cov_type="unadjusted")
    rec, caught = _fit(kmenta, "full", method="fgls", sigma_df=sigma_df)
    assert not _unbounded_messages(caught)  # two-step: no maximum is claimed
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    np.testing.assert_allclose(np.concatenate(rec.coefs), np.asarray(ref.params),
                               rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(rec.cov.S, np.asarray(ref.sigma), rtol=1e-8)


def test_iterated_fgls_warns_unbounded(kmenta):
    """Iterated FGLS (the ML estimate with an unrestricted Sigma) does not exist here."""
    rec, caught = _fit(kmenta, "full", method="fgls", iterate=True)
    messages = _unbounded_messages(caught)
    assert messages and all(name in messages[0] for name in NAMES), messages
    assert "same response" in messages[0] and "iterate=False" in messages[0]
    assert rec.likelihood_bounded is False and rec.converged is False
    assert [w for w in caught if issubclass(w.category, ConvergenceWarning)]


def test_ml_rank1_warns_unbounded(kmenta):
    """ML at rank 1 (Sigma unrestricted for K=2): warned before the fit, naming both."""
    rec, caught = _fit(kmenta, 1)
    messages = _unbounded_messages(caught)
    assert messages and all(name in messages[0] for name in NAMES), messages
    assert rec.likelihood_bounded is False
    # no short start's iteration limit in the messages
    assert not any("maxiter=10 " in str(w.message) or "maxiter=25 " in str(w.message)
                   for w in caught)
