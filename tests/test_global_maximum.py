"""The package's maximum against a brute-force reference on many small random systems.

Issue "Trustworthy maxima", item "Done when": on at least 200 random small systems whose
likelihood is bounded (including Heywood-prone ones) a generic optimizer from many random
starts on the exact dense likelihood, with the same floor (tests/bruteforce.py, which does
not use the package), finds no higher llf than ``fit_arrays``; and the package warns on
every system whose likelihood is unbounded.

Tolerance: the package passes when ``llf_package >= llf_ref - (1e-6 |llf_ref| + 1e-6)``,
with ``llf_ref`` the higher of the brute force's maximum and of what the same optimizer
reaches started at the package's point (:func:`bruteforce.climb`: a fit that says it
converged must be at a local maximum of the dense likelihood).

Cost: the brute force runs once per seed (cached; shared by ALS and EM) with one BLAS
thread; each batch of 20 seeds is split in two tests (alternate seeds) so that pytest-xdist
spreads the load evenly.

Systems (seeded, deterministic; 20 per batch, the same kind sequence in every batch):
K in 2..6, N in 8..40, p_j in 1..3 (each with a constant), rank 1..min(K-1, 3).
Kinds: generic factor data; identical regressors; Heywood-prone (an equation almost
entirely explained by the factors); near-duplicate responses; few observations (at and
just above the boundedness limit); a response that is the sum of two others at rank 1
(bounded: a dependence among three equations needs rank >= 2 to be degenerate); and
unbounded ones (too few observations, duplicate responses, a sum of two responses at
rank >= 2). Bounded or not is decided by the exact algebraic condition
(:func:`bruteforce.degenerate_sets`), cross-checked against the generic rank condition of
math.md and, on a subset, against the numerical check (:func:`bruteforce.is_bounded_bruteforce`).
"""

from __future__ import annotations

import functools
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import lowrank_sur.exceptions
from lowrank_sur import fit_arrays

sys.path.insert(0, str(Path(__file__).parent))

import bruteforce as bf  # noqa: E402

D_FLOOR = 1e-6
BATCH = 20
N_BATCHES = 12  # default run: seeds 0 .. 239
N_SLOW_BATCHES = 12  # extended run (-m slow): seeds 240 .. 479
N_STARTS = 20  # brute-force random starts per system (default run)
N_STARTS_SLOW = 40
NAMES = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")

# The kind of system at position seed % BATCH.
KINDS = (
    "generic", "generic", "generic", "generic", "generic", "generic", "generic", "generic",
    "shared", "heywood", "heywood", "heywood", "neardup", "neardup",
    "fewobs", "fewobs", "sum_rank1",
    "unb_fewobs", "unb_duplicate", "unb_sum",
)
assert len(KINDS) == BATCH

# (seed, method) where the package is known to stop below the brute-force maximum (with the
# brute force of the run that holds the seed: N_STARTS starts for the default seeds,
# N_STARTS_SLOW for the extended ones): checked in test_known_below_bruteforce (strict xfail),
# left out of the batch tests. Value: what was measured.
# History: 31 default-run cases before multiple starts, 3 after them (54, 114, 175); the
# standardized principal-component start and the search over the equations on the floor
# (fitters/multistart.py) fixed 54 and 114 and the 33 extended-run cases measured before
# multiple starts, except 375. 175 and 375 (fewobs: N=8 K=4 k=2, N=12 K=5 k=3) had their
# best maximum at a set of k equations on the floor whose coefficients are far from OLS
# (1.9-2.6 residual standard deviations: their residuals, the factors there, nearly
# explain another equation's response); with D on the floor the alternating fitters cannot
# move those coefficients, so no start from OLS reached it. The "moved-floor" starts
# (starts.floor_set_coefficients) fixed both; on 175 the package now ends 18 llf units
# above the 20-start brute force (test_moved_floor_maximum).
KNOWN_BELOW: dict[tuple[int, str], str] = {}


def tolerance(llf: float) -> float:
    return 1e-6 * abs(llf) + 1e-6


# ------------------------------------------------------------------------ the systems


