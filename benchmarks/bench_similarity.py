"""Benchmark domaingap.kernels.similarity against inline reference implementations.

Peers (no similarity package is installed; ckatorch / torch-cka are not used):

* Kornblith et al. (ICML 2019) notebook CKA in numpy: ``feature_space_linear_cka``
  (biased) and ``cka(gram_linear(x), gram_linear(y), debiased=...)`` on n x n Gram
  matrices;
* google/svcca ``cca_core.get_cca_similarity``'s formula in numpy (np.cov, rescale,
  drop small neurons, ridge, pinv, eigh square root, SVD), with SVCCA's SVD
  reduction to 99% of the variance as in Raghu et al. (2017).

Workloads: linear CKA (biased, unbiased), SVCCA and mean CCA on 5,000 x 512 activations
with shared low-rank structure, and P3's mean CCA on 10,000 x 64 (P3: N*h*w ~ 10,000
rows, 64 channels). One table per workload (:mod:`harness`): median seconds of
--repeats rounds after a warm-up (the implementations interleaved in each round),
peak memory, the time as a percentage of the same-run float32 GEMM of the two
activation matrices (``a.T @ b``, the cross-covariance any of these measures needs),
the speed-up of ours over the fastest peer, the value and its absolute difference
from the float64 reference value.

Usage: python benchmarks/bench_similarity.py [--device cpu|cuda] [--quick] [--threads k]
Writes benchmarks/results/similarity_<device-tag>.json (--quick: results/quick/) atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))  # runnable without installing
sys.path.insert(0, str(REPO / "benchmarks"))

from harness import Table, gemm_seconds, machine_meta, timed_round_robin, write_result  # noqa: E402

from domaingap.kernels import similarity as sim  # noqa: E402


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
def f64(x: np.ndarray) -> np.ndarray:
    """A float64 copy, as the numpy peers need (inside their timing)."""
    return x.astype(np.float64)


def make_activations(n: int, p: int, q: int, rank: int, device: str, seed: int = 0):
    """float32 activations with shared rank-`rank` structure, ReLU'd like conv outputs."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn(n, rank, generator=g)
    spectrum = torch.logspace(0, -1.5, rank)  # decaying, as real layers
    a = (z * spectrum) @ torch.randn(rank, p, generator=g) + 0.3 * torch.randn(n, p, generator=g)
    b = (z * spectrum) @ torch.randn(rank, q, generator=g) + 0.3 * torch.randn(n, q, generator=g)
    return a.relu().to(device), b.relu().to(device)


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
    repeats = args.repeats or (1 if args.quick else 5)
    n, p = (1000, 128) if args.quick else (5000, 512)
    n_p3, c_p3 = (2000, 64) if args.quick else (10000, 64)

    a, b = make_activations(n, p, p, rank=64, device=device)
    # every implementation gets the same float32 arrays; the numpy peers convert to float64 inside their timing,
    # as ours does (the reference values come from the float64 copies)
    a32, b32 = a.cpu().numpy(), b.cpu().numpy()
    a_np, b_np = a32.astype(np.float64), b32.astype(np.float64)
    pa, pb = make_activations(n_p3, c_p3, c_p3, rank=16, device=device, seed=1)
    pa32, pb32 = pa.cpu().numpy(), pb.cpu().numpy()
    pa_np, pb_np = pa32.astype(np.float64), pb32.astype(np.float64)

    dev = torch.device(device)
    meta = machine_meta("similarity (CKA, SVCCA, mean CCA)", dev, argv, numpy=np.__version__, quick=args.quick,
                        repeats=repeats, threads_flag=args.threads,
                        timing="median of interleaved rounds after a warm-up; values from float32 activations, "
                               "computed in float64 by ours; peak = memory above the level before each call")
    gemm = gemm_seconds(a.T.contiguous(), b.T.contiguous(), repeats=3)
    gemm3 = gemm_seconds(pa.T.contiguous(), pb.T.contiguous(), repeats=3)
    tables = []

    def table(workload, what, ref_value, impls, n_rows, n_cols, ref_s):
        t = Table(workload, f"synthetic activations {n_rows}x{n_cols}", n_rows, n_cols, ref_s, what)
        for _, _, fn in impls:
            fn()  # warm-up (BLAS/LAPACK handles, allocator)
        # interleaved rounds, synchronised on the device when any implementation runs there
        timings = timed_round_robin({impl: fn for impl, _, fn in impls}, dev, repeats)
        for impl, (med, times, peak, value) in timings.items():
            t.add(impl, impl.startswith("ours"), med, times, peak, value=float(value),
                  abs_diff=abs(float(value) - ref_value))
        tables.append(t.finish())

    table("linear_cka", "linear CKA (biased)", ref_feature_space_linear_cka(a_np, b_np), [
        ("ours: similarity.linear_cka", False, lambda: sim.linear_cka(a, b)),
        ("Kornblith feature-space (numpy)", True, lambda: ref_feature_space_linear_cka(f64(a32), f64(b32))),
        ("Kornblith n x n Gram (numpy)", True, lambda: ref_gram_cka(f64(a32), f64(b32), False)),
    ], n, p, gemm)
    table("linear_cka_unbiased", "linear CKA (unbiased HSIC)", ref_gram_cka(a_np, b_np, True), [
        ("ours: similarity.linear_cka(unbiased=True)", False, lambda: sim.linear_cka(a, b, unbiased=True)),
        ("Kornblith n x n Gram debiased (numpy)", True, lambda: ref_gram_cka(f64(a32), f64(b32), True)),
    ], n, p, gemm)
    table("svcca", "SVCCA (SVD to 99% of the variance, then mean CCA)", ref_svcca(a_np, b_np), [
        ("ours: similarity.svcca", False, lambda: sim.svcca(a, b)),
        ("np.linalg.svd + svcca cca_core (numpy)", True, lambda: ref_svcca(f64(a32), f64(b32))),
    ], n, p, gemm)
    table("mean_cca", "mean CCA over all 512 neurons", ref_mean_cca(a_np, b_np), [
        ("ours: similarity.mean_cca (covariance, svd)", False, lambda: sim.mean_cca(a, b)),
        ("ours: similarity.cca(method='qr') (Bjorck-Golub)", False, lambda: float(sim.cca(a, b, method="qr").mean())),
        ("svcca cca_core (numpy)", True, lambda: ref_mean_cca(f64(a32), f64(b32))),
    ], n, p, gemm)
    table("mean_cca_p3", "P3's mean CCA at one layer (N*h*w rows x 64 channels)", ref_mean_cca(pa_np, pb_np), [
        ("ours: similarity.mean_cca", False, lambda: sim.mean_cca(pa, pb)),
        ("svcca cca_core (numpy)", True, lambda: ref_mean_cca(f64(pa32), f64(pb32))),
    ], n_p3, c_p3, gemm3)
    write_result("similarity", dev, meta, tables, quick=args.quick, out=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
