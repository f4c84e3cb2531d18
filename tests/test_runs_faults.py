"""Fault injection on the artefact store: killed writers, concurrent writers, damaged entries, stale folders.

Each test provokes a fault that the old store (``artefacts.cached``) got wrong and checks the store's guarantee
(see :mod:`domaingap.runs.store`). Concurrent first extraction of a dataset archive is covered in test_data.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import run_kinds
from domaingap import runs
from domaingap.runs.store import MANIFEST, RESULT

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def counter(tmp_path, monkeypatch):
    folder = tmp_path / "counter"
    folder.mkdir()
    monkeypatch.setenv(run_kinds.COUNTER_ENV, str(folder))
    return folder


def _env(counter: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(TESTS), run_kinds.COUNTER_ENV: str(counter)}


def _writer(store: Path, spec: dict, prelude: str = "", start_at: float = 0.0) -> str:
    return "import json, os, sys, time\n" + prelude + textwrap.dedent(f"""
        import run_kinds
        from domaingap import runs
        while time.time() < {start_at}:
            time.sleep(0.005)
        entry = runs.Store({str(store)!r}).compute("t_square", run_kinds.square({spec!r}).key,
                                                  run_kinds.square({spec!r}).record,
                                                  lambda w: run_kinds.square.fn({spec!r}, {{}}, w))
        print(json.dumps({{"result": entry.result, "dir": str(entry.path),
                           "blob": entry.file("blob.bin").read_bytes().hex()}}))
    """)


def _wait_for(predicate, timeout: float = 30.0) -> None:
    end = time.time() + timeout
    while not predicate():
        if time.time() > end:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def _tmp_folders(store: Path) -> list[Path]:
    root = store / "t_square" / ".tmp"
    return list(root.iterdir()) if root.is_dir() else []


# ------------------------------------------------------------------------------------------------ SIGKILL
@pytest.mark.parametrize("where", ["mid-run", "mid-write of an extra file", "mid-write of the manifest"])
def test_sigkill_leaves_no_entry_and_no_wedge(tmp_path, counter, where):
    store = tmp_path / "store"
    spec = {"i": 3, "sleep": 30.0} if where == "mid-run" else {"i": 3}
    prelude = ""
    if where == "mid-write of an extra file":
        spec = {"i": 3, "slow_chunks": 200}
    if where == "mid-write of the manifest":  # the process dies while the manifest is half written
        prelude = textwrap.dedent("""
            import domaingap.runs.store as s
            _orig = s._write_json
            def _dying(path, obj):
                if path.name == "MANIFEST.json":
                    path.write_text('{"key": "trunc')
                    os.kill(os.getpid(), 9)
                _orig(path, obj)
            s._write_json = _dying
        """)
    proc = subprocess.Popen([sys.executable, "-c", _writer(store, spec, prelude)], env=_env(counter),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if where == "mid-write of the manifest":
        proc.wait(timeout=60)
    else:
        _wait_for(lambda: any(f.iterdir() for f in _tmp_folders(store)) or
                  (where == "mid-run" and _tmp_folders(store)))
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    key = run_kinds.square(spec).key
    st = runs.Store(store)
    assert not st.folder("t_square", key).exists()  # nothing that looks finished
    assert st.lookup("t_square", key) is None
    assert len(_tmp_folders(store)) == 1  # the dead writer's work folder
    # the lock died with its holder: a new writer gets through at once, and removes the stale folder
    quick = {"i": 3}
    start = time.time()
    entry = st.compute("t_square", key, run_kinds.square(spec).record,
                       lambda w: run_kinds.square.fn(quick, {}, w))
    assert time.time() - start < 10 and entry.result["y"] == 9
    assert _tmp_folders(store) == []


def test_clean_tmp_keeps_live_writers(tmp_path):
    st = runs.Store(tmp_path)
    root = tmp_path / "t_square" / ".tmp"
    mine = root / f"abc.{runs.store.HOST}.{os.getpid()}.x1"
    dead = root / f"abc.{runs.store.HOST}.999999999.x2"  # no such pid
    for f in (mine, dead):
        f.mkdir(parents=True)
    assert st.clean_tmp("t_square") == [dead]
    assert mine.exists()


# ------------------------------------------------------------------------------------------------ concurrency
@pytest.mark.parametrize("writers", [2, 3])
def test_concurrent_writers_get_one_result(tmp_path, counter, writers):
    store = tmp_path / "store"
    spec = {"i": 4, "sleep": 1.0}
    start_at = time.time() + 12.0  # all start together, after their imports
    procs = [subprocess.Popen([sys.executable, "-c", _writer(store, spec, start_at=start_at)], env=_env(counter),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(writers)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert run_kinds.computations(counter, "square") == 1  # computed once
    assert all(o == outs[0] for o in outs)  # same metrics, same folder, same extra file for every writer
    assert len(list((store / "t_square").glob("[!.]*"))) == 1


# ------------------------------------------------------------------------------------------------ damage
def _damage(folder: Path, how: str) -> None:
    if how == "truncated result":
        data = (folder / RESULT).read_bytes()
        (folder / RESULT).write_bytes(data[: len(data) // 2])
    elif how == "edited result":  # same size, one digit changed: only the checksum can tell
        text = (folder / RESULT).read_text()
        (folder / RESULT).write_text(text.replace('"y": 36', '"y": 37'))
    elif how == "bit-flipped extra file":
        data = bytearray((folder / "blob.bin").read_bytes())
        data[17] ^= 0x04
        (folder / "blob.bin").write_bytes(bytes(data))
    elif how == "missing manifest":
        (folder / MANIFEST).unlink()
    elif how == "missing extra file":
        (folder / "blob.bin").unlink()
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncated result", "edited result", "bit-flipped extra file", "missing manifest",
                                 "missing extra file"])
def test_damaged_entries_are_quarantined_named_and_recomputed(tmp_path, counter, how, caplog):
    st = runs.Store(tmp_path / "store")
    run = run_kinds.square({"i": 6})
    first = runs.compute([run], store=st, progress=False)[0]
    _damage(first.path, how)
    with caplog.at_level("WARNING", logger="domaingap.runs.store"):
        again = runs.compute([run], store=st, progress=False)[0]
    assert str(first.path) in caplog.text and "failed verification" in caplog.text
    assert run_kinds.computations(counter, "square") == 2  # recomputed, not trusted
    assert again.result["y"] == 36 and st.verify(again.path) is None
    quarantined = list((tmp_path / "store" / "_quarantine" / "t_square").iterdir())
    assert len(quarantined) == 1 and quarantined[0].name.startswith(run.key)


def test_a_result_that_is_not_json_data_is_refused(tmp_path):
    st = runs.Store(tmp_path)
    with pytest.raises(TypeError, match="not JSON data"):
        st.compute("t_square", "k1", {}, lambda w: {"x": object()})
    assert not (tmp_path / "t_square" / "k1").exists()
    with pytest.raises(TypeError, match="returns a dict"):
        st.compute("t_square", "k2", {}, lambda w: [1, 2])
