"""Without the mirror, the 64 px derived datasets are rebuilt from the publishers' own releases, converted as the
mirror's tools converted them. Tested with tiny fake publisher archives; the network is never used."""

import dataclasses
import importlib.util
import io
import os
import random
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from domaingap import data, paths

WNIDS = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916", "n03417042", "n03425413",
         "n03445777", "n03888257"]


@pytest.fixture
def no_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "d"))
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(data.DOWNLOAD_ENV, "0")  # downloads are on by default: never here

    def forbid(*args, **kwargs):
        raise AssertionError(f"unexpected download {args}")

    monkeypatch.setattr(data.publishers, "download", forbid)
    return tmp_path


def _patch(monkeypatch, name, **changes):
    ds = data.info(name)
    pub = changes.pop("publisher", {})
    new = dataclasses.replace(ds, publisher=dataclasses.replace(ds.publisher, **pub), **changes)
    monkeypatch.setitem(data.REGISTRY, name, new)
    return new


def _image(rng, w, h, mode):
    shape = (h, w) if mode == "L" else (h, w, 3)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def _bytes(im, fmt):
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def _expected(raw: bytes, mode: str, fmt: str) -> np.ndarray:
    """The mirror's conversion, stated directly: centre square crop, LANCZOS to 64 px, PNG or JPEG q90."""
    im = Image.open(io.BytesIO(raw)).convert(mode)
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    if s > 64:
        im = im.resize((64, 64), Image.LANCZOS)
    if fmt == "JPEG":
        im = Image.open(io.BytesIO(_bytes_q90(im)))
    arr = np.asarray(im.convert(mode))
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _bytes_q90(im):
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90, optimize=True)
    return buf.getvalue()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, blob in members.items():
            z.writestr(name, blob)
    return path


# --------------------------------------------------------------------------------- the conversion itself

def test_conversion_is_byte_identical_to_the_mirrors_tools():
    tools = Path(os.environ.get(paths.DATA_ENV, "/nonexistent")) / "tools"
    if not (tools / "convert_png.py").is_file():
        pytest.skip("the mirror's tools/ are not in the data directory")
    mods = {}
    for fmt, file in (("PNG", "convert_png.py"), ("JPEG", "convert_jpeg.py")):
        spec = importlib.util.spec_from_file_location(f"_mirror_{fmt}", tools / file)
        mods[fmt] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mods[fmt])
    rng = np.random.default_rng(1)
    images = [_image(rng, 90, 70, "L"), _image(rng, 300, 301, "RGB"), _image(rng, 50, 40, "RGB"),
              Image.fromarray(rng.integers(0, 65535, (80, 100), dtype=np.uint16)),  # 16-bit gray
              _image(rng, 120, 120, "RGB").convert("P"), _image(rng, 77, 99, "RGB").convert("RGBA")]
    for im in images:
        raw = _bytes(im, "PNG")
        for fmt in ("PNG", "JPEG"):
            for mode in ("L", "RGB"):
                assert data.publishers.convert(raw, mode, fmt) == mods[fmt].convert(raw, mode, 64)[0], (im.mode, fmt)


# --------------------------------------------------------------------------------- Imagenette (fast.ai)

