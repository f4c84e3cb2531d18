"""Dataset registry and loaders: one way to ask for the images every experiment needs.

Every experiment of the three papers asks for "dataset X, split S, all classes or a binary task (class a vs b, or
class GROUPS such as KL 0 vs KL >= 2), resized to R px, grayscale or RGB, N samples drawn with seed s, pixels in
[0, 1] or [0, 255]". That is :func:`load`. The raw files are read with the ecosystem's own loaders (``medmnist``
dataset classes for the MedMNIST npz files, ``torchvision`` ``MNIST`` / ``FashionMNIST`` / ``ImageFolder``) from
the folder :func:`domaingap.paths.data_dir` (``$DOMAINGAP_DATA``), whose layout is the offline mirror's::

    breastmnist/breastmnist{,_64}.npz     pneumoniamnist/pneumoniamnist.npz   retinamnist/retinamnist.npz
    mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz                     fashion-mnist/ (same names)
    cifar10-jpeg/CIFAR-10-images.tar.gz   mednist/MedNIST.tar.gz              imagenette/Imagenette.tar.gz
    kneeoa-kl/KneeOA_KL.tar.gz            braintumor-mri/BrainTumorMRI.tar.gz pbc-bloodcells/PBC_BloodCells.tar.gz

Every mirror file is checked against its SHA-256 (and the publisher's MD5 where published) before use; a missing
file is fetched from its publisher by default, as torchvision's ``download=True`` (the one switch is
:data:`files.DOWNLOAD_BY_DEFAULT`; ``DOMAINGAP_DOWNLOAD=0`` or ``allow_download=False`` turns it off, and then a
missing file is an error naming the file, its checksum, the source and how to get it); the 64 px derived sets
are rebuilt from the publishers' originals (:mod:`domaingap.data.publishers`).

Decoded images are cached as uint8 ``.npz`` arrays under :func:`domaingap.paths.cache_dir`
(``$DOMAINGAP_CACHE``), keyed by the source files' checksums, so a JPEG dataset is decoded once; extraction and
decoding are locked and atomic, so concurrent processes can share an empty cache.

Modules: :mod:`.registry` (entries), :mod:`.files` (checksums, errors, locked extraction, download),
:mod:`.readers` (per-format readers), :mod:`.publishers` (publishers' originals -> mirror layout),
:mod:`.request` (:func:`load_arrays`, :func:`load`).
"""

from __future__ import annotations

from .. import paths
from . import files, formats, publishers, readers, registry, request
from .files import (DOWNLOAD_BY_DEFAULT, DOWNLOAD_ENV, MARKER, DataFileError, _atomic_savez, atomic_write,
                    cache_dir, download, download_allowed, extract, have_files, md5, sha256, verified_file)
from .readers import (READERS, _medmnist_plus_file, _read_cifar10, _read_digits, _read_image_folder,
                      _read_imagefolder, _read_medmnist, _read_mnist_like, _stratified_split, reader_for)
from .registry import (MEDMNIST_SIZES, MEDNIST_SPLIT_SEED, PBC_SPLIT_SEED, REGISTRY, SPLITS, DatasetInfo,
                       FolderLayout, Publisher, info, medmnist_info, names)
from .request import (ImageSet, _decoded_key, class_groups, load, load_arrays, release_for, releases,
                      sample_indices)

# names of the single-module version of domaingap.data, kept for existing callers
_download_allowed = download_allowed
_have_files = have_files
_extract = extract
_md5 = md5
_READERS = {name: reader_for(ds) for name, ds in REGISTRY.items()}
MEDNIST_URL = REGISTRY["mednist"].publisher.url
MEDNIST_MD5 = REGISTRY["mednist"].publisher.md5  # MONAI's published checksum of its own archive

__all__ = [
    "DOWNLOAD_BY_DEFAULT", "DOWNLOAD_ENV", "MARKER", "MEDMNIST_SIZES", "MEDNIST_MD5", "MEDNIST_SPLIT_SEED",
    "MEDNIST_URL", "PBC_SPLIT_SEED", "READERS", "REGISTRY", "SPLITS", "DataFileError", "DatasetInfo",
    "FolderLayout", "ImageSet", "Publisher", "atomic_write", "cache_dir", "class_groups", "download",
    "download_allowed", "extract", "files", "formats", "have_files", "info", "load", "load_arrays", "md5",
    "medmnist_info", "names", "paths", "publishers", "reader_for", "readers", "registry", "release_for",
    "releases", "request",
    "sample_indices", "sha256", "verified_file",
]
