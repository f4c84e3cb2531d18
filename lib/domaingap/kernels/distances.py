"""Exact Euclidean k-nearest neighbours and cross-class minimum distances.

Both P1 quantities are nearest-neighbour statistics on raw pixels: the intrinsic
dimension estimators (Levina & Bickel 2005 MLE, Facco et al. 2017 TwoNN, as used by
Pope et al. 2021 and Konz & Mazurowski, ICLR 2024) need each image's k nearest
neighbours, and label sharpness K_F needs the closest pair of images with different
labels. This module computes both exactly, without ever forming an N x N matrix.

Algorithm (same kernel for both):

1. **Centre** the data on the (float64) mean of the reference set. Distances are
   translation invariant, and centring removes the large common offset of pixel data
   ([0, 255] images have norms ~ 128 sqrt(D)), which is what makes the float32 Gram
   trick ``||a||^2 + ||b||^2 - 2 a.b`` cancel catastrophically.
2. **Stream** blocks of ``chunk_size x chunk_size`` squared distances through one float32
   GEMM each (``torch.addmm``) and keep, per query row, the ``k + extra`` smallest
   candidates (a running top-k, or a running minimum for the cross-class search). For the
   self-kNN of one set only blocks on and above the block diagonal are computed, and each
   block updates both its rows and its columns, halving the GEMM work. The per-block
   top-k is two-level (minima of groups of 8 columns first), which makes it cheaper than
   the GEMM it follows. Memory is O(N (k + extra) + chunk_size^2).
3. **Refine** the kept candidates exactly: their squared distances are recomputed as
   float64 sums of squared *differences of the original inputs* (exact duplicates give
   exactly 0), then re-sorted by (distance, index). For integer data with a small range
   (uint8 pixels, or [0, 255] floats) the same sums are formed exactly in float32 tiles,
   which halves the memory traffic of this pass.
4. **Certify** each row: a point outside the candidate set has an approximate distance at
   least the largest kept one; if that, minus a bound on the float32 error, still exceeds
   the refined k-th distance, no neighbour can have been missed. Rows that fail (near-ties
   at the boundary, rare) are recomputed with the same streaming kernel in float64 and
   refined again. The float32 error bound is ``C(D) u (||a||^2 + max ||b||^2)`` with u the
   float32 unit roundoff and C(D) a statistical (not worst-case) factor calibrated on
   centred image data; see :data:`_tol_factor`.

Inputs are (N, D) or (N, C, H, W) tensors or NumPy arrays (flattened per row); the
computation runs on the device of the input tensor (NumPy inputs run on the CPU and come
back as NumPy). TF32 matrix products are switched off for the duration of a call: the
candidate search relies on full float32 products.

References: Konz & Mazurowski, ICLR 2024 (arXiv 2401.08865), Sec. 3; Pope et al.,
ICLR 2021 (github.com/ppope/dimensions), whose ``KNNComputerNoCheck`` is replaced here.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch

from ._knn_core import (
    _U32,
    _Points,
    _check_chunk,
    _column_mean,
    _exact_sq,
    _extra_candidates,
    _sort_candidates,
    _stream_smallest,
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
# certified exact search (step 4; the streaming and refinement are in _knn_core)


def _knn_sq(
    ref: _Points, k: int, *, query: _Points | None, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact squared distances (M, k) float64 and indices (M, k) of the k nearest refs."""
    self_mode = query is None
    q = ref if self_mode else query
    n_avail = ref.n - 1 if self_mode else ref.n
    kc = min(n_avail, k + _extra_candidates(k))
    approx, idx = _stream_smallest(ref, kc, query=query, chunk=chunk)
    sq = _exact_sq(ref, q, idx)
    sq, idx_sorted = _sort_candidates(sq, idx)
    if kc < n_avail:
        # Certificate: any non-candidate has approx >= max(approx of candidates).
        tol = _tol_factor(ref.d) * _U32 * (q.sq().to(torch.float64) + ref.sq_max())
        bound = approx.to(torch.float64).amax(dim=1) - tol
        bad = (bound < sq[:, k - 1]).nonzero()[:, 0]
        if bad.numel():
            sub = q.subset(bad)
            a64, i64 = _stream_smallest(
                ref,
                kc,
                query=sub,
                query_index=bad if self_mode else None,
                chunk=chunk,
                dtype=torch.float64,
            )
            s64, i64 = _sort_candidates(_exact_sq(ref, sub, i64), i64)
            sq[bad], idx_sorted[bad] = s64, i64
    return sq[:, :k], idx_sorted[:, :k]


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
        (uint8 images are kept as integers for exact refinement).
    k : int
        Number of neighbours, 1 <= k <= N - 1 (self-search) or 1 <= k <= N (query mode).
    query : tensor or array, shape (M, D) or (M, C, H, W), optional
        Points whose neighbours among ``x`` are wanted. When None, the neighbours of each
        point of ``x`` among the *other* points of ``x`` are returned; the point itself is
        excluded by index, so an exact duplicate still appears at distance 0.
    chunk_size : int, optional
        Rows per block of the streamed distance matrix (default 2048 on CPU, 8192 on
        CUDA). Memory is O(N k + chunk_size^2); results do not depend on it.

    Returns
    -------
    distances : (M, k) float64, ascending Euclidean distances (not squared), M = N or the
        number of query rows. Exact to float64 rounding of the original inputs.
    indices : (M, k) int64 row indices into ``x``, ordered by (distance, index). Where
        several points tie exactly at the k-th distance, which of them is returned is
        unspecified (the distances are the same either way). Both outputs are torch
        tensors on ``x``'s device, or NumPy arrays when ``x`` is not a tensor.

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
    ref = _Points(xt, _column_mean(xt))
    qp = None if qt is None else _Points(qt, ref.mean)
    sq, idx = _knn_sq(ref, k, query=qp, chunk=chunk)
    dist = sq.sqrt()
    if is_numpy_input(x):
        return dist.cpu().numpy(), idx.cpu().numpy()
    return dist, idx


