"""The book's GPU check: one prepared script for a short session on one H100/H200 (goal: <= 8 minutes).

    python benchmarks/gpu_check.py                 # on the GPU machine (DOMAINGAP_DATA: where the datasets are)
    python benchmarks/gpu_check.py --smoke         # anywhere: tiny sizes on the CPU, to check the script itself

It times, each step on its own and each failure recorded without stopping the others:

1. ``kernels``: the P1 geometry kernels on MNIST's 60,000 training images (D = 784): exact 20-NN
   (``distances.knn``), exact K_F over the 10 classes (``sharpness.label_sharpness``) and the estimator
   multiverse (``intrinsic_dim.estimate_all``: MLE at k = 5..50 and TwoNN from one kNN pass);
2. ``p1_fig1_geometry``: P1's Fig. 1 geometry at the ``paper`` profile (224 x 224 px) for every task of every P1
   dataset: the book's own ``p1_geometry`` runs on the whole training pool (``n = "full"``), computed through the
   run graph into a throw-away store (goal: all of them in < 60 s);
3. ``paper_training``: one ``paper``-profile training run per chapter (P1: the first model of the ``train``
   sweep; P2: the first standard/robust model; P3: the first pretraining), the book's run functions as they are.

A dataset the machine does not have fails its step with the data layer's message (which file, where to get it);
the others go on. ``--smoke`` runs the same code at the ``ci`` profile with N = 2,000 kernel images on the CPU.

Results: ``benchmarks/results/gpu_check_<device-tag>.json`` (``--smoke``: ``benchmarks/results/quick/``, which
the performance appendix does not read), written atomically: ``meta`` (device, versions, date, load) and ``cases``
(one row per step and item: seconds, what it computed, or the error). Never part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_geometry import load  # noqa: E402  (the benchmark's data loader)
from harness import device_tag  # noqa: E402

from domaingap import runs  # noqa: E402
from domaingap.chapters import sweeps  # noqa: E402
from domaingap.kernels import distances, intrinsic_dim, sharpness  # noqa: E402

KS = range(5, 51)
TRAINING_SWEEPS = {"p1": "train", "p2": "models", "p3": "pretrain"}  # chapter -> its first training sweep


def timed(fn, device: torch.device):
    """(seconds, value) of one call, synchronised on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    value = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, value


def error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:400]


def kernels(n: int, device: torch.device) -> list[dict]:
    x_np, y_np, src = load("mnist", n)
    x, y = torch.from_numpy(x_np).to(device), torch.from_numpy(y_np).to(device)
    rows = []
    for name, fn, what in [
        ("knn k=20", lambda: distances.knn(x, 20), lambda v: f"exact 20-NN of {n} images"),
        ("K_F exact", lambda: sharpness.label_sharpness(x, y, on_duplicate="inf"), lambda v: f"K_F = {v:.4g}"),
        ("multiverse", lambda: intrinsic_dim.estimate_all(x, KS, twonn=True),
         lambda v: f"MLE(k=20) = {v.mle[20]:.2f}, TwoNN = {v.twonn:.2f}"),
    ]:
        try:
            fn() if n <= 2000 else None  # warm-up (CUDA context, kernels) on the small smoke size only
            seconds, value = timed(fn, device)
            rows.append({"step": "kernels", "item": f"{name}, MNIST N={n} D=784", "seconds": seconds,
                         "result": what(value), "source": src})
        except Exception as err:  # noqa: BLE001 - record and go on
            rows.append({"step": "kernels", "item": name, "error": error_text(err)})
        print(rows[-1], flush=True)
    return rows


def compute_each(step: str, items: list, store: runs.Store, label) -> list[dict]:
    """Compute each run (and its upstream) on its own into ``store``; one row each."""
    rows = []
    for run in items:
        t0 = time.perf_counter()
        try:
            entry = runs.compute([run], store=store, progress=False)[0]
            keep = {k: v for k, v in entry.result.items() if isinstance(v, (int, float, str)) and len(str(v)) < 80}
            rows.append({"step": step, "item": label(run), "seconds": time.perf_counter() - t0,
                         "result": json.dumps(dict(list(keep.items())[:8]))})
        except Exception as err:  # noqa: BLE001 - a missing dataset fails its item only
            cause = getattr(err, "failures", None)
            text = error_text(next(iter(cause.values())) if isinstance(cause, dict) and cause else err)
            rows.append({"step": step, "item": label(run), "seconds": time.perf_counter() - t0, "error": text})
        print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="ci profile, N = 2000 kernel images, CPU: checks the script")
    ap.add_argument("--steps", default="kernels,p1_fig1_geometry,paper_training", help="comma list of steps")
    ap.add_argument("--out", default=None, help="output JSON (default benchmarks/results/gpu_check_<tag>.json)")
    args = ap.parse_args(argv)
    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    if args.smoke:
        os.environ["DOMAINGAP_DEVICE"] = "cpu"
    profile, n_kernel = ("ci", 2000) if args.smoke else ("paper", 60000)
    steps = {s.strip() for s in args.steps.split(",") if s.strip()}
    meta = {"benchmark": "GPU check (kernels at N = 60k, P1 Fig. 1 geometry at 224 px, one paper run per chapter)",
            "device": device.type, "device_name": torch.cuda.get_device_name(0) if device.type == "cuda"
            else platform.processor() or "cpu", "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "numpy": np.__version__, "profile": profile,
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "load_average_1_5_15": list(os.getloadavg()), "argv": sys.argv[1:] if argv is None else argv}
    started = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_store_") as tmp:
        store = runs.Store(Path(tmp))  # throw-away: times what computing costs, not what a cache returns
        if "kernels" in steps:
            rows += kernels(n_kernel, device)
        if "p1_fig1_geometry" in steps:
            try:
                full = [r for r in sweeps("p1", profile)["geometry"] if r.spec["n"] == "full"]
            except Exception as err:  # noqa: BLE001 - e.g. a dataset the P1 task list needs is missing
                full = []
                rows.append({"step": "p1_fig1_geometry", "item": "task list", "error": error_text(err)})
            rows += compute_each("p1_fig1_geometry", full, store, lambda r: f"{r.spec['task']} full pool")
            geometry = [r["seconds"] for r in rows if r["step"] == "p1_fig1_geometry" and "error" not in r]
            rows.append({"step": "p1_fig1_geometry", "item": f"all {len(geometry)} computed tasks",
                         "seconds": sum(geometry), "result": f"{len(full) - len(geometry)} failed"})
        if "paper_training" in steps:
            for chapter, sweep in TRAINING_SWEEPS.items():
                try:
                    first = sweeps(chapter, profile)[sweep][:1]
                except Exception as err:  # noqa: BLE001
                    rows.append({"step": "paper_training", "item": f"{chapter} {sweep}", "error": error_text(err)})
                    print(rows[-1], flush=True)
                    continue
                rows += compute_each("paper_training", first, store, lambda r, c=chapter: f"{c} {r.kind.name}")
    meta["total_s"] = time.perf_counter() - started
    meta["load_average_1_5_15_end"] = list(os.getloadavg())
    out = Path(args.out) if args.out else (REPO / "benchmarks" / "results" / ("quick" if args.smoke else "")
                                             / f"gpu_check_{device_tag(device)}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps({"meta": meta, "cases": rows}, indent=1, default=str))
    os.replace(tmp_out, out)
    failed = [r for r in rows if "error" in r]
    print(f"\ntotal {meta['total_s']:.1f} s; {len(rows)} rows, {len(failed)} failed; wrote {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001 - the one prepared script must say what broke
        traceback.print_exc()
        sys.exit(1)
