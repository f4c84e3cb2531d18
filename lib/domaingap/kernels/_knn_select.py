"""Streamed selection of the kc smallest values per point (internals of :mod:`domaingap.kernels.distances`).

:class:`_TopK` and :func:`_stream_knn`: the streamed k-smallest selection (threshold filter plus sparse merge) over
the blocks of a block engine (:mod:`~domaingap.kernels._knn_int8` or :mod:`~domaingap.kernels._knn_float`), and
:func:`_class_blocks`, the cross-class blocks the streamed minima run over.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from ._knn_points import _I64_MAX, _INF


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
