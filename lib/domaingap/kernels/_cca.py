"""The CCA family of :mod:`domaingap.kernels.similarity`: CCA (P3's mean CCA), SVCCA and PWCCA.

How CCA is computed, and how it matches google/svcca (and so P3), is described in
:mod:`~domaingap.kernels.similarity`; import the public functions from there.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ._sim_inputs import _EPS64, _F64, ArrayLike, _center, _check_epsilon, _pair2d

__all__ = ["cca", "mean_cca", "pwcca", "svcca"]


# --------------------------------------------------------------------------- #
# CCA
# --------------------------------------------------------------------------- #
def _inv_sqrt_psd(s: Tensor) -> Tensor:
    """Pseudo-inverse square root of a symmetric PSD matrix ``s`` (k x k)."""
    w, v = torch.linalg.eigh(s)
    cutoff = w.abs().max() * s.shape[0] * _EPS64
    # Directions at round-off level (or negative from round-off) are treated as
    # null space, like a pseudo-inverse, rather than blown up to unit variance.
    w_is = torch.where(w > cutoff, w.clamp_min(cutoff).rsqrt(), torch.zeros_like(w))
    return (v * w_is) @ v.T


def _keep_mask(var: Tensor, epsilon: float) -> Tensor:
    """google/svcca's ``remove_small``: keep neurons with var / max(var) >= epsilon."""
    vmax = var.max()
    if not bool(vmax > 0):
        return torch.zeros_like(var, dtype=torch.bool)
    return var >= epsilon * vmax


def _check_enough_samples(n: int, p: int, q: int, epsilon: float) -> None:
    if epsilon == 0.0 and n - 1 < max(p, q):
        side, k = ("a", p) if p >= q else ("b", q)
        raise ValueError(
            f"CCA is undefined without a ridge when there are fewer centred samples than "
            f"features: {side} has {k} (non-constant) features but n={n} samples, and "
            f"CCA needs n - 1 >= {k}, i.e. n >= {k + 1}. Pass more samples, fewer "
            f"features, or epsilon > 0 (google/svcca / P3 use 1e-12)"
        )
    if n - 1 < p + q:
        warnings.warn(
            f"n - 1 = {n - 1} centred samples < p + q = {p + q} features: the two "
            f"column spaces must intersect, so up to {p + q - (n - 1)} canonical "
            f"correlations are ~1 whatever the data. Use more samples (P3 uses "
            f"~10,000 rows for 64 channels)",
            RuntimeWarning,
            stacklevel=3,
        )


class _CCAResult(NamedTuple):
    """Internal: correlations plus what PWCCA needs (covariance route only)."""

    rho: Tensor  # (k,) canonical correlations, descending
    a: Tensor | None = None  # (n, p_kept) centred kept neurons of a
    b: Tensor | None = None  # (n, q_kept)
    wa: Tensor | None = None  # (p_kept, p_kept) S_aa^{-1/2} (with ridge)
    wb: Tensor | None = None  # (q_kept, q_kept)
    u: Tensor | None = None  # (p_kept, k) left singular vectors of wa S_ab wb
    vh: Tensor | None = None  # (k, q_kept) right singular vectors, transposed


