"""Dataset files: checksum and missing-file errors, the download switch, and extraction/decoding that is safe
when several processes share an empty cache or a process was killed half-way."""

import hashlib
import io
import multiprocessing
import os
import signal
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from domaingap import data, paths

NEW = {  # name -> (mirror file, a word of its source that the errors must quote)
    "kneeoa": ("kneeoa-kl/KneeOA_KL.tar.gz", "doi:10.17632/56rmx5bjcr.1"),
    "braintumor": ("braintumor-mri/BrainTumorMRI.tar.gz", "doi:10.34740/KAGGLE/DSV/2645886"),
    "pbc": ("pbc-bloodcells/PBC_BloodCells.tar.gz", "doi:10.17632/snkd93bnjr.1"),
    "imagenette": ("imagenette/Imagenette.tar.gz", "imagenette2"),
}
# SHA-256 of the mirror's files, from the mirror's SHA256SUMS (independent of the registry)
MIRROR_SHA256 = {
    "kneeoa-kl/KneeOA_KL.tar.gz": "ecc1cd4ca127f044e03dffba3877244c0f02d100d4a69e74339a7fdbe73036a5",
    "braintumor-mri/BrainTumorMRI.tar.gz": "cd0f222db07ddf22feebb008c4c1843f46c8d9397ed1b4700d70bf17cf7d4f79",
    "pbc-bloodcells/PBC_BloodCells.tar.gz": "6da87047227c15e3d73f4efe4cc114161f2ce98dba5033f3c1a54e570739f5ed",
    "imagenette/Imagenette.tar.gz": "8b8f7f910896166e3d467b3481d96b9a571d80027f8367e9303479259156a08c",
    "breastmnist/breastmnist_64.npz": "c18cdad0c6a4669aaedd761b2f278373eac3a5afe111e685165dc623c1a7b9ed",
}


@pytest.fixture
def empty_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "d"))
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(data.DOWNLOAD_ENV, "0")  # downloads are on by default: never here
    return tmp_path


def test_registry_checksums_are_the_mirrors():
    registered = {rel: sha for n in data.REGISTRY for rel, sha in data.info(n).all_files.items()}
    for rel, sha in MIRROR_SHA256.items():
        assert registered[rel] == sha


@pytest.mark.parametrize("name", sorted(NEW))
def test_missing_file_error_names_file_checksum_and_source(name, empty_dirs):
    rel, source = NEW[name]
    with pytest.raises(data.DataFileError) as err:
        data.load_arrays(name, "train")
    msg = str(err.value)
    assert str(empty_dirs / "d" / rel) in msg and MIRROR_SHA256[rel] in msg and source in msg
    assert paths.DATA_ENV in msg and data.DOWNLOAD_ENV in msg


@pytest.mark.parametrize("rel", sorted(MIRROR_SHA256))
def test_corrupted_copy_is_a_checksum_error_quoting_both_sums(rel, tmp_path, monkeypatch):
    src = Path(os.environ.get(paths.DATA_ENV, "/nonexistent")) / rel
    if not src.is_file():
        pytest.skip(f"{rel} not in the data directory")
    bad = tmp_path / "d" / rel
    bad.parent.mkdir(parents=True)
    raw = bytearray(src.read_bytes()[: 1 << 20])
    raw[100] ^= 0xFF  # a flipped byte in a truncated copy
    bad.write_bytes(bytes(raw))
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "d"))
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    name = next(n for n in data.REGISTRY if rel in data.info(n).all_files)
    with pytest.raises(data.DataFileError) as err:
        data.load_arrays(name, "train", release=64)
    msg = str(err.value)
    assert "checksum mismatch" in msg and str(bad) in msg
    assert hashlib.sha256(bytes(raw)).hexdigest() in msg and MIRROR_SHA256[rel] in msg
    if rel.endswith("_64.npz"):  # the MedMNIST+ file is also held to its official MD5
        assert "742edef2a1fd1524b2efff4bd7ba9364" in msg and hashlib.md5(bytes(raw)).hexdigest() in msg


def test_download_is_one_switch(monkeypatch):
    monkeypatch.delenv(data.DOWNLOAD_ENV, raising=False)
    # on by default (a user with internet gets the data as with torchvision's download=True); the test
    # session turns it off with DOMAINGAP_DOWNLOAD=0 (conftest), so no test can reach the network by accident
    assert data.files.DOWNLOAD_BY_DEFAULT is True and data.download_allowed(None) is True
    for value, allowed in (("1", True), ("true", True), ("0", False), ("no", False)):
        monkeypatch.setenv(data.DOWNLOAD_ENV, value)
        assert data.download_allowed(None) is allowed
        assert data.download_allowed(True) is True and data.download_allowed(False) is False
    monkeypatch.delenv(data.DOWNLOAD_ENV)
    monkeypatch.setattr(data.files, "DOWNLOAD_BY_DEFAULT", False)  # the one line to flip
    assert data.download_allowed(None) is False and data._download_allowed(None) is False


def test_medmnist_download_goes_through_the_download_function(empty_dirs, monkeypatch):
    calls = []

    def fake_download(url, path, md5sum=None):
        calls.append((url, path, md5sum))
        raise data.DataFileError("no network in tests")

    monkeypatch.setattr(data.readers, "download", fake_download)
    with pytest.raises(data.DataFileError, match="no network"):
        data.load_arrays("pneumoniamnist", "train", release=128, allow_download=True)
    assert calls == [("https://zenodo.org/records/10519652/files/pneumoniamnist_128.npz?download=1",
                      empty_dirs / "d" / "pneumoniamnist" / "pneumoniamnist_128.npz",
                      "05b46931834c231683c68f40c47b2971")]


# --------------------------------------------------------------------------------- extraction

