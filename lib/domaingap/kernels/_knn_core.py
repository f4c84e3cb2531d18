"""Internals of :mod:`domaingap.kernels.distances`: point sets, distance blocks, streamed selection, exact refinement.

The algorithm is described in :mod:`~domaingap.kernels.distances`. Its pieces live in four modules, all
re-exported here:

* :mod:`~domaingap.kernels._knn_points`: :class:`_Points`, the original rows plus lazily built working copies (a
  float32 copy centred on a float64 mean, or, for integer data with a range of at most 255 values, an int8 copy
  shifted to [-128, 127]);
* :mod:`~domaingap.kernels._knn_int8`: the exact int8 path, :class:`_IntGram` (exact squared distances from one
  int8 GEMM with int32 accumulation, ``torch._int_mm``) and :func:`_stream_cross_min_exact`;
* :mod:`~domaingap.kernels._knn_float`: the float32 path, :class:`_FloatGram` (float32 or float64 Gram trick on
  centred data, one ``addmm``), the error bound of its certificate, :func:`_stream_cross_min_approx`, and
  :func:`_exact_sq`, the exact float64 / small-integer recomputation of selected pairs;
* :mod:`~domaingap.kernels._knn_select`: :class:`_TopK` and :func:`_stream_knn`, the streamed k-smallest
  selection (threshold filter plus sparse merge), and the cross-class blocks.

This module chooses the block engine (:func:`_engine`) and holds the switch ``_USE_INT8``.

Everything here is private; :mod:`~domaingap.kernels.intrinsic_dim` and :mod:`~domaingap.kernels.sharpness` reach it
through :mod:`~domaingap.kernels.distances`.
"""

from __future__ import annotations

# Re-exported: distances, the tests and sibling kernels import these names from here.
from ._knn_float import (  # noqa: F401
    _REFINE_BUDGET,
    _exact_sq,
    _extra_candidates,
    _FloatGram,
    _full_precision_matmul,
    _small_int_tile,
    _sort_candidates,
    _stream_cross_min_approx,
    _tol_factor,
)
from ._knn_int8 import _int_mm_ok, _Int8Failed, _int_mm_available, _IntGram, _stream_cross_min_exact  # noqa: F401
from ._knn_points import (  # noqa: F401
    _I32_MAX,
    _I64_MAX,
    _INF,
    _U32,
    _U64,
    _check_chunk,
    _column_mean,
    _default_chunk,
    _Points,
    _row_steps,
)
from ._knn_select import (  # noqa: F401
    _COL_GROUP,
    _GROUP,
    _ROW_GROUP,
    _class_blocks,
    _col_survivors,
    _offer_block,
    _row_survivors,
    _selection_threads,
    _smallest_per_row,
    _stream_knn,
    _TopK,
)

# Switches for tests and benchmarks: the exact int8 path may be turned off to exercise the
# float32 path with its certificate on integer data.
_USE_INT8 = True


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


def _engine(ref: _Points, query: _Points | None, *, exact_int: bool = True):
    offset = _int8_offset(ref, query) if exact_int else None
    if offset is not None:
        return _IntGram(ref, query, offset)
    return _FloatGram(ref, query)