@dataclass
class System:
    seed: int
    kind: str
    Xs: list
    Y: np.ndarray
    rank: int

    @property
    def nobs(self) -> int:
        return self.Y.shape[0]

    @property
    def k_eqs(self) -> int:
        return self.Y.shape[1]

    def describe(self) -> str:
        p = [X.shape[1] for X in self.Xs]
        return (f"seed={self.seed} kind={self.kind} N={self.nobs} K={self.k_eqs} p={p} "
                f"k={self.rank}")


def _regressors(rng, N, p, shared_X=None):
    if shared_X is not None:
        return shared_X.copy()
    cols = [np.ones(N)]
    for _ in range(p - 1):
        kind = rng.integers(3)
        if kind == 0:
            cols.append(rng.normal(size=N))
        elif kind == 1:
            cols.append(np.arange(N) / N + 0.3 * rng.normal(size=N))  # a trend
        else:
            cols.append(rng.exponential(size=N))
    return np.column_stack(cols)


def _r_max(p, k):
    """Generic max over sets of k+1 equations of rank(X_S) (constant shared, counted once)."""
    return 1 + sum(sorted((q - 1 for q in p), reverse=True)[: k + 1])


@functools.cache
def make_system(seed: int) -> System:
    """The system of a seed (cached: do not modify it)."""
    kind = KINDS[seed % BATCH]
    rng = np.random.default_rng([20240917, seed])
    # sizes
    if kind in ("fewobs", "unb_fewobs"):
        k = int(rng.integers(2, 4)) if kind == "unb_fewobs" else int(rng.integers(1, 4))
        K = int(rng.integers(k + 1, 7))
        p = [3] * K if kind == "unb_fewobs" else [int(rng.integers(2, 4)) for _ in range(K)]
        n_crit = _r_max(p, k) + k + 1  # the smallest N with a bounded likelihood (generic)
        if kind == "fewobs":
            N = max(8, n_crit + int(rng.integers(0, 3)))
        else:
            N = int(rng.integers(max(8, n_crit - 3), n_crit))
    else:
        K = int(rng.integers(3 if kind in ("sum_rank1", "unb_sum") else 2, 7))
        if kind == "sum_rank1":
            k = 1
        elif kind == "unb_sum":
            k = int(rng.integers(2, min(K - 1, 3) + 1))
        else:
            k = int(rng.integers(1, min(K - 1, 3) + 1))
        p = [int(rng.integers(1, 4)) for _ in range(K)]
        if kind == "shared":
            p = [int(rng.integers(1, 4))] * K
        # enough observations for a bounded likelihood (generic rank condition)
        n_crit = (p[0] if kind == "shared" else _r_max(p, k)) + k + 1
        N = int(rng.integers(max(8, n_crit), 41))
    shared_X = _regressors(rng, N, p[0]) if kind == "shared" else None
    Xs = [_regressors(rng, N, p[j], shared_X) for j in range(K)]
    # factor data
    Z = rng.normal(size=(N, k))
    F = rng.normal(scale=rng.uniform(0.3, 2.0), size=(K, k))
    d = rng.uniform(0.2, 1.5, size=K)
    if kind == "heywood":
        # one or two (at most k: k+1 exact ones would be degenerate) equations almost
        # entirely explained by the factors
        for j in rng.choice(K, size=min(k, int(rng.integers(1, 3))), replace=False):
            F[j] *= 2.0
            d[j] = float(rng.choice([0.0, 1e-4, 1e-2])) * np.sum(F[j] ** 2)
    E = rng.normal(size=(N, K)) * np.sqrt(d)
    Y = np.column_stack([X @ rng.normal(size=X.shape[1]) for X in Xs]) + Z @ F.T + E
    if kind == "neardup":
        Y[:, 1] = (rng.uniform(0.5, 2.0) * Y[:, 0] + Xs[1] @ rng.normal(size=p[1])
                   + rng.uniform(0.03, 0.3) * np.std(Y[:, 0]) * rng.normal(size=N))
    elif kind == "unb_duplicate":
        Y[:, 1] = rng.uniform(0.5, 2.0) * Y[:, 0] + Xs[1] @ rng.normal(size=p[1])
    elif kind in ("sum_rank1", "unb_sum"):
        Y[:, 2] = Y[:, 0] + Y[:, 1] + Xs[2][:, 0] * rng.normal()
    # equations on very different scales (the fit is scale-equivariant)
    Y = Y * 10.0 ** rng.uniform(-2, 2, size=K)
    return System(seed, kind, Xs, Y, k)


