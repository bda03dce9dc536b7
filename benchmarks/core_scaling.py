"""Scaling benchmark of the core fitters against a high-precision reference and alsgls.

For ``N`` observations, ``p`` regressors per equation (constant first), ``k`` factors
and each number of equations ``K``, one system is simulated with
:func:`lowrank_sur.simulate_sur` and fitted by

``als``
    :func:`lowrank_sur.fit_arrays` with ``method="als"`` and default tolerances;
``em``
    the same with ``method="em"`` (dense ``K x K``; only for ``K <= --em-max-k``);
``alsgls``
    ``alsgls.als_gls(Xs, Y, k)`` from the PyPI package ``alsgls`` (2.2) with *its*
    defaults (``lam_B=1e-3`` relative ridge, ``sweeps=8`` cap, ``cg_tol=3e-7``,
    ``rel_tol=1e-6``), if it is importable; otherwise its rows are skipped with a note;
``alsgls-tight`` (only with ``--alsgls-tight``)
    alsgls with ``lam_B=0``, ``cg_tol=1e-10``, ``rel_tol=1e-14``, ``sweeps=100``,
    to separate the effect of its defaults from that of its algorithm.

Reference
    ``als-ref`` is :func:`lowrank_sur.fit_arrays` with ``tol=1e-14``,
    ``ptol=1e-10``, ``maxiter=20000``. Every method's log-likelihood is recomputed
    the same way, ``LowRankCovariance(F, D).loglike(Y - fitted)``, from the
    coefficients, ``F`` and ``D`` it returned (so alsgls is scored on our likelihood,
    without its ridge term), and the table reports ``llf_ref - llf`` (positive: the
    method stopped below the reference maximum; tiny negative values are rounding)
    and that gap relative to ``|llf_ref|``. ``coef_dev`` is the largest absolute
    coefficient difference from the reference.

Timing and memory
    Everything runs in this one process, one (method, K) after another, after an
    untimed warm-up fit. The time is the minimum over ``--repeat`` runs of
    :func:`time.perf_counter` around the fit call alone (simulation and scoring
    excluded). The memory is measured in a *separate* run of the same fit under
    :mod:`tracemalloc` (which slows allocation-heavy code, so it never overlaps a
    timed run): ``peak_mb`` is the peak of traced memory minus the traced memory
    just before the fit, i.e. what the fit allocated on top of its inputs. NumPy
    and SciPy array buffers are traced; BLAS/LAPACK internal workspaces
    allocated by the BLAS library itself (OpenBLAS thread buffers) are not.

BLAS threads
    BLAS threading is left as the environment sets it unless ``--blas-threads N``
    is given (which sets ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` and
    ``MKL_NUM_THREADS`` before NumPy is imported); it is recorded in the output.
    ``lowrank_sur`` runs its own dense work with one BLAS thread whatever the
    setting (``lowrank_sur.threads``), so its rows need no flag; alsgls does not
    (on a busy 2-core machine its multi-threaded SVDs stalled a fit from 8.5 s to
    119-277 s). ``benchmarks/default_threads.py`` measures both configurations
    side by side. Check ``loadavg_at_start`` in the JSON.

Counts
    ``sweeps`` is ``FitRecord.iterations`` for our fitters (ALS sweeps, EM/SQUAREM
    cycles) and ``len(info["nll_trace"]) - 1`` for alsgls (its final beta refresh
    is not counted). ``inner`` lists the inner work: conjugate-gradient
    iterations and factor-step EM maps for ALS, EM maps for EM, L-BFGS-B
    iterations of alsgls's Sigma steps.

Examples
--------
Full run (K in {200, 1000, 3000}, N=300, p=3, k=4)::

    python benchmarks/core_scaling.py --repeat 3 --output scaling.json

Quick run for tests (K in {50, 100}, N=100)::

    python benchmarks/core_scaling.py --quick
"""

from __future__ import annotations

import sys

from surbench.blas import preset_blas_threads

if __name__ == "__main__":
    preset_blas_threads(sys.argv[1:])

from surbench import scaling  # noqa: E402 - imports NumPy, after the BLAS settings


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see ``--help``)."""
    return scaling.main(argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
