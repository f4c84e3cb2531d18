"""One command shape for every chapter: compute its sweeps at a profile, without the notebooks.

    python -m domaingap.chapters.p1 --profile default                 # every sweep of P1
    python -m domaingap.chapters.p2 --profile ci --only models,tab2   # some sweeps
    python -m domaingap.chapters.p3 --profile paper --list            # what would run, and what is cached
    python -m domaingap.chapters --profile default --executor process:2   # all chapters as one graph

Results go to the artefact store (``$DOMAINGAP_ARTEFACTS``), where the notebooks find them. The executor is
``--executor`` or ``$DOMAINGAP_EXECUTOR`` (:mod:`domaingap.runs.executors`); CUDA is used when available.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .. import profiles, runs
from . import CHAPTERS, chapter, sweeps

log = logging.getLogger(__name__)


def select(chapters: Sequence[str], profile: str, only: Sequence[str] = ()) -> list[runs.Run]:
    """The runs of ``chapters`` at ``profile`` (optionally only the sweeps named in ``only``), each key once."""
    # check the names before building any spec (that loads the chapters' data)
    known = {s for name in chapters for s in chapter(name).specs.SWEEPS}
    unknown = [s for s in only if s not in known]
    if unknown:
        raise ValueError(f"unknown sweep(s) {unknown} for {', '.join(chapters)}; the sweeps are {sorted(known)}")
    chosen: dict[str, runs.Run] = {}
    for name in chapters:
        made = sweeps(name, profile)
        if set(made) != set(chapter(name).specs.SWEEPS):
            raise RuntimeError(f"{name}.specs.SWEEPS {chapter(name).specs.SWEEPS} != the sweeps it builds {list(made)}")
        for sweep, items in made.items():
            if only and sweep not in only:
                continue
            for run in items:
                chosen.setdefault(run.key, run)
    return list(chosen.values())


def compute_time(entries: list) -> str:
    """", 12.3 min computing" for the cached entries that recorded their compute time (one thread each, so the
    minutes of one core), and how many did not (entries written before the store recorded it)."""
    seconds = [e.record["computed"]["seconds"] for e in entries if "computed" in e.record]
    if not seconds:
        return ""
    missing = len(entries) - len(seconds)
    return f", {sum(seconds) / 60:.1f} min computing" + (f" ({missing} without a recorded time)" if missing else "")


def main(chapter: str | None = None, argv: list[str] | None = None) -> int:
    prog = f"python -m domaingap.chapters{'.' + chapter if chapter else ''}"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="default", choices=profiles.PROFILES)
    parser.add_argument("--only", default="", help="comma-separated sweep names (default: all)")
    parser.add_argument("--executor", default=None, help="sequential | process:N | dask[:ADDRESS] | slurm")
    parser.add_argument("--list", action="store_true", help="list the sweeps and how many runs are cached")
    if chapter is None:
        parser.add_argument("--chapters", default=",".join(CHAPTERS), help="comma-separated chapters")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    names = [chapter] if chapter else [c.strip() for c in args.chapters.split(",") if c.strip()]
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    try:
        wanted = select(names, args.profile, only)
    except ValueError as err:
        parser.error(str(err))
    if args.list:
        store = runs.Store()
        for name in names:
            for sweep, items in sweeps(name, args.profile).items():
                entries = [e for e in (store.lookup(r.kind.name, r.key) for r in items) if e is not None]
                print(f"{name} {sweep}: {len(items)} runs, {len(entries)} cached{compute_time(entries)}")
        return 0
    try:
        runs.compute(wanted, executor=args.executor, desc=f"{'+'.join(names)} at {args.profile}")
    except runs.RunsFailed as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{len(wanted)} runs of {', '.join(names)} at profile {args.profile!r} are in {runs.Store().root}")
    return 0
