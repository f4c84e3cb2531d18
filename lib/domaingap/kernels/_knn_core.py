"""Internals of :mod:`domaingap.kernels.distances`: the streamed candidate search and its exact refinement.

Steps 1-3 of the algorithm described in :mod:`~domaingap.kernels.distances` (centring, the streamed float32
block top-k, the exact float64 / small-integer refinement of the kept candidates), plus the constants of the
float32 error bound that step 4, the certificate in :mod:`~domaingap.kernels.distances`, relies on. Everything
here is private; :mod:`~domaingap.kernels.intrinsic_dim` and :mod:`~domaingap.kernels.sharpness` reach it through
:mod:`~domaingap.kernels.distances`.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any

import torch

from ._validation import check_int


_INF = float("inf")
_U32 = 2.0**-24  # float32 unit roundoff

# Bytes of scratch the exact refinement may hold at once (per device type). On a CPU it
# should stay cache-sized but not tiny: many small multi-threaded ops are slow when the
# cores are shared.
_REFINE_BUDGET = {"cpu": 8 * 2**20, "cuda": 512 * 2**20}


def _tol_factor(d: int) -> float:
    """Factor C(D) of the float32 error bound C(D) * u * (||a||^2 + ||b||^2) on d^2.

    Blocked BLAS/cuBLAS dot products with FMA accumulate rounding errors that grow like
    sqrt(D) times the norms (random-sign errors), far below the worst-case D * u. We take
    a 16x margin over the largest error we measured: on centred MNIST and CIFAR-10 pixels
    (also upsampled to 224 px, D = 150,528), uint8 noise and Gaussian data (MKL, CPU),
    |error| <= 0.25 sqrt(D) u (||a||^2 + ||b||^2); tests/test_distances.py checks a >= 4x
    margin below C(D) on CPU and, where present, with cuBLAS on CUDA. Rows that fail the resulting certificate are recomputed in float64, so a
    looser bound costs time, never correctness; only a float32 error larger than this
    bound could let a neighbour be missed.
    """
    return 4.0 * math.sqrt(d) + 8.0


def _extra_candidates(k: int) -> int:
    # A few spare float32 candidates absorb near-ties at the k-th neighbour so that the
    # certificate almost never fails; topk cost barely depends on k.
    return max(4, k // 4)


# --------------------------------------------------------------------------------------
# data preparation


@contextmanager
def _full_precision_matmul():
    """Disable TF32 for float32 matmuls inside the block (restores the caller's setting)."""
    prev = torch.get_float32_matmul_precision()
    if prev != "highest":
        torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        if prev != "highest":
            torch.set_float32_matmul_precision(prev)


def _column_mean(orig: torch.Tensor) -> torch.Tensor:
    """Float64 mean of the rows of ``orig`` (N, D), accumulated in row chunks."""
    n, d = orig.shape
    step = max(1, (32 * 2**20) // (8 * d))
    acc = torch.zeros(d, dtype=torch.float64, device=orig.device)
    for i in range(0, n, step):
        acc += orig[i : i + step].to(torch.float64).sum(0)
    return acc / n


class _Points:
    """A point set: the original rows plus a cached float32 copy centred on ``mean``."""

    def __init__(self, orig: torch.Tensor, mean: torch.Tensor):
        self.orig = orig
        self.mean = mean
        self.n, self.d = orig.shape
        self._c32: torch.Tensor | None = None
        self._sq32: torch.Tensor | None = None
        self._int_bounds: tuple[float, float] | None | bool = False  # False: not computed yet

    def _build32(self) -> None:
        c = torch.empty((self.n, self.d), dtype=torch.float32, device=self.orig.device)
        sq = torch.empty(self.n, dtype=torch.float32, device=self.orig.device)
        step = max(1, (32 * 2**20) // (8 * self.d))
        for i in range(0, self.n, step):
            blk = self.orig[i : i + step].to(torch.float64) - self.mean
            c[i : i + step] = blk
            # Norms of the float32-rounded rows, so that the Gram identity is consistent.
            sq[i : i + step] = c[i : i + step].to(torch.float64).square().sum(1)
        self._c32, self._sq32 = c, sq

    def sq_max(self) -> float:
        if self._sq32 is None:
            self._build32()
        return float(self._sq32.max())

    def sq(self) -> torch.Tensor:
        if self._sq32 is None:
            self._build32()
        return self._sq32

    def block(self, i0: int, i1: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Centred rows i0:i1 and their squared norms in ``dtype`` (float64 on the fly)."""
        if dtype == torch.float32:
            if self._c32 is None:
                self._build32()
            return self._c32[i0:i1], self._sq32[i0:i1]
        c = self.orig[i0:i1].to(torch.float64) - self.mean
        return c, c.square().sum(1)

    def subset(self, rows: torch.Tensor) -> "_Points":
        sub = _Points(self.orig[rows], self.mean)
        sub._int_bounds = self._int_bounds  # a subset of integers is integer, within bounds
        return sub

    def int_bounds(self) -> tuple[float, float] | None:
        """(min, max) when every value is an integer (uint8 pixels, or [0, 255] floats)."""
        if self._int_bounds is False:
            o = self.orig
            if o.is_floating_point():
                step = max(1, (32 * 2**20) // (4 * self.d))
                ok = all(bool((o[i : i + step] == o[i : i + step].round()).all()) for i in range(0, self.n, step))
            else:
                ok = True
            self._int_bounds = (float(o.min()), float(o.max())) if ok else None
        return self._int_bounds


def _default_chunk(device: torch.device) -> int:
    # CPU: 2048^2 float32 blocks (16 MiB) keep the GEMM at full speed and the top-k cheap.
    # GPU: larger blocks amortise kernel launches; 8192^2 float32 = 256 MiB.
    return 8192 if device.type == "cuda" else 2048


def _check_chunk(chunk_size: Any, device: torch.device) -> int:
    if chunk_size is None:
        return _default_chunk(device)
    return check_int("chunk_size", chunk_size, low=1)


# --------------------------------------------------------------------------------------
# streaming kernel


_GROUP = 8  # columns per group in the two-level top-k below


def _smallest_per_row(blk: torch.Tensor, kc: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Values and column indices of the kc smallest entries of each row (unsorted).

    Two-level selection, ~3x cheaper than one top-k over every entry: take the minimum of
    each group of _GROUP adjacent columns, keep the kc groups with the smallest minima,
    and select among their kc * _GROUP entries. Exact: an entry among the kc smallest of
    its row lies in a group whose minimum is at most that entry, and fewer than kc groups
    can have a smaller minimum.
    """
    m, w = blk.shape
    if w % _GROUP or w // _GROUP < 4 * kc:
        return torch.topk(blk, min(kc, w), dim=1, largest=False, sorted=False)
    gmin = blk.view(m, w // _GROUP, _GROUP).amin(dim=2)
    _, g = torch.topk(gmin, kc, dim=1, largest=False, sorted=False)
    cols = (g[:, :, None] * _GROUP + torch.arange(_GROUP, device=blk.device)).view(m, kc * _GROUP)
    v, p = torch.topk(torch.gather(blk, 1, cols), kc, dim=1, largest=False, sorted=False)
    return v, torch.gather(cols, 1, p)


def _smallest_per_col(blk: torch.Tensor, kc: int) -> tuple[torch.Tensor, torch.Tensor]:
    """As :func:`_smallest_per_row` for the columns of a row-major block: shapes (w, kc).

    Groups run along the rows here, so no transposed copy of the whole block is needed.
    """
    m, w = blk.shape
    if m % _GROUP or m // _GROUP < 4 * kc:
        return torch.topk(blk.T.contiguous(), min(kc, m), dim=1, largest=False, sorted=False)
    gmin = blk.view(m // _GROUP, _GROUP, w).amin(dim=1)  # (m / G, w)
    _, g = torch.topk(gmin.T.contiguous(), kc, dim=1, largest=False, sorted=False)  # (w, kc)
    rows = (g[:, :, None] * _GROUP + torch.arange(_GROUP, device=blk.device)).view(w, kc * _GROUP)
    vals = torch.gather(blk, 0, rows.T.contiguous()).T
    v, p = torch.topk(vals, kc, dim=1, largest=False, sorted=False)
    return v, torch.gather(rows, 1, p)


def _merge_topk(best_v, best_i, a0, a1, blk, col0, transposed=False):
    """Merge the kc smallest entries of each row of ``blk`` (of ``blk.T`` when
    ``transposed``) into best_[v|i][a0:a1]; ``col0`` offsets the column indices."""
    kc = best_v.shape[1]
    if kc == 1:
        view = blk.T if transposed else blk
        cur = best_v[a0:a1, 0]
        if blk.device.type == "cuda":
            v, j = torch.min(view, dim=1)
            better = v < cur
            best_v[a0:a1, 0] = torch.where(better, v, cur)
            best_i[a0:a1, 0] = torch.where(better, j + col0, best_i[a0:a1, 0])
            return
        # CPU: amin over a (possibly transposed) block is far cheaper than min-with-index;
        # the index is then found only for the rows that improved.
        v = view.amin(dim=1)
        rows = (v < cur).nonzero()[:, 0]
        if rows.numel():
            best_v[a0 + rows, 0] = v[rows]
            best_i[a0 + rows, 0] = view[rows].argmin(dim=1) + col0
        return
    v, j = _smallest_per_col(blk, kc) if transposed else _smallest_per_row(blk, kc)
    cv = torch.cat([best_v[a0:a1], v], dim=1)
    ci = torch.cat([best_i[a0:a1], j + col0], dim=1)
    v2, pos = torch.topk(cv, kc, dim=1, largest=False, sorted=False)
    best_v[a0:a1] = v2
    best_i[a0:a1] = torch.gather(ci, 1, pos)


def _stream_smallest(
    ref: _Points,
    kc: int,
    *,
    query: _Points | None = None,
    query_index: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    query_labels: torch.Tensor | None = None,
    chunk: int,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Approximate squared distances of the kc nearest admissible refs of each query row.

    query=None means self-search over ``ref`` (diagonal excluded, symmetric blocks).
    ``query_index`` (M,) excludes the pair (q, query_index[q]) (a query that is itself a
    ref point). With ``labels`` (N,) only pairs of different labels are admissible.
    Returns (values (M, kc) in ``dtype``, indices (M, kc) int64); slots never filled hold
    value +inf and index -1.
    """
    symmetric = query is None
    q = ref if symmetric else query
    ql = labels if symmetric else query_labels
    m, n = q.n, ref.n
    dev = ref.orig.device
    best_v = torch.full((m, kc), _INF, dtype=dtype, device=dev)
    best_i = torch.full((m, kc), -1, dtype=torch.int64, device=dev)
    flat = torch.empty(min(chunk, m) * min(chunk, n), dtype=dtype, device=dev)
    with torch.no_grad(), _full_precision_matmul():
        for q0 in range(0, m, chunk):
            q1 = min(q0 + chunk, m)
            qb, qsq = q.block(q0, q1, dtype)
            for r0 in range(q0 if symmetric else 0, n, chunk):
                r1 = min(r0 + chunk, n)
                diag = symmetric and r0 == q0
                rb, rsq = (qb, qsq) if diag else ref.block(r0, r1, dtype)
                blk = flat[: (q1 - q0) * (r1 - r0)].view(q1 - q0, r1 - r0)
                torch.add(qsq[:, None], rsq[None, :], out=blk)
                torch.addmm(blk, qb, rb.T, alpha=-2.0, out=blk)
                if ql is not None:
                    blk.masked_fill_(ql[q0:q1, None] == labels[None, r0:r1], _INF)
                if diag:
                    blk.fill_diagonal_(_INF)
                elif query_index is not None:
                    qi = query_index[q0:q1]
                    rows = ((qi >= r0) & (qi < r1)).nonzero()[:, 0]
                    if rows.numel():
                        blk[rows, qi[rows] - r0] = _INF
                _merge_topk(best_v, best_i, q0, q1, blk, r0)
                if symmetric and not diag:
                    _merge_topk(best_v, best_i, r0, r1, blk, q0, transposed=True)
    best_i.masked_fill_(torch.isinf(best_v), -1)
    return best_v, best_i


def _small_int_tile(ref: "_Points", query: "_Points") -> int | None:
    """Tile length T for an exact float32 refinement, or None when it would not be exact.

    For integer data with value range R <= 4096 every difference and square is an exact
    float32 integer, and a sum of T <= 2^24 / R^2 squares stays below 2^24, so float32
    partial sums over tiles of T pixels are exact; the tiles are then added in float64.
    """
    a, b = ref.int_bounds(), query.int_bounds()
    if a is None or b is None:
        return None
    r = max(a[1], b[1]) - min(a[0], b[0])
    if r > 4096:
        return None
    return max(1, int(2**24 // max(r * r, 1)))


def _exact_sq(ref: "_Points", query: "_Points", cand: torch.Tensor) -> torch.Tensor:
    """Exact float64 squared distances ||query.orig[r] - ref.orig[cand[r, c]]||^2.

    cand (M, kc) int64 with -1 for empty slots (returned as +inf). Works on differences of
    the original values, so integer pixels give exact results and duplicates exactly 0.
    """
    ref_orig, query_orig = ref.orig, query.orig
    m, kc = cand.shape
    d = ref_orig.shape[1]
    dev = cand.device
    out = torch.zeros((m, kc), dtype=torch.float64, device=dev)
    if m == 0 or kc == 0:
        return out
    tile = _small_int_tile(ref, query)
    dtype = torch.float64 if tile is None else torch.float32
    # This pass is memory-bound: reuse one scratch buffer (fresh large buffers cost page
    # faults on the CPU), tile over rows and, for very wide images, over pixel columns.
    budget = _REFINE_BUDGET.get(dev.type, _REFINE_BUDGET["cpu"]) // dtype.itemsize
    rows = max(1, min(m, budget // (kc * d)))
    cols = d if rows * kc * d <= budget else max(1, budget // kc)
    if tile is not None and cols < d:
        cols = max(tile, cols - cols % tile)  # column tiles must not split an exact tile
    scratch = torch.empty(rows * kc * min(cols, d), dtype=dtype, device=dev)
    qscratch = torch.empty(rows * min(cols, d), dtype=dtype, device=dev)
    for s in range(0, m, rows):
        c = cand[s : s + rows]
        r = c.shape[0]
        g = torch.index_select(ref_orig, 0, c.clamp(min=0).reshape(-1)).view(r, kc, d)
        q = query_orig[s : s + r]
        acc = out[s : s + r]
        for d0 in range(0, d, cols):
            w = min(cols, d - d0)
            buf = scratch[: r * kc * w].view(r, kc, w)
            qb = qscratch[: r * w].view(r, 1, w)
            buf.copy_(g[:, :, d0 : d0 + w])
            qb.copy_(q[:, None, d0 : d0 + w])
            buf.sub_(qb)
            buf.mul_(buf)
            if tile is None:
                acc += buf.sum(-1)
            elif tile >= w:
                acc += buf.sum(-1).double()
            else:
                main = w - w % tile
                acc += buf[:, :, :main].view(r, kc, main // tile, tile).sum(-1).double().sum(-1)
                if main < w:
                    acc += buf[:, :, main:].sum(-1).double()
    return out.masked_fill_(cand < 0, _INF)


def _sort_candidates(sq: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by exact squared distance, ties by index (deterministic output)."""
    key = torch.where(idx >= 0, idx, torch.iinfo(torch.int64).max)
    key, p = torch.sort(key, dim=1)
    sq = torch.gather(sq, 1, p)
    sq, p2 = torch.sort(sq, dim=1, stable=True)
    return sq, torch.gather(torch.gather(idx, 1, p), 1, p2)
