"""The Monte Carlo helpers of benchmarks/calibration.py against references we did not write."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "calibration.py"


@pytest.fixture(scope="module")
def calibration():
    spec = importlib.util.spec_from_file_location("calibration_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("successes,n", [(60, 60), (57, 60), (95, 100), (3, 10)])
def test_clopper_pearson_lower_matches_statsmodels(calibration, successes, n):
    # one-sided 95% lower bound = lower end of the two-sided 90% Clopper-Pearson interval
    expected = proportion_confint(successes, n, alpha=0.10, method="beta")[0]
    assert calibration.clopper_pearson_lower(successes, n) == pytest.approx(expected, rel=1e-10)
    assert calibration.clopper_pearson_lower(0, n) == 0.0


def test_warp_size_is_the_rejection_rate_at_the_pooled_bootstrap_quantile(calibration):
    rng = np.random.default_rng(0)
    boot = rng.chisquare(3, size=4000)
    stat = rng.chisquare(3, size=4000)
    size, se = calibration.warp_size(stat, boot)
    crit = np.quantile(boot, 0.95)
    assert size == pytest.approx(np.mean(stat > crit))
    assert se == pytest.approx(np.sqrt(size * (1 - size) / stat.size))
    # statistics and bootstrap draws from the same law: the size is near 5%
    assert abs(size - 0.05) < 4 * se
    # draws from a law with a heavier tail than the statistic's: far below 5%
    assert calibration.warp_size(stat, 3 * boot)[0] < 0.01


def test_fdb_warp_size_is_the_library_rule_with_pooled_draws(calibration):
    from lowrank_sur.bootstrap import fdb_pvalue

    rng = np.random.default_rng(2)
    stat = rng.chisquare(3, size=8000)
    # a bootstrap law drifted by a factor c from the statistic's, and the second level
    # drifted by c again: the FDB undoes the drift, the single bootstrap does not
    c = 0.8
    boot = c * rng.chisquare(3, size=8000)
    boot2 = c * c * rng.chisquare(3, size=8000)
    size, se, alpha_star = calibration.fdb_warp_size(stat, boot, boot2)
    direct = np.mean([fdb_pvalue(t, boot, boot2) < 0.05 for t in stat])
    assert size == pytest.approx(direct)
    assert se == pytest.approx(np.sqrt(size * (1 - size) / stat.size))
    assert alpha_star == pytest.approx(np.mean(boot2 > np.quantile(boot, 0.95)))
    assert calibration.warp_size(stat, boot)[0] > 0.09
    # (the estimated alpha* adds noise beyond the binomial se)
    assert abs(size - 0.05) < 0.01
    # the equivalent rule: reject when stat exceeds the 1 - alpha* quantile of boot
    crit = np.quantile(boot, 1 - alpha_star)
    assert abs(np.mean(stat > crit) - size) < 3.0 / stat.size
    # second level of the same law as the first: the FDB is the single bootstrap
    same = calibration.fdb_warp_size(stat, boot, boot)[0]
    assert abs(same - calibration.warp_size(stat, boot)[0]) < 3.0 / stat.size


def test_warp_resampled_se_includes_the_critical_value_noise(calibration):
    # statistic and draws from one continuous law: the size estimate's variance is about
    # twice the binomial alpha (1 - alpha) / R (the critical value is itself a sample
    # quantile of R draws; Giacomini, Politis and White 2013)
    rng = np.random.default_rng(4)
    stat, boot = rng.chisquare(3, size=(2, 2000))
    size, se = calibration.warp_size(stat, boot)
    resampled = calibration.warp_resampled_se(stat, boot, seed=1)
    assert 1.15 < resampled / se < 1.75
    assert calibration.warp_resampled_se(stat, boot, seed=1) == resampled  # seeded
    assert calibration.warp_resampled_se(stat, boot, boot, seed=1) is not None


def test_same_fit_matches_a_refit_with_the_options(calibration):
    from lowrank_sur import LowRankSUR, simulate_sur

    sim = simulate_sur(40, 6, 3, 1, seed=3)
    model = LowRankSUR(calibration._pairs(sim))
    base = model.fit(rank=1, n_starts=1)
    opts = {"debiased": True, "use_t": True, "t_df": "equation"}
    shared = calibration.same_fit(base, **opts)
    direct = model.fit(rank=1, n_starts=1, **opts)
    np.testing.assert_allclose(np.asarray(shared.bse), np.asarray(direct.bse), rtol=1e-8)
    np.testing.assert_allclose(np.asarray(shared.conf_int()), np.asarray(direct.conf_int()),
                               rtol=1e-8)
    assert shared.df_resid_inference == direct.df_resid_inference == 40 - 3
    R, q = calibration._wald_restrictions(sim)[0]
    assert shared.wald_test((R, q), use_f=True).pvalue == pytest.approx(
        direct.wald_test((R, q), use_f=True).pvalue, rel=1e-8)


def test_pool_combines_disjoint_runs_of_a_design(calibration):
    def run(cov, se, n, warp, sel):
        return {"nobs": 60, "k_eqs": 120, "rank": 2, "seconds": 1.0,
                "options": {"o": {"coverage": cov, "coverage_se": se, "wald_size": 0.05,
                                  "wald_size_se": se, "reps": n}},
                "lr_warp_stats": warp[0], "lr_warp_boot_stats": warp[1],
                "lr_warp_boot2_stats": warp[2],
                "lr_boot_size": None, "lr_reps": 0, "lr_chi2_size": 1.0, "lr_chi2_reps": n,
                "lr_unres_size": None, "lr_unres_reps": 0,
                "selection": {c: sel for c in calibration.CRITERIA}, "selection_reps": n}

    rng = np.random.default_rng(1)
    a = run(0.94, 0.002, 100, [list(rng.normal(size=100)) for _ in range(3)], 1.0)
    b = run(0.96, 0.004, 300, [list(rng.normal(size=300)) for _ in range(3)], 0.9)
    (row,) = calibration.pool([a, b])
    opt = row["options"]["o"]
    assert opt["reps"] == 400 and opt["coverage"] == pytest.approx(0.955)
    assert opt["coverage_se"] == pytest.approx(np.hypot(100 * 0.002, 300 * 0.004) / 400)
    assert row["lr_warp_reps"] == 400 and row["lr_chi2_reps"] == 400
    expected = calibration.warp_size(a["lr_warp_stats"] + b["lr_warp_stats"],
                                     a["lr_warp_boot_stats"] + b["lr_warp_boot_stats"])
    assert (row["lr_warp_size"], row["lr_warp_size_se"]) == pytest.approx(expected)
    expected = calibration.fdb_warp_size(
        a["lr_warp_stats"] + b["lr_warp_stats"], a["lr_warp_boot_stats"] + b["lr_warp_boot_stats"],
        a["lr_warp_boot2_stats"] + b["lr_warp_boot2_stats"])
    assert row["lr_fdb_warp_reps"] == 400
    assert (row["lr_fdb_warp_size"], row["lr_fdb_warp_size_se"],
            row["lr_fdb_alpha_star"]) == pytest.approx(expected)
    assert row["selection"]["bic"] == pytest.approx((100 + 270) / 400)
    assert row["selection_lower95"]["bic"] == pytest.approx(
        calibration.clopper_pearson_lower(370, 400))
    # a single run passes through unchanged
    assert calibration.pool([a]) == [a]
