"""The run graph and its keys: canonical specs, code closures, upstream scheduling, failures, executors."""

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import run_kinds
from domaingap import runs
from domaingap.runs import canonical, code

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv(run_kinds.COUNTER_ENV, str(tmp_path / "counter"))
    (tmp_path / "counter").mkdir()
    return runs.Store(tmp_path / "store")


# ------------------------------------------------------------------------------------------------ canonical
def test_canonical_rejects_what_made_keys_lie():
    with pytest.raises(TypeError, match=r"spec\['x'\] is a numpy.ndarray"):
        canonical.canonical({"x": np.zeros(2000)})
    with pytest.raises(TypeError, match=r"spec\['s'\] is a builtins.set"):
        canonical.canonical({"s": {"a", "b"}})
    with pytest.raises(TypeError, match=r"key 1 of type int"):
        canonical.canonical({1: "a"})
    with pytest.raises(TypeError, match="must be finite"):
        canonical.canonical({"lr": float("nan")})


def test_canonical_is_order_free_and_exact():
    assert canonical.canonical({"b": 1, "a": [1, 2.5]}) == '{"a":[1,2.5],"b":1}'
    assert canonical.canonical({"a": (1, 2)}) == canonical.canonical({"a": [1, 2]})
    # NumPy scalars are the numbers they equal; int and float stay distinct
    assert canonical.canonical({"n": np.int64(3), "f": np.float32(0.5)}) == '{"f":0.5,"n":3}'
    assert canonical.digest({"n": 1}) != canonical.digest({"n": 1.0})
    a = list(range(2000))
    b = list(a)
    b[1234] = -1
    assert canonical.digest({"x": a}) != canonical.digest({"x": b})


def test_key_is_stable_across_hash_seeds():
    script = "import run_kinds; print(run_kinds.square({'i': 3, 'tags': ['b', 'a']}).key)"
    keys = {subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": str(seed),
                                                                 "PYTHONPATH": str(TESTS)},
                           capture_output=True, text=True, check=True).stdout.strip() for seed in (1, 2, 3)}
    assert len(keys) == 1


# ------------------------------------------------------------------------------------------------ keys
def test_thread_count_is_in_the_key_and_is_what_the_run_uses(store, monkeypatch):
    monkeypatch.setenv(runs.graph.THREADS_ENV, "1")
    one = run_kinds.threads({"i": 0})
    monkeypatch.setenv(runs.graph.THREADS_ENV, "2")
    two = run_kinds.threads({"i": 0})
    assert one.key != two.key
    assert one.record["env"]["threads"] == 1 and two.record["env"]["threads"] == 2
    assert runs.compute([two], store=store, progress=False)[0].result["threads"] == 2
    monkeypatch.setenv(runs.graph.THREADS_ENV, "1")
    assert runs.compute([run_kinds.threads({"i": 0})], store=store, progress=False)[0].result["threads"] == 1
    monkeypatch.setenv(runs.graph.THREADS_ENV, "zero")
    with pytest.raises(ValueError, match="DOMAINGAP_RUN_THREADS='zero'"):
        runs.run_threads()


def test_library_versions_are_in_the_key():
    rec = run_kinds.threads({"i": 0}).record
    import torch

    assert rec["env"]["libraries"]["torch"] == torch.__version__.split("+")[0] or \
        rec["env"]["libraries"]["torch"].startswith(torch.__version__.split("+")[0])
    assert "numpy" in rec["env"]["libraries"]


def test_upstream_keys_enter_the_key():
    t = run_kinds.total({"items": [1, 2]})
    assert set(t.record["upstream"]) == {"s1", "s2"}
    assert t.record["upstream"]["s1"]["key"] == run_kinds.square({"i": 1}).key


def test_code_closure_follows_called_helpers_not_the_rest_of_the_module():
    found = code.closure([run_kinds.square])
    assert "run_kinds.square" in found and "run_kinds.count" in found  # a helper it calls
    assert "run_kinds.computations" not in found  # a function of the same module it does not call
    assert not any("domaingap.runs" in name for name in found)  # the store machinery never shapes results


