"""The publishers' originals, turned into the offline mirror's archives (only used with downloads allowed).

The mirror's kneeoa / braintumor / pbc / imagenette archives are 64 px copies derived by the mirror's
``tools/convert_png.py`` / ``tools/convert_jpeg.py``. Without them, :func:`fetch` gets the publisher's own release
(downloaded where a direct URL is known, else placed by hand into :func:`original_dir`) and converts it the same
way: decode with PIL, convert to the mode (16-bit rescaled min-max to 8 bit), centre crop to a square, LANCZOS to
64x64 when larger, PNG (optimize) or JPEG (quality 90); an optional class-balanced subset is drawn by ONE
``random.Random(seed)`` calling ``.sample`` per (split, class) group in sorted order, each group sorted by path.
The result is a deterministic ``.tar.gz`` in the mirror's layout under the cache, read like the mirror's file.
"""

from __future__ import annotations

import gzip
import io
import random
import re
import tarfile
import warnings
import zipfile
from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Iterator
from urllib.parse import urlparse

import numpy as np

from .. import paths
from .files import DOWNLOAD_ENV, DataFileError, atomic_write, cache_dir, download, locked
from .registry import DatasetInfo, Publisher

SIZE = 64  # side of the mirror's derived images


def original_dir(ds: DatasetInfo) -> Path:
    """Where the publisher's original of ``ds`` goes: its archive (zip or tar, any name), or the archive's
    unpacked contents."""
    return paths.data_dir() / Path(next(iter(ds.files))).parent / "original"


def fetch(ds: DatasetInfo) -> Path:
    """Path of an archive of ``ds`` in the mirror's layout built from the publisher's release (once per cache)."""
    pub, rel = ds.publisher, next(iter(ds.files))
    if pub is None:
        raise DataFileError(f"dataset {ds.name!r} has no publisher download; get {rel} from the offline mirror")
    if not pub.pattern:  # the publisher's archive is already in the mirror's layout (MedNIST)
        return download(pub.url, cache_dir() / "downloads" / Path(rel).name, pub.md5)
    out = cache_dir() / "converted" / rel
    with locked(out):
        if not out.is_file():
            sources = _originals(ds)
            atomic_write(out, lambda tmp: _write_archive(tmp, convert_all(ds.layout.top, ds.layout.mode, pub,
                                                                              sources)))
    return out


def _originals(ds: DatasetInfo) -> list[Path]:
    pub, folder = ds.publisher, original_dir(ds)
    found = sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []
    if any(p.is_dir() for p in found):  # an unpacked release: the folder itself is the source
        return [folder]
    if found:
        return found
    if pub.url:
        return [download(pub.url, folder / PurePosixPath(urlparse(pub.url).path).name, pub.md5)]
    raise DataFileError(
        f"dataset {ds.name!r}: the publisher's original cannot be downloaded automatically ({pub.manual}).\n"
        f"  Download it by hand from {pub.page} and put the archive (zip or tar, any name) or its unpacked folder "
        f"into {folder}; it is then converted to the mirror's layout (with {DOWNLOAD_ENV}=1).\n"
        f"  Or use the offline mirror: point ${paths.DATA_ENV} at it ({next(iter(ds.files))}).")


# ----------------------------------------------------------------------------------------------- members

def _names(source: Path) -> list[str]:
    if source.is_dir():
        return sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as z:
            return [i.filename for i in z.infolist() if not i.is_dir()]
    if tarfile.is_tarfile(source):
        with tarfile.open(source) as tar:
            return [m.name for m in tar.getmembers() if m.isfile()]
    raise DataFileError(f"{source} is neither a zip or tar archive nor a folder")


def _read(source: Path, wanted: set[str]) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the ``wanted`` members, in the archive's own order (one pass over a compressed tar)."""
    if source.is_dir():
        for name in sorted(wanted):
            yield name, (source / name).read_bytes()
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as z:
            for name in z.namelist():
                if name in wanted:
                    yield name, z.read(name)
    else:
        with tarfile.open(source) as tar:
            for m in tar:
                if m.isfile() and m.name in wanted:
                    yield m.name, tar.extractfile(m).read()


