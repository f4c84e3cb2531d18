"""Label sharpness K_F (domaingap.kernels.sharpness): exact over all pairs, and P1's sampled estimator."""

import numpy as np
import pytest
import torch

from domaingap.kernels import _knn_core, distances
from domaingap.kernels.sharpness import SharpnessPair, label_sharpness, label_sharpness_sampled, sampled_pairs

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(params=["int8", "float32"])
def path(request, monkeypatch):
    """Integer pixels take the exact int8 path; switched off, the same inputs take the float32 path."""
    if request.param == "int8" and not _knn_core._int_mm_available(torch.device("cpu")):
        pytest.skip("torch._int_mm is not available on this CPU build")
    monkeypatch.setattr(_knn_core, "_USE_INT8", request.param == "int8")
    return request.param


def brute_pair(x, y):
    """(distance, i, j) of the closest cross-class pair, i < j, lexicographically first among ties."""
    sq = distances.brute_force_sq(x)
    y = np.asarray(y).reshape(-1)
    sq[y[:, None] == y[None, :]] = np.inf
    i, j = np.unravel_index(np.argmin(sq), sq.shape)  # row-major first: the smallest (i, j), i < j
    return float(np.sqrt(sq[i, j])), int(i), int(j)


def brute_kf(x, y):
    """K_F = max_{j,k} |y_j - y_k| / ||x_j - x_k|| with the indicator numerator, float64."""
    sq = distances.brute_force_sq(x)
    y = np.asarray(y).reshape(-1)
    num = (y[:, None] != y[None, :]).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = num / np.sqrt(sq)
    k[~np.isfinite(k)] = 0.0  # diagonal 0/0 and same-label duplicates
    return k.max()


@pytest.fixture
def rng():
    return np.random.default_rng(99)


@pytest.mark.parametrize("chunk", [8, 33, 4096])
def test_exact_matches_bruteforce(rng, chunk):
    x = rng.normal(size=(140, 9))
    for y in [rng.integers(0, 2, size=140), rng.integers(0, 4, size=140)]:
        assert label_sharpness(x, y, chunk_size=chunk) == pytest.approx(brute_kf(x, y), rel=1e-13)


@pytest.mark.parametrize("n_classes", [2, 3, 10])
@pytest.mark.parametrize("chunk", [16, 100, 4096])
def test_exact_multiclass_uint8_matches_bruteforce(rng, path, n_classes, chunk):
    """Multiclass K_F over exactly the pairs with different labels, on uint8 images (P1's input)."""
    protos = rng.integers(0, 256, size=(8, 64))
    x = np.clip(protos[rng.integers(0, 8, size=400)] + rng.integers(-20, 21, size=(400, 64)), 0, 255)
    x = x.astype(np.uint8)
    y = rng.integers(0, n_classes, size=400) * 7 - 3  # any integer coding
    got = label_sharpness(x, y, return_pair=True, chunk_size=chunk)
    dist, i, j = brute_pair(x, y)
    assert (got.distance, got.i, got.j) == (dist, i, j)
    assert got.k_f == 1.0 / dist and y[got.i] != y[got.j]
    # the same points in another order: the same K_F, the pair moves with its points
    perm = rng.permutation(400)
    moved = label_sharpness(x[perm], y[perm], return_pair=True, chunk_size=chunk)
    assert moved.k_f == got.k_f and {perm[moved.i], perm[moved.j]} == {got.i, got.j}


def test_exact_ties_give_lexicographically_first_pair(path):
    """A lattice with many cross-class pairs at the minimum distance: the pair is (smallest i, then j)."""
    g = np.stack(np.meshgrid(np.arange(7), np.arange(7)), -1).reshape(-1, 2).astype(np.uint8)
    y = (np.arange(49) * 5) % 3
    for chunk in (4, 16, 64):
        got = label_sharpness(g, y, return_pair=True, chunk_size=chunk)
        assert (got.distance, got.i, got.j) == brute_pair(g, y)


def test_binary_absolute_difference_form(rng):
    # P1 writes the numerator as |y_j - y_k|; for 0/1 labels it equals the indicator.
    x = rng.normal(size=(60, 4))
    y = rng.integers(0, 2, size=60)
    sq = distances.brute_force_sq(x)
    np.fill_diagonal(sq, np.inf)
    ref = (np.abs(y[:, None] - y[None, :]) / np.sqrt(sq)).max()
    assert label_sharpness(x, y) == pytest.approx(ref, rel=1e-13)


