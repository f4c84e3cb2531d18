"""Tests for domaingap.kernels.similarity: CCA (P3's mean CCA), SVCCA, PWCCA, linear CKA.

References used here are written independently of the library: canonical
correlations from numpy ``eigh`` whitening of the covariances (float64), a
condensed numpy re-statement of google/svcca's ``get_cca_similarity`` steps, and
Kornblith et al.'s n x n Gram-matrix CKA with the unbiased centring of their
notebook. Known answers come from designs whose correlations are exact.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from domaingap.kernels import _cca
from domaingap.kernels import similarity as sim

RNG = np.random.default_rng


# --------------------------------------------------------------------------- #
# Independent references (numpy, float64)
# --------------------------------------------------------------------------- #
def ref_cca(a: np.ndarray, b: np.ndarray, ridge: float = 0.0) -> np.ndarray:
    """Singular values of S_aa^{-1/2} S_ab S_bb^{-1/2} via numpy eigh (relative ridge)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    n = a.shape[0]
    saa, sbb, sab = a.T @ a / (n - 1), b.T @ b / (n - 1), a.T @ b / (n - 1)
    saa = saa + ridge * saa.diagonal().max() * np.eye(len(saa))
    sbb = sbb + ridge * sbb.diagonal().max() * np.eye(len(sbb))

    def inv_sqrt(s):
        w, v = np.linalg.eigh(s)
        return v @ np.diag(w**-0.5) @ v.T

    return np.linalg.svd(inv_sqrt(saa) @ sab @ inv_sqrt(sbb), compute_uv=False)


def ref_svcca_core_mean(acts1: np.ndarray, acts2: np.ndarray, epsilon: float) -> float:
    """The steps of google/svcca get_cca_similarity (neurons x datapoints), then
    np.mean(cca_coef1) as P3: np.cov, rescale by max |cov|, drop small-variance
    neurons, add epsilon to the diagonals, pinv, eigh square root, SVD."""
    nx = acts1.shape[0]
    cov = np.cov(acts1, acts2)
    sxx, sxy, syy = cov[:nx, :nx], cov[:nx, nx:], cov[nx:, nx:]
    xmax, ymax = np.abs(sxx).max(), np.abs(syy).max()
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)
    kx, ky = np.abs(np.diag(sxx)) >= epsilon, np.abs(np.diag(syy)) >= epsilon
    sxx, syy, sxy = sxx[kx][:, kx], syy[ky][:, ky], sxy[kx][:, ky]
    sxx = sxx + epsilon * np.eye(len(sxx))
    syy = syy + epsilon * np.eye(len(syy))

    def sqrtm(m):
        w, v = np.linalg.eigh(m)
        return v @ np.diag(np.sqrt(w)) @ v.T

    arr = sqrtm(np.linalg.pinv(sxx)) @ sxy @ sqrtm(np.linalg.pinv(syy))
    return float(np.mean(np.abs(np.linalg.svd(arr, compute_uv=False))))


def ref_cka_gram(x: np.ndarray, y: np.ndarray, unbiased: bool) -> float:
    """Kornblith et al. (2019) notebook: Gram matrices + (unbiased) centring."""

    def center_gram(g):
        g = g.copy()
        n = g.shape[0]
        if unbiased:
            np.fill_diagonal(g, 0)
            means = g.sum(0) / (n - 2)
            means -= means.sum() / (2 * (n - 1))
            g -= means[:, None]
            g -= means[None, :]
            np.fill_diagonal(g, 0)
        else:
            h = np.eye(n) - 1.0 / n
            g = h @ g @ h
        return g

    gx, gy = center_gram(x @ x.T), center_gram(y @ y.T)
    return float((gx * gy).sum() / np.sqrt((gx * gx).sum() * (gy * gy).sum()))


def exact_design(n: int, scales, corrs, seed: int = 0):
    """a, b with canonical correlations exactly ``corrs`` and canonical variates of
    ``a`` exactly its (orthogonal, centred) columns with norms ``scales``."""
    p = len(corrs)
    z = RNG(seed).normal(size=(n, 2 * p))
    q, _ = np.linalg.qr(z - z.mean(0))  # orthonormal and centred columns
    c = np.asarray(corrs, dtype=float)
    a = q[:, :p] * np.asarray(scales, dtype=float)
    b = q[:, :p] * c + q[:, p:] * np.sqrt(1 - c**2)
    return a, b


