"""Internals of :mod:`domaingap.kernels.distances`: point sets, distance blocks, streamed selection, exact refinement.

The algorithm is described in :mod:`~domaingap.kernels.distances`. This module holds its pieces:

* :class:`_Points`: the original rows plus lazily built working copies (a float32 copy centred on a float64 mean,
  or, for integer data with a range of at most 255 values, an int8 copy shifted to [-128, 127]);
* the block engines :class:`_IntGram` (exact squared distances from one int8 GEMM with int32 accumulation,
  ``torch._int_mm``) and :class:`_FloatGram` (float32 or float64 Gram trick on centred data, one ``addmm``);
* :class:`_TopK` and :func:`_stream_knn`: the streamed k-smallest selection (threshold filter plus sparse merge);
* :func:`_stream_cross_min`: the streamed minimum over cross-class blocks only;
* :func:`_exact_sq`: the exact float64 / small-integer recomputation of selected pairs.

Everything here is private; :mod:`~domaingap.kernels.intrinsic_dim` and :mod:`~domaingap.kernels.sharpness` reach it
through :mod:`~domaingap.kernels.distances`.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any

import torch

from ._validation import check_int

_INF = float("inf")
_U32 = 2.0**-24  # float32 unit roundoff
_U64 = 2.0**-53  # float64 unit roundoff
_I32_MAX = 2**31 - 1
_I64_MAX = 2**63 - 1

# Bytes of scratch the exact refinement may hold at once (per device type). On a CPU it
# should stay cache-sized but not tiny: many small multi-threaded ops are slow when the
# cores are shared.
_REFINE_BUDGET = {"cpu": 8 * 2**20, "cuda": 512 * 2**20}

# Switches for tests and benchmarks: the exact int8 path may be turned off to exercise the
# float32 path with its certificate on integer data.
_USE_INT8 = True


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


@contextmanager
def _selection_threads(device: torch.device):
    """One intra-op thread for the selection that follows each GEMM (CPU only).

    The threshold filter and sparse merges are many small ops; forking a thread team for each
    gains little and, on shared cores, costs many times the work (every parallel region waits for
    a descheduled thread). The GEMMs keep all threads. Restores the caller's setting.
    """
    prev = torch.get_num_threads()
    if device.type != "cpu" or prev == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _column_mean(orig: torch.Tensor) -> torch.Tensor:
    """Float64 mean of the rows of ``orig`` (N, D), accumulated in row chunks."""
    n, d = orig.shape
    step = max(1, (32 * 2**20) // (8 * d))
    acc = torch.zeros(d, dtype=torch.float64, device=orig.device)
    for i in range(0, n, step):
        acc += orig[i : i + step].to(torch.float64).sum(0)
    return acc / n


def _row_steps(n: int, d: int, itemsize: int = 8, budget: int = 32 * 2**20):
    step = max(1, budget // (itemsize * d))
    return range(0, n, step), step


class _Points:
    """A point set: the original rows plus lazily built working copies.

    ``float32``: rows centred on ``mean`` (float64) and rounded to float32, with the squared
    norms of the rounded rows. ``int8(offset)``: integer rows minus ``offset`` as int8 (exact
    when every value lies in [offset - 128, offset + 127]) with their exact squared norms.
    """

    def __init__(self, orig: torch.Tensor, mean: "torch.Tensor | _Points | None" = None):
        self.orig = orig
        # mean: a tensor, another _Points whose mean is shared (computed when first needed), or None
        # for this set's own mean, computed when first needed (the int8 path never needs it)
        self._mean = mean
        self.n, self.d = orig.shape
        self._c32: torch.Tensor | None = None
        self._sq32: torch.Tensor | None = None
        self._i8: tuple[float, torch.Tensor, torch.Tensor] | None = None
        self._int_bounds: tuple[float, float] | None | bool = False  # False: not computed yet

    @property
    def mean(self) -> torch.Tensor:
        if isinstance(self._mean, _Points):
            self._mean = self._mean.mean
        elif self._mean is None:
            self._mean = _column_mean(self.orig)
        return self._mean

    def _build32(self) -> None:
        c = torch.empty((self.n, self.d), dtype=torch.float32, device=self.orig.device)
        sq = torch.empty(self.n, dtype=torch.float32, device=self.orig.device)
        rows, step = _row_steps(self.n, self.d)
        for i in rows:
            blk = self.orig[i : i + step].to(torch.float64) - self.mean
            c[i : i + step] = blk
            # Norms of the float32-rounded rows, so that the Gram identity is consistent.
            sq[i : i + step] = c[i : i + step].to(torch.float64).square().sum(1)
        self._c32, self._sq32 = c, sq

    def sq_max(self) -> float:
        return float(self.sq().max())

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
        sub = _Points(self.orig[rows], self)
        sub._int_bounds = self._int_bounds  # a subset of integers is integer, within bounds
        return sub

    def int_bounds(self) -> tuple[float, float] | None:
        """(min, max) when every value is an integer (uint8 pixels, or [0, 255] floats)."""
        if self._int_bounds is False:
            o = self.orig
            if o.is_floating_point():
                rows, step = _row_steps(self.n, self.d, 4)
                ok = all(bool((o[i : i + step] == o[i : i + step].round()).all()) for i in rows)
            else:
                ok = True
            self._int_bounds = (float(o.min()), float(o.max())) if ok else None
        return self._int_bounds

    def int8(self, offset: float, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows - offset as int8, padded with zero columns to ``pad``; exact squared norms int64)."""
        if self._i8 is None or self._i8[0] != offset or self._i8[1].shape[1] != pad:
            dev = self.orig.device
            o = self.orig
            x8 = torch.empty((self.n, pad), dtype=torch.int8, device=dev)
            if pad > self.d:
                x8[:, self.d :].zero_()
            nrm = torch.empty(self.n, dtype=torch.int64, device=dev)
            rows, step = _row_steps(self.n, self.d, 4, 8 * 2**20)
            for i in rows:
                blk, out = o[i : i + step], x8[i : i + step, : self.d]
                if o.dtype == torch.uint8:
                    # (x - offset) mod 256 read as int8 is x - offset, since it lies in [-128, 127]
                    torch.sub(blk, int(offset) % 256, out=out.view(torch.uint8))
                else:
                    # other integers are shifted in int64, floats (integer-valued, checked by int_bounds)
                    # in float64, where the shift is exact
                    wide = torch.float64 if o.is_floating_point() else torch.int64
                    out.copy_(blk.to(wide) - int(offset))
                # exact norms: float32 sums of <= 1024 squares <= 128^2 stay integers <= 2^24
                f = out.to(torch.float32)
                acc = torch.zeros(f.shape[0], dtype=torch.int64, device=dev)
                for c0 in range(0, self.d, 1024):
                    part = f[:, c0 : c0 + 1024]
                    acc += (part * part).sum(1).to(torch.int64)
                nrm[i : i + step] = acc
            self._i8 = (offset, x8, nrm)
        return self._i8[1], self._i8[2]


