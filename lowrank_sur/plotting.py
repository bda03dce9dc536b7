"""Plots of a fit: the log-likelihood trace, the factor loadings and the residual scree.

matplotlib is an optional dependency (``pip install "lowrank_sur[plot]"``); it is
imported only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_llf_trace", "plot_loadings", "plot_scree"]

_INSTALL_HINT = (
    'plotting needs matplotlib, which is an optional dependency: pip install "lowrank_sur[plot]"'
)


def _pyplot():
    """Import ``matplotlib.pyplot``, or raise ImportError naming the extra to install."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return plt


def _figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    else:
        fig = ax.get_figure()
    return fig, ax


def _unwrap(results: Any) -> Any:
    """The results instance behind a statsmodels results wrapper."""
    return getattr(results, "_results", results)


def plot_llf_trace(results: Any, ax: Axes | None = None) -> Figure:
    """Plot the log-likelihood after each iteration of a fit.

    The log-likelihood never decreases. A second y axis shows the distance to the
    final value on a log scale, which makes the rate of convergence visible (a
    straight line is linear convergence).

    Parameters
    ----------
    results : LowRankSURResults or FitRecord
        A fitted model (anything with an ``llf_history`` list, whose first entry is the
        log-likelihood at the start values).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is created when omitted.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the plot.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    ValueError
        If the fit recorded no log-likelihood values.

    Examples
    --------
    >>> from lowrank_sur import LowRankSUR, simulate_sur
    >>> from lowrank_sur.plotting import plot_llf_trace
    >>> sim = simulate_sur(100, 10, rank=2, seed=0)
    >>> res = LowRankSUR({f"y{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(10)}).fit(rank=2)
    >>> fig = plot_llf_trace(res)  # doctest: +SKIP
    """
    history = np.asarray(_unwrap(results).llf_history, dtype=float)
    if history.size == 0:
        raise ValueError("the fit recorded no log-likelihood values (llf_history is empty)")
    fig, ax = _figure_and_axes(ax, (6.0, 4.0))
    iters = np.arange(history.size)
    (line,) = ax.plot(iters, history, marker="o", markersize=3, label="log-likelihood")
    ax.set_xlabel("iteration (0 = start values)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("log-likelihood")
    method = getattr(_unwrap(results), "method", None)
    rank = getattr(_unwrap(results), "rank", None)
    title = "Log-likelihood trace"
    if method is not None:
        title += f" ({str(method).upper()}"
        title += f", rank {rank})" if rank is not None else ")"
    ax.set_title(title)
    gap = history[-1] - history
    positive = gap > 0
    if history.size > 2 and np.any(positive):
        ax2 = ax.twinx()
        ax2.semilogy(
            iters[positive], gap[positive], color="tab:orange", linestyle="--", marker=".",
            label="final llf - llf",
        )
        ax2.set_ylabel("final llf - llf (log scale)")
        ax.legend(handles=[line, *ax2.get_lines()], loc="center right")
    return fig


def _point_labels(labels, names: list, n_eq: int) -> list[str]:
    """The annotations of :func:`plot_loadings` (see its ``labels``)."""
    if labels is None:
        labels = n_eq <= 30
    if labels is True:
        return [str(n) for n in names]
    if labels is False:
        return []
    text = [str(t) for t in labels]
    if len(text) != n_eq:
        raise ValueError(f"labels has {len(text)} entries; the fit has {n_eq} equations")
    return text


def plot_loadings(
    results: Any,
    factors: Sequence[int] = (0, 1),
    ax: Axes | None = None,
    labels: bool | Sequence[str] | None = None,
    scale: str = "correlation",
) -> Figure:
    """Scatter the equations by their loadings on two factors.

    The loadings are those of
    :attr:`~lowrank_sur.LowRankSURResults.factor_loadings` (``F' D^{-1} F``
    diagonal, factors by decreasing share of the error variance, the largest
    loading of each factor positive), by default on the correlation scale: divided
    by each equation's error standard deviation ``sqrt(Sigma_jj)``, so that
    equations of different sizes are comparable (the ``std_factor_r`` columns of
    ``factor_summary()``). With a single factor, the loadings are drawn as bars.

    Parameters
    ----------
    results : LowRankSURResults
        A fit with rank at least 1.
    factors : tuple of int
        Zero-based indices of the two factors on the x and y axes.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is created when omitted.
    labels : bool or sequence of str, optional
        Point annotations: ``True`` uses the equation labels, a sequence gives one
        label per equation, ``False`` draws none. The default annotates the points
        when there are at most 30 equations.
    scale : {"correlation", "covariance"}
        Loadings over ``sqrt(Sigma_jj)`` (default) or as fitted.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the plot.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    ValueError
        If the fit has no factors, a factor index is out of range, ``labels``
        has the wrong length, or ``scale`` is unknown.

    Examples
    --------
    >>> from lowrank_sur import LowRankSUR
    >>> from lowrank_sur.datasets import grunfeld_formulas, grunfeld_wide
    >>> from lowrank_sur.plotting import plot_loadings
    >>> res = LowRankSUR(grunfeld_formulas(), grunfeld_wide()).fit(rank=2)
    >>> fig = plot_loadings(res)  # doctest: +SKIP
    """
    res = _unwrap(results)
    if scale not in ("correlation", "covariance"):
        raise ValueError(f"scale must be 'correlation' or 'covariance', got {scale!r}")
    loadings = res.factor_loadings
    n_eq, rank = loadings.shape
    if rank == 0:
        raise ValueError("the fit has rank 0: there are no factor loadings to plot")
    fs = res.factor_summary()
    cols = [f"{'std_' if scale == 'correlation' else ''}{c}" for c in loadings.columns]
    L = fs[cols].to_numpy(dtype=float)
    what = "on the correlation scale" if scale == "correlation" else "(covariance scale)"
    text = _point_labels(labels, list(loadings.index), n_eq)

    share = np.asarray(fs.attrs.get("factor_share", np.full(rank, np.nan)), dtype=float)

    def axis_label(i: int) -> str:
        return f"factor {i + 1} ({share[i]:.1%} of error variance)"

    if rank == 1:
        fig, ax = _figure_and_axes(ax, (max(4.0, min(12.0, 0.3 * n_eq + 2.0)), 4.0))
        ax.bar(np.arange(n_eq), L[:, 0], color="tab:blue")
        ax.axhline(0.0, color="0.5", linewidth=0.8)
        ax.set_ylabel(axis_label(0))
        ax.set_xlabel("equation")
        if text:
            ax.set_xticks(np.arange(n_eq), text, rotation=90)
        ax.set_title(f"Factor loadings {what} (rank 1)")
        return fig

    fx, fy = (int(f) for f in factors)
    for f in (fx, fy):
        if not 0 <= f < rank:
            raise ValueError(f"factor index {f} is out of range for a rank-{rank} fit")
    fig, ax = _figure_and_axes(ax, (5.5, 5.0))
    x, y = L[:, fx], L[:, fy]
    common = np.asarray(fs["common_share"], dtype=float)
    points = ax.scatter(x, y, c=common, cmap="viridis", vmin=0.0, vmax=1.0, s=25)
    fig.colorbar(points, ax=ax, label="common share of error variance")
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    ax.axvline(0.0, color="0.5", linewidth=0.8)
    for xi, yi, t in zip(x, y, text):
        ax.annotate(t, (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=8)
    ax.set_xlabel(axis_label(fx))
    ax.set_ylabel(axis_label(fy))
    ax.set_title(f"Factor loadings {what} (rank {rank}, canonical rotation)")
    return fig


def plot_scree(results: Any, max_eigenvalues: int = 30, ax: Axes | None = None) -> Figure:
    """Scree plot: eigenvalues of the correlation matrix of the OLS residuals.

    The residuals are equation-by-equation OLS ones, which do not depend on the rank,
    so the plot helps to choose it: a few eigenvalues well above the rest (and above
    1, the average) suggest as many factors. The fitted rank is marked. Computed from
    the singular values of the standardized N x K residuals
    (:func:`lowrank_sur.factor_report.residual_correlation_eigenvalues`), never a
    K x K matrix.

    Parameters
    ----------
    results : LowRankSURResults
        A fit whose data are still attached.
    max_eigenvalues : int
        Draw at most this many (the largest) eigenvalues.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is created when omitted.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the plot.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    ValueError
        If ``max_eigenvalues`` is not a positive integer.
    """
    from .factor_report import residual_correlation_eigenvalues

    res = _unwrap(results)
    if isinstance(max_eigenvalues, bool) or not isinstance(max_eigenvalues, (int, np.integer)) \
            or max_eigenvalues < 1:
        raise ValueError(f"max_eigenvalues must be a positive integer, got {max_eigenvalues!r}")
    res._require_data("plot_scree")
    d, Y = res.model.design, res.model._Y
    ev = residual_correlation_eigenvalues(Y - d.fitted(d.ols(Y)))[:max_eigenvalues]
    fig, ax = _figure_and_axes(ax, (5.5, 4.0))
    idx = np.arange(1, ev.size + 1)
    ax.plot(idx, ev, marker="o", color="tab:blue")
    ax.axhline(1.0, color="0.5", linewidth=0.8, linestyle=":")
    if 0 < res.rank < ev.size:
        ax.axvline(res.rank + 0.5, color="tab:orange", linestyle="--",
                   label=f"fitted rank {res.rank}")
        ax.legend(loc="upper right")
    ax.set_xlabel("component")
    ax.set_ylabel("eigenvalue of the residual correlation")
    ax.set_title(f"Scree plot of the OLS residuals (K = {res.k_eqs})")
    return fig
