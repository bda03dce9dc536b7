"""Issue 16: a fitted model is self-contained, and misuse gets a clear message.

Every case asserts the exception (or warning) type and that the message names the
culprit (equation, column or argument) and what to do.
"""

import copy
import os
import pickle
import re
import subprocess
import sys
import types
import warnings

import numpy as np
import pandas as pd
import patsy
import pytest
import scipy.special
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from lowrank_sur import (
    CollinearityError,
    DataRemovedError,
    DroppedRowsWarning,
    HeywoodWarning,
    IdentificationWarning,
    LowRankSUR,
    PerformanceWarning,
    PicklingWarning,
    SpecificationError,
    SURDesign,
    fit_arrays,
    simulate_sur,
)
from lowrank_sur.datasets import grunfeld_formulas, grunfeld_wide
from lowrank_sur.exceptions import RankSelectionWarning
from lowrank_sur.fitters import fit_design


# Functions used inside formulas: module level, so that pickle finds them by reference.
def sq(v):
    return np.asarray(v) ** 2


def default_rank(v):  # the package has a function of this name; the user's must win
    return 3.0 * np.asarray(v) + 1.0


def _frame(n=40, k=3, seed=0, extra=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "x": rng.normal(size=n),
        "z": rng.normal(size=n),
        "pos": rng.uniform(1.0, 3.0, size=n),
        "g": rng.choice(list("abc"), size=n),
    })
    f = rng.normal(size=n)
    for j in range(k):
        df[f"y{j}"] = 1.0 + 0.5 * df["x"] + f * (j + 1) + rng.normal(size=n)
    if extra:
        unused = pd.DataFrame(rng.normal(size=(n, extra)),
                              columns=[f"unused{c}" for c in range(extra)])
        df = pd.concat([df, unused], axis=1)
    return df


def _eqs(template, k=3):
    return {f"e{j}": template.format(j=j) for j in range(k)}


