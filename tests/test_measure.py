"""``domaingap measure``: P1's intrinsic properties of a user's images (domaingap.measure, domaingap.cli).

Small images (16-28 px, a few dozen) and tiny reference subsamples, so the whole module takes seconds; the
reference runs go to a run store in tmp_path. Tests that need the mirror's BreastMNIST skip without it (CI has it).
"""

import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from domaingap.data.formats import p1_format
from domaingap import cli, data, runs
from domaingap import measure as M
from domaingap.kernels import intrinsic_dim, sharpness
from domaingap.kernels._validation import DuplicatePointsWarning
from domaingap.measure import api, inputs, preprocess, report

FAST = {"n_bootstrap": 50, "progress": False}


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("DOMAINGAP_ARTEFACTS", str(tmp_path / "artefacts"))
    monkeypatch.setenv("DOMAINGAP_RUN_THREADS", "1")


def _images(seed: int, n_per_class: int, classes: int, size: int = 16, rgb: bool = False) -> list:
    """Blurry class-dependent blobs plus noise (distinct images, different per class)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for c in range(classes):
        for i in range(n_per_class):
            cx, cy = size * (0.3 + 0.2 * c) + rng.normal(0, 1.5), size * 0.5 + rng.normal(0, 1.5)
            img = 200 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (2 + c) ** 2)) + rng.uniform(0, 40, (size, size))
            img = np.clip(img, 0, 255).astype(np.uint8)
            if rgb:
                img = np.stack([img, np.roll(img, 1, 0), np.roll(img, 1, 1)], axis=-1)
            out.append((c, i, img))
    return out


def _write_folder(root, items, names=("alpha", "beta", "gamma"), fmt="png"):
    from PIL import Image

    for c, i, img in items:
        d = root / names[c]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:03d}.{fmt}")
    return root


@pytest.fixture
def folder(tmp_path):
    """3 classes x 12 grey 16 px PNGs."""
    return _write_folder(tmp_path / "imgs", _images(0, 12, 3))


@pytest.fixture
def store(tmp_path):
    return runs.Store(tmp_path / "artefacts")


def _kernels(x, y, seed=0):
    """The statistics by the kernels called directly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicatePointsWarning)
        return {"mle": intrinsic_dim.mle(x, k=20), "twonn": intrinsic_dim.twonn(x),
                "mle10": intrinsic_dim.mle(x, k=10),
                "kf": sharpness.label_sharpness(x, y, on_duplicate="inf"),
                "kf_sampled": sharpness.label_sharpness_sampled(x, y, n_images=min(1000, len(y)), seed=seed)}


def _folder_arrays(root, size):
    """The folder read independently of domaingap.measure.inputs: sorted class folders, sorted files, P1 format."""
    import torch
    from PIL import Image

    xs, ys = [], []
    for c, d in enumerate(sorted(p for p in root.iterdir() if p.is_dir())):
        for f in sorted(d.iterdir()):
            xs.append(np.asarray(Image.open(f), dtype=np.float32)[None])
            ys.append(c)
    x = torch.from_numpy(np.stack(xs))
    return p1_format(x, size), np.asarray(ys)


# ----------------------------------------------------------------------------------------------- CLI