# ------------------------------------------------------------------------------------------------ graph
def test_upstream_runs_are_computed_first_and_once(store):
    counter = Path(os.environ[run_kinds.COUNTER_ENV])
    out = runs.compute([run_kinds.total({"items": [1, 2, 3]}), run_kinds.total({"items": [2, 3]})],
                       store=store, progress=False)
    assert [e.result["total"] for e in out] == [14, 13]
    assert run_kinds.computations(counter, "square") == 3  # square(2), square(3) shared by both totals
    runs.compute([run_kinds.total({"items": [1, 2, 3]})], store=store, progress=False)
    assert run_kinds.computations(counter) == 5  # nothing recomputed


def test_present_downstream_needs_no_upstream(store):
    runs.compute([run_kinds.total({"items": [4]})], store=store, progress=False)
    up = run_kinds.square({"i": 4})
    import shutil

    shutil.rmtree(store.folder(up.kind.name, up.key))
    counter = Path(os.environ[run_kinds.COUNTER_ENV])
    before = run_kinds.computations(counter)
    runs.compute([run_kinds.total({"items": [4]})], store=store, progress=False)
    assert run_kinds.computations(counter) == before


def test_a_failed_run_is_reported_its_dependents_skipped_the_rest_computed(store):
    with pytest.raises(runs.RunsFailed) as info:
        runs.compute([run_kinds.after_fail({"i": 7}), run_kinds.square({"i": 5})], store=store, progress=False)
    err = info.value
    assert "t_fail" in str(err) and "refuses i=7" in str(err)
    assert [r.kind.name for r in err.skipped] == ["t_after_fail"]
    assert store.lookup("t_square", run_kinds.square({"i": 5}).key) is not None


def test_run_functions_must_be_module_level():
    def local(spec, inputs, work):
        return {}

    with pytest.raises(ValueError, match="module level"):
        runs.kind("t_local")(local)


def test_bad_executor_setting_is_named():
    with pytest.raises(ValueError, match="'process:x'"):
        runs.ExecutorSetting.parse("process:x")
    with pytest.raises(ValueError, match="'cluster'"):
        runs.ExecutorSetting.parse("cluster")


@pytest.mark.slow
def test_process_pool_computes_the_graph_and_replaces_dead_workers(store, tmp_path):
    marker = tmp_path / "markers"
    marker.mkdir()
    wanted = [run_kinds.total({"items": [1, 2, 3, 4]}), run_kinds.dies_once({"i": 0, "marker_dir": str(marker)})]
    out = runs.compute(wanted, store=store, executor="process:2", progress=False)
    assert out[0].result["total"] == 30
    assert out[1].result["attempts"] == 2
    pids = {store.lookup("t_square", run_kinds.square({"i": i}).key).result["pid"] for i in (1, 2, 3, 4)}
    assert os.getpid() not in pids  # computed by workers


@pytest.mark.slow
def test_dask_local_cluster_computes_the_graph(store):
    out = runs.compute([run_kinds.total({"items": [5, 6]})], store=store, executor="dask", progress=False)
    assert out[0].result["total"] == 61
    assert store.lookup("t_square", run_kinds.square({"i": 6}).key).result["pid"] != os.getpid()


# ------------------------------------------------------------------------------------------------ editing code
CHAPTER = '''
from pathlib import Path
from domaingap import runs

def helper(i):
    return i + {helper_offset}

def analysis(values):  # an analysis function: never part of a run's key
    return sorted(values){analysis_suffix}

@runs.kind("fake_base", threaded=False, libraries=("numpy",))
def base(spec, inputs, work):
    Path(spec["log"], f"base-{{spec['i']}}").touch()
    return {{"v": helper(spec["i"])}}

@runs.kind("fake_down", threaded=False, libraries=("numpy",), upstream=lambda s: {{"b": base(s["base"])}})
def down(spec, inputs, work):
    Path(spec["log"], f"down-{{spec['base']['i']}}").touch()
    return {{"v": inputs["b"].result["v"] * {down_factor}}}

@runs.kind("fake_other", threaded=False, libraries=("numpy",))
def other(spec, inputs, work):
    Path(spec["log"], "other").touch()
    return {{"v": 1}}
'''


