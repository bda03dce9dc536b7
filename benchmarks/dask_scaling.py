"""Scaling of the distributed ALS fit (lowrank_sur.dask) on a LocalCluster, data on disk.

For each number of equations K: simulate a system chunk by chunk (one task per block
of equations, on the workers) straight into zarr arrays on disk, X (N x K x p, a
constant and p - 1 normal regressors per equation) and Y (N x K, k normal factors with
loadings drawn per equation plus noise); time reading the data once from disk (a sum
over every chunk); fit with :func:`lowrank_sur.dask.fit_arrays` from the zarr arrays;
and, when ``K <= --inmemory-max-k``, fit the same data in memory with
:func:`lowrank_sur.fit_arrays` (``n_starts=1``) in this process.

Reported per K: the sweeps, time per sweep (median and total), the start (QR, OLS,
randomized SVD), bytes the client sent and gathered, bytes moved between workers
(``distributed``'s transfer counters), peak worker memory (process RSS and dask's
managed memory, sampled every ``--sample`` seconds from a thread), bytes spilled to
disk, the read-once time and the ratio of the median sweep to it, the machine's
load average before and after, and the in-memory fit side by side (time, llf
difference). Everything else on the machine keeps running: check the load averages.

Examples
--------
Full run (K in {1e4, 5e4, 1e5}, N=1000, p=2, k=4, 2 workers with 3 GB each)::

    python benchmarks/dask_scaling.py --output docs/benchmark_results/dask_scaling.json

Quick mode (seconds; what tests/test_benchmarks_quick.py runs)::

    python benchmarks/dask_scaling.py --quick --output /tmp/dask_quick.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr
from distributed import Client, LocalCluster

import lowrank_sur
from lowrank_sur.dask import fit_arrays as dask_fit


# ------------------------------------------------------------------------ data
def _x_block(block_id, n: int, kb: int, p: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 0, block_id])
    X = np.empty((n, kb, p))
    X[:, :, 0] = 1.0
    X[:, :, 1:] = rng.standard_normal((n, kb, p - 1))
    return X


def _y_block(Xb: np.ndarray, block_id, rank: int, seed: int) -> np.ndarray:
    n, kb, p = Xb.shape
    rng = np.random.default_rng([seed, 1, block_id])
    z = np.random.default_rng([seed, 2]).standard_normal((n, rank))  # common factors
    beta = rng.standard_normal((kb, p))
    F = rng.standard_normal((kb, rank)) * 0.7
    D = rng.uniform(0.5, 1.5, kb)
    return np.einsum("nkp,kp->nk", Xb, beta) + z @ F.T + rng.standard_normal((n, kb)) * np.sqrt(D)


def write_zarr(root: Path, n: int, K: int, p: int, rank: int, chunk: int, seed: int):
    """Simulate X and Y block by block on the workers into zarr arrays under ``root``."""
    nb = -(-K // chunk)
    sizes = [min(chunk, K - i * chunk) for i in range(nb)]
    X = da.concatenate([
        da.from_delayed(dask.delayed(_x_block)(i, n, kb, p, seed), (n, kb, p), float)
        for i, kb in enumerate(sizes)], axis=1).rechunk((n, chunk, p))
    Y = da.map_blocks(lambda Xb, block_id=None: _y_block(Xb, block_id[1], rank, seed), X,
                      drop_axis=2, dtype=float)
    zx = zarr.open_array(str(root / "X.zarr"), mode="w", shape=X.shape, chunks=(n, chunk, p),
                         dtype="f8")
    zy = zarr.open_array(str(root / "Y.zarr"), mode="w", shape=Y.shape, chunks=(n, chunk),
                         dtype="f8")
    da.store([X, Y], [zx, zy], lock=False)


# -------------------------------------------------------------------- measuring
def _worker_memory(dask_worker):
    import psutil

    spilled = getattr(dask_worker.data, "spilled_total", None)
    managed = getattr(dask_worker.state, "nbytes", None)  # dask's managed memory (bytes)
    return {"rss": psutil.Process().memory_info().rss,
            "managed": managed,
            "spilled_disk": None if spilled is None else int(spilled.disk)}


class MemoryMonitor:
    """Peak RSS and managed memory per worker, sampled from a thread."""

    def __init__(self, client: Client, every: float) -> None:
        self.client, self.every = client, every
        self.peak_rss: dict = {}
        self.peak_managed: dict = {}
        self.spilled: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                info = self.client.run(_worker_memory)
            except Exception:  # noqa: BLE001 - a worker restarting: keep sampling
                info = {}
            for w, m in info.items():
                self.peak_rss[w] = max(self.peak_rss.get(w, 0), m["rss"])
                if m["managed"] is not None:
                    self.peak_managed[w] = max(self.peak_managed.get(w, 0), m["managed"])
                self.spilled[w] = m["spilled_disk"]
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def read_once(path: Path) -> float:
    """Seconds to read X and Y once from disk (a sum over every chunk)."""
    t0 = time.perf_counter()
    X, Y = da.from_zarr(str(path / "X.zarr")), da.from_zarr(str(path / "Y.zarr"))
    dask.compute(X.sum(), Y.sum())
    return time.perf_counter() - t0


def run_one(client: Client, root: Path, args, K: int) -> dict:
    path = root / f"K{K}"
    t0 = time.perf_counter()
    write_zarr(path, args.nobs, K, args.p, args.rank, args.chunk, args.seed)
    gen_s = time.perf_counter() - t0
    read_s = read_once(path)
    X, Y = da.from_zarr(str(path / "X.zarr")), da.from_zarr(str(path / "Y.zarr"))
    load0 = os.getloadavg()
    with MemoryMonitor(client, args.sample) as mon:
        t0 = time.perf_counter()
        rec = dask_fit(X, Y, args.rank, maxiter=args.maxiter)
        fit_s = time.perf_counter() - t0
    sweeps = [e["seconds"] for e in rec.sweep_log]
    row = {
        "k_eqs": K, "nobs": args.nobs, "p": args.p, "rank": args.rank, "chunk": args.chunk,
        "data_gb": (X.nbytes + Y.nbytes) / 1e9, "generate_s": gen_s, "read_once_s": read_s,
        "fit_s": fit_s, "start_s": rec.start_seconds, "sweeps": rec.iterations,
        "converged": rec.converged, "llf": rec.llf, "cg_iterations": rec.cg_iterations,
        "factor_evaluations": rec.evaluations,
        "sweep_median_s": statistics.median(sweeps) if sweeps else None,
        "sweep_max_s": max(sweeps) if sweeps else None,
        "sweep_over_read": statistics.median(sweeps) / read_s if sweeps else None,
        "bytes_sent": rec.design.traffic.sent, "bytes_gathered": rec.design.traffic.gathered,
        "largest_gathered": rec.design.traffic.largest,
        "bytes_between_workers": sum(e["bytes_between_workers"] or 0 for e in rec.sweep_log),
        "peak_rss_gb": {w: v / 1e9 for w, v in mon.peak_rss.items()},
        "peak_managed_gb": {w: v / 1e9 for w, v in mon.peak_managed.items()},
        "spilled_disk_gb": {w: (v or 0) / 1e9 for w, v in mon.spilled.items()},
        "loadavg_before": load0, "loadavg_after": os.getloadavg(),
        "sweep_log": rec.sweep_log,
    }
    rec.release()
    del rec
    if K <= args.inmemory_max_k:
        Xn, Yn = X.compute(), Y.compute()
        Xs = [Xn[:, j, :] for j in range(K)]
        t0 = time.perf_counter()
        mem = lowrank_sur.fit_arrays(Xs, Yn, args.rank, n_starts=1, maxiter=args.maxiter)
        row["inmemory_s"] = time.perf_counter() - t0
        row["inmemory_sweeps"] = mem.iterations
        row["llf_rel_diff"] = abs(row["llf"] - mem.llf) / abs(mem.llf)
        del Xn, Yn, Xs, mem
    shutil.rmtree(path, ignore_errors=True)
    return row


def block_costs(n: int, kb: int, p: int, rank: int, repeat: int = 5) -> dict:
    """Seconds of each per-block operation on one block (this process, one thread).

    The pieces of a sweep: the two halves of a GLS matrix-vector product
    (``fitted_mixed``, ``rmul_mixed``), the residuals, and the two products of an EM
    map (``R_b W_b``, ``R_b' E[z]``); minimum over ``repeat`` runs.
    """
    from lowrank_sur.dask import arrays as A

    rng = np.random.default_rng(0)
    Xb = _x_block(0, n, kb, p, 0)
    Q = A._qr_block(Xb, np.array([f"e{j}" for j in range(kb)], dtype=object), "Q")
    YT = rng.standard_normal((kb, n))
    Ab, Wb = rng.standard_normal((kb, p)), rng.standard_normal((kb, rank))
    Z, E = rng.standard_normal((rank, n)), rng.standard_normal((n, rank))
    T = A._residuals_block(Q, YT, Ab)
    ops = {
        "fitted_mixed": lambda: A._fitted_mixed_block(Q, Ab, Wb),
        "rmul_mixed": lambda: A._rmul_mixed_block(Q, Z, Wb),
        "residuals": lambda: A._residuals_block(Q, YT, Ab),
        "R_W": lambda: A._right_block(T, Wb),
        "Rt_E": lambda: A._left_block(T, E),
    }
    out = {}
    for name, fn in ops.items():
        best = np.inf
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        out[name] = best
    out.update(block_equations=kb, nobs=n, p=p, rank=rank, q_bytes=Q.nbytes, r_bytes=T.nbytes,
               loadavg=os.getloadavg())
    return out


def render(rows: list[dict]) -> str:
    head = ("| K | data GB | sweeps | sweep median s | read once s | sweep/read | start s | "
            "fit s | peak RSS GB (max worker) | spilled GB | between workers MB | "
            "in-memory s | llf rel diff |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        rss = max(r["peak_rss_gb"].values()) if r["peak_rss_gb"] else float("nan")
        spill = sum(r["spilled_disk_gb"].values())
        inm = f"{r['inmemory_s']:.1f}" if "inmemory_s" in r else "-"
        diff = f"{r['llf_rel_diff']:.1e}" if "llf_rel_diff" in r else "-"
        lines.append(
            f"| {r['k_eqs']} | {r['data_gb']:.2f} | {r['sweeps']} | {r['sweep_median_s']:.2f} "
            f"| {r['read_once_s']:.2f} | {r['sweep_over_read']:.2f} | {r['start_s']:.1f} | "
            f"{r['fit_s']:.1f} | {rss:.2f} | {spill:.2f} | "
            f"{r['bytes_between_workers'] / 1e6:.1f} | {inm} | {diff} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    ap.add_argument("--k-eqs", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    ap.add_argument("--nobs", type=int, default=1000)
    ap.add_argument("--p", type=int, default=2)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=5000, help="equations per block")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="3GB")
    ap.add_argument("--maxiter", type=int, default=1000)
    ap.add_argument("--inmemory-max-k", type=int, default=50_000)
    ap.add_argument("--sample", type=float, default=0.5, help="memory sampling period (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", default=None, help="where the zarr data go (default: a temp dir)")
    ap.add_argument("--output", default=None, help="JSON file for the results")
    ap.add_argument("--work-stealing", action="store_true",
                    help="leave distributed's work stealing on (default: off)")
    ap.add_argument("--bandwidth", type=float, default=1e6,
                    help="the scheduler's bandwidth estimate in bytes/s (distributed's "
                         "default is 1e8)")
    ap.add_argument("--block-costs", action="store_true",
                    help="only time the per-block operations on one block of --chunk "
                         "equations (no cluster) and print them as JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.k_eqs, args.nobs, args.chunk, args.memory_limit = [80, 160], 80, 40, "1GB"
        args.rank = 2
        args.inmemory_max_k, args.sample = 10**9, 0.2
    if args.block_costs:
        costs = block_costs(args.nobs, args.chunk, args.p, args.rank)
        print(json.dumps(costs, indent=1))
        if args.output:
            Path(args.output).write_text(json.dumps(costs, indent=1))
        return 0
    root = Path(args.dir or tempfile.mkdtemp(prefix="dask_scaling_"))
    root.mkdir(parents=True, exist_ok=True)
    # Work stealing moves tasks away from the worker that holds their block (80 MB of Q):
    # measured 0.45-0.94 GB between workers per sweep at K=5e4 with it on.
    # The scheduler also weighs a worker's queue against moving a block (its bandwidth
    # estimate, 100 MB/s by default): a low estimate keeps every task with its block.
    dask.config.set({"distributed.scheduler.work-stealing": args.work_stealing,
                     "distributed.scheduler.bandwidth": args.bandwidth})
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           memory_limit=args.memory_limit, dashboard_address=":0",
                           local_directory=str(root / "spill"))
    rows = []
    payload = {"config": {k: v for k, v in vars(args).items()},
               "environment": {"machine": platform.machine(), "cpus": os.cpu_count(),
                               "python": platform.python_version(),
                               "dask": dask.__version__, "zarr": zarr.__version__,
                               "loadavg_at_start": os.getloadavg()},
               "rows": rows}
    try:
        with Client(cluster) as client:
            for K in args.k_eqs:
                rows.append(run_one(client, root, args, K))
                print(render(rows[-1:]).splitlines()[-1], flush=True)
                if args.output:
                    Path(args.output).write_text(json.dumps(payload, indent=1, default=str))
    finally:
        cluster.close()
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(render(rows))
    if args.output:
        Path(args.output).write_text(json.dumps(payload, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
