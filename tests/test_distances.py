"""Exact kNN and cross-class minimum (domaingap.kernels.distances) against float64 brute force.

Integer data with a small range takes the exact int8 path, everything else the float32 path with its
refinement and certificate; the ``path`` fixture runs a test on both (the int8 path switched off by
``_knn_core._USE_INT8``), so integer inputs also exercise the float32 path.
"""

import os
import threading

import numpy as np
import pytest
import torch

from domaingap.kernels import _knn_core, distances
from domaingap.kernels.distances import knn, min_cross_class_distance

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
INT_MM = _knn_core._int_mm_available(torch.device("cpu"))


@pytest.fixture(params=["int8", "float32"])
def path(request, monkeypatch):
    """Run on the exact int8 path (where torch._int_mm works) and on the float32 path."""
    if request.param == "int8" and not INT_MM:
        pytest.skip("torch._int_mm is not available on this CPU build")
    monkeypatch.setattr(_knn_core, "_USE_INT8", request.param == "int8")
    return request.param


def brute_knn(x, k, query=None):
    """Reference: dense float64 distances, ties broken by index (lexsort)."""
    sq = distances.brute_force_sq(x, query)
    if query is None:
        np.fill_diagonal(sq, np.inf)
    idx = np.array([np.lexsort((np.arange(sq.shape[1]), row))[:k] for row in sq])
    return np.sqrt(np.take_along_axis(sq, idx, 1)), idx


def brute_cross_min(x, y):
    sq = distances.brute_force_sq(x)
    y = np.asarray(y).reshape(-1)
    sq[y[:, None] == y[None, :]] = np.inf
    i, j = np.unravel_index(np.argmin(sq), sq.shape)
    return np.sqrt(sq[i, j]), min(i, j), max(i, j)


def assert_valid_ties(x, d, i, d_ref, query=None):
    """With exact ties at the k-th distance any tied point is a correct answer: check the
    distances, that each index really lies at its distance, and the (distance, index) order."""
    np.testing.assert_allclose(d, d_ref, rtol=1e-15, atol=0)
    sq = distances.brute_force_sq(x, query)
    np.testing.assert_allclose(np.sqrt(np.take_along_axis(sq, i, 1)), d, rtol=1e-15, atol=0)
    assert all(len(set(row)) == len(row) for row in i.tolist())
    if query is None:
        assert not np.any(i == np.arange(len(x))[:, None])
    same = np.diff(d, axis=1) == 0
    assert np.all(np.diff(i, axis=1)[same] > 0)


def assert_exact_integer_distances(d, d_ref):
    """Integer data: squared distances are exact integers (sqrt may differ by an ulp between torch's
    vectorised kernel and NumPy's)."""
    np.testing.assert_array_equal(np.round(d**2), np.round(d_ref**2))
    np.testing.assert_allclose(d, d_ref, rtol=1e-15, atol=0)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.mark.parametrize("chunk", [13, 64, 1000])
def test_knn_matches_bruteforce(rng, chunk):
    x = rng.normal(size=(157, 20))
    d, i = knn(x, 9, chunk_size=chunk)
    d_ref, i_ref = brute_knn(x, 9)
    assert d.shape == (157, 9) and i.shape == (157, 9)
    assert d.dtype == np.float64 and i.dtype == np.int64
    np.testing.assert_allclose(d, d_ref, rtol=1e-12)
    np.testing.assert_array_equal(i, i_ref)
    assert np.all(np.diff(d, axis=1) >= 0)
    assert not np.any(i == np.arange(157)[:, None])  # self excluded


@pytest.mark.parametrize("chunk", [5, 16, 500])
def test_knn_query_mode(rng, chunk):
    x = rng.normal(size=(90, 12)).astype(np.float32)
    q = rng.normal(size=(37, 12)).astype(np.float32)
    d, i = knn(x, 6, query=q, chunk_size=chunk)
    d_ref, i_ref = brute_knn(x, 6, q)
    assert d.shape == (37, 6)
    np.testing.assert_allclose(d, d_ref, rtol=1e-12)
    np.testing.assert_array_equal(i, i_ref)
    # k = N is allowed in query mode: every point is returned once
    d_all, i_all = knn(x, 90, query=q[:3])
    assert sorted(i_all[0].tolist()) == list(range(90))


