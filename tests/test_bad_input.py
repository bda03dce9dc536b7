"""Bad input and failure modes: a clear exception naming the culprit, never silent output."""

import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from lowrank_sur import (
    CollinearityError,
    HeywoodWarning,
    IdentificationWarning,
    LowRankSUR,
    SpecificationError,
    simulate_sur,
)
from lowrank_sur.datasets import grunfeld_formulas, grunfeld_wide


@pytest.fixture(scope="module")
def wide():
    return grunfeld_wide()


@pytest.fixture(scope="module")
def F():
    return grunfeld_formulas()


@pytest.fixture(scope="module")
def model(wide, F):
    return LowRankSUR(F, wide)


def with_column(df, **cols):
    out = df.copy()
    for k, v in cols.items():
        out[k] = v
    return out


# ------------------------------------------------------------------ data
def test_formula_names_missing_column(wide, F):
    with pytest.raises(SpecificationError, match=r"equation 'gm'.*valu_gm"):
        LowRankSUR({**F, "gm": "invest_gm ~ valu_gm"}, wide)


@pytest.mark.parametrize("values", [list("abcdefghijklmnopqrst"), ["a"] * 20])
def test_non_numeric_response(wide, F, values):
    df = with_column(wide, name=values)
    with pytest.raises(SpecificationError, match=r"equation 'ch'.*not numeric"):
        LowRankSUR({**F, "ch": "name ~ value_ch"}, df)


@pytest.mark.parametrize("column", ["value_ge", "invest_ge"])
def test_inf_names_equation_and_column(wide, F, column):
    df = wide.copy()
    df.loc[1940, column] = np.inf
    with pytest.raises(SpecificationError, match=rf"equation 'ge'.*'{column}'.*inf"):
        LowRankSUR(F, df)


def test_empty_equations(wide):
    with pytest.raises(SpecificationError, match="empty"):
        LowRankSUR({}, wide)


def test_equations_not_a_dict(wide):
    with pytest.raises(TypeError, match="dict"):
        LowRankSUR(["invest_gm ~ value_gm"], wide)


def test_formulas_without_data(F):
    with pytest.raises(SpecificationError, match="no data was given"):
        LowRankSUR(F)


@pytest.mark.parametrize("label", [1, None, ("a",)])
def test_bad_label(wide, F, label):
    with pytest.raises(TypeError, match="labels must be non-empty strings"):
        LowRankSUR({label: "invest_gm ~ value_gm", **F}, wide)


@pytest.mark.parametrize("label", ["", "  ", "\t"])
def test_blank_label(wide, F, label):
    with pytest.raises(SpecificationError, match="is blank; give every equation a name"):
        LowRankSUR({label: "invest_gm ~ value_gm", **F}, wide)


def test_label_clash_after_sanitizing(wide):
    with pytest.raises(SpecificationError, match="clash"):
        LowRankSUR({"gm": "invest_gm ~ value_gm", " gm": "invest_ch ~ value_ch"}, wide)


def test_parameter_name_clash(wide):
    df = with_column(wide, b_c=wide["value_gm"], c=wide["value_ch"])
    with pytest.raises(ValueError, match="parameter names clash"):
        LowRankSUR({"a_b": "invest_gm ~ c", "a": "invest_ch ~ b_c"}, df)


def test_pairs_with_different_lengths():
    with pytest.raises(SpecificationError, match=r"equation 'a'.*10 rows.*9"):
        LowRankSUR({"a": (np.ones(10), np.ones((9, 1))), "b": (np.ones(10), np.ones((10, 1)))})
    with pytest.raises(SpecificationError, match=r"equation 'b'.*same observations"):
        LowRankSUR({"a": (np.ones(10), np.ones((10, 1))), "b": (np.ones(9), np.ones((9, 1)))})


def test_pairs_with_incompatible_indexes():
    rng = np.random.default_rng(0)
    s1 = pd.Series(rng.normal(size=10), index=range(10))
    s2 = pd.Series(rng.normal(size=10), index=range(1, 11))
    with pytest.raises(SpecificationError, match=r"equation 'b'.*index"):
        LowRankSUR({"a": (s1, s1.to_frame("x")), "b": (s2, s2.to_frame("x"))})
    with pytest.raises(SpecificationError, match=r"equation 'a'.*different indexes"):
        LowRankSUR({"a": (s1, s2.to_frame("x"))})


def test_fewer_rows_than_regressors():
    rng = np.random.default_rng(1)
    eqs = {"a": (rng.normal(size=3), rng.normal(size=(3, 4))),
           "b": (rng.normal(size=3), rng.normal(size=(3, 1)))}
    with pytest.raises(ValueError, match=r"equation 'a'.*4 regressors.*3 observations"):
        LowRankSUR(eqs)


