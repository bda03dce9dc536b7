"""The distributed data of a fit: the whitened design and the N x K matrices, on the workers.

:class:`DaskDesign` and :class:`DaskMatrix` offer the few operations that the in-memory
ALS sweep applies to the design and to the N x K matrices (responses, residuals), with
the same signatures as :class:`~lowrank_sur.design.SURDesign` and as NumPy arrays, so
that :class:`~lowrank_sur.gls.GLSOperator` (the beta step) and
:class:`~lowrank_sur.factor.FactorProblem` (the factor step's EM map) run on them
unchanged. Every operation is one dask graph:

* per block of equations (``blockwise``), the same per-equation algebra as in memory:
  :class:`~lowrank_sur.design.SURDesign`'s own methods, called on a design that holds
  one block's ``Q`` (:func:`block_design`);
* for the products that sum over equations (``W' Q A``, ``R W``: k x N and N x k),
  a tree reduction over the blocks (``sum(split_every=...)``);
* the small pieces each block needs (its rows of ``A``, ``W``, ``F``: K x p or K x k,
  split on the client; the N x k matrices ``Z``, ``E[z]``, one chunk broadcast).

Nothing of size N x K comes back to the client: results are k x N, N x k, or one row
per equation (K x p, K x k, K).
"""

from __future__ import annotations

import operator
import uuid
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np

from ..design import SURDesign
from ..threads import single_threaded

__all__ = ["DaskDesign", "DaskMatrix", "Traffic", "block_design", "SPLIT_EVERY"]

#: Fan-in of the tree reductions over blocks of equations.
SPLIT_EVERY = 8


@dataclass
class Traffic:
    """Bytes moved between the client and the cluster by the operations of one fit.

    Attributes
    ----------
    sent : int
        Pieces the client split and sent to the blocks (rows of ``A``, ``W``, ...,
        and the broadcast k x N / N x k matrices).
    gathered : int
        Results the client received (k x N, N x k, K x p, K x k, K).
    largest : int
        The largest single result received (never an N x K array).
    """

    sent: int = 0
    gathered: int = 0
    largest: int = 0

    def snapshot(self) -> tuple[int, int]:
        """``(sent, gathered)`` now."""
        return self.sent, self.gathered


def block_design(Q: np.ndarray, names=None) -> SURDesign:
    """A :class:`~lowrank_sur.design.SURDesign` over one block of equations from its ``Q``.

    No QR is computed: ``Q`` (Kb x p x N, orthonormal rows per equation) was stored by
    :class:`DaskDesign`. The methods used per block (``fitted_mixed``, ``rmul_mixed``,
    ``residuals``, ``rmul_t``, ``ols``, ``fitted``) read only the attributes set here.
    """
    d = object.__new__(SURDesign)
    Kb, p, N = Q.shape
    d.k_eqs, d.nobs, d.pmax = Kb, N, p
    d.p = np.full(Kb, p, dtype=int)
    d.offsets = np.arange(Kb + 1) * p
    d.eq_names = [str(n) for n in names] if names is not None else [
        f"equation {j}" for j in range(Kb)]
    d.shared = False
    d.Q = Q
    return d


# ----------------------------------------------------------------- block functions
@single_threaded
def _qr_block(Xb: np.ndarray, names: np.ndarray, part: str) -> np.ndarray:
    """``Q`` (Kb x p x N) or ``R`` (Kb x p x p) of one block, validated as in memory."""
    d = SURDesign([Xb[:, j, :] for j in range(Xb.shape[1])], eq_names=list(names))
    out = d.Q if part == "Q" else d.R
    return np.ascontiguousarray(np.broadcast_to(out, (Xb.shape[1],) + out.shape[1:]))


def _qy_block(Xb: np.ndarray, Yb: np.ndarray, names: np.ndarray):
    """``(Q, Y')`` of one block: the basis and the responses, on one worker."""
    return _qr_block(Xb, names, "Q"), np.ascontiguousarray(Yb.T)


def _responses_of_pair(blocks: list) -> np.ndarray:
    return blocks[0][1]  # the one block along the contracted coefficient axis


@single_threaded
def _fitted_mixed_block(Q, A, W):
    return block_design(Q).fitted_mixed(A, W)[None]