def unbounded_sets(s: System):
    """The degenerate sets of equations (empty: the likelihood is bounded)."""
    return _degenerate_sets(s.seed)


@functools.cache
def _degenerate_sets(seed: int):
    s = make_system(seed)
    return bf.degenerate_sets(s.Xs, s.Y, s.rank)


def batch_seeds(b: int) -> range:
    return range(b * BATCH, (b + 1) * BATCH)


#: Each batch's test runs in two halves (alternate seeds: each half has every kind).
HALVES = (0, 1)


def half_seeds(b: int, half: int) -> range:
    return batch_seeds(b)[half::2]


# ------------------------------------------------------------------ fitting and comparing


def package_fit(s: System, method: str = "als", **options):
    """``fit_arrays`` with every warning recorded."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = fit_arrays(s.Xs, s.Y, s.rank, method=method, d_floor=D_FLOOR,
                         eq_names=list(NAMES[: s.k_eqs]), **options)
    return rec, caught


def unbounded_warnings(caught):
    cls = lowrank_sur.exceptions.UnboundedLikelihoodWarning
    return [w for w in caught if issubclass(w.category, cls)]


@dataclass
class Comparison:
    system: System
    method: str
    llf_package: float
    llf_brute: float
    converged: bool
    heywood_package: tuple
    heywood_brute: tuple
    brute_seconds: float
    hits: int
    llf_climb: float  # L-BFGS-B on the dense likelihood from the package's point

    @property
    def gap(self) -> float:
        """Best of brute force and climb minus package (positive: the package is below)."""
        return max(self.llf_brute, self.llf_climb) - self.llf_package

    @property
    def below(self) -> bool:
        return self.gap > tolerance(max(self.llf_brute, self.llf_climb))

    def describe(self) -> str:
        return (f"{self.system.describe()} method={self.method} gap={self.gap:.3e} "
                f"llf_pkg={self.llf_package:.8f} llf_bf={self.llf_brute:.8f} "
                f"llf_climb={self.llf_climb:.8f} "
                f"converged={self.converged} heywood_pkg={list(self.heywood_package)} "
                f"heywood_bf={list(self.heywood_brute)} bf_hits={self.hits}")


@functools.cache
def brute_reference(seed: int, n_starts: int) -> bf.BruteResult:
    s = make_system(seed)
    return bf.maximize(s.Xs, s.Y, s.rank, d_floor=D_FLOOR, n_starts=n_starts, seed=seed)


def compare(seed: int, method: str, n_starts: int) -> Comparison:
    s = make_system(seed)
    ref = brute_reference(seed, n_starts)
    rec, caught = package_fit(s, method)
    # the record's llf is the likelihood of the record's own parameters
    llf_check = bf.dense_loglike(s.Xs, s.Y, rec.coefs, rec.F, rec.D)
    assert abs(llf_check - rec.llf) <= 1e-8 * (1.0 + abs(rec.llf)), s.describe()
    # the same floor
    np.testing.assert_allclose(rec.d_floor, ref.floor, rtol=1e-8)
    assert not unbounded_warnings(caught), (s.describe(), "bounded, but warned")
    assert rec.likelihood_bounded is True, s.describe()
    assert rec.degenerate is False, s.describe()
    # a local maximum of the dense likelihood: the generic optimizer from it stays
    climbed = bf.climb(s.Xs, s.Y, s.rank, rec.coefs, rec.F, rec.D, d_floor=D_FLOOR)
    return Comparison(s, method, rec.llf, ref.llf, bool(rec.converged),
                      tuple(int(j) for j in rec.heywood), tuple(int(j) for j in ref.heywood),
                      ref.seconds, ref.hits, climbed)


def methods_for(seed: int):
    """ALS (the default) on every system, the EM reference on every fourth."""
    return ("als", "em") if seed % 4 == 0 else ("als",)


def run_batch(seeds: range, n_starts: int) -> None:
    t0 = time.perf_counter()
    n_bounded = n_unbounded = n_heywood = 0
    comparisons, known = [], []
    for seed in seeds:
        s = make_system(seed)
        if unbounded_sets(s):
            n_unbounded += 1
            continue
        n_bounded += 1
        for method in methods_for(seed):
            if (seed, method) in KNOWN_BELOW:
                known.append((seed, method))  # checked in test_known_below_bruteforce
                continue
            comparisons.append(compare(seed, method, n_starts))
        n_heywood += bool(brute_reference(seed, n_starts).heywood.size)
    gaps = [c.gap for c in comparisons]
    print(f"\nseeds {seeds.start}..{seeds.stop - 1} step {seeds.step}: bounded {n_bounded} "
          f"(Heywood at the brute-force maximum: {n_heywood}), unbounded {n_unbounded}; "
          f"{len(comparisons)} fits compared, max(llf_ref - llf_pkg) = {max(gaps):.3e}; "
          f"known below (xfail): {known}; {time.perf_counter() - t0:.1f} s")
    bad = [c.describe() for c in comparisons if c.below]
    assert not bad, "package below brute force:\n" + "\n".join(bad)


# ------------------------------------------------------------------------------ the tests


def test_reference_rank0_is_ols():
    """Rank 0: the MLE is OLS per equation with D = SSR / N (the brute force must find it)."""
    s = make_system(3)
    ref = bf.maximize(s.Xs, s.Y, 0, d_floor=D_FLOOR, n_starts=6, seed=0)
    N = s.nobs
    ssr = []
    for j, X in enumerate(s.Xs):
        b, *_ = np.linalg.lstsq(X, s.Y[:, j], rcond=None)
        np.testing.assert_allclose(ref.coefs[j], b, rtol=1e-6, atol=1e-8 * np.abs(b).max())
        ssr.append(np.sum((s.Y[:, j] - X @ b) ** 2))
    D = np.array(ssr) / N
    np.testing.assert_allclose(ref.D, D, rtol=1e-7)
    llf = -0.5 * N * np.sum(np.log(2 * np.pi) + np.log(D) + 1.0)
    assert abs(ref.llf - llf) <= 1e-9 * abs(llf)


@pytest.mark.parametrize("K", [2, 3])
def test_reference_full_rank_is_iterated_sur(K):
    """Rank K-1 leaves Sigma unrestricted: the MLE is iterated SUR (linearmodels)."""
    from linearmodels.system import SUR

    rng = np.random.default_rng(K)
    N = 25
    Xs = [np.column_stack([np.ones(N), rng.normal(size=(N, 2))]) for _ in range(K)]
    C = rng.normal(size=(K, K))
    Y = (np.column_stack([X @ rng.normal(size=3) for X in Xs])
         + rng.normal(size=(N, K)) @ C.T)
    eqs = {f"e{j}": {"dependent": Y[:, j], "exog": Xs[j]} for j in range(K)}
    res = SUR(eqs).fit(method="gls", iterate=True, tol=1e-14, iter_limit=10000,
                       cov_type="unadjusted")
    params = np.asarray(res.params)
    coefs = np.split(params, np.cumsum([X.shape[1] for X in Xs])[:-1])
    R = Y - np.column_stack([X @ b for X, b in zip(Xs, coefs)])
    S = R.T @ R / N
    llf_igls = -0.5 * N * (K * np.log(2 * np.pi) + np.linalg.slogdet(S)[1] + K)
    ref = bf.maximize(Xs, Y, K - 1, d_floor=D_FLOOR, n_starts=10, seed=0)
    assert abs(ref.llf - llf_igls) <= 1e-8 * abs(llf_igls)
    for b_ref, b in zip(ref.coefs, coefs):
        np.testing.assert_allclose(b_ref, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ref.F @ ref.F.T + np.diag(ref.D), S, rtol=1e-5, atol=1e-9)


def test_reference_gradient():
    """The analytic gradient of the brute-force objective against central differences."""
    s = make_system(5)
    prob = bf.StandardizedProblem(s.Xs, s.Y, s.rank)
    rng = np.random.default_rng(0)
    x = rng.normal(scale=0.3, size=prob.size)
    _, g = prob.objective(x)
    h = 1e-6
    gn = np.array([(prob.objective(x + h * e)[0] - prob.objective(x - h * e)[0]) / (2 * h)
                   for e in np.eye(prob.size)])
    np.testing.assert_allclose(g, gn, rtol=1e-5, atol=1e-7)
    # the packed parameters give the dense llf on the original scale
    coefs, F, D = prob.original(x)
    assert abs(prob.llf(x) - bf.dense_loglike(s.Xs, s.Y, coefs, F, D)) < 1e-8 * abs(prob.llf(x))


def test_composition():
    """At least 200 bounded systems (Heywood-prone among them) and the unbounded ones."""
    bounded, unbounded, by_kind = 0, 0, {}
    for seed in range(N_BATCHES * BATCH):
        s = make_system(seed)
        sets = unbounded_sets(s)
        generic = bf.generic_unbounded(s.Xs, s.rank, s.nobs)
        if s.kind.startswith("unb_"):
            assert sets, s.describe()
        else:
            assert not sets, s.describe()
        if s.kind in ("generic", "shared", "heywood", "fewobs", "unb_fewobs"):
            # continuous data: the exact condition is the generic rank condition
            assert bool(sets) == bool(generic), s.describe()
        bounded += not sets
        unbounded += bool(sets)
        by_kind[s.kind] = by_kind.get(s.kind, 0) + 1
        assert 2 <= s.k_eqs <= 6 and 8 <= s.nobs <= 40 and 1 <= s.rank <= min(s.k_eqs - 1, 3)
        assert all(1 <= X.shape[1] <= 3 and np.all(X[:, 0] == 1.0) for X in s.Xs)
    assert bounded >= 200
    assert unbounded >= 30
    heywood_prone = sum(by_kind[kind] for kind in ("heywood", "neardup", "fewobs", "sum_rank1"))
    assert heywood_prone >= 80


# the numerical boundedness check on a Heywood-prone system, the sum of two responses at
# rank 1 (bounded) and one system of each unbounded kind; all systems with -m slow
BOUNDEDNESS_SEEDS = (9, 16, 17, 18, 19)


def check_boundedness(seed: int) -> None:
    s = make_system(seed)
    chk = bf.is_bounded_bruteforce(s.Xs, s.Y, s.rank, n_starts=N_STARTS, seed=seed)
    assert chk.bounded == (not unbounded_sets(s)), (s.describe(), chk)


@pytest.mark.parametrize("seed", BOUNDEDNESS_SEEDS)
def test_numerical_boundedness_agrees(seed):
    """Maximizing at floors 1e-4, 1e-6, 1e-8 tells bounded from unbounded as the algebra does."""
    check_boundedness(seed)


@pytest.mark.slow
@pytest.mark.parametrize("batch", range(N_BATCHES))
def test_numerical_boundedness_agrees_all(batch):
    for seed in batch_seeds(batch):
        check_boundedness(seed)


@pytest.mark.parametrize("half", HALVES)
@pytest.mark.parametrize("batch", range(N_BATCHES))
def test_no_higher_maximum(batch, half):
    run_batch(half_seeds(batch, half), N_STARTS)


@pytest.mark.slow
@pytest.mark.parametrize("half", HALVES)
@pytest.mark.parametrize("batch", range(N_BATCHES, N_BATCHES + N_SLOW_BATCHES))
def test_no_higher_maximum_extended(batch, half):
    run_batch(half_seeds(batch, half), N_STARTS_SLOW)


@pytest.mark.parametrize(
    ("seed", "method"),
    [pytest.param(seed, method, id=f"{seed}-{method}", marks=[pytest.mark.xfail(
        strict=True, reason=f"package below brute force: issue Trustworthy maxima "
                            f"({KNOWN_BELOW[seed, method]})")]
        + ([pytest.mark.slow] if seed >= N_BATCHES * BATCH else []))
     for seed, method in sorted(KNOWN_BELOW)],
)
def test_known_below_bruteforce(seed, method):
    """The cases where the package stops below the brute force (strict xfail: fix, then drop)."""
    n_starts = N_STARTS if seed < N_BATCHES * BATCH else N_STARTS_SLOW
    c = compare(seed, method, n_starts)
    assert not c.below, c.describe()


@pytest.mark.parametrize("half", HALVES)
@pytest.mark.parametrize("batch", range(N_BATCHES))
def test_warns_when_unbounded(batch, half):
    systems = [make_system(seed) for seed in half_seeds(batch, half)]
    systems = [(s, unbounded_sets(s)) for s in systems]
    systems = [(s, sets) for s, sets in systems if sets]
    assert systems
    for s, sets in systems:
        # The warning comes before the fit; maxiter=30 keeps short the fits that crawl
        # towards the floor (up to 1000 sweeps and ~1.5 s each with the default).
        rec, caught = package_fit(s, maxiter=30)
        found = unbounded_warnings(caught)
        assert found, (s.describe(), "unbounded, but no UnboundedLikelihoodWarning")
        message = " ".join(str(w.message) for w in found)
        involved = {NAMES[j] for T in sets for j in T}
        assert any(name in message for name in involved), (s.describe(), message)
        assert rec.likelihood_bounded is False, s.describe()
        assert isinstance(rec.degenerate, (bool, np.bool_)), s.describe()
        if rec.degenerate:
            assert rec.heywood.size, s.describe()


def test_moved_floor_maximum():
    """Seed 175: the maximum no start from OLS reaches, found by a "moved-floor" start.

    The brute force's 20 random starts end at -16.505 at best; the package ends about 18
    llf units higher, with two equations on the floor. Checked against the brute force:
    L-BFGS-B on the dense likelihood started at the package's point finds nothing
    higher, and at floors 1e-8 and 1e-10 it levels off (a proper Heywood maximum of a
    bounded likelihood, not a degenerate point).
    """
    s = make_system(175)
    rec, _ = package_fit(s)
    ref = brute_reference(175, N_STARTS)
    assert rec.llf > ref.llf + 10.0
    assert rec.starts[0]["label"].startswith("moved-floor")
    assert rec.converged and not rec.degenerate and rec.heywood.size
    prob = bf.StandardizedProblem(s.Xs, s.Y, s.rank)
    x0 = prob.pack_original(rec.coefs, rec.F, rec.D)
    assert abs(prob.llf(x0) - rec.llf) <= 1e-8 * (1 + abs(rec.llf))
    llfs = []
    for floor in (D_FLOOR, 1e-8, 1e-10):
        warm = bf.maximize(s.Xs, s.Y, s.rank, d_floor=floor, n_starts=1, x0s=[x0])
        llfs.append(warm.llf)
    assert llfs[0] <= rec.llf + tolerance(rec.llf)
    assert abs(llfs[2] - llfs[1]) < 1e-3  # levels off (degenerate: +N/2 log 100 = 18.4)


def test_floor_set_coefficients_exact():
    """The moved coefficients: the residuals of S explain y_t as well as the relaxed fit."""
    from lowrank_sur.starts import floor_set_coefficients

    s = make_system(375)
    bases = [np.linalg.qr(X)[0] for X in s.Xs]
    starts = floor_set_coefficients(s.Y, bases, s.rank, n_best=5)
    assert len(starts) == 5 and all(len(S) == s.rank for S, _ in starts)
    for S, fits in starts:
        others = [j for j in range(s.k_eqs) if j not in S]
        # outside S: OLS; inside S: in the column space of the equation's regressors
        for j in range(s.k_eqs):
            np.testing.assert_allclose(bases[j] @ (bases[j].T @ fits[:, j]), fits[:, j],
                                       atol=1e-10 * np.abs(s.Y[:, j]).max())
        for j in others:
            np.testing.assert_allclose(fits[:, j], bases[j] @ (bases[j].T @ s.Y[:, j]))
        RS = s.Y[:, S] - fits[:, S]
        relaxed = np.column_stack([s.Y[:, S]] + [s.Xs[j] for j in S])
        ssr = []
        for t in others:
            M1 = np.column_stack([s.Xs[t], RS])
            M2 = np.column_stack([s.Xs[t], relaxed])
            r1 = s.Y[:, t] - M1 @ np.linalg.lstsq(M1, s.Y[:, t], rcond=None)[0]
            r2 = s.Y[:, t] - M2 @ np.linalg.lstsq(M2, s.Y[:, t], rcond=None)[0]
            ssr.append((r1 @ r1, r2 @ r2, s.Y[:, t] @ s.Y[:, t]))
        # some equation t is explained by R_S as well as by the relaxed regression
        assert any(abs(a - b) <= 1e-8 * yy for a, b, yy in ssr)
