"""Execute the book's notebooks with papermill at a profile.

The notebooks are jupytext MyST markdown sources under ``notebooks/``; ``.ipynb`` files are build products.

    python -m domaingap.runner run --profile default            # -> book/executed/<chapter>/<name>.ipynb
    python -m domaingap.runner run --profile default --jobs 2   # two chapters at a time, one core each
    python -m domaingap.runner refs                             # -> tests/notebooks/<chapter>__<name>.ipynb (ci)
    python -m domaingap.runner check-refs                       # are the nbval references current?

Notebooks are selected by substrings of their path under ``notebooks/`` (``p1/fig2``); a selection starting
with ``/`` is anchored there (``/p1/fig2_scaling_law.md`` is that notebook only).

Failures: a notebook that fails does not stop the run. Every other notebook and chapter still runs, and the
book-wide ``summary/`` chapter runs last in any case, so the book shows what was computed (its pages read the
claims the chapters did record). Every failure is reported once more at the end (notebook, failing cell and
its error line, partly executed notebook) and the command exits with status 1, with ``--jobs 1`` or ``N``.
A failed notebook's output is left as ``<name>.tmp.ipynb``; its previous output, if any, is kept.

Kernel start-up: jupyter_client picks free TCP ports for a kernel and closes them again before the kernel binds
them, so when kernels start at once (``--jobs N``) another process can take a port in between and the kernel
dies with ``zmq.error.ZMQError: Address already in use`` (seen by papermill as "Kernel died before replying to
kernel_info"). Such a start-up failure, one before any cell ran, is retried with fresh ports
(:data:`KERNEL_START_TRIES` tries, jittered backoff); a failure once a cell has run is never retried.

Per-notebook run times are written to ``<out>/_runtimes.json`` for the book's provenance page.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import paths
from .profiles import PROFILES

KERNEL = "python3"
RUNTIMES = "_runtimes.json"
RUNTIMES_ENV = "DOMAINGAP_RUNTIMES"  # set for the kernels: where this run records per-notebook times
REFS_DIR = paths.TESTS_DIR / "notebooks"
KERNEL_START_TRIES = 3   # executions of a notebook whose kernel dies at start-up (port clash) before giving up
RETRY_BACKOFF_S = 1.0    # wait before try k+1: k * RETRY_BACKOFF_S, jittered by x0.5..1.5
# what a kernel start-up failure looks like to papermill (the ZMQError itself is in the dead kernel's stderr)
KERNEL_START_ERRORS = ("Address already in use", "Kernel died", "Kernel didn't respond")


class RunnerError(RuntimeError):
    """A failure of the runner that :func:`main` reports and turns into exit status 1."""


class SelectionError(RunnerError, ValueError):
    """An unknown profile, or a selection that matches no notebook."""


@dataclass
class Failure:
    """One notebook that failed: where, and why."""

    notebook: str                # its source, e.g. notebooks/p1/fig2_scaling_law.md
    profile: str
    error: str                   # "ZeroDivisionError: division by zero", or what went wrong outside a cell
    cell: int | None = None      # execution count of the failing cell ("In [n]" of the executed notebook)
    line: str | None = None      # the failing cell's line that raised, e.g. "line 2: x = 1 / 0"
    partial: str | None = None   # the partly executed notebook

    def __str__(self) -> str:
        out = f"{self.notebook} (profile {self.profile}): "
        if self.cell is not None:
            out += f"cell In [{self.cell}]" + (f", {self.line}" if self.line else "") + "\n      "
        out += self.error
        return out + (f"\n      (partly executed notebook: {self.partial})" if self.partial else "")


class NotebookError(RunnerError):
    """One notebook failed (raised by :func:`execute`); ``failure`` says where and why."""

    def __init__(self, failure: Failure):
        self.failure = failure
        super().__init__(f"FAILED {failure}")


class RunFailed(RunnerError):
    """Notebooks failed in a run; raised at its end, after every other notebook ran. ``failures`` lists them."""

    def __init__(self, failures: list[Failure]):
        self.failures = list(failures)
        n = len(self.failures)
        super().__init__(f"{n} notebook{'s' if n != 1 else ''} failed:\n" +
                         "\n".join(f"  - {f}" for f in self.failures))


class StaleReferences(RunnerError):
    """The nbval references are missing, orphaned or out of date."""


def run_order(path: Path) -> tuple:
    """Execution order: chapters alphabetically, each chapter's claims page after its notebooks (it reads the
    claims they record), and the book-wide ``summary/`` folder last."""
    rel = path.relative_to(paths.NOTEBOOKS_DIR) if path.is_relative_to(paths.NOTEBOOKS_DIR) else path
    chapter = rel.parts[0] if len(rel.parts) > 1 else ""
    return (chapter == "summary", chapter, path.stem.endswith("claims"), path.stem)


def sources(selection: list[str] | None = None) -> list[Path]:
    """MyST notebook sources under ``notebooks/`` (those with a jupytext header), in run order, optionally
    filtered by substring of their path under ``notebooks/`` (anchored there when it starts with ``/``)."""
    found = []
    for path in sorted(paths.NOTEBOOKS_DIR.rglob("*.md"), key=run_order):
        head = path.read_text(encoding="utf-8")[:400]
        if "jupytext:" in head and "kernelspec:" in head:
            found.append(path)
    if selection:
        found = [p for p in found if any(s in "/" + p.relative_to(paths.NOTEBOOKS_DIR).as_posix() for s in selection)]
        if not found:
            raise SelectionError(f"no notebook under {paths.NOTEBOOKS_DIR} matches {selection}")
    return found


def display(source: Path) -> str:
    """A notebook source as messages and ``_runtimes.json`` name it: ``notebooks/<chapter>/<name>.md``."""
    return source.relative_to(paths.NOTEBOOKS_DIR.parent).as_posix()


def target(source: Path, out_dir: Path, flat: bool) -> Path:
    rel = source.relative_to(paths.NOTEBOOKS_DIR).with_suffix(".ipynb")
    return out_dir / ("__".join(rel.parts) if flat else rel)


def to_notebook(source: Path):
    """The jupytext conversion of a MyST source to an nbformat notebook (no outputs)."""
    import jupytext

    return jupytext.read(source, fmt="md:myst")


def code_cells(nb) -> list[str]:
    """Code-cell sources of a notebook, without the cell papermill injects for parameters."""
    return [c.source for c in nb.cells
            if c.cell_type == "code" and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


def papermill_execute(src_nb: Path, out_nb: Path, profile: str, **engine_kwargs) -> None:
    """One papermill execution of ``src_nb`` into ``out_nb`` at ``profile`` (a fresh kernel, started in the
    repository root); ``engine_kwargs`` go to papermill's engine (e.g. ``kernel_manager_class``)."""
    import papermill as pm

    pm.execute_notebook(str(src_nb), str(out_nb), parameters={"profile": profile}, kernel_name=KERNEL,
                        cwd=str(paths.REPO_ROOT), progress_bar=False, log_output=False, **engine_kwargs)