def test_cli_on_an_imagefolder_writes_a_report_whose_numbers_are_the_kernels(folder, tmp_path, capsys):
    out = tmp_path / "report"
    rc = cli.main(["measure", str(folder), "--out", str(out), "--n", "24", "--references", "none",
                   "--bootstrap", "50", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert "report:" in capsys.readouterr().out
    for name in ("report.md", "measurement.json", *report.FIGURES.values()):
        assert (out / name).is_file(), name
    got = json.loads((out / "measurement.json").read_text())
    x, y = _folder_arrays(folder, 16)
    ref = _kernels(x, y)
    g = got["geometry"]
    assert got["n_images"] == 36 and got["classes"] == ["alpha", "beta", "gamma"] and got["class_counts"] == [12] * 3
    assert g["mle"][0] == ref["mle"] and g["twonn"][0] == ref["twonn"] and g["mle_by_k"]["10"][0] == ref["mle10"]
    assert g["k_f"] == ref["kf"] and g["k_f_sampled"] == ref["kf_sampled"]
    assert g["skipped_k"] == [50]  # 36 images: k = 50 is impossible
    # the common n = 24 subsample: the kernels on the same seeded class-balanced subsample
    idx = data.sample_indices(y, 24, seed=0, balanced=True)
    sub = _kernels(x[idx], y[idx])
    assert got["common_n"] == 24 and got["common"]["mle"][0] == sub["mle"] and got["common"]["k_f"] == sub["kf"]
    text = (out / "report.md").read_text()
    assert f"{ref['mle']:.2f}" in text and f"{ref['kf'] * 1e4:.2f}" in text and "## What P1's claims predict" in text


def test_cli_bad_input_is_exit_status_2_with_the_message(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["measure", str(tmp_path / "empty"), "--quiet"]) == 2
    assert "is empty" in capsys.readouterr().err
    assert cli.main(["measure", "no_such_dataset_or_folder", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "neither an existing folder" in err and "breastmnist" in err


def test_module_entry_point_runs():
    res = subprocess.run([sys.executable, "-m", "domaingap.cli", "measure", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and "--size" in res.stdout and "--task" in res.stdout


def test_run_twice_gives_identical_numbers_and_report(folder, tmp_path):
    a = M.measure_path(folder, out=tmp_path / "a", n=24, references=False, **FAST)
    b = M.measure_path(folder, out=tmp_path / "b", n=24, references=False, **FAST)
    assert a == b and a.to_dict() == b.to_dict()
    assert (tmp_path / "a" / "report.md").read_text() == (tmp_path / "b" / "report.md").read_text()
    assert (tmp_path / "a" / "measurement.json").read_text() == (tmp_path / "b" / "measurement.json").read_text()


def test_task_restricts_to_two_classes_by_name_or_index(folder):
    by_name = M.measure_path(folder, task="alpha,gamma", n=24, references=False, **FAST)
    by_index = M.measure_path(folder, task=[0, 2], n=24, references=False, **FAST)
    assert by_name.classes == ("alpha", "gamma") and by_name.class_counts == (12, 12)
    assert by_name == by_index
    with pytest.raises(ValueError, match="neither a class name"):
        M.measure_path(folder, task="alpha,delta", references=False, **FAST)
    with pytest.raises(ValueError, match="two different classes"):
        M.measure_path(folder, task="alpha,alpha", references=False, **FAST)


# ----------------------------------------------------------------------------------------------- bad inputs

def test_single_class_folder_is_refused(tmp_path):
    root = _write_folder(tmp_path / "one", _images(1, 30, 1))
    with pytest.raises(ValueError, match="single class .'alpha', 30 images"):
        M.measure_path(root, references=False, **FAST)


def test_folder_without_class_folders_is_refused(tmp_path):
    from PIL import Image

    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(ValueError, match="one sub-folder per class"):
        M.measure_path(tmp_path / "flat", references=False, **FAST)


def test_mixed_sizes_are_refused_without_size_and_resized_with_it(tmp_path):
    items = _images(2, 12, 2, size=16) + [(c, 100 + i, img) for c, i, img in _images(3, 6, 2, size=20)]
    root = _write_folder(tmp_path / "mixed", items)
    with pytest.raises(ValueError, match=r"different sizes: 16x16 \(24 images\), 20x20 \(12 images\).*--size"):
        M.measure_path(root, references=False, **FAST)
    m = M.measure_path(root, size=28, n=24, references=False, **FAST)
    assert m.size == 28 and m.n_images == 36 and m.input_sizes == ((16, 16, 24), (20, 20, 12))
    assert any("resized to 28 x 28 px" in note for note in m.notes)


def test_unreadable_files_are_named(folder):
    (folder / "beta" / "broken.png").write_bytes(b"not a png at all")
    (folder / "gamma" / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"2 of 38 image files .* cannot be read: beta/broken.png .*gamma/empty.jpg"):
        M.measure_path(folder, references=False, **FAST)


def test_gray_rgb_mix_is_converted_and_said(tmp_path):
    items = [(c, i, img) for c, i, img in _images(4, 12, 2)] + \
            [(c, 100 + i, img) for c, i, img in _images(5, 6, 2, rgb=True)]
    root = _write_folder(tmp_path / "mix", items)
    rgb = M.measure_path(root, n=24, references=False, out=tmp_path / "r", **FAST)
    assert rgb.channels == 3 and rgb.input_channels == ((1, 24), (3, 12))
    assert any("24 grey images were converted to RGB" in note for note in rgb.notes)
    assert "converted to RGB" in (tmp_path / "r" / "report.md").read_text()
    grey = M.measure_path(root, gray=True, n=24, references=False, **FAST)
    assert grey.channels == 1 and any("12 RGB images converted to grey" in note for note in grey.notes)


def test_conflicting_duplicates_make_kf_infinite_and_are_reported(tmp_path):
    items = _images(6, 12, 2)
    twin = items[3][2]
    items.append((1, 99, twin.copy()))  # image 3 of class 0, again in class 1
    root = _write_folder(tmp_path / "dup", items, names=("a", "b"))
    m = M.measure_path(root, n=24, references=False, out=tmp_path / "rep", **FAST)
    g = m.geometry
    assert math.isinf(g.k_f) and g.k_f_distance == 0.0
    assert g.conflicting_count == 1 and g.exact_duplicates == 1 and len(g.conflicting_groups[0]) == 2
    assert g.k_f_without_conflicts is not None and math.isfinite(g.k_f_without_conflicts)
    assert math.isfinite(g.k_f_sampled)
    assert "**K_F is infinite**" in (tmp_path / "rep" / "report.md").read_text()
    assert json.loads((tmp_path / "rep" / "measurement.json").read_text())["geometry"]["k_f"] == "inf"


def test_near_duplicates_follow_the_stated_rule():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, size=(40, 1, 8, 8)).astype(np.uint8)
    x[1] = x[0]
    x[1, 0, 0, 0] = x[0, 0, 0, 0] ^ 1  # one grey level apart: far below 5% of the median NN distance
    y = np.arange(40) % 2
    m = M.measure(x, y, n=40, references=False, **FAST)
    assert (0, 1) in m.geometry.near_duplicate_pairs and m.geometry.near_duplicate_conflicts >= 1
    assert m.geometry.near_duplicate_threshold == pytest.approx(M.NEAR_DUPLICATE_FRACTION * m.geometry.nn_median)


def test_array_inputs_validated():
    x = np.random.default_rng(0).uniform(0, 1, (30, 12, 12, 3)).astype(np.float32)
    y = np.arange(30) % 3
    m = M.measure(x, y, references=False, **FAST)  # NHWC floats in [0, 1]
    assert m.channels == 3 and m.size == 12 and m.classes == ("0", "1", "2")
    m255 = M.measure(x * 255, y, references=False, **FAST)  # P1 scales per image: the range does not matter
    assert m255.geometry.k_f == pytest.approx(m.geometry.k_f, rel=1e-2)
    with pytest.raises(ValueError, match="negative pixels"):
        M.measure(x - 0.5, y, references=False, **FAST)
    with pytest.raises(ValueError, match="30 images but 29 labels"):
        M.measure(x, y[:29], references=False, **FAST)
    with pytest.raises(ValueError, match="multi-label"):
        M.measure(x, np.zeros((30, 3)), references=False, **FAST)
    with pytest.raises(ValueError, match="single class"):
        M.measure(x, np.zeros(30), references=False, **FAST)
    with pytest.raises(ValueError, match="at least 21 distinct images"):
        M.measure(x[:15], y[:15], references=False, **FAST)
    with pytest.raises(ValueError, match="device must be"):
        M.measure(x, y, device="tpu", references=False, **FAST)


def test_rgb_format_matches_the_chapter_on_grey_images():
    import torch

    g = torch.from_numpy(np.random.default_rng(1).uniform(0, 300, (5, 1, 20, 20)).astype(np.float32))
    assert torch.equal(preprocess.to_p1_format(g.repeat(1, 3, 1, 1), 12, 3), p1_format(g, 12).repeat(1, 3, 1, 1))
    assert torch.equal(preprocess.to_p1_format(g, 12, 1), p1_format(g, 12))


# ----------------------------------------------------------------------------------------------- npz and registered

def test_npz_in_medmnist_layout(tmp_path):
    items = _images(8, 25, 2, size=14)
    x = np.stack([img for _, _, img in items])
    y = np.array([c for c, _, _ in items])[:, None]
    np.savez(tmp_path / "mine.npz", train_images=x[::2], train_labels=y[::2], test_images=x[1::2],
             test_labels=y[1::2])
    pooled = M.measure_path(tmp_path / "mine.npz", n=24, references=False, **FAST)
    assert pooled.n_images == 50 and pooled.classes == ("0", "1") and any("pooled" in n for n in pooled.notes)
    train = M.measure_path(tmp_path / "mine.npz", split="train", n=24, references=False, **FAST)
    assert train.n_images == 25
    with pytest.raises(ValueError, match="split 'val' is not in"):
        M.measure_path(tmp_path / "mine.npz", split="val", references=False, **FAST)
    np.savez(tmp_path / "bad.npz", images=x, labels=y)
    with pytest.raises(ValueError, match="expected MedMNIST's layout"):
        M.measure_path(tmp_path / "bad.npz", references=False, **FAST)


def test_registered_name_is_the_chapter_format_and_equals_its_own_reference(require_data, store, tmp_path):
    require_data("breastmnist")
    from domaingap.chapters import p1

    m = M.measure_path("breastmnist", n=40, references=["breastmnist"], store=store, out=tmp_path / "rep", **FAST)
    assert m.n_images == 780 and m.classes == data.info("breastmnist").classes and m.common_n == 40
    (ref,) = m.references
    assert ref.name == "breastmnist" and ref.n == 40 and ref.domain == "medical"
    assert m.common == ref.geometry  # same subsample, same preprocessing: the same numbers
    # the images are exactly the P1 chapter's pooled task images
    imgs = inputs.read_registered("breastmnist", size=28)
    x, *_ = api._format(imgs, 28, True, M.resolve_device("cpu"))
    pool = p1.task_pool(p1.make_task("breastmnist", (0, 1)), 28)
    assert np.array_equal(x.numpy(), pool.x) and np.array_equal(imgs.labels, pool.y)
    # cached: a second call finds the reference in the store
    entry = store.lookup("measure_reference", ref.key)
    assert entry is not None and M.Geometry.from_dict(entry.result["geometry"]) == ref.geometry
    again = M.measure_path("breastmnist", n=40, references=["breastmnist"], store=store, **FAST)
    assert again.references == m.references
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| BreastMNIST (this dataset) | medical (radiology) | 40 |" in text
    assert "images 115, 700" in text  # BreastMNIST holds one image twice, with both labels
    assert (tmp_path / "rep" / "fig_properties.png").stat().st_size > 10_000


def test_reference_kept_below_the_common_n_says_so(require_data, store):
    require_data("breastmnist")
    # BreastMNIST has 210 malignant images: a balanced n of 500 is impossible, it is measured at 420
    refs, notes = M.compute_references(["breastmnist"], size=16, channels=1, n=500, store=store, progress=False,
                               settings={"ks": [20], "k": 20, "ci": 0.95, "n_bootstrap": 20,
                                         "near_duplicate_fraction": 0.05, "kf_sample_images": 1000})
    assert refs[0].n == 420 and refs[0].n_requested == 500 and not refs[0].at_common_n and notes == []
