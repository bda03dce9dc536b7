"""Calibration of lowrank_sur's inference: Monte Carlo with a known truth.

For each design (N, K, k) the script simulates ``reps`` systems with
:func:`lowrank_sur.simulate_sur` (p = 3 regressors per equation including the
constant, loadings N(0, 1), D ~ U(0.5, 1.5); replication r uses seed ``--seed + r``
at every design, so a design run alone (``--designs``) repeats its part of the preset)
and measures, per inference option:

``coverage``
    share of nominal 95% intervals (``conf_int(0.05)``) of the slopes (all
    non-constant coefficients) that contain the true value;
``wald_size``
    rejection rate at 5% of true joint restrictions "the 10 slopes of equations
    5g .. 5g + 4 equal their true values", one ``wald_test`` per disjoint group of five
    equations (``max(1, K // 5)`` tests per replication; F with ``use_t``);
``lr_warp_size``
    size at 5% of the parametric-bootstrap test of rank k against k + 1 by the
    "warp-speed" Monte Carlo of Giacomini, Politis and White (2013): each replication
    draws *one* response matrix from its rank-k fit exactly as ``compare_lr_test``
    does (:func:`lowrank_sur.bootstrap.draw_responses`) and refits both ranks on it
    exactly as ``compare_lr_test`` does; the bootstrap critical value is the 95%
    quantile of those statistics over the replications. This measures the bootstrap
    test's size for the cost of one draw per replication instead of ``n_boot``;
``lr_fdb_warp_size``
    the same for the fast double bootstrap (``compare_lr_test(method="fdb")``,
    Davidson and MacKinnon 2007): each replication also refits rank k on its
    first-level draw, draws *one* second-level response matrix from that refit and
    refits both ranks on it (the library's own refit, seeded as the library seeds it),
    giving ``tau**_r``. The warp-speed FDB rejection rule is the library's FDB
    p-value (:func:`lowrank_sur.bootstrap.fdb_pvalue`) with the B draws of one
    replication replaced by the R first- and second-level draws of all replications:
    replication r rejects when ``p**_r < alpha``, ``p*_r = #{tau*_s >= tau_r} / R``,
    ``p**_r = #{tau*_s > Q**(1 - p*_r)} / R``. Equivalently (up to ties), it rejects
    when ``tau_r`` exceeds the ``1 - alpha*`` quantile of the ``tau*``, where
    ``alpha* = #{tau**_s > Q*(1 - alpha)} / R`` is the share of second-level statistics
    above the single bootstrap's critical value: the FDB lowers the nominal level of
    the single bootstrap by as much as the second level over-rejects at it
    (``lr_fdb_alpha_star`` in the JSON);
``lr_boot_size`` / ``lr_chi2_size``
    the rejection rate of ``compare_lr_test`` itself (``n_boot`` draws) on the first
    ``lr_reps`` replications of the ``lr_designs``, and of the chi2 reference it
    replaces (kept only to show it is not valid) on every replication;
``lr_unres_size``
    rejection rate of ``lr_test_unrestricted()`` (Bartlett's factor with N - p) where
    the unrestricted maximum exists (first ``unres_reps`` replications);
``select_<criterion>``
    share of replications (the first ``select_reps``) where ``<criterion>``
    (candidates 0 .. k + 3) finds the true k.

Options: ``default`` (GLS covariance at the MLE, normal reference), ``debiased``
(Stata's dfk), ``debiased+use_t`` (dfk and t(N - p), ``t_df="equation"``): one fit
per replication serves the three, since they change only the coefficient covariance
and the reference distribution (checked against separate fits on the first
replication). ``bootstrap+use_t`` (``cov_type="bootstrap"``, parametric bootstrap
covariance, with t(N - p)) refits, on the first ``boot_cov_reps`` replications.
Every fit uses one start (``n_starts=1``); beside them linearmodels' iterated GLS
(``SUR(...).fit(method="gls", iterate=True, cov_type="unadjusted")``, with and
without ``debiased=True``) where it runs (K < N).

Monte Carlo standard errors: for coverage and Wald size, the standard deviation over
replications of the per-replication share divided by sqrt(reps) (the intervals and
tests within a replication are correlated); for the other rates the binomial
``sqrt(s (1 - s) / reps)``; for rank selection also the one-sided 95%
Clopper-Pearson lower bound.

Usage::

    python benchmarks/calibration.py --preset quick --output-dir /tmp/calib
    nice -n 10 python benchmarks/calibration.py --preset full --output-dir OUT

Results are written after every replication (``calibration.json``,
``calibration.md``; ``coverage.png`` after every design), so an interrupted full run
keeps what finished.

References
----------
Giacomini, R., Politis, D. N. and White, H. (2013). A warp-speed method for
conducting Monte Carlo experiments involving bootstrap estimators. *Econometric
Theory* 29, 567-589.
Davidson, R. and MacKinnon, J. G. (2007). Improving the reliability of bootstrap tests
with the fast double bootstrap. *Computational Statistics & Data Analysis* 51,
3259-3281.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from surbench.measure import loadavg, machine_info  # noqa: E402
from surbench.report import fmt, md_row, md_rule, write_json  # noqa: E402

from lowrank_sur import LowRankSUR, simulate_sur  # noqa: E402
from lowrank_sur.bootstrap import fast_double_bootstrap_statistics, fdb_pvalue  # noqa: E402
from lowrank_sur.coefcov.fullcov import coefficient_covariance  # noqa: E402
from lowrank_sur.results import LowRankSURResults, LowRankSURResultsWrapper  # noqa: E402
from lowrank_sur.selection import choose_rank  # noqa: E402

#: Inference options of lowrank_sur that only change the covariance: fit keywords.
OPTIONS = {
    "default": {},
    "debiased": {"debiased": True},
    "debiased+use_t": {"debiased": True, "use_t": True, "t_df": "equation"},
}
#: The option that refits (on the first ``boot_cov_reps`` replications).
BOOT_OPTION = ("bootstrap+use_t", {"cov_type": "bootstrap", "use_t": True,
                                   "t_df": "equation"})

CRITERIA = ("aic", "bic", "ic_p1", "ic_p2", "er")

#: Options of every fit: one start (the principal-component start) to keep the Monte
#: Carlo affordable; the bootstrap refits inherit them.
FIT = {"n_starts": 1}

PRESETS = {
    "quick": {"designs": [[40, 5, 1]], "reps": 2, "lr_reps": 1, "lr_designs": [[40, 5, 1]],
              "boot_cov_reps": 2, "select_reps": 2, "unres_reps": 1, "n_boot_cov": 19,
              "n_boot_lr": 19, "select_designs": [[40, 5, 1]]},
    # cheapest design first: an interrupted run keeps the most. The replication counts
    # per design are those of the run in docs/calibration.md (about 50 min of wall time
    # on 2 cores shared with other jobs, load average 3-10).
    "full": {"designs": [[60, 120, 2], [40, 60, 2], [100, 100, 3], [200, 20, 2]],
             "reps": 400, "lr_reps": 0, "lr_designs": [[60, 120, 2]], "boot_cov_reps": 0,
             "select_reps": 60, "unres_reps": 40, "n_boot_cov": 49, "n_boot_lr": 99,
             "select_designs": [[60, 120, 2], [40, 60, 2], [100, 100, 3], [200, 20, 2]],
             "per_design": {
                 "60,120,2": {"reps": 400, "lr_reps": 10, "select_reps": 100,
                              "boot_cov_reps": 10},
                 "40,60,2": {"reps": 60, "select_reps": 60},
                 "100,100,3": {"reps": 120, "select_reps": 40, "boot_cov_reps": 3},
                 "200,20,2": {"reps": 120, "select_reps": 40, "boot_cov_reps": 3}}},
}


def _pairs(sim) -> dict:
    return {f"e{j}": (sim.Y[:, j], sim.Xs[j]) for j in range(sim.Y.shape[1])}


def _slopes(sim) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the slope coefficients in params and the true params."""
    p = len(sim.coefs[0])
    idx = np.array([j * p + i for j in range(len(sim.coefs)) for i in range(1, p)])
    truth = np.concatenate([b for b in sim.coefs])
    return idx, truth


