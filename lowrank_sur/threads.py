"""BLAS threads inside the library: one thread for the small dense work, no user setting needed.

The fits make thousands of small dense calls (k x k Cholesky factors and triangular
solves, products of an N x K matrix with K x k blocks). With a multi-threaded BLAS
(OpenBLAS starts one thread per core by default) each of these can cost milliseconds
instead of microseconds: the threads are woken, synchronised and put back to sleep for
work that takes one core a few microseconds, and on a machine whose cores are busy
they wait for a core to be free. Measured on a 2-core machine with NumPy's and SciPy's
OpenBLAS at their default two threads: a 4 x 4 triangular solve with 1000 right-hand
sides took 6-16 ms instead of 0.04 ms, a 300 x 5000 by 5000 x 4 product 9-16 ms
instead of 1.1 ms, and whole fits were 7-29 times slower than with one thread.

So the library's entry points (every registered fitter, the design's QR factors and
the coefficient covariances) run inside :func:`blas_single_thread`, which limits the
BLAS libraries loaded in the process to one thread with :mod:`threadpoolctl` (the
mechanism scikit-learn uses) and restores the previous setting on exit. Nothing is
changed outside those calls, and no environment variable is needed.

No product of the library was measured faster with two threads on that machine: the
large level-3 calls of the coefficient covariance (``dsyrk``, ``dtrmm`` on a 2000 x 2000
factor) ran at the same speed, and its Cholesky factorization and triangular inverse
took 5.6 s and 4.0 s with two threads against 0.2 s with one when the other core was
busy. Measured again for the standard errors' N k x N k Woodbury route
(``benchmarks/bse_scaling.py --compare-threads 1,2``, side by side in one process, the
machine shared with other jobs at a load average of 3-5 on its 2 cores): its
``dsyrk``/``dtrmm``/``dpotrf``/``dpotri`` calls took 3-5x longer with two threads
(K = 5000, N = 500: 7.1-12.2 s against 1.8-2.3 s), because a second thread waits for a
core that is busy; on the same machine otherwise idle (load average 1.3, K = 20000,
N = 500) two threads were no faster either (3.92 and 3.98 s against 4.02 and 3.94 s),
nor on an idle machine (load 0.3-1.1; 5.43-6.79 s against 5.72-6.21 s, also with only the
level-3 calls at two threads, whose CPU time then doubled: ``docs/benchmarks.md``).
So everything runs on one thread. :data:`LIBRARY_BLAS_THREADS`
changes the limit (for such measurements; not a user setting).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

__all__ = ["blas_single_thread", "single_threaded", "LIBRARY_BLAS_THREADS"]

#: BLAS threads inside the library's entry points (benchmarks may raise it to compare).
LIBRARY_BLAS_THREADS = 1

T = TypeVar("T", bound=Callable)

_state = threading.local()
_lock = threading.Lock()
_controller = None


def _get_controller():
    """The :class:`threadpoolctl.ThreadpoolController`, built once.

    Building it scans the loaded libraries (about 10 ms); NumPy's and SciPy's BLAS are
    loaded by the time the library first calls it.
    """
    global _controller
    if _controller is None:
        with _lock:
            if _controller is None:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
    return _controller


def _depth() -> int:
    return getattr(_state, "depth", 0)


@contextmanager
def blas_single_thread() -> Iterator[None]:
    """Run the block with one BLAS thread; nested uses cost nothing."""
    if _depth():
        _state.depth += 1
        try:
            yield
        finally:
            _state.depth -= 1
        return
    limiter = _get_controller().limit(limits=LIBRARY_BLAS_THREADS, user_api="blas")
    _state.depth = 1
    try:
        yield
    finally:
        _state.depth = 0
        limiter.restore_original_limits()


def single_threaded(fn: T) -> T:
    """Decorator: run ``fn`` inside :func:`blas_single_thread`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with blas_single_thread():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
