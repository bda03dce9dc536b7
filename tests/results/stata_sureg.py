"""Parse Stata 13 ``sureg`` output (``stata_sureg/stata-sur-results.txt``) into numbers.

Provenance of the parsed file: see ``stata_sureg/README.md`` (Stata 13 ``sureg`` as published in
the linearmodels repository, ``linearmodels/tests/system/results/`` at commit 2ce5503d20; the
text is ``estout`` output, stored unchanged). This module only reads it; it computes nothing.

The file holds nine blocks, each introduced by a line ``#################!NAME!####...``:
``{basic,common,missing}-{base,ss,constrained}``. A block has, in this order:

* ``b/t/p``: for each equation a line with the response name and nothing else, then for each
  coefficient a line ``name<TAB>estimate`` followed by two lines ``<TAB>t-or-z`` and
  ``<TAB>p-value``. ``_cons`` is the constant and comes last in each equation.
* per-equation statistics ``chi2_i``, ``F_i``, ``p_i``, ``df_mi``, ``mss_i``, ``r2_i``,
  ``rss_i`` (i = 1, 2, 3; a statistic Stata did not compute is printed empty: ``F`` in the
  large-sample blocks, ``chi2`` in the ``small`` blocks).
* ``*** Variance ***``: e(V), labels ``equation:coefficient`` in the order of ``b/t/p``.
* ``*** Sigma ***``: e(Sigma).

Numbers are printed with about 11 significant digits (Stata's ``%12.0g``-like display inside
``estout``), fewer for small numbers in exponent notation (e.g. ``6.665705e-06``); Stata prints
p-values below about 1e-16 as ``0``. Comparisons must allow for that rounding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

DIR = Path(__file__).resolve().parent / "stata_sureg"
RESULTS_FILE = DIR / "stata-sur-results.txt"
DATA_FILE = DIR / "simulated-sur.csv"
#: SHA-256 of the stored files (as copied; also listed in ``stata_sureg/README.md``).
SHA256 = {
    "stata-sur-results.txt": "f4482dc1d2263fe64281efb1f53c99baf95278906b208fd8ace9f1ef4e9883ae",
    "simulated-sur.csv": "493fe9ad2b5c36368be7588a29b6fda318ca8b4d06de5b79d3c09891945f92b0",
}

SYSTEMS = ("basic", "common", "missing")
VARIANTS = ("base", "ss", "constrained")
BLOCK_NAMES = tuple(f"{s}-{v}" for s in SYSTEMS for v in VARIANTS)
#: Per-equation statistics, in Stata's order (``df_m`` is printed ``df_m1``, the rest ``x_1``).
STAT_NAMES = ("chi2", "F", "p", "df_m", "mss", "r2", "rss")
CONSTANT = "_cons"

_BLOCK_HEADER = re.compile(r"^#+!(?P<name>[^!]+)!#+$")
_STAT = re.compile(r"^(?P<stat>chi2|F|p|df_m|mss|r2|rss)_?(?P<eq>\d+)$")
_VARIANCE = "*********** Variance ****************"
_SIGMA = "*********** Sigma ****************"


@dataclass(frozen=True)
class SuregBlock:
    """One block of Stata output, labels exactly as Stata printed them.

    Attributes
    ----------
    name : str
        Block name, e.g. ``"common-base"``.
    equations : tuple of str
        Response names in Stata's order, e.g. ``("mod_1_y_0", "mod_1_y_1", "mod_1_y_2")``.
    coef_names : dict
        Equation -> coefficient names in Stata's order (``_cons`` last).
    params : DataFrame
        Index ``(equation, coefficient)`` in Stata's order; columns ``b`` (estimate), ``t``
        (t or z statistic) and ``p`` (two-sided p-value).
    stats : DataFrame
        Index: equations; columns :data:`STAT_NAMES`; NaN where Stata printed nothing.
    cov : DataFrame
        e(V); index and columns ``"equation:coefficient"``.
    sigma : DataFrame
        e(Sigma); index and columns the equations.
    rounding : dict of DataFrame
        ``"params"``, ``"stats"``, ``"cov"``, ``"sigma"``: for every number above, half a unit
        in the last digit Stata printed (the largest error printing can have added), 0 for
        numbers printed as integers (``df_m``, and p-values printed as ``0``), NaN where
        nothing was printed.
    """

    name: str
    equations: tuple[str, ...]
    coef_names: dict[str, tuple[str, ...]]
    params: pd.DataFrame
    stats: pd.DataFrame
    cov: pd.DataFrame
    sigma: pd.DataFrame
    rounding: dict[str, pd.DataFrame]

    @property
    def cov_labels(self) -> list[str]:
        """``"equation:coefficient"`` in the order of :attr:`params`."""
        return [f"{eq}:{c}" for eq, c in self.params.index]


_NUMBER = re.compile(r"^-?(?P<int>\d*)(?:\.(?P<dec>\d*))?(?:e(?P<exp>[-+]\d+))?$")


def _number(text: str) -> tuple[float, float]:
    """A Stata-printed number and half a unit in its last printed digit.

    Empty or ``.`` (Stata's missing value) is NaN; a number printed without a decimal point
    or exponent (``0``, ``3``) is taken as exact.
    """
    text = text.strip()
    if text in ("", "."):
        return float("nan"), float("nan")
    m = _NUMBER.match(text)
    if m is None:
        raise ValueError(f"not a number: {text!r}")
    if m.group("dec") is None and m.group("exp") is None:
        return float(text), 0.0
    exp = int(m.group("exp") or 0) - len(m.group("dec") or "")
    return float(text), 0.5 * 10.0**exp


def _split_blocks(lines: list[str]) -> dict[str, list[str]]:
    blocks: dict[str, list[str]] = {}
    current = None
    for line in lines:
        m = _BLOCK_HEADER.match(line.strip())
        if m:
            current = m.group("name")
            if current in blocks:
                raise ValueError(f"block {current!r} appears twice")
            blocks[current] = []
        elif current is not None:
            blocks[current].append(line)
    return blocks


Cells = list[tuple[float, float]]  # (value, rounding) pairs


def _frames(index, columns, cells: list[Cells]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Values and their rounding as two DataFrames of the same shape."""
    arr = np.array(cells, dtype=float).reshape(len(index), len(columns), 2)
    return (
        pd.DataFrame(arr[..., 0], index=index, columns=columns),
        pd.DataFrame(arr[..., 1], index=index, columns=columns),
    )


def _parse_coefficients(lines: list[str]) -> tuple[dict[str, list[tuple[str, Cells]]], int]:
    """The ``b/t/p`` section: equation -> [(coef, cells of b, t, p)]; and the next line."""
    start = next(i for i, line in enumerate(lines) if line.strip() == "b/t/p") + 1
    eqs: dict[str, list[tuple[str, Cells]]] = {}
    current = None
    i = start
    while i < len(lines) and not _STAT.match(lines[i].split("\t", 1)[0]):
        label, _, value = lines[i].partition("\t")
        if not label:
            raise ValueError(f"unexpected continuation line {lines[i]!r}")
        if value.strip() == "":  # an equation header
            current = label
            eqs[current] = []
            i += 1
            continue
        if current is None:
            raise ValueError(f"coefficient {label!r} before any equation")
        t_line, p_line = lines[i + 1], lines[i + 2]
        if not (t_line.startswith("\t") and p_line.startswith("\t")):
            raise ValueError(f"coefficient {label!r}: expected t and p lines")
        eqs[current].append((label, [_number(value), _number(t_line), _number(p_line)]))
        i += 3
    return eqs, i


def _parse_stats(lines: list[str], start: int, equations: list[str]):
    """The per-equation statistics: (values, rounding, next line)."""
    cells = {(eq, st): (np.nan, np.nan) for eq in equations for st in STAT_NAMES}
    i = start
    while lines[i].strip() != _VARIANCE:
        label, _, value = lines[i].partition("\t")
        m = _STAT.match(label)
        if m is None:
            raise ValueError(f"unexpected line in the statistics: {lines[i]!r}")
        cells[equations[int(m.group("eq")) - 1], m.group("stat")] = _number(value)
        i += 1
    grid = [[cells[eq, st] for st in STAT_NAMES] for eq in equations]
    return (*_frames(equations, list(STAT_NAMES), grid), i + 1)


def _parse_matrix(lines: list[str], start: int, title: str, row_prefix: bool):
    """A labelled matrix: a ``<TAB>title`` line, a header of column labels, then rows.

    With ``row_prefix`` the rows are grouped under equation lines (a label and empty cells)
    and a row's full label is ``equation:coefficient``, as in the column header. Returns
    (values, rounding, next line).
    """
    if lines[start].strip().split("\t")[0] != title:
        raise ValueError(f"expected the {title} matrix, got {lines[start]!r}")
    columns = lines[start + 1].strip("\n").split("\t")[1:]
    rows, labels = [], []
    group = None
    i = start + 2
    while i < len(lines) and lines[i].strip() and not lines[i].startswith("*"):
        label, *values = lines[i].rstrip("\n").split("\t")
        if all(v.strip() == "" for v in values):
            group = label
        else:
            labels.append(f"{group}:{label}" if row_prefix else label)
            rows.append([_number(v) for v in values])
        i += 1
    if labels != columns:
        raise ValueError(f"{title}: row labels {labels} differ from column labels {columns}")
    return (*_frames(labels, columns, rows), i)


def parse_block(name: str, lines: list[str]) -> SuregBlock:
    """Parse the lines of one block (without its ``#...!NAME!...#`` header)."""
    eqs, i = _parse_coefficients(lines)
    equations = list(eqs)
    index = pd.MultiIndex.from_tuples(
        [(eq, c) for eq in equations for c, _ in eqs[eq]], names=["equation", "coef"]
    )
    params, params_r = _frames(index, ["b", "t", "p"], [v for eq in equations for _, v in eqs[eq]])
    stats, stats_r, i = _parse_stats(lines, i, equations)
    cov, cov_r, i = _parse_matrix(lines, i, "V", row_prefix=True)
    if lines[i].strip() != _SIGMA:
        raise ValueError(f"{name}: expected the Sigma section, got {lines[i]!r}")
    sigma, sigma_r, _ = _parse_matrix(lines, i + 1, "Sigma", row_prefix=False)
    block = SuregBlock(
        name=name,
        equations=tuple(equations),
        coef_names={eq: tuple(c for c, _ in eqs[eq]) for eq in equations},
        params=params,
        stats=stats,
        cov=cov,
        sigma=sigma,
        rounding={"params": params_r, "stats": stats_r, "cov": cov_r, "sigma": sigma_r},
    )
    if list(cov.index) != block.cov_labels:
        raise ValueError(f"{name}: e(V) labels are not in the order of b/t/p")
    if list(sigma.index) != equations:
        raise ValueError(f"{name}: e(Sigma) labels {list(sigma.index)} are not the equations")
    return block


def load_blocks(path: Path = RESULTS_FILE) -> dict[str, SuregBlock]:
    """All blocks of the Stata output, by name, in file order."""
    lines = Path(path).read_text().splitlines()
    return {name: parse_block(name, body) for name, body in _split_blocks(lines).items()}


def load_data(path: Path = DATA_FILE) -> pd.DataFrame:
    """The simulated data (200 rows; ``mod_2_*`` has missing values, read as NaN)."""
    return pd.read_csv(path)
