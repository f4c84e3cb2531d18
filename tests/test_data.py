"""The data layer: official split sizes, deterministic task/subset requests, clear errors for bad data."""

import numpy as np
import pytest
import torch

from domaingap import data, paths


@pytest.mark.parametrize("name", sorted(data.REGISTRY))
def test_official_split_sizes_and_label_ranges(name, require_data):
    require_data(name)
    ds = data.info(name)
    for split, size in ds.split_sizes.items():
        x, y = data.load_arrays(name, split)
        assert x.shape == (size, ds.channels, ds.native_size, ds.native_size)
        assert x.dtype == np.uint8 and y.dtype == np.int64
        assert set(np.unique(y)) == set(range(ds.num_classes))


def test_split_sizes_are_the_official_ones():
    # Stated independently of the registry: MedMNIST v2 paper, torchvision docs, the releases' own splits (knee:
    # Chen 2018; brain: Nickparvar 2021 less 4 unmirrored files; imagenette2), and ours (MedNIST, PBC: 80/10/10).
    official = {"breastmnist": (546, 78, 156), "pneumoniamnist": (4708, 524, 624),
                "retinamnist": (1080, 120, 400), "mnist": (60000, 10000), "fashionmnist": (60000, 10000),
                "cifar10": (50000, 10000), "mednist": (47163, 5895, 5896), "kneeoa": (5778, 826, 1656),
                "braintumor": (5708, 1311), "pbc": (1920, 240, 240), "imagenette": (9469, 3925)}
    for name, sizes in official.items():
        assert tuple(data.info(name).split_sizes.values()) == sizes


def test_mednist_split_is_stratified_disjoint_and_complete(require_data):
    require_data("mednist")
    ys = {s: data.load_arrays("mednist", s)[1] for s in ("train", "val", "test")}
    assert sum(len(y) for y in ys.values()) == 58954
    for c, total in enumerate([10000, 8954, 10000, 10000, 10000, 10000]):
        assert abs((ys["train"] == c).sum() - 0.8 * total) <= 1


def test_binary_task_subset_is_deterministic_and_balanced(require_data):
    require_data("mnist")
    a = data.load("mnist", classes=(3, 5), n=100, seed=7, balanced=True)
    b = data.load("mnist", classes=(3, 5), n=100, seed=7, balanced=True)
    c = data.load("mnist", classes=(3, 5), n=100, seed=8, balanced=True)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not np.array_equal(a.indices, c.indices)
    assert a.y.bincount().tolist() == [50, 50]
    _, raw = data.load_arrays("mnist", "train")
    assert (raw[a.indices] == np.where(a.y.numpy() == 0, 3, 5)).all()  # relabelled in the order asked
    assert a.classes == ("3", "5")


def test_resize_channels_and_pixel_range(require_data):
    require_data("retinamnist")
    # release=28: up-sample the 28 px images (by default size 32 would read the 64 px release, not mirrored here)
    s = data.load("retinamnist", "test", size=32, channels=1, pixel_range=(0, 255), n=20, seed=0, release=28)
    assert s.x.shape == (20, 1, 32, 32) and s.x.dtype == torch.float32
    assert 0 <= float(s.x.min()) and float(s.x.max()) <= 255 and float(s.x.max()) > 1
    t = data.load("retinamnist", "test", n=20, seed=0)
    assert t.x.shape == (20, 3, 28, 28) and float(t.x.max()) <= 1.0
    # luma conversion agrees with PIL's "L" mode (integer rounding aside)
    from PIL import Image

    raw, _ = data.load_arrays("retinamnist", "test")
    pil = np.asarray(Image.fromarray(raw[t.indices[0]].transpose(1, 2, 0)).convert("L"), dtype=np.float32)
    ours = data.load("retinamnist", "test", channels=1, pixel_range=(0, 255), n=20, seed=0).x[0, 0].numpy()
    assert np.abs(ours - pil).max() <= 1.0


