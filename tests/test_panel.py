"""``LowRankSUR.from_panel``: one formula on a long (entity, time) panel.

The reference is the dict-of-formulas path on the same data in wide form, one
formula per entity with that entity's columns: the two must give the same fit
(coefficients, standard errors, log-likelihood to 1e-10), with the same missing-row
semantics. Also: parameter names, stateful transforms (the documented pooled
convention), bad input naming the entity, predictions on new long data, pickling.
"""

from __future__ import annotations

import pickle
import re

import numpy as np
import pandas as pd
import pytest

from lowrank_sur import CollinearityError, LowRankSUR, SpecificationError

# the small simulated panels have Heywood cases and several maxima at times; both paths
# see the same ones, which is what these tests compare
pytestmark = [
    pytest.mark.filterwarnings("ignore::lowrank_sur.HeywoodWarning"),
    pytest.mark.filterwarnings("ignore:the starts reached"),
]

ENTITIES = ["a", "b", "c", "d", "e", "f"]
COLUMNS = ["y", "x1", "x2", "g"]


def _long(seed=0, T=40):
    """A long panel with a factor structure in the errors and a three-level category."""
    rng = np.random.default_rng(seed)
    K = len(ENTITIES)
    f = rng.normal(size=(T, 2))
    load = rng.normal(size=(K, 2))
    rows = []
    for j, ent in enumerate(ENTITIES):
        x1 = rng.uniform(1.0, 3.0, T)
        x2 = rng.normal(size=T)
        g = np.array(["p", "q", "r"])[np.arange(T) % 3]
        rng.shuffle(g)
        eps = f @ load[j] + rng.normal(size=T)
        y = 1.0 + 0.5 * j + 2.0 * np.log(x1) - x2 + 0.3 * x1 * x2 + (g == "q") + eps
        rows.append(pd.DataFrame({"entity": ent, "time": np.arange(2000, 2000 + T),
                                  "y": y, "x1": x1, "x2": x2, "g": g}))
    return pd.concat(rows).set_index(["entity", "time"])


def _wide(long):
    """The same data in wide form: column ``{col}_{entity}``, one row per time."""
    wide = long[COLUMNS].unstack(level=0)
    wide.columns = [f"{c}_{e}" for c, e in wide.columns]
    return wide.sort_index()


def _per_entity(formula, ent):
    return re.sub(r"\b(y|x1|x2|g)\b", lambda m: f"{m.group(1)}_{ent}", formula)


def _assert_same_fit(res_panel, res_dict, atol=1e-10):
    np.testing.assert_allclose(np.asarray(res_panel.params), np.asarray(res_dict.params),
                               rtol=0, atol=atol)
    np.testing.assert_allclose(np.asarray(res_panel.bse), np.asarray(res_dict.bse),
                               rtol=0, atol=atol)
    assert abs(res_panel.llf - res_dict.llf) < atol * max(1.0, abs(res_dict.llf))


FORMULAS = [
    "y ~ x1 + x2",
    "y ~ np.log(x1) + x2 + x1:x2 + C(g)",
    "y ~ I(x1 ** 2) + x2 * x1 - 1",
    "np.log(np.abs(y) + 1) ~ C(g, Treatment('r')) + x2",
]


@pytest.mark.parametrize("formula", FORMULAS)
def test_same_fit_as_dict_of_formulas(formula):
    long = _long()
    model = LowRankSUR.from_panel(formula, long)
    wide = _wide(long)
    eqs = {e: _per_entity(formula, e) for e in ENTITIES}
    ref = LowRankSUR(eqs, wide)
    assert model.equation_labels == ENTITIES
    assert model.nobs == ref.nobs == 40 and model.k_params == ref.k_params
    np.testing.assert_array_equal(model.system.endog.to_numpy(), ref.system.endog.to_numpy())
    res, res_ref = model.fit(rank=2), ref.fit(rank=2)
    _assert_same_fit(res, res_ref)


