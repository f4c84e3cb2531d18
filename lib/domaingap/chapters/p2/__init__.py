"""Chapter P2: useful nonrobust features, adversarial training and MedMNIST-C distribution shift.

Reproduces, at small scale, Mouton et al., "Useful nonrobust features are ubiquitous in biomedical images"
(arXiv 2604.22579, 2026), whose method follows Ilyas et al., "Adversarial Examples Are Not Bugs, They Are
Features" (NeurIPS 2019, arXiv 1905.02175), and whose shift benchmark is MedMNIST-C (Di Salvo et al. 2024,
arXiv 2406.17536; the ``medmnistc`` package).

The paper's claims tested here (notebooks ``notebooks/p2/*.md``):

- Tab. 1 (nonrobust features): a fresh model trained on D_det / D_rand -- training images pushed by targeted
  L2 PGD towards a new label ``t`` and relabelled ``t`` -- classifies the ORIGINAL clean test set above chance.
  D_NR / D_R (representation inversion through a standard / robust model) where the profile allows.
- Tab. 2 (trade-off): L2 PGD adversarial training lowers clean accuracy and raises PGD accuracy.
- Tab. 3 (shift): adversarially trained models lose less under MedMNIST-C corruptions.
- Fig. 1 (saliency): input-gradient saliency of a robust model changes less between a clean image and a
  perturbed version than that of a standard model (Spearman rank correlation between the two maps), under the
  SAME perturbations for both (PGD transferred from a third model; random directions of equal norm as the
  control), on every task x seed; plus the maps' edge alignment (Spearman correlation with the Sobel edges).

Protocol (one place, used by every notebook and by ``python -m domaingap.chapters.p2``):

- Tasks (``tasks.yaml``, :data:`TASKS`): the medical datasets of the mirror at MedMNIST's resolution (28 px;
  MedNIST is restricted to its three CT classes, the closest analogue of P2's organ-CT tasks; knee X-ray KL
  grades and brain MRI resized from 64 px) plus natural controls: Fashion-MNIST (28 x 28 x 1 like the gray
  medical tasks), Imagenette (28 x 28 x 3, photographs) and CIFAR-10 at its native 32 x 32 x 3 (Ilyas et al.'s
  dataset; ``paper``). Pixels in [0, 1], native channels. Training
  sets are a fixed seeded subset of the official training split (``n_train``), test sets a fixed seeded subset
  of the official test split (``n_test``); seeds vary only the training run.
- L2 budgets are Ilyas et al.'s CIFAR values scaled with the square root of the input dimension,
  ``eps = eps_ref * sqrt(C*H*W / 3072)`` (:func:`scaled_eps`): 0.5 on CIFAR-10 -> 0.253 at 28 x 28 x 1 and
  0.438 at 28 x 28 x 3, so that the per-pixel RMS perturbation is the same. The targeted attacks that build
  D_rand / D_det try multiples of that budget and keep the smallest that reaches its targets (the
  ``p2_dataset`` run, :func:`.runs.dataset_run`).
- Every training, dataset-construction and evaluation run is a JSON spec (:mod:`.specs`) of a run kind
  (:mod:`.runs`), computed through :func:`domaingap.runs.compute` with its upstream runs first; the device
  (CUDA when available) is never part of a spec. Trained weights are ``model.pt`` in the run's entry.
- The paper's (and Ilyas et al.'s) published numbers are data: ``published.yaml``
  (:func:`domaingap.chapters.published`).

Modules: :mod:`.tasks` (tasks, images, budgets), :mod:`.specs` (specs, Run nodes, :func:`sweeps`),
:mod:`.inputs` (what the run functions read and share), :mod:`.runs` (the run kinds), :mod:`.analysis`
(tables from computed entries, statistics).

Array conventions: model inputs are float32 ``(N, C, H, W)`` tensors in [0, 1]; labels int64 ``(N,)``;
MedMNIST-C works on uint8 ``(N, C, H, W)`` NumPy arrays.
"""

from __future__ import annotations

from ...claims import verdict
from ...kernels.corruptions import corrupt, corruption_category, corruption_names, medmnistc_registry, to_uint8
from ...kernels.saliency import edge_alignment, input_saliency, rank_correlation
from . import analysis, inputs, runs, specs, tasks
from .analysis import (fig1_result, fig1_results, mmc_data, robust_view, swap_by_task,
                       tab1_rows, tab1_table, tab2_rows, tab2_table, tab3_results, tab3_table, test_data, train_data,
                       trained)
from .inputs import balanced_class_weights, derangement, head, targets
from .specs import (configs, dataset_spec, mmc_data_spec, mmc_eval_spec, model_spec, robust_eval_spec,
                    robust_view_spec, saliency_spec, sweeps, tradeoff_specs)
from .tasks import REF_DIM, TASKS, Task, get_task, load_task, scaled_eps

PAPER = "P2"

__all__ = [
    "PAPER", "REF_DIM", "TASKS", "Task", "analysis", "edge_alignment", "balanced_class_weights",
    "configs", "corrupt",
    "corruption_category", "corruption_names", "dataset_spec", "derangement", "fig1_result", "fig1_results",
    "get_task", "head",
    "input_saliency", "inputs", "load_task", "medmnistc_registry", "mmc_data", "mmc_data_spec",
    "mmc_eval_spec", "model_spec", "rank_correlation", "robust_eval_spec", "robust_view",
    "robust_view_spec", "runs", "saliency_spec", "scaled_eps", "swap_by_task", "specs", "sweeps",
    "tab1_rows", "tab1_table", "tab2_rows", "tab2_table", "tab3_results", "tab3_table", "targets", "tasks", "test_data",
    "to_uint8", "tradeoff_specs", "train_data", "trained", "verdict",
]
