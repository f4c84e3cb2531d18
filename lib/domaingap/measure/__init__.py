"""Measure P1's intrinsic dataset properties of your own labelled images (``domaingap measure``).

Konz & Mazurowski (ICLR 2024, "P1") describe a dataset by the intrinsic dimension d_data of its raw pixels and
its label sharpness K_F = max_{j,k} |y_j - y_k| / ||x_j - x_k||, and claim that they govern how fast the test loss
falls with the training-set size (log L <~ -(1/d_data) log N + log K_F + a) and how vulnerable models are to
adversarial attacks. This package measures both on any labelled image set, in the book's P1 image format, beside
the book's own datasets at the same format and the same number of images::

    from domaingap import measure
    m = measure.measure(images, labels, size=28, gray=True)           # arrays
    m = measure.measure_path("my_folder/", size=64, out="report/")   # ImageFolder, .npz, or a registered name
    m.d_mle, m.d_twonn, m.k_f, m.k_f_sampled, m.references

or ``domaingap measure PATH --size 28 --gray --out report/`` (:mod:`domaingap.cli`).

Better than P1's code: one exact kNN pass feeds the MLE at every k and TwoNN (with bootstrap intervals); K_F is
exact over all cross-class pairs (P1's code samples ~2,000 pairs; its estimator is reported beside it), multiclass
labels use the indicator 1[y_j != y_k]; duplicates and label conflicts are reported instead of crashing; runs on
CPU or CUDA with identical numbers; the references are computed from the data and cached, never typed in.

Modules: :mod:`.constants` (the defaults; import-free), :mod:`.api` (:func:`measure`, :func:`measure_path`, :class:`Measurement`), :mod:`.inputs` (reading and
checking images), :mod:`.preprocess` (the P1 format), :mod:`.core` (the statistics, :class:`Geometry`),
:mod:`.references` (the reference run kind ``measure_reference``), :mod:`.report` (figures, predictions,
Markdown). The names below are imported on first use, so ``import domaingap.measure`` (and ``domaingap --help``)
does not import torch.
"""

from __future__ import annotations

import importlib

from .constants import (CI_LEVEL, K_MAIN, K_VALUES, KF_SAMPLE_IMAGES, N_BOOTSTRAP, NEAR_DUPLICATE_FRACTION,
                        NEAR_DUPLICATE_RULE, REFERENCE_N, REFERENCE_SEED, SIZES)

_LAZY = {
    "api": ("Measurement", "measure", "measure_images", "measure_path", "resolve_device"),
    "core": ("Geometry", "geometry"),
    "inputs": ("ImageSet", "from_arrays", "read_path"),
    "references": ("Reference", "compute_references", "default_references"),
    "report": ("FIGURES", "plot_k_f_pair", "plot_k_sensitivity", "plot_properties", "predictions", "summary_table",
               "write_report"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = ["CI_LEVEL", "KF_SAMPLE_IMAGES", "K_MAIN", "K_VALUES", "NEAR_DUPLICATE_FRACTION", "NEAR_DUPLICATE_RULE",
           "N_BOOTSTRAP", "REFERENCE_N", "REFERENCE_SEED", "SIZES", *sorted(_WHERE)]


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
