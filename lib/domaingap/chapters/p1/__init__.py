"""Chapter P1: intrinsic dataset properties, generalization scaling, robustness and representation dimension.

Reproduces Konz & Mazurowski, "The Effect of Intrinsic Dataset Properties on Generalization: Unraveling
Learning Differences Between Natural and Medical Images", ICLR 2024 (arXiv 2401.08865;
github.com/mazurowski-lab/intrinsic-properties), on the datasets of the offline mirror.

The paper's claims tested here (notebooks ``notebooks/p1/*.md``):

- Fig. 1: medical datasets have a higher label sharpness
  ``K_F = max_{j,k} |y_j - y_k| / ||x_j - x_k||_2`` than natural ones; d_data alone does not separate them.
- Fig. 2: the generalization scaling law ``log L <~ -(1/d_data) log N + log K_F + a``: test loss falls with
  the training-set size N, rises with d_data, and is higher/steeper for medical data.
- Robustness: the loss penalty of an FGSM attack grows with K_F (paper: r = 0.70 over datasets).
- d_repr: the same law in the intrinsic dimension of the learned representation; ``d_repr <~ d_data``.

Protocol (one place, used by every notebook and by ``python -m domaingap.chapters.p1``):

- Every task is a *binary* task, as in P1. Images are pooled over the dataset's official splits, converted to
  ONE common format: 28 x 28 px, 1 channel (ITU-R 601 luma for RGB sets), P1's per-image scaling
  ``img * 255 / img.max()`` truncated to uint8, then resized (bilinear, antialiased) and rounded to uint8.
  Models see float pixels in [0, 255] without mean/std normalisation, as in P1.
- A fixed class-balanced test set per task (``test_per_class`` images per class, at most a third of the
  minority class) is held out once; training sets are class-balanced subsets of the rest, nested across N for
  a given seed. N is capped per task by the images that exist (BreastMNIST and RetinaMNIST are small).
- Every training, attack, geometry and representation run is a JSON spec computed as a
  :class:`domaingap.runs.Run` of one of the chapter's run kinds (``p1_geometry``, ``p1_train``, and
  ``p1_attack`` / ``p1_repr`` with the training run upstream), so runs are cached atomically and resumable; the
  device (CUDA when available) is never part of a spec.

Array conventions: pooled images are uint8 ``(M, 1, S, S)`` NumPy arrays, labels int64 ``(M,)`` in {0, 1};
model inputs are float32 ``(N, 1, S, S)`` tensors in [0, 255].

Modules: :mod:`.tasks` (the tasks), :mod:`.pools` (images, splits, the data part of a spec), :mod:`.runs` (the
run kinds: the only code in artefact keys), :mod:`.specs` (profile -> specs -> runs, :func:`sweeps`),
:mod:`.results` (what the notebooks load: ``runs.compute`` on the chapter's runs), :mod:`.analysis`
(statistics and tables), ``published.yaml`` (the paper's numbers, :func:`published`).
"""

from __future__ import annotations

from ...claims import verdict  # noqa: F401  (re-exported for the notebooks)
from . import levels
from .analysis import (bootstrap_ci, coef_table, correlation, domain_test, fit_ols, grouped_bootstrap_ci,
                       results_frame, wilson_fraction)
from .pools import (PREPROCESS_VERSION, TaskPool, TaskSplit, data_spec, geometry_indices, run_data, subsample,
                    task_limits, task_pool, task_split, test_per_class_for, train_indices)
from .results import attack_sweep, geometry_sweep, repr_sweep, run_all, train_sweep, trained
from .specs import SWEEPS, attack_specs, configs, geometry_specs, repr_specs, sizes_for, sweeps, train_specs
from .tasks import Task, dataset_tasks, make_task, parse_task, random_pairs, tasks

PAPER = "P1"

__all__ = ["PAPER", "PREPROCESS_VERSION", "SWEEPS", "Task", "TaskPool", "TaskSplit", "attack_specs",
           "attack_sweep", "bootstrap_ci", "coef_table", "configs", "correlation", "data_spec", "dataset_tasks",
           "domain_test", "fit_ols", "geometry_indices", "geometry_specs", "geometry_sweep", "grouped_bootstrap_ci",
           "levels", "make_task", "parse_task", "published", "random_pairs", "repr_specs", "repr_sweep",
           "results_frame", "run_all", "run_data", "sizes_for", "subsample", "sweeps", "task_limits", "task_pool",
           "task_split", "tasks", "test_per_class_for", "train_indices", "train_specs", "train_sweep", "trained",
           "verdict", "wilson_fraction"]


def published() -> dict:
    """P1's published numbers (``published.yaml``): ``fig1`` (per-dataset d_data and K_F), ``fgsm_delta_loss``
    (per-dataset FGSM loss penalty), ``fgsm_r`` (their correlation); each with its ``source`` in the paper."""
    from .. import published as _published

    return _published("p1")
