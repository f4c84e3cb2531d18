"""``domaingap book``: the whole book at a profile, the steps of ``make book`` in one command.

    domaingap book [--profile ci|default|paper] [--jobs N] [--executor E] [--no-html]
    domaingap book --html-only BOOK_DIR      # step 4 alone, on an assembled book folder (make book-check)

1. ``domaingap data check``: what is present, what will be downloaded, what cannot be had (stops only on a
   file that fails its checksum);
2. every chapter's runs at the profile as one graph (``domaingap run``, :mod:`domaingap.chapters.cli`), with
   ``--jobs`` worker processes unless ``--executor`` says otherwise;
3. every notebook with papermill (:mod:`domaingap.runner`; they only load, plot and record), ``--jobs``
   chapters at a time;
4. the strict HTML build with Jupyter Book (``book/_build/html/index.html``), unless ``--no-html``.

Each step is the existing command, called as it is: one implementation, whichever way the book is built. The
book's sources (``notebooks/``, ``book/``) live in the repository, so this command needs a checkout.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["add_book", "run_book", "html_build_command"]


def add_book(p: argparse.ArgumentParser) -> None:
    from .profiles import PROFILES

    p.add_argument("--profile", default="default", choices=PROFILES,
                   help="ci (a smoke build in minutes, not results), default (the book, on a CPU), paper (a GPU)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs computed at a time (worker processes) and chapters executed at a time (default 1)")
    p.add_argument("--executor", default=None,
                   help="where the runs are computed (default: process:JOBS, or sequential for one job; "
                        "also dask[:ADDRESS] | slurm)")
    p.add_argument("--no-html", action="store_true", help="stop after the notebooks (no Jupyter Book build)")
    p.add_argument("--html-only", metavar="BOOK_DIR", default=None,
                   help="only the strict HTML build, of BOOK_DIR (e.g. the nbval references assembled by "
                        "`python -m domaingap.runner assemble-refs --book-dir build/ci-book`)")


def html_build_command(book_dir: Path, config: Path) -> list[str]:
    """The strict Jupyter Book build of ``book_dir`` (warnings are errors, every broken reference reported)."""
    exe = Path(sys.executable).with_name("jupyter-book")
    program = str(exe) if exe.is_file() else (shutil.which("jupyter-book") or "jupyter-book")
    return [program, "build", str(book_dir), "--config", str(config), "--path-output", str(book_dir),
            "-W", "-n", "--keep-going"]


def run_book(args: argparse.Namespace) -> int:
    from . import paths
    from .chapters.cli import main as chapters_main
    from .cli_data import check as data_check
    from .runner import main as runner_main

    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    if not paths.IN_CHECKOUT:
        raise ValueError(f"the book's sources (notebooks/, book/) are not part of an installed package (this one is "
                         f"at {paths.REPO_ROOT}); clone the repository and run `domaingap book` (or `make book`) "
                         f"there")
    config = paths.REPO_ROOT / "_config.yml"
    if args.html_only is not None:
        book_dir = Path(args.html_only).resolve()
        if not (book_dir / "_toc.yml").is_file():
            raise ValueError(f"--html-only needs an assembled book folder with a _toc.yml, got {book_dir}")
        return subprocess.run(html_build_command(book_dir, config), cwd=paths.REPO_ROOT).returncode
    executor = args.executor or ("sequential" if args.jobs == 1 else f"process:{args.jobs}")
    steps = [
        ("data check", lambda: data_check(argparse.Namespace(names=[]))),
        ("runs", lambda: chapters_main(None, ["--profile", args.profile, "--executor", executor])),
        ("notebooks", lambda: runner_main(["run", "--profile", args.profile, "--out", str(paths.executed_dir()),
                                            "--jobs", str(args.jobs)])),
    ]
    if not args.no_html:
        book_dir = paths.REPO_ROOT / "book"
        command = html_build_command(book_dir, config)
        steps.append(("HTML", lambda: subprocess.run(command, cwd=paths.REPO_ROOT).returncode))
    for name, step in steps:
        print(f"== domaingap book ({args.profile}): {name}", flush=True)
        status = step()
        if status:
            print(f"domaingap book: the {name} step failed (exit status {status}); later steps not run",
                  file=sys.stderr)
            return status
    if not args.no_html:
        print(f"HTML book: {paths.REPO_ROOT / 'book' / '_build' / 'html' / 'index.html'}")
    return 0

