"""Maximum-likelihood fitters, registered by name (see :mod:`lowrank_sur.fitters.registry`).

``als``
    Block coordinate ascent (:mod:`lowrank_sur.fitters.als`): matrix-free GLS beta
    step, then the factor step. O(N K k) memory; no K x K array.
``em``
    The textbook EM/ECM reference with the dense K x K ``Sigma^{-1}``
    (:mod:`lowrank_sur.fitters.em`). O(K^2 + P^2) memory.

``fiml-als``, ``fiml-em``
    Missing responses by full-information ML (:mod:`lowrank_sur.fitters.fiml`), used
    for ``method="als"`` / ``"em"`` when the design has unobserved cells.
``fgls``
    Feasible GLS (:mod:`lowrank_sur.fitters.fgls`): two-step or iterated, with an
    unrestricted Sigma (``rank="full"``) or the two-step low-rank variant.

The ML fitters reach the same maximum. A new fitter is one module that registers itself
and one import line below.
"""

from . import als, em, fgls, fiml  # noqa: F401  (registry lines: importing registers the fitters)
from .api import fit_arrays, fit_design
from .record import FitRecord
from .registry import Fitter, available_methods, get_fitter, register_fitter

__all__ = [
    "fit_arrays",
    "fit_design",
    "FitRecord",
    "Fitter",
    "available_methods",
    "get_fitter",
    "register_fitter",
]
