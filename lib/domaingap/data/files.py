"""Dataset files: where they are, their checksums, clear errors, and safe extraction, caching and download.

Everything that writes is safe under concurrency: one writer per target (a ``filelock.FileLock`` next to it)
and atomic publication (write a temporary sibling, then ``os.replace``). An extracted archive is trusted only
when its marker file, written last, names the archive's SHA-256; anything else in its place (a folder half
extracted by a killed process, an older archive's tree) is removed and extracted again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .. import paths
from .registry import DatasetInfo

DOWNLOAD_ENV = "DOMAINGAP_DOWNLOAD"
# THE download switch: missing datasets are downloaded when this is True (unless DOMAINGAP_DOWNLOAD=0) or when
# DOMAINGAP_DOWNLOAD=1 / allow_download=True. Flip this one line to download by default.
DOWNLOAD_BY_DEFAULT = True  # as torchvision's download=True; DOMAINGAP_DOWNLOAD=0 (tests, CI) turns it off
MARKER = ".domaingap-extracted"  # written last into an extracted tree: "<sha256 of the archive>\n"


class DataFileError(FileNotFoundError):
    """A dataset file is missing or does not match its checksum."""


def cache_dir() -> Path:
    """Folder for decoded arrays and extracted archives (``$DOMAINGAP_CACHE``, default ``data/cache/_decoded``)."""
    return paths.cache_dir()


def download_allowed(allow_download: bool | None) -> bool:
    """Whether a missing dataset may be downloaded: ``allow_download`` if given, else ``$DOMAINGAP_DOWNLOAD``,
    else :data:`DOWNLOAD_BY_DEFAULT`."""
    if allow_download is not None:
        return bool(allow_download)
    value = os.environ.get(DOWNLOAD_ENV, "").strip().lower()
    if not value:
        return DOWNLOAD_BY_DEFAULT
    return value in ("1", "true", "yes")


# ----------------------------------------------------------------------------------------------- checksums

@lru_cache(maxsize=128)
def _digest_cached(path: str, size: int, mtime_ns: int, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    """SHA-256 of a file (memoised on path, size and mtime so a process hashes each file once)."""
    st = Path(path).stat()
    return _digest_cached(str(path), st.st_size, st.st_mtime_ns, "sha256")


def md5(path: Path) -> str:
    """MD5 of a file (the checksum MedMNIST, MONAI and torchvision publish), memoised like :func:`sha256`."""
    st = Path(path).stat()
    return _digest_cached(str(path), st.st_size, st.st_mtime_ns, "md5")


def _obtain(ds: DatasetInfo, relpath: str) -> str:
    """How to get ``relpath`` of ``ds`` with internet (one sentence for the missing-file error)."""
    pub, url = ds.publisher, ds.urls.get(relpath)
    if url:
        return f"set {DOWNLOAD_ENV}=1 and {url} is downloaded (official MD5 {ds.md5.get(relpath, 'unpublished')})"
    if pub is not None and pub.pattern and not pub.url:
        from .publishers import original_dir

        return (f"download the publisher's original by hand from {pub.page} ({pub.manual}) into "
                f"{original_dir(ds)}; then with {DOWNLOAD_ENV}=1 it is converted to the mirror's layout")
    if pub is not None and pub.url:
        how = "converted to the mirror's layout" if pub.pattern else "used as it is"
        return f"set {DOWNLOAD_ENV}=1 and the publisher's {pub.url} is downloaded and {how}"
    return f"set {DOWNLOAD_ENV}=1 and the official loader downloads it"


def missing_error(ds: DatasetInfo, relpath: str, extra: str = "") -> DataFileError:
    """The error for a missing file: it names the file, its checksums, the source and the remedies."""
    path = paths.data_dir() / relpath
    sums = [f"sha256 {ds.all_files[relpath]}"] if relpath in ds.all_files else []
    sums += [f"official MD5 {ds.md5[relpath]}"] if relpath in ds.md5 else []
    return DataFileError(
        f"dataset {ds.name!r} needs the file {path} ({', '.join(sums) or 'no published checksum'}), which is "
        f"missing; source: {ds.source}.\n"
        f"  Offline: point ${paths.DATA_ENV} at a folder laid out like the offline mirror "
        f"(e.g. export {paths.DATA_ENV}=../shared/data).\n"
        f"  With internet: {_obtain(ds, relpath)}.{extra}")


def verified_file(ds: DatasetInfo, relpath: str) -> Path:
    """Path of a file of ``ds`` under the data dir after checking that it exists and matches our SHA-256 and the
    publisher's MD5 (each where known)."""
    path = paths.data_dir() / relpath
    if relpath not in ds.all_files and relpath not in ds.md5:
        raise KeyError(f"{relpath!r} is not a registered file of {ds.name!r}: {sorted(ds.all_files)}")
    if not path.is_file():
        raise missing_error(ds, relpath)
    checks = [("sha256", sha256, ds.all_files.get(relpath)), ("MD5", md5, ds.md5.get(relpath))]
    bad = [(algo, fn(path), want) for algo, fn, want in checks if want is not None and fn(path) != want]
    if bad:
        found = "; ".join(f"{algo} is {got}, expected {want}" for algo, got, want in bad)
        raise DataFileError(
            f"checksum mismatch for {path}: {found}. The file is corrupt or not the mirrored release of "
            f"{ds.title}; delete it and restore it from the mirror or the official source ({ds.source}).")
    return path