def _cross_class_min_sq(pts: _Points, labels: torch.Tensor, chunk: int) -> tuple[float, int, int]:
    """Exact min over pairs with different labels of the squared distance, and the pair."""
    approx, idx = _stream_smallest(pts, 1, labels=labels, chunk=chunk)
    approx = approx[:, 0].to(torch.float64)
    j = idx[:, 0]
    tol = _tol_factor(pts.d) * _U32 * (pts.sq().to(torch.float64) + pts.sq_max())
    a_min = float(approx.min())
    # Every pair whose exact value could be the minimum has approx <= a_min + 2 tol.
    rows = (approx <= a_min + 2 * tol).nonzero()[:, 0]
    sq = _exact_sq(pts, pts.subset(rows), j[rows, None])[:, 0]
    b = int(sq.argmin())
    best, bi, bj = float(sq[b]), int(rows[b]), int(j[rows[b]])
    if best > 0.0:
        # Rows whose running minimum lies within tol of the exact minimum might hide a
        # second, closer partner behind it: recheck them in float64 (usually 2 rows).
        unsure = (approx < best + tol).nonzero()[:, 0]
        sub = pts.subset(unsure)
        a64, i64 = _stream_smallest(
            pts,
            1,
            query=sub,
            query_index=unsure,
            labels=labels,
            query_labels=labels[unsure],
            chunk=chunk,
            dtype=torch.float64,
        )
        sq64 = _exact_sq(pts, sub, i64)[:, 0]
        b64 = int(sq64.argmin())
        if float(sq64[b64]) < best:
            best, bi, bj = float(sq64[b64]), int(unsure[b64]), int(i64[b64, 0])
    return best, min(bi, bj), max(bi, bj)


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
    """
    xt = as_points(x, "x", min_points=2)
    lab = as_labels(y, xt.shape[0], xt.device)
    n_classes = int(torch.unique(lab).numel())
    if n_classes < 2:
        raise ValueError(f"y has a single class ({int(lab[0])}); cross-class distances need at least two classes")
    chunk = _check_chunk(chunk_size, xt.device)
    pts = _Points(xt, _column_mean(xt))
    best, i, j = _cross_class_min_sq(pts, lab, chunk)
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
