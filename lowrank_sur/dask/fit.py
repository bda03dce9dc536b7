"""The ALS fit on a Dask cluster: :func:`fit_arrays` for dask arrays chunked by equations.

The sweep is the in-memory one (:mod:`lowrank_sur.fitters.als`,
:mod:`lowrank_sur.fitters.sweeps`): the beta step is
:class:`~lowrank_sur.gls.GLSOperator`'s warm-started conjugate gradients, the factor
step is :class:`~lowrank_sur.factor.FactorProblem`'s SQUAREM-accelerated PX-EM, and
SQUAREM extrapolates the whole sweep map; only the data they read are distributed
(:class:`~lowrank_sur.dask.arrays.DaskDesign`, :class:`~lowrank_sur.dask.arrays.DaskMatrix`).
The parameters (K x p coefficients, K x k loadings, K variances) live on the client;
every pass over the data is a dask graph whose results are k x N, N x k or one row per
equation.

What differs from the in-memory fit, on purpose:

* one start, the principal components of the OLS residuals, from a randomized
  truncated SVD (:func:`dask.array.linalg.svd_compressed`): ``n_starts`` must be 1 or
  ``"auto"`` (which here never adds starts: a fit that ends on the floor of D or does
  not converge is reported by the usual warnings, not retried);
* the factor step is EM only (up to ``FactorOptions.maxiter`` SQUAREM cycles): the
  profile-likelihood stage and the joint L-BFGS-B polish, which the in-memory fit uses
  where EM and the sweeps crawl (Heywood cases, strongly coupled blocks), need N x K
  work on the client and are not run;
* the check that the likelihood is bounded before the fit is not run
  (``likelihood_bounded`` is None).

References
----------
Varadhan, R. and Roland, C. (2008). Simple and globally convergent methods for
accelerating the convergence of any EM algorithm. Scandinavian Journal of
Statistics 35, 335-353.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace

import dask.array as da
import numpy as np
from dask.base import get_scheduler

from ..covariance import LowRankCovariance, canonical_loadings, gaussian_llf
from ..factor import EM_CYCLES, FactorFit, FactorOptions, FactorProblem, solve_factor
from ..fitters.common import Progress, finish, ols_start
from ..fitters.record import FitRecord
from ..fitters.sweeps import _cycle, _Sweeper
from ..gls import GLSOperator
from ..options import FitOptions, check_rank
from ..selection import warn_if_unidentified
from ..starts import pc_loadings
from ..threads import single_threaded
from .arrays import DaskDesign, DaskMatrix, _compute, block_design

__all__ = ["fit_arrays", "DaskFitRecord", "worker_transfer_bytes"]

#: Power iterations of the randomized SVD of the start.
SVD_POWER_ITER = 4


@dataclass
class DaskFitRecord(FitRecord):
    """A :class:`~lowrank_sur.fitters.record.FitRecord`, plus what the distributed fit measured.

    Attributes
    ----------
    sweep_log : list of dict
        One entry per sweep: ``sweep``, ``seconds``, ``llf``, ``cg_iterations``,
        ``factor_evaluations``, ``bytes_sent`` (pieces the client sent to the blocks),
        ``bytes_gathered`` (results it received) and ``bytes_between_workers``
        (``distributed`` transfer counters; None without a ``distributed`` client).
    design : DaskDesign
        The design on the cluster (inference reuses it; :meth:`release` frees it).
    start_seconds : float
        Time of the QR of the design, the OLS start and its SVD.
    """

    sweep_log: list = field(default_factory=list, repr=False)
    design: DaskDesign | None = field(default=None, repr=False)
    start_seconds: float = 0.0

    def release(self) -> None:
        """Free the design's blocks on the cluster (inference is then unavailable)."""
        if self.design is not None:
            self.design.release()
        self.design = None

    def inference(self):
        """The :class:`~lowrank_sur.dask.inference.DaskInference` of this fit."""
        from .inference import DaskInference

        return DaskInference(self)


def worker_transfer_bytes() -> int | None:
    """Bytes the workers sent each other so far (``distributed``), or None without a client."""
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed is in the extra
        return None
    client = getattr(get_scheduler(), "__self__", None)  # the Client whose get dask uses
    if not isinstance(client, Client):
        return None
    counts = client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total)
    return int(sum(counts.values()))


