"""Chapter P3: transfer from natural vs medical pretraining and layer-wise representation similarity.

Reproduces, with an offline substitute, Juodelyte, Jiménez-Sánchez & Cheplygina, "Revisiting Hidden
Representations in Transfer Learning for Medical Imaging", TMLR 2023 (arXiv 2302.08272;
github.com/DovileDo/revisiting-transfer). P3 fine-tunes an ImageNet- (IN) and a RadImageNet- (RIN) initialised
ResNet50 on seven medical targets and compares the networks layer by layer with mean CCA.

No pretrained ImageNet or RadImageNet weights can be obtained here, so the chapter pretrains *the same* ResNet
itself on a natural source (Imagenette, 10 ImageNet classes, in luma) and on a medical source (MedNIST: CT, MRI and
X-ray, where RadImageNet is CT, MRI and ultrasound), and fine-tunes those two initialisations and a random one on
five medical targets (BreastMNIST, PneumoniaMNIST, RetinaMNIST, knee KL grades, brain tumour MRI).
Real weights still load: a source given as ``{weights: imagenet}`` or ``{weights: /path/file.pt}`` in the
profile replaces the pretraining run (see :func:`~.networks.init_model`).

Claims tested (recorded by the notebooks with :mod:`domaingap.claims`): pretraining beats random init; natural
beats medical initialisation; the two fine-tuned networks' predictions agree beyond independence; similarity to
the initialisation does not predict the AUC gain; CCA to the initialisation falls with depth; the two sources are
at or below the random-random baseline; the fine-tuned sources diverge in deep layers; the natural initialisation
stays closer to itself in early layers.

Protocol (one place, used by every notebook and by ``python -m domaingap.chapters.p3``):

- ONE image format for every dataset: ``image_size`` px (28: the MedMNIST targets' native size; the 64 px
  sets, MedNIST, Imagenette, knee and brain MRI, are resized, bilinear and antialiased), 1 channel (ITU-R 601
  luma for RGB sets), pixels in [0, 1].
  One channel because every target but RetinaMNIST and the medical source are grey; an RGB ImageNet first conv
  is summed over its input channels when loaded (:func:`domaingap.models.load_pretrained`), which gives the same
  response to a grey image as the RGB filter on the grey image repeated three times.
- Pretraining: a seeded subset of the source's official training split, Adam with a cosine schedule; the
  source's test accuracy is recorded. ``pretrain_seeds`` gives independent pretraining runs; fold ``k`` of every
  target uses seed ``pretrain_seeds[k % len(pretrain_seeds)]``.
- Fine-tuning: the target's official train and val splits are pooled (optionally capped at ``max_pool`` images
  by a seeded stratified subsample) and split into ``n_folds`` stratified folds
  (``sklearn.model_selection.StratifiedKFold``, shuffled with ``fold_seed``); each run trains on the other folds
  and is evaluated on its held-out fold (as P3's 5-fold cross-validation). Every start early-stops on a
  validation split carved from the fold's training part (at most ``max_epochs``, ``patience``; the
  best-validation epoch is kept, as P3's up to 200 epochs with early stopping); the chosen epoch is
  recorded. The same folds serve every
  initialisation, so comparisons between initialisations are paired by fold. AUC: binary ROC AUC, or macro
  one-vs-rest over RetinaMNIST's 5 grades (:func:`domaingap.training.evaluate`).
- Initialisations per target: every source without warm-up, every source with P3's frozen-backbone warm-up
  ("-Fr": the classifier head is first trained on the frozen backbone's features, then the whole network), and
  random init. A source is skipped for a target that is its own dataset (MedNIST as target with a MedNIST
  source).
- Layer-wise similarity: activations of the stem (``relu``: conv1 -> bn1 -> ReLU, before any pooling, P3's
  ``conv1_relu``) and of ``layer1``..``layer4`` (P3's block1..block4 outputs) on ``probe_n`` images drawn from
  the whole target dataset (all official splits; the same images for every model of a target), compared with
  P3's mean CCA (:func:`domaingap.kernels.similarity.mean_cca_conv`: 64 random channels, the same in both
  networks, reshaped to ``(N*h*w, 64)``, averaged over 5 draws) and with SVCCA, PWCCA and linear CKA on the same
  draws.

Every training and similarity run is a JSON-able spec and a run of :mod:`.runs` (``p3_pretrain`` ->
``p3_finetune`` -> ``p3_similarity``, each upstream declared), computed by :func:`domaingap.runs.compute`: runs
are stored atomically, verified on load and resumable; the device (CUDA when available) is never part of a spec,
and the intra-op thread count is the store's (``$DOMAINGAP_RUN_THREADS``, default 1).

Modules: :mod:`.tasks` (settings, sources, targets, initialisation names), :mod:`.images` (image format, pools,
folds, probe images), :mod:`.networks` (the ResNet, initialisations, warm-up), :mod:`.runs` (the run kinds),
:mod:`.specs` (specs, runs, sweeps, entries), :mod:`.analysis` (published numbers, tables, statistics),
``published.yaml`` (P3's numbers).

Tensor conventions: images float32 ``(N, 1, S, S)`` in [0, 1]; labels int64 ``(N,)``; conv activations
``(N, C, h, w)``.
"""

from __future__ import annotations

from ...kernels.similarity import layer_similarity
from .analysis import (PAPER_AUC, PAPER_CCA_CHEST, PAPER_PRED_SIM, PAPER_TARGET, agreement, agreement_test,
                       auc_table, finetune_frame, load_predictions, paper_value, similarity_frame)
from .images import folds, load_images, probe_images, target_pool, validation_split
from .networks import (build, init_model, load_state, materialise, save_state,
                       warmup_head, weights_init)
from .runs import (matched_cca, matched_rows, reference_run, run_finetune, run_pretrain,
                   run_similarity)
from .specs import (finetune, finetune_runs, finetune_spec, finetune_specs, pretrain, pretrain_runs, pretrain_spec,
                    pretrain_specs, replica_inits, similarities, similarity_models, similarity_pairs,
                    similarity_runs, similarity_spec, similarity_specs, source_init, sweeps)
from .tasks import (FR, LAYER_LABELS, LAYERS, MEASURES, ORIGINS, PAPER, RANDOM, SECTION, check_config, config,
                    init_label, init_source, inits, origin_overlap, pair_label, pretrain_seed, random_seed)

__all__ = [
    "FR", "LAYERS", "LAYER_LABELS", "MEASURES", "PAPER", "PAPER_AUC", "PAPER_CCA_CHEST", "PAPER_PRED_SIM",
    "PAPER_TARGET", "RANDOM", "SECTION", "agreement", "agreement_test", "auc_table", "build", "check_config",
    "config", "finetune", "finetune_frame", "finetune_runs", "finetune_spec", "finetune_specs", "folds",
    "init_label", "init_model", "init_source", "inits", "layer_similarity", "load_images", "load_predictions",
    "load_state", "materialise", "pair_label", "paper_value", "pretrain", "pretrain_runs",
    "pretrain_seed", "pretrain_spec", "pretrain_specs", "probe_images", "random_seed", "reference_run",
    "run_finetune", "run_pretrain", "run_similarity", "save_state", "similarities", "similarity_frame",
    "similarity_models", "similarity_pairs", "similarity_runs", "similarity_spec", "similarity_specs",
    "source_init", "sweeps", "target_pool", "warmup_head", "weights_init",
    "ORIGINS", "matched_cca", "matched_rows", "origin_overlap",
    "replica_inits", "validation_split",
]