def _run_chapter(folder: Path, store: Path, log: Path, **edits) -> set[str]:
    """Write the fake chapter with ``edits``, compute its runs in a fresh process; return what was computed."""
    params = {"helper_offset": 0, "analysis_suffix": "", "down_factor": 2, **edits}
    (folder / "fakechapter.py").write_text(CHAPTER.format(**params))
    for f in log.iterdir():
        f.unlink()
    script = textwrap.dedent(f"""
        import fakechapter as c
        from domaingap import runs
        log = {str(log)!r}
        wanted = [c.down({{"log": log, "base": {{"log": log, "i": i}}}}) for i in (1, 2)] + [c.other({{"log": log}})]
        runs.compute(wanted, store=runs.Store({str(store)!r}), progress=False)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=folder,
                   env={**os.environ, "PYTHONPATH": str(folder)})
    return {f.name for f in log.iterdir()}


def test_editing_code_recomputes_exactly_the_runs_it_shapes(tmp_path):
    store, log = tmp_path / "store", tmp_path / "log"
    log.mkdir()
    everything = {"base-1", "base-2", "down-1", "down-2", "other"}
    assert _run_chapter(tmp_path, store, log) == everything
    assert _run_chapter(tmp_path, store, log) == set()  # nothing changed: nothing computed
    # an analysis function (not called by any run): nothing recomputed
    assert _run_chapter(tmp_path, store, log, analysis_suffix="[::-1]") == set()
    # a downstream run function: only that run
    assert _run_chapter(tmp_path, store, log, analysis_suffix="[::-1]", down_factor=3) == {"down-1", "down-2"}
    # a helper of the upstream run: the upstream run and its dependents, not the unrelated run
    assert _run_chapter(tmp_path, store, log, analysis_suffix="[::-1]", down_factor=3, helper_offset=1) == \
        {"base-1", "base-2", "down-1", "down-2"}


def test_logging_names_a_failed_run(store, caplog):
    with caplog.at_level(logging.ERROR, logger="domaingap.runs.executors"):
        with pytest.raises(runs.RunsFailed):
            runs.compute([run_kinds.fail({"i": 1})], store=store, progress=False)
    assert "t_fail" in caplog.text


def test_a_module_cache_filled_at_run_time_does_not_change_keys(tmp_path, monkeypatch):
    # kernels keep probes like `_int_mm_ok = {}` that a first call fills: a worker that ran another run first
    # must still compute the scheduler's key. Caches are lowercase (not hashed); UPPERCASE constants are hashed.
    (tmp_path / "cachemod.py").write_text("_probe = {}\nSIZES = (1, 2)\n\ndef f():\n    return _probe.get('x'), SIZES\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import cachemod

    before = code.closure([cachemod.f])
    cachemod._probe["x"] = True
    assert code.closure([cachemod.f]) == before
    assert before["const:cachemod.SIZES"] == "[1,2]"
    cachemod.SIZES = (1, 3)
    assert code.closure([cachemod.f])["const:cachemod.SIZES"] == "[1,3]"


def test_each_entry_records_how_long_it_computed_and_the_cli_sums_it(store):
    from domaingap.chapters.cli import compute_time

    slow, quick = runs.compute([run_kinds.square({"i": 7, "sleep": 0.3}), run_kinds.square({"i": 8})],
                               store=store, progress=False)
    assert 0.3 <= slow.record["computed"]["seconds"] < 5 and quick.record["computed"]["seconds"] < 0.3
    again = store.lookup(slow.kind, slow.key)  # the time is stored with the entry, not measured on load
    assert again.record["computed"] == slow.record["computed"]
    total = (slow.record["computed"]["seconds"] + quick.record["computed"]["seconds"]) / 60
    assert compute_time([slow, quick]) == f", {total:.1f} min computing"
    old = runs.Entry(slow.kind, slow.key, slow.path, slow.result, {k: v for k, v in slow.record.items()
                                                                     if k != "computed"})
    assert compute_time([old, quick]).endswith("(1 without a recorded time)") and compute_time([old]) == ""