# ---------------------------------------------------------------- the factor step
class DaskFactorProblem(FactorProblem):
    """:class:`~lowrank_sur.factor.FactorProblem` on residuals kept on the cluster.

    The EM map, its gradient and the stationarity measures are the in-memory ones:
    they read the residuals only through ``R @ W``, ``R.T @ E[z]`` and the column sums
    of squares, which :class:`~lowrank_sur.dask.arrays.DaskMatrix` computes.
    """

    def __init__(self, R: DaskMatrix, rank: int, floor: np.ndarray, px: bool = True) -> None:
        self.R = R
        self.n, self.K = R.shape
        self.k = rank
        self.floor = floor
        self.px = px
        self.colss = R.colss()
        self.s = np.maximum(self.colss / self.n, np.finfo(float).tiny)
        self.sd = np.sqrt(self.s)
        self._last = None

    def _em(self, x: np.ndarray):
        """The in-memory EM map, with its two passes over ``R`` fetched in one graph."""
        if self.k:
            F, D = self.unpack(x)
            try:
                cov = LowRankCovariance(F, D, validate=False)
            except np.linalg.LinAlgError:
                return super()._em(x)
            self.R.prefetch_em(cov.W, cov.L_inv)
        return super()._em(x)

    def loglike_accurate(self, F, D):  # pragma: no cover - the profile stage is not run
        raise NotImplementedError("the distributed factor step runs EM only")


def fit_factor_dask(R: DaskMatrix, F0: np.ndarray, D0: np.ndarray, floor: np.ndarray,
                    options: FactorOptions) -> FactorFit:
    """:func:`~lowrank_sur.factor.fit_factor`'s start check and EM stage on distributed ``R``."""
    opts = replace(options, polish=False)
    return solve_factor(DaskFactorProblem(R, F0.shape[1], floor, px=opts.px), F0, D0, opts)


def _loglike(R: DaskMatrix, F: np.ndarray, D: np.ndarray) -> float:
    """``LowRankCovariance(F, D).loglike(R)`` with one pass over the distributed ``R``."""
    cov = LowRankCovariance(F, D, validate=False)
    RW = R @ cov.W if cov.rank else None
    quad = cov.quad_form_sum(R, col_ss=R.colss(), RW=RW)
    return float(gaussian_llf(R.shape[0], R.shape[1], cov.logdet(), quad))


# ------------------------------------------------------------------- the sweeps
class _DaskSweeper(_Sweeper):
    """The in-memory sweep (:class:`~lowrank_sur.fitters.sweeps._Sweeper`) on the cluster.

    Keeps the residuals of the last iterate only (each is N x K on the workers), and
    logs the time and the bytes moved of every sweep.
    """

    def __init__(self, design: DaskDesign, Y: DaskMatrix, beta_step, st: Progress,
                 opts: FitOptions, log: list) -> None:
        self.design, self.Y, self.beta_step, self.st, self.opts = design, Y, beta_step, st, opts
        self.name = "ALS sweep (dask)"
        self.em_cycles = EM_CYCLES
        self.YT = Y
        self._resid = {id(st.A): (st.A, st.resid)}
        st.resid = None
        self.s2 = st.floor / opts.d_floor
        self.sd = np.sqrt(self.s2)
        self.prev_change: float | None = None  # the in-memory stopping rule's state
        self.log = log

    def __call__(self, A, F, D):
        st, traffic = self.st, self.design.traffic
        t0, (sent0, got0), w0 = time.perf_counter(), traffic.snapshot(), worker_transfer_bytes()
        cg0 = st.cg_iterations
        st.iterations += 1
        known = self._resid.pop(id(A), None)
        R0 = known[1] if known is not None and known[0] is A else None
        del known
        A1 = self.beta_step(A, F, D, R0)
        R0 = None  # release the previous residuals on the workers before the new ones
        self._resid = {}
        R1 = self.design.residuals(self.YT, A1)
        ff = fit_factor_dask(R1, F, D, st.floor, self.opts.factor_options(self.em_cycles))
        self._resid = {id(A1): (A1, R1)}
        st.evaluations += ff.evaluations
        w1 = worker_transfer_bytes()
        self.log.append({
            "sweep": st.iterations, "seconds": time.perf_counter() - t0, "llf": ff.llf,
            "cg_iterations": st.cg_iterations - cg0, "factor_evaluations": ff.evaluations,
            "bytes_sent": traffic.sent - sent0, "bytes_gathered": traffic.gathered - got0,
            "bytes_between_workers": None if w0 is None else w1 - w0,
        })
        return A1, canonical_loadings(ff.F, ff.D), ff.D, ff.llf