def _wald_restrictions(sim) -> list[tuple[np.ndarray, np.ndarray]]:
    """True restrictions: the slopes of each disjoint group of five equations."""
    idx, truth = _slopes(sim)
    K = len(sim.coefs)
    per = 2 * min(K, 5)  # two slopes per equation
    out = []
    for g in range(max(1, K // 5)):
        rows = idx[g * per:(g + 1) * per]
        R = np.zeros((rows.size, truth.size))
        R[np.arange(rows.size), rows] = 1.0
        out.append((R, truth[rows]))
    return out


def _measure(res, sim) -> dict:
    """Coverage of the slopes' 95% intervals and Wald rejections of the true groups."""
    idx, truth = _slopes(sim)
    ci = np.asarray(res.conf_int(0.05))[idx]
    covered = (ci[:, 0] <= truth[idx]) & (truth[idx] <= ci[:, 1])
    rejects = [float(res.wald_test(rq, use_f=res.use_t, scalar=True).pvalue) < 0.05
               for rq in _wald_restrictions(sim)]
    return {"coverage": float(np.mean(covered)), "wald_reject": float(np.mean(rejects))}


def same_fit(base, **opts):
    """``base`` with the covariance options ``opts`` (debiased, use_t, t_df): no refit.

    What ``LowRankSUR.fit`` does after the fitter, on the fit record of ``base``.
    """
    res = getattr(base, "_results", base)
    model = res.model
    options = dataclasses.replace(res._fit_options, **opts)
    record = res._record
    coef_cov = coefficient_covariance("nonrobust", model.design, model._Y, record, {},
                                      debiased=options.debiased)
    return LowRankSURResultsWrapper(LowRankSURResults(model, record, coef_cov,
                                                      fit_options=options))


def _check_same_fit(model, k, results) -> None:
    """The shared-fit results equal separate fits (first replication of each design)."""
    for name, opts in OPTIONS.items():
        direct = model.fit(rank=k, **FIT, **opts)
        for a, b in ((direct.bse, results[name].bse),
                     (direct.conf_int(0.05), results[name].conf_int(0.05))):
            if not np.allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-10):
                raise AssertionError(f"option {name}: the shared fit differs from a refit")


def _linearmodels_inference(sim, debiased: bool) -> dict:
    from linearmodels.system import SUR

    eqs = {f"e{j}": {"dependent": sim.Y[:, j], "exog": sim.Xs[j]}
           for j in range(sim.Y.shape[1])}
    res = SUR(eqs).fit(method="gls", iterate=True, cov_type="unadjusted",
                       debiased=debiased, iter_limit=500)
    b = np.asarray(res.params)
    V = np.asarray(res.cov)
    idx, truth = _slopes(sim)
    se = np.sqrt(np.diag(V))[idx]
    df = sim.Y.shape[0] - 3
    z = stats.norm.ppf(0.975) if not debiased else stats.t.ppf(0.975, df)
    covered = np.abs(b[idx] - truth[idx]) <= z * se
    rejects = []
    for R, q in _wald_restrictions(sim):
        d = R @ b - q
        stat = float(d @ np.linalg.solve(R @ V @ R.T, d))
        q_ = R.shape[0]
        pv = stats.f.sf(stat / q_, q_, df) if debiased else stats.chi2.sf(stat, q_)
        rejects.append(pv < 0.05)
    return {"coverage": float(np.mean(covered)), "wald_reject": float(np.mean(rejects))}


def _selection(model, rank: int) -> dict:
    res = model.fit(rank="bic", max_rank=min(rank + 3, model.k_eqs - 1, model.nobs - 1),
                    **FIT)
    return {c: choose_rank(res.rank_selection, c) == rank for c in CRITERIA}


def _warp_statistics(base, big_rank: int, seed: int) -> tuple[float, float]:
    """One first- and one second-level bootstrap LR statistic, as ``compare_lr_test``.

    The library's own draws and refits (``compare_lr_test(method="fdb")`` with one
    draw): the first-level statistic is the single bootstrap's draw with this seed.
    """
    res = getattr(base, "_results", base)
    refit = res._lr_refit(lambda Yb: res._refit_llf(Yb, big_rank))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b1, b2 = fast_double_bootstrap_statistics(
            res.model.design, res._record.whitened_coefs, res.error_cov, refit, 1, seed)
    return float(b1[0]), float(b2[0])


_EMPTY_LR = {"boot": [], "chi2": [], "unres": [], "warp_stat": [], "warp_boot": [],
             "warp_boot2": []}


def _new_acc(names) -> dict:
    return {name: {"coverage": [], "wald_reject": []} for name in names}


def _inference(model, sim, k, r, cfg, acc, lm_names, check=False):
    """Coverage and Wald rejections of every option on one replication; the rank-k fit."""
    base = model.fit(rank=k, **FIT)
    results = {name: same_fit(base, **opts) if opts else base
               for name, opts in OPTIONS.items()}
    if check:
        _check_same_fit(model, k, results)
    for name, res in results.items():
        for key, v in _measure(res, sim).items():
            acc[name][key].append(v)
    if r < cfg["boot_cov_reps"]:
        res = model.fit(rank=k, **FIT, **BOOT_OPTION[1],
                        cov_kwds={"n_boot": cfg["n_boot_cov"], "seed": r})
        for key, v in _measure(res, sim).items():
            acc[BOOT_OPTION[0]][key].append(v)
    for name in lm_names:
        for key, v in _linearmodels_inference(sim, name.endswith("debiased")).items():
            acc[name][key].append(v)
    return base


def _lr_tests(model, base, k, r, cfg, lr, full_bootstrap: bool) -> None:
    """The LR tests of one replication (warp-speed draw, chi2, compare_lr_test, unrestricted)."""
    big = model.fit(rank=k + 1, **FIT)
    lr["chi2"].append(base.compare_lr_test(big, method="chi2").pvalue < 0.05)
    lr["warp_stat"].append(2.0 * (big.llf - base.llf))
    first, second = _warp_statistics(base, k + 1, seed=r)
    lr["warp_boot"].append(first)
    lr["warp_boot2"].append(second)
    if full_bootstrap and r < cfg["lr_reps"]:
        lr["boot"].append(base.compare_lr_test(big, method="bootstrap",
                                               n_boot=cfg["n_boot_lr"],
                                               seed=r).pvalue < 0.05)
    if r < cfg["unres_reps"]:
        u = base.lr_test_unrestricted()
        if u.is_valid:
            lr["unres"].append(u.pvalue < 0.05)


def design_config(cfg: dict, design) -> dict:
    """``cfg`` with the preset's replication counts for this design (``per_design``)."""
    return {**cfg, **cfg.get("per_design", {}).get(",".join(str(v) for v in design), {})}


def run_design(design, cfg, seed, log, save=None) -> dict:
    """Every measurement of one design (N, K, k); ``save(partial)`` after each replication."""
    N, K, k = design
    cfg = design_config(cfg, design)
    lm_names = ["linearmodels-igls", "linearmodels-igls-debiased"] if K < N else []
    acc = _new_acc([*OPTIONS, BOOT_OPTION[0], *lm_names])
    lr = {key: [] for key in _EMPTY_LR}
    select = {c: [] for c in CRITERIA}
    do_lr = list(design) in cfg["lr_designs"]
    do_select = list(design) in cfg["select_designs"]
    t0 = time.perf_counter()
    first = cfg.get("first_rep", 0)
    for r in range(first, cfg["reps"]):
        sim = simulate_sur(N, K, 3, k, seed=seed + r)
        model = LowRankSUR(_pairs(sim))
        base = _inference(model, sim, k, r, cfg, acc, lm_names, check=r == first)
        _lr_tests(model, base, k, r, cfg, lr, do_lr)
        if do_select and r < cfg["select_reps"]:
            for c, ok in _selection(model, k).items():
                select[c].append(ok)
        log(f"  N={N} K={K} k={k}: replication {r + 1}/{cfg['reps']} "
            f"({time.perf_counter() - t0:.0f} s)")
        if save is not None:
            save(_design_summary(design, acc, lr, select, time.perf_counter() - t0))
    return _design_summary(design, acc, lr, select, time.perf_counter() - t0)


def _rate(v) -> tuple[float | None, float | None]:
    """Mean and its Monte Carlo standard error (binomial for 0/1 data)."""
    if not v:
        return None, None
    a = np.asarray(v, dtype=float)
    if a.size < 2:
        return float(a.mean()), None
    binary = np.all((a == 0) | (a == 1))
    m = float(a.mean())
    se = np.sqrt(m * (1 - m) / a.size) if binary else a.std(ddof=1) / np.sqrt(a.size)
    return m, float(se)


def clopper_pearson_lower(successes: int, n: int, level: float = 0.95) -> float | None:
    """One-sided lower confidence bound of a binomial proportion."""
    if n == 0:
        return None
    if successes == 0:
        return 0.0
    return float(stats.beta.ppf(1 - level, successes, n - successes + 1))


def warp_size(stat, boot, alpha: float = 0.05) -> tuple[float | None, float | None]:
    """Warp-speed bootstrap size: share of ``stat`` above the (1 - alpha) quantile of ``boot``."""
    stat = np.asarray(stat, dtype=float)
    boot = np.asarray(boot, dtype=float)
    boot = boot[np.isfinite(boot)]
    if stat.size < 2 or boot.size < 2:
        return None, None
    crit = np.quantile(boot, 1 - alpha)
    return _rate(list((stat > crit).astype(float)))


def fdb_warp_size(stat, boot, boot2, alpha: float = 0.05
                  ) -> tuple[float | None, float | None, float | None]:
    """Warp-speed size of the fast double bootstrap test, and its adjusted level.

    Replication r rejects when the FDB p-value of ``stat[r]`` against the pooled
    first-level ``boot`` and second-level ``boot2`` draws is below ``alpha``
    (:func:`lowrank_sur.bootstrap.fdb_pvalue`). Returns the rejection rate, its
    binomial standard error and ``alpha* = #{boot2 > Q*(1 - alpha)} / R``, the level
    at which the equivalent rule compares ``stat`` with the first-level quantile.
    """
    stat = np.asarray(stat, dtype=float)
    boot = np.asarray(boot, dtype=float)
    boot2 = np.asarray(boot2, dtype=float)
    if stat.size < 2 or np.sum(np.isfinite(boot)) < 2 or np.sum(np.isfinite(boot2)) < 2:
        return None, None, None
    rejects = [float(fdb_pvalue(t, boot, boot2) < alpha) for t in stat]
    size, se = _rate(rejects)
    crit = np.quantile(boot[np.isfinite(boot)], 1 - alpha)
    alpha_star = float(np.mean(boot2[np.isfinite(boot2)] > crit))
    return size, se, alpha_star


def warp_resampled_se(stat, boot, boot2=None, alpha: float = 0.05, n_resamples: int = 400,
                      seed: int = 0) -> float | None:
    """Standard error of a warp-speed size by resampling the replications.

    The binomial standard error of :func:`warp_size` ignores the noise of the critical
    value, itself estimated from the R draws (Giacomini, Politis and White 2013,
    section 3); this one resamples the replications ``(stat_r, boot_r[, boot2_r])``
    with replacement and recomputes the size: the single bootstrap's ``stat >
    Q*(1 - alpha)``, or with ``boot2`` the fast double bootstrap's equivalent rule
    ``stat > Q*(1 - alpha*)``, ``alpha* = #{boot2 > Q*(1 - alpha)} / R``.
    """
    stat, boot = np.asarray(stat, dtype=float), np.asarray(boot, dtype=float)
    two = None if boot2 is None else np.asarray(boot2, dtype=float)
    if stat.size < 10 or (two is not None and two.size != stat.size):
        return None
    rng = np.random.default_rng(seed)
    sizes = []
    for _ in range(n_resamples):
        i = rng.integers(0, stat.size, stat.size)
        b = boot[i][np.isfinite(boot[i])]
        level = alpha
        if two is not None:
            b2 = two[i][np.isfinite(two[i])]
            level = float(np.mean(b2 > np.quantile(b, 1 - alpha)))
        sizes.append(np.mean(stat[i] > np.quantile(b, 1 - level)))
    return float(np.std(sizes, ddof=1))


def _warp_fields(stat, boot, boot2) -> dict:
    """The warp-speed sizes of both bootstraps, binomial and resampled standard errors."""
    warp, warp_se = warp_size(stat, boot)
    full = len(boot2) == len(stat) > 0
    fdb, fdb_se, alpha_star = (fdb_warp_size(stat, boot, boot2) if full
                               else (None, None, None))
    return {"lr_warp_size": warp, "lr_warp_size_se": warp_se,
            "lr_warp_size_se_resampled": warp_resampled_se(stat, boot),
            "lr_warp_reps": len(stat),
            "lr_fdb_warp_size": fdb, "lr_fdb_warp_size_se": fdb_se,
            "lr_fdb_warp_size_se_resampled": (warp_resampled_se(stat, boot, boot2)
                                              if full else None),
            "lr_fdb_alpha_star": alpha_star, "lr_fdb_warp_reps": len(boot2) if full else 0}


def _design_summary(design, acc, lr, select, seconds) -> dict:
    options = {}
    for name, a in acc.items():
        cov, cov_se = _rate(a["coverage"])
        size, size_se = _rate(a["wald_reject"])
        options[name] = {"coverage": cov, "coverage_se": cov_se, "wald_size": size,
                         "wald_size_se": size_se, "reps": len(a["coverage"])}
    n_sel = len(next(iter(select.values())))
    boot2 = lr.get("warp_boot2", [])
    return {
        "nobs": design[0], "k_eqs": design[1], "rank": design[2],
        "options": options,
        "lr_boot_size": _rate(lr["boot"])[0], "lr_reps": len(lr["boot"]),
        "lr_chi2_size": _rate(lr["chi2"])[0], "lr_chi2_reps": len(lr["chi2"]),
        **_warp_fields(lr["warp_stat"], lr["warp_boot"], boot2),
        "lr_warp_stats": [float(v) for v in lr["warp_stat"]],
        "lr_warp_boot_stats": [float(v) for v in lr["warp_boot"]],
        "lr_warp_boot2_stats": [float(v) for v in boot2],
        "lr_unres_size": _rate(lr["unres"])[0], "lr_unres_reps": len(lr["unres"]),
        "selection": {c: _rate(v)[0] for c, v in select.items()},
        "selection_lower95": {c: clopper_pearson_lower(int(np.sum(v)), len(v))
                              for c, v in select.items()},
        "selection_reps": n_sel,
        "seconds": seconds,
    }


def select_only(design, cfg, seed, log, save=None) -> dict:
    """Rank-selection accuracy for a design measured for selection only."""
    N, K, k = design
    cfg = design_config(cfg, design)
    select = {c: [] for c in CRITERIA}
    t0 = time.perf_counter()
    for r in range(cfg.get("first_rep", 0), cfg["select_reps"]):
        sim = simulate_sur(N, K, 3, k, seed=seed + r)
        for c, ok in _selection(LowRankSUR(_pairs(sim)), k).items():
            select[c].append(ok)
        log(f"  N={N} K={K} k={k} (selection): replication {r + 1}/{cfg['select_reps']}")
        if save is not None:
            save(_design_summary(design, {}, _EMPTY_LR, select, time.perf_counter() - t0))
    return _design_summary(design, {}, _EMPTY_LR, select, time.perf_counter() - t0)


def _pm(value, se, spec=".3f") -> str:
    if value is None:
        return "-"
    return fmt(value, spec) + ("" if se is None else f" ± {se:{spec}}")


def _warp_cell(d: dict, key: str) -> str:
    """``size ± binomial s.e. [resampled s.e.] (reps)`` of a warp-speed size."""
    res = d.get(f"{key}_size_se_resampled")
    return (_pm(d.get(f"{key}_size"), d.get(f"{key}_size_se"))
            + ("" if res is None else f" [{res:.3f}]") + f" ({d.get(f'{key}_reps', 0)})")


def markdown(rows: list[dict], cfg: dict) -> str:
    """The calibration tables (± one Monte Carlo standard error)."""
    lines = ["## Coverage of nominal 95% intervals (slopes) and Wald size at 5%", "",
             md_row(["N", "K", "k", "option", "reps", "coverage", "Wald size"]), md_rule(7)]
    for d in rows:
        for name, o in d["options"].items():
            if o["reps"]:
                lines.append(md_row([d["nobs"], d["k_eqs"], d["rank"], name, o["reps"],
                                     _pm(o["coverage"], o.get("coverage_se")),
                                     _pm(o["wald_size"], o.get("wald_size_se"))]))
    lines += ["", "## Likelihood-ratio tests: rejection rate of a true null at 5%", "",
              md_row(["N", "K", "k", "rank k vs k+1 bootstrap, warp-speed (reps)",
                      "rank k vs k+1 fast double bootstrap, warp-speed (reps)",
                      "compare_lr_test bootstrap (reps)",
                      "rank k vs k+1 chi2, not valid (reps)", "vs unrestricted (reps)"]),
              md_rule(8)]
    for d in rows:
        if d.get("lr_chi2_reps", d["lr_reps"]):
            lines.append(md_row([
                d["nobs"], d["k_eqs"], d["rank"],
                _warp_cell(d, "lr_warp"), _warp_cell(d, "lr_fdb_warp"),
                f"{fmt(d['lr_boot_size'], '.3f')} ({d['lr_reps']})",
                f"{fmt(d['lr_chi2_size'], '.3f')} ({d.get('lr_chi2_reps', d['lr_reps'])})",
                f"{fmt(d['lr_unres_size'], '.3f')} ({d['lr_unres_reps']})"]))
    lines += ["", "## Rank selection: share of replications finding the true k "
              "(one-sided 95% lower bound)", "",
              md_row(["N", "K", "k", "reps", *CRITERIA]), md_rule(4 + len(CRITERIA))]
    for d in rows:
        if d["selection_reps"]:
            low = d.get("selection_lower95", {})
            cells = [fmt(d["selection"][c], ".3f")
                     + (f" (≥ {low[c]:.3f})" if low.get(c) is not None else "")
                     for c in CRITERIA]
            lines.append(md_row([d["nobs"], d["k_eqs"], d["rank"], d["selection_reps"],
                                 *cells]))
    lines += ["", f"Bootstrap draws: {cfg['n_boot_cov']} (covariance), {cfg['n_boot_lr']} "
              "(compare_lr_test). p = 3 regressors per equation, loadings N(0, 1), "
              "D ~ U(0.5, 1.5)."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> Path | None:
    """Coverage per option and design, with the 94-96% band."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a docs/benchmark extra
        return None
    rows = [d for d in rows if d["options"]]
    names = list(dict.fromkeys(n for d in rows for n in d["options"]))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        vals = [d["options"].get(name, {}).get("coverage") for d in rows]
        xs = [j + i * width for j, v in enumerate(vals) if v is not None]
        ax.bar(xs, [v for v in vals if v is not None], width, label=name)
    ax.axhspan(0.94, 0.96, color="grey", alpha=0.3, label="94-96%")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))])
    ax.set_xticklabels([f"N={d['nobs']}, K={d['k_eqs']}, k={d['rank']}" for d in rows])
    ax.set_ylim(0.85, 1.0)
    ax.set_ylabel("coverage of nominal 95% intervals")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def parser() -> argparse.ArgumentParser:
    """The command line (the same ``--preset`` / ``--output-dir`` as compare_sur.py)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    ap.add_argument("--output-dir", type=Path, help="where the JSON, markdown and PNG go")
    ap.add_argument("--reps", type=int, help="replications per design (overrides the preset)")
    ap.add_argument("--lr-reps", type=int,
                    help="replications with compare_lr_test's own bootstrap (lr_designs)")
    ap.add_argument("--select-reps", type=int, help="replications with rank selection")
    ap.add_argument("--boot-cov-reps", type=int,
                    help="replications with cov_type='bootstrap'")
    ap.add_argument("--n-boot", type=int, help="bootstrap draws (covariance and LR tests)")
    ap.add_argument("--designs", nargs="+", metavar="N,K,k",
                    help="designs to run (overrides the preset's; selection is measured "
                    "for each)")
    ap.add_argument("--seed", type=int, default=20250101, help="base random seed")
    ap.add_argument("--first-rep", type=int, default=0,
                    help="start at this replication (continue an earlier run: replications "
                    "first-rep .. reps - 1)")
    ap.add_argument("--render", nargs="+", type=Path, metavar="JSON",
                    help="print the tables of earlier runs' calibration.json files and exit")
    return ap


def render(paths: list[Path]) -> str:
    """The tables of several runs in one markdown text (runs of one design are pooled)."""
    import json

    rows, notes = [], []
    for path in paths:
        payload = json.loads(path.read_text(encoding="utf-8"))
        rows.extend(payload["designs"])
        cfg = payload["config"]
        m = payload["machine"]
        for d in payload["designs"]:
            notes.append(
                f"- N={d['nobs']}, K={d['k_eqs']}, k={d['rank']}: "
                f"{max([o['reps'] for o in d['options'].values()] or [0])} replications "
                f"({d['selection_reps']} with rank selection, {d['lr_reps']} with "
                f"compare_lr_test's bootstrap), {d['seconds']:.0f} s, lowrank_sur "
                f"{m.get('lowrank_sur_git')}, load average at start "
                f"{m.get('loadavg_at_start')}")
    return markdown(pool(rows), cfg) + "\nRuns:\n\n" + "\n".join(notes) + "\n"


def _pool_rate(parts, key, n_key):
    """Replication-weighted mean of ``key`` over parts (None where no part measured it)."""
    parts = [(d[key], d[n_key]) for d in parts if d.get(key) is not None and d[n_key]]
    n = sum(w for _, w in parts)
    return (sum(v * w for v, w in parts) / n if n else None), n


def _pool_options(parts) -> dict:
    out = {}
    for name in dict.fromkeys(n for d in parts for n in d["options"]):
        ops = [d["options"][name] for d in parts if d["options"].get(name, {}).get("reps")]
        n = sum(o["reps"] for o in ops)
        pooled = {"reps": n}
        for key in ("coverage", "wald_size"):
            pooled[key] = sum(o[key] * o["reps"] for o in ops) / n if n else None
            ses = [o.get(f"{key}_se") for o in ops]
            # the mean of independent batches: Var = sum(n_i^2 se_i^2) / n^2
            pooled[f"{key}_se"] = (None if not n or any(v is None for v in ses) else
                                   float(np.sqrt(sum((o["reps"] * v) ** 2
                                                     for o, v in zip(ops, ses))) / n))
        out[name] = pooled
    return out


def _pool_warp(parts) -> dict:
    """Warp-speed sizes over all runs; the FDB's over those with second-level draws."""
    stat = [v for d in parts for v in d.get("lr_warp_stats", [])]
    boot = [v for d in parts for v in d.get("lr_warp_boot_stats", [])]
    single = {k: v for k, v in _warp_fields(stat, boot, []).items() if "fdb" not in k}
    parts = [d for d in parts if len(d.get("lr_warp_boot2_stats", []))
             == len(d.get("lr_warp_stats", [])) > 0]
    stat = [v for d in parts for v in d["lr_warp_stats"]]
    boot = [v for d in parts for v in d["lr_warp_boot_stats"]]
    boot2 = [v for d in parts for v in d["lr_warp_boot2_stats"]]
    double = {k: v for k, v in _warp_fields(stat, boot, boot2).items() if "fdb" in k}
    return {**single, **double, "lr_warp_boot2_stats": boot2}


def pool(rows: list[dict]) -> list[dict]:
    """Rows of the same design from several runs (disjoint replications) combined into one."""
    groups: dict = {}
    for d in rows:
        groups.setdefault((d["nobs"], d["k_eqs"], d["rank"]), []).append(d)
    out = []
    for (N, K, k), parts in groups.items():
        if len(parts) == 1:
            out.append(parts[0])
            continue
        stat = [v for d in parts for v in d.get("lr_warp_stats", [])]
        boot = [v for d in parts for v in d.get("lr_warp_boot_stats", [])]
        row = {"nobs": N, "k_eqs": K, "rank": k, "options": _pool_options(parts),
               "lr_warp_stats": stat, "lr_warp_boot_stats": boot,
               "seconds": sum(d["seconds"] for d in parts)}
        row.update(_pool_warp(parts))
        for key, n_key in (("lr_boot_size", "lr_reps"), ("lr_chi2_size", "lr_chi2_reps"),
                           ("lr_unres_size", "lr_unres_reps")):
            row[key], row[n_key] = _pool_rate(parts, key, n_key)
        n_sel = sum(d["selection_reps"] for d in parts)
        row["selection_reps"] = n_sel
        row["selection"], row["selection_lower95"] = {}, {}
        for c in CRITERIA:
            hits = sum(round(d["selection"][c] * d["selection_reps"]) for d in parts
                       if d["selection_reps"])
            row["selection"][c] = hits / n_sel if n_sel else None
            row["selection_lower95"][c] = clopper_pearson_lower(hits, n_sel)
        out.append(row)
    return out


def config(args) -> dict:
    """The preset's configuration with the command line's overrides."""
    cfg = copy.deepcopy(PRESETS[args.preset])
    for key in ("reps", "lr_reps", "select_reps", "boot_cov_reps"):
        if getattr(args, key) is not None:  # the command line beats the preset's counts
            cfg[key] = getattr(args, key)
            for counts in cfg.get("per_design", {}).values():
                counts.pop(key, None)
    if args.n_boot is not None:
        cfg["n_boot_cov"] = cfg["n_boot_lr"] = args.n_boot
    if args.designs:
        cfg["designs"] = [[int(v) for v in d.split(",")] for d in args.designs]
        cfg["select_designs"] = [list(d) for d in cfg["designs"]]
        cfg["lr_designs"] = [list(d) for d in cfg["designs"]]
    return cfg


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.render:
        print(render(args.render))
        return 0
    cfg = config(args)
    cfg["first_rep"] = args.first_rep
    out = args.output_dir
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    rows = []
    designs = [list(d) for d in cfg["designs"]]
    # the order of select_designs (cheap designs first), then any other design
    order = [list(d) for d in cfg["select_designs"]]
    order += [d for d in designs if d not in order]
    machine = machine_info(None, None)

    def save(partial=None):
        done = rows + ([partial] if partial is not None else [])
        text = markdown(done, cfg)
        if out is not None:  # after every replication: an interrupted run keeps its part
            write_json(out / "calibration.json", {
                "preset": args.preset, "config": cfg, "seed": args.seed, "machine": machine,
                "loadavg_at_end": loadavg(), "designs": done})
            (out / "calibration.md").write_text(text, encoding="utf-8")
        return text

    for design in order:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run = run_design if design in designs else select_only
            rows.append(run(design, cfg, args.seed, log, save))
        text = save()
        if out is not None:
            plot(rows, out / "coverage.png")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
