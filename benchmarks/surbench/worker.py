"""The child side of ``compare_sur.py``: one (method, problem) fitted and measured.

The parent starts ``python compare_sur.py --worker SPEC`` (see
:func:`surbench.runner.run_one`); the entry script hands SPEC to :func:`worker_main`.
"""

from __future__ import annotations

import gc
import json
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

from .measure import (
    GB,
    MB,
    Phases,
    error_text,
    jsonable,
    reset_hwm,
    rss_bytes,
    ru_maxrss_bytes,
    set_address_space_cap,
    status_value,
)
from .methods import METHODS, FitOutput, fitter


def _warm_up(fit, n_exog: int) -> None:
    """An untimed fit of a toy system: imports, lazy modules, BLAS threads."""
    rng = np.random.default_rng(12345)
    p = int(n_exog)
    toy_X = [np.column_stack([np.ones(30), rng.normal(size=(30, p - 1))]) for _ in range(3)]
    toy_Y = rng.normal(size=(30, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(toy_X, toy_Y, 1, Phases())


def _distinct_warnings(caught) -> list[str]:
    seen = []
    for w in caught:
        text = f"{w.category.__name__}: {' '.join(str(w.message).split())[:160]}"
        if text not in seen:
            seen.append(text)
    return seen[:10]


def _timed_fit(fit, Xs, Y, rank, spec: dict, out: dict):
    """The timed run; returns (result or None, phase marks, seconds, warnings caught)."""
    result = None
    mark = Phases()
    Path(spec["progress_path"]).write_text("fitting", encoding="ascii")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        try:
            result = fit(Xs, Y, rank, mark)
        except MemoryError as exc:
            out["status"] = (
                f"failed: MemoryError (address-space cap {spec['mem_cap_bytes'] / GB:.1f} GB"
                f" over baseline) {error_text(exc, 120)}"
            ).rstrip()
        except Exception as exc:  # noqa: BLE001 - any failure is a result
            out["status"] = f"failed: {error_text(exc)}"
        elapsed = time.perf_counter() - t0
    out["time_s"] = elapsed
    Path(spec["progress_path"]).write_text("fitted", encoding="ascii")
    return result, mark, elapsed, caught


def _record_peak_rss(out: dict, reset: bool, hwm0, rss0) -> None:
    if reset:
        peak = status_value("VmHWM")
        out["rss_method"] = "vmhwm-reset"
    else:
        peak = ru_maxrss_bytes()
        out["rss_method"] = "ru_maxrss"
        if peak is not None and hwm0 is not None and peak <= hwm0:
            out["notes"].append("peak RSS is an upper bound (pre-fit high-water mark)")
    out["peak_rss_mb"] = (
        None if (peak is None or rss0 is None) else max(peak - rss0, 0) / MB
    )


def _record_result(out: dict, result: FitOutput, mark: Phases, out_path: str) -> None:
    """Measurements of a successful fit into ``out``, its estimates into ``out_path``."""
    out.update(
        time_build_s=mark.times.get("build"),
        time_fit_s=mark.times.get("fit"),
        time_se_s=mark.times.get("se"),
        llf_native=result.llf_native,
        iterations=result.iterations,
        converged=result.converged,
        n_params=int(result.params.size),
        nan_se="n/a" if result.se is None else int(np.sum(np.isnan(result.se))),
        extra=result.extra,
    )
    arrays = {"params": result.params, "kind": np.array(result.sigma_kind)}
    if result.sigma_kind == "lowrank":
        arrays["F"], arrays["D"] = result.sigma
    else:
        arrays["S"] = result.sigma[0]
    np.savez(out_path, **arrays)


def _traced_run(fit, Xs, Y, rank, spec: dict, elapsed: float, out: dict) -> None:
    """A second, separate run under tracemalloc (unless disabled or too slow)."""
    out["tracemalloc_mb"] = None
    if not spec.get("tracemalloc", True):
        out["tracemalloc_note"] = "disabled (--no-tracemalloc)"
        return
    if elapsed > spec["trace_max_seconds"]:
        out["tracemalloc_note"] = (
            f"not traced: the timed run took {elapsed:.0f} s > --trace-max-seconds "
            f"{spec['trace_max_seconds']:g}"
        )
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracemalloc.start()
        try:
            traced = Phases(trace=True)
            fit(Xs, Y, rank, traced)
            out["tracemalloc_mb"] = traced.overall_bytes / MB
            out["tracemalloc_phase_mb"] = traced.peaks_mb
            out["tracemalloc_note"] = "separate traced run"
        except Exception as exc:  # noqa: BLE001
            out["tracemalloc_note"] = f"traced run failed: {error_text(exc, 120)}"
        finally:
            tracemalloc.stop()


def run_worker(spec: dict) -> dict:
    """Run one (method, problem) inside this (child) process and measure it.

    Parameters
    ----------
    spec : dict
        ``method``, ``data_path`` (the problem's ``.npz``), ``rank``, ``n_exog``,
        ``mem_cap_bytes``, ``tracemalloc`` (bool), ``trace_max_seconds``,
        ``progress_path`` and ``out_path`` (where the estimates are saved as ``.npz``).

    Returns
    -------
    dict
        Measurements and status; the estimates go to ``spec["out_path"]``.
    """
    fit = fitter(METHODS[spec["method"]])
    out: dict = {"status": "ok", "warnings": [], "notes": []}
    _warm_up(fit, spec["n_exog"])
    with np.load(spec["data_path"]) as data:
        X3, Y = data["X"], data["Y"]
    Xs = [X3[j] for j in range(X3.shape[0])]
    out["data_checksum"] = float(np.sum(Y))
    rank = int(spec["rank"])
    gc.collect()

    rss0 = rss_bytes()
    reset = reset_hwm()
    hwm0 = ru_maxrss_bytes()
    out["rss_baseline_mb"] = None if rss0 is None else rss0 / MB
    out["mem_cap"] = set_address_space_cap(float(spec["mem_cap_bytes"]))
    result, mark, elapsed, caught = _timed_fit(fit, Xs, Y, rank, spec, out)
    _record_peak_rss(out, reset, hwm0, rss0)
    out["warnings"] = _distinct_warnings(caught)
    if result is None:
        return out
    _record_result(out, result, mark, spec["out_path"])
    result = None
    gc.collect()
    _traced_run(fit, Xs, Y, rank, spec, elapsed, out)
    return out


def worker_main(spec_text: str) -> int:
    """Entry point of a child: run the JSON ``spec_text``, write the result file."""
    spec = json.loads(spec_text)
    try:
        out = run_worker(spec)
    except BaseException as exc:  # noqa: BLE001 - report instead of a bare traceback
        out = {"status": f"failed: {error_text(exc)}"}
    with open(spec["result_path"], "w", encoding="utf-8") as fh:
        json.dump(jsonable(out), fh)
    return 0