def test_two_classes_on_a_line():
    # classes {0, 1} at positions {0, 1} and {3, 3.5, 10}: closest cross pair is (1, 3)
    x = np.array([[0.0], [1.0], [3.0], [3.5], [10.0]])
    y = np.array([0, 0, 1, 1, 1])
    got = label_sharpness(x, y, return_pair=True)
    assert got == SharpnessPair(k_f=0.5, i=1, j=2, distance=2.0)


def test_three_classes_closest_pair_same_class_is_ignored():
    x = np.array([[0.0, 0.0], [0.0, 0.1], [5.0, 0.0], [0.0, 4.0], [3.0, 4.0]])
    y = np.array([2, 2, 0, 1, 0])  # the 0.1 pair is class 2 with itself
    got = label_sharpness(x, y, return_pair=True)
    assert (got.i, got.j) == (3, 4) and got.distance == 3.0 and got.k_f == pytest.approx(1 / 3)
    # the original code's multiclass numerator (y1 == y2) would have picked the same-class pair
    assert 1 / 0.1 > got.k_f


def test_large_offset_near_duplicate_needs_float64_refinement(rng):
    """[0, 255]-like pixels, D = 3000, a cross-class pair at distance exactly 1."""
    x = rng.integers(0, 256, size=(120, 3000)).astype(np.float32)
    y = np.repeat([0, 1], 60)
    x[90] = x[10]
    x[90, 5] = x[10, 5] + 1.0 if x[10, 5] < 255 else x[10, 5] - 1.0
    got = label_sharpness(x, y, return_pair=True, chunk_size=32)
    assert got.distance == 1.0 and (got.i, got.j) == (10, 90)
    assert got.k_f == brute_kf(x, y) == 1.0
    # naive float32 Gram trick (no centring, no refinement) is off by more than the answer
    xt = torch.from_numpy(x)
    sq = (xt * xt).sum(1)
    g = torch.mm(xt, xt.T)
    naive_sq = sq[10] + sq[90] - 2 * g[10, 90]
    assert abs(float(naive_sq) - 1.0) > 0.5


def test_duplicate_across_classes(rng):
    x = rng.normal(size=(20, 3))
    y = np.arange(20) % 2
    x[13] = x[4]
    with pytest.raises(ValueError, match=r"points 4 and 13 are identical but have different labels"):
        label_sharpness(x, y)
    assert label_sharpness(x, y, on_duplicate="inf") == np.inf
    got = label_sharpness(x, y, on_duplicate="inf", return_pair=True)
    assert (got.i, got.j, got.distance, got.k_f) == (4, 13, 0.0, np.inf)
    # a duplicate within one class is harmless
    y[13] = y[4]
    assert label_sharpness(x, y) == pytest.approx(brute_kf(x, y), rel=1e-13)


def test_images_and_tensors(rng):
    x = rng.integers(0, 256, size=(50, 3, 4, 4), dtype=np.uint8)
    y = torch.from_numpy(rng.integers(0, 3, size=(50, 1)))  # MedMNIST-style (N, 1) labels
    a = label_sharpness(torch.from_numpy(x), y)
    b = label_sharpness(x, y.numpy())
    assert isinstance(a, float) and a == b == pytest.approx(brute_kf(x.reshape(50, -1), y.numpy()), rel=1e-14)


# ---- P1's sampled estimator ----------------------------------------------------------


def test_sampled_pairs_layout():
    p = sampled_pairs(5000, n_images=1000, batch_size=500, seed=1)
    assert p.shape == (2000, 2)  # "~2000 random pairs" of the paper notes
    assert len(np.unique(p)) <= 1000  # all from one subset of 1000 images
    np.testing.assert_array_equal(p, sampled_pairs(5000, n_images=1000, batch_size=500, seed=1))
    # uneven last batch: 250 images in batches of 100, 100, 50. A 100-image loader-1 batch
    # meets 100 + 100 + 50 images, the 50-image one 50 + 50 + 50: 2 * 250 + 150 pairs
    assert sampled_pairs(300, n_images=250, batch_size=100, seed=0).shape == (650, 2)