def _cca_core(a: Tensor, b: Tensor, epsilon: float, method: str) -> _CCAResult:
    """Canonical correlations of validated float64 ``a`` (n x p), ``b`` (n x q)."""
    n = a.shape[0]
    ac, bc = _center(a), _center(b)
    va = torch.linalg.vector_norm(ac, dim=0).square() / (n - 1)
    vb = torch.linalg.vector_norm(bc, dim=0).square() / (n - 1)
    keep_a, keep_b = _keep_mask(va, epsilon), _keep_mask(vb, epsilon)
    p, q = int(keep_a.sum()), int(keep_b.sum())
    empty = torch.empty(0, dtype=_F64, device=a.device)
    if p == 0 or q == 0:
        side = "a" if p == 0 else "b"
        warnings.warn(
            f"every neuron of {side} has (relative) variance below epsilon={epsilon:g}, "
            "so no canonical correlation exists; google/svcca returns zeros here",
            RuntimeWarning,
            stacklevel=3,
        )
        return _CCAResult(empty)
    _check_enough_samples(n, p, q, epsilon)
    # Index only when something was dropped: a boolean gather copies the matrix.
    ak = ac if p == a.shape[1] else ac[:, keep_a]
    bk = bc if q == b.shape[1] else bc[:, keep_b]
    # The ridge is relative to the largest variance, as google/svcca's rescaling.
    ridge_a, ridge_b = epsilon * float(va.max()), epsilon * float(vb.max())

    if method == "svd":
        saa = ak.T @ ak / (n - 1)
        sbb = bk.T @ bk / (n - 1)
        sab = ak.T @ bk / (n - 1)
        if ridge_a > 0:
            saa.diagonal().add_(ridge_a)
        if ridge_b > 0:
            sbb.diagonal().add_(ridge_b)
        wa, wb = _inv_sqrt_psd(saa), _inv_sqrt_psd(sbb)
        u, s, vh = torch.linalg.svd(wa @ sab @ wb, full_matrices=False)
        return _CCAResult(s.clamp(0.0, 1.0), ak, bk, wa, wb, u, vh)

    # method == "qr": Björck & Golub (1973). The ridge S + lam*I is the covariance of
    # the data stacked on sqrt(lam*(n-1)) * I rows whose partner rows are zero, so
    # the cross-covariance is unchanged and both routes solve the same problem.
    if ridge_a > 0 or ridge_b > 0:
        za = torch.zeros(q, p, dtype=_F64, device=a.device)
        zb = torch.zeros(p, q, dtype=_F64, device=a.device)
        eye_a = torch.eye(p, dtype=_F64, device=a.device) * math.sqrt(ridge_a * (n - 1))
        eye_b = torch.eye(q, dtype=_F64, device=a.device) * math.sqrt(ridge_b * (n - 1))
        ak = torch.cat([ak, eye_a, za])
        bk = torch.cat([bk, zb, eye_b])
    qa, ra = torch.linalg.qr(ak)
    qb, rb = torch.linalg.qr(bk)
    for name, r, m in (("a", ra, ak), ("b", rb, bk)):
        d = r.diagonal().abs()
        if bool(d.min() <= d.max() * max(m.shape) * _EPS64):
            raise ValueError(
                f"{name} is rank-deficient (collinear or constant features) and "
                "method='qr' needs full column rank when epsilon=0; use method='svd' "
                "(pseudo-inverse) or epsilon > 0"
            )
    s = torch.linalg.svdvals(qa.T @ qb)
    return _CCAResult(s.clamp(0.0, 1.0))