def test_perfectly_collinear_names_equation_and_column(wide, F):
    df = with_column(wide, v2=2 * wide["value_gm"])
    with pytest.raises(CollinearityError, match=r"equation 'gm'.*'v2'"):
        LowRankSUR({**F, "gm": "invest_gm ~ value_gm + v2 + capital_gm"}, df)


def test_every_row_dropped(wide, F):
    df = with_column(wide, z=np.nan)
    with pytest.raises(SpecificationError, match="no observation is left"):
        LowRankSUR({**F, "gm": "invest_gm ~ z"}, df)


def test_missing_raise(wide, F):
    df = wide.copy()
    df.loc[1940, "value_gm"] = np.nan
    with pytest.raises(SpecificationError, match="missing='raise'"):
        LowRankSUR(F, df, missing="raise")
    with pytest.raises(ValueError, match="missing must be"):
        LowRankSUR(F, df, missing="ignore")


# ------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(rank=-1), ValueError, "rank must be >= 0"),
        (dict(rank=1.5), TypeError, "rank must be an integer"),
        (dict(rank=True), TypeError, "rank must be an integer"),
        (dict(rank=5), ValueError, "smaller than the number of equations K=5"),
        (dict(rank="xyz"), ValueError, "'aic', 'bic'"),
        (dict(rank=1, method="ols"), ValueError, "method must be one of"),
        (dict(rank=1, maxiter=0), ValueError, "maxiter must be >= 1"),
        (dict(rank=1, maxiter=2.5), TypeError, "maxiter must be an integer"),
        (dict(rank=1, tol=0), ValueError, "tol must be a positive"),
        (dict(rank=1, tol=-1e-3), ValueError, "tol must be a positive"),
        (dict(rank=1, tol=float("nan")), ValueError, "tol must be a positive"),
        (dict(rank=1, bogus=3), TypeError, "bogus"),
    ],
)
def test_bad_fit_arguments(model, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        model.fit(**kwargs)


def test_rank_not_below_nobs():
    sim = simulate_sur(6, 12, 2, 1, seed=0)
    eqs = {f"e{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(12)}
    with pytest.raises(ValueError, match="number of observations N=6"):
        LowRankSUR(eqs).fit(rank=6)


def test_rank_past_ledermann_warns(model):
    with pytest.warns(IdentificationWarning, match="loadings F are not"):
        model.fit(rank=3)


# ------------------------------------------------------- degenerate data
def test_constant_response(wide, F):
    df = with_column(wide, flat=3.0)
    with pytest.raises(SpecificationError, match=r"equation 'gm'.*'flat' is constant"):
        LowRankSUR({**F, "gm": "flat ~ value_gm"}, df)


def test_exact_fit(wide, F):
    df = with_column(wide, exact=2.0 + 3.0 * wide["value_gm"])
    model = LowRankSUR({**F, "gm": "exact ~ value_gm"}, df)
    with pytest.raises(ValueError, match=r"equation 'gm'.*fit the response exactly"):
        model.fit(rank=1)


def test_non_convergence_is_reported(model):
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        res = model.fit(rank=1, maxiter=2)
    assert res.converged is False
    assert "did not converge" in res.summary().as_text()


def test_heywood_case_warns_and_names_equation():
    rng = np.random.default_rng(3)
    n = 200
    f = rng.normal(size=n)
    Y = np.column_stack([f * 2 + 0.5 * rng.normal(size=n) for _ in range(5)])
    Y[:, 2] = 3 * f + 1e-7 * rng.normal(size=n)  # almost pure factor: a Heywood case
    eqs = {f"e{j}": (Y[:, j], np.ones((n, 1))) for j in range(5)}
    with pytest.warns(HeywoodWarning, match="e2"):
        res = LowRankSUR(eqs).fit(rank=1)
    assert res.heywood == ["e2"]
    assert "Heywood" in res.summary().as_text()
    assert np.isfinite(res.llf)


def test_k_larger_than_n_works():
    sim = simulate_sur(40, 120, 2, 2, seed=4)
    eqs = {f"e{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(120)}
    res = LowRankSUR(eqs).fit(rank=2)
    assert res.converged and np.isfinite(res.llf)
    assert np.all(np.isfinite(res.bse))


def test_near_collinear_regressors_converge():
    rng = np.random.default_rng(5)
    n, K = 200, 6
    eqs = {}
    for j in range(K):
        x = rng.normal(size=n)
        X = np.column_stack([np.ones(n), x, x + 1e-9 * rng.normal(size=n)])
        assert np.linalg.cond(X) > 1e8
        eqs[f"e{j}"] = (X @ np.array([1.0, 0.5, 0.5]) + rng.normal(size=n), X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = LowRankSUR(eqs).fit(rank=1)
    assert res.converged and np.isfinite(res.llf)
    # the sum of the two collinear slopes is well determined
    b = res.params.to_numpy().reshape(K, 3)
    np.testing.assert_allclose(b[:, 1] + b[:, 2], 1.0, atol=0.3)
