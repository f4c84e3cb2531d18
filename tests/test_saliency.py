"""kernels.saliency's edge-alignment score (issue 16): Sobel edge magnitude and the Spearman correlation of a
saliency map with it."""

import numpy as np
import pytest
import torch
from scipy import ndimage, stats

from domaingap.kernels.saliency import edge_alignment, sobel_magnitude


def _square(n=12):
    x = np.zeros((1, 1, n, n))
    x[0, 0, 3:9, 3:9] = 1.0
    return x


def test_sobel_magnitude_matches_scipy_and_averages_channels():
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 10, 10))
    g = x.mean(axis=1)
    want = np.hypot(ndimage.sobel(g, axis=1), ndimage.sobel(g, axis=2))
    np.testing.assert_allclose(sobel_magnitude(x), want)
    np.testing.assert_allclose(sobel_magnitude(torch.from_numpy(x)), want)  # tensors too
    edges = sobel_magnitude(_square())[0]
    assert edges[0, 0] == 0 and edges[5, 5] == 0 and edges[3, 5] > 0  # flat areas 0, the square's border > 0
    with pytest.raises(ValueError, match="N, C, H, W"):
        sobel_magnitude(x[0])


def test_edge_alignment_is_spearman_of_abs_saliency_with_edges():
    x = _square()
    edges = sobel_magnitude(x)
    assert edge_alignment(edges, x)[0] == pytest.approx(1.0)  # a map that IS the edges
    assert edge_alignment(-edges, x)[0] == pytest.approx(1.0)  # |saliency|
    rng = np.random.default_rng(1)
    noise = rng.random((1, 12, 12))
    want = stats.spearmanr(noise.ravel(), edges.ravel()).statistic
    assert edge_alignment(noise, x)[0] == pytest.approx(want)
    noise = rng.random((200, 12, 12))  # noise-like maps: about 0 on average
    assert abs(np.mean(edge_alignment(noise, np.repeat(x, 200, axis=0)))) < 0.05
    assert np.isnan(edge_alignment(np.ones((1, 12, 12)), x)[0])  # a constant map
    with pytest.raises(ValueError, match="must match"):
        edge_alignment(np.ones((1, 10, 10)), x)
