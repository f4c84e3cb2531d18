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

Layout: this module is the public interface; the code lives in private modules, by responsibility:
``_cca`` (CCA, mean CCA, SVCCA, PWCCA), ``_cka`` (linear CKA), ``_layers`` (activation extraction, P3's conv
reshaping and layer similarity) and ``_sim_inputs`` (input handling shared by all of them).
"""

from __future__ import annotations

from ._cca import cca, mean_cca, pwcca, svcca
from ._cka import linear_cka
from ._layers import LayerNotFoundError, activations, conv_to_matrix, layer_similarity, mean_cca_conv

__all__ = [
    "LayerNotFoundError",
    "activations",
    "cca",
    "conv_to_matrix",
    "layer_similarity",
    "linear_cka",
    "mean_cca",
    "mean_cca_conv",
    "pwcca",
    "svcca",
]
