"""The registry's facts against independently stated official numbers, the new datasets read from the mirror,
and class-GROUP tasks (KL 0 vs KL >= 2, no tumour vs any tumour)."""

import numpy as np
import pytest
import torch

from domaingap import data

# --------------------------------------------------------------------------------- MedMNIST metadata (INFO)

# Stated independently of the code: MedMNIST v2 paper (Yang et al. 2023, Table 1) and the offline mirror's README
# (official Zenodo MD5s).
MEDMNIST_OFFICIAL = {
    "breastmnist": ((546, 78, 156), ("malignant", "normal, benign"), 1,
                    {28: "750601b1f35ba3300ea97c75c52ff8f6", 64: "742edef2a1fd1524b2efff4bd7ba9364"}),
    "pneumoniamnist": ((4708, 524, 624), ("normal", "pneumonia"), 1, {28: "28209eda62fecd6e6a2d98b1501bb15f"}),
    "retinamnist": ((1080, 120, 400), tuple(f"grade {g}" for g in range(5)), 3,
                    {28: "bd4c0672f1bba3e3a89f0e4e876791e4"}),
}


@pytest.mark.parametrize("name", sorted(MEDMNIST_OFFICIAL))
def test_medmnist_entries_carry_the_official_metadata(name):
    sizes, classes, channels, md5s = MEDMNIST_OFFICIAL[name]
    ds = data.info(name)
    assert tuple(ds.split_sizes.values()) == sizes and tuple(ds.split_sizes) == ("train", "val", "test")
    assert ds.classes == classes and ds.channels == channels and ds.licence == "CC BY 4.0"
    for size, md5 in md5s.items():
        rel = f"{name}/{name}.npz" if size == 28 else f"{name}/{name}_{size}.npz"
        assert ds.md5[rel] == md5
        assert ds.urls[rel] == f"https://zenodo.org/records/10519652/files/{rel.split('/')[1]}?download=1"


def test_medmnist_metadata_is_medmnist_info_itself():
    import medmnist

    assert data.medmnist_info() == medmnist.INFO
    for name in MEDMNIST_OFFICIAL:
        meta = medmnist.INFO[name]
        assert data.info(name).split_sizes == meta["n_samples"]
        assert data.info(name).md5[f"{name}/{name}_224.npz"] == meta["MD5_224"]


@pytest.mark.parametrize("name", sorted(MEDMNIST_OFFICIAL))
def test_mirrored_medmnist_files_have_the_official_md5(name, require_data):
    require_data(name)
    for size, md5 in MEDMNIST_OFFICIAL[name][3].items():
        rel = f"{name}/{name}.npz" if size == 28 else f"{name}/{name}_{size}.npz"
        assert data.md5(data.paths.data_dir() / rel) == md5


def test_breastmnist_64_is_read_from_the_mirror(require_data, monkeypatch):
    require_data("breastmnist")
    if not data.have_files(data.info("breastmnist"), 64):
        pytest.skip("breastmnist_64.npz is not in the data directory")
    monkeypatch.setenv(data.DOWNLOAD_ENV, "0")  # downloads are on by default: never here
    assert data.release_for("breastmnist", 64) == 64
    s = data.load("breastmnist", "test", size=64)  # reads breastmnist_64.npz: no download, no up-sampling
    assert s.x.shape == (156, 1, 64, 64)
    x28, y28 = data.load_arrays("breastmnist", "test")
    x64, y64 = data.load_arrays("breastmnist", "test", release=64)
    assert np.array_equal(y28, y64) and np.bincount(y64).tolist() == [42, 114]  # same images, same labels
    # the 64 px release holds more detail than an up-sampled 28 px image: its 28 px down-sample is close to the
    # 28 px release, its own fine structure is not
    small = torch.nn.functional.interpolate(torch.from_numpy(x64).float(), size=28, mode="area")
    assert float((small - torch.from_numpy(x28).float()).abs().mean()) < 8


# --------------------------------------------------------------------------------- the new datasets

def _all_labels(name):
    return {s: data.load_arrays(name, s)[1] for s in data.info(name).split_sizes}


def test_kneeoa_splits_and_kl_grade_counts(require_data):
    require_data("kneeoa")
    ys = _all_labels("kneeoa")
    assert {s: len(y) for s, y in ys.items()} == {"train": 5778, "val": 826, "test": 1656}
    assert np.bincount(np.concatenate(list(ys.values()))).tolist() == [3253, 1495, 2175, 1086, 251]
    x, _ = data.load_arrays("kneeoa", "val")
    assert x.shape == (826, 1, 64, 64) and x.dtype == np.uint8


def test_braintumor_splits_and_class_counts(require_data):
    require_data("braintumor")
    ys = _all_labels("braintumor")
    assert list(ys) == ["train", "test"]  # the release's Training/Testing folders
    assert np.bincount(ys["test"]).tolist() == [300, 306, 405, 300]  # glioma, meningioma, notumor, pituitary
    assert np.bincount(ys["train"]).tolist() == [1321, 1339, 1595 - 4, 1457]  # 4 notumor files never mirrored
    assert data.info("braintumor").classes[2] == "no tumour"
    x, _ = data.load_arrays("braintumor", "test")
    assert x.shape == (1311, 1, 64, 64)


def test_pbc_is_300_per_class_split_80_10_10_by_a_fixed_seed(require_data):
    require_data("pbc")
    ys = _all_labels("pbc")
    assert np.bincount(np.concatenate(list(ys.values()))).tolist() == [300] * 8
    for split, per_class in (("train", 240), ("val", 30), ("test", 30)):
        assert np.bincount(ys[split]).tolist() == [per_class] * 8
    x, _ = data.load_arrays("pbc", "test")
    assert x.shape == (240, 3, 64, 64)
    assert not np.array_equal(x[:, 0], x[:, 2])  # stained smears: real colour, not gray stored as RGB
    assert data.PBC_SPLIT_SEED == 0 and "seed 0" in data.info("pbc").note


