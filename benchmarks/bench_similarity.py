"""Benchmark domaingap.kernels.similarity against inline reference implementations.

Peers (no similarity package is installed; ckatorch / torch-cka are not used):

* Kornblith et al. (ICML 2019) notebook CKA in numpy: ``feature_space_linear_cka``
  (biased) and ``cka(gram_linear(x), gram_linear(y), debiased=...)`` on n x n Gram
  matrices;
* google/svcca ``cca_core.get_cca_similarity``'s formula in numpy (np.cov, rescale,
  drop small neurons, ridge, pinv, eigh square root, SVD), with SVCCA's SVD
  reduction to 99% of the variance as in Raghu et al. (2017).

Cases: linear CKA (biased, unbiased) and SVCCA on 5,000 x 512 activations with
shared low-rank structure, and P3's mean CCA on 10,000 x 64 (P3: N*h*w ~ 10,000
rows, 64 channels). Each line gives seconds (best of --repeats after a warm-up),
the value, and its absolute difference from the reference value.

Usage: python benchmarks/bench_similarity.py [--device cpu|cuda] [--quick] [--threads k]
Writes benchmarks/results/similarity_<device-tag>.json atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from domaingap.kernels import similarity as sim

RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------- #
# Reference implementations (numpy, float64)
# --------------------------------------------------------------------------- #
def ref_feature_space_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. notebook: linear CKA from feature-space cross products."""
    x = x - x.mean(0, keepdims=True)
    y = y - y.mean(0, keepdims=True)
    dot = np.linalg.norm(x.T @ y) ** 2
    return float(dot / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def ref_gram_cka(x: np.ndarray, y: np.ndarray, debiased: bool) -> float:
    """Kornblith et al. notebook: cka(gram_linear(x), gram_linear(y), debiased)."""

    def center_gram(g):
        g = g.copy()
        n = g.shape[0]
        if debiased:
            np.fill_diagonal(g, 0)
            means = g.sum(0) / (n - 2)
            means -= means.sum() / (2 * (n - 1))
            g -= means[:, None]
            g -= means[None, :]
            np.fill_diagonal(g, 0)
        else:
            means = g.mean(0)
            means -= means.mean() / 2
            g -= means[:, None]
            g -= means[None, :]
        return g

    gx, gy = center_gram(x @ x.T), center_gram(y @ y.T)
    hsic = gx.ravel() @ gy.ravel()
    return float(hsic / (np.linalg.norm(gx) * np.linalg.norm(gy)))


def ref_svcca_cca_coefs(acts1: np.ndarray, acts2: np.ndarray, epsilon: float) -> np.ndarray:
    """google/svcca get_cca_similarity's core on (neurons, datapoints) arrays."""
    nx = acts1.shape[0]
    cov = np.cov(acts1, acts2)
    sxx, sxy, syy = cov[:nx, :nx], cov[:nx, nx:], cov[nx:, nx:]
    xmax, ymax = np.abs(sxx).max(), np.abs(syy).max()
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)
    kx, ky = np.abs(np.diag(sxx)) >= epsilon, np.abs(np.diag(syy)) >= epsilon
    sxx, syy, sxy = sxx[kx][:, kx], syy[ky][:, ky], sxy[kx][:, ky]
    sxx = sxx + epsilon * np.eye(len(sxx))
    syy = syy + epsilon * np.eye(len(syy))

    def sqrtm(m):
        w, v = np.linalg.eigh(m)
        return v @ np.diag(np.sqrt(w)) @ v.T

    arr = sqrtm(np.linalg.pinv(sxx)) @ sxy @ sqrtm(np.linalg.pinv(syy))
    return np.abs(np.linalg.svd(arr, compute_uv=False))


def ref_svcca(x: np.ndarray, y: np.ndarray, fraction: float = 0.99) -> float:
    """Raghu et al. SVCCA: SVD to `fraction` of the variance, then mean CCA."""

    def reduce(z):
        z = z - z.mean(0)
        u, s, _ = np.linalg.svd(z, full_matrices=False)
        frac = np.cumsum(s**2) / np.sum(s**2)
        k = int(np.searchsorted(frac, fraction - 1e-12)) + 1
        return u[:, :k] * s[:k]

    return float(np.mean(ref_svcca_cca_coefs(reduce(x).T, reduce(y).T, 0.0)))


def ref_mean_cca(x: np.ndarray, y: np.ndarray) -> float:
    """P3: np.mean(get_cca_similarity(x.T, y.T, epsilon=1e-12)['cca_coef1'])."""
    return float(np.mean(ref_svcca_cca_coefs(x.T, y.T, 1e-12)))