def cca(
    a: ArrayLike,
    b: ArrayLike,
    *,
    epsilon: float = 1e-12,
    method: Literal["svd", "qr"] = "svd",
) -> Tensor | np.ndarray:
    """All canonical correlations between two sets of activations, sorted descending.

    Canonical correlation analysis (Hotelling 1936) finds pairs of directions
    ``(w_i, v_i)`` maximising ``corr(a w_i, b v_i)`` subject to being uncorrelated
    with the earlier pairs; the correlations are invariant to any invertible linear
    map of either side (and to shifts). This follows google/svcca's
    ``get_cca_similarity`` (Raghu et al. 2017), as used by Juodelyte et al. (TMLR
    2023): neurons with relative variance below ``epsilon`` are dropped and
    ``epsilon`` (relative to the largest variance) is added to both covariance
    diagonals; see the module docstring.

    Args:
        a: activations, shape ``(n_samples, p)``; tensor or numpy array.
        b: activations, shape ``(n_samples, q)``; same samples, in the same order.
        epsilon: relative ridge and neuron-dropping threshold, in ``[0, 1)``.
            ``1e-12`` is P3's value. With ``0`` nothing is dropped and CCA needs
            ``n_samples > max(p, q)``.
        method: ``"svd"``: google/svcca's covariance route, whitening
            ``S_aa^{-1/2} S_ab S_bb^{-1/2}`` by eigendecomposition then an SVD
            (fast: one ``n x (p+q)`` Gram product). ``"qr"``: Björck & Golub (1973),
            singular values of ``Q_a^T Q_b`` from thin QR factorisations of the
            centred data (the ridge added as extra rows); more accurate for
            ill-conditioned data, about twice the cost.

    Returns:
        float64 array of shape ``(min(p_kept, q_kept),)``, values in ``[0, 1]``,
        sorted in descending order: a tensor on the inputs' device if either input
        is a tensor, else a numpy array (the package convention). Empty if every
        neuron of a side is dropped (with a ``RuntimeWarning``).

    Raises:
        ValueError: wrong ndim, different ``n_samples``, non-finite values, too few
            samples with ``epsilon=0``, unknown ``method``.
    """
    if method not in ("svd", "qr"):
        raise ValueError(f"method must be 'svd' or 'qr'; got {method!r}")
    epsilon = _check_epsilon(epsilon)
    ta, tb = _pair2d(a, b)
    rho = _cca_core(ta, tb, epsilon, method).rho
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        return rho.cpu().numpy()
    return rho


def mean_cca(a: ArrayLike, b: ArrayLike, *, epsilon: float = 1e-12) -> float:
    """Mean of all canonical correlations, exactly as P3 (Juodelyte et al., TMLR 2023).

    P3 computes ``np.mean(cca_core.get_cca_similarity(acts1.T, acts2.T,
    epsilon=1e-12)["cca_coef1"])`` -- the plain mean of all ``min(p, q)``
    correlations, *not* google/svcca's 98%-truncated ``"mean"`` and not SVCCA.

    Args:
        a: activations, shape ``(n_samples, p)``.
        b: activations, shape ``(n_samples, q)``.
        epsilon: relative ridge and neuron-dropping threshold (see :func:`cca`).

    Returns:
        Mean canonical correlation in ``[0, 1]``; 1 when ``b`` is an invertible
        linear map of ``a``. 0.0 (with a ``RuntimeWarning``) when every neuron of a
        side is (near-)constant, as google/svcca.
    """
    epsilon = _check_epsilon(epsilon)
    ta, tb = _pair2d(a, b)
    rho = _cca_core(ta, tb, epsilon, "svd").rho
    return float(rho.mean()) if rho.numel() else 0.0


def _svd_reduce(x: Tensor, variance_fraction: float) -> Tensor:
    """Centred ``x`` (n x p) projected on its top principal directions.

    Keeps the fewest directions whose variance (squared singular values) reaches
    ``variance_fraction`` of the total. Returns ``(n, k)``, possibly ``k = 0``.
    """
    xc = _center(x)
    n, p = xc.shape
    if n >= p:
        # Eigen-decomposing the p x p Gram matrix is much cheaper than an SVD of a
        # tall matrix, and loses accuracy only in directions that are dropped.
        w, v = torch.linalg.eigh(xc.T @ xc)
        w, v = w.flip(0), v.flip(1)
        var = w.clamp_min(0.0)
        scores_from = "gram"
    else:
        u, s, vh = torch.linalg.svd(xc, full_matrices=False)
        var = s.square()
        scores_from = "svd"
    total = var.sum()
    if not bool(total > 0):
        return xc[:, :0]
    rank = int((var > var[0] * max(n, p) * _EPS64).sum())
    frac = torch.cumsum(var, 0) / total
    # Small slack so that variance_fraction=1.0 is reached despite round-off.
    k = int(torch.searchsorted(frac, torch.tensor(variance_fraction - 1e-12, dtype=_F64,
                                                  device=frac.device))) + 1
    k = min(k, rank)
    if scores_from == "gram":
        return xc @ v[:, :k]
    return u[:, :k] * s[:k]


