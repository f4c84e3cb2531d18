"""Benchmark the P1 geometry kernels against the ecosystem on the same data.

Compares, on the first N training images of MNIST (D = 784) and CIFAR-10 (D = 3072),
raw uint8 pixels as P1 uses them:

* exact kNN (k = 20): ``domaingap.kernels.distances.knn`` vs faiss ``IndexFlatL2``, scikit-learn
  ``NearestNeighbors(algorithm="brute")`` and a plain ``torch.cdist`` + ``topk`` loop;
* MLE and TwoNN end to end: ``domaingap.kernels.intrinsic_dim`` vs scikit-dimension
  (``MLE(unbiased=True)``, ``comb="mle"``; ``TwoNN(discard_fraction=0.5/N)`` = Pope's variant);
* exact K_F: ``domaingap.kernels.sharpness.label_sharpness`` vs a ``torch.cdist`` + masked-min loop.

For each case it prints one line and records seconds, effective GFLOP/s (2 N^2 D / s, the
dense distance-matrix work), that as a fraction of this machine's float32 GEMM throughput
(a ``torch.mm`` of comparable size measured in the same run), peak memory above the
starting point (CPU: resident set size sampled every 5 ms; CUDA: max_memory_allocated),
the value computed and, for kNN peers, the largest distance error against ours and the
fraction of rows whose neighbour set differs.

Results go to benchmarks/results/geometry_<device-tag>.json (written atomically).

Usage::

    python benchmarks/bench_geometry.py                   # CPU, N = 10,000
    python benchmarks/bench_geometry.py --device cuda --n 60000
    python benchmarks/bench_geometry.py --quick           # N = 2,000, MNIST only

Peers whose package is missing are recorded as skipped. With ``--peers auto`` (default)
the CPU peers run only for N <= 20,000 (scikit-dimension's TwoNN sorts full distance rows
and its MLE loops over points in Python).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import json
import os
import platform
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

from domaingap.kernels import distances, intrinsic_dim, sharpness  # noqa: E402

K = 20


# ---------------------------------------------------------------------------- measurement


class PeakMemory:
    """Peak memory (MiB) above the level at entry: CUDA allocator or sampled CPU RSS."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mb = float("nan")

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, self._rss())
            self._stop.wait(0.005)

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base = self._max = self._rss()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = (torch.cuda.max_memory_allocated() - self._base) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self._max = max(self._max, self._rss())
            self.peak_mb = (self._max - self._base) / 2**20
        return False


def timed(fn, device: torch.device, repeats: int = 1):
    """(best seconds, peak MiB of the best-timed run, result of the last run)."""
    best, peak, out = float("inf"), float("nan"), None
    for _ in range(repeats):
        with PeakMemory(device) as mem:
            t0 = time.perf_counter()
            out = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
        if dt < best:
            best, peak = dt, mem.peak_mb
    return best, peak, out


def gemm_gflops(d: int, m: int, device: torch.device) -> float:
    """float32 torch.mm throughput for (m x d) @ (d x m), best of 5, TF32 off."""
    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        g = torch.Generator(device="cpu").manual_seed(0)
        a = torch.randn(m, d, generator=g).to(device)
        b = torch.randn(m, d, generator=g).to(device)
        torch.mm(a, b.T)
        best = float("inf")
        for _ in range(5):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            torch.mm(a, b.T)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        return 2.0 * m * m * d / best / 1e9
    finally:
        torch.set_float32_matmul_precision(prev)


# ---------------------------------------------------------------------------- data


def _read_idx_images(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, h, w = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 1, h, w)


