"""Plots of a fit (matplotlib with the Agg backend) and the message when matplotlib is missing."""

from __future__ import annotations

import sys

import numpy as np
import pytest

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
    np.testing.assert_allclose(offsets, grunfeld_fit.factor_loadings.to_numpy()[:, [0, 1]])
    annotations = [t.get_text() for t in ax.texts]
    assert annotations == grunfeld_fit.equation_labels  # few equations: labelled
    assert "factor 1" in ax.get_xlabel() and "factor 2" in ax.get_ylabel()


def test_loadings_swapped_factors_custom_labels_and_axes(grunfeld_fit):
    fig, ax = plt.subplots()
    names = ["A", "B", "C", "D", "E"]
    out = plotting.plot_loadings(grunfeld_fit, factors=(1, 0), ax=ax, labels=names)
    assert out is fig
    offsets = ax.collections[0].get_offsets()
    np.testing.assert_allclose(offsets, grunfeld_fit.factor_loadings.to_numpy()[:, [1, 0]])
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
    np.testing.assert_allclose(heights, res.factor_loadings["factor_1"].to_numpy())


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
    for call in (grunfeld_fit.plot_llf_trace, grunfeld_fit.plot_loadings):
        with pytest.raises(ImportError, match=r'pip install "lowrank_sur\[plot\]"'):
            call()