def test_imagenette_splits_and_human_readable_class_names(require_data):
    from torchvision.datasets import Imagenette

    ds = data.info("imagenette")
    wnids = sorted(Imagenette._WNID_TO_CLASS)  # torchvision's table, independent of ours
    assert ds.layout.folders == tuple(wnids)
    assert ds.classes == tuple(Imagenette._WNID_TO_CLASS[w][0] for w in wnids)
    require_data("imagenette")
    ys = _all_labels("imagenette")
    assert {s: len(y) for s, y in ys.items()} == {"train": 9469, "val": 3925}
    assert np.bincount(ys["val"]).tolist() == [387, 395, 357, 386, 409, 394, 389, 419, 399, 390]  # imagenette2
    x, _ = data.load_arrays("imagenette", "val")
    assert x.shape == (3925, 3, 64, 64)


def test_radiology_flags_allow_a_radiology_only_analysis():
    # X-ray, CT, MRI and ultrasound are radiology; fundus photographs and blood-smear microscopy are not
    assert set(data.names("medical", radiology=True)) == {"breastmnist", "pneumoniamnist", "mednist", "kneeoa",
                                                          "braintumor"}
    assert set(data.names("medical", radiology=False)) == {"retinamnist", "pbc"}
    assert data.names("natural", radiology=True) == []
    assert all(data.info(n).modality for n in data.names("medical"))
    with pytest.raises(ValueError, match="radiology must be"):
        data.names(radiology="yes")


def test_clinical_tasks_group_the_right_classes():
    def named(name):
        ds = data.info(name)
        return [sorted(ds.classes[c] for c in group) for group in ds.clinical_task]

    assert named("kneeoa") == [["KL 0"], ["KL 2", "KL 3", "KL 4"]]  # KL 0 vs radiographic OA (KL >= 2)
    assert named("braintumor") == [["no tumour"], ["glioma", "meningioma", "pituitary"]]
    assert named("retinamnist") == [["grade 0"], ["grade 2", "grade 3", "grade 4"]]  # no DR vs referable DR
    assert named("breastmnist") == [["malignant"], ["normal, benign"]]
    assert named("pneumoniamnist") == [["normal"], ["pneumonia"]]
    # where the classes are no clinical question, P1 draws random pairs instead
    for name in ("mednist", "pbc") + tuple(data.names("natural")):
        assert data.info(name).clinical_task is None, name
    assert not hasattr(data.info("kneeoa"), "binary_task")


# --------------------------------------------------------------------------------- class groups in load()

def test_grouped_classes_relabel_each_group_to_one_label(require_data):
    require_data("kneeoa")
    s = data.load("kneeoa", "test", classes=data.info("kneeoa").clinical_task)
    assert s.classes == ("KL 0", "KL 2+KL 3+KL 4") and s.groups == ((0,), (2, 3, 4))
    assert s.y.bincount().tolist() == [639, 447 + 223 + 51]  # KL 1 (296 test images) is left out
    _, raw = data.load_arrays("kneeoa", "test")
    assert set(raw[s.indices[s.y.numpy() == 1]]) == {2, 3, 4} and set(raw[s.indices[s.y.numpy() == 0]]) == {0}
    b = data.load("kneeoa", "test", classes=((0,), (2, 3, 4)), n=100, seed=3, balanced=True)
    assert b.y.bincount().tolist() == [50, 50]


def test_brain_no_tumour_vs_tumour(require_data):
    require_data("braintumor")
    s = data.load("braintumor", "test", classes=data.info("braintumor").clinical_task)
    assert s.classes == ("no tumour", "glioma+meningioma+pituitary")
    assert s.y.bincount().tolist() == [405, 300 + 306 + 300]


def test_groups_mix_with_plain_ids_and_plain_pairs_keep_their_meaning():
    g = data.load("digits", "test", classes=[(1, 7), 4, np.array([0, 8])])
    _, raw = data.load_arrays("digits", "test")
    expected = np.select([np.isin(raw, [1, 7]), raw == 4, np.isin(raw, [0, 8])], [0, 1, 2], -1)
    assert np.array_equal(g.y.numpy(), expected[expected >= 0]) and g.classes == ("1+7", "4", "0+8")
    p = data.load("digits", "test", classes=(3, 5))
    assert p.classes == ("3", "5") and p.groups == ((3,), (5,))
    assert np.array_equal(raw[p.indices], np.where(p.y.numpy() == 0, 3, 5))
    assert data.load("digits", "test").groups == tuple((c,) for c in range(10))


@pytest.mark.parametrize("classes, quoted", [
    ((0, (0, 1)), "ids [0] are repeated"), (((0, 1), (1, 2)), "ids [1] are repeated"),
    ((0, ()), "element ()"), ((0, 10), "ids [10] are out of range"), (((0, 1, 2),), "only 1 group"),
    ((0, "1"), "element '1'"), ((0, (1, 2.5)), "element (1, 2.5)"), ("01", "'01'"), (3, "got 3"),
])
def test_bad_class_groups_quote_the_offending_value(classes, quoted):
    with pytest.raises(ValueError) as err:
        data.load("digits", "test", classes=classes)
    assert "classes must be" in str(err.value) and "0..9 of digits" in str(err.value)
    assert quoted in str(err.value)
