"""Plots of a fit (matplotlib with the Agg backend) and the message when matplotlib is missing."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import statsmodels.api as sm

from lowrank_sur import LowRankSUR, fit_arrays, simulate_sur
from lowrank_sur.datasets import grunfeld_formulas, grunfeld_wide

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg", force=True)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lowrank_sur import plotting  # noqa: E402


@pytest.fixture(scope="module")
def grunfeld_fit():
    return LowRankSUR(grunfeld_formulas(), grunfeld_wide()).fit(rank=2)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_llf_trace_from_results(grunfeld_fit):
    fig = grunfeld_fit.plot_llf_trace()
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    y = ax.lines[0].get_ydata()
    np.testing.assert_allclose(y, grunfeld_fit.llf_history)
    assert np.all(np.diff(y) >= -1e-9)  # never decreasing
    assert "ALS" in ax.get_title() and "rank 2" in ax.get_title()
    assert len(fig.axes) == 2  # twin axis with the distance to the final llf


def test_llf_trace_from_fit_record_on_given_axes():
    sim = simulate_sur(60, 6, rank=1, seed=1)
    rec = fit_arrays(sim.Xs, sim.Y, 1, method="em", accelerate=False, maxiter=200)
    fig, ax = plt.subplots()
    out = plotting.plot_llf_trace(rec, ax=ax)
    assert out is fig
    np.testing.assert_allclose(ax.lines[0].get_ydata(), rec.llf_history)
    assert "EM" in ax.get_title()


def test_llf_trace_needs_history():
    class Empty:
        llf_history: list[float] = []

    with pytest.raises(ValueError, match="llf_history"):
        plotting.plot_llf_trace(Empty())


def test_loadings_scatter(grunfeld_fit):
    fig = grunfeld_fit.plot_loadings()
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    offsets = ax.collections[0].get_offsets()
    # correlation scale by default: loadings over each firm's error standard deviation
    sd = np.sqrt(np.diag(grunfeld_fit.error_cov.to_dense()))
    F = grunfeld_fit.factor_loadings.to_numpy()
    np.testing.assert_allclose(offsets, F[:, [0, 1]] / sd[:, None], rtol=1e-12)
    assert np.all(np.abs(offsets) <= 1.0)
    assert "correlation scale" in ax.get_title()
    annotations = [t.get_text() for t in ax.texts]
    assert annotations == grunfeld_fit.equation_labels  # few equations: labelled
    assert "factor 1" in ax.get_xlabel() and "factor 2" in ax.get_ylabel()


def test_loadings_swapped_factors_custom_labels_and_axes(grunfeld_fit):
    fig, ax = plt.subplots()
    names = ["A", "B", "C", "D", "E"]
    out = plotting.plot_loadings(grunfeld_fit, factors=(1, 0), ax=ax, labels=names,
                                 scale="covariance")
    assert out is fig
    offsets = ax.collections[0].get_offsets()
    np.testing.assert_allclose(offsets, grunfeld_fit.factor_loadings.to_numpy()[:, [1, 0]])
    with pytest.raises(ValueError, match="scale must be"):
        grunfeld_fit.plot_loadings(scale="raw")
    assert [t.get_text() for t in ax.texts] == names
    with pytest.raises(ValueError, match="labels has 2 entries"):
        plotting.plot_loadings(grunfeld_fit, labels=["a", "b"])
    with pytest.raises(ValueError, match="out of range"):
        grunfeld_fit.plot_loadings(factors=(0, 2))


def test_loadings_many_equations_unlabelled_and_rank_one():
    sim = simulate_sur(80, 40, rank=1, seed=3)
    eqs = {f"y{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(40)}
    res = LowRankSUR(eqs).fit(rank=1)
    fig = res.plot_loadings()
    ax = fig.axes[0]
    assert len(ax.patches) == 40  # one bar per equation
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, res.factor_summary()["std_factor_1"].to_numpy())


def test_loadings_rank_zero_is_an_error():
    sim = simulate_sur(50, 4, rank=1, seed=2)
    res = LowRankSUR({f"y{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(4)}).fit(rank=0)
    with pytest.raises(ValueError, match="rank 0"):
        res.plot_loadings()


def test_missing_matplotlib_names_the_extra(monkeypatch, grunfeld_fit):
    # None in sys.modules makes any import of that module raise ImportError.
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    for call in (grunfeld_fit.plot_llf_trace, grunfeld_fit.plot_loadings,
                 grunfeld_fit.plot_scree):
        with pytest.raises(ImportError, match=r'pip install "lowrank_sur\[plot\]"'):
            call()


# ------------------------------------------------------------------ factor report
def test_scree_plot_is_the_ols_residual_correlation_spectrum(grunfeld_fit):
    fig = grunfeld_fit.plot_scree()
    ax = fig.axes[0]
    wide = grunfeld_wide()
    resid = np.column_stack([
        sm.OLS.from_formula(f, wide).fit().resid for f in grunfeld_formulas().values()])
    ref = np.sort(np.linalg.eigvalsh(np.corrcoef(resid, rowvar=False)))[::-1]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), ref, rtol=1e-10)
    assert abs(ax.lines[0].get_ydata().sum() - 5) < 1e-10  # K eigenvalues summing to K
    assert ax.lines[2].get_xdata()[0] == 2.5  # the fitted rank is marked
    fig2 = grunfeld_fit.plot_scree(max_eigenvalues=3)
    assert fig2.axes[0].lines[0].get_ydata().size == 3
    with pytest.raises(ValueError, match="max_eigenvalues"):
        grunfeld_fit.plot_scree(max_eigenvalues=0)


def test_factor_summary_orders_shares_and_adds_the_correlation_scale():
    # N=200, K=8 with two factors of very different strength and equations of very
    # different sizes
    sim = simulate_sur(200, 8, rank=2, seed=11)
    scale = np.logspace(-2, 3, 8)
    res = LowRankSUR({f"y{j}": (sim.Y[:, j] * scale[j], sim.Xs[j]) for j in range(8)}).fit(rank=2)
    fs = res.factor_summary()
    share = fs.attrs["factor_share"].to_numpy()
    assert share[0] >= share[1] > 0
    F = res.factor_loadings.to_numpy()
    D = res.idiosyncratic_var.to_numpy()
    G = F.T @ (F / D[:, None])
    assert abs(G[0, 1]) <= 1e-10 * np.sqrt(G[0, 0] * G[1, 1])  # still the canonical rotation
    # same Sigma as the fit
    np.testing.assert_allclose(F @ F.T + np.diag(D), res.error_cov.to_dense(), rtol=1e-10)
    sd = np.sqrt(np.diag(res.error_cov.to_dense()))
    np.testing.assert_allclose(fs[["std_factor_1", "std_factor_2"]].to_numpy(),
                               F / sd[:, None], rtol=1e-12)
    # on the correlation scale the common share is the sum of squared standardized loadings
    np.testing.assert_allclose((fs[["std_factor_1", "std_factor_2"]] ** 2).sum(axis=1),
                               fs["common_share"], rtol=1e-12)
    # the standardized loadings do not depend on the equations' units (up to each column's
    # sign, which follows the largest loading on the covariance scale)
    ref = LowRankSUR({f"y{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(8)}).fit(rank=2)
    mine = fs[["std_factor_1", "std_factor_2"]].to_numpy()
    theirs = ref.factor_summary()[["std_factor_1", "std_factor_2"]].to_numpy()
    np.testing.assert_allclose(mine * np.sign(np.sum(mine * theirs, axis=0)), theirs,
                               atol=1e-5)


def test_summary_factor_table_has_one_format_per_column():
    from lowrank_sur.summary import column_format

    assert column_format([6.984e-05, 1.586e04, 2.903]) == ".3e"
    assert column_format([2878.4, 122.1, 12.3]) == ".0f"
    assert column_format([0.5, 0.25]) == ".4f"
    with pytest.warns(Warning):
        res = LowRankSUR(grunfeld_formulas(), grunfeld_wide()).fit(rank=1)  # Heywood: wh
    text = res.summary().as_text()
    block = text[text.index("Error factor structure"):].splitlines()
    rows = [line.split() for line in block if line.split() and line.split()[0] in
            res.equation_labels]
    assert len(rows) == 5
    for col in range(1, 5):
        cells = [r[col] for r in rows]
        sci = ["e" in c for c in cells]
        assert all(sci) or not any(sci), cells
        if not any(sci):
            assert len({len(c.split(".")[-1]) if "." in c else 0 for c in cells}) == 1, cells