# -------------------------------------------------------------------- the start
@single_threaded
def _ols_block(Q, YT, names, d_floor: float):
    """OLS of one block and its floor on D, with the in-memory checks and messages."""
    bad = ~np.all(np.isfinite(YT), axis=1)
    if np.any(bad):
        raise ValueError(f"{names[int(np.flatnonzero(bad)[0])]}: the response contains "
                         "NaN or inf")
    st, _ = ols_start(block_design(Q, names), YT.T, 0, FitOptions(d_floor=d_floor))
    return np.column_stack([st.A, st.floor])


def _start(design: DaskDesign, Y: DaskMatrix, rank: int, opts: FitOptions):
    """OLS, the floor on D, and the principal-component start from a randomized SVD.

    The start's residuals (on the workers) are in ``resid`` of the returned state.
    """
    names = da.from_array(np.array(design.eq_names, dtype=object), chunks=(design.chunks,))
    out = da.blockwise(_ols_block, "jc", design.Q, "jcn", Y.data, "jn", names, "j",
                       adjust_chunks={"c": design.pmax + 1}, dtype=float, concatenate=True,
                       d_floor=opts.d_floor)
    out = _compute(design.traffic, out)[0]
    A, floor = np.ascontiguousarray(out[:, :-1]), out[:, -1].copy()
    R = design.residuals(Y, A)
    var = R.colss() / design.nobs
    if rank == 0:
        return Progress(A, np.zeros((design.k_eqs, 0)), np.maximum(var, floor), floor, [],
                        resid=R)
    # R' is K x N, chunked by equations: tall and skinny, as svd_compressed wants; each
    # response on its own scale, as the in-memory start (starts.start_values)
    sd = np.sqrt(np.where(var > 0, var, 1.0))
    u, s, _ = da.linalg.svd_compressed(R.data / sd[:, None], rank,
                                       n_power_iter=SVD_POWER_ITER, seed=0)
    u, s = _compute(design.traffic, u, s)
    F, D = pc_loadings(s / np.sqrt(design.nobs), u.T, var, floor, sd)
    return Progress(A, F, D, floor, [], resid=R)


# ------------------------------------------------------------------------- inputs
def _check_inputs(X, Y):
    if not isinstance(X, da.Array) or not isinstance(Y, da.Array):
        raise TypeError(
            "lowrank_sur.dask.fit_arrays takes dask arrays X (N x K x p) and Y (N x K), "
            f"got {type(X).__name__} and {type(Y).__name__}; for in-memory arrays use "
            "lowrank_sur.fit_arrays, or wrap them with dask.array.from_array"
        )
    if X.ndim != 3:
        raise ValueError(f"X must be 3-D (N x K x p), got shape {X.shape}")
    if Y.ndim != 2:
        raise ValueError(f"Y must be 2-D (N x K), got shape {Y.shape}")
    if np.iscomplexobj(np.empty(0, X.dtype)) or np.iscomplexobj(np.empty(0, Y.dtype)):
        raise ValueError("X or Y holds complex numbers; the model needs real numbers")
    if Y.shape != X.shape[:2]:
        raise ValueError(f"Y has shape {Y.shape} but X has {X.shape[:2]} (N, K) in front")
    if X.shape[2] == 0:
        raise ValueError("X has no regressors (p = 0)")
    if X.shape[2] > X.shape[0]:
        raise ValueError(f"X has p={X.shape[2]} regressors but only N={X.shape[0]} "
                         "observations")
    X = X.astype(float).rechunk({0: -1, 2: -1})
    Y = Y.astype(float).rechunk({0: -1, 1: X.chunks[1]})
    return X, Y