def _partial_cells(nb_path: Path) -> list:
    import nbformat

    try:
        return nbformat.read(nb_path, as_version=4).cells
    except (OSError, ValueError):
        return []  # not written: papermill did not even start


def cells_started(nb_path: Path) -> bool:
    """Whether papermill got as far as starting a cell of the (partly) executed notebook at ``nb_path``."""
    return any(c.get("execution_count") is not None or c.get("metadata", {}).get("papermill", {}).get("start_time")
               for c in _partial_cells(nb_path))


def last_cell(nb_path: Path) -> int | None:
    """The execution count of the last cell that ran in the partly executed notebook at ``nb_path``."""
    counts = [c.execution_count for c in _partial_cells(nb_path) if c.get("execution_count") is not None]
    return max(counts) if counts else None


def kernel_start_failure(err: BaseException, partial: Path) -> bool:
    """Whether ``err`` is a kernel start-up failure worth retrying: a ZMQ error (a port clash) or a kernel that
    died or did not answer, before any cell ran. A cell's error (``PapermillExecutionError``) never is."""
    from papermill import PapermillExecutionError

    if isinstance(err, PapermillExecutionError) or cells_started(partial):
        return False
    if type(err).__module__.startswith("zmq"):
        return True
    return any(s in str(err) for s in KERNEL_START_ERRORS)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def failing_line(traceback: list[str]) -> str | None:
    """The line of the failing cell that raised, from an IPython traceback: ``"line 2: x = 1 / 0"``."""
    text = _ANSI.sub("", "\n".join(traceback or []))
    block = re.search(r"(?:Cell In\s*\[\d*\]|<ipython-input-[^>]*>), line (\d+)(.*?)(?:\n\n|\Z)", text, re.S)
    if not block:
        return None
    arrow = re.search(r"^-+>\s*\d+\s(.*)$", block.group(2), re.M)
    return f"line {block.group(1)}" + (f": {arrow.group(1).strip()}" if arrow else "")