def test_knn_query_of_own_points_includes_self(rng):
    x = rng.normal(size=(40, 5))
    d, i = knn(x, 3, query=x[:4])
    np.testing.assert_array_equal(i[:, 0], np.arange(4))
    assert np.all(d[:, 0] == 0.0)


def test_knn_images_tensors_and_types(rng):
    imgs = rng.integers(0, 256, size=(60, 1, 6, 6), dtype=np.uint8)
    d_np, i_np = knn(imgs, 4, chunk_size=16)
    d_t, i_t = knn(torch.from_numpy(imgs), 4, chunk_size=16)
    assert isinstance(d_t, torch.Tensor) and d_t.dtype == torch.float64 and i_t.dtype == torch.int64
    np.testing.assert_array_equal(d_t.numpy(), d_np)
    np.testing.assert_array_equal(i_t.numpy(), i_np)
    d_ref, i_ref = brute_knn(imgs.reshape(60, -1), 4)
    # integer pixels: squared distances are exact integers; sqrt may differ by an ulp
    # between torch's vectorised kernel and NumPy's
    np.testing.assert_array_equal(np.round(d_np**2), np.round(d_ref**2))
    np.testing.assert_allclose(d_np, d_ref, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(i_np, i_ref)


def test_knn_duplicates_appear_at_zero(rng):
    x = rng.normal(size=(50, 8))
    x[10] = x[3]
    x[11] = x[3]
    d, i = knn(x, 3)
    assert d[3, 0] == 0.0 and d[3, 1] == 0.0 and set(i[3, :2]) == {10, 11}
    assert d[10, 0] == 0.0 and set(i[10, :2]) == {3, 11}
    assert d[0, 0] > 0


@pytest.mark.parametrize("chunk", [5, 16, 1000])
def test_knn_exact_ties(path, chunk):
    # integer lattice: many exactly equal distances, also at the k-th neighbour
    g = np.stack(np.meshgrid(np.arange(6), np.arange(6)), -1).reshape(-1, 2).astype(np.float64)
    d, i = knn(g, 6, chunk_size=chunk)
    d_ref, i_ref = brute_knn(g, 6)
    assert_valid_ties(g, d, i, d_ref)
    # ties at the k-th are resolved by index: the lexsort reference exactly, whatever the chunk size
    np.testing.assert_array_equal(i, i_ref)


@pytest.mark.parametrize("chunk", [100, 128, 512, 4096])
@pytest.mark.parametrize("lattice", [False, True])
def test_knn_selection_paths(rng, path, lattice, chunk):
    """Blocks of 128 / 512 columns take the grouped threshold filter (64-column groups for rows, 16-row
    groups for columns), 100 the plain one, 4096 a single dense block; all must agree with brute force."""
    if lattice:  # many exact ties
        x = rng.integers(0, 6, size=(1200, 3)).astype(np.float64)
    else:
        x = rng.normal(size=(1200, 3))
    d, i = knn(x, 5, chunk_size=chunk)
    d_ref, i_ref = brute_knn(x, 5)
    if lattice:
        assert_valid_ties(x, d, i, d_ref)
        if path == "int8":  # the float32 path may resolve ties in its (rare) float64 recheck rows freely
            np.testing.assert_array_equal(i, i_ref)
    else:
        np.testing.assert_allclose(d, d_ref, rtol=1e-15, atol=0)
        np.testing.assert_array_equal(i, i_ref)


def test_knn_uint8_images_both_paths_exact(rng, path):
    """Real-image-like uint8 data: exact integer squared distances and the lexsort indices on both paths."""
    base = rng.integers(0, 256, size=(40, 300))
    x = np.clip(base[rng.integers(0, 40, size=700)] + rng.integers(-6, 7, size=(700, 300)), 0, 255).astype(np.uint8)
    x[5] = x[600]  # an exact duplicate
    d, i = knn(x, 12, chunk_size=256)
    d_ref, i_ref = brute_knn(x, 12)
    assert_exact_integer_distances(d, d_ref)
    np.testing.assert_array_equal(i, i_ref)
    assert d[5, 0] == 0.0 and i[5, 0] == 600
    q = x[::7]
    dq, iq = knn(x, 4, query=q, chunk_size=100)
    dq_ref, iq_ref = brute_knn(x, 4, q)
    assert_exact_integer_distances(dq, dq_ref)
    np.testing.assert_array_equal(iq, iq_ref)


@pytest.mark.parametrize(
    "make, expect_int8",
    [
        (lambda r: r.integers(0, 256, size=(150, 40)).astype(np.uint8), True),
        (lambda r: r.integers(1000, 1256, size=(150, 40)).astype(np.float64), True),  # integer floats, offset
        (lambda r: (r.integers(0, 256, size=(150, 40)) + 10**12).astype(np.int64), True),  # huge offset
        (lambda r: r.integers(-128, 128, size=(150, 40)).astype(np.int8), True),
        (lambda r: r.integers(0, 257, size=(150, 40)).astype(np.int16), False),  # range 256 > 255
        (lambda r: r.integers(0, 4000, size=(150, 40)).astype(np.int32), False),
        (lambda r: r.integers(0, 256, size=(150, 40)) + 0.5, False),  # not integers
    ],
)
def test_engine_choice_and_exactness(rng, make, expect_int8):
    """The exact int8 path is taken exactly for integer data spanning <= 256 values; results are exact
    either way."""
    x = make(rng)
    if expect_int8:  # the choice itself, so that the fast path cannot silently stop being used
        assert INT_MM
    eng = distances._engine(distances._Points(torch.from_numpy(x)), None)
    assert isinstance(eng, _knn_core._IntGram) == (expect_int8 and INT_MM)
    d, i = knn(x, 7, chunk_size=64)
    d_ref, i_ref = brute_knn(x, 7)
    np.testing.assert_allclose(d, d_ref, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(i, i_ref)


@pytest.mark.parametrize("d", [33000, 140000])
def test_int8_path_wide_images(rng, d):
    """D > 32,767: int64 distance blocks; D > 131,064: the int8 GEMM is split over pixel pieces."""
    if not INT_MM:
        pytest.skip("torch._int_mm is not available on this CPU build")
    x = rng.integers(0, 256, size=(24, d)).astype(np.uint8)
    x[3] = x[17]
    x[4, :] = 255
    x[5, :] = 0  # the largest possible squared distance, 255^2 D, between points 4 and 5
    eng = distances._engine(distances._Points(torch.from_numpy(x)), None)
    assert eng.dtype == torch.int64 and len(eng.pieces) == (2 if d > 131064 else 1)
    dd, ii = knn(x, 23, chunk_size=10)
    d_ref, i_ref = brute_knn(x, 23)
    assert_exact_integer_distances(dd, d_ref)
    np.testing.assert_array_equal(ii, i_ref)
    assert round(dd[4, -1] ** 2) == round(dd[5, -1] ** 2) == 255**2 * d
    y = np.arange(24) % 2
    y[17] = 1 - y[3]
    assert tuple(min_cross_class_distance(x, y, chunk_size=7)) == (0.0, 3, 17)


def test_knn_results_do_not_depend_on_chunk_size(rng, path):
    x = rng.integers(0, 4, size=(400, 6)).astype(np.uint8)  # very many ties
    ref = knn(x, 9, chunk_size=400)
    for chunk in (7, 64, 150):
        got = knn(x, 9, chunk_size=chunk)
        np.testing.assert_array_equal(got[0], ref[0])
        if path == "int8":
            np.testing.assert_array_equal(got[1], ref[1])


def test_float32_refinement_with_near_ties(rng):
    """A query at the centre of a sphere: every candidate lies within float32 error of the k-th, so the
    refinement must keep all of them in doubt and the certificate must send the row to float64."""
    u = rng.normal(size=(400, 50))
    sphere = 1000.0 + u / np.linalg.norm(u, axis=1, keepdims=True) * (1 + rng.uniform(0, 1e-9, size=(400, 1)))
    centre = np.full((1, 50), 1000.0)
    x = np.concatenate([sphere, centre])
    d, i = knn(x, 5, query=centre, chunk_size=64)
    d_ref, i_ref = brute_knn(x, 5, centre)
    np.testing.assert_array_equal(i[:, 1:], i_ref[:, 1:])
    np.testing.assert_allclose(d, d_ref, rtol=1e-14, atol=0)


def test_knn_k_is_n_minus_one(rng):
    x = rng.normal(size=(12, 3))
    d, i = knn(x, 11)
    d_ref, i_ref = brute_knn(x, 11)
    np.testing.assert_allclose(d, d_ref, rtol=1e-12)
    np.testing.assert_array_equal(i, i_ref)


def test_knn_large_offset_uint8_is_exact(rng):
    """[0, 255] pixels, D = 3000, neighbours at distance 1-2 among norms ~ 8e3.

    The naive float32 Gram trick (no centring, no refinement) has absolute errors of
    order eps32 * ||x||^2 ~ 4 on d^2 here, larger than the planted squared distances.
    """
    base = rng.integers(1, 255, size=(40, 3000)).astype(np.uint8)
    near = base.copy()
    near[:, 0] += 1  # distance 1 exactly
    near[::2, 1] += 1  # distance sqrt(2) for every other point
    x = np.concatenate([base, near])
    d, i = knn(x, 1, chunk_size=32)
    expected_sq = np.concatenate([np.where(np.arange(40) % 2 == 0, 2.0, 1.0)] * 2)
    np.testing.assert_array_equal(np.round(d[:, 0] ** 2), expected_sq)
    np.testing.assert_allclose(d[:, 0], np.sqrt(expected_sq), rtol=1e-15, atol=0)
    np.testing.assert_array_equal(i[:, 0], np.concatenate([np.arange(40, 80), np.arange(40)]))
    # what float32 without centring would have returned for the same pairs
    xf = torch.from_numpy(x.astype(np.float32))
    sq = (xf * xf).sum(1)
    naive = sq[:40] + sq[40:] - 2 * (xf[:40] * xf[40:]).sum(1)
    assert float((naive.double() - torch.from_numpy(expected_sq[:40])).abs().max()) > 0.5


def float32_error_ratio(x, device="cpu"):
    """Largest |float32 Gram-trick error| / (u (|a|^2 + |b|^2)) over a 200 x 200 block."""
    xt = torch.from_numpy(x).to(device)
    p = distances._Points(xt, distances._column_mean(xt))
    c, sq = p.block(0, 400, torch.float32)
    approx = torch.addmm(sq[:200, None] + sq[None, 200:], c[:200], c[200:].T, alpha=-2.0)
    exact = torch.from_numpy(distances.brute_force_sq(x[200:], x[:200]))
    scale = distances._U32 * (sq[:200, None].double() + sq[None, 200:].double()).cpu()
    return float(((approx.double().cpu() - exact).abs() / scale).max())


CALIBRATION_CASES = [(784, "uint8"), (3072, "uint8"), (1000, "normal")]


def calibration_data(rng, d, gen):
    if gen == "uint8":
        return rng.integers(0, 256, size=(400, d)).astype(np.uint8)
    return rng.normal(3.0, 1.0, size=(400, d))


def test_float32_error_within_tolerance_factor(rng):
    """The certificate's error bound C(D) u (|a|^2+|b|^2) keeps a >= 4x margin in practice."""
    for d, gen in CALIBRATION_CASES:
        ratio = float32_error_ratio(calibration_data(rng, d, gen))
        assert ratio < distances._tol_factor(d) / 4, (d, ratio)


def test_float64_fallback_path_is_exact(rng, monkeypatch):
    """Force every row to fail the float32 certificate: the float64 recheck must agree."""
    x = rng.normal(size=(80, 10))
    monkeypatch.setattr(distances, "_tol_factor", lambda d: 1e12)
    d, i = knn(x, 5, chunk_size=16)
    d_ref, i_ref = brute_knn(x, 5)
    np.testing.assert_allclose(d, d_ref, rtol=1e-12)
    np.testing.assert_array_equal(i, i_ref)
    y = np.arange(80) % 3
    assert min_cross_class_distance(x, y, chunk_size=16) == pytest.approx(brute_cross_min(x, y), rel=1e-12)


@pytest.mark.parametrize("chunk", [9, 50, 4096])
def test_min_cross_class_matches_bruteforce(rng, chunk):
    x = rng.normal(size=(121, 7))
    for y in [rng.integers(0, 2, size=121), rng.integers(0, 5, size=(121, 1))]:
        got = min_cross_class_distance(x, y, chunk_size=chunk)
        ref = brute_cross_min(x, y)
        assert got.distance == pytest.approx(ref[0], rel=1e-13)
        assert (got.i, got.j) == ref[1:]
        assert np.asarray(y).reshape(-1)[got.i] != np.asarray(y).reshape(-1)[got.j]


@pytest.mark.parametrize("chunk", [7, 64, 4096])
def test_min_cross_class_multiclass_integer_data(rng, path, chunk):
    """uint8 data with many exact ties, labels in arbitrary order (non-contiguous values, a singleton
    class): the exact minimum and, among tied pairs, the lexicographically smallest (i, j), which is
    what np.argmin over the dense matrix returns."""
    x = rng.integers(0, 3, size=(300, 4)).astype(np.uint8)
    y = rng.choice([3, 7, 100, -2], size=300)
    y[123] = 55
    for labels in (y, np.sort(y), (y == 7).astype(int)):
        got = min_cross_class_distance(x, labels, chunk_size=chunk)
        ref = brute_cross_min(x, labels)
        assert tuple(got) == (float(ref[0]), int(ref[1]), int(ref[2]))
    far = rng.integers(0, 256, size=(300, 40)).astype(np.uint8)
    got = min_cross_class_distance(far, y, chunk_size=chunk)
    ref = brute_cross_min(far, y)
    assert tuple(got) == (float(ref[0]), int(ref[1]), int(ref[2]))


def _count_block_elements(monkeypatch):
    """Record the shape of every distance block the engines compute."""
    shapes = []
    for cls, names in ((_knn_core._IntGram, ("block", "row_keys")), (_knn_core._FloatGram, ("block",))):
        for name in names:
            orig = getattr(cls, name)

            def spy(self, q0, q1, r0, r1, _orig=orig):
                shapes.append((q1 - q0, r1 - r0))
                return _orig(self, q0, q1, r0, r1)

            monkeypatch.setattr(cls, name, spy)
    return shapes


def test_min_cross_class_computes_only_cross_class_blocks(rng, path, monkeypatch):
    """K_F's search covers the n0 x n1 cross block once (binary labels), and for several classes exactly
    the pairs with different labels: no within-class block, no N x N scan."""
    shapes = _count_block_elements(monkeypatch)
    x = rng.normal(size=(500, 6)) if path == "float32" else rng.integers(0, 256, size=(500, 6)).astype(np.uint8)
    y = (rng.random(500) < 0.3).astype(int)
    n1 = int(y.sum())
    min_cross_class_distance(x, y, chunk_size=64)
    assert sum(a * b for a, b in shapes) == n1 * (500 - n1)
    shapes.clear()
    y5 = rng.integers(0, 5, size=500)
    min_cross_class_distance(x, y5, chunk_size=64)
    counts = np.bincount(y5)
    assert sum(a * b for a, b in shapes) == (500**2 - (counts**2).sum()) // 2
    assert max(a * b for a, b in shapes) <= 64 * 64


def test_knn_blocks_cover_each_pair_once(rng, path, monkeypatch):
    """Self-kNN computes the diagonal squares and each off-diagonal block once (the symmetric half), each
    block at most chunk_size^2: memory O(N k + chunk_size^2), no N x N matrix."""
    shapes = _count_block_elements(monkeypatch)
    n, chunk = 1000, 128
    x = rng.integers(0, 256, size=(n, 5)).astype(np.uint8)
    knn(x, 10, chunk_size=chunk)
    sizes = [min(chunk, n - s) for s in range(0, n, chunk)]
    assert sum(a * b for a, b in shapes) == (n * n + sum(s * s for s in sizes)) // 2
    assert max(a * b for a, b in shapes) <= chunk * chunk


def test_min_cross_class_duplicate_gives_zero(rng):
    x = rng.normal(size=(30, 4))
    y = np.zeros(30, dtype=int)
    y[15:] = 1
    x[20] = x[2]
    assert tuple(min_cross_class_distance(x, y)) == (0.0, 2, 20)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: knn(np.ones(5), 1), r"ndim=1"),
        (lambda: knn(np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), 1), r"NaN or Inf.*row 1"),
        (lambda: knn(np.array([[0.0, np.inf], [1.0, 2.0], [1.0, 1.0]]), 1), r"NaN or Inf"),
        (lambda: knn(np.zeros((5, 3)), 5), r"k=5 is out of range.*N=5"),
        (lambda: knn(np.zeros((5, 3)), 0), r"k=0 is out of range"),
        (lambda: knn(np.zeros((5, 3)), 2.5), r"k must be an integer"),
        (lambda: knn(np.zeros((1, 3)), 1), r"at least 2 points"),
        (lambda: knn(np.zeros((5, 3)), 6, query=np.zeros((2, 3))), r"k=6 is out of range"),
        (lambda: knn(np.zeros((5, 3)), 1, query=np.zeros((2, 4))), r"query has 4 features.*x has 3"),
        (lambda: knn(np.zeros((5, 3)), 1, chunk_size=0), r"chunk_size=0"),
        (lambda: knn(np.zeros((5, 0)), 1), r"no features"),
        (lambda: min_cross_class_distance(np.zeros((4, 2)), [0, 0, 0, 0]), r"single class"),
        (lambda: min_cross_class_distance(np.zeros((4, 2)), [0, 1, 0]), r"3 labels but x has 4"),
        (lambda: min_cross_class_distance(np.zeros((4, 2)), np.zeros((4, 2))), r"shape \(N,\) or \(N, 1\)"),
        (lambda: min_cross_class_distance(np.zeros((4, 2)), [0, 0.5, 1, 1]), r"whole numbers"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_tf32_setting_restored(rng):
    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        knn(rng.normal(size=(20, 3)), 2)
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(prev)


@pytest.mark.gpu
@gpu
def test_cuda_float32_error_within_tolerance_factor(rng):
    """Same margin for cuBLAS (TF32 off, as inside the kernels)."""
    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        for d, gen in CALIBRATION_CASES:
            ratio = float32_error_ratio(calibration_data(rng, d, gen), "cuda")
            assert ratio < distances._tol_factor(d) / 4, (d, ratio)
    finally:
        torch.set_float32_matmul_precision(prev)


@pytest.mark.gpu
@gpu
def test_cuda_matches_cpu(rng):
    x = rng.integers(0, 256, size=(3000, 300)).astype(np.uint8)
    x[7] = x[2000]
    y = rng.integers(0, 3, size=3000)
    d_cpu, i_cpu = knn(torch.from_numpy(x), 10, chunk_size=700)
    d_gpu, i_gpu = knn(torch.from_numpy(x).cuda(), 10, chunk_size=700)
    assert d_gpu.is_cuda and i_gpu.is_cuda
    np.testing.assert_allclose(d_gpu.cpu().numpy(), d_cpu.numpy(), rtol=1e-15, atol=0)
    np.testing.assert_array_equal(i_gpu.cpu().numpy(), i_cpu.numpy())
    q = torch.from_numpy(x[:50]).cuda()
    d_q, _ = knn(torch.from_numpy(x).cuda(), 3, query=q)
    np.testing.assert_array_equal(d_q[:, 0].cpu().numpy(), np.zeros(50))
    y[2000] = (y[7] + 1) % 3
    got = min_cross_class_distance(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda())
    assert tuple(got) == (0.0, 7, 2000)
    y[2000] = y[7]
    got = min_cross_class_distance(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda())
    assert tuple(got) == tuple(min_cross_class_distance(x, y))


class _PeakRSS:
    """Peak resident set size (bytes) above the level at entry, sampled every millisecond."""

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        self.base = self.peak = self.rss()
        self._stop = threading.Event()

        def poll():
            while not self._stop.is_set():
                self.peak = max(self.peak, self.rss())
                self._stop.wait(0.001)

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())
        self.grown = self.peak - self.base
        return False


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_memory_is_o_n_k_at_large_n(rng):
    """N = 30,000 points: an N x N int32/float32 matrix would take 3.6 GB; the streamed kNN and K_F must
    stay within 160 MB of resident memory (working copy, O(N k) state, a few 1024^2 blocks)."""
    n = 30_000
    x = torch.from_numpy(rng.integers(0, 256, size=(n, 8)).astype(np.uint8))
    y = torch.from_numpy(rng.integers(0, 3, size=n))
    knn(x[:2000], 5)  # warm-up: thread pools, kernels
    with _PeakRSS() as mem:
        d, i = knn(x, 20)
    assert d.shape == (n, 20) and mem.grown < 160 * 2**20, mem.grown / 2**20
    sample = rng.integers(0, n, size=20)
    ref = distances.brute_force_sq(x, x[sample])
    ref[np.arange(20), sample] = np.inf
    np.testing.assert_array_equal(np.round(d[sample, -1].numpy() ** 2), np.sort(ref, axis=1)[:, 19])
    with _PeakRSS() as mem:
        min_cross_class_distance(x, y)
    assert mem.grown < 160 * 2**20, mem.grown / 2**20
    xf = x.double() + 0.5  # not integers: the float32 path, whose working copy is 4 bytes per value
    with _PeakRSS() as mem:
        d2, _ = knn(xf, 20)
    assert mem.grown < 160 * 2**20, mem.grown / 2**20
    np.testing.assert_array_equal(d2[sample].numpy(), d[sample].numpy())
