"""Compare SUR estimators on simulated systems with a known truth.

Which tool should fit a system of K seemingly unrelated regressions? This script
simulates SUR systems with equation-specific regressors and error covariance
``Sigma = F F' + diag(D)`` (plus an independent held-out sample from the same
model) over a grid of (K, N, p, k, replication), fits each system with every
method below, each (method, problem) in a fresh subprocess, and reports time, peak
memory and accuracy.

Methods
-------
``lowrank_sur-als``
    ``LowRankSUR(...).fit(rank=k, method="als")`` with default tolerances (to
    convergence); matrix-free, O(N K k) memory.
``lowrank_sur-em``
    the same with ``method="em"`` (the dense EM reference, SQUAREM-accelerated; to
    convergence); O(K^2 + P^2) memory.
``lowrank_sur-als-6`` and ``lowrank_sur-em-45`` (``--preset seed`` only)
    the alsgls seed pages' protocol: ALS stopped after 6 sweeps (``maxiter=6``) and
    textbook EM stopped after 45 iterations (``maxiter=45, accelerate=False``).
``linearmodels-gls``
    ``linearmodels.system.SUR(eqs).fit(method="gls", cov_type="unadjusted")``:
    two-step feasible GLS, Sigma-hat from the OLS residuals.
``linearmodels-igls``
    the same with ``iterate=True`` (iterated FGLS, which converges to the Gaussian
    MLE with an unrestricted Sigma; linearmodels' defaults ``tol=1e-6``,
    ``iter_limit=100``).
``statsmodels-gls``
    statsmodels has no SUR class; this is what a statsmodels user writes: OLS per
    equation, ``Sigma_hat = R'R / N`` from the OLS residuals, then
    ``sm.GLS(y_stacked, block_diag(*Xs), sigma=np.kron(Sigma_hat, np.eye(N))).fit()``
    on the equation-major stacked system (NK x P regressors, an NK x NK ``sigma``:
    O((NK)^2) memory, O((NK)^3) time).
``alsgls``
    ``alsgls.als_gls(Xs, Y, k)`` (alsgls 2.2) with its defaults (relative ridge
    ``lam_B=1e-3``, at most 8 sweeps), run with the interpreter given by
    ``--alsgls-python`` (default: this one). Its rows read "skipped: not installed"
    when ``import alsgls`` fails there.

Linearmodels uses ``cov_type="unadjusted"`` (classical GLS standard errors, like the
other methods; its default "robust" type needs still more memory). The low-rank
methods get the true rank k; the classic methods estimate an unrestricted Sigma.

Measurement (one subprocess per (method, problem))
--------------------------------------------------
The parent simulates each problem once (:func:`lowrank_sur.simulate_sur`) and
saves it to a temporary ``.npz`` file; every child loads the same file (the record's
``data_checksum`` proves it). A child imports its package, runs an untimed warm-up
fit on a 30 x 3 toy system (so that lazy imports and BLAS thread start-up are not
charged to the fit), loads the data, runs ``gc.collect()`` and then:

``time_s``
    wall time (:func:`time.perf_counter`) of what a user waits for to get a
    coefficient table: building the model object, fitting, and computing the
    standard errors (``.bse`` / ``.std_errors``; alsgls has none).
    ``time_build_s``, ``time_fit_s`` and ``time_se_s`` split it into these phases
    where the package allows (linearmodels computes its standard errors inside
    ``fit``; statsmodels' ``GLS(...)`` constructor already inverts and factors the
    NK x NK ``sigma``, so for it "build" is the expensive phase).
``peak_rss_mb``
    the process's peak resident set size during that timed run above its resident
    size just before it. On Linux the kernel's high-water mark is reset first
    (``echo 5 > /proc/self/clear_refs``), so the peak is ``VmHWM`` after the run
    minus ``VmRSS`` before it (``rss_method="vmhwm-reset"``). Elsewhere it is
    ``ru_maxrss`` (:func:`resource.getrusage`) after the run minus the resident
    size before it, which over-states the fit's peak when the process had been
    larger before (``rss_method="ru_maxrss"``). RSS counts everything: NumPy
    buffers, BLAS/LAPACK workspaces, Python objects, allocator slack. Small values
    (a few MB) are at the allocator's granularity and noisy.
``tracemalloc_mb``
    the peak of :mod:`tracemalloc`-traced memory (Python objects and NumPy array
    buffers, not BLAS internals) above the traced memory at the start, measured in
    a *second, separate* run of the same fit in the same child after the timed
    run (tracemalloc slows allocation-heavy Python code, so it never overlaps the
    timed run). Skipped (``null``, see ``tracemalloc_note``) when the timed run
    took longer than ``--trace-max-seconds``. ``tracemalloc_phase_mb`` splits it:
    for each phase (build, fit, se) the traced peak above the traced memory at the
    phase's start; its "fit" entry is the fitting algorithm's own working memory,
    which is what the seed pages' EM/ALS memory claim is about.

Caps: each child gets an address-space limit (``resource.setrlimit(RLIMIT_AS)``)
of its virtual size before the timed run plus ``--mem-cap-gb`` (default 8 GB;
note this caps *virtual* memory, which is at least the resident memory). Before a
child starts, the parent projects the fit's memory from the method's known growth
(:func:`projected_bytes`; factors measured on this machine, see there) and records
``"skipped: needs ~X GB ..."`` when the projection exceeds the cap or the memory
available right now. A child is killed after ``--time-cap`` seconds of fitting
(plus a start-up allowance) and recorded as ``"timeout"``; a method that timed out
or ran out of memory at some K is skipped at larger K of the same (N, p, k), and
a method is skipped at K when its time at a smaller K, scaled by K^alpha (alpha: 1
for the matrix-free fitters, 2 for linearmodels, 3 for EM and statsmodels),
projects past the time cap. Failures are recorded as ``"failed: <error>"``; a run
that takes longer than ``--slow-seconds`` is repeated for at most ``--slow-reps``
replications at that K (the others read "skipped: slow ...").

Metrics (computed by the parent from each child's estimates)
------------------------------------------------------------
``beta_rmse``
    root mean squared error of all P coefficients against the truth.
``oos_nll_per_obs``
    ``-loglike / n_test`` of the held-out residuals ``Y_test - X_test beta_hat``
    under the method's own Sigma-hat: :meth:`LowRankCovariance.loglike` for the
    low-rank methods, a dense Cholesky log-density for linearmodels (its
    ``results.sigma``) and statsmodels (the OLS-residual Sigma-hat). A dense
    Sigma-hat whose smallest eigenvalue is below ``K * eps * largest`` is
    singular (always when K >= N: it has rank at most N); its NLL is recorded as
    ``inf`` and a note says so. ``oracle_oos_nll_per_obs`` is the same under the
    true beta and Sigma.
``llf``
    in-sample Gaussian log-likelihood at (beta_hat, Sigma_hat) with the same code
    (``-inf`` for a singular Sigma-hat); for the ML fitters it is their maximized
    log-likelihood. ``llf_native`` is what the package itself reports
    (lowrank_sur, alsgls; linearmodels reports none, and statsmodels' GLS ``llf``,
    which has another definition, would cost an NK x NK log-determinant, so it is
    not requested).
``nan_se``
    number of NaN standard errors (``results.bse`` / ``res.std_errors`` /
    ``res.bse``; ``"n/a"`` for alsgls, which reports none).
``iterations``, ``converged``
    sweeps / EM cycles / FGLS iterations, and whether the package's stopping rule
    was met (linearmodels: fewer than ``iter_limit`` iterations).

Memory is in decimal units (1 MB = 10^6 bytes, 1 GB = 10^9 bytes). Non-finite
numbers are written to the JSON as the strings ``"inf"``, ``"-inf"`` and ``"nan"``
(``float()`` reads them back).

Outputs (``--output-dir``)
--------------------------
``compare_sur.json``
    every run (one record per (method, problem)) plus the machine (platform, CPU
    count, total RAM, load) and package versions; rewritten after each problem.
``compare_sur.md``
    medians over replications, one row per (K, method), notes, and for the seed
    preset the measured EM/ALS peak-memory ratios next to the seed's claims.
``compare_sur_time.png``, ``compare_sur_memory.png``, ``compare_sur_beta_rmse.png``
    time, peak RSS and beta RMSE against K, one line per method.

Examples
--------
::

    python benchmarks/compare_sur.py --preset quick --output-dir /tmp/q
    python benchmarks/compare_sur.py --preset seed --output-dir out/seed \\
        --alsgls-python /path/to/venv-with-alsgls/bin/python
    python benchmarks/compare_sur.py --preset scale --output-dir out/scale
    python benchmarks/compare_sur.py --ks 20 40 --nobs 100 --reps 3 \\
        --methods lowrank_sur-als linearmodels-igls --output-dir out/custom
"""

from __future__ import annotations

import sys

from surbench.cli import compare_parser
from surbench.methods import DEFAULT_METHODS, METHODS, projected_bytes
from surbench.presets import PRESETS
from surbench.problems import dense_loglike as _dense_loglike
from surbench.problems import make_problem, oracle, score
from surbench.report import markdown_table, ratio_table, render, summarize, write_markdown
from surbench.runner import run
from surbench.worker import run_worker, worker_main

# the pieces live in benchmarks/surbench/; these names stay importable from here
__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "PRESETS",
    "_dense_loglike",
    "main",
    "make_problem",
    "markdown_table",
    "oracle",
    "projected_bytes",
    "ratio_table",
    "render",
    "run",
    "run_worker",
    "score",
    "summarize",
    "write_markdown",
]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``--worker SPEC`` runs one child; see ``--help``)."""
    parser = compare_parser()
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker_main(args.worker)
    if args.render is not None:
        render(args.render, args.output_dir)
        return 0
    if args.preset is None and args.ks is None:
        parser.error("give --preset, --ks or --render")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
