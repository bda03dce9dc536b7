"""Multiple starts: time, sweeps and llf with ``n_starts`` = 1, "auto" and 10, next to alsgls.

On a strong-factor case (K=1000), a weak-factor case (K=500) and real data (Munnell
ranks 1 and 2, Harman74 at 5 factors, Grunfeld ranks 1 and 2); see
``surbench/multistartbench.py`` for the cases and the protocol.

Usage::

    python benchmarks/multistart.py [--quick] [--repeat 3] [--alsgls-python PATH]
        [--output-dir DIR]
"""

from __future__ import annotations

import argparse
import sys


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="small simulated cases and Grunfeld rank 1: for the test suite")
    ap.add_argument("--repeat", type=int, help="timed runs per configuration (minimum kept)")
    ap.add_argument("--alsgls-python", help="interpreter with alsgls, for the side-by-side")
    ap.add_argument("--output-dir", help="write multistart.md and multistart.json here")
    ap.add_argument("--alsgls-child", help=argparse.SUPPRESS)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.alsgls_child:
        from surbench.multistartbench import alsgls_child

        return alsgls_child(args.alsgls_child)
    from surbench.multistartbench import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
