"""Label sharpness K_F of a labelled image set (P1, Konz & Mazurowski, ICLR 2024, Sec. 3.2).

    K_F = max_{j != k} |y_j - y_k| / ||x_j - x_k||_2

"how similar images can be while still being from different classes". For class labels
the numerator is the indicator 1[y_j != y_k] (for binary 0/1 labels the two coincide), so

    K_F = 1 / min_{y_j != y_k} ||x_j - x_k||_2.

* :func:`label_sharpness` computes this exactly over ALL pairs with different labels with the
  streamed minimum of :func:`domaingap.kernels.distances.min_cross_class_distance`
  (multiclass labels allowed): the points are sorted by label and only the cross-class blocks
  are computed (n0 x n1 for two classes), exactly for uint8 pixels (int8 GEMM), or in float32
  with the candidate minimum pairs refined in float64 otherwise.
* :func:`label_sharpness_sampled` reproduces the estimator of the P1 code
  (``compute_labelsharpness`` in github.com/mazurowski-lab/intrinsic-properties): a random
  subset of ``n_images`` images, two independently shuffled loaders, element-wise pairing
  of their batches, i.e. only ~n_images^2 / batch_size random pairs (2000 with the
  defaults), and the maximum of 1[y1 != y2] / ||x1 - x2|| over them. A maximum over a
  sample of pairs can only be lower than over all pairs: it is biased low. The original
  later switched to a "multiclass" numerator (y1 == y2), which measures same-label pairs;
  here the numerator is always the indicator of *different* labels.

Shapes: x (N, D) or (N, C, H, W) (tensor or NumPy array; pixels as the caller scales them,
P1 uses [0, 255]); y (N,) or (N, 1) class labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import as_labels, as_points, check_int

__all__ = ["SharpnessPair", "label_sharpness", "label_sharpness_sampled"]

_ON_DUPLICATE = ("raise", "inf")


@dataclass(frozen=True)
class SharpnessPair:
    """K_F and the pair attaining it: ``k_f = 1 / distance``, ``distance = ||x_i - x_j||``, i < j."""

    k_f: float
    i: int
    j: int
    distance: float


def label_sharpness(
    x: Any,
    y: Any,
    *,
    return_pair: bool = False,
    on_duplicate: str = "raise",
    chunk_size: int | None = None,
):
    """Exact label sharpness K_F over all pairs of points with different labels.

    Parameters
    ----------
    x : (N, D) or (N, C, H, W) tensor or array, N >= 2.
    y : (N,) or (N, 1) class labels with at least two distinct values.
    return_pair : return a :class:`SharpnessPair` (K_F, i, j, distance) instead of a float.
    on_duplicate : what to do when two identical images carry different labels
        (distance 0, K_F infinite): "raise" a ValueError naming the two indices, or "inf"
        to return ``inf``.
    chunk_size : block size of the streamed distance kernel (does not change the result).

    Returns
    -------
    float ``1 / min_{y_i != y_j} ||x_i - x_j||``, exact to float64 rounding of the inputs;
    computed on the device of ``x``. With ``return_pair``, the pair (i < j) attaining it; among
    exactly tied pairs the lexicographically smallest (i, j).
    """
    from . import distances

    if on_duplicate not in _ON_DUPLICATE:
        raise ValueError(f"on_duplicate must be one of {_ON_DUPLICATE}, got {on_duplicate!r}")
    pair = distances.min_cross_class_distance(x, y, chunk_size=chunk_size)
    if pair.distance == 0.0:
        if on_duplicate == "raise":
            raise ValueError(
                f"points {pair.i} and {pair.j} are identical but have different labels, so K_F is "
                "infinite; remove the duplicate or pass on_duplicate='inf'"
            )
        k_f = math.inf
    else:
        k_f = 1.0 / pair.distance
    if return_pair:
        return SharpnessPair(k_f, pair.i, pair.j, pair.distance)
    return k_f


def sampled_pairs(n: int, *, n_images: int = 1000, batch_size: int = 500, seed: int = 1337) -> np.ndarray:
    """The (P, 2) index pairs the original P1 estimator compares, P ~ n_images^2 / batch_size.

    A random subset of ``n_images`` of the ``n`` points; loader 1 walks it in one shuffled
    order in batches of ``batch_size``; for every batch of loader 1, loader 2 is iterated
    once more in a fresh shuffled order (a PyTorch DataLoader with shuffle=True reshuffles
    on every iteration), and the two batches are paired element-wise. Where the last
    batches differ in length (n_images not a multiple of batch_size) the longer one is
    truncated; the original code assumed equal lengths.
    """
    rng = np.random.default_rng(seed)
    subset = rng.choice(n, size=n_images, replace=False)
    pos = np.arange(n_images)
    within = pos % batch_size  # position of each loader-2 slot inside its batch
    pairs = []
    order1 = rng.permutation(n_images)
    for s1 in range(0, n_images, batch_size):
        b1 = order1[s1 : s1 + batch_size]
        order2 = rng.permutation(n_images)
        # Element-wise pairing of b1 with every loader-2 batch: slot p of loader 2 meets
        # b1[p % batch_size] when that exists (vectorised form of the nested batch loop).
        ok = within < len(b1)
        pairs.append(np.stack([subset[b1[within[ok]]], subset[order2[pos[ok]]]], axis=1))
    return np.concatenate(pairs, axis=0)


def label_sharpness_sampled(
    x: Any,
    y: Any,
    *,
    n_images: int = 1000,
    batch_size: int = 500,
    seed: int = 1337,
) -> float:
    """P1's sampled K_F estimator (biased low; see module docstring), seeded.

    Parameters
    ----------
    x : (N, D) or (N, C, H, W) tensor or array.
    y : (N,) or (N, 1) class labels.
    n_images : size M of the random subset, 2 <= M <= N (P1: 1000).
    batch_size : loader batch size (P1: 500); M^2 / batch_size pairs are compared.
    seed : seeds the subset and the shuffles (P1 left them unseeded).

    Returns
    -------
    float: max over the sampled pairs of 1[y_a != y_b] / ||x_a - x_b||, pairs at distance
    0 dropped (the original's NaN filter); 0.0 when no sampled pair has different labels.
    """
    import torch

    from . import distances

    xt = as_points(x, "x", min_points=2)
    n = xt.shape[0]
    lab = as_labels(y, n, xt.device)
    if int(torch.unique(lab).numel()) < 2:
        raise ValueError(f"y has a single class ({int(lab[0])}); label sharpness needs at least two classes")
    n_images = check_int("n_images", n_images, low=2, high=n, hint=f" (x has N={n} points)")
    batch_size = check_int("batch_size", batch_size, low=1)
    seed = check_int("seed", seed, low=0)
    pairs = torch.as_tensor(sampled_pairs(n, n_images=n_images, batch_size=batch_size, seed=seed), device=xt.device)
    a, b = pairs[:, 0], pairs[:, 1]
    pts = distances._Points(xt, mean=None)  # exact differences only: no centring needed
    sq = distances._exact_sq(pts, pts.subset(a), b[:, None])[:, 0]
    differ = lab[a] != lab[b]
    keep = sq > 0
    if not bool((differ & keep).any()):
        return 0.0
    return float(1.0 / sq[differ & keep].sqrt().min())