def _default_chunk(device: torch.device) -> int:
    # CPU: 2048^2 blocks (16 MiB of int32/float32): the GEMM runs at full speed, the passes
    # after it (norm add, threshold filter) are cheap, and the per-block overhead of the sparse
    # merges is amortised (measured on 2 cores: 2048 ~10-15% faster than 1024 on MNIST, equal
    # on CIFAR-10). GPU: larger blocks amortise kernel launches; 8192^2 float32 = 256 MiB.
    return 8192 if device.type == "cuda" else 2048


def _check_chunk(chunk_size: Any, device: torch.device) -> int:
    if chunk_size is None:
        return _default_chunk(device)
    return check_int("chunk_size", chunk_size, low=1)


# --------------------------------------------------------------------------------------
# block engines: squared distances between rows q0:q1 of the query set and r0:r1 of the refs


_INT_MM_OK: dict[str, bool] = {}


def _int_mm_available(device: torch.device) -> bool:
    """Whether ``torch._int_mm`` (int8 x int8 -> int32) runs and is exact on this device type."""
    key = device.type
    if key not in _INT_MM_OK:
        ok = False
        try:
            g = torch.Generator().manual_seed(0)
            a = torch.randint(-128, 128, (32, 64), generator=g, dtype=torch.int8)
            b = torch.randint(-128, 128, (32, 64), generator=g, dtype=torch.int8)
            got = torch._int_mm(a.to(device), b.to(device).T).cpu()
            ok = bool(torch.equal(got.to(torch.int64), a.to(torch.int64) @ b.to(torch.int64).T))
        except Exception:  # noqa: BLE001 - any failure means: use the float32 path
            ok = False
        _INT_MM_OK[key] = ok
    return _INT_MM_OK[key]