def have_files(ds: DatasetInfo, release: int | None = None) -> bool:
    """Whether the mirrored files of ``ds`` (of one release size; default the native one) are all present; True for
    the native release of a dataset that needs no file (digits), False for a release with no mirrored file."""
    if release in (None, ds.native_size):
        return all((paths.data_dir() / rel).is_file() for rel in ds.files)
    files = ds.release_files.get(release, {})
    return bool(files) and all((paths.data_dir() / rel).is_file() for rel in files)


# ----------------------------------------------------------------------------------------------- safe writes

@contextmanager
def locked(target: Path) -> Iterator[None]:
    """Hold the inter-process lock of ``target`` (the file ``<target>.lock`` next to it)."""
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        yield


def atomic_write(path: Path, write: Callable[[Path], None], suffix: str = ".tmp") -> Path:
    """Call ``write(tmp)`` on a fresh temporary sibling of ``path``, then publish it as ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    atomic_write(path, lambda tmp: np.savez(tmp, **arrays), suffix=".tmp.npz")


def _remove_tree(path: Path) -> None:
    """Remove a folder without ever leaving it half-deleted under its own name (rename first)."""
    if path.is_dir():
        trash = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{path.name}.", suffix=".trash.tmp"))
        os.replace(path, trash / "tree")
        shutil.rmtree(trash, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def extracted_ok(dest: Path, digest: str) -> bool:
    """Whether ``dest`` is a complete extraction of the archive with SHA-256 ``digest``."""
    try:
        return (dest / MARKER).read_text().split()[0] == digest
    except (OSError, IndexError):
        return False


def extract(archive: Path, dest: Path, digest: str | None = None) -> Path:
    """Extract the tar ``archive`` into the folder ``dest`` exactly once, safely under concurrency.

    ``digest`` is the archive's SHA-256 (computed when None). The tree is extracted into a temporary sibling,
    the marker is written last, and the finished tree is renamed into place; an existing ``dest`` without the
    right marker is removed and redone, and temporary folders of killed processes are cleaned up.
    """
    digest = digest or sha256(archive)
    if extracted_ok(dest, digest):
        return dest
    with locked(dest):
        if extracted_ok(dest, digest):  # another process finished while we waited for the lock
            return dest
        for stale in dest.parent.glob(f"{dest.name}.*.tmp"):  # we hold the lock: nobody else is writing these
            shutil.rmtree(stale, ignore_errors=True)
        _remove_tree(dest)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f"{dest.name}.", suffix=".tmp"))
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            (tmp / MARKER).write_text(digest + "\n")
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return dest


def download(url: str, path: Path, md5sum: str | None = None) -> Path:
    """Download ``url`` to ``path`` with pooch (atomic; verified against ``md5sum`` where one is published),
    once per file even when processes race. Only called when downloads are allowed (:func:`download_allowed`).
    """
    import pooch

    with locked(path):
        if path.is_file() and (md5sum is None or md5(path) == md5sum):
            return path
        pooch.retrieve(url, known_hash=f"md5:{md5sum}" if md5sum else None, fname=path.name,
                       path=str(path.parent), progressbar=False)
    if md5sum is not None and md5(path) != md5sum:  # pooch checked it; a second look costs one read
        raise DataFileError(f"checksum mismatch for {path} downloaded from {url}: MD5 is {md5(path)}, "
                            f"expected {md5sum}")
    return path
