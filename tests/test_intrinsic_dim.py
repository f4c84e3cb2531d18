"""MLE and TwoNN intrinsic dimension (domaingap.kernels.intrinsic_dim).

References are computed naively in float64 from the full distance matrix; known answers
use points on linear subspaces and curved manifolds of known dimension; scikit-dimension
is checked where its definitions coincide with P1's.
"""

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_swiss_roll

from domaingap.kernels import distances
from domaingap.kernels import intrinsic_dim as ID
from domaingap.kernels._validation import DuplicatePointsWarning

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# ---- naive float64 references (full distance matrix) -------------------------------


def sorted_nonzero_neighbours(x):
    sq = distances.brute_force_sq(x)
    np.fill_diagonal(sq, np.inf)
    d = np.sqrt(np.sort(sq, axis=1))[:, :-1]
    return [row[row > 0] for row in d]  # duplicates skipped, as in Pope et al.


def mle_reference(x, k):
    inv = []
    for row in sorted_nonzero_neighbours(x):
        t = row[:k]
        inv.append(sum(np.log(t[k - 1] / t[j]) for j in range(k - 1)) / (k - 2))
    return 1.0 / np.mean(inv)


def twonn_reference(x, variant, discard_fraction=0.1):
    mu = np.sort([row[1] / row[0] for row in sorted_nonzero_neighbours(x)])
    n = len(mu)
    n_keep = n - 1 if variant == "pope" else int(n * (1 - discard_fraction))
    xs = np.log(mu[:n_keep])
    ys = -np.log(1 - np.arange(1, n_keep + 1) / n)
    return np.linalg.lstsq(xs[:, None], ys, rcond=None)[0][0]


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def embed(rng, z, ambient=100):
    """Random rotation of the d-dimensional coordinates z into R^ambient."""
    q, _ = np.linalg.qr(rng.normal(size=(ambient, ambient)))
    return z @ q[: z.shape[1]]


# ---- exact definitions ---------------------------------------------------------------


@pytest.mark.parametrize("k", [3, 5, 20])
def test_mle_matches_naive_reference(rng, k):
    x = embed(rng, rng.normal(size=(300, 4)), ambient=30)
    assert ID.mle(x, k, chunk_size=64) == pytest.approx(mle_reference(x, k), rel=1e-12)


@pytest.mark.parametrize("variant", ["pope", "facco"])
def test_twonn_matches_naive_reference(rng, variant):
    x = embed(rng, rng.normal(size=(300, 3)), ambient=30)
    assert ID.twonn(x, variant=variant, chunk_size=50) == pytest.approx(twonn_reference(x, variant), rel=1e-12)
    assert ID.twonn(x, variant="facco", discard_fraction=0.3) == pytest.approx(
        twonn_reference(x, "facco", 0.3), rel=1e-12
    )


def test_from_knn_equals_end_to_end(rng):
    x = rng.normal(size=(200, 6))
    d, _ = distances.knn(x, 25)
    assert ID.mle_from_knn(d, 20) == pytest.approx(ID.mle(x, 20), rel=1e-14)
    assert ID.twonn_from_knn(d[:, :2]) == pytest.approx(ID.twonn(x), rel=1e-14)
    assert ID.twonn_from_knn(torch.from_numpy(d), variant="facco") == pytest.approx(ID.twonn(x, variant="facco"))


def test_duplicates_are_skipped_with_warning(rng):
    x = rng.normal(size=(150, 5))
    x = np.concatenate([x, x[:4], x[:1]])  # point 0 three times, points 1-3 twice
    with pytest.warns(DuplicatePointsWarning, match=r"12 zero neighbour distances .* 9 points"):
        got = ID.mle(x, 10)
    assert got == pytest.approx(mle_reference(x, 10), rel=1e-12)
    with pytest.warns(DuplicatePointsWarning):
        assert ID.twonn(x) == pytest.approx(twonn_reference(x, "pope"), rel=1e-12)
    # from a kNN result: zeros skipped when enough columns are given ...
    d, _ = distances.knn(x, 14)
    with pytest.warns(DuplicatePointsWarning):
        assert ID.mle_from_knn(d, 10) == pytest.approx(mle_reference(x, 10), rel=1e-12)
    # ... and a clear error when not
    with pytest.raises(ValueError, match=r"point 0 has only 8 non-zero .* k=10"):
        ID.mle_from_knn(d[:, :10], 10)


def test_no_warning_without_duplicates(rng):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ID.mle(rng.normal(size=(60, 3)), 5)


# ---- known answers -------------------------------------------------------------------
# MLE is biased low as d grows at fixed N and k (Levina & Bickel 2005, Fig. 1), so its
# tolerance is wider than TwoNN's. N = 1000 points, k = 20, D = 100 after rotation.

LINEAR_TOL = {"mle": 0.2, "twonn": 0.1}


