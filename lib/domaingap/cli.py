"""The ``domaingap`` command line (also ``python -m domaingap.cli``).

    domaingap measure PATH [--size 28|64|224] [--gray] [--task a,b] [--device auto|cpu|cuda] [--out DIR] [--n N]
    domaingap data list | check [NAME ...] | fetch NAME ... [--release PX]
    domaingap run [--profile ci|default|paper] [--chapter p1[,p2,p3]] [--only SWEEPS] [--executor E] [--list]
    domaingap book [--profile ci|default|paper] [--jobs N] [--executor E] [--no-html]

``measure``: P1's intrinsic dataset properties (d_data by MLE and TwoNN, exact label sharpness K_F, duplicates) of
an ImageFolder directory, a MedMNIST-layout ``.npz`` or a registered dataset, beside the book's datasets at the same
format and n; writes ``DIR/report.md`` with figures (:mod:`domaingap.measure`).

``data``: the dataset registry: list it, check the files and their checksums, fetch from the publishers
(:mod:`domaingap.cli_data`). ``run``: compute the chapters' sweeps into the artefact store, the same command as
``python -m domaingap.chapters`` (:mod:`domaingap.chapters.cli`, which it calls). ``book``: data check, runs,
notebooks and the strict HTML build, as ``make book`` (:mod:`domaingap.cli_book`; needs a checkout).

Each subcommand is one entry of :data:`COMMANDS`: a function adding its arguments to a sub-parser and a function
running it that returns the exit status. Library code raises; this module alone turns errors into exit codes:
0 success, 2 bad input (a ValueError or a missing file: the message says what was expected), 1 a failure while
computing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable

log = logging.getLogger("domaingap")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

__all__ = ["COMMANDS", "build_parser", "main"]


# ----------------------------------------------------------------------------------------------- measure

def _add_measure(p: argparse.ArgumentParser) -> None:
    from .measure.constants import K_VALUES, N_BOOTSTRAP, NEAR_DUPLICATE_FRACTION, REFERENCE_N, REFERENCE_SEED

    p.add_argument("path", metavar="PATH",
                   help="an ImageFolder directory (PATH/<class>/<image>), a .npz in MedMNIST's layout "
                        "(train_images, train_labels, optionally val_*/test_*), or a registered dataset name")
    p.add_argument("--size", type=int, default=None,
                   help="measure at SIZE x SIZE px (bilinear resize; 28 = MedMNIST, 64 = the mirror's sets, "
                        "224 = P1); default: the images' own size, which must then be one square size")
    p.add_argument("--gray", action="store_true",
                   help="measure one grey channel (ITU-R 601 luma), as the book's P1 chapter; default: as given "
                        "(a grey/RGB mix becomes RGB)")
    p.add_argument("--task", default=None, metavar="A,B",
                   help="keep two classes (names, or indices for names with commas), relabelled 0 and 1: P1's tasks "
                        "are binary")
    p.add_argument("--device", default="auto", help="auto (CUDA when available) | cpu | cuda[:N]")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default: ./measure-<name>); report.md, PNG figures, measurement.json")
    p.add_argument("--n", type=int, default=REFERENCE_N,
                   help=f"images of the common, class-balanced comparison with the references (default {REFERENCE_N})")
    p.add_argument("--split", default="all", help="for .npz and registered datasets: all (pooled) | train | val | test")
    p.add_argument("--references", default="all",
                   help="comma-separated registered datasets to compare with, 'all' (default) or 'none'")
    p.add_argument("--max-images", type=int, default=None,
                   help="measure a seeded random subset of at most this many images (very large datasets)")
    p.add_argument("--seed", type=int, default=REFERENCE_SEED, help="seed of subsamples, bootstrap and sampled K_F")
    p.add_argument("--bootstrap", type=int, default=N_BOOTSTRAP, help="bootstrap resamples of the d_data intervals")
    p.add_argument("--ks", default=",".join(map(str, K_VALUES)), help="MLE k-sensitivity set (20 is always included)")
    p.add_argument("--near-duplicate-fraction", type=float, default=NEAR_DUPLICATE_FRACTION,
                   help="near duplicate: nearest distinct image closer than this fraction of the median "
                        "nearest-neighbour distance")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _run_measure(args: argparse.Namespace) -> int:
    from .measure import measure_path, predictions

    refs = args.references.strip().lower()
    references = (None if refs == "all" else False if refs in ("none", "")
                  else [r.strip() for r in args.references.split(",") if r.strip()])
    try:
        ks = tuple(int(k) for k in args.ks.split(",") if k.strip())
    except ValueError:
        raise ValueError(f"--ks must be comma-separated integers such as 5,10,20,50; got {args.ks!r}") from None
    out = args.out or Path(f"measure-{Path(str(args.path).rstrip('/')).stem or 'dataset'}")
    m = measure_path(args.path, out=out, size=args.size, gray=args.gray, task=args.task, device=args.device,
                     n=args.n, split=args.split, references=references, seed=args.seed, max_images=args.max_images,
                     progress=not args.quiet, ks=ks, n_bootstrap=args.bootstrap,
                     near_duplicate_fraction=args.near_duplicate_fraction)
    g, c = m.geometry, m.common
    print(f"{m.name}: {m.n_images} images, {len(m.classes)} classes, measured at {m.size} px x {m.channels} channel(s)")
    print(f"  d_data MLE (k=20) = {g.mle.estimate:.2f} [{g.mle.low:.2f}, {g.mle.high:.2f}], "
          f"TwoNN = {g.twonn.estimate:.2f} [{g.twonn.low:.2f}, {g.twonn.high:.2f}]")
    print(f"  K_F exact = {g.k_f:.4g} (sampled, P1's estimator: {g.k_f_sampled:.4g}); at n = {m.common_n}: "
          f"K_F = {c.k_f:.4g}, d_MLE = {c.mle.estimate:.2f}")
    if g.k_f_without_conflicts is not None:
        print(f"  K_F is infinite: {g.conflicting_count} image(s) occur with two labels; without them K_F = "
              f"{g.k_f_without_conflicts:.4g}")
    print(f"  duplicates: {g.exact_duplicates} exact, {g.conflicting_count} with conflicting labels, "
          f"{g.near_duplicate_count} near pairs")
    if m.references:
        print("  " + predictions(m)["robustness"])
    for note in m.notes + m.reference_notes:
        print(f"  note: {note}")
    print(f"report: {Path(out) / 'report.md'}")
    return EXIT_OK


# ----------------------------------------------------------------------------------------------- data

def _add_data(p: argparse.ArgumentParser) -> None:
    from .cli_data import add_data

    add_data(p)


def _run_data(args: argparse.Namespace) -> int:
    from .cli_data import run_data

    return run_data(args)


# ----------------------------------------------------------------------------------------------- run

def _add_run(p: argparse.ArgumentParser) -> None:
    from .profiles import PROFILES

    p.add_argument("--profile", default="default", choices=PROFILES,
                   help="sizes of every run: ci (minutes), default (the book, on a CPU), paper (use a GPU)")
    p.add_argument("--chapter", "--chapters", dest="chapter", default=None, metavar="p1|p2|p3",
                   help="one chapter, or several comma-separated (default: every chapter, as one graph)")
    p.add_argument("--only", default="", metavar="SWEEPS", help="comma-separated sweep names (default: all)")
    p.add_argument("--executor", default=None,
                   help="sequential | process:N | dask[:ADDRESS] | slurm (default: $DOMAINGAP_EXECUTOR, else "
                        "sequential)")
    p.add_argument("--list", action="store_true", help="list the sweeps and how many runs are cached; compute nothing")


def _run_run(args: argparse.Namespace) -> int:
    """Forward to ``python -m domaingap.chapters`` (its ``main``): one command, one implementation."""
    from .chapters import CHAPTERS
    from .chapters.cli import main as chapters_main

    argv = ["--profile", args.profile]
    if args.chapter is not None:
        chosen = [c.strip() for c in args.chapter.split(",") if c.strip()]
        unknown = [c for c in chosen if c not in CHAPTERS]
        if unknown or not chosen:
            raise ValueError(f"--chapter must name chapters among {', '.join(CHAPTERS)}; got {args.chapter!r}")
        argv += ["--chapters", ",".join(chosen)]
    if args.only:
        argv += ["--only", args.only]
    if args.executor:
        argv += ["--executor", args.executor]
    if args.list:
        argv.append("--list")
    try:
        return chapters_main(None, argv)
    except SystemExit as stop:  # its parser's errors (an unknown sweep): the message is printed, keep the status
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE


# ----------------------------------------------------------------------------------------------- book

def _add_book(p: argparse.ArgumentParser) -> None:
    from .cli_book import add_book

    add_book(p)


def _run_book(args: argparse.Namespace) -> int:
    from .cli_book import run_book

    return run_book(args)


# ----------------------------------------------------------------------------------------------- the program

# name -> (help, add arguments, run); a new command is one more entry
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "measure": ("P1's intrinsic properties (d_data, K_F, duplicates) of your labelled images, beside the book's "
                "datasets", _add_measure, _run_measure),
    "data": ("the registered datasets: list them, check their files and checksums, fetch them from the publishers",
             _add_data, _run_data),
    "run": ("compute the chapters' sweeps at a profile into the artefact store (python -m domaingap.chapters)",
            _add_run, _run_run),
    "book": ("the whole book at a profile: data check, every chapter's runs, the notebooks, the HTML (make book)",
             _add_book, _run_book),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="domaingap", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, add, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add(p)
        p.set_defaults(_run=run, _command=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``domaingap`` program; returns the exit status (0 ok, 1 failure, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args._run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"domaingap {args._command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"domaingap {args._command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the one place errors become exit codes
        log.debug("failure", exc_info=True)
        print(f"domaingap {args._command}: failed: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
