"""Exact Euclidean k-nearest neighbours and cross-class minimum distances.

Both P1 quantities are nearest-neighbour statistics on raw pixels: the intrinsic
dimension estimators (Levina & Bickel 2005 MLE, Facco et al. 2017 TwoNN, as used by
Pope et al. 2021 and Konz & Mazurowski, ICLR 2024) need each image's k nearest
neighbours, and label sharpness K_F needs the closest pair of images with different
labels. This module computes both exactly, without ever forming an N x N matrix.

Algorithm (same streaming kernel for both):

1. **Working copy.** Integer data whose values span at most 256 consecutive integers
   (uint8 pixels, or [0, 255] floats with integer values) is shifted to int8. Squared
   distances ``||a||^2 + ||b||^2 - 2 a.b`` are then *exact* integers: a.b comes from one int8
   GEMM with int32 accumulation per block (``torch._int_mm``; |a.b| <= 128^2 D < 2^31), so
   no refinement or certificate is needed, and the int8 GEMM is several times faster than a
   float32 one (VNNI on x86, IMMA on NVIDIA). Any other data is **centred** on the float64
   mean of the reference set and rounded to float32: distances are translation invariant,
   and centring removes the large common offset that makes the float32 Gram trick cancel
   catastrophically.
2. **Stream** blocks of ``chunk_size x chunk_size`` squared distances (exact int32, or
   float32 from one ``addmm``) and keep, per point, the ``kc`` smallest (``kc = k`` on the
   exact path, ``k + extra`` on the float32 path). For the self-kNN of one set only blocks on
   and above the block diagonal are computed: first the diagonal squares, whose dense
   top-k gives every point a threshold (its kc-th smallest distance within its own stripe),
   then every off-diagonal block once, offered to its rows *and* its columns. Offers go
   through a threshold filter (block minima over groups of 64 columns / 16 rows, then only
   the groups that beat a point's current kc-th value), and the few survivors are merged
   sparsely; no per-block top-k. For K_F the points are sorted by label and only the
   cross-class blocks (class c against the classes after it: n0 x n1 for two classes) are
   computed, keeping only the running minimum. Memory is O(N kc + chunk_size^2) plus the
   working copy (N x D int8 or float32).
3. **Refine** (float32 path only) exactly: the squared distances of the k best candidates
   by float32 value, and of any further candidate whose float32 value lies within twice the
   error bound of the k-th, are recomputed as float64 sums of squared *differences of the
   original inputs* (exact duplicates give exactly 0), then sorted by (distance, index).
   Candidates further out cannot be among the k nearest, so they are not refined. For
   integer data with a larger range (<= 4096) the same sums are formed exactly in float32
   tiles. For K_F every cross-class pair whose float32 value lies within twice the error
   bound of the smallest one is refined (usually one or two pairs).
4. **Certify** (float32 path only) each row: a point outside the candidate set has a float32
   distance at least the largest kept one; if that, minus a bound on the float32 error, still
   exceeds the refined k-th distance, no neighbour can have been missed. Rows that fail
   (near-ties at the boundary, rare) are recomputed with the same streaming kernel in
   float64 and refined again. The float32 error bound is ``C(D) u (||a||^2 + max ||b||^2)``
   with u the float32 unit roundoff and C(D) a statistical (not worst-case) factor
   calibrated on centred image data; see :data:`_tol_factor`.

Inputs are (N, D) or (N, C, H, W) tensors or NumPy arrays (flattened per row); the
computation runs on the device of the input tensor (NumPy inputs run on the CPU and come
back as NumPy). TF32 matrix products are switched off for the duration of a call: the
candidate search relies on full float32 products. Where ``torch._int_mm`` is unavailable
(checked once per device type), integer data takes the float32 path, with the same results.

References: Konz & Mazurowski, ICLR 2024 (arXiv 2401.08865), Sec. 3; Pope et al.,
ICLR 2021 (github.com/ppope/dimensions), whose ``KNNComputerNoCheck`` is replaced here.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np
import torch

from ._knn_core import (  # noqa: F401  (_Points, _column_mean, ... are used by tests and sibling kernels)
    _U32,
    _U64,
    _FloatGram,
    _Int8Failed,
    _Points,
    _check_chunk,
    _column_mean,
    _engine,
    _exact_sq,
    _extra_candidates,
    _sort_candidates,
    _stream_cross_min_approx,
    _stream_cross_min_exact,
    _stream_knn,
    _tol_factor,
)
from ._validation import as_labels, as_points, check_int, is_numpy_input

__all__ = ["knn", "min_cross_class_distance", "CrossClassPair", "brute_force_sq"]


class CrossClassPair(NamedTuple):
    """Closest pair of points with different labels: ``distance = ||x_i - x_j||``, i < j."""

    distance: float
    i: int
    j: int


# --------------------------------------------------------------------------------------
# exact search: streaming (exact int8 path, or float32 + refinement + certificate)


def _refine_candidates(ref: _Points, q: _Points, approx: torch.Tensor, idx: torch.Tensor, k: int, tol: torch.Tensor):
    """Exact squared distances of the candidates that can be among the k nearest, sorted.

    approx/idx (M, kc): float32 values and indices of the kept candidates. Refines the k best by
    approx and those within 2 tol of the k-th approx (any other candidate has an exact value above
    the exact value of each of the k best by approx, so it cannot be among the k nearest).
    Returns (sq (M, kc) float64 with +inf where not refined, idx (M, kc)), sorted by (sq, index).
    """
    a64, order = torch.sort(approx.to(torch.float64), dim=1)
    idx = torch.gather(idx, 1, order)
    m, kc = idx.shape
    sq = torch.full((m, kc), math.inf, dtype=torch.float64, device=idx.device)
    sq[:, :k] = _exact_sq(ref, q, idx[:, :k])
    if kc > k:
        rows, cols = (a64[:, k:] <= (a64[:, k - 1] + 2 * tol)[:, None]).nonzero(as_tuple=True)
        if rows.numel():
            cols = cols + k
            sq[rows, cols] = _exact_sq(ref, q.subset(rows), idx[rows, cols][:, None])[:, 0]
    return _sort_candidates(sq, idx)


def _int_fallback(fn):
    """Run ``fn``; if the int8 GEMM fails at run time (a shape or layout some device's BLAS rejects),
    run it again with ``exact_int=False``: the float32 path gives the same exact results."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _Int8Failed:
            kwargs["exact_int"] = False
            return fn(*args, **kwargs)

    return run


@_int_fallback
def _knn_sq(
    ref: _Points, k: int, *, query: _Points | None, chunk: int, exact_int: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact squared distances (M, k) float64 and indices (M, k) of the k nearest refs.

    Rows are sorted by (distance, index); exact ties at the k-th distance are resolved by index
    (on the float32 path except in rows that needed the float64 recheck).
    """
    self_mode = query is None
    q = ref if self_mode else query
    n_avail = ref.n - 1 if self_mode else ref.n
    dev = ref.orig.device
    eng = _engine(ref, query, exact_int=exact_int)
    common = dict(n_query=q.n, n_ref=ref.n, symmetric=self_mode, chunk=chunk, device=dev)
    if eng.exact:
        return _stream_knn(eng, k, **common).sorted_exact()
    kc = min(n_avail, k + _extra_candidates(k))
    st = _stream_knn(eng, kc, **common)
    tol = _tol_factor(ref.d) * _U32 * (q.sq().to(torch.float64) + ref.sq_max())
    sq, idx = _refine_candidates(ref, q, st.v, st.i, k, tol)
    if kc < n_avail:
        # Certificate: any non-candidate has approx >= the row's threshold (largest kept approx), so
        # an exact value > thr - tol. Strict: a non-candidate cannot even tie with the k-th, so ties
        # at the k-th are resolved by index among the candidates, as on the exact path.
        bound = st.thr.to(torch.float64) - tol
        bad = (bound <= sq[:, k - 1]).nonzero()[:, 0]
        if bad.numel():
            sub = q.subset(bad)
            eng64 = _FloatGram(ref, sub, torch.float64)
            st64 = _stream_knn(
                eng64, kc, n_query=sub.n, n_ref=ref.n, symmetric=False, chunk=chunk, device=dev,
                query_index=bad if self_mode else None,
            )
            s64, i64 = _sort_candidates(_exact_sq(ref, sub, st64.i), st64.i)
            sq[bad, :kc], idx[bad, :kc] = s64, i64
    return sq[:, :k], idx[:, :k]


# --------------------------------------------------------------------------------------
# public API


def _prepare_query(query: Any, ref: torch.Tensor) -> torch.Tensor:
    qt = as_points(query, "query")
    if qt.shape[1] != ref.shape[1]:
        raise ValueError(
            f"query has {qt.shape[1]} features per row but x has {ref.shape[1]}; "
            f"shapes query {tuple(qt.shape)} vs x {tuple(ref.shape)} after flattening"
        )
    if qt.device != ref.device:
        raise ValueError(f"query is on {qt.device} but x is on {ref.device}; put both on one device")
    return qt


def knn(x: Any, k: int, *, query: Any = None, chunk_size: int | None = None):
    """Exact Euclidean k-nearest neighbours (self excluded when ``query`` is None).

    Parameters
    ----------
    x : tensor or array, shape (N, D) or (N, C, H, W)
        Reference points; images are flattened to D = C*H*W pixels. Any real dtype
        (uint8 images, or integer-valued floats spanning <= 256 values, take the exact int8
        path).
    k : int
        Number of neighbours, 1 <= k <= N - 1 (self-search) or 1 <= k <= N (query mode).
    query : tensor or array, shape (M, D) or (M, C, H, W), optional
        Points whose neighbours among ``x`` are wanted. When None, the neighbours of each
        point of ``x`` among the *other* points of ``x`` are returned; the point itself is
        excluded by index, so an exact duplicate still appears at distance 0.
    chunk_size : int, optional
        Rows (and columns) per block of the streamed distance matrix (default 2048 on CPU,
        8192 on CUDA). Memory is O(N k + chunk_size^2) plus one working copy of x (int8 for
        small-range integer data, float32 otherwise); results do not depend on it.

    Returns
    -------
    distances : (M, k) float64, ascending Euclidean distances (not squared), M = N or the
        number of query rows. Exact to float64 rounding of the original inputs.
    indices : (M, k) int64 row indices into ``x``, ordered by (distance, index). Where
        several points tie exactly at the k-th distance, those with the smallest indices are
        returned, whatever the chunk size or device (on the float32 path, used for data that
        are not small-range integers, except in the rare rows that fail its certificate and
        are recomputed in float64: there which tied point is returned is unspecified; the
        distances are the same either way). Both outputs are torch tensors on ``x``'s device,
        or NumPy arrays when ``x`` is not a tensor.

    Raises
    ------
    ValueError
        Wrong ndim, NaN/Inf, fewer than 2 points, k out of range, or query/x mismatch.
    """
    xt = as_points(x, "x", min_points=1 if query is not None else 2)
    n = xt.shape[0]
    if query is None:
        k = check_int("k", k, low=1, high=n - 1, hint=f" (N={n} points, the point itself is excluded)")
        qt = None
    else:
        qt = _prepare_query(query, xt)
        k = check_int("k", k, low=1, high=n, hint=f" (x has N={n} points)")
    chunk = _check_chunk(chunk_size, xt.device)
    ref = _Points(xt)  # centred on its own mean, computed only if the float32 path needs it
    qp = None if qt is None else _Points(qt, ref)
    sq, idx = _knn_sq(ref, k, query=qp, chunk=chunk)
    dist = sq.sqrt()
    if is_numpy_input(x):
        return dist.cpu().numpy(), idx.cpu().numpy()
    return dist, idx


def _class_sorted(xt: torch.Tensor, labels: torch.Tensor):
    """(rows sorted by label, perm: sorted position -> original index, [(start, end)] per class)."""
    perm = torch.sort(labels, stable=True).indices
    lab = labels[perm]
    _, counts = torch.unique_consecutive(lab, return_counts=True)
    ends = torch.cumsum(counts, 0).tolist()
    bounds = list(zip([0] + ends[:-1], ends))
    if bool((perm == torch.arange(len(perm), device=perm.device)).all()):
        return xt, perm, bounds  # already sorted: no copy
    return xt[perm], perm, bounds


@_int_fallback
def _cross_class_min_sq(
    xt: torch.Tensor, labels: torch.Tensor, chunk: int, *, exact_int: bool = True
) -> tuple[float, int, int]:
    """Exact min over pairs with different labels of the squared distance, and the pair (i < j).

    Only cross-class blocks are computed (points sorted by label). Among exact ties the
    lexicographically smallest pair (i, j) is returned.
    """
    xs, perm, bounds = _class_sorted(xt, labels)
    n = xs.shape[0]
    pts = _Points(xs)
    eng = _engine(pts, None, exact_int=exact_int)
    if eng.exact:
        best, (i, j) = _stream_cross_min_exact(eng, bounds, n, chunk, perm)
        return float(best), i, j
    # Every pair whose exact value could be the minimum has approx <= min(approx) + 2 tol.
    tol = _tol_factor(pts.d) * _U32 * 2 * pts.sq_max()
    pool = _stream_cross_min_approx(eng, bounds, n, chunk, tol)
    if pool is None:  # very many near-ties: the same search in float64
        tol64 = _tol_factor(pts.d) * _U64 * 2 * pts.sq_max() * (1 + 1e-6)
        pool = _stream_cross_min_approx(_FloatGram(pts, None, torch.float64), bounds, n, chunk, tol64, cap=2**62)
    sq = _exact_sq(pts, pts.subset(pool[:, 0]), pool[:, 1:2])[:, 0]
    oi, oj = perm[pool[:, 0]], perm[pool[:, 1]]
    lo, hi = torch.minimum(oi, oj), torch.maximum(oi, oj)
    best = float(sq.min())
    at = (sq == best).nonzero()[:, 0]
    b = at[int(torch.argmin(lo[at] * n + hi[at]))]
    return best, int(lo[b]), int(hi[b])


def min_cross_class_distance(x: Any, y: Any, *, chunk_size: int | None = None) -> CrossClassPair:
    """Exact smallest Euclidean distance between two points with different labels.

    The streaming minimum behind :func:`domaingap.kernels.sharpness.label_sharpness`: over ALL
    N(N-1)/2 pairs, ``min_{y_i != y_j} ||x_i - x_j||`` (multiclass labels allowed).

    Parameters
    ----------
    x : tensor or array, shape (N, D) or (N, C, H, W)
    y : tensor or array, shape (N,) or (N, 1), class labels (at least two classes)
    chunk_size : int, optional, as in :func:`knn`.

    Returns
    -------
    CrossClassPair(distance, i, j) with i < j and y[i] != y[j]; distance is exact to
    float64 rounding of the original inputs (0.0 for a duplicated image with two labels).
    Among exactly tied pairs, the lexicographically smallest (i, j).

    Only pairs with different labels are computed: the points are sorted by label and, for
    each class, its rows meet the columns of the later classes (n0 x n1 for two classes).
    """
    xt = as_points(x, "x", min_points=2)
    lab = as_labels(y, xt.shape[0], xt.device)
    n_classes = int(torch.unique(lab).numel())
    if n_classes < 2:
        raise ValueError(f"y has a single class ({int(lab[0])}); cross-class distances need at least two classes")
    chunk = _check_chunk(chunk_size, xt.device)
    best, i, j = _cross_class_min_sq(xt, lab, chunk)
    return CrossClassPair(math.sqrt(best), i, j)


def brute_force_sq(x: Any, query: Any = None) -> np.ndarray:
    """Dense float64 squared-distance matrix (testing and tiny inputs only; O(N M) memory).

    Differences are formed explicitly in float64 (NumPy, row blocks of <= 32 MiB), so this
    is the reference the streamed kernels are tested against. Shape (M, N) with M = N
    when ``query`` is None.
    """
    xn = as_points(x, "x").cpu().numpy().astype(np.float64)
    qn = xn if query is None else as_points(query, "query").cpu().numpy().astype(np.float64)
    out = np.empty((qn.shape[0], xn.shape[0]))
    step = max(1, (4 * 2**20) // max(1, xn.size))
    for s in range(0, qn.shape[0], step):
        diff = qn[s : s + step, None, :] - xn[None, :, :]
        out[s : s + step] = np.einsum("ijk,ijk->ij", diff, diff)
    return out