@pytest.mark.parametrize("d", [2, 5, 10])
def test_linear_subspace(rng, d):
    x = embed(rng, rng.normal(size=(1000, d)))
    got_mle, got_twonn = ID.mle(x, 20), ID.twonn(x)
    assert abs(got_mle - d) <= LINEAR_TOL["mle"] * d, got_mle
    assert abs(got_twonn - d) <= LINEAR_TOL["twonn"] * d, got_twonn


@pytest.mark.parametrize("d", [2, 5])
def test_hypersphere(rng, d):
    u = rng.normal(size=(1000, d + 1))
    x = embed(rng, u / np.linalg.norm(u, axis=1, keepdims=True))
    assert abs(ID.mle(x, 20) - d) <= 0.1 * d + 0.1
    assert abs(ID.twonn(x) - d) <= 0.1 * d
    assert abs(ID.twonn(x, variant="facco") - d) <= 0.1 * d


def test_swiss_roll():
    x, _ = make_swiss_roll(1000, random_state=0)
    assert abs(ID.mle(x, 20) - 2) <= 0.25
    assert abs(ID.twonn(x) - 2) <= 0.2


# ---- scikit-dimension where the definitions coincide --------------------------------


def test_agrees_with_scikit_dimension(rng):
    skdim = pytest.importorskip("skdim")
    x = embed(rng, rng.normal(size=(500, 4)), ambient=40)
    # skdim.id.MLE with dnoise=None, neighborhood_based=True: per point
    # d_i = kfac / sum_{j<=k} log(R_k / R_j), kfac = k-2 when unbiased=True (the j = k term
    # is log 1 = 0); comb="mle" returns 1 / mean(1 / d_i). That is exactly P1's estimator.
    sk = skdim.id.MLE(unbiased=True).fit(x, n_neighbors=20, comb="mle").dimension_
    assert ID.mle(x, 20) == pytest.approx(sk, rel=1e-10)
    # skdim.id.TwoNN(method="linear"): keeps the int(N (1 - discard_fraction)) smallest mu,
    # F_i = i / N, least squares through the origin. discard_fraction=0.1 is our "facco";
    # any discard_fraction in (0, 1/N] keeps N - 1 ratios, which is Pope et al.'s variant.
    n = len(x)
    sk_facco = skdim.id.TwoNN(discard_fraction=0.1).fit(x).dimension_
    sk_pope = skdim.id.TwoNN(discard_fraction=0.5 / n).fit(x).dimension_
    assert ID.twonn(x, variant="facco") == pytest.approx(sk_facco, rel=1e-10)
    assert ID.twonn(x, variant="pope") == pytest.approx(sk_pope, rel=1e-10)


# ---- bootstrap intervals -------------------------------------------------------------


def test_bootstrap_interval(rng):
    x = embed(rng, rng.normal(size=(400, 3)), ambient=20)
    for fn in (ID.mle, ID.twonn):
        r = fn(x, ci=0.9, n_bootstrap=300, seed=3)
        assert isinstance(r, ID.IntervalEstimate)
        assert r.low < r.estimate < r.high and r.level == 0.9 and r.n_bootstrap == 300
        assert float(r) == r.estimate == fn(x)
        assert fn(x, ci=0.9, n_bootstrap=300, seed=3) == r  # seeded
        assert fn(x, ci=0.9, n_bootstrap=300, seed=4) != r
        wider = fn(x, ci=0.99, n_bootstrap=300, seed=3)
        assert wider.low <= r.low and wider.high >= r.high
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.estimate = 1.0


# ---- MLE at several k and TwoNN from one kNN pass -------------------------------------


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicatePointsWarning)
        return fn(*args, **kwargs)


@pytest.mark.parametrize("data", ["float", "uint8_with_duplicates"])
@pytest.mark.parametrize("ci", [None, 0.9])
def test_estimate_all_equals_separate_calls(rng, data, ci):
    """One kNN pass at max(ks): every MLE and TwoNN (both variants) equals the separate call, intervals
    included (the resamples are shared, drawn with the same seed), bit for bit."""
    if data == "float":
        x = embed(rng, rng.normal(size=(300, 4)), ambient=30)
    else:
        x = rng.integers(0, 256, size=(300, 20)).astype(np.uint8)
        x = np.concatenate([x, x[:6], x[:2]])  # duplicates: zero distances are skipped
    boot = dict(ci=ci, n_bootstrap=150, seed=11)
    ks = (3, 5, 10, 20, 30)
    for variant in ("pope", "facco"):
        got = _quiet(ID.estimate_all, x, ks, variant=variant, discard_fraction=0.2, chunk_size=64, **boot)
        assert isinstance(got, ID.DimensionEstimates) and list(got.mle) == list(ks) and got.k_max == 30
        for k in ks:
            assert got.mle[k] == _quiet(ID.mle, x, k, **boot)
        assert got.twonn == _quiet(ID.twonn, x, variant=variant, discard_fraction=0.2, **boot)
        if ci is not None:
            assert isinstance(got.mle[5], ID.IntervalEstimate) and got.mle[5].low < got.mle[5].high
    # points 0, 1: three copies, each sees 2 zeros; points 2-5: two copies, each sees 1 zero
    assert got.duplicates_skipped == (0 if data == "float" else 2 * 3 * 2 + 4 * 2 * 1)


