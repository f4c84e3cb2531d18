"""The float32 path of the kNN kernels, with exact refinement (internals of :mod:`domaingap.kernels.distances`).

For data that are not small-range integers: :class:`_FloatGram` (float32 or float64 Gram trick on centred data,
one ``addmm`` per block, TF32 off), the float32 error bound behind the certificate (:func:`_tol_factor`) and the
spare candidates (:func:`_extra_candidates`), :func:`_stream_cross_min_approx` (the pool of cross-class pairs that
can be the minimum), and :func:`_exact_sq`, the exact float64 / small-integer recomputation of selected pairs.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch

from ._knn_points import _INF, _Points
from ._knn_select import _class_blocks


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
    margin below C(D) on CPU and, where present, with cuBLAS on CUDA. Rows that fail the
    resulting certificate are recomputed in float64, so a looser bound costs time, never
    correctness; only a float32 error larger than this bound could let a neighbour be missed.
    """
    return 4.0 * math.sqrt(d) + 8.0


def _extra_candidates(k: int) -> int:
    # Float32 path only: a few spare candidates absorb near-ties at the k-th neighbour so
    # that the certificate almost never fails; the threshold filter makes them nearly free.
    return max(4, k // 4)


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


class _FloatGram:
    """Approximate squared distances ||a||^2 + ||b||^2 - 2 a.b of centred rows, one addmm per block."""

    exact = False

    def __init__(self, ref: _Points, query: _Points | None, dtype: torch.dtype = torch.float32):
        self.ref, self.query = ref, (ref if query is None else query)
        self.dtype = dtype
        self.sentinel = _INF
        self._buf: torch.Tensor | None = None
        self._cache: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def _rows(self, pts: _Points, i0: int, i1: int):
        if self.dtype == torch.float32:
            return pts.block(i0, i1, torch.float32)
        key = (id(pts), i0, i1)  # float64 rows are made on the fly: keep the query stripe
        if key not in self._cache:
            self._cache = {key: pts.block(i0, i1, torch.float64)}
        return self._cache[key]

    def block(self, q0: int, q1: int, r0: int, r1: int) -> torch.Tensor:
        m, w = q1 - q0, r1 - r0
        if self._buf is None or self._buf.numel() < m * w:
            self._buf = torch.empty(m * w, dtype=self.dtype, device=self.ref.orig.device)
        out = self._buf[: m * w].view(m, w)
        qb, qsq = self._rows(self.query, q0, q1)
        if self.query is self.ref and (q0, q1) == (r0, r1):
            rb, rsq = qb, qsq
        else:
            rb, rsq = self.ref.block(r0, r1, self.dtype)
        torch.add(qsq[:, None], rsq[None, :], out=out)
        with _full_precision_matmul():
            torch.addmm(out, qb, rb.T, alpha=-2.0, out=out)
        return out


def _stream_cross_min_approx(eng: _FloatGram, bounds, n: int, chunk: int, tol: float, cap: int = 2**20):
    """Pool of sorted-position pairs (P, 2) that contains every cross-class pair whose exact squared
    distance can be the minimum: every pair with approx <= min(approx) + 2 tol, tol a bound on the
    absolute error of any approx value. None when the pool would exceed ``cap`` pairs."""
    best = _INF
    pool_v: list[torch.Tensor] = []
    pool_p: list[torch.Tensor] = []
    size = 0
    with torch.no_grad():
        for q0, q1, r0, r1 in _class_blocks(bounds, n, chunk):
            blk = eng.block(q0, q1, r0, r1)
            rmin = blk.amin(dim=1)
            bmin = float(rmin.min())
            if bmin > best + 2 * tol:
                continue
            if bmin < best:
                best = bmin
                if pool_v:  # prune what the lower minimum rules out
                    v, p = torch.cat(pool_v), torch.cat(pool_p)
                    keep = v <= best + 2 * tol
                    pool_v, pool_p, size = [v[keep]], [p[keep]], int(keep.sum())
            lim = best + 2 * tol
            rows = (rmin <= lim).nonzero()[:, 0]
            sub = blk[rows]
            i, j = (sub <= lim).nonzero(as_tuple=True)
            pool_v.append(sub[i, j].to(torch.float64))
            pool_p.append(torch.stack([rows[i] + q0, j + r0], 1))
            size += i.numel()
            if size > cap:
                return None
    v, p = torch.cat(pool_v), torch.cat(pool_p)
    return p[v <= best + 2 * tol]


# --------------------------------------------------------------------------------------
# exact refinement


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
