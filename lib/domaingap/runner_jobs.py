"""``python -m domaingap.runner run --jobs N``: several chapters' notebooks at a time, each chapter in its own
runner process, the summary last (see :mod:`domaingap.runner`)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from . import paths
from .profiles import PROFILES
from .runner import RUNTIMES, Failure, RunFailed, SelectionError, display, sources

__all__ = ["chapter", "run_parallel"]


def chapter(source: Path) -> str:
    """The chapter folder of a notebook source (``p1``, ``summary``, ...)."""
    return source.relative_to(paths.NOTEBOOKS_DIR).parts[0]


def run_parallel(profile: str, out_dir: Path, selection: list[str] | None, jobs: int) -> None:
    """Run the selected notebooks with up to ``jobs`` chapters at a time, each chapter in its own runner process
    (its notebooks in order, as :func:`run` does); ``summary/`` runs last, after every chapter has recorded its
    claims, also when a chapter failed. Each process gets ``cpu_count // jobs`` OpenMP threads unless
    ``OMP_NUM_THREADS`` is set. Chapters with the longest recorded run time start first. Raises
    :class:`RunFailed` at the end listing the failures of every chapter."""
    import subprocess

    if profile not in PROFILES:
        raise SelectionError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    todo = sources(selection)
    groups: dict[str, list[Path]] = {}
    for source in todo:
        groups.setdefault(chapter(source), []).append(source)
    last = groups.pop("summary", None)
    runtimes_file = out_dir / RUNTIMES
    known = json.loads(runtimes_file.read_text()).get("notebooks", {}) if runtimes_file.is_file() else {}

    def recorded(name: str) -> float:
        return sum(known.get(display(s), {}).get("seconds", 0.0) for s in groups[name])

    order = sorted(groups, key=lambda name: (-recorded(name), name))
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    print(f"{len(todo)} notebooks in {len(order)} chapters, {jobs} at a time "
          f"(OMP_NUM_THREADS={env['OMP_NUM_THREADS']}); summary last", flush=True)

    with tempfile.TemporaryDirectory(prefix="domaingap-runner-") as tmp:
        def command(name: str, group: list[Path]) -> list[str]:
            return [sys.executable, "-m", "domaingap.runner", "run", "--profile", profile, "--out", str(out_dir),
                    "--notebooks-dir", str(paths.NOTEBOOKS_DIR), "--report", str(Path(tmp) / f"{name}.json"),
                    *["/" + s.relative_to(paths.NOTEBOOKS_DIR).as_posix() for s in group]]

        failures: list[Failure] = []

        def collect(name: str, returncode: int) -> None:
            report = Path(tmp) / f"{name}.json"
            found = [Failure(**f) for f in json.loads(report.read_text())] if report.is_file() else []
            failures.extend(found)
            if returncode and not found:
                failures.append(Failure(f"{display(paths.NOTEBOOKS_DIR / name)}/", profile,
                                        f"the chapter's runner process exited with status {returncode} "
                                        f"(see its messages above)"))

        running: dict[str, subprocess.Popen] = {}
        pending = list(order)
        try:
            while pending or running:
                while pending and len(running) < jobs:
                    name = pending.pop(0)
                    print(f"start {name}/", flush=True)
                    running[name] = subprocess.Popen(command(name, groups[name]), env=env)
                time.sleep(0.5)
                for name, proc in list(running.items()):
                    if proc.poll() is not None:
                        del running[name]
                        print(f"{'done' if proc.returncode == 0 else 'FAILED'} {name}/", flush=True)
                        collect(name, proc.returncode)
            if last:
                if failures:
                    print(f"{len(failures)} notebook(s) failed; running summary/ anyway (it shows what was "
                          f"computed); the run still fails", flush=True)
                print("start summary/", flush=True)
                collect("summary", subprocess.run(command("summary", last), env=env).returncode)
        finally:
            for proc in running.values():  # interrupted: stop the chapters still running
                proc.terminate()
    if failures:
        raise RunFailed(failures)