def test_parameter_names_are_entity_and_patsy_column():
    model = LowRankSUR.from_panel("y ~ x1 + C(g)", _long())
    assert model.param_names[:4] == ["a_Intercept", "a_C(g)[T.q]", "a_C(g)[T.r]", "a_x1"]
    assert model.param_names[-1] == "f_x1"
    assert len(model.param_names) == 4 * len(ENTITIES)
    assert model.system.endog.index.name == "time"


def test_missing_values_and_unbalanced_entities_drop_the_time_for_all():
    long = _long(seed=1)
    long.loc[("b", 2003), "x1"] = np.nan  # a missing value
    long.loc[("e", 2010), "y"] = np.nan
    long = long.drop(index=[("c", 2005), ("a", 2039)])  # unbalanced: rows absent
    long = long.sample(frac=1.0, random_state=0)  # row order does not matter
    formula = "y ~ np.log(x1) + x2 + C(g)"
    model = LowRankSUR.from_panel(formula, long)
    ref = LowRankSUR({e: _per_entity(formula, e) for e in ENTITIES}, _wide(long))
    assert model.n_dropped == ref.n_dropped == 4
    assert model.nobs == 36
    assert not model.system.endog.index.isin([2003, 2005, 2010, 2039]).any()
    _assert_same_fit(model.fit(rank=1), ref.fit(rank=1))
    with pytest.raises(SpecificationError, match="missing='raise'"):
        LowRankSUR.from_panel(formula, long, missing="raise")


def test_stateful_transforms_are_learned_on_the_pooled_estimation_sample():
    long = _long(seed=2)
    long.loc[("d", 2001), "x2"] = np.nan
    model = LowRankSUR.from_panel("y ~ center(x1) + x2", long)
    kept = long.drop(index=2001, level="time")
    pooled_mean = kept["x1"].mean()
    X_a = model.system.exog[0]
    x1_a = kept.loc["a", "x1"].sort_index().to_numpy()
    np.testing.assert_allclose(X_a[:, 1], x1_a - pooled_mean, rtol=0, atol=1e-13)
    # the dict path centres per equation: same slopes and fit, other intercepts
    ref = LowRankSUR({e: _per_entity("y ~ center(x1) + x2", e) for e in ENTITIES},
                     _wide(long))
    res, res_ref = model.fit(rank=1), ref.fit(rank=1)
    slopes = [i for i, n in enumerate(model.param_names) if not n.endswith("Intercept")]
    np.testing.assert_allclose(np.asarray(res.params)[slopes],
                               np.asarray(res_ref.params)[slopes], rtol=0, atol=1e-9)
    assert abs(res.llf - res_ref.llf) < 1e-8 * abs(res.llf)


def test_collinear_or_constant_columns_name_the_entity():
    long = _long(seed=3)
    long.loc["c", "x2"] = 2.0 * long.loc["c", "x1"].to_numpy()
    with pytest.raises(CollinearityError, match=r"equation 'c'.*'x2'"):
        LowRankSUR.from_panel("y ~ x1 + x2", long)
    long = _long(seed=3)
    long.loc["e", "x2"] = 5.0  # constant: collinear with the intercept
    with pytest.raises(CollinearityError, match=r"equation 'e'.*'x2'"):
        LowRankSUR.from_panel("y ~ x1 + x2", long)
    long = _long(seed=3)
    long.loc["b", "y"] = 1.5
    with pytest.raises(SpecificationError, match=r"equation 'b'.*constant"):
        LowRankSUR.from_panel("y ~ x1", long)
    long = _long(seed=3)
    long.loc[("f", 2004), "x1"] = np.inf
    with pytest.raises(SpecificationError, match=r"equation 'f'.*'x1'.*inf"):
        LowRankSUR.from_panel("y ~ x1", long)


