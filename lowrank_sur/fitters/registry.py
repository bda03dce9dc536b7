"""The fitter registry: each fitter module registers its name, summary label and function.

The registry itself is :data:`lowrank_sur.registry.FITTERS`. A fitter is a function
``fit(design, Y, rank, options) -> FitRecord`` taking the whitened
:class:`~lowrank_sur.design.SURDesign`, the N x K responses, the number of factors and
the validated :class:`~lowrank_sur.options.FitOptions`. Adding one is a module that
calls :func:`register_fitter` and one import line in
``lowrank_sur/fitters/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..registry import FITTERS
from ..threads import single_threaded

__all__ = ["Fitter", "register_fitter", "get_fitter", "available_methods"]


@dataclass(frozen=True)
class Fitter:
    """A registered fitter.

    Attributes
    ----------
    name : str
        The ``method=`` value that selects it.
    label : str
        How the summary names it (the "Method:" line).
    fit : callable
        ``fit(design, Y, rank, options) -> FitRecord``.
    dense : bool
        Whether it forms K x K (or P x P) arrays, so that callers can warn at large K.
    starts : bool
        Whether :func:`~lowrank_sur.fitters.multistart.fit_with_starts` may try several
        starting points (a maximizer); False for a closed-form procedure (two-step FGLS).
    full : bool
        Whether it fits an unrestricted Sigma (``rank="full"``).
    """

    name: str
    label: str
    fit: Callable
    dense: bool = False
    starts: bool = True
    full: bool = False


def register_fitter(name: str, label: str, *, dense: bool = False, starts: bool = True,
                    full: bool = False):
    """Decorator registering ``fit`` under ``name`` (case-insensitive, unique).

    The registered (and returned) function runs with one BLAS thread
    (:func:`lowrank_sur.threads.single_threaded`): a fit is thousands of small dense
    operations, which a multi-threaded BLAS slows down by orders of magnitude.
    """

    def decorate(fit: Callable) -> Callable:
        fit = single_threaded(fit)
        FITTERS.register(name.lower(), Fitter(name.lower(), label, fit, dense, starts, full))
        return fit

    return decorate


def get_fitter(name: str) -> Fitter:
    """The fitter registered as ``name``."""
    return FITTERS.get(name)


def available_methods() -> tuple[str, ...]:
    """Names of the registered fitters, in registration order."""
    return FITTERS.names()