def correlated(n=300, p=6, q=4, seed=0):
    rng = RNG(seed)
    z = rng.normal(size=(n, 3))
    a = z @ rng.normal(size=(3, p)) + 0.7 * rng.normal(size=(n, p)) + 5.0
    b = z @ rng.normal(size=(3, q)) + 0.9 * rng.normal(size=(n, q)) - 2.0
    return a, b


# --------------------------------------------------------------------------- #
# CCA: known answers and references
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("method", ["svd", "qr"])
def test_cca_exact_design_known_values(method):
    corrs = [0.95, 0.7, 0.4, 0.1]
    a, b = exact_design(200, scales=[3.0, 1.0, 0.5, 2.0], corrs=corrs)
    rho = sim.cca(a, b, method=method, epsilon=0.0)
    assert isinstance(rho, np.ndarray) and rho.dtype == np.float64  # numpy in, numpy out
    np.testing.assert_allclose(rho, corrs, atol=1e-12)
    rho_t = sim.cca(torch.from_numpy(a), torch.from_numpy(b), method=method, epsilon=0.0)
    assert isinstance(rho_t, torch.Tensor) and rho_t.dtype == torch.float64
    np.testing.assert_allclose(rho_t.numpy(), corrs, atol=1e-12)
    assert sim.mean_cca(a, b) == pytest.approx(np.mean(corrs), abs=1e-10)


@pytest.mark.parametrize("ridge", [0.0, 1e-12, 1e-2])
def test_cca_svd_and_qr_match_numpy_eigh_reference(ridge):
    a, b = correlated()
    ref = ref_cca(a, b, ridge)
    for method in ("svd", "qr"):
        got = sim.cca(a, b, epsilon=ridge, method=method)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-11, err_msg=method)
    # The ridge must matter at 1e-2, or the test above would not test it.
    if ridge == 1e-2:
        assert np.abs(ref - ref_cca(a, b)).max() > 1e-4


def test_mean_cca_matches_google_svcca_steps_with_dropped_neurons():
    a, b = correlated(n=500, p=8, q=6, seed=3)
    a[:, 2] = 4.0  # dead ReLU channel: dropped by remove_small
    b[:, 0] = 1e-9 * RNG(1).normal(size=500)  # relative variance << 1e-12
    b[:, 4] *= 1e-2  # small but kept (relative variance ~1e-4)
    ref = ref_svcca_core_mean(a.T, b.T, 1e-12)
    # Tight only while conditioning is moderate: svcca's pinv-then-sqrt route loses
    # about cond(S) * eps (a kept neuron at relative variance 1e-8 moves it by ~1e-8).
    assert sim.mean_cca(a, b) == pytest.approx(ref, abs=1e-11)
    assert sim.cca(a, b).shape == (5,)  # min(8 - 1, 6 - 1)


def test_shared_columns_give_k_ones_and_rest_near_zero():
    rng = RNG(4)
    n, k = 4000, 3
    shared = rng.normal(size=(n, k))
    a = np.hstack([shared, rng.normal(size=(n, 5))])
    b = np.hstack([rng.normal(size=(n, 4)), shared])  # shared columns elsewhere
    rho = sim.cca(a, b)
    assert rho.shape == (7,)  # min(8, 7)
    np.testing.assert_allclose(rho[:k], 1.0, atol=1e-9)
    # Independent columns: sampling-level correlations, O(sqrt(p q / n)).
    assert rho[k:].max() < 0.12


@pytest.mark.parametrize("method", ["svd", "qr"])
def test_cca_invariant_to_invertible_linear_maps_and_shifts(method):
    a, b = correlated(seed=5)
    rng = RNG(6)
    ma = rng.normal(size=(6, 6)) + 3 * np.eye(6)
    mb = rng.normal(size=(4, 4)) + 3 * np.eye(4)
    base = sim.cca(a, b, method=method, epsilon=0.0)
    moved = sim.cca(a @ ma + 7.0, b @ mb - 1.0, method=method, epsilon=0.0)
    np.testing.assert_allclose(moved, base, atol=1e-10)
    # Same data through an invertible map: every correlation is 1.
    assert sim.mean_cca(a, a @ ma + 3.0, epsilon=0.0) == pytest.approx(1.0, abs=1e-10)


