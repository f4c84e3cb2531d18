"""The dataset registry: one :class:`DatasetInfo` entry per dataset, and nothing else.

Adding a dataset is adding one entry to :data:`REGISTRY`: its facts (classes, official split sizes, licence,
source), its files with their SHA-256, which reader decodes it (``reader``) and, for ImageFolder archives, how
the archive is laid out (:class:`FolderLayout`) and where the publisher's original lives (:class:`Publisher`).

The MedMNIST entries take their metadata (class names, split sizes, licence, official MD5s and URLs) from the
``medmnist`` package's own ``INFO`` table; only our SHA-256 of the mirrored files is stated here.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

MEDNIST_SPLIT_SEED = 0  # fixed: the MedNIST and digits splits must never change between runs
PBC_SPLIT_SEED = 0  # fixed: PBC has no official split; ours is stratified 80/10/10 with this seed
SPLITS = ("train", "val", "test")
MEDMNIST_SIZES = (28, 64, 128, 224)  # MedMNIST+ releases (the mirror holds 28 px, and BreastMNIST at 64 px)
SPLIT_80_10_10 = {"train": 0.8, "val": 0.1, "test": 0.1}

ClassGroups = tuple[tuple[int, ...], ...]  # e.g. ((0,), (2, 3, 4)): label 0 = class 0, label 1 = classes 2-4


@dataclass(frozen=True)
class FolderLayout:
    """An ImageFolder archive: ``<top>/<split folder>/<class folder>/<image>`` (no split level when ``splits``
    is None: then the split is a seeded stratified one by ``fractions`` and ``seed``)."""

    top: str
    folders: tuple[str, ...]  # class folders in ImageFolder's (sorted) order = the order of DatasetInfo.classes
    mode: str  # PIL mode the images are decoded to: "L" (gray) or "RGB"
    splits: dict[str, str] | None = None  # our split name -> its folder in the archive
    fractions: dict[str, float] | None = None
    seed: int = 0


@dataclass(frozen=True)
class Publisher:
    """Where the publisher's original release is and how the mirror's 64 px archive was derived from it
    (the mirror's ``tools/convert_*.py``: centre crop to a square, LANCZOS to 64 px; optional class-balanced
    subset chosen by ``random.Random(subset_seed)`` as ``tools/convert_png.py --per-class-cap`` does)."""

    page: str  # landing page (DOI) of the publisher's record
    url: str | None = None  # direct download URL; None = a manual download (``manual`` says why)
    md5: str | None = None  # the publisher's checksum of that download, where one is published
    manual: str = ""  # why the download cannot be automatic
    pattern: str = ""  # regex searched in member paths, groups ``class`` and (optional) ``split`` = the mirror's
    #                    folders; "" = the download is already the mirror's archive (no conversion)
    image_format: str = "PNG"  # format of the converted images: "PNG" or "JPEG" (quality 90)
    per_class: int | None = None
    subset_seed: int = 0
    prefer: str = ""  # two files for one output name: keep the one whose path contains this


@dataclass(frozen=True)
class DatasetInfo:
    """One registry entry. ``files`` maps a path relative to the data dir to its SHA-256 (the native release);
    ``release_files`` does the same for other mirrored release sizes (MedMNIST+); ``md5`` / ``urls`` hold the
    publisher's checksums and URLs of those paths where it publishes them."""

    name: str
    title: str
    domain: str  # "medical" or "natural"
    native_size: int  # pixels per side
    channels: int
    classes: tuple[str, ...]
    split_sizes: dict[str, int]
    licence: str
    source: str
    files: dict[str, str] = field(default_factory=dict)
    note: str = ""
    modality: str = ""  # imaging modality of a medical dataset ("X-ray", "MRI", "ultrasound", ...)
    radiology: bool = False  # True for radiological imaging (X-ray, CT, MRI, ultrasound)
    # the clinically meaningful binary task as two class GROUPS (label 0, label 1); None where the classes are
    # not a clinical question (MedNIST's body regions, PBC's cell types, natural sets): P1 then uses random pairs
    clinical_task: ClassGroups | None = None
    reader: str = ""  # key of domaingap.data.readers.READERS (default: the dataset name)
    layout: FolderLayout | None = None
    publisher: Publisher | None = None
    release_files: dict[int, dict[str, str]] = field(default_factory=dict)
    md5: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    publisher_split_sizes: dict[str, int] | None = None  # the publisher's sizes where the mirror's copy differs

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def all_files(self) -> dict[str, str]:
        """Every mirrored file of every release, path -> SHA-256."""
        out = dict(self.files)
        for files in self.release_files.values():
            out.update(files)
        return out


