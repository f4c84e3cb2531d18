"""Throughput of FGSM and PGD-10 (L-inf and L2): domaingap.kernels.attacks vs torchattacks vs a plain
hand-written torch loop, on the same model and data in one run.

Model: ResNet-18 adapted to 28x28 grayscale (``models.build_model``, 3x3 stem, no maxpool),
2 classes, random weights, eval mode (throughput does not depend on the weights). Data: uniform
noise in [0, 1] (torchattacks assumes that range). Cases are timed round-robin, ``--repeats``
times each, so that load drifting on a shared machine hits all of them alike; the median is
reported as images per second.

    python benchmarks/bench_attacks.py --device cpu --quick
    python benchmarks/bench_attacks.py --device cuda --n 4096

Writes ``benchmarks/results/attacks_<device-tag>.json`` (atomically: temp file + os.replace)
and prints one line per case.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))  # runnable without installing
from domaingap import models  # noqa: E402
from domaingap.kernels import attacks  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
EPS_LINF = 8 / 255  # CIFAR-style budgets on the [0, 1] scale
EPS_L2 = 0.5
STEPS = 10


# --------------------------------------------------------------------------- hand-written baselines


def hand_fgsm(model, x, y, eps):
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)
    return (x + eps * g.sign()).clamp(0, 1)


def hand_pgd_linf(model, x, y, eps, alpha, steps):
    xa = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        xa.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xa), y), xa)
        xa = xa.detach() + alpha * g.sign()
        xa = (x + (xa - x).clamp(-eps, eps)).clamp(0, 1)
    return xa


def hand_pgd_l2(model, x, y, eps, alpha, steps):
    d = torch.randn_like(x)
    d = d * (eps * torch.rand(len(x), 1, 1, 1, device=x.device) / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
    xa = (x + d).clamp(0, 1)
    for _ in range(steps):
        xa.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xa), y), xa)
        g = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        delta = (xa.detach() + alpha * g - x).renorm(p=2, dim=0, maxnorm=eps)
        xa = (x + delta).clamp(0, 1)
    return xa


# --------------------------------------------------------------------------- harness


def device_tag(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return "cuda-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return "cpu"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, default=None, help="images per timed pass (default 2048 cuda, 64 cpu)")
    ap.add_argument("--batch-size", type=int, default=None, help="default 256 cuda, 16 cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny run: n=16 (cpu) / 512 (cuda), 2 repeats")
    ap.add_argument("--cases", default="", help="comma-separated prefixes to keep, e.g. 'fgsm,pgd10-l2'")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but CUDA is not available")
    cpu = device.type == "cpu"
    n = args.n or ((16 if cpu else 512) if args.quick else (64 if cpu else 2048))
    bs = min(args.batch_size or (16 if cpu else 256), n)
    repeats = 2 if args.quick else args.repeats

    import torchattacks  # a peer, used only here and in tests

    torch.manual_seed(0)
    model = models.build_model("resnet18", in_channels=1, num_classes=2, image_size=28).to(device).eval()
    x_all = torch.rand(n, 1, 28, 28, device=device)
    y_all = torch.randint(0, 2, (n,), device=device)
    batches = list(zip(x_all.split(bs), y_all.split(bs)))
    alpha_linf, alpha_l2 = 2.5 * EPS_LINF / STEPS, 2.5 * EPS_L2 / STEPS

    ta_fgsm = torchattacks.FGSM(model, eps=EPS_LINF)
    ta_pgd = torchattacks.PGD(model, eps=EPS_LINF, alpha=alpha_linf, steps=STEPS, random_start=True)
    ta_pgdl2 = torchattacks.PGDL2(model, eps=EPS_L2, alpha=alpha_l2, steps=STEPS, random_start=True)
    cases = {
        "fgsm/domaingap": lambda x, y: attacks.fgsm(model, x, y, EPS_LINF),
        "fgsm/torchattacks": lambda x, y: ta_fgsm(x, y),
        "fgsm/hand": lambda x, y: hand_fgsm(model, x, y, EPS_LINF),
        "pgd10-linf/domaingap": lambda x, y: attacks.pgd(model, x, y, EPS_LINF, steps=STEPS, step_size=alpha_linf),
        "pgd10-linf/torchattacks": lambda x, y: ta_pgd(x, y),
        "pgd10-linf/hand": lambda x, y: hand_pgd_linf(model, x, y, EPS_LINF, alpha_linf, STEPS),
        "pgd10-l2/domaingap": lambda x, y: attacks.pgd(model, x, y, EPS_L2, steps=STEPS, step_size=alpha_l2, norm="l2"),
        "pgd10-l2/torchattacks": lambda x, y: ta_pgdl2(x, y),
        "pgd10-l2/hand": lambda x, y: hand_pgd_l2(model, x, y, EPS_L2, alpha_l2, STEPS),
    }

    if args.cases:
        keep = tuple(c.strip() for c in args.cases.split(",") if c.strip())
        cases = {k: v for k, v in cases.items() if k.startswith(keep)}
        if not cases:
            ap.error(f"--cases {args.cases!r} matches no case")

    # warm-up: one batch per case (cuDNN autotuning, allocator, lazy imports)
    for fn in cases.values():
        fn(*batches[0])
    sync(device)

    times: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    for r in range(repeats):
        # round-robin, rotated each repeat: no case is always first (after another's frees)
        for name in names[r % len(names):] + names[: r % len(names)]:
            fn = cases[name]
            sync(device)
            t0 = time.perf_counter()
            for xb, yb in batches:
                fn(xb, yb)
            sync(device)
            times[name].append(time.perf_counter() - t0)

    rows = []
    for name in cases:
        med = statistics.median(times[name])
        rows.append({"case": name, "images_per_s": n / med, "median_s": med, "times_s": times[name]})
    by = {r["case"]: r["images_per_s"] for r in rows}
    for r in rows:
        attack = r["case"].split("/")[0]
        line = f"{r['case']:<26} {r['images_per_s']:10.1f} img/s"
        for ref in ("hand", "torchattacks"):
            if f"{attack}/{ref}" in by:
                r[f"vs_{ref}"] = r["images_per_s"] / by[f"{attack}/{ref}"]
                line += f"   x{r[f'vs_{ref}']:.3f} {ref}"
        print(line)

    result = {
        "benchmark": "attacks",
        "device": str(device),
        "device_tag": device_tag(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchattacks": torchattacks.__version__,
        "model": "resnet18 (28x28x1, 3x3 stem, no maxpool), 2 classes, eval mode",
        "n": n,
        "batch_size": bs,
        "repeats": repeats,
        "eps_linf": EPS_LINF,
        "eps_l2": EPS_L2,
        "steps": STEPS,
        "cases_run": list(cases),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cases": rows,
    }
    out = args.out or RESULTS / f"attacks_{device_tag(device)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)  # readers never see a half-written file
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