def execute(source: Path, output: Path, profile: str) -> float:
    """Run one notebook with papermill at ``profile``; returns wall seconds. Writes ``output`` atomically.

    A kernel start-up failure (port clash) is retried, up to :data:`KERNEL_START_TRIES` executions in all.
    Raises :class:`NotebookError` when the notebook fails; its partly executed notebook is then left beside
    ``output`` as ``<name>.tmp.ipynb``.
    """
    import nbformat
    from papermill import PapermillExecutionError

    name = display(source)
    nb = to_notebook(source)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise NotebookError(Failure(name, profile, "no cell tagged 'parameters' (papermill needs one to inject "
                                                   "`profile`)"))
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = output.with_name(output.stem + ".tmp.ipynb")
    with tempfile.TemporaryDirectory() as tmp:
        src_nb = Path(tmp) / output.name
        nbformat.write(nb, src_nb)
        for attempt in range(1, KERNEL_START_TRIES + 1):
            tmp_out.unlink(missing_ok=True)
            start = time.perf_counter()
            try:
                papermill_execute(src_nb, tmp_out, profile)
                break
            except PapermillExecutionError as err:
                raise NotebookError(Failure(name, profile, f"{err.ename}: {err.evalue}", cell=err.exec_count,
                                            line=failing_line(err.traceback), partial=_shown(tmp_out))) from None
            except Exception as err:  # noqa: BLE001 - reported with the notebook's name
                what = f"{type(err).__name__}: {err}"
                if not kernel_start_failure(err, tmp_out):  # e.g. the kernel died in a cell (out of memory)
                    raise NotebookError(Failure(name, profile, what, cell=last_cell(tmp_out),
                                                partial=_shown(tmp_out))) from err
                if attempt == KERNEL_START_TRIES:
                    raise NotebookError(Failure(name, profile, f"the kernel failed to start {attempt} times "
                                                               f"(last: {what})")) from err
                delay = RETRY_BACKOFF_S * attempt * random.uniform(0.5, 1.5)
                print(f"      kernel start-up failed ({what}; a port clash?): try {attempt + 1}/"
                      f"{KERNEL_START_TRIES} in {delay:.1f} s", flush=True)
                time.sleep(delay)
        seconds = time.perf_counter() - start
        hide_parameter_cells(tmp_out)
        os.replace(tmp_out, output)
    return seconds


PARAMETER_TAGS = ("parameters", "injected-parameters")


