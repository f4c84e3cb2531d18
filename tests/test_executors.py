"""Executors: a sweep fans out over a real local Dask cluster and a process pool, a killed worker's run is
retried, and the results are identical to the sequential executor's."""

import pytest

from domaingap import artefacts, executors, paths

import executor_tasks as tasks


@pytest.fixture(autouse=True)
def _tmp_artefacts(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ARTEFACTS_ENV, str(tmp_path / "art"))
    monkeypatch.delenv(executors.EXECUTOR_ENV, raising=False)


def _values(results):
    return [r["value"] for r in results]


def test_setting_parse_and_errors():
    assert executors.ExecutorSetting.parse("process:3") == executors.ExecutorSetting("process", "3")
    assert executors.ExecutorSetting.parse("dask:tcp://127.0.0.1:8786").arg == "tcp://127.0.0.1:8786"
    with pytest.raises(ValueError, match="ray"):
        executors.ExecutorSetting.parse("ray")
    with pytest.raises(ValueError, match="positive integer"):
        executors.ExecutorSetting.parse("process:x")


def test_dask_local_cluster_fans_out_and_matches_sequential(tmp_path, monkeypatch):
    specs = [{"seed": s, "sleep": 0.3} for s in range(8)]
    monkeypatch.setenv(paths.ARTEFACTS_ENV, str(tmp_path / "seq"))
    sequential = artefacts.sweep("k", specs, tasks.seeded_stat, progress=False)
    monkeypatch.setenv(paths.ARTEFACTS_ENV, str(tmp_path / "dask"))
    monkeypatch.setattr(executors.os, "cpu_count", lambda: 2)  # two workers, as on the CI machine
    distributed = artefacts.sweep("k", specs, tasks.seeded_stat, progress=False, executor="dask")
    assert _values(distributed) == _values(sequential)
    assert len({r["pid"] for r in distributed}) == 2  # both workers computed runs
    assert {r["pid"] for r in distributed}.isdisjoint({r["pid"] for r in sequential})


def test_dask_retries_the_run_of_a_killed_worker(tmp_path, monkeypatch):
    monkeypatch.setattr(executors.os, "cpu_count", lambda: 2)
    specs = [{"seed": s, "marker_dir": str(tmp_path)} for s in range(3)]
    results = artefacts.sweep("d", specs, tasks.dies_once, progress=False, executor="dask")
    assert [r["attempts"] for r in results] == [2, 2, 2]
    reference = [tasks.seeded_stat({"seed": s}, None)["value"] for s in range(3)]
    assert _values(results) == reference


def test_process_pool_matches_sequential_and_survives_a_killed_worker(tmp_path):
    specs = [{"seed": s, "marker_dir": str(tmp_path)} for s in range(3)]
    results = artefacts.sweep("p", specs, tasks.dies_once, progress=False, executor="process:2")
    assert all(r["attempts"] >= 2 for r in results)
    reference = [tasks.seeded_stat({"seed": s}, None)["value"] for s in range(3)]
    assert _values(results) == reference


def test_only_missing_runs_are_computed(tmp_path):
    specs = [{"seed": s} for s in range(3)]
    first = artefacts.sweep("m", specs[:2], tasks.seeded_stat, progress=False)
    again = artefacts.sweep("m", specs, tasks.seeded_stat, progress=False, executor="process:1")
    assert [r["pid"] for r in again[:2]] == [r["pid"] for r in first]  # cached, not recomputed
