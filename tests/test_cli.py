"""The ``domaingap`` program's ``data`` and ``run`` commands (domaingap.cli, domaingap.cli_data), called in process.

No test downloads anything: every download function is replaced by one that fails the test (or, for ``fetch``, by
one that copies the mirror's file where the publisher's would land).
"""

import shutil

import numpy as np
import pytest

from domaingap import cli, data, paths


def _forbid_downloads(monkeypatch):
    def forbid(*args, **kwargs):
        raise AssertionError(f"a test tried to download {args}")

    for module in (data.files, data.readers, data.publishers):
        monkeypatch.setattr(module, "download", forbid)


@pytest.fixture
def mirror(require_data):
    """The data folder holding BreastMNIST (the offline mirror in CI)."""
    require_data("breastmnist")
    return paths.data_dir()


@pytest.fixture
def empty_dirs(tmp_path, monkeypatch):
    """An empty data folder and an empty cache; downloads forbidden."""
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "d"))
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(data.DOWNLOAD_ENV, "0")  # downloads are on by default: never here
    _forbid_downloads(monkeypatch)
    return tmp_path


# ----------------------------------------------------------------------------------------------- data list

def test_data_list_is_a_table_of_every_registered_dataset(capsys):
    assert cli.main(["data", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "domain", "radiology", "classes", "splits", "licence"]
    rows = {line.split()[0]: line for line in lines[1:] if line.strip() and line.split()[0] in data.REGISTRY}
    assert set(rows) == set(data.names()) and {"kneeoa", "imagenette"} <= set(rows)
    kneeoa = rows["kneeoa"].split()
    assert kneeoa[1:4] == ["medical", "yes", "5"] and data.info("kneeoa").licence in rows["kneeoa"]
    assert "train 5778 / val 826 / test 1656" in rows["kneeoa"]
    assert rows["imagenette"].split()[1:4] == ["natural", "no", "10"]


def test_data_list_of_one_domain(capsys):
    assert cli.main(["data", "list", "--domain", "natural"]) == 0
    out = capsys.readouterr().out
    assert "imagenette" in out and "kneeoa" not in out


# ----------------------------------------------------------------------------------------------- data check

def test_data_check_verifies_a_present_dataset(mirror, monkeypatch, capsys):
    _forbid_downloads(monkeypatch)
    assert cli.main(["data", "check", "breastmnist"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.split()[:2] == ["ok", "breastmnist"] and "verified" in line


def test_data_check_of_a_truncated_copy_fails_naming_the_file(mirror, tmp_path, monkeypatch, capsys):
    rel = "breastmnist/breastmnist.npz"
    copy = tmp_path / "d" / rel
    copy.parent.mkdir(parents=True)
    copy.write_bytes((mirror / rel).read_bytes()[:10_000])
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "d"))
    _forbid_downloads(monkeypatch)
    assert cli.main(["data", "check", "breastmnist"]) == 1
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.split()[:2] == ["FAILED", "breastmnist"] and rel in first and "checksum mismatch" in first
    assert str(copy) in out and data.info("breastmnist").files[rel] in out  # the detail: path, expected SHA-256


def test_data_check_missing_fails_only_when_the_dataset_is_named(empty_dirs, capsys):
    assert cli.main(["data", "check", "kneeoa"]) == 1
    line = capsys.readouterr().out.splitlines()[0]
    assert line.split()[:2] == ["missing", "kneeoa"] and "kneeoa-kl/KneeOA_KL.tar.gz" in line
    assert "domaingap data fetch kneeoa" in line
    assert cli.main(["data", "check"]) == 0  # all by default: missing datasets are reported, not failures
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if line.startswith("missing")]) == len(data.names()) - 1
    n = len(data.names())
    assert out.splitlines()[-1] == f"{n} datasets: 1 ok, {n - 1} missing"  # digits needs no file