def test_bad_input():
    long = _long()
    with pytest.raises(SpecificationError, match="MultiIndex"):
        LowRankSUR.from_panel("y ~ x1", long.reset_index())
    with pytest.raises(TypeError, match="DataFrame"):
        LowRankSUR.from_panel("y ~ x1", {"y": [1.0]})
    with pytest.raises(SpecificationError, match="several rows"):
        LowRankSUR.from_panel("y ~ x1", pd.concat([long, long.iloc[:1]]))
    with pytest.raises(SpecificationError, match="similar columns"):
        LowRankSUR.from_panel("y ~ x11", long)
    with pytest.raises(TypeError, match="formula"):
        LowRankSUR.from_panel({"a": "y ~ x1"}, long)


def test_predict_on_new_long_data_is_long():
    long = _long(seed=4)
    res = LowRankSUR.from_panel("y ~ np.log(x1) + x2 + C(g)", long).fit(rank=1)
    new = _long(seed=5, T=6)
    out = res.predict(new)
    # long output, like linearmodels' panel models: one value per row, indexed like it
    assert isinstance(out, pd.Series) and out.index.equals(new.index) and out.name == "y"
    # against the coefficients applied by hand
    B = np.asarray(res.params).reshape(len(ENTITIES), -1)
    for j, ent in enumerate(ENTITIES):
        d = new.loc[ent]
        X = np.column_stack([np.ones(6), d.g == "q", d.g == "r", np.log(d.x1), d.x2])
        np.testing.assert_allclose(out.loc[ent].to_numpy(), X @ B[j], rtol=1e-13)
    # the model's method is the same implementation
    pd.testing.assert_series_equal(res.model.predict_panel(res.params, new), out)
    # unbalanced data in any order: still one prediction per row, indexed like it
    part = new.drop(index=[("a", 2001), ("d", 2004)]).iloc[::-1]
    got = res.predict(part)
    assert got.index.equals(part.index)
    np.testing.assert_allclose(got.to_numpy(), out.loc[part.index].to_numpy(), rtol=1e-15)
    # the in-sample predictions are the fitted values, in the long layout
    fitted = res.predict(long)
    for ent in ENTITIES[:2]:
        np.testing.assert_allclose(fitted.loc[ent].sort_index().to_numpy(),
                                   res.fittedvalues[ent].to_numpy(), rtol=1e-12)
    other = new.rename(index={"a": "zz"}, level=0)
    with pytest.raises(SpecificationError, match="zz"):
        res.predict(other)
    with pytest.raises(SpecificationError, match="zz"):
        res.model.predict_panel(res.params, other)


def test_pickle_keeps_predictions():
    long = _long(seed=6)
    res = LowRankSUR.from_panel("y ~ standardize(x1) + C(g) + x2", long).fit(rank=1)
    new = _long(seed=7, T=5)
    back = pickle.loads(pickle.dumps(res))
    np.testing.assert_array_equal(back.predict(new).to_numpy(), res.predict(new).to_numpy())
    np.testing.assert_array_equal(back.model.predict_panel(back.params, new).to_numpy(),
                                  res.model.predict_panel(res.params, new).to_numpy())
    np.testing.assert_array_equal(np.asarray(back.bse), np.asarray(res.bse))
    expected = res.predict(new).to_numpy()
    res.remove_data()  # the design is kept, the estimation data are not
    assert res.model.system.formula_data is None
    np.testing.assert_array_equal(res.predict(new).to_numpy(), expected)


def test_from_panel_on_grunfeld_matches_the_wide_example():
    from statsmodels.datasets import grunfeld

    from lowrank_sur.datasets import GRUNFELD_FIRMS, grunfeld_formulas, grunfeld_wide

    data = grunfeld.load_pandas().data
    short = {v: k for k, v in GRUNFELD_FIRMS.items()}
    data = data[data.firm.isin(short)].assign(firm=lambda d: d.firm.map(short),
                                              year=lambda d: d.year.astype(int))
    long = data.set_index(["firm", "year"]).sort_index(level="year", sort_remaining=False)
    model = LowRankSUR.from_panel("invest ~ value + capital", long)
    forms = grunfeld_formulas()
    ref = LowRankSUR({f: forms[f] for f in model.equation_labels}, grunfeld_wide())
    _assert_same_fit(model.fit(rank=1), ref.fit(rank=1))
