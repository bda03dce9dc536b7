"""Default BLAS threads against one BLAS thread: fits, standard errors and a sweep's bound.

Side by side in one run, each measurement in a fresh subprocess, the two configurations
alternating: no BLAS thread variable set (what a user who sets nothing gets) and
``OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=MKL_NUM_THREADS=1``. Measured:

* ``fit_arrays`` at K in {200, 1000, 5000} (N=300, p=3, k=4);
* all standard errors at K=1000;
* one ALS sweep at K=5000 against the one-pass bandwidth bound (the bytes of the
  regressors and responses over the read bandwidth measured in the same child);
* with ``--alsgls-python``, the weak-factor case (K=500, N=300, eigenvalues of
  ``F' D^-1 F`` about 1, ``tol=1e-14``) against alsgls at the same tolerance.

``--baseline DIR`` adds the same columns for the ``lowrank_sur`` found in DIR (for
example ``git archive <commit> lowrank_sur | tar -x -C DIR``), so that before and after
are measured in one run. See ``surbench/threadbench.py`` for the protocol.

Usage::

    python benchmarks/default_threads.py [--quick] [--rounds 3] [--repeat 3]
        [--baseline DIR] [--alsgls-python PATH] [--output-dir DIR] [--cases sweep,bse]
"""

from __future__ import annotations

import argparse
import sys


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes (N=100, K in {50, 100}), one round: for the test suite")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    ap.add_argument("--repeat", type=int, help="timed runs per child, minimum kept (default 3)")
    ap.add_argument("--baseline", help="directory holding another lowrank_sur to compare")
    ap.add_argument("--alsgls-python", help="interpreter with alsgls for the weak-factor case")
    ap.add_argument("--output-dir", help="write default_threads.md and .json here")
    ap.add_argument("--render", metavar="JSON", help="only print the tables of an earlier run")
    ap.add_argument("--cases", help="only these kinds, comma-separated (fit,bse,sweep,bic)")
    ap.add_argument("--child-timeout", type=float, default=3600.0,
                    help="seconds before a child is killed and recorded as a timeout")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.child:
        from surbench.threadbench import child_main

        return child_main(args.child)
    from surbench.threadbench import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
