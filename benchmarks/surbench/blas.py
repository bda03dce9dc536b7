"""BLAS thread settings (standard library only: usable before NumPy is imported)."""

from __future__ import annotations

import argparse
import os

#: Environment variables that set the BLAS thread count (OpenBLAS, OpenMP, MKL).
BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def set_blas_threads(n: int, env=None):
    """Set every BLAS thread variable to ``n`` in ``env`` (default ``os.environ``)."""
    env = os.environ if env is None else env
    for var in BLAS_VARS:
        env[var] = str(n)
    return env


def preset_blas_threads(argv: list[str]) -> None:
    """Apply ``--blas-threads N`` before NumPy is imported (BLAS reads it at load)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--blas-threads", type=int)
    known, _ = pre.parse_known_args(argv)
    if known.blas_threads is not None:
        set_blas_threads(known.blas_threads)


def blas_env() -> dict:
    """The BLAS thread variables as the environment sets them (None when unset)."""
    return {v: os.environ.get(v) for v in BLAS_VARS}