# ----------------------------------------------------------------------------------------------- MedMNIST

@lru_cache(maxsize=1)
def medmnist_info() -> dict:
    """``medmnist.INFO``, read from the package's ``info.py`` without importing the package (whose
    ``__init__`` imports torch, torchvision and PIL: seconds that listing the registry should not cost)."""
    if "medmnist" in sys.modules and hasattr(sys.modules["medmnist"], "INFO"):
        return sys.modules["medmnist"].INFO
    spec = importlib.util.find_spec("medmnist")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the medmnist package (pinned in requirements.txt) is needed for the MedMNIST metadata")
    path = Path(next(iter(spec.submodule_search_locations))) / "info.py"
    mspec = importlib.util.spec_from_file_location("_domaingap_medmnist_info", path)
    module = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(module)
    return module.INFO


def medmnist_relpath(name: str, size: int) -> str:
    """Path of a MedMNIST(+) release under the data dir, as the medmnist package names it."""
    return f"{name}/{name}.npz" if size == 28 else f"{name}/{name}_{size}.npz"


def _medmnist(name: str, *, title: str, source: str, sha256: dict[int, str],
              clinical_task: ClassGroups, modality: str, radiology: bool, note: str = "") -> DatasetInfo:
    meta = medmnist_info()[name]
    labels = meta["label"]
    classes = tuple(labels[str(i)] for i in range(len(labels)))
    if meta["task"] == "ordinal-regression":  # INFO labels the grades "0".."4"
        classes = tuple(f"grade {c}" for c in classes)
    suffix = {s: ("" if s == 28 else f"_{s}") for s in MEDMNIST_SIZES}
    return DatasetInfo(
        name=name, title=title, domain="medical", native_size=28, channels=int(meta["n_channels"]),
        classes=classes, split_sizes={s: int(n) for s, n in meta["n_samples"].items()}, licence=meta["license"],
        source=source, files={medmnist_relpath(name, 28): sha256[28]}, note=note,
        modality=modality, radiology=radiology, clinical_task=clinical_task,
        reader="medmnist",
        release_files={s: {medmnist_relpath(name, s): h} for s, h in sha256.items() if s != 28},
        md5={medmnist_relpath(name, s): meta[f"MD5{suffix[s]}"] for s in MEDMNIST_SIZES},
        urls={medmnist_relpath(name, s): meta[f"url{suffix[s]}"] for s in MEDMNIST_SIZES})


_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_IMAGE = r"/[^/]+\.(?i:png|jpe?g)$"
_PBC_CLASSES = ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet")
_IMAGENETTE = {  # WordNet id -> the class name fast.ai's imagenette README gives it (sorted by wnid)
    "n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player",
    "n03000684": "chain saw", "n03028079": "church", "n03394916": "French horn", "n03417042": "garbage truck",
    "n03425413": "gas pump", "n03445777": "golf ball", "n03888257": "parachute"}
_BRAIN_FOLDERS = ("glioma", "meningioma", "notumor", "pituitary")

