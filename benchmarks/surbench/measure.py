"""Measuring a fit and the machine it runs on (shared by both benchmark scripts).

Resident and virtual memory (psutil or ``/proc``), the kernel's peak-RSS mark,
address-space caps, phase timings with optional :mod:`tracemalloc` peaks, error
texts, JSON-safe values, and the machine / environment records of
``compare_sur.py`` (:func:`machine_info`) and ``core_scaling.py`` (:func:`environment`).
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from .blas import blas_env

try:  # optional: better RSS / RAM readings where /proc is absent
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None

GB = 1e9  # decimal units throughout: 1 GB = 10^9 bytes, 1 MB = 10^6 bytes
MB = 1e6

#: The repository the benchmarks sit in.
REPO_ROOT = Path(__file__).resolve().parents[2]


# ================================================================== memory
def status_value(key: str) -> int | None:
    """Read ``key`` (kB) from /proc/self/status, in bytes; None if unavailable."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rss_bytes() -> int | None:
    """Current resident set size of this process."""
    if psutil is not None:
        return int(psutil.Process().memory_info().rss)
    return status_value("VmRSS")


def vms_bytes() -> int | None:
    """Current virtual size (address space) of this process."""
    if psutil is not None:
        return int(psutil.Process().memory_info().vms)
    return status_value("VmSize")


def ru_maxrss_bytes() -> int | None:
    """Peak resident set size of this process so far (``getrusage``)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(v) if sys.platform == "darwin" else int(v) * 1024


def reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return status_value("VmHWM") is not None


def set_address_space_cap(cap_bytes: float) -> str:
    """Limit the address space to the current virtual size plus ``cap_bytes``."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return "not enforced (no resource module)"
    vms = vms_bytes()
    if vms is None:
        return "not enforced (virtual size unknown)"
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = int(vms + cap_bytes)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError) as exc:  # pragma: no cover - platform dependent
        return f"not enforced ({exc})"
    return f"RLIMIT_AS = {limit / GB:.2f} GB (virtual size {vms / GB:.2f} GB + cap)"


def available_bytes() -> float | None:
    """Memory available right now (psutil, else ``MemAvailable`` of /proc/meminfo)."""
    if psutil is not None:
        return float(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024.0
    except OSError:
        pass
    return None


def total_ram_bytes() -> float | None:
    """Physical memory of the machine."""
    if psutil is not None:
        return float(psutil.virtual_memory().total)
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return None


class Phases:
    """Marks the end of each phase of a fit (build, fit, se): wall time and traced peak.

    Parameters
    ----------
    trace : bool
        Also record, per phase, the :mod:`tracemalloc` peak above the traced memory
        at the phase's start (tracemalloc must be running).
    """

    def __init__(self, trace: bool = False) -> None:
        self.trace = trace
        self.times: dict[str, float] = {}
        self.peaks_mb: dict[str, float] = {}
        self.overall_bytes = 0
        self._t = time.perf_counter()
        if trace:
            self._start = self._mem = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()

    def __call__(self, name: str) -> None:
        """End phase ``name``."""
        now = time.perf_counter()
        self.times[name] = now - self._t
        self._t = now
        if self.trace:
            cur, peak = tracemalloc.get_traced_memory()
            self.peaks_mb[name] = (peak - self._mem) / MB
            self.overall_bytes = max(self.overall_bytes, peak - self._start)
            tracemalloc.reset_peak()
            self._mem = cur


# ============================================================ text and JSON
def error_text(exc: BaseException, limit: int = 300) -> str:
    """``"Type: message"`` of an exception on one line, at most ``limit`` characters."""
    msg = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_float(v: float):
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def jsonable(obj):
    """``obj`` made JSON-safe (NumPy scalars, paths, tuples); non-finite floats as strings."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _json_float(float(obj))
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ============================================================= environment
def dist_version(dist: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def loadavg() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages, where the platform has them."""
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def _gb(b: float | None) -> float | None:
    return None if b is None else b / GB


def git_state() -> str | None:
    """Commit of the benchmarks' repository, "+dirty" for local changes to ``lowrank_sur``."""
    root = str(REPO_ROOT)
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--", "lowrank_sur"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def machine_info(alsgls_python: str | None, alsgls_version: str | None) -> dict:
    """Platform, CPUs, RAM, load and package versions of a ``compare_sur`` run."""
    load = loadavg()
    info = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "total_ram_gb": _gb(total_ram_bytes()),
        "available_ram_gb_at_start": _gb(available_bytes()),
        "loadavg_at_start": None if load is None else list(load),
        "blas_threads_env": blas_env(),
        "versions": {
            d: dist_version(d)
            for d in ("numpy", "scipy", "statsmodels", "linearmodels", "lowrank_sur",
                      "pandas", "matplotlib", "psutil")
        },
    }
    info["versions"]["alsgls"] = alsgls_version
    info["alsgls_python"] = alsgls_python
    info["lowrank_sur_git"] = git_state()
    return info


def environment(alsgls_importable: bool) -> dict:
    """Versions of the interpreter and libraries of a ``core_scaling`` run."""
    import scipy

    import lowrank_sur

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "lowrank_sur": lowrank_sur.__version__,
        "cpus": os.cpu_count(),
        "blas_threads": blas_env(),
        "loadavg_at_start": loadavg(),
        "alsgls": dist_version("alsgls") if alsgls_importable else None,
    }
