"""Schema of the run-size profiles in ``profiles.d/*.yaml``: one pydantic model per section.

:mod:`domaingap.profiles` validates the *merged* settings of every profile of every section (``common`` merged
under the profile's own keys, shallowly: a nested mapping given by a profile replaces the common one whole)
against the model registered for the section, when the profiles are first loaded. Unknown sections, unknown
keys, missing keys and wrong types all fail, each message naming the YAML file, section, profile and key.

Validation is strict (no coercion: ``"5"`` is not an int, ``true`` is not an int; an int is accepted where a
float is expected) and only checks: :func:`domaingap.profiles.get` returns the settings exactly as YAML read
them, never the model's output, so adding a model changes no value a notebook sees (nor a cached run's key).

Adding a key to a section (one place): add a typed field with a short description to the section's class::

    @section("p1_fig2")
    class P1Fig2(Section):
        ...
        warmup_epochs: int = Field(description="epochs of linear lr warm-up")

A field without a default is required in every profile (give it in ``common`` or in each of ``ci``,
``default`` and ``paper``). A key that only some profiles give needs a default, e.g.
``Field(None, description=...)``. ``X | None`` allows ``null``; a nested mapping with fixed keys is its own
:class:`Strict` model (see :class:`P1Model`); a mapping with free keys is ``dict[str, ...]``. Prefer nullable
types over other unions: their error messages stay readable.

Adding a section: a new class deriving from :class:`Section`, decorated with ``@section("<name>")`` (the
YAML section name). A section in the YAML without a registered model is an error, and so is a model whose
section no YAML file defines (``tests/test_profiles.py``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SECTIONS: dict[str, type["Section"]] = {}


class Strict(BaseModel):
    """Base of every model here: unknown keys are errors, values are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Section(Strict):
    """The merged settings of one section at one profile."""


def section(name: str):
    """Class decorator registering the model of YAML section ``name``."""

    def register(cls: type[Section]) -> type[Section]:
        if name in SECTIONS:
            raise ValueError(f"profile section {name!r} has two models: {SECTIONS[name].__name__} and {cls.__name__}")
        if not issubclass(cls, Section):
            raise TypeError(f"{cls.__name__} must derive from profile_schema.Section")
        SECTIONS[name] = cls
        return cls

    return register


Stem = Literal["cifar", "imagenet"]
Optimizer = Literal["adam", "sgd"]          # training.fit's optimizers
Schedule = Literal["constant", "step", "cosine"]  # training.fit's learning-rate schedules


# ------------------------------------------------------------------------------------------------ appendix

@section("methods_appendix")
class MethodsAppendix(Section):
    k: int = Field(description="MLE neighbourhood size (P1's k)")
    n_manifold: int = Field(description="points per synthetic manifold")
    n_knn: int = Field(description="points in the kNN / K_F brute-force comparison")
    n_real: int = Field(description="images per class for exact vs sampled K_F on MNIST 3 vs 5")
    attack_epochs: int = Field(description="training epochs of the model the attacks are checked on")
    calibration_sims: int = Field(description="simulations per cell of the verdict-rule calibration table")


# ---------------------------------------------------------------------------------------------------- data

@section("data_overview")
class DataOverview(Section):
    grid_per_class: int = Field(description="sample images shown per class in the overview grid")
    stats_n: int | None = Field(description="images per dataset used for pixel statistics (null: the whole split)")


# ------------------------------------------------------------------------------------------------------ P1

@section("p1_data")
class P1Data(Section):
    size: int = Field(description="common image side in px (1 channel, [0, 255])")
    medical_datasets: list[str] = Field(description="medical datasets: each gives its clinical task, or random pairs")
    natural_datasets: list[str] = Field(description="natural datasets: each gives `pairs` random class pairs")
    pairs: int = Field(description="random class pairs per dataset without a clinical binary task")
    pair_seed: int = Field(description="seed of the random class pairs")
    split_seed: int = Field(description="seed of every task's fixed test set")
    test_fraction_max: float = Field(description="largest share of a task's smaller class held out for testing")
    test_per_class: int = Field(description="wanted test images per class (capped by test_fraction_max)")


@section("p1_fig1")
class P1Fig1(Section):
    k: int = Field(description="MLE neighbours of the primary d_data (P1: 20)")
    ks: list[int] = Field(description="MLE neighbours of the estimator multiverse (P1's k plus others)")
    kf_sample_images: int = Field(description="images in P1's sampled K_F estimate")
    n: list[int] = Field(description="class-balanced subsample sizes of the K_F(n) curve (besides the full pool)")
    reps: list[int] = Field(description="subsamples per task at each size of n (seeds 0..reps-1)")


class P1Model(Strict):
    """One model of ``p1_fig2.models``: optimiser settings and :func:`domaingap.models.build_model` options."""

    lr: float = Field(description="Adam learning rate")
    batch_size: int = Field(description="training batch size")
    width: int | None = Field(None, description="base channel width (null/absent: the published one)")
    stem: Stem | None = Field(None, description="ResNet stem (null/absent: by image size)")


