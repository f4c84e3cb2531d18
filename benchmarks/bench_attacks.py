"""Throughput of FGSM and PGD-10 (L-inf and L2): domaingap.kernels.attacks vs torchattacks vs a plain
hand-written torch loop, on the same model and data in one run.

Model: ResNet-18 adapted to 28x28 grayscale (``models.build_model``, 3x3 stem, no maxpool),
2 classes, random weights, eval mode (throughput does not depend on the weights). Data: uniform
noise in [0, 1] (torchattacks assumes that range). One table per attack (:mod:`harness`): each
implementation's median seconds over ``--repeats`` rounds after a warm-up (the implementations interleaved
in each round, so load drift hits them alike), its peak memory, its time as a
percentage of the same-run reference, and the speed-up of ours over the fastest peer. The reference is
the least any gradient attack has to do: its gradient passes (1 for FGSM, 10 for PGD-10), each one
forward and backward pass of the model to the input, timed in the same run. FGSM rows also give the
largest difference of their adversarial images from ours (the same deterministic attack).

    python benchmarks/bench_attacks.py --device cpu --quick
    python benchmarks/bench_attacks.py --device cuda --n 4096

Writes ``benchmarks/results/attacks_<device-tag>.json`` (``--quick``: ``results/quick/``) atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))  # runnable without installing
sys.path.insert(0, str(REPO / "benchmarks"))

from harness import Table, machine_meta, sync, timed, timed_round_robin, write_result  # noqa: E402

from domaingap import models  # noqa: E402
from domaingap.kernels import attacks  # noqa: E402

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


def gradient_pass_seconds(model, batches, device: torch.device, repeats: int) -> float:
    """Median time of one forward + backward pass of the model to its input over every batch (an attack step's
    floor)."""
    def one_pass():
        for xb, yb in batches:
            xr = xb.clone().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(xr), yb), xr)

    one_pass()  # warm-up
    return timed(one_pass, device, repeats)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, default=None, help="images per timed pass (default 2048 cuda, 64 cpu)")
    ap.add_argument("--batch-size", type=int, default=None, help="default 256 cuda, 16 cpu")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds, the implementations interleaved")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--quick", action="store_true", help="tiny run: n=16 (cpu) / 512 (cuda), 1 repeat")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = device.type == "cpu"
    n = args.n or ((16 if cpu else 512) if args.quick else (64 if cpu else 2048))
    bs = min(args.batch_size or (16 if cpu else 256), n)
    repeats = 1 if args.quick else args.repeats

    import torchattacks  # a peer, used only here and in tests

    torch.manual_seed(0)
    model = models.build_model("resnet18", in_channels=1, num_classes=2, image_size=28).to(device).eval()
    x_all = torch.rand(n, 1, 28, 28, device=device)
    y_all = torch.randint(0, 2, (n,), device=device)
    batches = list(zip(x_all.split(bs), y_all.split(bs)))
    alpha_linf, alpha_l2 = 2.5 * EPS_LINF / STEPS, 2.5 * EPS_L2 / STEPS
    meta = machine_meta("attacks (FGSM, PGD-10)", device, argv, torchattacks=torchattacks.__version__,
                        model="resnet18 (28x28x1, 3x3 stem, no maxpool), 2 classes, eval mode", n=n, batch_size=bs,
                        repeats=repeats, eps_linf=EPS_LINF, eps_l2=EPS_L2, steps=STEPS, quick=args.quick,
                        timing="median of interleaved rounds after a warm-up; peak = memory above the level "
                               "before each call")
    fb = gradient_pass_seconds(model, batches, device, max(repeats, 3))

    def over_batches(fn):
        return lambda: torch.cat([fn(xb, yb) for xb, yb in batches])

    ta_fgsm = torchattacks.FGSM(model, eps=EPS_LINF)
    ta_pgd = torchattacks.PGD(model, eps=EPS_LINF, alpha=alpha_linf, steps=STEPS, random_start=True)
    ta_pgdl2 = torchattacks.PGDL2(model, eps=EPS_L2, alpha=alpha_l2, steps=STEPS, random_start=True)
    workloads = {
        "fgsm": (1, "FGSM (L-inf, eps 8/255)", {
            "domaingap attacks.fgsm": lambda x, y: attacks.fgsm(model, x, y, EPS_LINF),
            "torchattacks FGSM": lambda x, y: ta_fgsm(x, y),
            "hand-written torch loop": lambda x, y: hand_fgsm(model, x, y, EPS_LINF)}),
        "pgd10-linf": (STEPS, f"PGD-{STEPS} (L-inf, eps 8/255, random start)", {
            "domaingap attacks.pgd": lambda x, y: attacks.pgd(model, x, y, EPS_LINF, steps=STEPS,
                                                               step_size=alpha_linf),
            "torchattacks PGD": lambda x, y: ta_pgd(x, y),
            "hand-written torch loop": lambda x, y: hand_pgd_linf(model, x, y, EPS_LINF, alpha_linf, STEPS)}),
        "pgd10-l2": (STEPS, f"PGD-{STEPS} (L2, eps 0.5, random start)", {
            "domaingap attacks.pgd (norm='l2')": lambda x, y: attacks.pgd(model, x, y, EPS_L2, steps=STEPS,
                                                                         step_size=alpha_l2, norm="l2"),
            "torchattacks PGDL2": lambda x, y: ta_pgdl2(x, y),
            "hand-written torch loop": lambda x, y: hand_pgd_l2(model, x, y, EPS_L2, alpha_l2, STEPS)}),
    }
    tables = []
    for workload, (grads, what, impls) in workloads.items():
        t = Table(workload, "noise 28x28x1", n, 28 * 28, grads * fb, what,
                  reference=f"{grads} same-run forward+backward pass{'es' if grads > 1 else ''}")
        runs = {impl: over_batches(fn) for impl, fn in impls.items()}
        for run in runs.values():
            run()  # warm-up (allocator, lazy imports, oneDNN/cuDNN kernels)
        sync(device)
        timings = timed_round_robin(runs, device, repeats)
        ours_out = None
        for impl, (med, times, peak, out) in timings.items():
            extra = {"images_per_s": n / med}
            if ours_out is None:
                ours_out = out
            elif workload == "fgsm":  # deterministic: the same adversarial images up to rounding
                extra["max_abs_err"] = float((out - ours_out).abs().max())
            t.add(impl, impl.startswith("domaingap"), med, times, peak, **extra)
        tables.append(t.finish())
    write_result("attacks", device, meta, tables, quick=args.quick, out=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
