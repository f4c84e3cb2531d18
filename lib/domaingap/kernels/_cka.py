"""Linear CKA (Kornblith et al. 2019), biased and unbiased.

Public as :func:`domaingap.kernels.similarity.linear_cka`; import it from there.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ._sim_inputs import ArrayLike, _center, _pair2d

__all__ = ["linear_cka"]


# --------------------------------------------------------------------------- #
# CKA
# --------------------------------------------------------------------------- #
def _hsic_terms(x: Tensor, y: Tensor, unbiased: bool, gram: bool) -> Tensor:
    """HSIC (up to a factor common to all pairs) of centred ``x`` (n x p), ``y`` (n x q).

    Biased: ``||x^T y||_F^2 = tr(K L)`` with ``K = x x^T`` (centred already).
    Unbiased: Song et al. (2012, eq. 5) HSIC_1 with ``K~ = K - diag(K)``, written
    in feature space so it costs O(n p q), not O(n^2).
    """
    n = x.shape[0]
    if gram:
        k, l_ = x @ x.T, y @ y.T
        if not unbiased:
            return (k * l_).sum()
        k.diagonal().zero_()
        l_.diagonal().zero_()
        k1, l1 = k.sum(1), l_.sum(1)
        tr = (k * l_).sum()
        sk, sl = k1.sum(), l1.sum()
        kl = k1 @ l1
    else:
        cross = torch.linalg.matrix_norm(x.T @ y).square()
        if not unbiased:
            return cross
        dk, dl = x.square().sum(1), y.square().sum(1)
        xs, ys = x.sum(0), y.sum(0)  # ~0 after centring, kept for exactness
        tr = cross - dk @ dl
        k1, l1 = x @ xs - dk, y @ ys - dl
        sk, sl = k1.sum(), l1.sum()
        kl = k1 @ l1
    return (tr + sk * sl / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * kl) / (n * (n - 3))


def linear_cka(a: ArrayLike, b: ArrayLike, *, unbiased: bool = False) -> float:
    """Linear centred kernel alignment (Kornblith, Norouzi, Lee & Hinton, ICML 2019).

    ``CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with linear kernels
    ``K = a a^T``, ``L = b b^T`` of the centred activations; biased form
    ``||a^T b||_F^2 / (||a^T a||_F ||b^T b||_F)``. Invariant to orthogonal maps
    and isotropic scaling of either side, *not* to arbitrary invertible linear
    maps (unlike CCA). ``unbiased=True`` uses the unbiased HSIC_1 estimator of Song
    et al. (JMLR 2012), as in Nguyen, Raghu & Kornblith (ICLR 2021), which removes
    the positive bias of CKA between independent representations when ``n`` is
    not much larger than the number of features.

    Args:
        a: activations, shape ``(n_samples, p)``.
        b: activations, shape ``(n_samples, q)``.
        unbiased: use the unbiased HSIC estimator (needs ``n_samples >= 4``; the
            result can be slightly negative).

    Returns:
        CKA as a float (in ``[0, 1]`` for the biased form). NaN with a
        ``RuntimeWarning`` if an unbiased self-HSIC is not positive (tiny samples).

    Raises:
        ValueError: bad shapes or values, or a side with zero variance (CKA is
            undefined for a constant representation).
    """
    ta, tb = _pair2d(a, b, min_samples=4 if unbiased else 2)
    xa, xb = _center(ta), _center(tb)
    for name, x in (("a", xa), ("b", xb)):
        if not bool(torch.linalg.vector_norm(x) > 0):
            raise ValueError(f"{name} has zero variance (all rows identical); CKA is undefined")
    n, p, q = xa.shape[0], xa.shape[1], xb.shape[1]
    # Feature-space products cost n(p^2+q^2+pq); Gram matrices n^2(p+q).
    gram = n < max(p, q)
    num = _hsic_terms(xa, xb, unbiased, gram)
    den_a = _hsic_terms(xa, xa, unbiased, gram)
    den_b = _hsic_terms(xb, xb, unbiased, gram)
    if not (bool(den_a > 0) and bool(den_b > 0)):
        warnings.warn(
            "unbiased self-HSIC is not positive (too few samples); CKA is NaN",
            RuntimeWarning,
            stacklevel=2,
        )
        return float("nan")
    return float(num / (den_a.sqrt() * den_b.sqrt()))