@section("p1_fig2")
class P1Fig2(Section):
    weight_decay: float = Field(description="Adam weight decay")
    models: dict[str, P1Model] = Field(description="model name -> lr, batch size and build_model options")
    sizes: list[int] = Field(description="training-set sizes N (out of a task's reach: its maximum instead)")
    seeds: list[int] = Field(description="training seeds per (task, model, N)")
    epochs: int = Field(description="training epochs (the last epoch's model is kept)")


@section("p1_fig3")
class P1Fig3(Section):
    attacks: dict[Literal["fgsm", "pgd"], list[float]] = Field(
        description="attack -> L-inf budgets in grey levels of the [0, 255] inputs")
    pgd_steps: int = Field(description="PGD iterations")
    pgd_step_factor: float = Field(description="PGD step = factor * eps / steps")
    batch_size: int = Field(description="images attacked per batch")
    sizes: list[int] | None = Field(description="attack the models of these N only (null: of every N)")


@section("p1_fig4")
class P1Fig4(Section):
    k: int = Field(description="MLE neighbours of d_repr")


# ------------------------------------------------------------------------------------------------------ P2

@section("p2_models")
class P2Models(Section):
    data_seed: int = Field(description="seed of the fixed training subset (seeds vary only the training run)")
    optimizer: Optimizer = Field(description="training optimiser")
    weight_decay: float = Field(description="weight decay")
    class_weights: Literal["balanced"] | None = Field(
        description="'balanced': cross-entropy weights N / (K n_c); null: unweighted")
    adv_eps_ref: float = Field(description="L2 adversarial-training budget at CIFAR scale (scaled per task)")
    arch_options: dict[str, Any] = Field(description="options passed to models.build_model (e.g. width, stem)")
    tasks: list[str] = Field(description="tasks of the chapter")
    seeds: list[int] = Field(description="training seeds")
    arch: str = Field(description="models.build_model architecture name")
    n_train: int | None = Field(description="training images per task (seeded subset; null: the whole split)")
    n_test: int | None = Field(description="fixed test subset per task (null: the whole split)")
    epochs: int = Field(description="training epochs")
    batch_size: int = Field(description="training batch size")
    lr: float = Field(description="initial learning rate")
    schedule: Schedule = Field(description="learning-rate schedule")
    adv_steps: int = Field(description="PGD steps per adversarial-training batch")


@section("p2_tab1")
class P2Tab1(Section):
    variants: list[Literal["rand", "det"]] = Field(description="relabelled datasets built by targeted PGD")
    pgd_eps_ref: float = Field(description="L2 budget of the dataset construction at CIFAR scale")
    pgd_eps_multipliers: list[float] = Field(description="budgets tried, as multiples of the scaled budget")
    pgd_target_success: float = Field(description="targeted success on the calibration images that picks the budget")
    robust_shift_max: float = Field(
        description="largest share of relabelled images the robust model may move to their new label")
    inversion_step_ref: float = Field(description="normalised L2 step of representation inversion at CIFAR scale")
    n_resamples: int = Field(description="permutation-test resamples (balanced accuracy vs chance)")
    seeds: list[int] = Field(description="source-model seeds")
    pgd_steps: int = Field(description="PGD steps of the dataset construction")
    pgd_step_ratio: float = Field(description="PGD step = ratio * eps")
    pgd_calibration_n: int = Field(description="training images used to choose the budget")
    inversion_tasks: list[str] | None = Field(description="tasks of D_NR / D_R (null: none)")
    inversion_seeds: list[int] = Field(description="seeds of D_NR / D_R")
    inversion_steps: int = Field(description="representation-inversion steps")
    inversion_n: int | None = Field(description="images in D_NR / D_R (null: the whole training subset)")


@section("p2_tab2")
class P2Tab2(Section):
    eps_ref: float = Field(description="evaluated L2 budget at CIFAR scale")
    pgd_restarts: int = Field(description="PGD random restarts")
    sweep_multipliers: list[float] = Field(description="eps multiples of the gradient-masking sweep")
    n_attack: int | None = Field(description="test images attacked (null: the whole test subset)")
    pgd_steps: int = Field(description="PGD steps")
    check_seeds: list[int] = Field(description="seeds whose models also get the APGD and eps-sweep checks")
    apgd_n: int | None = Field(description="images of the APGD check")
    apgd_steps: int = Field(description="APGD steps")
    apgd_restarts: int = Field(description="APGD restarts")
    sweep_steps: int = Field(description="PGD steps of the eps sweep")
    sweep_n: int | None = Field(description="images of the eps sweep")