def test_data_check_counts_cached_arrays_of_a_download_as_present(empty_dirs, capsys):
    ds = data.info("mnist")
    cached = empty_dirs / "cache" / "arrays" / f"{data.request._decoded_key(ds, ds.native_size)}.npz"
    cached.parent.mkdir(parents=True)
    np.savez(cached, train_x=np.zeros((1, 1, 28, 28), np.uint8), train_y=np.zeros(1, np.int64))
    assert cli.main(["data", "check", "mnist"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.split()[:2] == ["cached", "mnist"] and str(cached) in line


# ----------------------------------------------------------------------------------------------- data fetch

@pytest.mark.parametrize("name, words", [("braintumor", ("Kaggle", "credentials")),
                                         ("kneeoa", ("Mendeley", "by hand"))])
def test_data_fetch_of_a_manual_source_fails_with_the_registrys_instructions(name, words, empty_dirs, capsys):
    assert cli.main(["data", "fetch", name]) == 1
    out = capsys.readouterr().out
    ds = data.info(name)
    assert f"FAILED  {name}:" in out and ds.publisher.manual in out and ds.publisher.page in out
    assert all(w in out for w in words)
    assert str(data.publishers.original_dir(ds)) in out  # where to put the hand-downloaded release
    assert f"domaingap data fetch {name}` again" in out


def test_data_fetch_downloads_the_official_file_then_finds_it_present(mirror, empty_dirs, monkeypatch, capsys):
    rel = "breastmnist/breastmnist.npz"
    calls = []

    def fake_download(url, path, md5sum=None):  # the publisher's file, as pooch would leave it
        calls.append((url, path, md5sum))
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mirror / rel, path)
        return path

    monkeypatch.setattr(data.readers, "download", fake_download)
    ds = data.info("breastmnist")
    assert cli.main(["data", "fetch", "breastmnist"]) == 0
    assert calls == [(ds.urls[rel], empty_dirs / "d" / rel, ds.md5[rel])]
    out = capsys.readouterr().out
    assert "ok      breastmnist: train 546, val 78, test 156 images" in out and ds.licence in out
    assert cli.main(["data", "fetch", "breastmnist"]) == 0 and len(calls) == 1  # the second time: nothing to do
    assert "already in" in capsys.readouterr().out


def test_data_fetch_of_a_present_dataset_downloads_nothing(mirror, monkeypatch, capsys):
    _forbid_downloads(monkeypatch)
    assert cli.main(["data", "fetch", "breastmnist", "--release", "64"]) == 0
    assert "ok      breastmnist: already in" in capsys.readouterr().out


def test_data_fetch_checks_every_name_and_size_before_downloading(empty_dirs, capsys):
    assert cli.main(["data", "fetch", "breastmnist", "kneeoa", "--release", "128"]) == 2  # MedMNIST+ only
    captured = capsys.readouterr()
    assert "dataset 'kneeoa' is published at (64,) px, not 128" in captured.err
    assert "fetching" not in captured.out and "breastmnist" not in captured.out


# ----------------------------------------------------------------------------------------------- bad names

@pytest.mark.parametrize("argv", [["data", "check", "nosuchset"], ["data", "fetch", "kneeoa", "nosuchset"]])
def test_an_unknown_dataset_is_exit_status_2_naming_it_and_the_known_ones(argv, empty_dirs, capsys):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert "'nosuchset'" in captured.err and all(n in captured.err for n in data.names())
    assert "FAILED" not in captured.out and "fetching" not in captured.out  # nothing was attempted


# ----------------------------------------------------------------------------------------------- run

def test_run_list_lists_the_runs_without_computing(tmp_path, monkeypatch, capsys):
    from domaingap import runs

    monkeypatch.setenv(paths.ARTEFACTS_ENV, str(tmp_path / "artefacts"))
    monkeypatch.setattr(runs, "compute", lambda *a, **k: pytest.fail("--list computed runs"))
    assert cli.main(["run", "--list", "--profile", "ci", "--chapter", "p1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("p1 ") and line.endswith("runs, 0 cached") for line in lines)
    assert any(line.startswith("p1 train: ") for line in lines)


def test_run_forwards_to_the_chapters_command(monkeypatch):
    from domaingap.chapters import cli as chapters_cli

    seen = []
    monkeypatch.setattr(chapters_cli, "main", lambda chapter=None, argv=None: seen.append((chapter, argv)) or 7)
    assert cli.main(["run", "--profile", "paper", "--chapter", "p2, p3", "--only", "tab1",
                     "--executor", "process:2"]) == 7
    assert cli.main(["run"]) == 7
    assert seen == [(None, ["--profile", "paper", "--chapters", "p2,p3", "--only", "tab1", "--executor",
                            "process:2"]),
                    (None, ["--profile", "default"])]

    def parser_error(chapter=None, argv=None):
        raise SystemExit(2)

    monkeypatch.setattr(chapters_cli, "main", parser_error)
    assert cli.main(["run", "--only", "nosuchsweep"]) == 2


def test_run_unknown_chapter_is_exit_status_2(capsys):
    assert cli.main(["run", "--chapter", "p4", "--list"]) == 2
    err = capsys.readouterr().err
    assert "'p4'" in err and "p1, p2, p3" in err


# ----------------------------------------------------------------------------------------------- book

def test_book_runs_data_check_runs_notebooks_and_html_in_order_with_the_profile(monkeypatch):
    import subprocess

    from domaingap import cli_data, runner
    from domaingap.chapters import cli as chapters_cli

    seen = []
    monkeypatch.setattr(cli_data, "check", lambda args: seen.append(("check", args.names)) or 0)
    monkeypatch.setattr(chapters_cli, "main", lambda chapter=None, argv=None: seen.append(("runs", argv)) or 0)
    monkeypatch.setattr(runner, "main", lambda argv=None: seen.append(("notebooks", argv)) or 0)
    monkeypatch.setattr(subprocess, "run", lambda cmd, cwd=None: seen.append(("html", cmd[1:3] + cmd[-3:]))
                        or subprocess.CompletedProcess(cmd, 0))
    assert cli.main(["book", "--profile", "ci", "--jobs", "2"]) == 0
    assert [s[0] for s in seen] == ["check", "runs", "notebooks", "html"]
    assert seen[1][1] == ["--profile", "ci", "--executor", "process:2"]
    assert seen[2][1][:3] == ["run", "--profile", "ci"] and seen[2][1][-2:] == ["--jobs", "2"]
    assert seen[3][1] == ["build", str(paths.REPO_ROOT / "book"), "-W", "-n", "--keep-going"]


def test_book_html_only_builds_the_given_folder_and_nothing_else(monkeypatch, tmp_path, capsys):
    import subprocess

    from domaingap import runner

    seen = []
    monkeypatch.setattr(runner, "main", lambda argv=None: pytest.fail("notebooks ran with --html-only"))
    monkeypatch.setattr(subprocess, "run",
                        lambda cmd, cwd=None: seen.append(cmd) or subprocess.CompletedProcess(cmd, 3))
    assert cli.main(["book", "--html-only", str(tmp_path)]) == 2  # no _toc.yml: not an assembled book
    assert "_toc.yml" in capsys.readouterr().err and not seen
    (tmp_path / "_toc.yml").write_text("format: jb-book\n")
    assert cli.main(["book", "--html-only", str(tmp_path)]) == 3  # the build's own exit status
    assert seen[0][1:3] == ["build", str(tmp_path.resolve())] and "-W" in seen[0]


def test_book_stops_at_the_first_failing_step_and_returns_its_status(monkeypatch, capsys):
    from domaingap import cli_data, runner
    from domaingap.chapters import cli as chapters_cli

    monkeypatch.setattr(cli_data, "check", lambda args: 0)
    monkeypatch.setattr(chapters_cli, "main", lambda chapter=None, argv=None: 1)
    monkeypatch.setattr(runner, "main", lambda argv=None: pytest.fail("notebooks ran after the runs failed"))
    assert cli.main(["book", "--no-html"]) == 1
    assert "the runs step failed (exit status 1)" in capsys.readouterr().err


def test_book_outside_a_checkout_and_bad_jobs_are_exit_status_2(monkeypatch, capsys):
    assert cli.main(["book", "--jobs", "0"]) == 2
    assert "--jobs must be >= 1, got 0" in capsys.readouterr().err
    monkeypatch.setattr(paths, "IN_CHECKOUT", False)
    assert cli.main(["book"]) == 2
    assert "clone the repository" in capsys.readouterr().err
