"""``domaingap data``: the dataset registry from the command line (:mod:`domaingap.data`).

    domaingap data list [--domain medical|natural]   # every registered dataset: domain, classes, splits, licence
    domaingap data check [NAME ...]                  # are the files there, do their checksums verify (no download)
    domaingap data fetch NAME ... [--release PX]     # download a dataset from its publisher, verify and decode it

``check`` reads the data folder (``$DOMAINGAP_DATA``) and the decoded-array cache (``$DOMAINGAP_CACHE``); every
present file is verified by :func:`domaingap.data.verified_file` (our SHA-256, and the publisher's MD5 where it
publishes one). Exit status 1 when a present file fails its checksum or a dataset named on the command line is
missing; missing datasets are only reported when none are named.

``fetch`` is :func:`domaingap.data.load_arrays` with ``allow_download=True``: MedMNIST files are downloaded into the
data folder, the other publishers' releases (and torchvision's MNIST, Fashion-MNIST, CIFAR-10) into the cache, and
the decoded arrays are cached, so the dataset then loads offline. A source without a direct download (a Kaggle
account, an unknown Mendeley file URL) fails with the registry's instructions for downloading it by hand.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .cli import EXIT_FAILED, EXIT_OK

log = logging.getLogger("domaingap")

__all__ = ["add_data", "run_data"]


def _dataset(name: str):
    """The registry entry of ``name``; an unknown name is a ValueError (exit status 2) listing the known ones."""
    from . import data

    try:
        return data.info(name)
    except KeyError as err:
        raise ValueError(err.args[0]) from None


def _splits(ds) -> str:
    return " / ".join(f"{split} {n}" for split, n in ds.split_sizes.items())


# ----------------------------------------------------------------------------------------------- list

def _list(args: argparse.Namespace) -> int:
    from . import data

    rows = [("name", "domain", "radiology", "classes", "splits", "licence")]
    for name in data.names(args.domain):
        ds = data.info(name)
        rows.append((name, ds.domain, "yes" if ds.radiology else "no", str(ds.num_classes), _splits(ds), ds.licence))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    print(f"\n{len(rows) - 1} datasets; `domaingap data check` says which are in {data.paths.data_dir()}")
    return EXIT_OK


# ----------------------------------------------------------------------------------------------- check

def _cached_arrays(ds) -> Path | None:
    """The decoded arrays :func:`domaingap.data.load_arrays` reads when the data folder lacks ``ds``'s files (those
    of an earlier download), if they exist."""
    from . import data

    path = data.cache_dir() / "arrays" / f"{data.request._decoded_key(ds, ds.native_size)}.npz"
    return path if path.is_file() else None


def _check_one(ds) -> tuple[str, str, list[str]]:
    """(status, one-line summary, detail lines) of one dataset; status: ok, cached, missing or FAILED."""
    from . import data

    if not ds.files:
        return "ok", "no files needed (bundled with its loader)", []
    root = data.paths.data_dir()
    native = set(ds.files)
    verified, bad, missing, optional = [], [], [], []
    for rel in ds.all_files:
        if not (root / rel).is_file():
            (missing if rel in native else optional).append(rel)
            continue
        try:
            data.verified_file(ds, rel)
            verified.append(rel)
        except data.DataFileError as err:
            bad.append((rel, "checksum mismatch", str(err)))
        except OSError as err:  # e.g. no read permission
            bad.append((rel, "unreadable", f"{type(err).__name__}: {err}"))
    extra = f"; optional release(s) not present: {', '.join(optional)}" if optional else ""
    if bad:
        what = "; ".join(f"{why}: {rel}" for rel, why, _ in bad)
        return "FAILED", f"{what} (in {root})", [msg for _, _, msg in bad]
    if not missing:
        return "ok", f"{len(verified)} file{'s' * (len(verified) > 1)} verified in {root}{extra}", []
    cached = _cached_arrays(ds)
    if cached is not None and not verified:
        return "cached", f"not in {root}; decoded arrays of a download are in {cached} (loads offline)", []
    hint = f"`domaingap data fetch {ds.name}`, or point ${data.paths.DATA_ENV} at the offline mirror"
    pub = ds.publisher
    if pub is not None and pub.url is None and pub.manual:
        return "missing", (f"not in {root}: {', '.join(missing)}; cannot be downloaded automatically "
                           f"({pub.manual}): download it from {pub.page}, then run "
                           f"`domaingap data fetch {ds.name}`"), []
    if data.download_allowed(None):
        where = pub.page if pub is not None else (next(iter(ds.urls.values()), "") or ds.source)
        return "missing", (f"not in {root}: {', '.join(missing)}; will be downloaded from {where} when first used "
                           f"(or now with `domaingap data fetch {ds.name}`)"), []
    return "missing", (f"not in {root}: {', '.join(missing)}; get it with {hint} (downloads are off: "
                       f"${data.DOWNLOAD_ENV}=0)"), []


def check(args: argparse.Namespace) -> int:
    from . import data

    named = bool(args.names)
    datasets = [_dataset(n) for n in args.names] if named else [data.info(n) for n in data.names()]
    counts: dict[str, int] = {}
    failed = False
    width = max(len(ds.name) for ds in datasets)
    for ds in datasets:
        status, summary, details = _check_one(ds)
        counts[status] = counts.get(status, 0) + 1
        failed |= status == "FAILED" or (status == "missing" and named)
        print(f"{status:<8} {ds.name:<{width}}  {summary}", flush=True)
        for line in details:
            print(f"         {' ' * width}  {line}")
    print(f"{len(datasets)} dataset{'s' * (len(datasets) > 1)}: "
          + ", ".join(f"{counts[s]} {s}" for s in ("ok", "cached", "missing", "FAILED") if s in counts))
    return EXIT_FAILED if failed else EXIT_OK


# ----------------------------------------------------------------------------------------------- fetch

def _fetch_one(ds, release: int | None) -> tuple[bool, str]:
    """(success, message) of fetching ``ds`` at ``release`` px (default: its native size)."""
    from . import data

    release = ds.native_size if release is None else release
    if not ds.files:
        return True, "nothing to download (bundled with its loader)"
    files = ds.files if release == ds.native_size else ds.release_files.get(release, {})
    if files and data.have_files(ds, release):
        for rel in files:
            data.verified_file(ds, rel)  # a corrupt file is an error telling to delete it; it is never replaced
        return True, f"already in {data.paths.data_dir()} (verified); nothing downloaded"
    print(f"fetching {ds.name} at {release} px from its source ({ds.source}); licence: {ds.licence}", flush=True)
    sizes = {}
    for split in ds.split_sizes:  # the first call downloads and decodes every split; the others read the cache
        sizes[split] = len(data.load_arrays(ds.name, split, release=release, allow_download=True)[1])
    return True, (f"{', '.join(f'{s} {n}' for s, n in sizes.items())} images; decoded arrays cached in "
                  f"{data.cache_dir() / 'arrays'}")


def _fetch(args: argparse.Namespace) -> int:
    from . import data

    datasets = [_dataset(n) for n in args.names]
    for ds in datasets:  # every name and size is checked before anything is downloaded
        if args.release is not None and args.release not in data.releases(ds.name):
            raise ValueError(f"dataset {ds.name!r} is published at {data.releases(ds.name)} px, not {args.release}")
    failed = False
    for ds in datasets:
        try:
            ok, message = _fetch_one(ds, args.release)
        except data.DataFileError as err:  # e.g. a manual source: the message says how to download it by hand
            ok, message = False, str(err)
            if ds.publisher is not None and not ds.publisher.url:
                message += f"\n  Then run `domaingap data fetch {ds.name}` again to convert it."
        except Exception as err:  # noqa: BLE001 - one dataset's failure (network, disk) does not stop the others
            log.debug("fetch %s failed", ds.name, exc_info=True)
            ok, message = False, f"{type(err).__name__}: {err}"
        failed |= not ok
        print(f"{'ok' if ok else 'FAILED':<7} {ds.name}: {message}", flush=True)
    return EXIT_FAILED if failed else EXIT_OK


# ----------------------------------------------------------------------------------------------- the parser

def add_data(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    q = sub.add_parser("list", help="every registered dataset: domain, radiology, classes, splits, licence")
    q.add_argument("--domain", choices=("medical", "natural"), default=None, help="only this domain's datasets")
    q.set_defaults(_action=_list, _command="data list")
    q = sub.add_parser("check", help="are the datasets' files present, and do their checksums verify (no download)",
                       description="Report, one line per dataset, whether its files are in the data folder "
                                   "($DOMAINGAP_DATA) or its decoded arrays in the cache, and whether every present "
                                   "file matches its checksum. Exit status 1 when a file fails its checksum or a "
                                   "named dataset is missing. Nothing is downloaded.")
    q.add_argument("names", nargs="*", metavar="NAME", help="registered dataset names (default: all)")
    q.set_defaults(_action=check, _command="data check")
    q = sub.add_parser("fetch", help="download datasets from their publishers (needs internet), verify and decode",
                       description="Download each dataset from its publisher (as DOMAINGAP_DOWNLOAD=1 would on "
                                   "first use), check it against the published checksum and cache its decoded "
                                   "arrays. Sources that need an account or a manual download say how.")
    q.add_argument("names", nargs="+", metavar="NAME", help="registered dataset names")
    q.add_argument("--release", type=int, default=None, metavar="PX",
                   help="published image size to fetch (MedMNIST+: 28, 64, 128 or 224; default the native size)")
    q.set_defaults(_action=_fetch, _command="data fetch")


def run_data(args: argparse.Namespace) -> int:
    return args._action(args)
