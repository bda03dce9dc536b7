"""The grids of ``compare_sur.py``: presets, custom defaults, and the options over them."""

from __future__ import annotations

import argparse

from .methods import DEFAULT_METHODS

PRESETS: dict[str, dict] = {
    "quick": {
        "nobs": 60,
        "ks": [6, 12],
        "n_exog": 2,
        "rank": 2,
        "reps": 1,
        "n_test": 100,
        "methods": list(DEFAULT_METHODS),
        "time_cap": 60.0,
        "jobs": 2,
    },
    "seed": {
        "nobs": 300,
        "ks": [50, 80, 120],
        "n_exog": 3,
        "rank": 3,
        "reps": 6,
        "n_test": 300,
        "methods": [
            "lowrank_sur-als",
            "lowrank_sur-em",
            "lowrank_sur-als-6",
            "lowrank_sur-em-45",
            "linearmodels-gls",
            "linearmodels-igls",
            "statsmodels-gls",
            "alsgls",
        ],
        "time_cap": 600.0,
    },
    "scale": {
        "nobs": 300,
        "ks": [50, 200, 500, 1000, 2000, 5000],
        "n_exog": 3,
        "rank": 4,
        "reps": 1,
        "n_test": 300,
        "methods": list(DEFAULT_METHODS),
        "time_cap": 300.0,
    },
}

#: Settings of a custom grid (no ``--preset``); ``--ks`` is required.
CUSTOM_DEFAULTS: dict = {
    "nobs": 300,
    "n_exog": 3,
    "rank": 3,
    "reps": 1,
    "n_test": 300,
    "methods": list(DEFAULT_METHODS),
    "time_cap": 300.0,
    "jobs": 1,
}


def config_from_args(args: argparse.Namespace) -> dict:
    """The grid: the preset (or the custom defaults) overridden by the options given."""
    cfg = dict(PRESETS[args.preset] if args.preset is not None else CUSTOM_DEFAULTS)
    for key in ("ks", "nobs", "n_exog", "rank", "reps", "n_test", "methods", "time_cap", "jobs"):
        val = getattr(args, key)
        if val is not None:
            cfg[key] = val
    cfg["ks"] = sorted(set(cfg["ks"]))
    cfg.update(preset=args.preset, seed=args.seed, mem_cap_gb=args.mem_cap_gb)
    return cfg
