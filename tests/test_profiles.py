import pytest

from domaingap import profiles, runner


def test_every_section_defines_every_profile():
    for section in profiles.sections():
        for p in profiles.PROFILES:
            assert profiles.get(section, p)["profile"] == p


def test_unknown_profile_and_section():
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        profiles.get("data_overview", "fast")
    with pytest.raises(KeyError, match="data_overview"):
        profiles.get("nope", "ci")


def test_get_returns_a_copy():
    a = profiles.get("data_overview", "ci")
    a["stats_n"] = -1
    assert profiles.get("data_overview", "ci")["stats_n"] != -1


def test_every_notebook_has_a_parameters_cell_and_profile_section():
    for source in runner.sources():
        nb = runner.to_notebook(source)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and 'profile = "default"' in tagged[0].source, source


def test_nbval_references_match_their_sources():
    assert runner.stale_refs() == []


def test_runtimes_of_concurrent_runners_are_all_kept(tmp_path):
    # two runners (two chapters) write into one _runtimes.json: neither may drop the other's entries
    import json
    from concurrent.futures import ProcessPoolExecutor

    target = tmp_path / runner.RUNTIMES
    names = [f"notebooks/p{i % 3 + 1}/nb{i}.md" for i in range(24)]
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(runner.record_runtime, [target] * len(names), names,
                      [{"seconds": float(i)} for i in range(len(names))]))
    record = json.loads(target.read_text())
    assert sorted(record["notebooks"]) == sorted(names)
    assert record["notebooks"][names[5]] == {"seconds": 5.0} and record["machine"]["cpu_count"] >= 1


def test_parallel_runner_runs_chapters_in_processes_and_summary_last(tmp_path):
    import json

    runner.run_parallel("ci", tmp_path, ["appendix/performance", "data/data_overview", "summary/claims_summary"],
                        jobs=2)
    for nb in ("appendix/performance.ipynb", "data/data_overview.ipynb", "summary/claims_summary.ipynb"):
        assert (tmp_path / nb).is_file()
    times = json.loads((tmp_path / runner.RUNTIMES).read_text())["notebooks"]
    finished = {k.split("/")[1]: v["finished"] for k, v in times.items()}
    assert set(finished) == {"appendix", "data", "summary"}
    assert finished["summary"] >= max(finished["appendix"], finished["data"])
    with pytest.raises(SystemExit):
        runner.main(["run", "--profile", "ci", "--jobs", "0", "appendix/performance"])
