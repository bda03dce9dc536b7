"""The ALS fit on Dask, for systems whose data do not fit in one machine's memory.

Needs the optional dependencies ``pip install "lowrank_sur[dask]"`` (dask, distributed,
zarr). :func:`fit_arrays` takes dask arrays chunked along equations and returns the
in-memory fit's record; :class:`DaskInference` gives standard errors for chosen
equations and Wald/t tests of a few restrictions by distributed conjugate gradients.
See ``docs/dask.md``.
"""

from __future__ import annotations

try:
    import dask.array  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "lowrank_sur.dask needs dask: pip install 'lowrank_sur[dask]' "
        "(dask[array], distributed, zarr)"
    ) from exc

from .arrays import DaskDesign, DaskMatrix
from .fit import DaskFitRecord, fit_arrays, worker_transfer_bytes
from .inference import DaskInference

__all__ = ["fit_arrays", "DaskFitRecord", "DaskDesign", "DaskMatrix", "DaskInference",
           "worker_transfer_bytes"]
