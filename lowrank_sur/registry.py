"""Name -> implementation registries: fitters (``method=``) and covariances (``cov_type=``).

Each fitter module registers itself in :data:`FITTERS` (through
:func:`lowrank_sur.fitters.registry.register_fitter`) and each covariance estimator
in :data:`COV_TYPES` (through :func:`lowrank_sur.coefcov.registry.register_cov_type`);
the options, the model and the results look them up here. This module imports
nothing from the package, so anything may import it.
"""

from __future__ import annotations

__all__ = ["Registry", "FITTERS", "COV_TYPES"]


class Registry:
    """Case-insensitive registry of named entries, with aliases.

    Parameters
    ----------
    argument : str
        The keyword argument whose values it holds (for error messages).
    """

    def __init__(self, argument: str) -> None:
        self.argument = argument
        self._entries: dict[str, object] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, entry, aliases: tuple[str, ...] = ()) -> None:
        """Add ``entry`` under ``name`` (and ``aliases``); a name may be registered once."""
        keys = [k.lower() for k in (name, *aliases)]
        taken = [k for k in keys if k in self._aliases]
        if taken:
            raise ValueError(f"{self.argument} {taken[0]!r} is already registered")
        self._entries[name] = entry
        for k in keys:
            self._aliases[k] = name

    def canonical(self, name) -> str:
        """The registered name for ``name`` or one of its aliases; ValueError otherwise."""
        if not isinstance(name, str) or name.lower() not in self._aliases:
            raise ValueError(f"{self.argument} must be one of {self.names()}, got {name!r}")
        return self._aliases[name.lower()]

    def get(self, name):
        """The entry registered as ``name`` (or an alias)."""
        return self._entries[self.canonical(name)]

    def names(self) -> tuple[str, ...]:
        """Registered names, in registration order."""
        return tuple(self._entries)


#: Fitters, keyed by ``method``.
FITTERS = Registry("method")

#: Coefficient-covariance estimators, keyed by ``cov_type``.
COV_TYPES = Registry("cov_type")