def test_estimate_all_duplicates_warn_once_like_mle(rng):
    x = rng.normal(size=(150, 5))
    x = np.concatenate([x, x[:4], x[:1]])  # point 0 three times, points 1-3 twice
    with pytest.warns(DuplicatePointsWarning, match=r"12 zero neighbour distances .* 9 points") as rec:
        got = ID.estimate_all(x, range(5, 11))
    assert len(rec) == 1 and got.duplicates_skipped == 12
    assert got.mle[10] == pytest.approx(mle_reference(x, 10), rel=1e-12)
    assert got.twonn == pytest.approx(twonn_reference(x, "pope"), rel=1e-12)


def test_estimate_all_from_knn_equals_from_knn_calls(rng):
    x = rng.normal(size=(250, 6))
    d, _ = distances.knn(x, 25)
    boot = dict(ci=0.8, n_bootstrap=100, seed=2)
    got = ID.estimate_all_from_knn(d, [5, 20], **boot)
    assert got.mle[5] == ID.mle_from_knn(d, 5, **boot) and got.mle[20] == ID.mle_from_knn(d, 20, **boot)
    assert got.twonn == ID.twonn_from_knn(d, **boot)
    only_twonn = ID.estimate_all_from_knn(d[:, :2], [], twonn=True)
    assert only_twonn.mle == {} and only_twonn.twonn == ID.twonn_from_knn(d)
    no_twonn = ID.estimate_all(x, 7, twonn=False)
    assert no_twonn.twonn is None and no_twonn.mle == {7: ID.mle(x, 7)}


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ID.estimate_all(np.random.rand(30, 2), [2, 5]), r"k=2 is out of range"),
        (lambda: ID.estimate_all(np.random.rand(30, 2), [5, 30]), r"k=30 is out of range.*N=30"),
        (lambda: ID.estimate_all(np.random.rand(30, 2), [], twonn=False), r"nothing to estimate"),
        (lambda: ID.estimate_all(np.random.rand(30, 2), "abc"), r"k must be an integer"),
        (lambda: ID.estimate_all(np.random.rand(30, 2), None), r"ks must be an integer or an iterable"),
        (lambda: ID.estimate_all(np.random.rand(30, 2), [5], variant="x"), r"variant must be one of"),
        (lambda: ID.estimate_all_from_knn(np.ones((5, 3)), [4]), r"K=3 columns but k=4"),
    ],
)
def test_estimate_all_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---- bad inputs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ID.mle(np.zeros((10, 2)), 2), r"k=2 is out of range.*k - 2"),
        (lambda: ID.mle(np.random.rand(10, 2), 10), r"k=10 is out of range.*N=10"),
        (lambda: ID.mle(np.random.rand(2, 2), 3), r"at least 3 points"),
        (lambda: ID.twonn(np.random.rand(2, 3)), r"at least 3 points"),
        (lambda: ID.mle(np.random.rand(5), 3), r"ndim=1"),
        (lambda: ID.mle(np.array([[np.nan, 1.0]] * 5), 3), r"NaN or Inf"),
        (lambda: ID.mle(np.random.rand(30, 2), 5, ci=1.5), r"ci must be None or a confidence level"),
        (lambda: ID.mle(np.random.rand(30, 2), 5, ci=0.9, n_bootstrap=0), r"n_bootstrap=0"),
        (lambda: ID.twonn(np.random.rand(30, 2), variant="levina"), r"variant must be one of"),
        (lambda: ID.twonn(np.random.rand(30, 2), variant="facco", discard_fraction=1.0), r"discard_fraction"),
        (lambda: ID.mle_from_knn(np.ones(5), 3), r"shape \(N, K\)"),
        (lambda: ID.mle_from_knn(np.ones((5, 3)), 4), r"K=3 columns but k=4"),
        (lambda: ID.mle_from_knn(np.array([[1.0, 0.5, 2.0]] * 4), 3), r"sorted ascending .*row 0"),
        (lambda: ID.mle_from_knn(np.array([[-1.0, 0.5, 2.0]] * 4), 3), r"non-negative"),
        (lambda: ID.twonn_from_knn(np.ones((5, 1))), r"K=1 columns but TwoNN needs at least 2"),
        (lambda: ID.twonn_from_knn(np.ones((5, 2))), r"undefined"),
        (lambda: ID.twonn(np.arange(3.0)[:, None], variant="facco", discard_fraction=0.5), r"keeps 1 of N=3"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.gpu
@gpu
def test_cuda_matches_cpu(rng):
    x = rng.normal(size=(2000, 50)).astype(np.float32)
    assert ID.mle(torch.from_numpy(x).cuda(), 20) == pytest.approx(ID.mle(x, 20), rel=1e-12)
    assert ID.twonn(torch.from_numpy(x).cuda()) == pytest.approx(ID.twonn(x), rel=1e-12)