def test_cca_sorted_and_in_unit_interval():
    a, b = correlated(n=80, p=5, q=7, seed=7)
    rho = sim.cca(a, b)
    assert rho.shape == (5,)
    assert np.all(np.diff(rho) <= 0) and rho.min() >= 0 and rho.max() <= 1


def test_numpy_torch_and_float32_inputs_agree():
    a, b = correlated(seed=8)
    from_np = sim.mean_cca(a, b)
    from_t = sim.mean_cca(torch.from_numpy(a), torch.from_numpy(b))
    assert from_np == from_t
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    # float32 in, float64 compute: equals the float64 result on the rounded values.
    assert sim.mean_cca(torch.from_numpy(a32), b32) == pytest.approx(
        sim.mean_cca(a32.astype(np.float64), b32.astype(np.float64)), abs=1e-14
    )


def test_all_neurons_dead_gives_zero_with_warning():
    a, b = correlated(seed=9)
    with pytest.warns(RuntimeWarning, match="variance below epsilon"):
        assert sim.mean_cca(np.ones_like(a), b) == 0.0


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #
def test_errors_on_bad_shapes_and_values():
    a, b = correlated()
    with pytest.raises(ValueError, match=r"same number of samples.*\(300, 6\).*\(299, 4\)"):
        sim.mean_cca(a, b[:-1])
    with pytest.raises(ValueError, match=r"2-D.*\(300,\).*x\[:, None\]"):
        sim.cca(a[:, 0], b)
    with pytest.raises(ValueError, match=r"b must be 2-D.*\(300, 4, 1\)"):
        sim.linear_cka(a, b[:, :, None])
    bad = a.copy()
    bad[3, 2] = np.nan
    for fn in (sim.mean_cca, sim.svcca, sim.pwcca, sim.linear_cka):
        with pytest.raises(ValueError, match="1 non-finite"):
            fn(bad, b)
    with pytest.raises(ValueError, match="method must be 'svd' or 'qr'; got 'eig'"):
        sim.cca(a, b, method="eig")
    with pytest.raises(ValueError, match="epsilon"):
        sim.mean_cca(a, b, epsilon=-1.0)
    with pytest.raises(ValueError, match=r"variance_fraction.*1.5"):
        sim.svcca(a, b, variance_fraction=1.5)
    with pytest.raises(ValueError, match="zero variance"):
        sim.linear_cka(np.ones_like(a), b)
    with pytest.raises(TypeError, match="numeric"):
        sim.mean_cca(np.array([["x"]] * 3), b[:3])


def test_too_few_samples_error_and_warning():
    rng = RNG(10)
    a, b = rng.normal(size=(20, 30)), rng.normal(size=(20, 5))
    with pytest.raises(ValueError, match=r"30 .*features but n=20.*n >= 31.*epsilon > 0"):
        sim.cca(a, b, epsilon=0.0)
    # With the ridge CCA is defined, but p + q > n - 1 forces correlations to ~1.
    with pytest.warns(RuntimeWarning, match=r"up to 16 canonical"):
        rho = sim.cca(a, b, epsilon=1e-12)
    assert rho.shape == (5,) and rho.min() > 0.999


def test_qr_rank_deficient_without_ridge_is_a_clear_error():
    a, b = correlated(seed=11)
    a[:, 1] = 2 * a[:, 0]  # collinear
    with pytest.raises(ValueError, match="rank-deficient"):
        sim.cca(a, b, epsilon=0.0, method="qr")
    # The covariance route handles it by pseudo-inverse: one direction fewer.
    rho = sim.cca(a, b, epsilon=0.0, method="svd")
    np.testing.assert_allclose(rho, ref_cca(np.delete(a, 1, axis=1), b), atol=1e-9)


# --------------------------------------------------------------------------- #
# SVCCA and PWCCA
# --------------------------------------------------------------------------- #
def test_svd_reduce_keeps_fewest_directions_reaching_fraction():
    # Exact variances (n - 1 scaled) 100, 50, 1, 0.5: 150/151.5 = 0.9901.
    a, _ = exact_design(300, scales=[10.0, np.sqrt(50), 1.0, np.sqrt(0.5)], corrs=[0.5] * 4)
    t = torch.from_numpy(a)
    assert _cca._svd_reduce(t, 0.99).shape == (300, 2)
    assert _cca._svd_reduce(t, 0.995).shape == (300, 3)
    assert _cca._svd_reduce(t, 1.0).shape == (300, 4)
    assert _cca._svd_reduce(t[:3], 1.0).shape == (3, 2)  # n < p: SVD route, rank n-1