@single_threaded
def _rmul_mixed_block(Q, Z, W):
    return block_design(Q).rmul_mixed(Z, W)


@single_threaded
def _rmul_block(Q, T):
    return block_design(Q).rmul_t(T)


@single_threaded
def _residuals_block(Q, YT, A):
    return block_design(Q).residuals(YT, A).T  # the contiguous Kb x N buffer


@single_threaded
def _right_block(T, W):
    return (T.T @ W)[None]  # R_b W_b, N x k


@single_threaded
def _left_block(T, E):
    return T @ E  # R_b' E, Kb x k


def _colss_block(T):
    return np.einsum("ij,ij->i", T, T)


# ------------------------------------------------------------------------ helpers
def _compute(traffic: Traffic, *arrays):
    """Compute dask arrays on the current scheduler and count the bytes gathered."""
    out = dask.compute(*arrays)
    sizes = [int(np.asarray(o).nbytes) for o in out]
    traffic.gathered += sum(sizes)
    traffic.largest = max([traffic.largest, *sizes])
    return out


class DaskMatrix:
    """An N x K matrix kept on the workers as its K x N transpose, chunked by equations.

    Supports what the in-memory factor step and beta step do with the residuals and
    responses: ``M @ W`` for a K x k ``W`` (an N x k tree reduction), ``M.T @ E`` for
    an N x k ``E`` (K x k, per block) and the column sums of squares.

    Parameters
    ----------
    data : dask.array.Array, shape (K, N)
        The transpose, chunked along equations (one chunk along N).
    owner : DaskDesign
        The design whose blocks the chunks follow (pieces and traffic).
    """

    def __init__(self, data: da.Array, owner: DaskDesign) -> None:
        self.data = data
        self.owner = owner
        self.shape = (data.shape[1], data.shape[0])
        self.ndim = 2
        self._colss: np.ndarray | None = None
        self._prefetched: tuple | None = None

    def _right(self, W: np.ndarray) -> da.Array:
        parts = da.blockwise(_right_block, "jnr", self.data, "jn", self.owner.pieces(W), "jr",
                             adjust_chunks={"j": 1}, dtype=float, concatenate=True)
        return parts.sum(axis=0, split_every=SPLIT_EVERY)

    def __matmul__(self, W: np.ndarray) -> np.ndarray:
        """``M @ W`` (N x k) for a K x k ``W``: one tree reduction over the blocks."""
        pre = self._prefetched
        if pre is not None and pre[0].shape == W.shape and np.array_equal(pre[0], W):
            return pre[1]
        return _compute(self.owner.traffic, self._right(W))[0]

    def prefetch_em(self, W: np.ndarray, L_inv: np.ndarray) -> None:
        """Compute ``M W`` and ``M' (M W L^{-1})`` in one graph, for the EM map's next two asks.

        The EM map (:meth:`~lowrank_sur.factor.FactorProblem.em_step`) needs ``R W``
        and then ``R' E[z]`` with ``E[z] = (R W) L^{-1}``: computing both at once halves
        the round trips. ``@`` returns the prefetched products when it is asked for
        exactly them (the same ``W``; the same ``E[z]`` as computed on the client from
        the returned ``R W``), and computes afresh otherwise.
        """
        RW_d = self._right(W)
        G_d = da.blockwise(_left_block, "jr", self.data, "jn", RW_d @ L_inv, "nr",
                           dtype=float, concatenate=True)
        RW, G = _compute(self.owner.traffic, RW_d, G_d)
        self._prefetched = (W, RW, RW @ L_inv, G)

    @property
    def T(self) -> _Transposed:
        """The K x N transpose, for ``M.T @ E``."""
        return _Transposed(self)

    def colss(self) -> np.ndarray:
        """Column sums of squares (length K), computed once."""
        if self._colss is None:
            m = self.data.map_blocks(_colss_block, drop_axis=1, dtype=float)
            self._colss = _compute(self.owner.traffic, m)[0]
        return self._colss


