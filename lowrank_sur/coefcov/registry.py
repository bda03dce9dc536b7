"""The coefficient-covariance registry, keyed by ``cov_type``.

The registry itself is :data:`lowrank_sur.registry.COV_TYPES`. An estimator is a class
with the interface of :class:`CoefCovEstimator`, constructed as ``cls(design, Y, record,
**cov_kwds)`` at the end of a fit; the results' ``cov_params``, ``bse``, ``cov_type``
and the summary's "Covariance Type" line read from it. Adding one is a module that
decorates its class with :func:`register_cov_type` and one import line in
``lowrank_sur/coefcov/__init__.py``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import numpy as np

from ..registry import COV_TYPES
from ..threads import single_threaded

__all__ = ["CoefCovEstimator", "register_cov_type", "get_cov_type", "available_cov_types",
           "check_cov_kwds"]


class CoefCovEstimator:
    """Interface of a coefficient-covariance estimator.

    Parameters
    ----------
    design : SURDesign
        The whitened design of the fitted model.
    Y : ndarray, shape (N, K)
        The responses.
    record : FitRecord
        What the fitter found (coefficients, error covariance).
    **cov_kwds
        Options of the estimator (``cov_kwds`` of ``fit``).

    Attributes
    ----------
    name : str
        The canonical ``cov_type``.
    note : str
        One sentence for the summary saying what the standard errors are.
    """

    name: str = ""
    note: str = ""

    def __init__(self, design, Y, record, **cov_kwds) -> None:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def check_options(cls, design, **cov_kwds) -> None:
        """Validate ``cov_kwds`` before the fit (the default accepts what the signature does).

        Parameters
        ----------
        design : SURDesign
            The whitened design of the model.
        **cov_kwds
            Options of the estimator.
        """

    def bse(self) -> np.ndarray:  # pragma: no cover - interface
        """Standard errors of all P coefficients."""
        raise NotImplementedError

    def restricted(self, Rm: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
        """Return ``Rm V Rm'`` (or ``other V Rm'``) for q x P matrices."""
        raise NotImplementedError  # pragma: no cover - interface

    def full(self) -> np.ndarray:  # pragma: no cover - interface
        """The full P x P covariance (small P only)."""
        raise NotImplementedError


#: Methods of an estimator that run with one BLAS thread once it is registered.
_INTERFACE = ("bse", "restricted", "full", "solve")


def register_cov_type(name: str, aliases: tuple[str, ...] = ()):
    """Class decorator registering an estimator under ``name`` and its ``aliases``.

    Its methods ``bse``, ``restricted``, ``full`` and ``solve`` run with one BLAS
    thread (:func:`lowrank_sur.threads.single_threaded`).
    """

    def decorate(cls: type) -> type:
        cls.name = name
        # the interface methods run with one BLAS thread (lowrank_sur.threads)
        for method in _INTERFACE:
            # inherited ones too (a shared base class such as SandwichCovariance is not
            # registered itself); nested single-threaded calls cost nothing
            if method in vars(cls) or any(method in vars(b) for b in cls.__mro__[1:-1]
                                          if b is not CoefCovEstimator):
                setattr(cls, method, single_threaded(getattr(cls, method)))
        COV_TYPES.register(name, cls, aliases)
        return cls

    return decorate


def get_cov_type(cov_type: str) -> type:
    """The estimator class for ``cov_type`` (case-insensitive, aliases accepted)."""
    return COV_TYPES.get(cov_type)


def available_cov_types() -> tuple[str, ...]:
    """Canonical names of the registered covariance types."""
    return COV_TYPES.names()


def check_cov_kwds(estimator: type, cov_kwds) -> dict:
    """``cov_kwds`` as a dict the estimator accepts (its options after design, Y, record).

    Raises
    ------
    TypeError
        When ``cov_kwds`` is not a mapping or names an option the estimator lacks.
    """
    if cov_kwds is None:
        return {}
    if not isinstance(cov_kwds, Mapping):
        raise TypeError(f"cov_kwds must be a dict of options, got {type(cov_kwds).__name__}")
    cov_kwds = dict(cov_kwds)
    options = list(inspect.signature(estimator).parameters.values())[3:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in options):
        return cov_kwds
    accepted = [p.name for p in options if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    unknown = [k for k in cov_kwds if k not in accepted]
    if unknown:
        raise TypeError(
            f"cov_kwds {unknown} are not options of cov_type={estimator.name!r} "
            f"(its options: {accepted or 'none'})"
        )
    return cov_kwds