def test_svcca_ignores_low_variance_noise_directions():
    rng = RNG(12)
    n = 1000
    z = rng.normal(size=(n, 3)) * [5.0, 4.0, 3.0]
    a = np.hstack([z, 0.01 * rng.normal(size=(n, 5))]) @ RNG(13).normal(size=(8, 8))
    b = np.hstack([z @ RNG(14).normal(size=(3, 3)), 0.01 * rng.normal(size=(n, 5))])
    # Not exactly 1: the mixing leaks a little noise into a's top directions.
    assert sim.svcca(a, b) == pytest.approx(1.0, abs=1e-4)
    assert sim.mean_cca(a, b) < 0.6  # the noise dimensions drag plain mean CCA down
    # With all variance kept, SVCCA is the plain (ridge-free) mean CCA.
    assert sim.svcca(a, b, variance_fraction=1.0) == pytest.approx(
        sim.mean_cca(a, b, epsilon=0.0), abs=1e-10
    )


def test_pwcca_known_value_on_exact_design():
    scales, corrs = [4.0, 1.0, 0.5, 2.0], [0.9, 0.6, 0.3, 0.1]
    a, b = exact_design(250, scales=scales, corrs=corrs)
    # alpha_i = sum_j |<h_i, a_j>| = scale_i for orthogonal columns.
    expected = np.dot(scales, corrs) / np.sum(scales)
    assert sim.pwcca(a, b, epsilon=0.0) == pytest.approx(expected, abs=1e-10)
    assert sim.mean_cca(a, b) == pytest.approx(np.mean(corrs), abs=1e-10)


def test_pwcca_weights_the_smaller_side_and_is_one_for_linear_maps():
    a, b = correlated(n=400, p=6, q=4, seed=15)
    m = RNG(16).normal(size=(6, 6)) + 3 * np.eye(6)
    assert sim.pwcca(a, a @ m) == pytest.approx(1.0, abs=1e-9)
    # b has fewer neurons, so both orders weight b's canonical variates.
    assert sim.pwcca(a, b) == pytest.approx(sim.pwcca(b, a), abs=1e-10)
    # Dominant shared direction (~2/3 of the weight): PWCCA well above mean CCA.
    rng = RNG(17)
    s = rng.normal(size=(400, 1))
    a2 = np.hstack([10 * s, rng.normal(size=(400, 3))])
    b2 = np.hstack([s, rng.normal(size=(400, 3))])
    assert sim.pwcca(a2, b2) > sim.mean_cca(a2, b2) + 0.3


# --------------------------------------------------------------------------- #
# Linear CKA
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("shape", [(60, 5, 7), (12, 20, 30)])  # feature- and Gram-space routes
def test_linear_cka_matches_gram_reference(unbiased, shape):
    n, p, q = shape
    rng = RNG(18)
    a = rng.normal(size=(n, p)) + 2.0
    b = a[:, :1] @ rng.normal(size=(1, q)) + rng.normal(size=(n, q))
    ref = ref_cka_gram(a - a.mean(0), b - b.mean(0), unbiased)
    assert sim.linear_cka(a, b, unbiased=unbiased) == pytest.approx(ref, abs=1e-12)
    # The unbiased estimator is invariant to shifts of the raw (uncentred) data.
    if unbiased:
        assert ref_cka_gram(a, b, True) == pytest.approx(ref, abs=1e-12)


def test_linear_cka_invariances():
    a, b = correlated(n=200, p=6, q=6, seed=19)
    base = sim.linear_cka(a, b)
    q_, _ = np.linalg.qr(RNG(20).normal(size=(6, 6)))
    assert sim.linear_cka(a @ q_, b) == pytest.approx(base, abs=1e-12)
    assert sim.linear_cka(3.7 * a + 1.0, b) == pytest.approx(base, abs=1e-12)
    assert sim.linear_cka(a, a) == pytest.approx(1.0, abs=1e-12)
    # Not invariant to a general invertible map (CCA is).
    m = np.diag([1.0, 1, 1, 1, 1, 30]) @ RNG(21).normal(size=(6, 6))
    assert abs(sim.linear_cka(a @ m, b) - base) > 0.05
    assert sim.mean_cca(a @ m, b, epsilon=0) == pytest.approx(
        sim.mean_cca(a, b, epsilon=0), abs=1e-10
    )


