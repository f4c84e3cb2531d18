"""Kernels: the numerical methods of the book, arrays in and arrays out.

Pure functions (and the few small classes their results come in) on torch tensors or NumPy arrays. They import
neither :mod:`domaingap.profiles` nor the artefact store nor any chapter module, so each can be tested, benchmarked
and reused on its own. Public modules:

- :mod:`~domaingap.kernels.distances`: exact Euclidean kNN and cross-class minimum distance (``knn``,
  ``min_cross_class_distance``, ``CrossClassPair``, ``brute_force_sq``).
- :mod:`~domaingap.kernels.intrinsic_dim`: intrinsic dimension, MLE (Levina & Bickel) and TwoNN (``mle``,
  ``twonn``, ``mle_from_knn``, ``twonn_from_knn``, ``nonzero_knn_distances``, ``IntervalEstimate``), and the MLE at
  several k plus TwoNN from one kNN pass (``estimate_all``, ``estimate_all_from_knn``, ``DimensionEstimates``).
- :mod:`~domaingap.kernels.sharpness`: label sharpness K_F, exact and P1's sampled estimator (``label_sharpness``,
  ``label_sharpness_sampled``, ``SharpnessPair``).
- :mod:`~domaingap.kernels.attacks`: FGSM, PGD, representation inversion, one adversarial-training step
  (``fgsm``, ``pgd``, ``invert_representation``, ``adversarial_training_step``).
- :mod:`~domaingap.kernels.similarity`: CCA (P3's mean CCA), SVCCA, PWCCA, linear CKA (``cca``, ``mean_cca``,
  ``svcca``, ``pwcca``, ``linear_cka``) and layer activations (``activations``, ``LayerNotFoundError``,
  ``conv_to_matrix``, ``mean_cca_conv``, ``layer_similarity``).
- :mod:`~domaingap.kernels.saliency`: input-gradient saliency and per-map rank correlation (``input_saliency``,
  ``rank_correlation``).
- :mod:`~domaingap.kernels.corruptions`: the MedMNIST-C corruptions, applied at the resolution they were tuned
  for (``corrupt``, ``corruption_names``, ``corruption_category``, ``medmnistc_registry``, ``to_uint8``).

Modules whose names start with ``_`` hold the internals of the public ones: ``_knn_core`` behind ``distances``,
which gathers ``_knn_points`` (point sets and their working copies), ``_knn_int8`` (the exact int8 path),
``_knn_float`` (the float32 path, its certificate bound and the exact refinement) and ``_knn_select`` (streamed
selection and merging); ``_dim_common`` (shared pieces and the bootstrap) and ``_dim_onepass`` (``estimate_all``)
behind ``intrinsic_dim``; ``_attack_checks`` and ``_inversion`` behind ``attacks``; ``_cca``, ``_cka``,
``_layers`` and ``_sim_inputs`` behind ``similarity``; ``_validation``, the input checks of the geometry kernels.
Import from the public module.

Submodules are imported explicitly (``from domaingap.kernels import distances``), so that ``import
domaingap.kernels`` stays cheap: it does not import torch.
"""