def _quiet_fit(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(**kw)


@pytest.fixture(scope="module")
def df():
    return _frame()


@pytest.fixture(scope="module")
def res(df):
    return _quiet_fit(LowRankSUR(_eqs("y{j} ~ center(x) + z"), df), rank=1)


@pytest.fixture(scope="module")
def grunfeld():
    return grunfeld_wide(), grunfeld_formulas()


@pytest.fixture(scope="module")
def gres(grunfeld):
    wide, F = grunfeld
    return _quiet_fit(LowRankSUR(F, wide), rank=1)


@pytest.fixture(scope="module")
def pair_res():
    sim = simulate_sur(50, 3, 2, 1, seed=0)
    return _quiet_fit(LowRankSUR({f"e{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(3)}), rank=1)


# ===================================================== 1. self-contained model
def test_model_keeps_a_copy_of_the_used_columns_only():
    df = _frame(extra=200)
    model = LowRankSUR(_eqs("y{j} ~ center(x) + z"), df)
    assert model.system.formula_data is not df
    assert sorted(model.system.formula_data.columns) == ["x", "y0", "y1", "y2", "z"]
    assert not np.shares_memory(model.system.formula_data["x"].to_numpy(), df["x"].to_numpy())
    small = LowRankSUR(_eqs("y{j} ~ center(x) + z"), _frame())
    # 200 unused columns do not make the pickle bigger
    assert len(pickle.dumps(model)) < 1.2 * len(pickle.dumps(small))


def test_mutating_the_dataframe_after_the_fit_changes_nothing():
    df = _frame()
    new = _frame(seed=5).iloc[:7]
    res = _quiet_fit(LowRankSUR(_eqs("y{j} ~ center(x) + C(g)"), df), rank=1)
    params, pred = res.params.copy(), res.predict(new)
    pickled = pickle.dumps(res)
    df["x"] += 100.0  # in place, through the caller's object
    df.loc[df.index[:5], "y0"] = -50.0
    df["g"] = "a"
    for r in (res, pickle.loads(pickled), pickle.loads(pickle.dumps(res))):
        pd.testing.assert_series_equal(r.params, params)
        pd.testing.assert_frame_equal(r.predict(new), pred)


def test_unpickled_stateful_transform_predicts_the_same(res):
    new = _frame(seed=9).iloc[:6]
    back = pickle.loads(pickle.dumps(res))
    np.testing.assert_array_equal(back.predict(new).to_numpy(), res.predict(new).to_numpy())


def test_mutating_arrays_of_pairs_after_the_fit_changes_nothing():
    sim = simulate_sur(50, 3, 2, 1, seed=1)
    Xs, Y = [X.copy() for X in sim.Xs], sim.Y.copy()
    res = _quiet_fit(LowRankSUR({f"e{j}": (Y[:, j], Xs[j]) for j in range(3)}), rank=1)
    params, fitted = res.params.copy(), res.fittedvalues
    for X in Xs:
        X *= 10.0
    Y[:] = 0.0
    pd.testing.assert_series_equal(res.params, params)
    pd.testing.assert_frame_equal(res.fittedvalues, fitted)
    assert not any(np.shares_memory(a, b) for a in res.model.system.exog for b in Xs)


def test_namespace_arrays_used_by_a_formula_are_copied():
    df = _frame()
    w = np.array([2.0])
    res = _quiet_fit(LowRankSUR(_eqs("y{j} ~ I(x * w[0])"), df), rank=1)
    before = res.predict(df.iloc[:5])
    w[0] = 50.0
    pd.testing.assert_frame_equal(res.predict(df.iloc[:5]), before)


# ================================================ 2. formula environment, pickle
def test_user_function_survives_pickling():
    df = _frame()
    res = _quiet_fit(LowRankSUR(_eqs("y{j} ~ sq(x)"), df), rank=1)
    back = pickle.loads(pickle.dumps(res))
    pd.testing.assert_frame_equal(back.predict(df.iloc[:8]), res.predict(df.iloc[:8]))


def test_user_function_named_like_a_package_function_is_the_users():
    df = _frame()
    res = _quiet_fit(LowRankSUR(_eqs("y{j} ~ default_rank(x)"), df), rank=1)
    b = res.params.to_numpy().reshape(3, 2)
    expected = b[:, 0] + np.outer(3.0 * df["x"].to_numpy()[:8] + 1.0, b[:, 1])
    for r in (res, pickle.loads(pickle.dumps(res))):
        np.testing.assert_allclose(r.predict(df.iloc[:8]).to_numpy(), expected, rtol=1e-12)


def test_unpicklable_formula_function_is_named_at_pickling_time():
    df = _frame()
    cube = lambda v: np.asarray(v) ** 3  # noqa: E731, F841 - used by the formula
    res = _quiet_fit(LowRankSUR(_eqs("y{j} ~ cube(x)"), df), rank=1)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        blob = pickle.dumps(res)
    assert [w.category for w in got] == [PicklingWarning]  # one warning for the pickle
    assert re.match(r"equation 'e0': the design of 'y0 ~ cube\(x\)' could not be pickled "
                    r"because \['cube'\].*def at module level.*\(and 1 more equations\).*"
                    r"transform=False", str(got[0].message))
    back = pickle.loads(blob)
    pd.testing.assert_series_equal(back.params, res.params)
    with pytest.raises(RuntimeError, match=r"equation 'e0'.*transform=False"):
        back.predict(df)
    X = {f"e{j}": np.column_stack([np.ones(5), df["x"].to_numpy()[:5] ** 3]) for j in range(3)}
    np.testing.assert_allclose(back.predict(X, transform=False).to_numpy(),
                               res.predict(df.iloc[:5]).to_numpy(), rtol=1e-12)


def test_unpickled_in_a_new_process_predicts_the_same(tmp_path):
    df = _frame()
    env = patsy.EvalEnvironment([{"np": np, "special": scipy.special}])
    res = _quiet_fit(LowRankSUR(_eqs("y{j} ~ center(x) + np.log(pos) + C(g) + special.expit(z)"),
                                df, eval_env=env), rank=1)
    new = _frame(seed=3).iloc[:5]
    res.save(tmp_path / "res.pickle")
    new.to_pickle(tmp_path / "new.pickle")
    script = (
        "import pickle, sys; import pandas as pd\n"
        f"res = pickle.load(open({str(tmp_path / 'res.pickle')!r}, 'rb'))\n"
        f"new = pd.read_pickle({str(tmp_path / 'new.pickle')!r})\n"
        f"res.predict(new).to_pickle({str(tmp_path / 'out.pickle')!r})\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ},
                   cwd=os.path.dirname(os.path.dirname(__file__)), timeout=120)
    pd.testing.assert_frame_equal(pd.read_pickle(tmp_path / "out.pickle"), res.predict(new))


def test_data_of_another_library():
    class Frame:  # e.g. a polars DataFrame
        def to_pandas(self):
            return _frame()

    with pytest.raises(TypeError, match=r"data must be a pandas DataFrame.*got Frame; convert "
                                        r"it with data.to_pandas\(\)"):
        LowRankSUR(_eqs("y{j} ~ x"), Frame())


def test_deepcopy_keeps_the_design_even_with_a_lambda():
    df = _frame()
    cube = lambda v: np.asarray(v) ** 3  # noqa: E731, F841 - used by the formula
    res = _quiet_fit(LowRankSUR(_eqs("y{j} ~ cube(x)"), df), rank=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        twin = copy.deepcopy(res)
    pd.testing.assert_frame_equal(twin.predict(df.iloc[:5]), res.predict(df.iloc[:5]))
    assert twin.model.system.exog[0] is not res.model.system.exog[0]


def test_formula_function_missing_at_unpickling_is_reported_on_use():
    mod = types.ModuleType("_lowrank_sur_tmp_transforms")
    exec("import numpy as np\ndef half(v):\n    return np.asarray(v) / 2\n", mod.__dict__)
    sys.modules[mod.__name__] = mod
    try:
        df = _frame()
        half = mod.half  # noqa: F841 - used by the formula
        res = _quiet_fit(LowRankSUR(_eqs("y{j} ~ half(x)"), df), rank=1)
        blob = pickle.dumps(res)
    finally:
        del sys.modules[mod.__name__]
    back = pickle.loads(blob)  # loads: only the design is lost
    assert back.params.equals(res.params)
    with pytest.raises(RuntimeError, match=r"equation 'e0'.*could not be restored.*before "
                                           r"unpickling"):
        back.predict(df)


@pytest.mark.parametrize("env", ["x", -1, 1.5])
def test_bad_eval_env(df, env):
    with pytest.raises(TypeError, match="eval_env must be a patsy.EvalEnvironment"):
        LowRankSUR(_eqs("y{j} ~ x"), df, eval_env=env)


def test_eval_env_depth_is_relative_to_the_caller(df):
    def build():
        return LowRankSUR(_eqs("y{j} ~ scale_me(x)"), df, eval_env=1)

    def scale_me(v):
        return 2 * np.asarray(v)

    model = build()  # finds scale_me one frame up, here
    np.testing.assert_allclose(model.system.exog[0][:, 1], 2 * df["x"].to_numpy())


# ====================================================== 3. after remove_data()
@pytest.fixture
def removed(df):
    res = _quiet_fit(LowRankSUR(_eqs("y{j} ~ center(x) + z"), df), rank=1)
    other = _quiet_fit(LowRankSUR(_eqs("y{j} ~ center(x) + z"), df), rank=0)
    before = {
        "t": res.t_test("e0_z = 0").effect, "wald": res.wald_test("e0_z = 0, e1_z = 0").statistic,
        "cov": res.cov_params(), "ci": res.conf_int(), "diag": res.lr_test_diagonal().stat,
        "bp": res.breusch_pagan().stat, "cmp": res.compare_lr_test(other, method="chi2").stat,
        "pred": res.predict(df.iloc[:4]), "fs": res.factor_summary(),
    }
    res.remove_data()
    return res, other, before


@pytest.mark.parametrize("what, call", [
    ("resid", lambda r: r.resid),
    ("fittedvalues", lambda r: r.fittedvalues),
    ("predict() without new data", lambda r: r.predict()),
    ("model.loglike", lambda r: r.model.loglike(r.params, r.error_cov.F, r.error_cov.D)),
    ("model.fit", lambda r: r.model.fit(rank=1)),
    ("model.predict(params) without exog", lambda r: r.model.predict(r.params)),
    ("lr_test_unrestricted", lambda r: r.lr_test_unrestricted()),
])
def test_after_remove_data_one_clear_message(removed, what, call):
    res = removed[0]
    for r in (res, pickle.loads(pickle.dumps(res))):
        with pytest.raises(DataRemovedError, match=rf"^{re.escape(what)}.*remove_data\(\) "
                                                   r"dropped"):
            call(r)


def test_after_remove_data_what_was_kept_still_works(removed, df):
    res, other, before = removed
    for r in (res, pickle.loads(pickle.dumps(res))):
        np.testing.assert_allclose(r.t_test("e0_z = 0").effect, before["t"])
        np.testing.assert_allclose(r.wald_test("e0_z = 0, e1_z = 0").statistic, before["wald"],
                                   rtol=1e-8)
        np.testing.assert_allclose(r.cov_params(), before["cov"], rtol=1e-8, atol=1e-14)
        pd.testing.assert_frame_equal(r.conf_int(), before["ci"])
        assert r.lr_test_diagonal().stat == before["diag"]
        assert r.breusch_pagan().stat == before["bp"]
        assert r.compare_lr_test(other, method="chi2").stat == before["cmp"]
        pd.testing.assert_frame_equal(r.predict(df.iloc[:4]), before["pred"])
        pd.testing.assert_frame_equal(r.factor_summary(), before["fs"])
        assert "Equation: e0" in r.summary().as_text()


def test_after_remove_data_large_p_restrictions_need_the_data():
    sim = simulate_sur(30, 200, 3, 1, seed=2)  # P = 600: the full covariance is not kept
    res = _quiet_fit(LowRankSUR({f"e{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(200)}),
                     rank=1)
    bse = res.bse.copy()
    res.remove_data()
    pd.testing.assert_series_equal(res.bse, bse)
    with pytest.raises(DataRemovedError, match=r"covariance of the 600 coefficients.*"
                                               r"remove_data\(\)"):
        res.t_test("e0_x1 = 0")


# ======================================================= 4. extreme scales
def _scaled(wide, factor, prefixes):
    out = wide.copy()
    for c in out.columns:
        if c.startswith(prefixes):
            out[c] = out[c] * factor
    return out


def test_huge_regressors_are_diagnosed_not_called_collinear(grunfeld):
    wide, F = grunfeld
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow on the way
        with pytest.raises(ValueError, match=r"equation 'gm': regressor 'value_gm' has values "
                                             r"of order .*e\+203.*rescale it") as info:
            LowRankSUR(F, _scaled(wide, 1e200, ("value", "capital")))
    assert not isinstance(info.value, CollinearityError)
    with pytest.raises(ValueError, match=r"equation 'gm': regressor 'value_gm'.*e-197"):
        LowRankSUR(F, _scaled(wide, 1e-200, ("value", "capital")))


def test_large_regressors_fit_equivariantly(grunfeld, gres):
    wide, F = grunfeld
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HeywoodWarning)
        warnings.simplefilter("error", RuntimeWarning)
        big = LowRankSUR(F, _scaled(wide, 1e60, ("value", "capital"))).fit(rank=1)
    scale = np.where(big.params.index.str.endswith("Intercept"), 1.0, 1e60)
    np.testing.assert_allclose(big.params * scale, gres.params, rtol=1e-6)
    np.testing.assert_allclose(big.bse * scale, gres.bse, rtol=1e-6)
    # and collinearity is still found at that scale
    df = _scaled(wide, 1e60, ("value", "capital")).assign(v2=lambda d: 2 * d["value_gm"])
    with pytest.raises(CollinearityError, match=r"equation 'gm'.*'v2'"):
        LowRankSUR({**F, "gm": "invest_gm ~ value_gm + v2"}, df)


@pytest.mark.parametrize("factor, order", [(1e300, r"1e\+60\d"), (1e-300, r"1e-59\d")])
def test_extreme_responses_are_diagnosed(grunfeld, factor, order):
    wide, F = grunfeld
    model = LowRankSUR(F, _scaled(wide, factor, ("invest_gm",)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match=rf"equation 'gm': the residual variance of the "
                                             rf"response is of order {order}.*rescale the "
                                             r"response") as info:
            model.fit(rank=1)
    assert "exactly" not in str(info.value)


@pytest.mark.parametrize("factor", [1e-40, 1e40])
def test_exact_fit_found_at_any_scale(grunfeld, factor):
    wide, F = grunfeld
    df = wide.assign(exact=factor * (2.0 + 3.0 * wide["value_gm"]))
    model = LowRankSUR({**F, "gm": "exact ~ value_gm"}, df)
    with pytest.raises(ValueError, match=r"equation 'gm'.*fit the response exactly"):
        model.fit(rank=1)


def test_exact_fit_of_several_equations_reads_well(grunfeld):
    wide, F = grunfeld
    df = wide.assign(e1=2.0 * wide["value_gm"], e2=3.0 - wide["value_ch"])
    model = LowRankSUR({**F, "gm": "e1 ~ value_gm", "ch": "e2 ~ value_ch"}, df)
    with pytest.raises(ValueError, match=r"^equations 'gm', 'ch': the regressors fit"):
        model.fit(rank=1)


# =================================================== 5-7. predict edge cases
def test_predict_dataframe_with_transform_false(gres, grunfeld):
    with pytest.raises(TypeError, match=r"transform=False.*dict label -> design matrix.*"
                                        r"transform=True"):
        gres.predict(grunfeld[0].iloc[:5], transform=False)


@pytest.mark.parametrize("transform", ["no", 1, None])
def test_predict_transform_must_be_bool(gres, grunfeld, transform):
    with pytest.raises(TypeError, match="transform must be True or False"):
        gres.predict(grunfeld[0], transform=transform)


def test_predict_str_column_in_new_data(gres, grunfeld):
    new = grunfeld[0].astype({"value_gm": str})
    with pytest.raises(SpecificationError, match=r"equation 'gm': column 'value_gm' of the new "
                                                 r"data has dtype .*numeric.*pd.to_numeric"):
        gres.predict(new)


def test_predict_missing_column_in_new_data(gres, grunfeld):
    with pytest.raises(SpecificationError, match=r"equation 'gm'.*no column\(s\) \['value_gm'\]"):
        gres.predict(grunfeld[0].drop(columns="value_gm"))


@pytest.mark.parametrize("value", [np.nan, None, pd.NA])
def test_predict_missing_values_in_new_data(gres, grunfeld, value):
    new = grunfeld[0].astype({"capital_ch": object} if value is not np.nan else {})
    new.loc[1940, "capital_ch"] = value
    with pytest.raises(SpecificationError, match=r"equation 'ch': column 'capital_ch' of the new "
                                                 r"data has 1 missing value\(s\) \(first: row "
                                                 r"1940\); drop or fill"):
        gres.predict(new)


def test_predict_inf_in_new_data(gres, grunfeld):
    new = grunfeld[0].copy()
    new.loc[1940, "capital_ch"] = np.inf
    with pytest.raises(SpecificationError, match=r"equation 'ch'.*NaN or inf in 'capital_ch' for "
                                                 r"1 row\(s\) \(first: 1940\); drop or fill"):
        gres.predict(new)
    with pytest.raises(SpecificationError, match=r"equation 'ch'.*NaN or inf in "
                                                 r"'np.log\(capital_ch - 1000\)'"):
        df = grunfeld[0]
        F = {"ch": "invest_ch ~ np.log(capital_ch - 1000)", "gm": "invest_gm ~ value_gm"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = LowRankSUR(F, df.assign(capital_ch=df["capital_ch"] + 2000)).fit(rank=1)
        r.predict(df)  # log of negative numbers in the new data


def test_predict_series_is_refused(gres, grunfeld):
    with pytest.raises(TypeError, match=r"exog is a Series; pass a DataFrame"):
        gres.predict(grunfeld[0].iloc[0])


def test_predict_new_categorical_level(df):
    res = _quiet_fit(LowRankSUR(_eqs("y{j} ~ C(g) + x"), df), rank=1)
    new = df.iloc[:3].assign(g="zzz")
    with pytest.raises(SpecificationError, match=r"equation 'e0': cannot apply .* to the new "
                                                 r"data"):
        res.predict(new)


def test_array_predict_3d(pair_res):
    with pytest.raises(ValueError, match=r"equation 'e0': exog must be 2-D"):
        pair_res.predict([np.ones((5, 2, 2))] * 3)
    with pytest.raises(TypeError, match=r"list of 3 matrices"):
        pair_res.predict(np.ones((3, 5, 2)))


def test_array_predict_mismatched_rows(pair_res):
    with pytest.raises(ValueError, match=r"equation 'e1': exog has 6 rows but equation 'e0' "
                                         r"has 5"):
        pair_res.predict([np.ones((5, 2)), np.ones((6, 2)), np.ones((5, 2))])


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_array_predict_nan_or_inf(pair_res, value):
    X = np.ones((5, 2))
    bad = X.copy()
    bad[3, 1] = value
    with pytest.raises(ValueError, match=r"equation 'e2': exog has NaN or inf in 1 row\(s\) "
                                         r"\(first: row 3\); drop or fill"):
        pair_res.predict([X, X, bad])
    with pytest.raises(ValueError, match=r"equation 'e0'.*NaN or inf in 5 row"):
        pair_res.predict([np.full((5, 2), np.nan), X, X])


def test_array_predict_wrong_columns_count_and_labels(pair_res):
    with pytest.raises(ValueError, match=r"equation 'e1': exog has 3 columns, the model has 2"):
        pair_res.predict([np.ones((5, 2)), np.ones((5, 3)), np.ones((5, 2))])
    with pytest.raises(KeyError, match=r"missing \['e2'\], unknown \['e9'\]"):
        pair_res.predict({"e0": np.ones((5, 2)), "e1": np.ones((5, 2)), "e9": np.ones((5, 2))})
    with pytest.raises(ValueError, match="exog has 2 entries but the model has 3 equations"):
        pair_res.predict([np.ones((5, 2))] * 2)


def test_array_predict_misaligned_indexes(pair_res):
    X = pd.DataFrame(np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"equation 'e2': exog's index differs from equation "
                                         r"'e0''s; rows are matched by position"):
        pair_res.predict([X, np.ones((5, 2)), X.set_axis(range(10, 15))])


def test_array_predict_dataframe_columns_by_name():
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"const": 1.0, "a": rng.normal(size=30), "b": rng.normal(size=30)})
    eqs = {f"e{j}": (X["a"] * (j + 1) + X["b"] + rng.normal(size=30), X) for j in range(3)}
    res = _quiet_fit(LowRankSUR(eqs), rank=1)
    shuffled = X[["b", "const", "a"]]
    pd.testing.assert_frame_equal(res.predict({f"e{j}": shuffled for j in range(3)}),
                                  res.predict({f"e{j}": X for j in range(3)}))


def test_model_predict_and_loglike_check_params(gres):
    model = gres.model
    with pytest.raises(ValueError, match=r"params has shape \(3,\) but the model has 15 "
                                         r"coefficients"):
        model.loglike(np.ones(3), gres.error_cov.F, gres.error_cov.D)
    with pytest.raises(ValueError, match="params has shape"):
        model.predict(np.ones(16))
    with pytest.raises(TypeError, match=r"loglike\(params, F, D\).*results.error_cov.F"):
        model.loglike(gres.params)


# ============================================================ 8. fit_arrays
def test_fit_arrays_eq_names_of_the_wrong_length():
    sim = simulate_sur(30, 3, 2, 1, seed=4)
    Y = sim.Y.copy()
    Y[0, 2] = np.nan
    with pytest.raises(ValueError, match=r"eq_names has 2 labels but Y has 3 columns; give one "
                                         r"label per equation"):
        fit_arrays(sim.Xs, Y, 1, eq_names=["a", "b"])
    with pytest.raises(ValueError, match=r"eq_names has 4 labels"):
        fit_arrays(sim.Xs, sim.Y, 1, eq_names=["a", "b", "c", "d"])
    with pytest.raises(TypeError, match="eq_names must be a sequence of K labels"):
        fit_arrays(sim.Xs, sim.Y, 1, eq_names="abc")
    with pytest.raises(ValueError, match=r"^c: the response contains NaN"):
        fit_arrays(sim.Xs, Y, 1, eq_names=["a", "b", "c"])


def test_fit_arrays_accepts_any_iterable_of_matrices():
    sim = simulate_sur(30, 3, 2, 1, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fit_arrays(sim.Xs, sim.Y, 1)
        gen = fit_arrays((X for X in sim.Xs), sim.Y, 1)
    np.testing.assert_array_equal(np.concatenate(gen.coefs), np.concatenate(ref.coefs))
    with pytest.raises(TypeError, match="Xs must be a sequence of K regressor matrices"):
        fit_arrays({"a": sim.Xs[0]}, sim.Y, 1)
    with pytest.raises(ValueError, match="complex numbers"):
        fit_arrays(sim.Xs, sim.Y + 1j, 1)


def test_dense_fitter_warns_at_large_k():
    n, K = 5, 2001
    design = SURDesign([np.ones((n, 1))] * K)
    Y = np.random.default_rng(0).normal(size=(n, K))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerformanceWarning)  # stops before the slow fit
        with pytest.raises(PerformanceWarning, match=r"method='em'.*K=2001.*GB.*method='als'"):
            fit_design(design, Y, 1, method="em")


# ================================================= weak: data and formulas
def test_transform_nan_rows_warn_with_count_and_equation():
    df = _frame(n=60)
    df.loc[:27, "pos"] = -1.0
    eqs = {"e0": "y0 ~ np.log(pos)", "e1": "y1 ~ x", "e2": "y2 ~ x"}
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        model = LowRankSUR(eqs, df)
    cats = [w.category for w in got]
    assert RuntimeWarning not in cats  # numpy's "invalid value in log" does not leak
    assert cats == [DroppedRowsWarning]
    assert "equation 'e0': 28 of 60 rows are NaN after evaluating 'y0 ~ np.log(pos)'" in str(
        got[0].message)
    assert model.n_dropped == 28 and model.nobs == 32
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # python -W error
        warnings.simplefilter("ignore", DroppedRowsWarning)
        LowRankSUR(eqs, df)
    with pytest.raises(SpecificationError, match=r"equation 'e0': 28 of 60 rows.*"
                                                 r"missing='drop'"):
        LowRankSUR(eqs, df, missing="raise")


@pytest.mark.parametrize("dtype", [object, "str"])
def test_missing_categories_drop_the_row(dtype):
    df = _frame()
    df["h"] = pd.Series(["u", None, "v", "u"] * 10, dtype=dtype)
    model = LowRankSUR({"e0": "y0 ~ h", "e1": "y1 ~ x"}, df)
    assert model.n_dropped == 10  # a missing category is missing, not a level of its own
    assert model.system.equations[0].exog_names == ["Intercept", "h[T.v]"]


def test_an_equation_with_no_complete_row_is_named(df):
    with pytest.raises(SpecificationError, match=r"equation 'e1': every row has a missing value "
                                                 r"in its variables \('y1 ~ bad'"):
        LowRankSUR({"e0": "y0 ~ x", "e1": "y1 ~ bad"}, df.assign(bad=np.nan))


@pytest.mark.parametrize("subset, match", [
    ([True, False], r"boolean mask of 2 values but data has 40 rows"),
    (pd.Series(True, index=range(100, 140)), r"boolean Series whose index differs"),
    ([1000, 1001], r"subset names rows that data does not have"),
])
def test_from_formula_subset(df, subset, match):
    with pytest.raises(SpecificationError, match=match):
        LowRankSUR.from_formula(_eqs("y{j} ~ x"), df, subset=subset)
    assert LowRankSUR.from_formula(_eqs("y{j} ~ x"), df, subset=df["x"] > 0).nobs == int(
        (df["x"] > 0).sum())


def test_missing_values_in_the_data_are_not_blamed_on_transforms():
    df = _frame(n=60)
    df.loc[:3, "pos"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = LowRankSUR({"e0": "y0 ~ np.log(pos)", "e1": "y1 ~ x"}, df)
    assert model.n_dropped == 4


def test_int64_overflow_is_caught():
    df = _frame().assign(big=np.arange(40, dtype=np.int64) * 10**10)
    with pytest.raises(SpecificationError, match=r"equation 'e0': 'I\(big \*\* 2\)' overflows "
                                                 r"the integer type of column\(s\) \['big'\].*"
                                                 r"astype\(float\)"):
        LowRankSUR(_eqs("y{j} ~ I(big**2)"), df)
    small = _frame().assign(k=np.arange(40, dtype=np.int64))
    LowRankSUR(_eqs("y{j} ~ I(k**2) + C(g)"), small)  # no false alarm


@pytest.mark.parametrize("values", [
    lambda x: pd.Series(list(x), dtype=object),
    lambda x: pd.Series([f"{v:.6f}" for v in x], dtype="str"),
])
def test_numbers_stored_as_objects_or_text(values):
    df = _frame()
    df["o"] = values(df["x"]).to_numpy()
    with pytest.raises(SpecificationError, match=r"equation 'e0': column 'o' .*40 dummy columns"
                                                 r".*pd.to_numeric\(df\['o'\]\).*C\(o\)"):
        LowRankSUR(_eqs("y{j} ~ o"), df)


def test_categorical_on_purpose_is_allowed():
    df = _frame()
    df["o"] = pd.Series([1.0] * 20 + [2.0] * 20, dtype=object)
    model = LowRankSUR(_eqs("y{j} ~ C(o)"), df)
    assert model.system.equations[0].exog_names == ["Intercept", "C(o)[T.2.0]"]


def test_duplicate_column_names():
    df = _frame()
    dup = pd.concat([df, df[["x"]]], axis=1)
    with pytest.raises(SpecificationError, match=r"equation 'e0': data has several columns "
                                                 r"named \['x'\]; rename them"):
        LowRankSUR(_eqs("y{j} ~ x"), dup)
    LowRankSUR(_eqs("y{j} ~ z"), dup)  # duplicates the formulas do not use are fine


def test_duplicate_exog_names_of_a_pair():
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(10, 2)), columns=["c", "c"])
    with pytest.raises(SpecificationError, match=r"equation 'a': exog has several columns "
                                                 r"named \['c'\]"):
        LowRankSUR({"a": (np.arange(10.0), X)})


def test_constant_of_any_value_counts_as_constant():
    df = _frame().assign(two=2.0)
    model = LowRankSUR(_eqs("y{j} ~ 0 + two + x"), df)
    assert model.k_constant == 3 and model.df_model == 3
    assert LowRankSUR(_eqs("y{j} ~ 0 + x"), df).k_constant == 0


def test_complex_data():
    sim = simulate_sur(30, 3, 2, 1, seed=0)
    eqs = {f"e{j}": (sim.Y[:, j] + 1j, sim.Xs[j]) for j in range(3)}
    with pytest.raises(SpecificationError, match=r"equation 'e0': endog 'e0' is complex.*np.real"):
        LowRankSUR(eqs)
    df = _frame().assign(c=lambda d: d["x"] + 1j)
    with pytest.raises(SpecificationError, match=r"equation 'e0': column 'c' has dtype complex"):
        LowRankSUR(_eqs("y{j} ~ c"), df)


@pytest.mark.parametrize("make, dtype", [
    (lambda n: pd.date_range("2000", periods=n), "datetime64"),
    (lambda n: pd.to_timedelta(np.arange(n), unit="D"), "timedelta64"),
    (lambda n: pd.period_range("2000", periods=n, freq="M"), "period"),
])
def test_dates_as_regressors(make, dtype):
    df = _frame().assign(t=make(40))
    with pytest.raises(SpecificationError, match=rf"equation 'e0': column 't'.*{dtype}.*dates "
                                                 r"and durations are not numbers.*dt.days"):
        LowRankSUR(_eqs("y{j} ~ t + x"), df)


def test_two_responses_in_one_formula(df):
    with pytest.raises(SpecificationError, match=r"equation 'a'.*has 2 columns.*one response.*"
                                                 r"I\(a \+ b\)"):
        LowRankSUR({"a": "y0 + y1 ~ x", "b": "y2 ~ x"}, df)


def test_formula_without_tilde(df):
    with pytest.raises(SpecificationError, match=r"equation 'a': formula 'y0' has no '~'"):
        LowRankSUR({"a": "y0", "b": "y2 ~ x"}, df)


def test_misspelt_column_suggests_the_right_one(df):
    with pytest.raises(SpecificationError, match=r"equation 'e0'.*no column\(s\) \['xx'\] "
                                                 r"\(similar columns: \['x'\]\)"):
        LowRankSUR({"e0": "y0 ~ xx", "e1": "y1 ~ x"}, df)


def test_numpy_function_is_not_reported_as_a_missing_column(df):
    with pytest.raises(SpecificationError) as info:
        LowRankSUR({"e0": "y0 ~ np.log(nothere)", "e1": "y1 ~ x"}, df)
    assert "['nothere']" in str(info.value) and "np" not in str(info.value).split("column(s)")[1]


def test_other_dtypes_that_work(df):
    rng = np.random.default_rng(7)
    d = df.assign(
        b=rng.normal(size=40) > 0,
        cat=pd.Categorical(rng.choice(list("uv"), 40)),
        i64=pd.array([None] + list(range(39)), dtype="Int64"),
        f64=pd.array([None] + list(rng.normal(size=39)), dtype="Float64"),
        s=pd.Series(rng.choice(list("pq"), 40), dtype="str"),
    )
    model = LowRankSUR(_eqs("y{j} ~ b + cat + i64 + f64 + s"), d)
    assert model.n_dropped == 1  # the pd.NA row
    assert model.system.equations[0].exog_names == [
        "Intercept", "b[T.True]", "cat[T.v]", "s[T.q]", "i64", "f64"]


def test_unused_category_level_is_reported(df):
    d = df.assign(cat=pd.Categorical(np.repeat(list("uv"), 20), categories=list("uvw")))
    with pytest.raises(CollinearityError, match=r"equation 'e0'.*'cat\[T.w\]'.*all zero"):
        LowRankSUR(_eqs("y{j} ~ cat"), d)


def test_zero_variance_regressor_with_an_intercept(df):
    with pytest.raises(CollinearityError, match=r"equation 'e0'.*'flat'.*Drop the redundant"):
        LowRankSUR(_eqs("y{j} ~ x + flat"), df.assign(flat=5.0))


def test_frame_shapes(df):
    with pytest.raises(SpecificationError, match="data has no rows"):
        LowRankSUR(_eqs("y{j} ~ x"), df.iloc[:0])
    with pytest.raises(SpecificationError, match=r"MultiIndex columns.*flatten"):
        LowRankSUR(_eqs("y{j} ~ x"), pd.concat({"a": df}, axis=1))
    numbered = df.set_axis(range(df.shape[1]), axis=1)
    with pytest.raises(SpecificationError, match=r"equation 'e0'.*not strings.*df.columns.map"):
        LowRankSUR(_eqs("y{j} ~ x"), numbered)
    with pytest.raises(SpecificationError, match=r"equation 'a': endog and exog have no rows"):
        LowRankSUR({"a": (np.ones(0), np.ones((0, 1)))})


def test_non_numeric_exog_column_of_a_pair():
    X = pd.DataFrame({"c": list("abcd"), "d": np.arange(4.0)})
    with pytest.raises(SpecificationError, match=r"equation 'a': exog column\(s\) \['c'\] are "
                                                 r"not numeric.*pd.get_dummies"):
        LowRankSUR({"a": (np.arange(4.0), X)})


# ================================================= weak: arguments of fit
@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(rank=1, ptol="a"), TypeError, "ptol must be a positive float"),
    (dict(rank=1, d_floor="x"), TypeError, "d_floor must be a positive float"),
    (dict(rank=1, accelerate="no", method="em"), TypeError, "accelerate must be True or False"),
    (dict(rank="bic", max_rank="3"), TypeError, "max_rank must be an integer"),
    (dict(rank="bic", max_rank=-5), ValueError, "max_rank must be >= 0"),
    (dict(rank="bic", max_rank=7), ValueError, r"max_rank=7 is too large.*at most max_rank=4"),
    (dict(rank=1, max_rank=3), ValueError, r"max_rank=3 is used only by rank='aic'.*drop it"),
    (dict(max_rank=3), ValueError, r"max_rank=3 is used only by rank='aic'"),
    (dict(rank=1, cov_kwds={"a": 1}), TypeError, r"cov_kwds \['a'\] are not options of "
                                                 r"cov_type='nonrobust'"),
    (dict(rank=1, cov_kwds=[1]), TypeError, "cov_kwds must be a dict"),
])
def test_bad_fit_arguments(grunfeld, kwargs, exc, match):
    wide, F = grunfeld
    with pytest.raises(exc, match=match):
        LowRankSUR(F, wide).fit(**kwargs)


def test_convergence_warning_names_the_tolerance_that_held(grunfeld):
    wide, F = grunfeld
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        LowRankSUR(F, wide).fit(rank=1, tol=1e-3, ptol=1e-300, maxiter=5)
    conv = [str(w.message) for w in got if w.category is ConvergenceWarning]
    assert len(conv) == 1
    assert "against ptol=1e-300" in conv[0]
    assert "the log-likelihood had settled: increase maxiter or loosen ptol" in conv[0]


def test_default_rank_at_k2_does_not_warn(grunfeld):
    wide, F = grunfeld
    model = LowRankSUR({"gm": F["gm"], "ch": F["ch"]}, wide)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = model.fit()
    assert res.rank == 1
    with pytest.warns(IdentificationWarning, match="rank=1 exceeds the Ledermann bound"):
        model.fit(rank=1)  # chosen by the user: warned


def test_rank_selection_summarises_the_candidates_warnings(grunfeld):
    wide, F = grunfeld
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        res = LowRankSUR(F, wide).fit(rank="bic")
    # ranks 3 and 4 (past the Ledermann bound for K = 5) are listed but not fitted
    assert res.rank == 2 and list(res.rank_selection["heywood"][:3]) == [0, 1, 0]
    assert res.rank_selection["heywood"][3:].isna().all()
    messages = [str(w.message) for w in got]
    assert len(got) == 1, messages  # the chosen fit has none; the others: one summary
    assert got[0].category is RankSelectionWarning
    assert messages[0].startswith("rank selection by BIC chose rank 2; among the other "
                                  "candidates rank(s) [3, 4] were excluded (3: past the "
                                  "Ledermann bound; 4: past the Ledermann bound) and "
                                  "rank(s) [1] had Heywood cases")


def test_heywood_message_lists_equations_readably():
    rng = np.random.default_rng(3)
    n = 200
    f = rng.normal(size=n)
    Y = np.column_stack([f * 2 + 0.5 * rng.normal(size=n) for _ in range(5)])
    Y[:, 1] = 3 * f + 1e-7 * rng.normal(size=n)
    Y[:, 3] = -2 * f + 1e-7 * rng.normal(size=n)
    eqs = {f"e{j}": (Y[:, j], np.ones((n, 1))) for j in range(5)}
    with pytest.warns(HeywoodWarning, match=r"variances of equations 'e1', 'e3' hit their "
                                            r"floor"):
        LowRankSUR(eqs).fit(rank=1)


def test_grunfeld_heywood_case_is_genuine(grunfeld):
    """The rank-1 Grunfeld fit is a true Heywood case, so its warning stays.

    As the floor on D shrinks, the log-likelihood keeps rising towards a limit and
    Westinghouse's idiosyncratic variance follows the floor down: the maximum is on
    the boundary D_wh = 0 (Westinghouse's and GE's errors correlate at 0.81).
    """
    wide, F = grunfeld
    model = LowRankSUR(F, wide)
    fits = []
    for floor in (1e-2, 1e-4, 1e-6):
        with pytest.warns(HeywoodWarning, match=r"of equation 'wh' hit its floor"):
            fits.append(model.fit(rank=1, d_floor=floor, tol=1e-13))
    llf = [r.llf for r in fits]
    assert llf[0] < llf[1] < llf[2] and llf[2] - llf[1] < llf[1] - llf[0]
    d_wh = np.array([r.idiosyncratic_var["wh"] for r in fits])
    np.testing.assert_allclose(d_wh[:-1] / d_wh[1:], 100.0, rtol=1e-3)


# ============================================== weak: tests and the summary
@pytest.mark.parametrize("r_matrix, exc, match", [
    ("", ValueError, r"r_matrix contains an empty restriction; write one like 'gm_value_gm = 0'"),
    ("   ", ValueError, "r_matrix contains an empty restriction"),
    (["gm_value_gm = 0", ""], ValueError, "r_matrix contains an empty restriction"),
    ([], ValueError, "r_matrix is empty"),
    (None, TypeError, "r_matrix is required"),
    ("gm_valu_gm = 0", ValueError, r"at 'gm_valu_gm'.*did you mean \['gm_value_gm'"),
    (np.ones((1, 3)), ValueError, r"r_matrix has shape \(1, 3\) but the model has 15 "
                                  r"coefficients"),
    (np.full((1, 15), np.nan), ValueError, "r_matrix contains NaN or inf"),
    ((np.eye(15)[:2], [0.0]), ValueError, r"q must hold 2 finite values"),
    (["a", 1], TypeError, "r_matrix must be restriction strings"),
])
@pytest.mark.parametrize("method", ["t_test", "wald_test"])
def test_bad_restrictions(gres, method, r_matrix, exc, match):
    with pytest.raises(exc, match=match):
        getattr(gres, method)(r_matrix)


def test_restriction_strings_give_statsmodels_results(gres):
    R = np.zeros((2, 15))
    R[0, 1], R[1, 4] = 1.0, 1.0
    a = gres.wald_test("gm_value_gm = 0, ch_value_ch = 0")
    b = gres.wald_test(R)
    assert float(a.statistic) == pytest.approx(float(b.statistic), rel=1e-12)
    t = gres.t_test(["gm_value_gm = 0", "ch_value_ch = 0"])
    np.testing.assert_allclose(t.effect, gres.params.iloc[[1, 4]])


@pytest.mark.parametrize("alpha, exc", [(1.5, ValueError), (0, ValueError), (1, ValueError),
                                        (-0.1, ValueError), (95, ValueError),
                                        ("0.05", TypeError), (None, TypeError)])
def test_alpha_outside_zero_one(gres, alpha, exc):
    with pytest.raises(exc, match=r"alpha must be .*in \(0, 1\), e.g. 0.05 for 95% intervals"):
        gres.conf_int(alpha)
    with pytest.raises(exc, match=r"alpha must be"):
        gres.summary(alpha=alpha)


def test_summary_equations_argument(gres):
    text = gres.summary(equations="ch").as_text()
    assert text.count("Equation: ") == 1 and "Equation: ch" in text
    with pytest.raises(KeyError, match=r"unknown equation label\(s\) \['e1'\]; the labels are "
                                       r"\['gm', 'ch'"):
        gres.summary(equations=["e1"])
    with pytest.raises(TypeError, match="max_equations must be an integer"):
        gres.summary(max_equations="a")
    with pytest.raises(TypeError, match="equations must be a list of equation labels"):
        gres.summary(equations=3)


def test_not_implemented_methods_say_what_to_use(gres):
    with pytest.raises(NotImplementedError, match=r"t_test_pairwise is not available.*t_test"
                                                  r".*multipletests"):
        gres.t_test_pairwise("gm_value_gm")
    for name in ("score", "score_obs", "hessian", "information"):
        with pytest.raises(NotImplementedError, match=rf"LowRankSUR.{name} is not implemented"
                                                      r".*statsmodels.tools.numdiff"):
            getattr(gres.model, name)(gres.params)


def test_results_return_copies(gres):
    for name in ("fittedvalues", "resid", "factor_loadings", "idiosyncratic_var"):
        first = getattr(gres, name)
        kept = first.copy()
        first.iloc[0] = 1e9  # the user's in-place edit
        again = getattr(gres, name)
        pd.testing.assert_frame_equal(pd.DataFrame(again), pd.DataFrame(kept))
    s = gres.breusch_pagan()
    s.notes.append("mine")
    assert "mine" not in gres.breusch_pagan().notes


def test_compare_lr_test_arguments(gres, grunfeld):
    wide, F = grunfeld
    with pytest.raises(TypeError, match="other must be a LowRankSUR results instance, got int"):
        gres.compare_lr_test(5)
    with pytest.raises(ValueError, match="both fits have rank 1; nothing to test"):
        gres.compare_lr_test(gres)
    other = _quiet_fit(LowRankSUR(F, wide.assign(invest_gm=wide["invest_gm"] + 1.0)), rank=0)
    with pytest.raises(ValueError, match="same equations and data"):
        gres.compare_lr_test(other)


# ======================================================= the property test
_TEMPLATES = [
    "y{j} ~ x",
    "y{j} ~ center(x) + z",
    "y{j} ~ C(g) + x",
    "y{j} ~ sq(x) + z",
    "y{j} ~ standardize(z) + np.log(pos)",
]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(
    k=st.integers(2, 3),
    n=st.integers(24, 40),
    seed=st.integers(0, 2**16),
    picks=st.lists(st.sampled_from(_TEMPLATES), min_size=3, max_size=3),
)
def test_pickle_round_trip_and_mutation_change_nothing(k, n, seed, picks):
    df = _frame(n=n, k=k, seed=seed)
    new = _frame(n=8, k=k, seed=seed + 1)
    eqs = {f"e{j}": picks[j].format(j=j) for j in range(k)}
    model = LowRankSUR(eqs, df)
    res = _quiet_fit(model, rank=1)
    other = _quiet_fit(model, rank=0)
    name = res.model.param_names[-1]
    assert model.system.formula_data is not df

    def snapshot(r, o):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            text = r.summary().as_text().splitlines()
            unres = o.lr_test_unrestricted().stat
        return {
            "params": r.params.to_numpy(), "bse": r.bse.to_numpy(),
            "predict": r.predict(new).to_numpy(), "fitted": r.fittedvalues.to_numpy(),
            "summary": [ln for ln in text if not ln.startswith(("Date:", "Time:"))],
            "t": np.ravel(r.t_test(f"{name} = 0").tvalue),
            "wald": float(r.wald_test(f"{name} = 0, {r.model.param_names[0]} = 0").statistic),
            "diag": r.lr_test_diagonal().stat, "bp": r.breusch_pagan().stat,
            "cmp": r.compare_lr_test(o, method="chi2").stat, "ci": r.conf_int().to_numpy(),
            "ci90": r.conf_int(0.1).to_numpy(), "unres": unres,
        }

    def same(a, b):
        for key in a:
            if key == "summary":
                assert a[key] == b[key]
            else:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)

    before = snapshot(res, other)
    blob = pickle.dumps((res, other))
    same(before, snapshot(*pickle.loads(blob)))
    df["x"] += 100.0  # the caller changes its data in place
    df["pos"] *= 3.0
    df.loc[df.index[:3], "y0"] = 0.0
    same(before, snapshot(res, other))
    same(before, snapshot(*pickle.loads(blob)))
    same(before, snapshot(*pickle.loads(pickle.dumps((res, other)))))