def test_missing_file_names_file_checksum_and_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "empty"))
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(data.DOWNLOAD_ENV, "0")  # downloads are on by default: never here
    with pytest.raises(data.DataFileError) as err:
        data.load_arrays("breastmnist", "train")
    msg = str(err.value)
    assert "breastmnist.npz" in msg and data.info("breastmnist").files["breastmnist/breastmnist.npz"] in msg
    assert paths.DATA_ENV in msg and data.DOWNLOAD_ENV in msg


def test_checksum_mismatch_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "d" / "breastmnist").mkdir(parents=True)
    (tmp_path / "d" / "breastmnist" / "breastmnist.npz").write_bytes(b"not the real file")
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "d"))
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(data.DataFileError, match="checksum mismatch"):
        data.load_arrays("breastmnist", "train")


def test_unknown_dataset_lists_known_names():
    with pytest.raises(KeyError) as err:
        data.info("imagenet")
    for name in data.REGISTRY:
        assert name in str(err.value)


def test_bad_requests_raise_clear_errors(require_data):
    require_data("breastmnist")
    with pytest.raises(ValueError, match="n=10000"):
        data.load("breastmnist", n=10000)
    with pytest.raises(ValueError, match=r"classes must be"):
        data.load("breastmnist", classes=(0, 7))
    with pytest.raises(ValueError, match="pixel_range"):
        data.load("breastmnist", pixel_range=(0, 2))
    with pytest.raises(ValueError, match="splits"):
        data.load_arrays("mnist", "val")
    with pytest.raises(ValueError, match="class 0"):
        data.sample_indices(np.array([0] * 3 + [1] * 50), 20, seed=0, balanced=True)


def test_digits_need_no_file():
    x, y = data.load_arrays("digits", "train")
    assert x.shape == (1438, 1, 8, 8) and x.max() == 255


def test_medmnist_plus_release_missing_offline_names_file_md5_and_url(tmp_path, monkeypatch):
    import medmnist

    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "d"))
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(data.DOWNLOAD_ENV, "0")  # downloads are on by default: never here
    assert data.releases("breastmnist") == (28, 64, 128, 224) and data.releases("mnist") == (28,)
    with pytest.raises(data.DataFileError) as err:
        data.load_arrays("breastmnist", "train", release=224)
    msg = str(err.value)
    assert "breastmnist_224.npz" in msg and medmnist.INFO["breastmnist"]["MD5_224"] in msg
    assert medmnist.INFO["breastmnist"]["url_224"] in msg
    with pytest.raises(ValueError, match="published at"):
        data.load_arrays("mnist", "train", release=224)


def test_release_for_reads_the_smallest_release_at_least_the_wanted_size():
    assert data.release_for("breastmnist", None) == 28 and data.release_for("breastmnist", 28) == 28
    assert data.release_for("breastmnist", 112) == 128 and data.release_for("breastmnist", 224) == 224
    assert data.release_for("breastmnist", 300) == 224  # nothing larger: the largest, up-sampled
    assert data.release_for("mnist", 224) == 28 and data.release_for("mednist", 224) == 64


def test_load_at_224_px_reads_the_224_px_release_not_an_upsampled_28(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "d"))
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(data.DOWNLOAD_ENV, "0")  # downloads are on by default: never here
    with pytest.raises(data.DataFileError, match="(?s)breastmnist_224.npz.*release=28"):
        data.load("breastmnist", "test", size=224)
    with pytest.raises(data.DataFileError, match="breastmnist_128.npz"):
        data.load("breastmnist", "test", size=112)


def test_medmnist_plus_release_checksum_is_verified(tmp_path, monkeypatch):
    (tmp_path / "d" / "breastmnist").mkdir(parents=True)
    (tmp_path / "d" / "breastmnist" / "breastmnist_64.npz").write_bytes(b"corrupt")
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "d"))
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(data.DataFileError, match="MD5"):
        data.load_arrays("breastmnist", "train", release=64)
