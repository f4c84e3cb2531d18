"""Time the whole book from an empty store: `domaingap book` with a fresh artefact store and decode cache.

    python benchmarks/time_book.py [--profile default] [--jobs 2] [--root build/book-timing]

Runs ``domaingap book --profile P --jobs J`` (data check, every run, every notebook, the strict HTML build) with
``DOMAINGAP_ARTEFACTS`` and ``DOMAINGAP_CACHE`` pointed at empty folders under ``--root``, so nothing is reused:
every dataset is decoded and every run computed. Records the wall time of each step (from the moment its
``== domaingap book`` header appears), the runs the store then holds with their summed compute seconds per kind,
the machine, the load average before and after, and the commit. Writes
``benchmarks/results/book_<profile>_cpu-<cores>core.json`` atomically; the performance appendix shows it.

Leave the machine otherwise idle while it runs: the point is the wall time of the book on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from harness import machine_meta  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
TARGET_MIN = {"default": 45.0}  # issue 17: the default book from an empty store in <= 45 min on 2 cores
HEADER = "== domaingap book ("


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _store_summary(root: Path) -> dict[str, dict]:
    """Runs per kind in the store at ``root`` and their summed compute seconds (``record.json``'s
    ``computed.seconds``, written by :class:`domaingap.runs.Store`)."""
    kinds: dict[str, dict] = {}
    for rec in sorted(root.glob("*/*/record.json")):
        record = json.loads(rec.read_text())
        k = kinds.setdefault(record["kind"], {"runs": 0, "compute_s": 0.0})
        k["runs"] += 1
        k["compute_s"] += float((record.get("computed") or {}).get("seconds") or 0.0)
    return kinds


def time_steps(command: list[str], env: dict, log_path: Path) -> tuple[int, float, list[dict]]:
    """Run ``command``, echoing and logging its output (with seconds since the start); returns its exit status,
    its wall seconds and its steps: ``{step, start_s, wall_s}``, one per ``== domaingap book (...): STEP`` header
    line, each lasting until the next header or the end."""
    steps: list[dict] = []
    t0 = time.perf_counter()
    with open(log_path, "w") as log, subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                                      stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        for line in proc.stdout:
            now = time.perf_counter() - t0
            sys.stdout.write(line)
            log.write(f"{now:9.1f} {line}")
            if line.startswith(HEADER):
                if steps:
                    steps[-1]["wall_s"] = now - steps[-1]["start_s"]
                steps.append({"step": line.split("):", 1)[-1].strip(), "start_s": now})
        status = proc.wait()
    wall = time.perf_counter() - t0
    if steps:
        steps[-1]["wall_s"] = wall - steps[-1]["start_s"]
    return status, wall, steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="default", choices=("ci", "default", "paper"))
    ap.add_argument("--jobs", type=int, default=2, help="worker processes and chapters at a time (default 2)")
    ap.add_argument("--root", type=Path, default=REPO / "build" / "book-timing",
                    help="folder for the empty store (artefacts/) and decode cache (decoded/); must not hold them")
    args = ap.parse_args(argv)
    store, cache = args.root.resolve() / "artefacts", args.root.resolve() / "decoded"
    for folder in (store, cache):
        if folder.exists() and any(folder.iterdir()):
            raise SystemExit(f"{folder} is not empty: the book must be timed from an empty store and cache "
                             f"(remove it, or pass another --root)")
        folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DOMAINGAP_ARTEFACTS": str(store), "DOMAINGAP_CACHE": str(cache)}
    exe = Path(sys.executable).with_name("domaingap")
    command = [str(exe) if exe.is_file() else "domaingap", "book", "--profile", args.profile,
               "--jobs", str(args.jobs)]
    log_path = args.root.resolve() / f"book_{args.profile}.log"
    load_start = list(os.getloadavg())
    # the code that is timed: the commit at the start (the tree may move on while the book builds)
    commit, dirty = _git("rev-parse", "HEAD"), _git("status", "--porcelain", "--untracked-files=no") != ""
    status, wall, steps = time_steps(command, env, log_path)
    kinds = _store_summary(store)
    target = TARGET_MIN.get(args.profile)
    record = {
        "meta": machine_meta(f"the {args.profile} book from an empty store", torch.device("cpu"), argv,
                             jobs=args.jobs, load_average_1_5_15=load_start,
                             load_average_1_5_15_end=list(os.getloadavg()), commit=commit,
                             uncommitted_changes=dirty, command=" ".join(command[1:])),
        "book": {"profile": args.profile, "exit_status": status, "wall_s": wall, "wall_min": wall / 60,
                 "target_min": target, "within_target": None if target is None else bool(wall / 60 <= target),
                 "steps": steps,
                 "runs": {k: {"runs": v["runs"], "compute_min": v["compute_s"] / 60} for k, v in kinds.items()},
                 "compute_core_min": sum(v["compute_s"] for v in kinds.values()) / 60},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"book_{args.profile}_cpu-{os.cpu_count()}core.json"
    with tempfile.NamedTemporaryFile("w", dir=OUT, suffix=".tmp", delete=False) as fh:
        json.dump(record, fh, indent=1)
    os.replace(fh.name, out)
    print(f"book ({args.profile}, {args.jobs} jobs) from an empty store: {wall / 60:.1f} min wall, exit status "
          f"{status}; {record['book']['compute_core_min']:.1f} core-min of runs -> {out}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