def test_unbiased_cka_closer_to_zero_for_independent_data():
    biased, unbiased = [], []
    for seed in range(5):
        rng = RNG(100 + seed)
        a, b = rng.normal(size=(150, 20)), rng.normal(size=(150, 20))
        biased.append(sim.linear_cka(a, b))
        unbiased.append(sim.linear_cka(a, b, unbiased=True))
    biased, unbiased = np.array(biased), np.array(unbiased)
    assert biased.max() < 0.2  # small, but biased upwards: ~sqrt(pq)/n
    assert biased.min() > 0.05
    assert np.abs(unbiased).mean() < 0.25 * biased.mean()


# --------------------------------------------------------------------------- #
# Convolutional activations (P3)
# --------------------------------------------------------------------------- #
def test_conv_to_matrix_layout_and_seeded_channels():
    act = torch.arange(2 * 100 * 3 * 4, dtype=torch.float32).reshape(2, 100, 3, 4)
    m = sim.conv_to_matrix(act, n_channels=10, seed=1)
    assert m.shape == (2 * 3 * 4, 10) and m.dtype == torch.float32
    idx = np.sort(np.random.default_rng(1).choice(100, 10, replace=False))
    # Row n*h*w + i*w + j holds act[n, :, i, j].
    assert torch.equal(m[1 * 12 + 2 * 4 + 3], act[1, idx, 2, 3])
    assert torch.equal(sim.conv_to_matrix(act, n_channels=10, seed=1), m)
    assert not torch.equal(sim.conv_to_matrix(act, n_channels=10, seed=2), m)
    full = sim.conv_to_matrix(act[:, :8], n_channels=64)
    assert torch.equal(full, act[:, :8].permute(0, 2, 3, 1).reshape(24, 8))
    # numpy in, numpy out; same channels whatever the input type.
    m_np = sim.conv_to_matrix(act.numpy(), n_channels=10, seed=1)
    assert isinstance(m_np, np.ndarray) and np.array_equal(m_np, m.numpy())
    with pytest.raises(ValueError, match=r"4-D \(N, C, h, w\).*\(2, 100, 12\)"):
        sim.conv_to_matrix(act.flatten(2))
    with pytest.raises(ValueError, match="n_channels"):
        sim.conv_to_matrix(act, n_channels=0)


def test_mean_cca_conv_is_p3_procedure():
    rng = RNG(22)
    a = rng.normal(size=(6, 20, 5, 5))
    mix = rng.normal(size=(20, 20)) * 0.3 + np.eye(20)
    b = np.einsum("nchw,cd->ndhw", a, mix) + 0.5 * rng.normal(size=a.shape)
    got = sim.mean_cca_conv(a, b, n_channels=8, repeats=3, seed=5)
    draws = np.random.default_rng(5)
    manual = []
    for _ in range(3):
        idx = np.sort(draws.choice(20, 8, replace=False))
        fa = a[:, idx].transpose(0, 2, 3, 1).reshape(-1, 8)
        fb = b[:, idx].transpose(0, 2, 3, 1).reshape(-1, 8)
        manual.append(ref_svcca_core_mean(fa.T, fb.T, 1e-12))
    assert got == pytest.approx(np.mean(manual), abs=1e-10)
    assert 0.3 < got < 0.999
    # The same network against itself (same channel indices on both sides): 1.
    assert sim.mean_cca_conv(a, a, n_channels=8, repeats=2) == pytest.approx(1.0, abs=1e-9)
    # C <= n_channels: all channels, equal to one plain mean CCA.
    assert sim.mean_cca_conv(a, b, n_channels=64) == pytest.approx(
        sim.mean_cca(sim.conv_to_matrix(a, n_channels=64), sim.conv_to_matrix(b, n_channels=64)),
        abs=1e-12,
    )
    with pytest.raises(ValueError, match=r"same shape.*\(6, 20, 5, 5\).*\(6, 19, 5, 5\)"):
        sim.mean_cca_conv(a, b[:, :19])
    with pytest.raises(ValueError, match="same number of samples"):
        sim.mean_cca_conv(a, b[:5])
    with pytest.raises(ValueError, match="repeats"):
        sim.mean_cca_conv(a, b, repeats=0)
    bad = a.copy()
    bad[:, :, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        sim.mean_cca_conv(bad, b, n_channels=8)


# --------------------------------------------------------------------------- #
# activations()
# --------------------------------------------------------------------------- #
def tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 6, 3, stride=2), nn.ReLU()),
        nn.Flatten(),
        nn.Linear(6 * 3 * 3, 5),
        nn.Dropout(0.5),
    )