def select(names: list[str], pub: Publisher) -> list[tuple[str, str, str]]:
    """(member, split folder, class folder) of the images to convert, as the mirror's tools chose them."""
    rx = re.compile(pub.pattern)
    rows = []
    for name in sorted(names):
        parts = name.split("/")
        if "__MACOSX" in parts or parts[-1].startswith("."):  # macOS metadata, not images
            continue
        m = rx.search(name)
        if m:
            rows.append((name, m.groupdict().get("split") or "", m.group("class")))
    by_output = defaultdict(list)
    for row in rows:
        by_output[(row[1], row[2], PurePosixPath(row[0]).stem)].append(row)
    keep = []
    for key, group in by_output.items():
        if len(group) > 1 and pub.prefer:
            group = [r for r in group if pub.prefer in r[0]] or group
        if len(group) > 1:
            raise DataFileError(f"{len(group)} files of the publisher's release map to one image {'/'.join(key)}: "
                                f"{[r[0] for r in group][:3]}; put only one copy of the release in place")
        keep += group
    keep.sort()
    if pub.per_class:
        groups = defaultdict(list)
        for row in keep:
            groups[(row[1], row[2])].append(row)
        rng = random.Random(pub.subset_seed)
        keep = sorted(r for k in sorted(groups) for r in (
            groups[k] if len(groups[k]) <= pub.per_class else rng.sample(groups[k], pub.per_class)))
    return keep


# ----------------------------------------------------------------------------------------------- images

def to_mode(im, mode: str):
    """``im`` in PIL ``mode`` ("L" or "RGB") as the mirror's tools convert it (16-bit rescaled min-max)."""
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if mode == "L":
        if im.mode in ("RGBA", "LA"):
            im = im.convert("RGB" if im.mode == "RGBA" else "L")
        return im.convert("L")
    return im.convert("RGB")


def convert(data: bytes, mode: str, image_format: str, size: int = SIZE) -> bytes:
    """One publisher image -> the mirror's image bytes: mode, centre crop to a square, LANCZOS to ``size``."""
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    im.seek(0)
    im.load()
    w, h = im.size
    im = to_mode(im, mode)
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    im = im.crop((left, top, left + s, top + s))
    if s > size:
        im = im.resize((size, size), Image.LANCZOS)
    buf = io.BytesIO()
    if image_format == "JPEG":
        im.save(buf, format="JPEG", quality=90, optimize=True)
    else:
        im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def convert_all(top: str, mode: str, pub: Publisher, sources: list[Path]) -> dict[str, bytes]:
    """Archive path -> converted image bytes for every selected image of the publisher's ``sources``."""
    ext = ".jpg" if pub.image_format == "JPEG" else ".png"
    entries: dict[str, bytes] = {}
    failures = []
    for source in sources:
        rows = {r[0]: r for r in select(_names(source), pub)}
        for name, raw in _read(source, set(rows)):
            _, split, cls = rows[name]
            arc = "/".join([top, *([split] if split else []), cls, PurePosixPath(name).stem + ext])
            try:
                entries[arc] = convert(raw, mode, pub.image_format)
            except Exception as err:  # noqa: BLE001 - the tools skip undecodable files and list them
                failures.append(f"{name}: {err!r}")
    if failures:
        warnings.warn(f"{len(failures)} publisher images could not be decoded and were left out: {failures[:5]}")
    if not entries:
        raise DataFileError(f"no image of {[str(s) for s in sources]} matches {pub.pattern!r}: is it the release "
                            f"from {pub.page}?")
    return entries


def _write_archive(path: Path, entries: dict[str, bytes]) -> None:
    """A deterministic tar.gz as the tools write it: sorted entries, mtime 0, uid/gid 0, mode 0644."""
    with open(path, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=9) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for arc in sorted(entries):
                ti = tarfile.TarInfo(arc)
                ti.size, ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname, ti.mode = (
                    len(entries[arc]), 0, 0, 0, "", "", 0o644)
                tar.addfile(ti, io.BytesIO(entries[arc]))