def load(name: str, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """First n training images (uint8, flattened) and labels, and where they came from."""
    try:
        from domaingap import data

        x, y = data.load_arrays(name, split="train")
        src = "domaingap.data.load_arrays"
    except Exception as err:  # only MNIST has a fallback: reading the idx files directly
        if name != "mnist":
            raise
        root = Path(os.environ.get("DOMAINGAP_DATA", REPO / "data" / "cache")) / "mnist"
        x = _read_idx_images(root / "train-images-idx3-ubyte.gz")
        with gzip.open(root / "train-labels-idx1-ubyte.gz", "rb") as f:
            y = np.frombuffer(f.read(), dtype=np.uint8, offset=8).astype(np.int64)
        src = f"idx files in {root} (domaingap.data failed: {type(err).__name__})"
    if n > len(x):
        raise SystemExit(f"--n {n} exceeds the {len(x)} {name} training images")
    return np.ascontiguousarray(x[:n].reshape(n, -1)), np.asarray(y[:n]), src


# ---------------------------------------------------------------------------- baselines


def cdist_topk(x: torch.Tensor, k: int, chunk: int):
    """Plain float32 baseline: torch.cdist per row block, then topk (self at column 0)."""
    xf = x.float()
    ds, ids = [], []
    for i in range(0, len(xf), chunk):
        blk = torch.cdist(xf[i : i + chunk], xf)
        rows = torch.arange(i, min(i + chunk, len(xf)), device=x.device)
        blk[rows - i, rows] = float("inf")
        v, j = torch.topk(blk, k, dim=1, largest=False)
        ds.append(v)
        ids.append(j)
    return torch.cat(ds), torch.cat(ids)


def cdist_cross_min(x: torch.Tensor, y: torch.Tensor, chunk: int) -> float:
    xf = x.float()
    best = float("inf")
    for i in range(0, len(xf), chunk):
        blk = torch.cdist(xf[i : i + chunk], xf)
        blk.masked_fill_(y[i : i + chunk, None] == y[None, :], float("inf"))
        best = min(best, float(blk.min()))
    return 1.0 / best


def knn_error(d_ref: np.ndarray, i_ref: np.ndarray, d: np.ndarray, i: np.ndarray) -> tuple[float, float]:
    """Largest |distance error| and fraction of rows whose neighbour *set* differs."""
    err = float(np.max(np.abs(np.asarray(d, dtype=np.float64) - d_ref)))
    differs = np.any(np.sort(np.asarray(i), 1) != np.sort(i_ref, 1), axis=1)
    return err, float(differs.mean())


# ---------------------------------------------------------------------------- main


def device_tag(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return "cuda-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return "cpu"


def run_dataset(name: str, n: int, device: torch.device, peers: bool, repeats: int) -> dict:
    x_np, y_np, src = load(name, n)
    d = x_np.shape[1]
    x = torch.from_numpy(x_np).to(device)
    y = torch.from_numpy(y_np).to(device)
    flops = 2.0 * n * n * d
    m = min(n, 8192 if device.type == "cuda" else 4096)
    gemm = gemm_gflops(d, m, device)
    print(f"== {name}: N={n} D={d} ({src}); float32 torch.mm {m}x{d}x{m}: {gemm:.1f} GFLOP/s", flush=True)
    cases: list[dict] = []

    def record(case: str, seconds: float, peak: float, value=None, dense=True, **extra):
        row = {"case": case, "seconds": seconds, "peak_mem_mb": peak, "value": value}
        if dense:
            row["gflops_eff"] = flops / seconds / 1e9
            row["frac_gemm"] = row["gflops_eff"] / gemm
        row.update(extra)
        cases.append(row)
        eff = f"{row['gflops_eff']:8.1f} GF/s {row['frac_gemm']:6.1%} of GEMM" if dense else " " * 29
        val = "" if value is None else f"  value={value:.6g}"
        more = "".join(f"  {k}={v:.3g}" for k, v in extra.items() if isinstance(v, float))
        print(f"{name:8s} {case:34s} {seconds:9.3f} s {eff} peak {peak:8.1f} MiB{val}{more}", flush=True)

    def skip(case: str, why: str):
        cases.append({"case": case, "skipped": why})
        print(f"{name:8s} {case:34s} skipped: {why}", flush=True)

    # ours
    t, pk, (dk, ik) = timed(lambda: distances.knn(x, K), device, repeats)
    d_ref, i_ref = dk.cpu().numpy(), ik.cpu().numpy()
    record("domaingap.knn", t, pk)
    t, pk, v = timed(lambda: intrinsic_dim.mle(x, K), device, repeats)
    record("domaingap.mle (end to end)", t, pk, v)
    mle_ours = v
    t, pk, v = timed(lambda: intrinsic_dim.twonn(x), device, repeats)
    record("domaingap.twonn pope (end to end)", t, pk, v)
    twonn_ours = v
    t, pk, v = timed(lambda: sharpness.label_sharpness(x, y), device, repeats)
    record("domaingap.label_sharpness (exact)", t, pk, v)
    kf_exact = v
    t, pk, v = timed(lambda: sharpness.label_sharpness_sampled(x, y), device, 1)
    record("domaingap.label_sharpness_sampled", t, pk, v, dense=False, ratio_to_exact=v / kf_exact)

    # plain torch (same device)
    chunk = 8192 if device.type == "cuda" else 1024
    t, pk, (dc, ic) = timed(lambda: cdist_topk(x, K, chunk), device, 1)
    err, frac = knn_error(d_ref, i_ref, dc.cpu().numpy(), ic.cpu().numpy())
    record("torch.cdist+topk (float32)", t, pk, max_abs_err=err, rows_differ=frac)
    t, pk, v = timed(lambda: cdist_cross_min(x, y, chunk), device, 1)
    record("torch.cdist+masked min K_F", t, pk, v, rel_err=abs(v - kf_exact) / kf_exact)

    if not peers:
        for c in ("faiss IndexFlatL2", "sklearn NearestNeighbors brute", "skdim MLE", "skdim TwoNN"):
            skip(c, f"peers off for N={n} (use --peers all)")
        return {"n": n, "d": d, "source": src, "gemm_gflops": gemm, "gemm_shape": [m, d, m], "cases": cases}

    xf32 = np.ascontiguousarray(x_np, dtype=np.float32)
    try:
        import faiss

        def run_faiss():
            index = faiss.IndexFlatL2(d)
            index.add(xf32)
            return index.search(xf32, K + 1)

        t, pk, (dsq, idx) = timed(run_faiss, torch.device("cpu"), 1)
        # faiss returns squared float32 distances; drop the self match (column 0 here)
        dsq, idx = dsq[:, 1:], idx[:, 1:]
        err, frac = knn_error(d_ref, i_ref, np.sqrt(np.maximum(dsq, 0)), idx)
        record("faiss IndexFlatL2 (cpu)", t, pk, max_abs_err=err, rows_differ=frac, threads=float(faiss.omp_get_max_threads()))
    except ImportError as err:
        skip("faiss IndexFlatL2", f"not installed ({err})")

    from sklearn.neighbors import NearestNeighbors

    def run_sklearn():
        return NearestNeighbors(n_neighbors=K, algorithm="brute").fit(x_np).kneighbors()

    t, pk, (ds_, is_) = timed(run_sklearn, torch.device("cpu"), 1)
    err, frac = knn_error(d_ref, i_ref, ds_, is_)
    record("sklearn NearestNeighbors brute", t, pk, max_abs_err=err, rows_differ=frac)

    try:
        import skdim

        # Definitions that coincide with P1's (see tests/test_intrinsic_dim.py).
        t, pk, v = timed(
            lambda: skdim.id.MLE(unbiased=True).fit(x_np, n_neighbors=K, comb="mle").dimension_,
            torch.device("cpu"),
            1,
        )
        record("skdim MLE (end to end)", t, pk, float(v), rel_diff=abs(v - mle_ours) / mle_ours)
        t, pk, v = timed(
            lambda: skdim.id.TwoNN(discard_fraction=0.5 / n).fit(x_np).dimension_, torch.device("cpu"), 1
        )
        record("skdim TwoNN (end to end)", t, pk, float(v), rel_diff=abs(v - twonn_ours) / twonn_ours)
    except ImportError as err:
        skip("skdim MLE / TwoNN", f"not installed ({err})")
    return {"n": n, "d": d, "source": src, "gemm_gflops": gemm, "gemm_shape": [m, d, m], "cases": cases}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=None, help="images per dataset (default 10000; --quick 2000)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="N = 2000, MNIST only, no repeats")
    ap.add_argument("--datasets", default=None, help="comma list (default mnist,cifar10)")
    ap.add_argument("--peers", default="auto", choices=["auto", "all", "none"])
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of our kernels (best kept)")
    ap.add_argument("--out", default=None, help="output JSON (default benchmarks/results/geometry_<tag>.json)")
    args = ap.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch.cuda.is_available() is False")
    device = torch.device(args.device)
    n = args.n or (2000 if args.quick else 10000)
    names = (args.datasets or ("mnist" if args.quick else "mnist,cifar10")).split(",")
    repeats = 1 if args.quick else args.repeats
    peers = args.peers == "all" or (args.peers == "auto" and n <= 20000)

    # warm-up: library loading, CUDA context and cuBLAS handles are not part of any timing
    warm = torch.randint(0, 255, (300, 64), dtype=torch.uint8, device=device)
    distances.knn(warm, 5)
    sharpness.label_sharpness(warm, torch.arange(300, device=device) % 2)

    meta = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "n": n,
        "k": K,
        "argv": sys.argv[1:],
    }
    for mod in ("faiss", "sklearn", "skdim"):
        try:
            meta[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing peer is recorded, not fatal
            meta[mod] = None
    print(json.dumps({k: meta[k] for k in ("device", "device_name", "cpu_count", "torch_threads", "torch")}))
    results = {"meta": meta, "datasets": {}}
    for name in names:
        results["datasets"][name] = run_dataset(name, n, device, peers, repeats)
    results["meta"]["load_average_at_end"] = os.getloadavg()

    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"geometry_{device_tag(device)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, default=float) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