def _int8_offset(ref: _Points, query: _Points | None) -> float | None:
    """Shift that maps every value of both sets into int8, or None when the int8 path does not apply."""
    if not _USE_INT8 or not _int_mm_available(ref.orig.device):
        return None
    a = ref.int_bounds()
    b = a if query is None else query.int_bounds()
    if a is None or b is None:
        return None
    lo, hi = min(a[0], b[0]), max(a[1], b[1])
    if hi - lo > 255:
        return None
    return lo + 128.0


class _Int8Failed(RuntimeError):
    """torch._int_mm failed at run time (callers fall back to the float32 path)."""


class _IntGram:
    """Exact squared distances of integer data with range <= 255: ||a||^2 + ||b||^2 - 2 a.b, integers.

    One int8 GEMM with int32 accumulation per block (exact: |a.b| <= 128^2 D < 2^31 per piece
    of <= 131,064 columns); values are int32 when 65,536 D < 2^31 (every squared distance,
    <= 255^2 D, and every intermediate fits), otherwise int64.
    """

    exact = True

    def __init__(self, ref: _Points, query: _Points | None, offset: float):
        dev = ref.orig.device
        self.cuda = dev.type == "cuda"
        pad = ref.d + (-ref.d) % 16 if self.cuda else ref.d  # cuBLASLt int8 wants multiples of 8 (16 to be safe)
        self.r8, rn = ref.int8(offset, pad)
        if query is None:
            self.q8, qn = self.r8, rn
        else:
            self.q8, qn = query.int8(offset, pad)
        self.dtype = torch.int32 if 65536 * ref.d < 2**31 else torch.int64
        self.sentinel = _I32_MAX if self.dtype == torch.int32 else _I64_MAX
        self.rn, self.qn = rn.to(self.dtype), qn.to(self.dtype)
        self.pieces = [(s, min(s + 131064, pad)) for s in range(0, pad, 131064)]
        self._buf: torch.Tensor | None = None

    def _mm(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a @ b.T exactly as int32 (int8 inputs); _Int8Failed if the device's int8 GEMM refuses."""
        try:
            return self._mm_raw(a, b)
        except RuntimeError as err:
            if isinstance(err, torch.OutOfMemoryError):
                raise
            raise _Int8Failed(str(err)) from err

    def _mm_raw(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if not self.cuda:
            return torch._int_mm(a, b.T)
        a, b = a.contiguous(), b.contiguous()
        m, n = a.shape[0], b.shape[0]
        mp, np_ = max(32, m + (-m) % 8), max(32, n + (-n) % 8)
        if mp != m:
            a = torch.cat([a, a.new_zeros((mp - m, a.shape[1]))])
        if np_ != n:
            b = torch.cat([b, b.new_zeros((np_ - n, b.shape[1]))])
        return torch._int_mm(a, b.T)[:m, :n]

    def block(self, q0: int, q1: int, r0: int, r1: int) -> torch.Tensor:
        m, w = q1 - q0, r1 - r0
        if self._buf is None or self._buf.numel() < m * w:
            self._buf = torch.empty(m * w, dtype=self.dtype, device=self.r8.device)
        out = self._buf[: m * w].view(m, w)
        torch.add(self.qn[q0:q1, None], self.rn[None, r0:r1], out=out)
        for s0, s1 in self.pieces:
            g = self._mm(self.q8[q0:q1, s0:s1], self.r8[r0:r1, s0:s1])
            out.sub_(g.to(self.dtype) if self.dtype != torch.int32 else g, alpha=2)
        return out

    def row_keys(self, q0: int, q1: int, r0: int, r1: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(||b||^2 - 2 a.b block, ||a||^2 of the rows): the squared distance minus a per-row constant."""
        m, w = q1 - q0, r1 - r0
        if self._buf is None or self._buf.numel() < m * w:
            self._buf = torch.empty(m * w, dtype=self.dtype, device=self.r8.device)
        out = self._buf[: m * w].view(m, w)
        first = True
        for s0, s1 in self.pieces:
            g = self._mm(self.q8[q0:q1, s0:s1], self.r8[r0:r1, s0:s1])
            if first:
                torch.add(self.rn[None, r0:r1], g.to(self.dtype), alpha=-2, out=out)
                first = False
            else:
                out.sub_(g.to(self.dtype), alpha=2)
        return out, self.qn[q0:q1]


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


def _engine(ref: _Points, query: _Points | None, *, exact_int: bool = True):
    offset = _int8_offset(ref, query) if exact_int else None
    if offset is not None:
        return _IntGram(ref, query, offset)
    return _FloatGram(ref, query)


# --------------------------------------------------------------------------------------
# streamed selection of the kc smallest values per point


# Group sizes of the two-level selections below. Groups of a row are *strided* column sets
# {g, g + w/G, g + 2 w/G, ...}: their minima are then an elementwise minimum over G contiguous
# rows of the (m, G, w/G) view, which vectorises, unlike a reduction over G adjacent values.
_GROUP = 8  # two-level top-k
_ROW_GROUP = 16  # row threshold filter
_COL_GROUP = 16  # column threshold filter (groups of 16 rows: contiguous already)


def _smallest_per_row(blk: torch.Tensor, kc: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Values and column indices of the kc smallest entries of each row (unsorted).

    Two-level selection, several times cheaper than one top-k over every entry: take the
    minimum of each group of _GROUP (strided) columns, keep the kc groups with the smallest
    minima, and select among their kc * _GROUP entries. Exact: an entry among the kc smallest
    of its row lies in a group whose minimum is at most that entry, and fewer than kc groups
    can have a smaller minimum.
    """
    m, w = blk.shape
    g = _GROUP
    if w % g or w // g < 4 * kc:
        return torch.topk(blk, min(kc, w), dim=1, largest=False, sorted=False)
    view = blk.view(m, g, w // g)
    _, grp = torch.topk(view.amin(dim=1), kc, dim=1, largest=False, sorted=False)  # (m, kc)
    cols = (grp[:, :, None] + torch.arange(g, device=blk.device) * (w // g)).view(m, kc * g)
    v, p = torch.topk(torch.gather(blk, 1, cols), kc, dim=1, largest=False, sorted=False)
    return v, torch.gather(cols, 1, p)


def _row_survivors(blk: torch.Tensor, thr: torch.Tensor):
    """(rows, cols, values) of the entries with blk[i, j] < thr[i]; rows ascending.

    Two-level: minima over groups of _ROW_GROUP strided columns first, then only the groups whose
    minimum passes are inspected (a group holds a survivor iff its minimum is one).
    """
    m, w = blk.shape
    g = _ROW_GROUP
    if w % g == 0 and w >= 4 * g:
        stride = w // g
        view = blk.view(m, g, stride)
        gi, gg = (view.amin(1) < thr[:, None]).nonzero(as_tuple=True)
        if gi.numel() * g * 2 <= m * w:
            vals = view[gi, :, gg]  # (P, g)
            p, t = (vals < thr[gi, None]).nonzero(as_tuple=True)
            return gi[p], t * stride + gg[p], vals[p, t]
    i, j = (blk < thr[:, None]).nonzero(as_tuple=True)
    return i, j, blk[i, j]


def _col_survivors(blk: torch.Tensor, thr: torch.Tensor):
    """(rows, cols, values) of the entries with blk[i, j] < thr[j] (groups of _COL_GROUP adjacent rows)."""
    m, w = blk.shape
    g = _COL_GROUP
    if m % g == 0 and m >= 4 * g:
        view = blk.view(m // g, g, w)
        gr, j = (view.amin(1) < thr[None, :]).nonzero(as_tuple=True)
        if gr.numel() * g * 2 <= m * w:
            vals = view[gr, :, j]
            p, t = (vals < thr[j, None]).nonzero(as_tuple=True)
            return gr[p] * g + t, j[p], vals[p, t]
    i, j = (blk < thr[None, :]).nonzero(as_tuple=True)
    return i, j, blk[i, j]


class _TopK:
    """Per point: the kc smallest offers seen so far (unsorted) and a filter threshold ``thr``
    (block dtype): only offers with value < thr can enter; ``thr == sentinel`` until kc are kept.

    Float mode (``n_ref=None``, the float32 path): ``v`` values and ``i`` indices; ``thr`` is the
    largest kept value. Invariant behind the certificate: every value offered and not kept is >=
    the final threshold (offers below the running threshold are merged; it only decreases).

    Keyed mode (``n_ref`` given, the exact path): ``key = value * n_ref + index`` (int64), so the kc
    smallest offers are the kc smallest by (value, index) and exact ties are resolved by index,
    independently of block size and order; ``thr`` is 1 + the value of the kc-th key.
    """

    def __init__(self, n: int, kc: int, dtype: torch.dtype, sentinel, device, n_ref: int | None = None):
        self.kc = kc
        self.sentinel = sentinel
        self.dtype = dtype
        self.n_ref = n_ref
        self.thr = torch.full((n,), sentinel, dtype=dtype, device=device)
        if n_ref is None:
            self.v = torch.full((n, kc), sentinel, dtype=dtype, device=device)
            self.i = torch.full((n, kc), -1, dtype=torch.int64, device=device)
        else:
            self.key = torch.full((n, kc), _I64_MAX, dtype=torch.int64, device=device)

    def merge(self, pts, cv: torch.Tensor, ci: torch.Tensor) -> None:
        """Merge candidates cv/ci (u, c) (sentinel/-1 padded) into the points ``pts`` (slice or (u,) index)."""
        if self.n_ref is None:
            allv = torch.cat([self.v[pts], cv], dim=1)
            alli = torch.cat([self.i[pts], ci], dim=1)
            v, p = torch.topk(allv, self.kc, dim=1, largest=False, sorted=False)
            self.v[pts] = v
            self.i[pts] = torch.gather(alli, 1, p)
            self.thr[pts] = v.amax(dim=1)
            return
        ck = torch.where(ci >= 0, cv.to(torch.int64) * self.n_ref + ci, _I64_MAX)
        kk = torch.topk(torch.cat([self.key[pts], ck], dim=1), self.kc, dim=1, largest=False, sorted=False)[0]
        self.key[pts] = kk
        top = kk.amax(dim=1)
        thr = torch.where(top == _I64_MAX, self.sentinel, (top // self.n_ref + 1).clamp(max=self.sentinel))
        self.thr[pts] = thr.to(self.dtype)

    def merge_dense(self, p0: int, blk: torch.Tensor, col0: int, rows: torch.Tensor | None = None) -> None:
        """Offer every entry of ``blk`` (rows p0 + rows, or p0:p0+m) with column ids col0 + j."""
        if rows is not None:
            blk = blk[rows]
        v, j = _smallest_per_row(blk, self.kc)
        if self.n_ref is None:
            pts = slice(p0, p0 + blk.shape[0]) if rows is None else rows + p0
            self.merge(pts, v, j + col0)
            return
        # exact ties at the kc-th value of the block: offer every entry <= that value (then by index)
        t = v.amax(dim=1).clamp(max=self.sentinel - 1) + 1
        i, jj, vals = _row_survivors(blk, t.to(blk.dtype))
        if rows is None:
            self.merge_sparse(p0, blk.shape[0], i, jj + col0, vals, presorted=True)
        else:
            size = int(rows.max()) + 1
            self.merge_sparse(p0, size, rows[i], jj + col0, vals, presorted=True)

    def merge_sparse(self, p0: int, size: int, loc: torch.Tensor, cand: torch.Tensor, vals: torch.Tensor,
                     presorted: bool = False) -> None:
        """Offer the (point p0 + loc, candidate, value) triples, loc in [0, size) (1-D tensors;
        ``presorted``: loc already ascending, as nonzero() returns rows)."""
        if loc.numel() == 0:
            return
        if not presorted:
            loc, order = torch.sort(loc, stable=True)
            cand, vals = cand[order], vals[order]
        counts = torch.bincount(loc, minlength=size)
        starts = torch.cumsum(counts, 0) - counts
        pos = torch.arange(loc.numel(), device=loc.device) - starts[loc]
        active = counts.nonzero()[:, 0]
        slot = torch.empty(size, dtype=torch.int64, device=loc.device)
        slot[active] = torch.arange(active.numel(), device=loc.device)
        cmax = int(counts.max())
        cv = torch.full((active.numel(), cmax), self.sentinel, dtype=vals.dtype, device=loc.device)
        ci = torch.full((active.numel(), cmax), -1, dtype=torch.int64, device=loc.device)
        g = slot[loc]
        cv[g, pos] = vals
        ci[g, pos] = cand
        self.merge(active + p0, cv, ci)

    def sorted_exact(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Keyed mode: (values float64, indices) of the kept offers, each row by (value, index)."""
        key = torch.sort(self.key, dim=1).values
        return (key // self.n_ref).to(torch.float64), key % self.n_ref


def _offer_block(st: _TopK, blk: torch.Tensor, q0: int, r0: int, both: bool) -> None:
    """Offer block values to its rows (points q0 + i) and, when ``both``, to its columns (points r0 + j)."""
    m, w = blk.shape
    sent = st.sentinel
    thr_r = st.thr[q0 : q0 + m]
    open_rows = (thr_r == sent).nonzero()[:, 0]
    if open_rows.numel() == m:
        st.merge_dense(q0, blk, r0)
    else:
        if open_rows.numel():
            st.merge_dense(q0, blk, r0, rows=open_rows)
            thr_r = thr_r.clone()
            thr_r[open_rows] = -_INF if blk.is_floating_point() else -1
        i, j, v = _row_survivors(blk, thr_r)
        st.merge_sparse(q0, m, i, j + r0, v, presorted=True)
    if both:
        # rows and columns are disjoint points (off-diagonal block): thresholds are independent
        i, j, v = _col_survivors(blk, st.thr[r0 : r0 + w])
        st.merge_sparse(r0, w, j, i + q0, v)


def _stream_knn(
    eng,
    kc: int,
    *,
    n_query: int,
    n_ref: int,
    symmetric: bool,
    chunk: int,
    query_index: torch.Tensor | None = None,
    device,
) -> _TopK:
    """kc smallest block values per query row over all refs (self pairs excluded in symmetric mode).

    Symmetric mode computes only blocks on and above the block diagonal: first every diagonal
    square (dense selection, which sets every point's threshold to the kc-th smallest distance
    within its own stripe), then each off-diagonal block once, offered to its rows and its
    columns through the threshold filter. ``query_index`` (n_query,) excludes the pair
    (q, query_index[q]) (a query that is itself a ref point).
    """
    st = _TopK(n_query, kc, eng.dtype, eng.sentinel, device, n_ref=n_ref if eng.exact else None)
    with torch.no_grad():
        if symmetric:
            n = n_ref
            for s0 in range(0, n, chunk):
                s1 = min(s0 + chunk, n)
                blk = eng.block(s0, s1, s0, s1)
                with _selection_threads(device):
                    blk.fill_diagonal_(eng.sentinel)
                    st.merge_dense(s0, blk, s0)
            for q0 in range(0, n, chunk):
                q1 = min(q0 + chunk, n)
                for r0 in range(q1, n, chunk):
                    blk = eng.block(q0, q1, r0, min(r0 + chunk, n))
                    with _selection_threads(device):
                        _offer_block(st, blk, q0, r0, both=True)
        else:
            for q0 in range(0, n_query, chunk):
                q1 = min(q0 + chunk, n_query)
                for r0 in range(0, n_ref, chunk):
                    r1 = min(r0 + chunk, n_ref)
                    blk = eng.block(q0, q1, r0, r1)
                    with _selection_threads(device):
                        if query_index is not None:
                            qi = query_index[q0:q1]
                            rows = ((qi >= r0) & (qi < r1)).nonzero()[:, 0]
                            if rows.numel():
                                blk[rows, qi[rows] - r0] = eng.sentinel
                        _offer_block(st, blk, q0, r0, both=False)
    return st


# --------------------------------------------------------------------------------------
# streamed minimum over cross-class blocks


def _class_blocks(bounds: list[tuple[int, int]], n: int, chunk: int):
    """Blocks (q0, q1, r0, r1) covering every pair (i in class c, j in a later class), class-sorted rows."""
    for s, e in bounds:
        if e >= n:
            continue
        for q0 in range(s, e, chunk):
            q1 = min(q0 + chunk, e)
            for r0 in range(e, n, chunk):
                yield q0, q1, r0, min(r0 + chunk, n)


def _stream_cross_min_exact(eng: _IntGram, bounds, n: int, chunk: int, perm: torch.Tensor):
    """Exact minimum squared distance over cross-class pairs, and the pair attaining it (original
    indices i < j; among exact ties the lexicographically smallest). ``perm`` maps class-sorted
    positions to original indices."""
    best, best_pair = None, None
    with torch.no_grad():
        for q0, q1, r0, r1 in _class_blocks(bounds, n, chunk):
            keys, qn = eng.row_keys(q0, q1, r0, r1)
            rmin = keys.amin(dim=1) + qn
            bmin = int(rmin.min())
            if best is not None and bmin > best:
                continue
            rows = (rmin == bmin).nonzero()[:, 0]
            i, j = (keys[rows] + qn[rows, None] == bmin).nonzero(as_tuple=True)
            oi, oj = perm[rows[i] + q0], perm[j + r0]
            lo, hi = torch.minimum(oi, oj), torch.maximum(oi, oj)
            b = int(torch.argmin(lo * n + hi))
            pair = (int(lo[b]), int(hi[b]))
            if best is None or bmin < best or pair < best_pair:
                best, best_pair = bmin, pair
    return best, best_pair


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