def _make_archive(path: Path, n_files: int = 1500) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    files = {f"Top/c{i % 7}/f{i:05d}.bin": rng.bytes(200 + i % 300) for i in range(n_files)}
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return files


def _tree(dest: Path) -> dict[str, bytes]:
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in sorted(dest.rglob("*")) if p.is_file()}


def _extract_worker(archive, dest, barrier, out):
    barrier.wait()  # all processes start extracting at the same moment
    root = data.extract(Path(archive), Path(dest))
    tree = _tree(root)
    digest = hashlib.sha256(b"".join(k.encode() + v for k, v in tree.items())).hexdigest()
    Path(out).write_text(f"{len(tree)} {digest}")


@pytest.mark.slow  # starts worker processes
def test_concurrent_first_extraction_succeeds_everywhere_with_one_result(tmp_path):
    archive = tmp_path / "a.tar.gz"
    files = _make_archive(archive)
    dest = tmp_path / "cache" / "extracted" / "a"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_extract_worker, args=(str(archive), str(dest), barrier, str(tmp_path / f"r{i}")))
             for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    results = {(tmp_path / f"r{i}").read_text() for i in range(3)}
    assert len(results) == 1
    tree = _tree(dest)
    assert tree.pop(data.MARKER).decode().strip() == data.sha256(archive)
    assert tree == files
    assert not list(dest.parent.glob("*.tmp"))  # no half-finished temporary trees left behind


def test_half_extracted_or_foreign_trees_are_redone_not_trusted(tmp_path):
    archive = tmp_path / "a.tar.gz"
    files = _make_archive(archive, 50)
    dest = tmp_path / "x"
    (dest / "Top" / "c0").mkdir(parents=True)  # what a killed extraction into place could leave: some files,
    (dest / "Top" / "c0" / "f00000.bin").write_bytes(b"trunc")  # one truncated, no marker
    (dest / "stale.txt").write_text("from an older archive")
    data.extract(archive, dest)
    tree = _tree(dest)
    assert tree.pop(data.MARKER).decode().strip() == data.sha256(archive) and tree == files
    (dest / data.MARKER).write_text("0" * 64 + "\n")  # a tree of another archive
    (dest / "Top" / "c1" / "f00001.bin").unlink()
    data.extract(archive, dest)
    tree = _tree(dest)
    assert tree.pop(data.MARKER).decode().strip() == data.sha256(archive) and tree == files
    mtime = (dest / data.MARKER).stat().st_mtime_ns
    data.extract(archive, dest)  # complete and marked: trusted, not redone
    assert (dest / data.MARKER).stat().st_mtime_ns == mtime


def _killed_worker(archive, dest, ready):
    """Extract, but stop dead half-way (as a killed process would): after writing half the members."""
    real = tarfile.TarFile.extractall

    def half(self, path, *args, **kwargs):
        members = self.getmembers()
        real(self, path, members=members[: len(members) // 2], *args, **kwargs)
        Path(ready).write_text("half")
        time.sleep(600)

    tarfile.TarFile.extractall = half
    data.extract(Path(archive), Path(dest))


@pytest.mark.slow  # starts worker processes
def test_a_killed_extraction_is_redone_by_the_next_process(tmp_path):
    archive = tmp_path / "a.tar.gz"
    files = _make_archive(archive, 400)
    dest, ready = tmp_path / "cache" / "a", tmp_path / "ready"
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=_killed_worker, args=(str(archive), str(dest), str(ready)))
    p.start()
    deadline = time.time() + 120
    while not ready.exists() and time.time() < deadline and p.is_alive():
        time.sleep(0.05)
    assert ready.exists(), "the worker never reached half-way"
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    assert list(dest.parent.glob("a.*.tmp")), "the killed worker should have left a half-extracted tree"
    data.extract(archive, dest)  # the lock died with the process; the leftovers are not trusted
    tree = _tree(dest)
    assert tree.pop(data.MARKER).decode().strip() == data.sha256(archive) and tree == files
    assert not list(dest.parent.glob("a.*.tmp"))


def test_a_failed_extraction_leaves_nothing_in_place(tmp_path, monkeypatch):
    archive = tmp_path / "a.tar.gz"
    files = _make_archive(archive, 20)
    dest = tmp_path / "x"

    def boom(self, *args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(tarfile.TarFile, "extractall", boom)
        with pytest.raises(OSError, match="disk full"):
            data.extract(archive, dest)
    assert not dest.exists() and not list(tmp_path.glob("x.*.tmp"))
    data.extract(archive, dest)
    assert len(_tree(dest)) == len(files) + 1


# --------------------------------------------------------------------------------- decoded-array cache

def _decode_worker(data_dir, cache, barrier, out):
    os.environ[paths.DATA_ENV], os.environ[paths.CACHE_ENV] = data_dir, cache
    barrier.wait()
    x, y = data.load_arrays("pbc", "val")
    Path(out).write_text(hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest())


@pytest.mark.slow  # starts worker processes
def test_concurrent_first_decode_shares_one_cache(tmp_path, require_data):
    require_data("pbc")
    cache = tmp_path / "cache"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_decode_worker, args=(str(paths.data_dir()), str(cache), barrier,
                                                      str(tmp_path / f"r{i}"))) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0]
    digests = {(tmp_path / f"r{i}").read_text() for i in range(2)}
    assert len(digests) == 1
    assert len(list((cache / "arrays").glob("pbc-*.npz"))) == 1 and not list((cache / "arrays").glob("*.tmp*"))
    assert (cache / "extracted" / "pbc-bloodcells" / data.MARKER).read_text().strip() == MIRROR_SHA256[
        "pbc-bloodcells/PBC_BloodCells.tar.gz"]
