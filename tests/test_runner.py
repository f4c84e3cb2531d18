"""The papermill runner: kernel start-up retries, failure collection and reporting, parallel chapters.

Throwaway MyST notebooks in tmp_path stand in for the book's: most tests replace the papermill execution with a
fake (no kernel); the three ``slow`` ones start eight small kernels in all.
"""

import errno
import json

import nbformat
import pytest

from domaingap import paths, runner

HEADER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

```{code-cell} ipython3
:tags: [parameters]
profile = "default"
```
"""


def cell(code: str) -> str:
    return f"\n```{{code-cell}} ipython3\n{code}\n```\n"


OK = cell('print("ran at", profile)')
BAD = cell("def f(x):\n    return 1 / x\ny = 2\nz = f(0)")


@pytest.fixture
def notebooks(tmp_path, monkeypatch):
    """``write({"a/ok.md": OK, ...})`` makes throwaway notebooks under ``tmp_path/notebooks`` (the runner's
    notebook folder for the test); returns that folder."""
    root = tmp_path / "notebooks"
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", root)
    monkeypatch.setenv(runner.RUNTIMES_ENV, "")  # run() sets it; restored afterwards
    monkeypatch.setattr(runner, "RETRY_BACKOFF_S", 0.0)

    def write(files: dict[str, str]):
        for rel, body in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(HEADER + body)
        return root

    return write


class FakePapermill:
    """Stands in for :func:`runner.papermill_execute`: ``plan`` maps a notebook's stem to the exceptions its
    successive executions raise (``None``: succeed, writing the output)."""

    def __init__(self, plan=None):
        self.plan = {k: list(v) for k, v in (plan or {}).items()}
        self.calls: list[str] = []

    def __call__(self, src_nb, out_nb, profile):
        self.calls.append(src_nb.stem)
        nb = nbformat.read(src_nb, as_version=4)
        outcome = (self.plan.get(src_nb.stem) or [None]).pop(0)
        if isinstance(outcome, tuple):  # (exception, a cell ran first)
            outcome, ran = outcome
            if ran:
                nb.cells[0].execution_count = 1
                nb.cells[0].metadata["papermill"] = {"start_time": "2024-01-01T00:00:00"}
            nbformat.write(nb, out_nb)
        if outcome is not None:
            raise outcome
        nbformat.write(nb, out_nb)


def cell_error():
    from papermill import PapermillExecutionError

    tb = ["\x1b[0;31m-----------\x1b[0m", "\x1b[0;31mZeroDivisionError\x1b[0m  Traceback (most recent call last)",
          "Cell \x1b[0;32mIn[3], line 4\x1b[0m\n\x1b[1;32m      2\x1b[0m     \x1b[38;5;28;01mreturn\x1b[39;00m "
          "\x1b[38;5;241m1\x1b[39m\n\x1b[1;32m      3\x1b[0m y \x1b[38;5;241m=\x1b[39m 2\n"
          "\x1b[0;32m----> 4\x1b[0m z \x1b[38;5;241m=\x1b[39m f(\x1b[38;5;241m0\x1b[39m)\n",
          "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"]
    return PapermillExecutionError(2, 3, "z = f(0)", "ZeroDivisionError", "division by zero", tb)


def zmq_error():
    import zmq

    return zmq.ZMQError(errno.EADDRINUSE)


@pytest.mark.parametrize("startup_error", [
    zmq_error,
    lambda: RuntimeError("Kernel died before replying to kernel_info"),  # what papermill sees of a port clash
])
def test_kernel_startup_failure_is_retried(notebooks, tmp_path, monkeypatch, startup_error):
    root = notebooks({"a/ok.md": OK})
    fake = FakePapermill({"ok": [startup_error()]})
    monkeypatch.setattr(runner, "papermill_execute", fake)
    out = tmp_path / "out" / "a" / "ok.ipynb"
    runner.execute(root / "a" / "ok.md", out, "ci")
    assert fake.calls == ["ok", "ok"] and out.is_file()
    assert not out.with_name("ok.tmp.ipynb").exists()


def test_cell_failure_is_not_retried(notebooks, tmp_path, monkeypatch):
    root = notebooks({"a/bad.md": BAD})
    fake = FakePapermill({"bad": [cell_error()]})
    monkeypatch.setattr(runner, "papermill_execute", fake)
    with pytest.raises(runner.NotebookError) as info:
        runner.execute(root / "a" / "bad.md", tmp_path / "out" / "a" / "bad.ipynb", "ci")
    assert fake.calls == ["bad"]
    f = info.value.failure
    assert (f.notebook, f.cell, f.line, f.error) == (
        "notebooks/a/bad.md", 3, "line 4: z = f(0)", "ZeroDivisionError: division by zero")


def test_kernel_death_after_a_cell_ran_is_not_retried(notebooks, tmp_path, monkeypatch):
    from nbclient.exceptions import DeadKernelError

    root = notebooks({"a/ok.md": OK})
    fake = FakePapermill({"ok": [(DeadKernelError("Kernel died"), True)]})
    monkeypatch.setattr(runner, "papermill_execute", fake)
    with pytest.raises(runner.NotebookError, match="DeadKernelError: Kernel died") as info:
        runner.execute(root / "a" / "ok.md", tmp_path / "out" / "a" / "ok.ipynb", "ci")
    assert fake.calls == ["ok"] and info.value.failure.cell == 1


def test_kernel_startup_retries_are_bounded_and_jittered(notebooks, tmp_path, monkeypatch):
    root = notebooks({"a/ok.md": OK})
    fake = FakePapermill({"ok": [zmq_error() for _ in range(5)]})
    monkeypatch.setattr(runner, "papermill_execute", fake)
    monkeypatch.setattr(runner, "RETRY_BACKOFF_S", 1.0)
    waits = []
    monkeypatch.setattr(runner.time, "sleep", waits.append)
    with pytest.raises(runner.NotebookError, match="failed to start 3 times .*Address already in use"):
        runner.execute(root / "a" / "ok.md", tmp_path / "out" / "a" / "ok.ipynb", "ci")
    assert len(fake.calls) == runner.KERNEL_START_TRIES == 3
    assert len(waits) == 2 and 0.5 <= waits[0] <= 1.5 and 1.0 <= waits[1] <= 3.0


def test_a_failure_does_not_stop_the_run_and_is_reported_at_the_end(notebooks, tmp_path, monkeypatch, capsys):
    notebooks({"a/bad.md": BAD, "a/ok.md": OK, "a/a_claims.md": OK, "b/ok.md": OK, "summary/s.md": OK})
    fake = FakePapermill({"bad": [cell_error()]})
    monkeypatch.setattr(runner, "papermill_execute", fake)
    out, report = tmp_path / "out", tmp_path / "report.json"
    with pytest.raises(runner.RunFailed) as info:
        runner.run("ci", out, report=report)
    assert fake.calls == ["bad", "ok", "a_claims", "ok", "s"]  # everything ran, the summary last
    assert [f.notebook for f in info.value.failures] == ["notebooks/a/bad.md"]
    assert "notebooks/a/bad.md (profile ci): cell In [3], line 4: z = f(0)" in str(info.value)
    assert [f["cell"] for f in json.loads(report.read_text())] == [3]
    assert sorted(json.loads((out / runner.RUNTIMES).read_text())["notebooks"]) == [
        "notebooks/a/a_claims.md", "notebooks/a/ok.md", "notebooks/b/ok.md", "notebooks/summary/s.md"]
    assert not (out / "a" / "bad.ipynb").exists() and (out / "summary" / "s.ipynb").is_file()

    # the command line: the same run exits 1 and ends with the list of failures
    fake.plan = {"bad": [cell_error()]}
    assert runner.main(["run", "--profile", "ci", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert [line.strip() for line in err.strip().splitlines()[-3:]] == [
        "1 notebook failed:", "- notebooks/a/bad.md (profile ci): cell In [3], line 4: z = f(0)",
        "ZeroDivisionError: division by zero"]


def test_library_errors_are_exceptions_and_main_turns_them_into_exit_codes(notebooks, capsys):
    notebooks({"a/ok.md": OK})
    with pytest.raises(runner.SelectionError, match="matches"):
        runner.sources(["nope"])
    with pytest.raises(ValueError, match="unknown profile"):
        runner.run("fast", paths.NOTEBOOKS_DIR)
    assert runner.main(["run", "--profile", "ci", "nope"]) == 1
    assert "no notebook under" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's usage error
        runner.main(["run", "--profile", "ci", "--jobs", "0"])


def test_anchored_selection(notebooks):
    root = notebooks({"a/ok.md": OK, "data/ok.md": OK})
    assert runner.sources(["a/ok.md"]) == [root / "a" / "ok.md", root / "data" / "ok.md"]
    assert runner.sources(["/a/ok.md"]) == [root / "a" / "ok.md"]


def test_runtimes_of_concurrent_runners_are_all_kept(tmp_path):
    # two runners (two chapters) write into one _runtimes.json: neither may drop the other's entries
    from concurrent.futures import ProcessPoolExecutor

    target = tmp_path / runner.RUNTIMES
    names = [f"notebooks/p{i % 3 + 1}/nb{i}.md" for i in range(24)]
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(runner.record_runtime, [target] * len(names), names,
                      [{"seconds": float(i)} for i in range(len(names))]))
    record = json.loads(target.read_text())
    assert sorted(record["notebooks"]) == sorted(names)
    assert record["notebooks"][names[5]] == {"seconds": 5.0} and record["machine"]["cpu_count"] >= 1


@pytest.mark.slow
def test_real_port_clash_is_retried(notebooks, tmp_path, monkeypatch):
    # two real kernels: the first finds its shell port taken (the race of `--jobs N`) and dies at start-up
    import socket

    from jupyter_client.manager import KernelManager

    root = notebooks({"a/ok.md": OK})
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()

    class Clash(KernelManager):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.cache_ports = False
            self.shell_port = taken.getsockname()[1]

    real, calls = runner.papermill_execute, []

    def first_clashes(src_nb, out_nb, profile):
        calls.append(src_nb.stem)
        real(src_nb, out_nb, profile, **({"kernel_manager_class": Clash} if len(calls) == 1 else {}))

    monkeypatch.setattr(runner, "papermill_execute", first_clashes)
    out = tmp_path / "out" / "a" / "ok.ipynb"
    try:
        runner.execute(root / "a" / "ok.md", out, "ci")
    finally:
        taken.close()
    assert calls == ["ok", "ok"]
    assert "ran at ci" in "".join(o.get("text", "") for c in nbformat.read(out, as_version=4).cells
                                  for o in c.get("outputs", []))


@pytest.mark.slow
def test_real_failing_notebook_is_reported_and_the_rest_runs(notebooks, tmp_path, capsys):
    # three real kernels: a genuine cell error is reported (not retried) and the other notebooks still run
    notebooks({"a/bad.md": BAD, "a/ok.md": OK, "summary/s.md": OK})
    out = tmp_path / "out"
    assert runner.main(["run", "--profile", "ci", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("[1/3] notebooks/a/bad.md") == 1 and "try 2/" not in captured.out
    assert ("- notebooks/a/bad.md (profile ci): cell In [3], line 4: z = f(0)\n      "
            "ZeroDivisionError: division by zero") in captured.err
    assert (out / "a" / "bad.tmp.ipynb").is_file() and not (out / "a" / "bad.ipynb").exists()
    for nb in ("a/ok.ipynb", "summary/s.ipynb"):
        text = "".join(o.get("text", "") for c in nbformat.read(out / nb, as_version=4).cells
                       for o in c.get("outputs", []))
        assert "ran at ci" in text


@pytest.mark.slow
def test_parallel_chapters_failure_summary_still_runs_and_exit_is_nonzero(notebooks, tmp_path, capfd):
    # three real kernels in three runner processes: chapter a fails, b does not; summary/ runs last anyway
    notebooks({"a/bad.md": BAD, "b/ok.md": OK, "summary/s.md": OK})
    out = tmp_path / "out"
    assert runner.main(["run", "--profile", "ci", "--out", str(out), "--jobs", "2"]) == 1
    err = capfd.readouterr().err
    report = err[err.rindex("1 notebook failed:"):]  # the parent's, after the chapter's own
    assert ("- notebooks/a/bad.md (profile ci): cell In [3], line 4: z = f(0)\n      "
            "ZeroDivisionError: division by zero") in report
    assert (out / "b" / "ok.ipynb").is_file() and (out / "summary" / "s.ipynb").is_file()
    times = json.loads((out / runner.RUNTIMES).read_text())["notebooks"]
    assert sorted(times) == ["notebooks/b/ok.md", "notebooks/summary/s.md"]
    assert times["notebooks/summary/s.md"]["finished"] >= times["notebooks/b/ok.md"]["finished"]