# --------------------------------------------------------------------------- #
# Harness
# --------------------------------------------------------------------------- #
def make_activations(n: int, p: int, q: int, rank: int, device: str, seed: int = 0):
    """float32 activations with shared rank-`rank` structure, ReLU'd like conv outputs."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn(n, rank, generator=g)
    spectrum = torch.logspace(0, -1.5, rank)  # decaying, as real layers
    a = (z * spectrum) @ torch.randn(rank, p, generator=g) + 0.3 * torch.randn(n, p, generator=g)
    b = (z * spectrum) @ torch.randn(rank, q, generator=g) + 0.3 * torch.randn(n, q, generator=g)
    return a.relu().to(device), b.relu().to(device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, repeats: int, device: str):
    value = fn()  # warm-up (cuBLAS/cuSOLVER handles, allocator)
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, value


def device_tag(device: str) -> str:
    if device == "cpu":
        return "cpu"
    name = torch.cuda.get_device_name(0).lower()
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", name).strip("-")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch and numpy's BLAS (default: library defaults); "
                        "on a shared, loaded machine 1 avoids OpenMP contention")
    parser.add_argument("--out", type=Path, default=None, help="override the output JSON path")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    repeats = args.repeats or (1 if args.quick else 3)
    n, p = (1000, 128) if args.quick else (5000, 512)
    n_p3, c_p3 = (2000, 64) if args.quick else (10000, 64)

    a, b = make_activations(n, p, p, rank=64, device=device)
    a_np, b_np = a.double().cpu().numpy(), b.double().cpu().numpy()
    pa, pb = make_activations(n_p3, c_p3, c_p3, rank=16, device=device, seed=1)
    pa_np, pb_np = pa.double().cpu().numpy(), pb.double().cpu().numpy()

    cases = []

    def run(case, impl, impl_device, fn, ref_value, shape):
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        seconds, value = timed(fn, repeats, impl_device)
        row = {
            "case": case,
            "impl": impl,
            "device": impl_device,
            "shape": shape,
            "seconds": seconds,
            "value": value,
            "abs_diff_vs_reference": abs(value - ref_value),
        }
        if impl_device.startswith("cuda"):
            row["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        cases.append(row)
        print(
            f"{case:<20} {impl:<34} {impl_device:<5} {shape:<12} {seconds * 1e3:10.2f} ms  "
            f"value={value:.12f}  |diff|={row['abs_diff_vs_reference']:.2e}",
            flush=True,
        )
        return value

    shape = f"{n}x{p}"
    # --- linear CKA (biased) ---
    ref = ref_feature_space_linear_cka(a_np, b_np)
    run("linear_cka", "ours (domaingap)", device, lambda: sim.linear_cka(a, b), ref, shape)
    run("linear_cka", "Kornblith feature-space (numpy)", "cpu",
        lambda: ref_feature_space_linear_cka(a_np, b_np), ref, shape)
    if not args.quick or n <= 2000:
        run("linear_cka", "Kornblith n x n Gram (numpy)", "cpu",
            lambda: ref_gram_cka(a_np, b_np, False), ref, shape)
    # --- linear CKA (unbiased) ---
    ref_u = ref_gram_cka(a_np, b_np, True)
    run("linear_cka_unbiased", "ours (domaingap)", device,
        lambda: sim.linear_cka(a, b, unbiased=True), ref_u, shape)
    run("linear_cka_unbiased", "Kornblith n x n Gram debiased", "cpu",
        lambda: ref_gram_cka(a_np, b_np, True), ref_u, shape)
    # --- SVCCA ---
    ref_s = ref_svcca(a_np, b_np)
    run("svcca_0.99", "ours (domaingap)", device, lambda: sim.svcca(a, b), ref_s, shape)
    run("svcca_0.99", "np.linalg.svd + svcca cca_core", "cpu",
        lambda: ref_svcca(a_np, b_np), ref_s, shape)
    # --- mean CCA on the full 512 neurons, both algorithms ---
    ref_m = ref_mean_cca(a_np, b_np)
    run("mean_cca", "ours method=svd (covariance)", device, lambda: sim.mean_cca(a, b), ref_m, shape)
    run("mean_cca", "ours method=qr (Bjorck-Golub)", device,
        lambda: float(sim.cca(a, b, method="qr").mean()), ref_m, shape)
    run("mean_cca", "svcca cca_core (numpy)", "cpu", lambda: ref_mean_cca(a_np, b_np), ref_m, shape)
    # --- P3's setting: N*h*w ~ 10,000 rows x 64 channels ---
    shape3 = f"{n_p3}x{c_p3}"
    ref_p3 = ref_mean_cca(pa_np, pb_np)
    run("mean_cca_p3", "ours (domaingap)", device, lambda: sim.mean_cca(pa, pb), ref_p3, shape3)
    run("mean_cca_p3", "svcca cca_core (numpy)", "cpu",
        lambda: ref_mean_cca(pa_np, pb_np), ref_p3, shape3)

    meta = {
        "benchmark": "similarity",
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor()
        or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "quick": args.quick,
        "repeats": repeats,
        "timing": "best of repeats after one warm-up; values from float32 activations, "
        "computed in float64",
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_average_1_5_15": os.getloadavg(),
        "threads_flag": args.threads,
    }
    out = args.out or RESULTS / f"similarity_{device_tag(device)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "cases": cases}, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
