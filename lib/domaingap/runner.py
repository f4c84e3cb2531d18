"""Execute the book's notebooks with papermill at a profile.

The notebooks are jupytext MyST markdown sources under ``notebooks/``; ``.ipynb`` files are build products.

    python -m domaingap.runner run --profile default            # -> book/executed/<chapter>/<name>.ipynb
    python -m domaingap.runner run --profile default --jobs 2   # two chapters at a time, one core each
    python -m domaingap.runner refs                             # -> tests/notebooks/<chapter>__<name>.ipynb (ci)
    python -m domaingap.runner check-refs                       # are the nbval references current?

A failing cell stops the run with a non-zero exit naming the notebook and the cell. Per-notebook run times are
written to ``<out>/_runtimes.json`` for the book's provenance page.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from . import paths
from .profiles import PROFILES

KERNEL = "python3"
RUNTIMES = "_runtimes.json"
RUNTIMES_ENV = "DOMAINGAP_RUNTIMES"  # set for the kernels: where this run records per-notebook times
REFS_DIR = paths.TESTS_DIR / "notebooks"


def run_order(path: Path) -> tuple:
    """Execution order: chapters alphabetically, each chapter's claims page after its notebooks (it reads the
    claims they record), and the book-wide ``summary/`` folder last."""
    rel = path.relative_to(paths.NOTEBOOKS_DIR) if path.is_relative_to(paths.NOTEBOOKS_DIR) else path
    chapter = rel.parts[0] if len(rel.parts) > 1 else ""
    return (chapter == "summary", chapter, path.stem.endswith("claims"), path.stem)


def sources(selection: list[str] | None = None) -> list[Path]:
    """MyST notebook sources under ``notebooks/`` (those with a jupytext header), in run order, optionally
    filtered by substring."""
    found = []
    for path in sorted(paths.NOTEBOOKS_DIR.rglob("*.md"), key=run_order):
        head = path.read_text(encoding="utf-8")[:400]
        if "jupytext:" in head and "kernelspec:" in head:
            found.append(path)
    if selection:
        found = [p for p in found if any(s in str(p.relative_to(paths.NOTEBOOKS_DIR)) for s in selection)]
        if not found:
            raise SystemExit(f"no notebook under {paths.NOTEBOOKS_DIR} matches {selection}")
    return found


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


def execute(source: Path, output: Path, profile: str) -> float:
    """Run one notebook with papermill at ``profile``; returns wall seconds. Writes ``output`` atomically."""
    import nbformat
    import papermill as pm

    nb = to_notebook(source)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise SystemExit(f"{source}: no cell tagged 'parameters' (papermill needs one to inject `profile`)")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src_nb = Path(tmp) / output.name
        nbformat.write(nb, src_nb)
        tmp_out = output.with_name(output.stem + ".tmp.ipynb")
        start = time.perf_counter()
        try:
            pm.execute_notebook(str(src_nb), str(tmp_out), parameters={"profile": profile}, kernel_name=KERNEL,
                                cwd=str(paths.REPO_ROOT), progress_bar=False, log_output=False)
        except pm.PapermillExecutionError as err:
            raise SystemExit(f"FAILED {source.relative_to(paths.REPO_ROOT)} at profile {profile!r}: "
                             f"cell {err.exec_count} raised {err.ename}: {err.evalue}\n"
                             f"(the partly executed notebook is {tmp_out})") from None
        seconds = time.perf_counter() - start
        os.replace(tmp_out, output)
    return seconds


def run(profile: str, out_dir: Path, selection: list[str] | None = None, flat: bool = False) -> dict[str, float]:
    """Execute every selected notebook; returns and records ``{source: seconds}``."""
    if profile not in PROFILES:
        raise SystemExit(f"unknown profile {profile!r}; expected one of {PROFILES}")
    runtimes_file = out_dir / RUNTIMES
    # The provenance page (run last) reads the times of the notebooks run before it from this file.
    os.environ[RUNTIMES_ENV] = str(runtimes_file)
    todo = sources(selection)
    for i, source in enumerate(todo, 1):
        rel = str(source.relative_to(paths.REPO_ROOT))
        print(f"[{i}/{len(todo)}] {rel} (profile={profile}) ...", flush=True)
        seconds = execute(source, target(source, out_dir, flat), profile)
        print(f"      done in {seconds:.1f} s", flush=True)
        record_runtime(runtimes_file, rel, {"seconds": round(seconds, 1), "profile": profile,
                                            "threads": os.environ.get("OMP_NUM_THREADS"),
                                            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    record = json.loads(runtimes_file.read_text()) if runtimes_file.is_file() else {"notebooks": {}}
    return {k: v["seconds"] for k, v in record["notebooks"].items()}


def chapter(source: Path) -> str:
    """The chapter folder of a notebook source (``p1``, ``summary``, ...)."""
    return source.relative_to(paths.NOTEBOOKS_DIR).parts[0]


def run_parallel(profile: str, out_dir: Path, selection: list[str] | None, jobs: int) -> None:
    """Run the selected notebooks with up to ``jobs`` chapters at a time, each chapter in its own runner process
    (its notebooks in order, as :func:`run` does); ``summary/`` runs last, after every chapter has recorded its
    claims. Each process gets ``cpu_count // jobs`` OpenMP threads unless ``OMP_NUM_THREADS`` is set. Chapters
    with the longest recorded run time start first. Exits non-zero naming the chapters that failed."""
    import subprocess

    todo = sources(selection)
    groups: dict[str, list[Path]] = {}
    for source in todo:
        groups.setdefault(chapter(source), []).append(source)
    last = groups.pop("summary", None)
    runtimes_file = out_dir / RUNTIMES
    known = json.loads(runtimes_file.read_text()).get("notebooks", {}) if runtimes_file.is_file() else {}

    def recorded(name: str) -> float:
        return sum(known.get(str(s.relative_to(paths.REPO_ROOT)), {}).get("seconds", 0.0) for s in groups[name])

    order = sorted(groups, key=lambda name: (-recorded(name), name))
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    print(f"{len(todo)} notebooks in {len(order)} chapters, {jobs} at a time "
          f"(OMP_NUM_THREADS={env['OMP_NUM_THREADS']}); summary last", flush=True)

    def command(group: list[Path]) -> list[str]:
        return [sys.executable, "-m", "domaingap.runner", "run", "--profile", profile, "--out", str(out_dir),
                *[str(s.relative_to(paths.NOTEBOOKS_DIR)) for s in group]]

    running: dict[str, subprocess.Popen] = {}
    failed: list[str] = []
    pending = list(order)
    while pending or running:
        while pending and len(running) < jobs:
            name = pending.pop(0)
            print(f"start {name}/", flush=True)
            running[name] = subprocess.Popen(command(groups[name]), env=env)
        time.sleep(1.0)
        for name, proc in list(running.items()):
            if proc.poll() is not None:
                del running[name]
                print(f"{'done' if proc.returncode == 0 else 'FAILED'} {name}/", flush=True)
                if proc.returncode:
                    failed.append(name)
    if failed:
        raise SystemExit(f"notebooks failed in chapter(s) {', '.join(failed)} (see the messages above)")
    if last:
        subprocess.run(command(last), env=env, check=True)


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


def stale_refs() -> list[str]:
    """Problems with the nbval references: missing, orphaned, or code differing from the MyST source."""
    import nbformat

    problems = []
    expected = {target(s, REFS_DIR, flat=True): s for s in sources()}
    for ref, source in expected.items():
        if not ref.is_file():
            problems.append(f"{ref.relative_to(paths.REPO_ROOT)} is missing")
            continue
        if code_cells(nbformat.read(ref, as_version=4)) != code_cells(to_notebook(source)):
            problems.append(f"{ref.relative_to(paths.REPO_ROOT)} differs from {source.relative_to(paths.REPO_ROOT)}")
    for ref in REFS_DIR.glob("*.ipynb"):
        if ref not in expected and not ref.name.endswith(".tmp.ipynb"):
            problems.append(f"{ref.relative_to(paths.REPO_ROOT)} has no source under notebooks/")
    return problems


def assemble_refs(book_dir: Path) -> None:
    """Make ``book_dir`` a copy of book/ whose executed notebooks are the ci-profile references, so the HTML book
    can be built and browser-checked in CI without running every notebook a second time (and without touching a
    default-profile build in book/)."""
    import shutil

    problems = stale_refs()
    if problems:
        raise SystemExit("nbval references are out of date:\n" + "\n".join(problems))
    if book_dir.exists():
        shutil.rmtree(book_dir)
    shutil.copytree(paths.BOOK_DIR, book_dir, ignore=shutil.ignore_patterns("_build", "executed"))
    out_dir = book_dir / "executed"
    for source in sources():
        dest = target(source, out_dir, flat=False)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target(source, REFS_DIR, flat=True), dest)
    print(f"assembled {len(sources())} executed ci-profile notebooks into {out_dir}")


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
    p_refs = sub.add_parser("refs", help="regenerate the nbval reference notebooks (ci profile)")
    p_refs.add_argument("notebooks", nargs="*")
    sub.add_parser("check-refs", help="fail if an nbval reference is missing or out of date")
    p_asm = sub.add_parser("assemble-refs", help="copy book/ with the ci-profile references as its executed notebooks")
    p_asm.add_argument("--book-dir", type=Path, default=paths.REPO_ROOT / "build" / "ci-book")
    args = parser.parse_args(argv)
    if args.cmd == "run":
        if args.jobs < 1:
            parser.error(f"--jobs must be >= 1, got {args.jobs}")
        if args.jobs == 1:
            run(args.profile, args.out.resolve(), args.notebooks)
        else:
            run_parallel(args.profile, args.out.resolve(), args.notebooks, args.jobs)
    elif args.cmd == "refs":
        run("ci", REFS_DIR, args.notebooks, flat=True)
        # machine-specific, so not part of the references; kept for the README's runtime table
        if (REFS_DIR / RUNTIMES).is_file():
            (paths.REPO_ROOT / "build").mkdir(exist_ok=True)
            os.replace(REFS_DIR / RUNTIMES, paths.REPO_ROOT / "build" / "ci_runtimes.json")
    elif args.cmd == "assemble-refs":
        assemble_refs(args.book_dir.resolve())
    else:
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