def test_imagenette_is_downloaded_from_fast_ai_and_converted(no_mirror, monkeypatch):
    rng = np.random.default_rng(2)
    members, val = {}, {}
    for k, wnid in enumerate(WNIDS):
        for split, n in (("train", 2), ("val", 1)):
            for i in range(n):
                raw = _bytes(_image(rng, 160 + 10 * k, 120, "RGB"), "JPEG")
                members[f"imagenette2/{split}/{wnid}/ILSVRC2012_{k}_{i}.JPEG"] = raw
                if split == "val":
                    val[k] = raw
    members["imagenette2/noisy_imagenette.csv"] = b"path,noisy_labels_0\n"
    members["imagenette2/train/n01440764/.DS_Store"] = b"\0"
    fake = no_mirror / "publisher" / "imagenette2.tgz"
    fake.parent.mkdir()
    with tarfile.open(fake, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    calls = []

    def fake_download(url, path, md5sum=None):
        calls.append((url, md5sum))
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(fake, path)
        return path

    monkeypatch.setattr(data.publishers, "download", fake_download)
    _patch(monkeypatch, "imagenette", split_sizes={"train": 20, "val": 10})
    with pytest.raises(data.DataFileError, match="fast-ai-imageclas/imagenette2.tgz"):
        data.load_arrays("imagenette", "val")  # downloads are off by default: the error says what would be fetched
    assert calls == []
    x, y = data.load_arrays("imagenette", "val", allow_download=True)
    assert calls == [("https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz", "fe2fc210e6bb7c5664d602c3cd71e612")]
    assert x.shape == (10, 3, 64, 64) and y.tolist() == list(range(10))
    for k in range(10):
        assert np.array_equal(x[k], _expected(val[k], "RGB", "JPEG"))
    with tarfile.open(no_mirror / "cache" / "converted" / "imagenette" / "Imagenette.tar.gz") as tar:
        names = tar.getnames()
    assert names == sorted(names) and f"Imagenette/val/{WNIDS[3]}/ILSVRC2012_3_0.jpg" in names and len(names) == 30
    assert (no_mirror / "d" / "imagenette" / "original" / "imagenette2.tgz").is_file()


# --------------------------------------------------------------------------------- Knee OA (Mendeley)

def test_kneeoa_from_a_mendeley_zip_placed_by_hand(no_mirror, monkeypatch):
    with pytest.raises(data.DataFileError) as err:
        data.load_arrays("kneeoa", "train", allow_download=True)
    msg = str(err.value)
    target = no_mirror / "d" / "kneeoa-kl" / "original"
    assert "https://doi.org/10.17632/56rmx5bjcr.1" in msg and "not known" in msg and str(target) in msg
    rng = np.random.default_rng(3)
    members, expected = {}, {}
    for split in ("train", "val", "test", "auto_test"):
        for grade in range(5):
            raw = _bytes(_image(rng, 224, 224, "L"), "PNG")
            members[f"KneeXrayData/ClsKLData/kneeKL224/{split}/{grade}/9{grade}0000{split[0]}L.png"] = raw
            members[f"KneeXrayData/ClsKLData/kneeKL299/{split}/{grade}/9{grade}0000{split[0]}L.png"] = _bytes(
                _image(rng, 299, 299, "L"), "PNG")  # the same knee at 299 px: the 224 px copy is the mirror's
            expected[(split, grade)] = raw
    _zip(target / "KneeXrayData.zip", members)
    _patch(monkeypatch, "kneeoa", split_sizes={"train": 5, "val": 5, "test": 5})
    for split in ("train", "val", "test"):  # auto_test (the release's automatically cropped copy) is left out
        x, y = data.load_arrays("kneeoa", split, allow_download=True)
        assert x.shape == (5, 1, 64, 64) and y.tolist() == [0, 1, 2, 3, 4]
        for grade in range(5):  # PNG is lossless: exactly the crop + LANCZOS of the 224 px original
            assert np.array_equal(x[grade], _expected(expected[(split, grade)], "L", "PNG"))
    s = data.load("kneeoa", "test", classes=data.info("kneeoa").clinical_task, allow_download=True)
    assert s.y.tolist() == [0, 1, 1, 1]


# --------------------------------------------------------------------------------- PBC (Mendeley)

def test_pbc_subset_is_drawn_as_the_mirror_tools_drew_it(no_mirror, monkeypatch):
    classes = data.info("pbc").layout.folders
    rng = np.random.default_rng(4)
    members, by_class = {}, {}
    for c in classes:
        names = [f"PBC_dataset_normal_DIB/{c}/{c[:2].upper()}_{int(v)}.jpg" for v in rng.choice(10**6, 13, False)]
        by_class[c] = sorted(names)
        for name in names:
            members[name] = _bytes(_image(rng, 360, 363, "RGB"), "JPEG")
    members["PBC_dataset_normal_DIB/neutrophil/.DS_169665.jpg"] = members[by_class["neutrophil"][0]]
    members["__MACOSX/PBC_dataset_normal_DIB/basophil/._BA_1.jpg"] = b"mac metadata"
    _zip(no_mirror / "d" / "pbc-bloodcells" / "original" / "PBC_dataset_normal_DIB.zip", members)
    _patch(monkeypatch, "pbc", split_sizes={"train": 64, "val": 8, "test": 8}, publisher={"per_class": 10})
    ys = {s: data.load_arrays("pbc", s, allow_download=True)[1] for s in ("train", "val", "test")}
    assert [np.bincount(ys[s]).tolist() for s in ys] == [[8] * 8, [1] * 8, [1] * 8]
    # the tools' rule: ONE random.Random(0), .sample() per class in sorted class order, each class sorted by path
    r = random.Random(0)
    chosen = sorted(f"PBC_BloodCells/{c}/{Path(p).stem}.png"
                    for c in sorted(classes) for p in r.sample(by_class[c], 10))
    with tarfile.open(no_mirror / "cache" / "converted" / "pbc-bloodcells" / "PBC_BloodCells.tar.gz") as tar:
        assert tar.getnames() == chosen


# --------------------------------------------------------------------------------- Brain tumour MRI (Kaggle)

def test_brain_tumor_needs_a_manual_kaggle_download(no_mirror, monkeypatch):
    with pytest.raises(data.DataFileError) as err:
        data.load_arrays("braintumor", "train", allow_download=True)
    msg = str(err.value)
    target = no_mirror / "d" / "braintumor-mri" / "original"
    assert "Kaggle" in msg and "kaggle.json" in msg and str(target) in msg
    assert "https://www.kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset" in msg
    rng = np.random.default_rng(5)
    for split, n in (("Training", 2), ("Testing", 1)):  # an unpacked Kaggle download works as well as its zip
        for c in ("glioma", "meningioma", "notumor", "pituitary"):
            for i in range(n):
                path = target / split / c / f"{split[:2]}-{c[:2]}_{i:04d}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                _image(rng, 512, 512, "RGB").save(path, format="JPEG")
    # the publisher's split sizes apply to the publisher's release (the mirror's copy lacks 4 training images)
    _patch(monkeypatch, "braintumor", publisher_split_sizes={"train": 8, "test": 4})
    x, y = data.load_arrays("braintumor", "train", allow_download=True)
    assert x.shape == (8, 1, 64, 64) and np.bincount(y).tolist() == [2, 2, 2, 2]
    s = data.load("braintumor", "test", classes=data.info("braintumor").clinical_task, allow_download=True)
    assert s.y.tolist() == [1, 1, 0, 1]  # glioma, meningioma, notumor, pituitary -> tumour, tumour, none, tumour


# --------------------------------------------------------------------------------- MedNIST (MONAI)

def test_mednist_download_is_monais_archive_used_as_it_is(no_mirror, monkeypatch):
    rng = np.random.default_rng(6)
    fake = no_mirror / "MedNIST.tar.gz"
    with tarfile.open(fake, "w:gz") as tar:
        for c in data.info("mednist").classes:
            for i in range(10):
                blob = _bytes(_image(rng, 64, 64, "L"), "JPEG")
                info = tarfile.TarInfo(f"MedNIST/{c}/{i:06d}.jpeg")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    calls = []

    def fake_download(url, path, md5sum=None):
        calls.append((url, md5sum))
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(fake, path)
        return path

    monkeypatch.setattr(data.publishers, "download", fake_download)
    _patch(monkeypatch, "mednist", split_sizes={"train": 48, "val": 6, "test": 6})
    x, y = data.load_arrays("mednist", "val", allow_download=True)
    assert x.shape == (6, 1, 64, 64) and y.tolist() == [0, 1, 2, 3, 4, 5]
    assert calls == [("https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/MedNIST.tar.gz",
                      "0bc7306e7427e00ad1c5526a6677552d")]