@section("p2_tab3")
class P2Tab3(Section):
    corruption_seed: int = Field(description="seed of the MedMNIST-C corruptions")
    work_size: int = Field(description="resolution the corruptions are applied at")
    source_release: bool = Field(description="corrupt MedMNIST+'s own work_size images instead of up-sampled ones")
    examples_seed: int = Field(description="which test image the example grids show")
    n_test: int | None = Field(description="test images corrupted per task (null: all)")


@section("p2_fig1")
class P2Fig1(Section):
    task: str = Field(description="task of the example saliency figure")
    seed: int = Field(description="seed of the standard and robust models shown")
    tasks: list[str] = Field(description="tasks of the saliency statistics (standard vs robust, same perturbations)")
    seeds: list[int] = Field(description="seeds of the saliency statistics (the transfer source: the next seed)")
    eps_ref: float = Field(description="L2 budget of the adversarial images at CIFAR scale")
    pgd_steps: int = Field(description="PGD steps")
    n_show: int = Field(description="example rows in the figure")
    n_images: int = Field(description="images the saliency statistics are computed on")


# ------------------------------------------------------------------------------------------------------ P3

class P3Source(Strict):
    """A pretraining source: exactly one of ``dataset`` (pretrained here) or ``weights`` (a user's file)."""

    dataset: str | None = Field(None, description="registry name of the dataset pretrained on")
    weights: str | None = Field(None, description="'imagenet' or a ResNet weights file")

    @model_validator(mode="after")
    def _one_of(self):
        if (self.dataset is None) == (self.weights is None):
            raise ValueError("give exactly one of 'dataset' or 'weights'")
        return self


class P3Model(Strict):
    arch: str = Field(description="a ResNet of models.build_model")
    image_size: int = Field(description="input side in px")
    channels: Literal[1, 3] = Field(description="input channels")
    width: int | None = Field(None, description="base channel width (null/absent: the published one)")
    stem: Stem | None = Field(None, description="ResNet stem (null/absent: by image size)")


class P3Pretrain(Strict):
    n: int | None = Field(description="training images of the source (null: the whole split)")
    n_test: int | None = Field(description="test images of the source (null: the whole split)")
    epochs: int = Field(description="pretraining epochs")
    batch_size: int = Field(description="batch size")
    lr: float = Field(description="Adam learning rate")
    weight_decay: float = Field(description="weight decay")
    schedule: Schedule = Field("cosine", description="learning-rate schedule")


class P3Finetune(Strict):
    max_pool: int | None = Field(None, description="largest training pool per fold (null: all)")
    max_epochs: int = Field(description="most fine-tuning epochs (early stopping picks the best-validation epoch)")
    patience: int = Field(description="epochs without a lower validation loss before stopping")
    val_fraction: float = Field(description="fraction of each fold's training part held out for validation")
    batch_size: int = Field(description="batch size")
    lr: float = Field(description="Adam learning rate")
    weight_decay: float = Field(description="weight decay")


class P3Warmup(Strict):
    epochs: int = Field(description="epochs training only the new head of frozen (FR) initialisations")
    lr: float = Field(description="learning rate of the head warm-up")
    batch_size: int = Field(description="batch size")


class P3Similarity(Strict):
    probe_n: int = Field(description="probe images of the layer-wise comparison")
    probe_seed: int = Field(0, description="seed of the probe images")
    n_channels: int = Field(description="channels sampled per layer")
    repeats: int = Field(description="channel samples per layer")
    epsilon: float = Field(1.0e-12, description="numerical floor of the similarity measures")
    folds: int | None = Field(None, description="folds compared (null/absent: every fold)")


@section("p3")
class P3(Section):
    sources: dict[str, P3Source] = Field(description="pretraining sources: name -> {dataset: ...} or {weights: ...}")
    fold_seed: int = Field(description="StratifiedKFold shuffling seed")
    model: P3Model = Field(description="network of every run")
    targets: list[str] = Field(description="target datasets")
    n_folds: int = Field(description="cross-validation folds (>= 2)", ge=2)
    pretrain_seeds: list[int] = Field(description="pretraining seeds (folds cycle through them)", min_length=1)
    pretrain: P3Pretrain = Field(description="pretraining settings")
    finetune: P3Finetune = Field(description="fine-tuning settings")
    warmup: P3Warmup = Field(description="head warm-up of frozen initialisations")
    similarity: P3Similarity = Field(description="layer-wise similarity settings")
    n_boot: int = Field(description="bootstrap resamples of the correlation intervals")


@section("users_measure")
class UsersMeasure(Section):
    dataset: str = Field(description="registered dataset of the worked example")
    size: int = Field(description="image side in pixels of the P1 format", ge=2)
    gray: bool = Field(description="convert to luma (one channel)")
    references: list[str] | None = Field(description="reference datasets (null: every registered one)")
    n: int = Field(description="images per dataset in the common-n comparison", ge=2)
    n_bootstrap: int = Field(description="bootstrap resamples of the d_data intervals", ge=1)
    max_images: int | None = Field(description="cap on the measured images (null: all)")