REGISTRY: dict[str, DatasetInfo] = {
    "breastmnist": _medmnist(
        "breastmnist", title="BreastMNIST", modality="ultrasound", radiology=True, clinical_task=((0,), (1,)),
        source="MedMNIST v2 (Yang et al. 2023); breast ultrasound (Al-Dhabyani et al. 2020)",
        sha256={28: "3a22d2a4625e7dd8903f0f59030e81a3d0c222bece2e5e10927456cb50efdec1",
                64: "c18cdad0c6a4669aaedd761b2f278373eac3a5afe111e685165dc623c1a7b9ed"}),
    "pneumoniamnist": _medmnist(
        "pneumoniamnist", title="PneumoniaMNIST", modality="X-ray", radiology=True, clinical_task=((0,), (1,)),
        source="MedMNIST v2; pediatric chest X-ray (Kermany et al. 2018)",
        sha256={28: "e1792d3f03751cb101e99f19a63b3c1941436c988665f47853417b05be250cd8"}),
    "retinamnist": _medmnist(
        "retinamnist", title="RetinaMNIST", modality="fundus photograph", radiology=False,
        clinical_task=((0,), (2, 3, 4)),
        source="MedMNIST v2; fundus images, DeepDRiD (Liu et al. 2022)",
        sha256={28: "254915f5f0a2074665c4676356824cf4ef4a3bcab233894b4bafcaf48962bd69"},
        note="5 ordinal diabetic-retinopathy grades; clinical task: no DR (grade 0) vs referable DR (grade >= 2, "
             "moderate or worse, the usual screening threshold); grade 1 left out"),
    "mednist": DatasetInfo(
        name="mednist", title="MedNIST", domain="medical", native_size=64, channels=1,
        classes=("AbdomenCT", "BreastMRI", "CXR", "ChestCT", "Hand", "HeadCT"),
        split_sizes={"train": 47163, "val": 5895, "test": 5896},
        licence="CC BY-SA 4.0", source="MONAI MedNIST (B. Erickson, Mayo Clinic); CT, MRI, X-ray",
        files={"mednist/MedNIST.tar.gz": "0a2fa0e39ca57ad2a3cd45d77407327763466e1489b14b390420c16d9affb1e9"},
        modality="CT, MRI, X-ray", radiology=True,
        reader="imagefolder",
        layout=FolderLayout("MedNIST", ("AbdomenCT", "BreastMRI", "CXR", "ChestCT", "Hand", "HeadCT"), "L",
                            fractions=SPLIT_80_10_10, seed=MEDNIST_SPLIT_SEED),
        publisher=Publisher(  # MONAI's own archive and checksum; already in the mirror's layout
            page="https://github.com/Project-MONAI/MONAI", md5="0bc7306e7427e00ad1c5526a6677552d",
            url="https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/MedNIST.tar.gz"),
        note="no official split: stratified 80/10/10 with seed 0 (domaingap.data.MEDNIST_SPLIT_SEED); "
             "no clinical binary task (the classes are body regions and modalities)"),
    "kneeoa": DatasetInfo(
        name="kneeoa", title="Knee OA (KL grades)", domain="medical", native_size=64, channels=1,
        classes=("KL 0", "KL 1", "KL 2", "KL 3", "KL 4"), split_sizes={"train": 5778, "val": 826, "test": 1656},
        licence="CC BY 4.0 (Mendeley Data record; OAI data-use terms may apply)",
        source="Chen 2018, Knee Osteoarthritis Severity Grading Dataset, Mendeley Data doi:10.17632/56rmx5bjcr.1 "
               "(knee X-rays of the Osteoarthritis Initiative)",
        files={"kneeoa-kl/KneeOA_KL.tar.gz": "ecc1cd4ca127f044e03dffba3877244c0f02d100d4a69e74339a7fdbe73036a5"},
        clinical_task=((0,), (2, 3, 4)), modality="X-ray", radiology=True, reader="imagefolder",
        layout=FolderLayout("KneeOA_KL", ("0", "1", "2", "3", "4"), "L",
                            splits={"train": "train", "val": "val", "test": "test"}),
        publisher=Publisher(
            page="https://doi.org/10.17632/56rmx5bjcr.1", image_format="PNG", prefer="224",
            pattern=r"(?:^|/)(?P<split>train|val|test)/(?P<class>[0-4])" + _IMAGE,
            manual="the exact file URL of the Mendeley Data record is not known to this code"),
        note="64 px derived copy (centre crop, LANCZOS) of the 224 px release and its own splits; clinical task "
             "KL 0 vs KL >= 2 (radiographic osteoarthritis), KL 1 (doubtful) left out; the source folder was "
             "named ClaheDataset224, so contrast enhancement before upload cannot be ruled out"),
    "braintumor": DatasetInfo(
        name="braintumor", title="Brain Tumor MRI", domain="medical", native_size=64, channels=1,
        classes=("glioma", "meningioma", "no tumour", "pituitary"), split_sizes={"train": 5708, "test": 1311},
        licence="CC0 1.0",
        source="Nickparvar 2021, Brain Tumor MRI Dataset, Kaggle doi:10.34740/KAGGLE/DSV/2645886 (figshare, "
               "SARTAJ and Br35H images)",
        files={"braintumor-mri/BrainTumorMRI.tar.gz":
               "cd0f222db07ddf22feebb008c4c1843f46c8d9397ed1b4700d70bf17cf7d4f79"},
        clinical_task=((2,), (0, 1, 3)), modality="MRI", radiology=True, reader="imagefolder",
        layout=FolderLayout("BrainTumorMRI", _BRAIN_FOLDERS, "L", splits={"train": "Training", "test": "Testing"}),
        publisher=Publisher(
            page="https://www.kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset", image_format="PNG",
            pattern=r"(?:^|/)(?P<split>Training|Testing)/(?P<class>" + "|".join(_BRAIN_FOLDERS) + ")" + _IMAGE,
            manual="Kaggle downloads need a signed-in account, or API credentials in ~/.kaggle/kaggle.json for "
                   "`kaggle datasets download -d masoudnickparvar/brain-tumor-mri-dataset`"),
        publisher_split_sizes={"train": 5712, "test": 1311},
        note="64 px derived copy of a 224 px copy; the mirror lacks 4 Training/notumor images (5708 vs the "
             "release's 5712); clinical task no tumour vs any tumour (glioma, meningioma, pituitary)"),
    "pbc": DatasetInfo(
        name="pbc", title="PBC blood cells", domain="medical", native_size=64, channels=3,
        classes=_PBC_CLASSES, split_sizes={"train": 1920, "val": 240, "test": 240},
        licence="CC BY 4.0",
        source="Acevedo et al. 2020, Data in Brief 30:105474, PBC_dataset_normal_DIB, Mendeley Data "
               "doi:10.17632/snkd93bnjr.1 (the source of BloodMNIST)",
        files={"pbc-bloodcells/PBC_BloodCells.tar.gz":
               "6da87047227c15e3d73f4efe4cc114161f2ce98dba5033f3c1a54e570739f5ed"},
        modality="light microscopy (blood smears)", radiology=False, reader="imagefolder",
        layout=FolderLayout("PBC_BloodCells", _PBC_CLASSES, "RGB", fractions=SPLIT_80_10_10, seed=PBC_SPLIT_SEED),
        publisher=Publisher(
            page="https://doi.org/10.17632/snkd93bnjr.1", image_format="PNG", per_class=300, subset_seed=0,
            pattern=r"(?:^|/)(?P<class>" + "|".join(_PBC_CLASSES) + ")" + _IMAGE,
            manual="the exact file URL of the Mendeley Data record is not known to this code"),
        note="class-balanced subset of 300 images per class of the 17,092 (random.Random(0)); no official split: "
             "stratified 80/10/10 with seed 0 (domaingap.data.PBC_SPLIT_SEED); not radiology"),
    "mnist": DatasetInfo(
        name="mnist", title="MNIST", domain="natural", native_size=28, channels=1,
        classes=tuple(str(i) for i in range(10)), split_sizes={"train": 60000, "test": 10000},
        licence="CC BY-SA 3.0", source="LeCun et al. 1998", reader="mnist",
        files={f"mnist/{f}": h for f, h in zip(_MNIST_FILES, (
            "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
            "ec02e7948609e5754d47881c09b8afdd8dfa60600b9e5388c8c54a67069ec772",
            "167310007f03058885c7e95e6c0b19c20de5c7fd3031f4cbdadc9014a523d80b",
            "fc607395669ec21321ea83e4b82c0544b7e8e63ff5b34337c06bc0a17cc0da3c"))}),
    "fashionmnist": DatasetInfo(
        name="fashionmnist", title="Fashion-MNIST", domain="natural", native_size=28, channels=1,
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
        split_sizes={"train": 60000, "test": 10000}, licence="MIT", source="Xiao et al. 2017 (Zalando)",
        reader="mnist",
        files={f"fashion-mnist/{f}": h for f, h in zip(_MNIST_FILES, (
            "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
            "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
            "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
            "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"))}),
    "cifar10": DatasetInfo(
        name="cifar10", title="CIFAR-10 (JPEG q~75)", domain="natural", native_size=32, channels=3,
        classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        split_sizes={"train": 50000, "test": 10000},
        licence="citation of Krizhevsky 2009 requested", source="Krizhevsky 2009",
        files={"cifar10-jpeg/CIFAR-10-images.tar.gz":
               "097287809041e0a666355dfce11470ba1b3f2631fe910d8793c716253f10b297"},
        layout=FolderLayout("", ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                 "truck"), "RGB", splits={"train": "train", "test": "test"}),
        note="the offline mirror is JPEG-recompressed (lossy, quality ~75); with internet torchvision's "
             "lossless CIFAR-10 is used instead"),
    "imagenette": DatasetInfo(
        name="imagenette", title="Imagenette", domain="natural", native_size=64, channels=3,
        classes=tuple(_IMAGENETTE.values()), split_sizes={"train": 9469, "val": 3925},
        licence="Apache-2.0 (fast.ai imagenette repository); the photos carry ImageNet's research-only terms",
        source="Howard 2019, imagenette2 (fast.ai): 10 classes of ImageNet ILSVRC-2012",
        files={"imagenette/Imagenette.tar.gz": "8b8f7f910896166e3d467b3481d96b9a571d80027f8367e9303479259156a08c"},
        reader="imagefolder",
        layout=FolderLayout("Imagenette", tuple(_IMAGENETTE), "RGB", splits={"train": "train", "val": "val"}),
        publisher=Publisher(
            page="https://github.com/fastai/imagenette", image_format="JPEG",
            url="https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz",
            md5="fe2fc210e6bb7c5664d602c3cd71e612",  # as torchvision.datasets.Imagenette checks it
            pattern=r"(?:^|/)(?P<split>train|val)/(?P<class>n\d{8})" + _IMAGE),
        note="64 px derived copy (centre crop, LANCZOS, JPEG q90; lossy) of a 224 px copy; the release's own "
             "train/val split; the ImageNet stand-in of the natural domain"),
    "digits": DatasetInfo(
        name="digits", title="scikit-learn digits (8x8)", domain="natural", native_size=8, channels=1,
        classes=tuple(str(i) for i in range(10)), split_sizes={"train": 1438, "test": 359},
        licence="CC BY 4.0 (UCI)", source="UCI optical recognition of handwritten digits, bundled by scikit-learn",
        note="no official split: stratified 80/20 with seed 0; 0..16 intensities rescaled to 0..255"),
}


def info(name: str) -> DatasetInfo:
    """Registry entry of ``name``; unknown names raise a ``KeyError`` listing the known ones."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in REGISTRY:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[key]


def names(domain: str | None = None, *, radiology: bool | None = None) -> list[str]:
    """Registered dataset names, optionally only those of one ``domain`` ("medical" / "natural") and only the
    radiological (``radiology=True``) or the non-radiological (``False``) ones."""
    if domain not in (None, "medical", "natural"):
        raise ValueError(f"domain must be 'medical', 'natural' or None, got {domain!r}")
    if radiology not in (None, True, False):
        raise ValueError(f"radiology must be True, False or None, got {radiology!r}")
    return [n for n, d in REGISTRY.items()
            if (domain is None or d.domain == domain) and (radiology is None or d.radiology == radiology)]