def hide_parameter_cells(nb_path: Path) -> None:
    """Tag the notebook's own parameters cell and the one papermill injects ``remove-cell``, so the rendered book
    shows neither (a reader needs the profile, which every page prints, not the plumbing that set it)."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    changed = False
    for cell in nb.cells:
        tags = cell.get("metadata", {}).setdefault("tags", [])
        if any(t in tags for t in PARAMETER_TAGS) and "remove-cell" not in tags:
            tags.append("remove-cell")
            changed = True
    if changed:
        nbformat.write(nb, nb_path)


def _shown(path: Path) -> str | None:
    if not path.is_file():
        return None
    return str(path.relative_to(paths.REPO_ROOT)) if path.is_relative_to(paths.REPO_ROOT) else str(path)


def run(profile: str, out_dir: Path, selection: list[str] | None = None, flat: bool = False,
        report: Path | None = None) -> dict[str, float]:
    """Execute every selected notebook, in order, whatever fails; returns and records ``{source: seconds}``.

    A failing notebook is reported when it fails and the run goes on; at the end :class:`RunFailed` lists every
    failure. ``report``: a JSON file to write the failures to (a list, empty when none failed), for
    :func:`run_parallel`.
    """
    if profile not in PROFILES:
        raise SelectionError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    runtimes_file = out_dir / RUNTIMES
    # The provenance page (run last) reads the times of the notebooks run before it from this file.
    os.environ[RUNTIMES_ENV] = str(runtimes_file)
    todo = sources(selection)
    failures: list[Failure] = []
    for i, source in enumerate(todo, 1):
        rel = display(source)
        print(f"[{i}/{len(todo)}] {rel} (profile={profile}) ...", flush=True)
        try:
            seconds = execute(source, target(source, out_dir, flat), profile)
        except NotebookError as err:
            print(f"      {err}", flush=True)
            failures.append(err.failure)
            continue
        print(f"      done in {seconds:.1f} s", flush=True)
        record_runtime(runtimes_file, rel, {"seconds": round(seconds, 1), "profile": profile,
                                            "threads": os.environ.get("OMP_NUM_THREADS"),
                                            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps([asdict(f) for f in failures], indent=1))
    if failures:
        raise RunFailed(failures)
    record = json.loads(runtimes_file.read_text()) if runtimes_file.is_file() else {"notebooks": {}}
    return {k: v["seconds"] for k, v in record["notebooks"].items()}


def record_runtime(runtimes_file: Path, notebook: str, entry: dict) -> None:
    """Add one notebook's time to ``runtimes_file`` (read-modify-write under an exclusive lock, so runners of
    different chapters may execute concurrently into one output folder)."""
    import fcntl

    runtimes_file.parent.mkdir(parents=True, exist_ok=True)
    with open(runtimes_file.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = json.loads(runtimes_file.read_text()) if runtimes_file.is_file() else {}
        record.setdefault("notebooks", {})[notebook] = entry
        record["machine"] = {"platform": platform.platform(), "processor": platform.processor(),
                             "cpu_count": os.cpu_count(), "python": platform.python_version()}
        tmp = runtimes_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        os.replace(tmp, runtimes_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m domaingap.runner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="execute notebooks at a profile")
    p_run.add_argument("--profile", default="default", choices=PROFILES)
    p_run.add_argument("--out", type=Path, default=paths.executed_dir())
    p_run.add_argument("notebooks", nargs="*", help="substrings selecting notebooks (default: all)")
    p_run.add_argument("--jobs", type=int, default=1,
                       help="chapters run at a time, each in its own process (default 1: one notebook at a time)")
    p_run.add_argument("--notebooks-dir", type=Path, default=None,
                       help="folder of the notebook sources (default: notebooks/; for tests)")
    p_run.add_argument("--report", type=Path, default=None,
                       help="also write the failures as JSON to this file (used by --jobs N for its chapters)")
    p_refs = sub.add_parser("refs", help="regenerate the nbval reference notebooks (ci profile)")
    p_refs.add_argument("notebooks", nargs="*")
    sub.add_parser("check-refs", help="fail if an nbval reference is missing or out of date")
    p_asm = sub.add_parser("assemble-refs", help="copy book/ with the ci-profile references as its executed notebooks")
    p_asm.add_argument("--book-dir", type=Path, default=paths.REPO_ROOT / "build" / "ci-book")
    args = parser.parse_args(argv)
    if args.cmd == "run" and args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    try:
        return _command(args)
    except RunnerError as err:
        print(f"\n{err}", file=sys.stderr, flush=True)
        return 1


def _command(args) -> int:
    """Carry out a parsed command line; :class:`RunnerError` on failure."""
    if args.cmd == "run":
        if args.notebooks_dir is not None:
            paths.NOTEBOOKS_DIR = args.notebooks_dir.resolve()
        if args.jobs == 1:
            run(args.profile, args.out.resolve(), args.notebooks, report=args.report)
        else:
            from .runner_jobs import run_parallel

            run_parallel(args.profile, args.out.resolve(), args.notebooks, args.jobs)
    elif args.cmd == "refs":
        try:
            run("ci", REFS_DIR, args.notebooks, flat=True)
        finally:
            # machine-specific, so not part of the references; kept for the README's runtime table
            if (REFS_DIR / RUNTIMES).is_file():
                (paths.REPO_ROOT / "build").mkdir(exist_ok=True)
                os.replace(REFS_DIR / RUNTIMES, paths.REPO_ROOT / "build" / "ci_runtimes.json")
    elif args.cmd == "assemble-refs":
        from .refs import assemble_refs

        assemble_refs(args.book_dir.resolve())
    else:
        from .refs import stale_refs

        problems = stale_refs()
        for p in problems:
            print(p)
        if problems:
            print("regenerate with: make refs")
            return 1
        print("nbval references are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
