"""A content-addressed store of run artefacts that cannot lie or wedge.

Layout under the root (``$DOMAINGAP_ARTEFACTS``, default ``artefacts/``)::

    <kind>/<key>/record.json     what was run: kind, spec, code hash, environment, upstream keys
    <kind>/<key>/result.json     what it returned (a JSON object)
    <kind>/<key>/...             extra files the run wrote (model.pt, arrays)
    <kind>/<key>/MANIFEST.json   size and SHA-256 of every file above; written last
    <kind>/.locks/<key>.lock     one writer per key (``filelock``; released by the OS if the writer dies)
    <kind>/.tmp/<key>.<host>.<pid>.<random>/   a run in progress
    _quarantine/<kind>/<key>.<time>/           entries that failed verification, kept for inspection

Guarantees, each covered by tests/test_runs_faults.py:

- **Atomic publishing.** A run writes into its own ``.tmp`` folder, the manifest last, and the folder is renamed
  into place under the key's lock. A process killed at any point leaves no entry that looks finished; its ``.tmp``
  folder is removed by the next writer of that kind once its process is gone.
- **One result per key.** Writers of one key serialise on its lock and re-check before computing, so two or three
  concurrent writers compute once and all return the same result and the same folder.
- **Verified on load.** Every load checks each file's size and SHA-256 against the manifest (memoised per process
  on the file's inode, size, mtime and ctime). A truncated, edited or bit-flipped entry, or one without a
  manifest, is moved to ``_quarantine/`` with a warning naming it and the failing file, and is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from .. import paths

log = logging.getLogger(__name__)

RECORD, RESULT, MANIFEST = "record.json", "result.json", "MANIFEST.json"
QUARANTINE = "_quarantine"
STALE_TMP_SECONDS = 24 * 3600  # a .tmp folder of another host is removed after a day
HOST = socket.gethostname().replace(".", "-")  # no dots: the .tmp folder name is split on them

__all__ = ["CorruptArtefact", "Entry", "Store"]


class CorruptArtefact(RuntimeError):
    """An artefact failed verification (named in the message)."""


@dataclass(frozen=True)
class Entry:
    """A verified artefact: ``path`` is its folder, ``result`` what the run returned, ``record`` what was run."""

    kind: str
    key: str
    path: Path
    result: dict
    record: dict

    def file(self, name: str) -> Path:
        """Path of an extra file of the entry (verified with the entry); ``FileNotFoundError`` naming the entry
        when the run wrote no such file."""
        path = self.path / name
        if name in (RECORD, RESULT, MANIFEST) or not path.is_file():
            raise FileNotFoundError(f"artefact {self.path} has no file {name!r}; it has "
                                    f"{sorted(p.name for p in self.path.iterdir())}")
        return path


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # NumPy / torch scalars and arrays in a result
        return value.tolist()
    raise TypeError(f"a run result holds a {type(value).__name__} ({value!r:.80}), which is not JSON data")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=4096)
def _sha256_memo(path: str, inode: int, size: int, mtime_ns: int, ctime_ns: int) -> str:
    return _sha256_file(Path(path))


def _file_hash(path: Path) -> str:
    st = path.stat()
    return _sha256_memo(str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True, default=_json_default)
        fh.flush()
        os.fsync(fh.fileno())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    """The artefact store at ``root`` (default :func:`domaingap.paths.artefacts_dir`)."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else paths.artefacts_dir()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def folder(self, kind: str, key: str) -> Path:
        if not kind or "/" in kind or kind.startswith((".", "_")):
            raise ValueError(f"run kind must be a plain name like 'p1_train', got {kind!r}")
        return self.root / kind / key

    # ------------------------------------------------------------------------------------------ reading
    def verify(self, folder: Path) -> str | None:
        """None when ``folder`` is a complete, intact entry, else the reason it is not."""
        manifest = folder / MANIFEST
        if not manifest.is_file():
            return f"no {MANIFEST} (an incomplete or foreign entry)"
        try:
            files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        except (ValueError, KeyError, TypeError) as err:
            return f"unreadable {MANIFEST}: {err}"
        for name in (RECORD, RESULT):
            if name not in files:
                return f"{MANIFEST} lists no {name}"
        for name, want in files.items():
            path = folder / name
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != want["size"]:
                return f"{name} has {path.stat().st_size} bytes, the manifest says {want['size']} (truncated?)"
            if _file_hash(path) != want["sha256"]:
                return f"{name} does not match its SHA-256 in the manifest (edited or corrupted)"
        return None

    def lookup(self, kind: str, key: str) -> Entry | None:
        """The verified entry of ``key``, or None when there is none. A corrupt entry is quarantined (a warning
        names it and why) and None is returned, so the caller recomputes it."""
        folder = self.folder(kind, key)
        if not folder.exists():
            return None
        problem = self.verify(folder)
        if problem is None:
            record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
            if record.get("key") == key:
                result = json.loads((folder / RESULT).read_text(encoding="utf-8"))
                return Entry(kind, key, folder, result, record)
            problem = f"{RECORD} names key {record.get('key')!r}, not the folder's"
        self.quarantine(folder, problem)
        return None

    def quarantine(self, folder: Path, reason: str) -> Path | None:
        """Move a bad entry out of the way (to ``_quarantine/``) and warn, naming it and ``reason``."""
        dest = self.root / QUARANTINE / folder.parent.name / f"{folder.name}.{time.strftime('%Y%m%dT%H%M%S')}" \
                                                              f".{uuid.uuid4().hex[:6]}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(folder, dest)
        except FileNotFoundError:
            return None  # another process moved it first
        log.warning("artefact %s failed verification (%s): moved to %s; it will be recomputed", folder, reason, dest)
        return dest

    # ------------------------------------------------------------------------------------------ writing
    def lock(self, kind: str, key: str):
        from filelock import FileLock

        path = self.root / kind / ".locks" / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path))

    def compute(self, kind: str, key: str, record: dict, run: Callable[[Path], dict]) -> Entry:
        """The entry of ``key``: looked up, or computed by ``run(workdir)`` and published atomically.

        ``run`` gets an empty folder for extra files and returns a JSON object. Writers of one key wait for each
        other on the key's lock; whoever comes second finds the first one's entry and returns it."""
        found = self.lookup(kind, key)
        if found is not None:
            return found
        with self.lock(kind, key):
            found = self.lookup(kind, key)  # a concurrent writer may have published while we waited
            if found is not None:
                return found
            self.clean_tmp(kind)
            tmp = self.root / kind / ".tmp" / f"{key}.{HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
            tmp.mkdir(parents=True)
            try:
                started = time.perf_counter()
                result = run(tmp)
                seconds = time.perf_counter() - started
                if not isinstance(result, dict):
                    raise TypeError(f"run {kind!r} returned a {type(result).__name__}; a run returns a dict")
                for reserved in (RECORD, RESULT, MANIFEST):
                    if (tmp / reserved).exists():
                        raise ValueError(f"run {kind!r} wrote {reserved}, a name the store reserves")
                # how long the computation took where (for run-time accounting; not part of the key or the result)
                computed = {"seconds": round(seconds, 3), "host": HOST,
                            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                _write_json(tmp / RECORD, {**record, "key": key, "kind": kind, "computed": computed})
                _write_json(tmp / RESULT, result)
                files = {p.relative_to(tmp).as_posix(): {"size": p.stat().st_size, "sha256": _sha256_file(p)}
                         for p in sorted(tmp.rglob("*")) if p.is_file()}
                _write_json(tmp / MANIFEST, {"key": key, "files": files})
                final = self.folder(kind, key)
                if final.exists():  # a corrupt entry that lookup could not move, or a foreign folder
                    self.quarantine(final, "replaced by a fresh computation")
                os.replace(tmp, final)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        found = self.lookup(kind, key)
        if found is None:
            raise CorruptArtefact(f"artefact {self.folder(kind, key)} failed verification right after it was written")
        return found

    def clean_tmp(self, kind: str) -> list[Path]:
        """Remove the ``.tmp`` folders of ``kind`` left by processes that are gone (this host: the pid no
        longer runs; another host: older than a day). Returns what was removed."""
        removed = []
        tmp_root = self.root / kind / ".tmp"
        if not tmp_root.is_dir():
            return removed
        for tmp in tmp_root.iterdir():
            parts = tmp.name.split(".")
            try:
                owner, pid = parts[-3], int(parts[-2])
            except (IndexError, ValueError):
                owner, pid = "", -1
            if owner == HOST:
                stale = pid != os.getpid() and not _pid_alive(pid)
            else:
                stale = time.time() - tmp.stat().st_mtime > STALE_TMP_SECONDS
            if stale:
                shutil.rmtree(tmp, ignore_errors=True)
                removed.append(tmp)
        return removed