def svcca(
    a: ArrayLike,
    b: ArrayLike,
    *,
    variance_fraction: float = 0.99,
) -> float:
    """SVCCA: mean CCA after keeping the top principal directions of each side.

    Raghu, Gilmer, Yosinski & Sohl-Dickstein, "SVCCA: Singular Vector Canonical
    Correlation Analysis for Deep Learning Dynamics and Interpretability", NeurIPS
    2017. Each side is centred and reduced by SVD to the fewest directions that
    explain ``variance_fraction`` of its variance (sum of *squared* singular values;
    anatome's ``svd_reduction`` thresholds the sum of plain singular values
    instead, which keeps more directions), then the mean of all canonical
    correlations of the reduced sides is returned (no ridge is needed: the reduced
    columns are orthogonal with nonzero variance).

    Args:
        a: activations, shape ``(n_samples, p)``.
        b: activations, shape ``(n_samples, q)``.
        variance_fraction: in ``(0, 1]``; 0.99 as in Raghu et al.

    Returns:
        Mean canonical correlation of the reduced representations, in ``[0, 1]``.
    """
    variance_fraction = float(variance_fraction)
    if not (0.0 < variance_fraction <= 1.0):
        raise ValueError(f"variance_fraction must be in (0, 1]; got {variance_fraction}")
    ta, tb = _pair2d(a, b)
    ra, rb = _svd_reduce(ta, variance_fraction), _svd_reduce(tb, variance_fraction)
    if ra.shape[1] == 0 or rb.shape[1] == 0:
        side = "a" if ra.shape[1] == 0 else "b"
        warnings.warn(f"{side} has zero variance; SVCCA is 0 by convention",
                      RuntimeWarning, stacklevel=2)
        return 0.0
    rho = _cca_core(ra, rb, 0.0, "svd").rho
    return float(rho.mean()) if rho.numel() else 0.0


def pwcca(a: ArrayLike, b: ArrayLike, *, epsilon: float = 1e-12) -> float:
    """Projection-weighted CCA (Morcos, Raghu & Bengio, NeurIPS 2018).

    ``PWCCA = sum_i alpha_i rho_i / sum_i alpha_i`` with
    ``alpha_i = sum_j |<h_i, x_j>|``: ``h_i`` the unit-norm canonical variates of the
    side with fewer (kept) neurons and ``x_j`` that side's centred neuron activation
    vectors -- canonical directions that account for more of the representation
    weigh more. Like google/svcca's ``compute_pwcca``, the side with fewer neurons
    is weighted (``a`` on a tie), so the measure is not symmetric. Unlike that
    code, the canonical variates include the whitening ``S^{-1/2}`` (it projects
    with the SVD factor alone), the weighted side's own activations are used when
    it is ``b`` (it uses ``acts1``: google/svcca PR #9) and neurons are centred
    (discussed in moskomule/anatome issues #27 and #30); the variates are
    normalised rather than re-orthogonalised by QR, the same for exact CCA.

    Args:
        a: activations, shape ``(n_samples, p)``.
        b: activations, shape ``(n_samples, q)``.
        epsilon: relative ridge and neuron-dropping threshold (see :func:`cca`).

    Returns:
        Weighted mean canonical correlation in ``[0, 1]``.
    """
    epsilon = _check_epsilon(epsilon)
    ta, tb = _pair2d(a, b)
    res = _cca_core(ta, tb, epsilon, "svd")
    if res.rho.numel() == 0:
        return 0.0
    if res.a.shape[1] <= res.b.shape[1]:
        x, h = res.a, res.a @ (res.wa @ res.u)
    else:
        x, h = res.b, res.b @ (res.wb @ res.vh.T)
    h = h / torch.linalg.vector_norm(h, dim=0).clamp_min(torch.finfo(_F64).tiny)
    alpha = (h.T @ x).abs().sum(dim=1)
    return float((alpha * res.rho).sum() / alpha.sum())
