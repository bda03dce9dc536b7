"""Shared code of the benchmark scripts ``compare_sur.py`` and ``core_scaling.py``.

Not part of the installed package: the scripts put their own directory on ``sys.path``
(Python does so for ``python benchmarks/<script>.py``), which makes this importable.
The modules the subprocess workers import need only the standard library and NumPy at
import time; ``lowrank_sur``, the peer packages and matplotlib are imported where used.
"""