def loop_pairs(n, n_images, batch_size, seed):
    """The original nested DataLoader loop, written out (same RNG call order)."""
    rng = np.random.default_rng(seed)
    subset = rng.choice(n, size=n_images, replace=False)
    order1 = rng.permutation(n_images)
    out = []
    for s1 in range(0, n_images, batch_size):
        b1 = subset[order1[s1 : s1 + batch_size]]
        order2 = rng.permutation(n_images)  # loader 2 reshuffles on every pass
        for s2 in range(0, n_images, batch_size):
            b2 = subset[order2[s2 : s2 + batch_size]]
            out += list(zip(b1, b2))  # element-wise pairing (zip truncates the longer)
    return np.array(out)


@pytest.mark.parametrize("n_images, batch_size", [(1000, 500), (250, 100), (7, 3)])
def test_sampled_pairs_equal_nested_loop(n_images, batch_size):
    np.testing.assert_array_equal(
        sampled_pairs(1200, n_images=n_images, batch_size=batch_size, seed=3),
        loop_pairs(1200, n_images, batch_size, 3),
    )


def test_sampled_matches_loop_reimplementation_and_is_biased_low(rng):
    x = rng.normal(size=(1500, 6))
    y = rng.integers(0, 2, size=1500)
    got = label_sharpness_sampled(x, y, seed=5)
    pairs = sampled_pairs(1500, n_images=1000, batch_size=500, seed=5)
    ref = max(
        float(y[a] != y[b]) / np.linalg.norm(x[a] - x[b]) for a, b in pairs if np.any(x[a] != x[b])
    )
    assert got == pytest.approx(ref, rel=1e-13)
    exact = label_sharpness(x, y)
    assert got < exact  # a max over 2000 of ~1.1e6 pairs
    assert label_sharpness_sampled(x, y, seed=5) == got
    assert label_sharpness_sampled(x, y, n_images=1500, batch_size=1, seed=0) <= exact


def test_sampled_drops_zero_distance_pairs(rng):
    x = rng.normal(size=(10, 2))
    x[1] = x[0]
    y = np.array([0, 1] * 5)
    # n_images = N and batch_size = 1: every ordered pair (a, b) of the permutations is hit
    got = label_sharpness_sampled(x, y, n_images=10, batch_size=1, seed=0)
    assert np.isfinite(got) and got > 0


def test_sampled_without_cross_pairs_is_zero():
    x = np.arange(8.0)[:, None]
    y = np.array([0, 0, 0, 0, 0, 0, 0, 1])
    # with a 2-image subset and one pair per pass, no sampled pair may straddle the classes
    vals = {label_sharpness_sampled(x, y, n_images=2, batch_size=2, seed=s) for s in range(20)}
    assert 0.0 in vals


# ---- bad inputs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: label_sharpness(np.zeros((4, 2)), [1, 1, 1, 1]), r"single class \(1\)"),
        (lambda: label_sharpness(np.zeros((4, 2)), [0, 1]), r"2 labels but x has 4 points"),
        (lambda: label_sharpness(np.full((4, 2), np.nan), [0, 1, 0, 1]), r"NaN or Inf"),
        (lambda: label_sharpness(np.zeros(4), [0, 1, 0, 1]), r"ndim=1"),
        (lambda: label_sharpness(np.zeros((1, 2)), [0]), r"at least 2 points"),
        (lambda: label_sharpness(np.eye(4), [0, 1, 0, 1], on_duplicate="skip"), r"on_duplicate must be one of"),
        (lambda: label_sharpness_sampled(np.eye(4), [0, 1, 0, 1]), r"n_images=1000 is out of range.*N=4"),
        (lambda: label_sharpness_sampled(np.eye(4), [0, 1, 0, 1], n_images=4, batch_size=0), r"batch_size=0"),
        (lambda: label_sharpness_sampled(np.eye(4), [0, 0, 0, 0], n_images=4), r"single class"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.gpu
@gpu
def test_cuda_matches_cpu(rng):
    x = rng.integers(0, 256, size=(4000, 784)).astype(np.uint8)
    y = rng.integers(0, 10, size=4000)
    cpu = label_sharpness(x, y, return_pair=True)
    gpu_ = label_sharpness(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda(), return_pair=True)
    assert gpu_ == cpu
    assert label_sharpness_sampled(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()) == label_sharpness_sampled(
        x, y
    )