def fit_arrays(X, Y, rank: int, *, eq_names=None, options: FitOptions | None = None,
               persist_design: bool = True, **kwargs) -> DaskFitRecord:
    """Fit a SUR system with ``Sigma = F F' + diag(D)`` by ALS on a Dask cluster.

    Parameters
    ----------
    X : dask.array.Array, shape (N, K, p)
        Regressors: equation j's N x p matrix is ``X[:, j, :]`` (every equation has
        p regressors, each its own values; include a constant column if wanted).
        Chunked along equations (axis 1); rechunked to one chunk along N and p.
    Y : dask.array.Array, shape (N, K)
        Responses, rechunked to the equation chunks of ``X``; kept in the workers'
        memory next to each block's ``Q`` (read once from the source, e.g. zarr).
    rank : int
        Number of factors k, ``0 <= k < K`` and ``k < N``.
    eq_names : sequence of str, optional
        Equation labels for messages.
    options : FitOptions, optional
        Fitting options; keywords override them (the same as
        :func:`lowrank_sur.fit_arrays`: ``tol``, ``ptol``, ``maxiter``, ``d_floor``,
        ``accelerate``, ``disp``, ``callback``; ``method`` must be ``"als"`` and
        ``n_starts`` 1 or ``"auto"``, see the module notes).
    persist_design : bool
        Keep the orthonormal bases ``Q_j`` (the size of ``X``) and the responses in the
        workers' memory (default); with False every pass recomputes them from the
        sources of ``X`` and ``Y``.
    **kwargs
        Fields of :class:`~lowrank_sur.options.FitOptions`.

    Returns
    -------
    DaskFitRecord
        The in-memory fit's :class:`~lowrank_sur.fitters.record.FitRecord`, plus
        ``sweep_log`` (time and bytes of every sweep) and the design for inference
        (:meth:`DaskFitRecord.inference`).

    Notes
    -----
    Runs on the current dask scheduler: a ``distributed.Client`` if one is active,
    otherwise dask's default (threads). On problems that fit in memory the estimates
    agree with :func:`lowrank_sur.fit_arrays` (``n_starts=1``) to the fit's tolerances.
    """
    opts = FitOptions.from_kwargs(options, **kwargs)
    if opts.method != "als":
        raise ValueError(f"method={opts.method!r}: the distributed fit is ALS only "
                         "(method='als'); the EM reference is dense, for small K")
    if opts.n_starts not in (1, "auto"):
        raise ValueError(f"n_starts={opts.n_starts!r}: the distributed fit uses one start "
                         "(n_starts=1 or 'auto'); see lowrank_sur.dask.fit for why")
    X, Y = _check_inputs(X, Y)
    N, K, _ = X.shape
    if eq_names is not None and (isinstance(eq_names, str) or len(eq_names) != K):
        raise ValueError(f"eq_names must be a sequence of K={K} labels")
    rank = check_rank(rank, K, N)
    warn_if_unidentified(K, rank)
    t0 = time.perf_counter()
    design = DaskDesign(X, eq_names, Y=Y, persist=persist_design)
    Yd = design.responses
    st = _start(design, Yd, rank, opts)
    st.history.append(_loglike(st.resid, st.F, st.D))
    start_seconds = time.perf_counter() - t0
    log: list = []
    if rank == 0:  # GLS is OLS: one beta step, then the variances
        ff = fit_factor_dask(st.resid, st.F, st.D, st.floor, opts.factor_options())
        st.D, st.converged, st.iterations, st.evaluations = ff.D, True, 1, 1
        st.history.append(ff.llf)
        st.resid = None
        rec = finish(design, st, opts, llf=ff.llf)
    else:
        rec = finish(design, _run(design, Yd, st, opts, log), opts)
    out = DaskFitRecord(**{f.name: getattr(rec, f.name) for f in fields(FitRecord)},
                        sweep_log=log, design=design, start_seconds=start_seconds)
    out.likelihood_bounded = None
    out.starts = [{"label": "principal components (svd_compressed)", "llf": out.llf,
                   "converged": out.converged, "degenerate": False,
                   "heywood": out.heywood, "iterations": out.iterations}]
    return out


def _run(design: DaskDesign, Y: DaskMatrix, st: Progress, opts: FitOptions,
         log: list) -> Progress:
    """The sweeps (SQUAREM cycles of :func:`lowrank_sur.fitters.sweeps._cycle`)."""
    QtY = st.A.copy()  # Q_j' y_j: the OLS start

    def beta_step(A, F, D, R):
        # as in lowrank_sur.fitters.als: CG on the correction from the current coefficients
        op = GLSOperator(design, LowRankCovariance(F, D, validate=False))
        if R is None:
            R = design.residuals(Y, A)
        r0, c_norm = op.residual_system(QtY, A, Y, R)
        delta = op.solve(r0, rtol=0.0, atol=opts.cg_rtol * c_norm)
        st.cg_iterations += op.cg_iterations
        return A + delta.reshape(A.shape)

    sw = _DaskSweeper(design, Y, beta_step, st, opts, log)
    step_max = 1.0
    while st.iterations < opts.maxiter:
        done, step_max = _cycle(sw, step_max)
        if done:
            break
    return st