class _Transposed:
    """``M.T`` of a :class:`DaskMatrix`: only ``@`` with an N x k matrix."""

    def __init__(self, parent: DaskMatrix) -> None:
        self.parent = parent
        self.shape = parent.shape[::-1]

    def __matmul__(self, E: np.ndarray) -> np.ndarray:
        """``M' E`` (K x k) for an N x k ``E`` broadcast to every block."""
        p = self.parent
        pre = p._prefetched
        if pre is not None and pre[2].shape == E.shape and np.array_equal(pre[2], E):
            return pre[3]
        Ed = p.owner.broadcast(E)
        out = da.blockwise(_left_block, "jr", p.data, "jn", Ed, "nr", dtype=float,
                           concatenate=True)
        return _compute(p.owner.traffic, out)[0]


class DaskDesign:
    """The whitened design of a system on the cluster: one thin QR per equation, per block.

    Parameters
    ----------
    X : dask.array.Array, shape (N, K, p)
        Regressors, chunked along equations (axis 1); one chunk along N and p.
    eq_names : sequence of str, optional
        Equation labels for messages.
    Y : dask.array.Array, shape (N, K), optional
        Responses, in the same equation chunks; kept as :attr:`responses` (K x N),
        each block on the worker that holds its ``Q`` (one task computes both), so
        that no pass moves a block of the data between workers.
    persist : bool
        Keep ``Q`` (and the responses) in the workers' memory (default); otherwise
        every use recomputes them from ``X`` and ``Y``.

    Notes
    -----
    ``R_j`` (K x p x p) comes back to the client (the map to the user's coefficients);
    ``Q_j`` (K x p x N) stays on the workers. The QR of each block is the in-memory
    :class:`~lowrank_sur.design.SURDesign`'s, with its checks (finite values,
    collinearity, scale) and messages naming the equation and column.
    """

    def __init__(self, X: da.Array, eq_names=None, Y: da.Array | None = None,
                 persist: bool = True) -> None:
        N, K, p = X.shape
        self.nobs, self.k_eqs, self.pmax = int(N), int(K), int(p)
        self.p = np.full(K, p, dtype=int)
        self.offsets = np.arange(K + 1) * p
        self.shared = False
        self.eq_names = ([str(n) for n in eq_names] if eq_names is not None
                         else [f"equation {j}" for j in range(K)])
        self.chunks = X.chunks[1]
        self.traffic = Traffic()
        self._cache: dict = {}
        self._next_rmul: tuple | None = None
        names = da.from_array(np.array(self.eq_names, dtype=object), chunks=(self.chunks,))
        R = da.blockwise(_qr_block, "jcd", X, "njc", names, "j", new_axes={"d": p},
                         dtype=float, concatenate=True, part="R")
        self.R = _compute(self.traffic, R)[0]
        self.Rinv = np.linalg.inv(self.R)
        self.responses: DaskMatrix | None = None
        if Y is None:
            Q = da.blockwise(_qr_block, "jcn", X, "njc", names, "j", dtype=float,
                             concatenate=True, part="Q")
            self.Q = Q.persist() if persist else Q
            return
        pair = da.blockwise(_qy_block, "jcn", X, "njc", Y, "nj", names, "j", dtype=float,
                            concatenate=True)
        Q = pair.map_blocks(operator.itemgetter(0), dtype=float)
        YT = da.blockwise(_responses_of_pair, "jn", pair, "jcn", dtype=float,
                          concatenate=False)
        if persist:
            Q, YT = dask.persist(Q, YT)
        self.Q = Q
        self.responses = DaskMatrix(YT, self)

    def release(self) -> None:
        """Drop the blocks on the cluster (``Q``, the responses) and the cached pieces.

        The responses refer back to the design, so without this the blocks stay in the
        workers' memory until Python's cycle collector runs.
        """
        self.Q = None
        self.responses = None
        self._cache.clear()
        self._next_rmul = None

    # ------------------------------------------------------------ pieces
    def pieces(self, M: np.ndarray) -> da.Array:
        """``M`` (K x ...) split along equations into the blocks' chunks, on the client.

        The last few arrays split are remembered (by identity), so the W of one beta
        step is sent once for all its products.
        """
        key = id(M)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is M:
            return hit[1]
        name = f"piece-{uuid.uuid4().hex}"
        bounds = np.concatenate([[0], np.cumsum(self.chunks)])
        dsk = {(name, i) + (0,) * (M.ndim - 1): np.ascontiguousarray(M[lo:hi])
               for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))}
        out = da.Array(dsk, name, chunks=(self.chunks,) + tuple((s,) for s in M.shape[1:]),
                       dtype=M.dtype)
        self.traffic.sent += int(M.nbytes)
        self._cache = dict(list(self._cache.items())[-3:])
        self._cache[key] = (M, out)
        return out

    def broadcast(self, M: np.ndarray) -> da.Array:
        """A small array (k x N, N x k, ...) as one chunk that every block reads."""
        self.traffic.sent += int(M.nbytes)
        return da.from_array(M, chunks=M.shape)

    # ------------------------------------------------- SURDesign interface
    @property
    def real_mask(self) -> np.ndarray:
        """K x p ones (every equation has p regressors)."""
        return np.ones((self.k_eqs, self.pmax))

    def fitted_mixed(self, A: np.ndarray, W: np.ndarray) -> np.ndarray:
        """``W' M`` (k x N) for the fitted values ``M`` of ``A``: a tree reduction.

        In the same graph, :meth:`rmul_mixed` of the result with the same ``W`` (the
        second half of a GLS matrix-vector product), kept for that call.
        """
        parts = da.blockwise(_fitted_mixed_block, "jrn", self.Q, "jcn", self.pieces(A), "jc",
                             self.pieces(W), "jr", adjust_chunks={"j": 1}, dtype=float,
                             concatenate=True)
        Zd = parts.sum(axis=0, split_every=SPLIT_EVERY)
        T = da.blockwise(_rmul_mixed_block, "jc", self.Q, "jcn", Zd, "rn", self.pieces(W),
                         "jr", dtype=float, concatenate=True)
        Z, T = _compute(self.traffic, Zd, T)
        self._next_rmul = (Z, W, T)
        return Z

    def rmul_mixed(self, Z: np.ndarray, W: np.ndarray) -> np.ndarray:
        """Rows ``Q_j' Z' w_j`` (K x p; s x K x p for a stack of s matrices ``Z``)."""
        nxt, self._next_rmul = self._next_rmul, None
        if nxt is not None and nxt[0] is Z and nxt[1] is W:
            return nxt[2]
        Zd = self.broadcast(Z)
        if Z.ndim == 2:
            out = da.blockwise(_rmul_mixed_block, "jc", self.Q, "jcn", Zd, "rn",
                               self.pieces(W), "jr", dtype=float, concatenate=True)
        else:
            out = da.blockwise(_rmul_mixed_block, "sjc", self.Q, "jcn", Zd, "srn",
                               self.pieces(W), "jr", dtype=float, concatenate=True)
        return _compute(self.traffic, out)[0]

    def rmul(self, S: DaskMatrix) -> np.ndarray:
        """Rows ``Q_j' S[:, j]`` (K x p) for a distributed N x K ``S``."""
        out = da.blockwise(_rmul_block, "jc", self.Q, "jcn", S.data, "jn", dtype=float,
                           concatenate=True)
        return _compute(self.traffic, out)[0]

    def ols(self, Y: DaskMatrix) -> np.ndarray:
        """Whitened OLS coefficients (K x p)."""
        return self.rmul(Y)

    def residuals(self, YT: DaskMatrix, A: np.ndarray) -> DaskMatrix:
        """``Y - fitted(A)``, kept on the workers (persisted)."""
        out = da.blockwise(_residuals_block, "jn", self.Q, "jcn", YT.data, "jn",
                           self.pieces(A), "jc", dtype=float, concatenate=True)
        return DaskMatrix(out.persist(), self)

    # the map to the user's coefficients, as in memory (R_j is on the client)
    _Rinv = SURDesign._Rinv
    to_coefs = SURDesign.to_coefs
    from_coefs = SURDesign.from_coefs
    rinv = SURDesign.rinv
    packed_index = SURDesign.packed_index
    k_params = SURDesign.k_params

    def gather(self) -> SURDesign:
        """The whole design in the client's memory (for all P standard errors, small K)."""
        d = block_design(_compute(self.traffic, self.Q)[0], self.eq_names)
        d.R, d.Rinv = self.R, self.Rinv
        return d
