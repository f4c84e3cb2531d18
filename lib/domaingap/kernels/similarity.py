"""Representation similarity: CCA (P3's mean CCA), SVCCA, PWCCA and linear CKA.

P3 (Juodelyte, Jiménez-Sánchez & Cheplygina, "Revisiting Hidden Representations in
Transfer Learning for Medical Imaging", TMLR 2023) compares networks layer by layer
with the *mean of all canonical correlations* computed by google/svcca's
``cca_core.get_cca_similarity(acts1, acts2, epsilon=1e-12)`` on convolutional
activations reshaped to ``(N*h*w, C)`` with 64 randomly chosen channels (the same
channel indices in both networks), averaged over 5 repeats. :func:`mean_cca` and
:func:`mean_cca_conv` reproduce that; :func:`svcca`, :func:`pwcca` and
:func:`linear_cka` are the usual peers, for robustness checks.

Conventions (as in anatome / scikit-dimension):

* Activations are 2-D, ``(n_samples, n_features)`` -- rows are data points, columns
  are neurons. google/svcca uses the transpose ``(neurons, data_points)``.
* Inputs may be torch tensors or numpy arrays; everything is computed in float64
  on the device of the input tensor(s) (numpy input runs on the CPU). Measures
  return Python floats; arrays (:func:`cca`, :func:`conv_to_matrix`) come back as
  tensors for tensor input and as numpy arrays for numpy input. Inputs are
  detached: these are analysis measures, not differentiable losses.

How CCA is computed, and how it matches google/svcca
----------------------------------------------------
With centred activations ``A`` (n x p) and ``B`` (n x q), covariances
``S_aa = A^T A / (n-1)`` etc., the canonical correlations are the singular values of
``S_aa^{-1/2} S_ab S_bb^{-1/2}`` (Hotelling 1936). google/svcca, and so P3:

1. rescales ``S_aa`` and ``S_bb`` by their largest absolute entry (which is the
   largest variance), so ``epsilon`` is *relative* to the largest neuron variance;
2. drops neurons whose relative variance is below ``epsilon`` (``remove_small``;
   e.g. dead ReLU channels; with ``epsilon=0`` nothing is dropped);
3. adds ``epsilon`` (relative) to the diagonals of both covariances (ridge);
4. whitens with a pseudo-inverse square root and takes the singular values.

This module does exactly these steps, so there are ``min(p_kept, q_kept)``
correlations. Two deliberate differences, both outside P3's regime: the
pseudo-inverse cut-off is ``p * float64 eps`` relative (torch/numpy rank
convention) instead of numpy ``pinv``'s fixed ``1e-15``, which stops round-off
directions of an exactly singular covariance (only possible with ``epsilon=0``)
from being whitened into spurious unit-variance noise; and correlations are
clipped to ``[0, 1]``. If every neuron of a side is dropped, google/svcca returns
zeros and so P3 recorded a mean CCA of 0: :func:`mean_cca` returns 0.0 too, with a
``RuntimeWarning``.

google/svcca's ``get_cca_similarity`` also reports ``"mean"``, the mean of the
correlations truncated at 98% of their sum; P3 did *not* use it
(``np.mean(results["cca_coef1"])``) and neither does :func:`mean_cca`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "LayerNotFoundError",
    "activations",
    "cca",
    "conv_to_matrix",
    "linear_cka",
    "mean_cca",
    "mean_cca_conv",
    "pwcca",
    "svcca",
]

ArrayLike = Any  # torch.Tensor | numpy.ndarray | nested sequences of numbers

_F64 = torch.float64
_EPS64 = float(torch.finfo(_F64).eps)


# --------------------------------------------------------------------------- #
# Input handling
# --------------------------------------------------------------------------- #
def _as_tensor(x: ArrayLike, name: str) -> Tensor:
    """Tensor view of ``x`` (no copy for tensors; numpy goes to the CPU)."""
    if isinstance(x, Tensor):
        t = x.detach()  # measures, not losses: no autograd graph through them
    else:
        arr = np.asarray(x)
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_
        ):
            raise TypeError(
                f"{name} must be a torch.Tensor or a numeric numpy array; "
                f"got {type(x).__name__} with dtype {arr.dtype}"
            )
        if not arr.flags.writeable:  # e.g. np.load(mmap_mode="r"); torch would warn
            arr = arr.copy()
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise TypeError(f"{name} must be real-valued; got dtype {t.dtype}")
    return t


def _pair(
    a: ArrayLike, b: ArrayLike, *, ndim: int, what: str, cast: bool = True
) -> tuple[Tensor, Tensor]:
    """Validate two activation arrays and return them as float64 on one device.

    ``ndim`` is the required number of dimensions and ``what`` names the layout in
    error messages, e.g. ``"(n_samples, n_features)"``. With ``cast=False`` only
    shapes and devices are checked and dtypes are kept (values are checked later,
    on the part that is used).
    """
    ta, tb = _as_tensor(a, "a"), _as_tensor(b, "b")
    # Device follows the input tensor(s); a numpy side joins the tensor's device.
    a_is_t, b_is_t = isinstance(a, Tensor), isinstance(b, Tensor)
    if a_is_t and b_is_t and ta.device != tb.device:
        raise ValueError(
            f"a and b are on different devices ({ta.device} and {tb.device}); "
            "move them to the same device"
        )
    device = ta.device if a_is_t else tb.device
    for name, t in (("a", ta), ("b", tb)):
        if t.ndim != ndim:
            hint = " (use x[:, None] for a single feature)" if ndim == 2 and t.ndim == 1 else ""
            raise ValueError(
                f"{name} must be {ndim}-D {what}; got shape {tuple(t.shape)}{hint}"
            )
    if ta.shape[0] != tb.shape[0]:
        raise ValueError(
            f"a and b must have the same number of samples (rows, one per input); "
            f"got a.shape={tuple(ta.shape)} and b.shape={tuple(tb.shape)}"
        )
    if not cast:
        return ta.to(device), tb.to(device)
    ta = ta.to(device=device, dtype=_F64)
    tb = tb.to(device=device, dtype=_F64)
    for name, t in (("a", ta), ("b", tb)):
        if t.numel() == 0:
            raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")
        # One reduction pass: NaN/inf propagate into the sum. Only when it is not
        # finite (or overflows) is the elementwise check, ~3x the cost, needed.
        if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
            n_bad = int((~torch.isfinite(t)).sum())
            raise ValueError(
                f"{name} has {n_bad} non-finite value(s) (NaN or inf) out of {t.numel()}; "
                "similarity measures need finite activations"
            )
    return ta, tb


def _pair2d(a: ArrayLike, b: ArrayLike, *, min_samples: int = 2) -> tuple[Tensor, Tensor]:
    ta, tb = _pair(a, b, ndim=2, what="(n_samples, n_features)")
    if ta.shape[0] < min_samples:
        raise ValueError(f"need at least {min_samples} samples (rows); got {ta.shape[0]}")
    return ta, tb


def _check_epsilon(epsilon: float) -> float:
    epsilon = float(epsilon)
    if not (math.isfinite(epsilon) and 0.0 <= epsilon < 1.0):
        raise ValueError(f"epsilon must be a finite number in [0, 1); got {epsilon}")
    return epsilon


def _center(x: Tensor) -> Tensor:
    return x - x.mean(dim=0, keepdim=True)


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


# --------------------------------------------------------------------------- #
# Convolutional activations (P3's procedure)
# --------------------------------------------------------------------------- #
def _check_conv(act: Tensor, name: str) -> None:
    if act.ndim != 4:
        raise ValueError(
            f"{name} must be 4-D (N, C, h, w) convolutional activations; "
            f"got shape {tuple(act.shape)}"
        )


def _check_n_channels(n_channels: int) -> int:
    if isinstance(n_channels, bool) or int(n_channels) != n_channels or n_channels < 1:
        raise ValueError(f"n_channels must be a positive integer; got {n_channels!r}")
    return int(n_channels)


def _channel_indices(c: int, n_channels: int, rng: np.random.Generator) -> np.ndarray | None:
    """Sorted random channel subset, or ``None`` for all channels when ``c <= n_channels``."""
    if c <= n_channels:
        return None
    return np.sort(rng.choice(c, size=n_channels, replace=False))


def _flatten_channels(act: Tensor, idx: np.ndarray | None) -> Tensor:
    if idx is not None:
        # Select before reshaping, so only n_channels of C channels are copied.
        act = act.index_select(1, torch.as_tensor(idx, device=act.device))
    n, c, h, w = act.shape
    return act.permute(0, 2, 3, 1).reshape(n * h * w, c)


def conv_to_matrix(
    act: ArrayLike, *, n_channels: int = 64, seed: int = 0
) -> Tensor | np.ndarray:
    """Reshape conv activations to P3's ``(N*h*w, n_channels)`` matrix.

    Every spatial position of every image is a data point and the channels are the
    neurons (Juodelyte et al., TMLR 2023; flattening "along channels" in google/
    svcca's terms). ``n_channels`` channels are drawn without replacement by
    ``numpy.random.default_rng(seed)`` (P3's draw was unseeded) and kept in
    increasing order; the same ``seed`` on two networks with the same ``C`` picks
    the same channels. If ``C <= n_channels`` all channels are used.

    Args:
        act: activations of shape ``(N, C, h, w)`` (PyTorch layout).
        n_channels: channels to keep (64 in P3).
        seed: seed of the channel draw.

    Returns:
        Array of shape ``(N*h*w, min(C, n_channels))``, same dtype as ``act``: a
        tensor on ``act``'s device, or a numpy array for numpy input. Rows are
        ordered image by image, then row-major over ``(h, w)``.
    """
    t = _as_tensor(act, "act")
    _check_conv(t, "act")
    n_channels = _check_n_channels(n_channels)
    idx = _channel_indices(t.shape[1], n_channels, np.random.default_rng(seed))
    out = _flatten_channels(t, idx)
    return out if isinstance(act, Tensor) else out.numpy()


def mean_cca_conv(
    act_a: ArrayLike,
    act_b: ArrayLike,
    *,
    n_channels: int = 64,
    repeats: int = 5,
    seed: int = 0,
    epsilon: float = 1e-12,
) -> float:
    """P3's layer similarity: mean CCA on channel subsets, averaged over repeats.

    For each repeat, ``n_channels`` channel indices are drawn (the *same* indices
    for both networks), each activation is reshaped to ``(N*h*w, n_channels)`` and
    :func:`mean_cca` is taken; the result is the average over ``repeats``
    (Juodelyte et al., TMLR 2023: 64 channels, 5 repeats, epsilon 1e-12). The
    draws come from one ``numpy.random.default_rng(seed)``, so the first repeat
    uses the channels of ``conv_to_matrix(act, seed=seed)``. If ``C <=
    n_channels`` every repeat would be identical, so it is computed once.

    P3 also drew a fresh batch of ``round(10000 / (h*w))`` images for each repeat;
    here the caller passes fixed activations (draw the images yourself to mimic
    that). P3's early layers therefore used only 1-4 images: prefer more.

    Args:
        act_a: activations of network A, shape ``(N, C, h, w)``.
        act_b: activations of network B for the same ``N`` inputs, same shape
            (same layer of the same architecture).
        n_channels: channels per repeat.
        repeats: number of channel draws to average.
        seed: seed of the channel draws.
        epsilon: relative ridge and neuron-dropping threshold (see :func:`cca`).

    Returns:
        Mean CCA averaged over repeats, in ``[0, 1]``.
    """
    # No float64 copy of all C channels: only the drawn subsets are cast.
    ta, tb = _pair(act_a, act_b, ndim=4, what="(N, C, h, w) convolutional activations",
                   cast=False)
    if ta.shape != tb.shape:
        raise ValueError(
            "act_a and act_b must have the same shape (N, C, h, w) -- the same layer of "
            f"the same architecture on the same inputs; got {tuple(ta.shape)} and "
            f"{tuple(tb.shape)}"
        )
    n_channels = _check_n_channels(n_channels)
    if isinstance(repeats, bool) or int(repeats) != repeats or repeats < 1:
        raise ValueError(f"repeats must be a positive integer; got {repeats!r}")
    epsilon = _check_epsilon(epsilon)
    rng = np.random.default_rng(seed)
    c = ta.shape[1]
    values = []
    for _ in range(1 if c <= n_channels else int(repeats)):
        idx = _channel_indices(c, n_channels, rng)
        ma, mb = _pair2d(_flatten_channels(ta, idx), _flatten_channels(tb, idx))
        rho = _cca_core(ma, mb, epsilon, "svd").rho
        values.append(float(rho.mean()) if rho.numel() else 0.0)
    return float(np.mean(values))


# --------------------------------------------------------------------------- #
# Activation extraction
# --------------------------------------------------------------------------- #
class LayerNotFoundError(KeyError, ValueError):
    """A requested layer name is not in ``model.named_modules()``."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def _model_device(model: nn.Module) -> torch.device | None:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return None


def _batches(x: Tensor | Iterable[Any], batch_size: int) -> Iterable[Tensor]:
    if isinstance(x, Tensor):
        for i in range(0, x.shape[0], batch_size):
            yield x[i : i + batch_size]
        return
    for item in x:
        if isinstance(item, (tuple, list)):  # (inputs, labels) from a DataLoader
            item = item[0]
        if not isinstance(item, Tensor):
            raise TypeError(f"x yielded {type(item).__name__}; expected tensors or (tensor, ...)")
        yield item


def activations(
    model: nn.Module,
    x: Tensor | Iterable[Any],
    layers: Sequence[str],
    *,
    batch_size: int = 256,
    out_device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """Outputs of named modules of ``model`` on inputs ``x``, via forward hooks.

    The model runs in eval mode under ``torch.no_grad()``; each module's own
    ``training`` flag is restored afterwards and the hooks are removed, also when
    the forward pass raises.

    Args:
        model: any ``nn.Module``.
        x: inputs, a tensor of shape ``(N, ...)`` split into batches of
            ``batch_size``, or an iterable of batches (tensors or tuples whose first
            element is the input, e.g. a ``DataLoader``). Batches are moved to the
            model's device (that of its first parameter or buffer).
        layers: module names as in ``model.named_modules()``, e.g. ``"layer1.0.conv1"``.
        batch_size: batch size when ``x`` is a tensor.
        out_device: where to gather the activations (default: where they are
            produced); ``"cpu"`` saves GPU memory for large conv maps.

    Returns:
        ``{name: tensor}`` with the module outputs concatenated over the batches,
        shape ``(N, ...)`` (e.g. ``(N, C, h, w)`` for a conv block), detached.

    Raises:
        LayerNotFoundError (a ``KeyError`` and ``ValueError``): unknown layer name;
            the message lists the available names.
        ValueError: empty or duplicate ``layers``, bad ``batch_size``, or a module
            that runs more than once per forward pass (its output is ambiguous).
        TypeError: a module whose output is not a tensor.
    """
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty; name at least one module of model.named_modules()")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers has duplicate names: {layers}")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        available = [name for name in modules if name]
        raise LayerNotFoundError(
            f"layer(s) {missing} not found in {type(model).__name__}; available names "
            f"(model.named_modules()): {available}"
        )

    outputs: dict[str, list[Tensor]] = {name: [] for name in layers}
    calls: dict[str, int] = dict.fromkeys(layers, 0)

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            calls[name] += 1
            if not isinstance(output, Tensor):
                raise TypeError(
                    f"module {name!r} returned {type(output).__name__}, not a tensor; "
                    "hook one of its tensor-valued submodules instead"
                )
            out = output.detach()
            outputs[name].append(out if out_device is None else out.to(out_device))

        return hook

    device = _model_device(model)
    was_training = {m: m.training for m in model.modules()}
    handles = [modules[name].register_forward_hook(make_hook(name)) for name in layers]
    try:
        model.eval()
        with torch.no_grad():
            for batch in _batches(x, int(batch_size)):
                for name in layers:
                    calls[name] = 0
                model(batch if device is None else batch.to(device, non_blocking=True))
                for name in layers:
                    if calls[name] != 1:
                        raise ValueError(
                            f"module {name!r} ran {calls[name]} times in one forward pass; "
                            "expected exactly once (shared or unused modules are ambiguous)"
                        )
    finally:
        for h in handles:
            h.remove()
        for m, flag in was_training.items():
            m.training = flag
    if not outputs[layers[0]]:
        raise ValueError("x is empty: no batch was run")
    return {name: torch.cat(chunks) for name, chunks in outputs.items()}