def no_hooks(model):
    return all(not m._forward_hooks for m in model.modules())


def test_activations_shapes_values_and_cleanup():
    model = tiny_net()
    model.train()
    model[1].eval()  # mixed flags must come back as they were
    flags = [m.training for m in model.modules()]
    x = torch.randn(10, 1, 8, 8)
    acts = sim.activations(model, x, ["2", "3.0", "6"], batch_size=3)
    assert acts["2"].shape == (10, 4, 8, 8)
    assert acts["3.0"].shape == (10, 6, 3, 3)
    assert acts["6"].shape == (10, 5)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(acts["6"], model(x))  # eval mode: dropout off
        torch.testing.assert_close(acts["2"], model[:3](x))
    model.train()
    model[1].eval()
    assert [m.training for m in model.modules()] == flags
    assert no_hooks(model)
    assert not acts["6"].requires_grad
    # An iterable of (inputs, labels) batches gives the same result.
    loader = [(x[:4], 0), (x[4:], 1)]
    torch.testing.assert_close(sim.activations(model, loader, ["6"])["6"], acts["6"])


def test_activations_errors_leave_no_hooks():
    model = tiny_net()
    with pytest.raises(KeyError) as err:
        sim.activations(model, torch.randn(2, 1, 8, 8), ["3.0", "layer9"])
    assert isinstance(err.value, ValueError)
    assert "['layer9']" in str(err.value) and "'3.0'" in str(err.value)
    with pytest.raises(RuntimeError):  # wrong input channels: forward fails
        sim.activations(model, torch.randn(2, 3, 8, 8), ["2"])
    assert no_hooks(model) and model.training
    relu = nn.ReLU()
    twice = nn.Sequential(nn.Linear(3, 3), relu, nn.Linear(3, 3), relu)
    with pytest.raises(ValueError, match="ran 2 times"):
        sim.activations(twice, torch.randn(2, 3), ["1"])
    assert no_hooks(twice)
    with pytest.raises(ValueError, match="duplicate"):
        sim.activations(model, torch.randn(2, 1, 8, 8), ["2", "2"])
    with pytest.raises(ValueError, match="batch_size"):
        sim.activations(model, torch.randn(2, 1, 8, 8), ["2"], batch_size=0)


# --------------------------------------------------------------------------- #
# GPU
# --------------------------------------------------------------------------- #
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    a, b = correlated(n=500, p=12, q=9, seed=23)
    ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).float().cuda()
    rho = sim.cca(ta, tb, method="qr")
    assert rho.device.type == "cuda"
    np.testing.assert_allclose(rho.cpu().numpy(), sim.cca(a, b.astype(np.float32), method="qr"),
                               atol=1e-10)
    for fn in (sim.mean_cca, sim.svcca, sim.pwcca, sim.linear_cka):
        assert fn(ta, tb) == pytest.approx(fn(a, b.astype(np.float32)), abs=1e-10)
    # numpy joins the tensor's device; two tensors on different devices is an error.
    assert sim.mean_cca(ta, b) == pytest.approx(sim.mean_cca(a, b), abs=1e-10)
    with pytest.raises(ValueError, match="different devices"):
        sim.mean_cca(ta, torch.from_numpy(b))
    act = torch.randn(4, 80, 6, 6, device="cuda")
    assert sim.mean_cca_conv(act, act.mul(2)) == pytest.approx(1.0, abs=1e-9)
    model = tiny_net().cuda()
    out = sim.activations(model, torch.randn(5, 1, 8, 8), ["3.0"], out_device="cpu")
    assert out["3.0"].device.type == "cpu" and out["3.0"].shape == (5, 6, 3, 3)
