"""Benchmark the P1 geometry kernels against their peers, all in the same run, on the same data.

Data: N training images of MNIST (D = 784) and CIFAR-10 (D = 3072), drawn at random (seed 0), raw uint8 pixels as
P1 uses them, 10 classes. One table per workload and dataset:

* ``knn``: exact 20-NN of every image (self excluded). Ours ``distances.knn``; peers faiss ``IndexFlatL2`` (float32),
  a plain torch reference (float32 ``addmm`` of ``||a||^2 + ||b||^2 - 2 a.b`` per row block, then ``topk``), and
  scikit-learn ``NearestNeighbors(algorithm="brute")`` (float64).
* ``kf``: exact label sharpness K_F over all pairs with different labels (multiclass). Ours
  ``sharpness.label_sharpness``; peers faiss (per class, an ``IndexFlatL2`` of the later classes searched with k = 1:
  exactly the cross-class pairs) and the torch reference (cross-class ``addmm`` blocks, masked minimum), both float32.
* ``mle``: MLE intrinsic dimension at k = 20 end to end. Ours ``intrinsic_dim.mle``; peer scikit-dimension
  ``MLE(unbiased=True)``, ``comb="mle"`` (the same estimator, see tests/test_intrinsic_dim.py).
* ``twonn``: TwoNN (Pope's variant) end to end. Ours ``intrinsic_dim.twonn``; peer ``skdim.id.TwoNN(
  discard_fraction=0.5/N)``.
* ``multiverse``: P1's estimator multiverse, MLE at k = 5, 10, 20, 50 and TwoNN. Ours ``intrinsic_dim.estimate_all``
  (one kNN pass); peer: the five scikit-dimension fits it replaces, run one after the other.

Every implementation gets the same uint8 array (any float conversion a peer needs happens inside its timing), runs
``--repeats`` times after a warm-up on 500 images, and is reported with its median seconds, the peak resident memory
above the level before the call (sampled every 2 ms; CUDA: the allocator's peak), its time as a percentage of the
same-run float32 GEMM (one ``torch.mm`` pass over the full N x N x D product in row blocks of 2048, the dense work
every exact method faces), and the speed-up of ours over the fastest peer. kNN peers also report the largest
distance error against ours and the fraction of rows whose neighbour set differs (float32 peers are not exact);
value peers report their relative difference.

Results: ``benchmarks/results/geometry_<device-tag>.json`` (``--quick``: ``benchmarks/results/quick/``, which the
performance appendix does not read), written atomically, with ``meta`` (machine, threads, versions, date, load
average before and after), ``tables`` (one per workload and dataset: its rows) and ``cases`` (all rows, flat, each with
its ``workload`` and ``dataset``).

Usage::

    python benchmarks/bench_geometry.py                    # CPU, N = 10,000, MNIST and CIFAR-10, all peers
    python benchmarks/bench_geometry.py --quick            # smoke run: N = 1,000, MNIST, one repeat
    python benchmarks/bench_geometry.py --full-split       # also: the multiverse on all 60,000 MNIST images (ours)
    python benchmarks/bench_geometry.py --device cuda --peers none --n 60000 --datasets mnist

Peers whose package is missing are recorded as skipped.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))  # runnable without installing
sys.path.insert(0, str(REPO / "benchmarks"))

from harness import Table, gemm_seconds, machine_meta, timed, write_result  # noqa: E402

from domaingap.kernels import distances, intrinsic_dim, sharpness  # noqa: E402

K = 20
KS = (5, 10, 20, 50)


# ---------------------------------------------------------------------------- data


def _read_idx_images(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, h, w = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 1, h, w)


def load(name: str, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """n training images (uint8, flattened) drawn at random (seed 0, in random order; all of them when n is
    the split size), their labels, and where they came from. A random draw, not the first n: some readers
    return a split sorted by class (CIFAR-10's folders), whose first 10,000 images hold two classes."""
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
    pick = np.random.default_rng(0).permutation(len(x))[:n]
    x = np.ascontiguousarray(np.asarray(x)[pick].reshape(n, -1))
    return x, np.asarray(y).reshape(-1)[pick].astype(np.int64), src + ", random subset (seed 0)"


# ---------------------------------------------------------------------------- peers


def torch_knn(x: torch.Tensor, k: int, chunk: int = 2048):
    """Plain float32 reference: addmm of the Gram identity per row block, then topk (self set to +inf)."""
    xf = x.float()
    sq = (xf * xf).sum(1)
    ds, ids = [], []
    for i in range(0, len(xf), chunk):
        rows = xf[i : i + chunk]
        blk = torch.addmm(sq[i : i + chunk, None] + sq[None, :], rows, xf.T, alpha=-2.0)
        r = torch.arange(rows.shape[0], device=x.device)
        blk[r, r + i] = float("inf")
        v, j = torch.topk(blk, k, dim=1, largest=False)
        ds.append(v.clamp_(min=0).sqrt_())
        ids.append(j)
    return torch.cat(ds), torch.cat(ids)


def torch_kf(x: torch.Tensor, y: torch.Tensor, chunk: int = 2048) -> float:
    """Plain float32 reference K_F: class-sorted points, cross-class addmm blocks, minimum."""
    order = torch.sort(y, stable=True).indices
    xf, ys = x[order].float(), y[order]
    sq = (xf * xf).sum(1)
    ends = torch.cumsum(torch.bincount(ys - ys.min()), 0).tolist()
    best = float("inf")
    start = 0
    for end in ends:
        if end == start:
            continue
        for i in range(start, end, chunk):
            rows = xf[i : min(i + chunk, end)]
            for j in range(end, len(xf), chunk):
                cols = xf[j : j + chunk]
                blk = torch.addmm(sq[i : i + len(rows), None] + sq[None, j : j + len(cols)], rows, cols.T, alpha=-2.0)
                best = min(best, float(blk.min()))
        start = end
    return 1.0 / float(np.sqrt(max(best, 0.0)))


def faiss_knn(x_np: np.ndarray, k: int):
    import faiss

    xf = np.ascontiguousarray(x_np, dtype=np.float32)
    index = faiss.IndexFlatL2(xf.shape[1])
    index.add(xf)
    dsq, idx = index.search(xf, k + 1)
    # drop the point itself (normally column 0; with exact duplicates it may sit elsewhere)
    self_col = idx == np.arange(len(xf))[:, None]
    self_col[:, -1] |= ~self_col.any(1)
    keep = ~self_col
    return np.sqrt(np.maximum(dsq[keep].reshape(len(xf), k), 0)), idx[keep].reshape(len(xf), k)


def faiss_kf(x_np: np.ndarray, y: np.ndarray) -> float:
    import faiss

    xf = np.ascontiguousarray(x_np, dtype=np.float32)
    best = np.inf
    classes = np.unique(y)
    for c in classes[:-1]:
        later = xf[y > c]
        index = faiss.IndexFlatL2(xf.shape[1])
        index.add(later)
        dsq, _ = index.search(np.ascontiguousarray(xf[y == c]), 1)
        best = min(best, float(dsq.min()))
    return 1.0 / float(np.sqrt(max(best, 0.0)))


def sklearn_knn(x_np: np.ndarray, k: int):
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=k, algorithm="brute").fit(x_np).kneighbors()


def skdim_mle(x_np: np.ndarray, k: int) -> float:
    import skdim

    return float(skdim.id.MLE(unbiased=True).fit(x_np, n_neighbors=k, comb="mle").dimension_)


def skdim_twonn(x_np: np.ndarray) -> float:
    import skdim

    return float(skdim.id.TwoNN(discard_fraction=0.5 / len(x_np)).fit(x_np).dimension_)


def knn_error(d_ref: np.ndarray, i_ref: np.ndarray, d: np.ndarray, i: np.ndarray) -> tuple[float, float]:
    """Largest |distance error| and fraction of rows whose neighbour *set* differs."""
    err = float(np.max(np.abs(np.asarray(d, dtype=np.float64) - d_ref)))
    differs = np.any(np.sort(np.asarray(i), 1) != np.sort(i_ref, 1), axis=1)
    return err, float(differs.mean())


# ---------------------------------------------------------------------------- workloads


def have(mod: str) -> str | None:
    try:
        __import__(mod)
        return None
    except ImportError as err:
        return f"not installed ({err})"


def run_dataset(name: str, n: int, device: torch.device, peers: set, repeats: int, peer_repeats: int,
                multiverse_peer: bool) -> list[dict]:
    x_np, y_np, src = load(name, n)
    d = x_np.shape[1]
    x = torch.from_numpy(x_np).to(device)
    y = torch.from_numpy(y_np).to(device)
    cpu = torch.device("cpu")
    print(f"\n#### {name}: N={n} D={d} uint8, {len(np.unique(y_np))} classes ({src})", flush=True)
    gemm = gemm_seconds(x, repeats=3)
    tables = []

    # warm-up on 500 images: thread pools, oneDNN kernels, imports
    small, ys = x[:500], y[:500]
    distances.knn(small, 5)
    sharpness.label_sharpness(small, ys, on_duplicate="inf")
    intrinsic_dim.estimate_all(small, (5, 10))
    torch_knn(small, 5)
    if "faiss" in peers and not have("faiss"):
        faiss_knn(x_np[:500], 5)
    if "sklearn" in peers and not have("sklearn"):
        sklearn_knn(x_np[:500], 5)

    # ---- knn
    t = Table("knn", name, n, d, gemm, f"exact {K}-NN of every image, self excluded")
    med, times, peak, (dk, ik) = timed(lambda: distances.knn(x, K), device, repeats)
    d_ref, i_ref = dk.cpu().numpy(), ik.cpu().numpy()
    t.add("domaingap distances.knn (exact)", True, med, times, peak)
    if "torch" in peers:
        med, times, peak, (dt, it) = timed(lambda: torch_knn(x, K), device, peer_repeats)
        err, frac = knn_error(d_ref, i_ref, dt.cpu().numpy(), it.cpu().numpy())
        t.add("torch addmm + topk (float32)", False, med, times, peak, max_abs_err=err, rows_differ=frac)
    if "faiss" in peers:
        if why := have("faiss"):
            t.skip("faiss IndexFlatL2 (float32, cpu)", why)
        else:
            med, times, peak, (df, i_f) = timed(lambda: faiss_knn(x_np, K), cpu, peer_repeats)
            err, frac = knn_error(d_ref, i_ref, df, i_f)
            t.add("faiss IndexFlatL2 (float32, cpu)", False, med, times, peak, max_abs_err=err, rows_differ=frac)
    if "sklearn" in peers:
        if why := have("sklearn"):
            t.skip("sklearn NearestNeighbors brute (cpu)", why)
        else:
            med, times, peak, (ds_, is_) = timed(lambda: sklearn_knn(x_np, K), cpu, peer_repeats)
            err, frac = knn_error(d_ref, i_ref, ds_, is_)
            t.add("sklearn NearestNeighbors brute (float64, cpu)", False, med, times, peak, max_abs_err=err,
                  rows_differ=frac)
    tables.append(t.finish())
    del dk, ik

    # ---- kf
    t = Table("kf", name, n, d, gemm, "exact K_F = 1 / min over pairs with different labels of ||x_i - x_j||")
    med, times, peak, kf = timed(lambda: sharpness.label_sharpness(x, y, on_duplicate="inf"), device, repeats)
    t.add("domaingap sharpness.label_sharpness (exact)", True, med, times, peak, value=kf)
    if "torch" in peers:
        med, times, peak, v = timed(lambda: torch_kf(x, y), device, peer_repeats)
        t.add("torch cross-class addmm + min (float32)", False, med, times, peak, value=v, rel_diff=abs(v - kf) / kf)
    if "faiss" in peers:
        if why := have("faiss"):
            t.skip("faiss per-class IndexFlatL2 k=1 (float32, cpu)", why)
        else:
            med, times, peak, v = timed(lambda: faiss_kf(x_np, y_np), cpu, peer_repeats)
            t.add("faiss per-class IndexFlatL2 k=1 (float32, cpu)", False, med, times, peak, value=v,
                  rel_diff=abs(v - kf) / kf)
    tables.append(t.finish())

    # ---- mle, twonn
    skdim_why = have("skdim") if "skdim" in peers else None
    t = Table("mle", name, n, d, gemm, f"MLE intrinsic dimension at k = {K}, end to end")
    med, times, peak, mle = timed(lambda: intrinsic_dim.mle(x, K), device, repeats)
    t.add("domaingap intrinsic_dim.mle", True, med, times, peak, value=mle)
    if "skdim" in peers:
        if skdim_why:
            t.skip("skdim MLE", skdim_why)
        else:
            med, times, peak, v = timed(lambda: skdim_mle(x_np, K), cpu, peer_repeats)
            t.add("skdim MLE(unbiased=True), comb='mle' (cpu)", False, med, times, peak, value=v,
                  rel_diff=abs(v - mle) / mle)
    tables.append(t.finish())

    t = Table("twonn", name, n, d, gemm, "TwoNN (Pope et al.'s variant), end to end")
    med, times, peak, tw = timed(lambda: intrinsic_dim.twonn(x), device, repeats)
    t.add("domaingap intrinsic_dim.twonn", True, med, times, peak, value=tw)
    if "skdim" in peers:
        if skdim_why:
            t.skip("skdim TwoNN", skdim_why)
        else:
            med, times, peak, v = timed(lambda: skdim_twonn(x_np), cpu, peer_repeats)
            t.add("skdim TwoNN(discard_fraction=0.5/N) (cpu)", False, med, times, peak, value=v,
                  rel_diff=abs(v - tw) / tw)
    tables.append(t.finish())

    # ---- multiverse
    t = Table("multiverse", name, n, d, gemm, f"MLE at k = {', '.join(map(str, KS))} and TwoNN")
    med, times, peak, est = timed(lambda: intrinsic_dim.estimate_all(x, KS, twonn=True), device, repeats)
    t.add("domaingap intrinsic_dim.estimate_all (one kNN pass)", True, med, times, peak,
          value=est.mle[20], twonn=est.twonn)
    if "skdim" in peers and multiverse_peer:
        if skdim_why:
            t.skip("skdim: 4 MLE fits + TwoNN", skdim_why)
        else:
            def five_fits():
                return [skdim_mle(x_np, k) for k in KS], skdim_twonn(x_np)

            med, times, peak, (vals, v_tw) = timed(five_fits, cpu, 1)
            t.add("skdim: MLE at each k + TwoNN, separate fits (cpu)", False, med, times, peak, value=vals[2],
                  rel_diff=max(abs(a - est.mle[k]) / est.mle[k] for a, k in zip(vals, KS)))
    tables.append(t.finish())
    return tables


def run_full_split(device: torch.device, repeats: int) -> dict:
    """The multiverse over a whole training split: MNIST's 60,000 x 784 (ours only)."""
    x_np, _, src = load("mnist", 60000)
    x = torch.from_numpy(x_np).to(device)
    print(f"\n#### full split: MNIST 60,000 x 784 ({src})", flush=True)
    gemm = gemm_seconds(x, repeats=1)
    t = Table("full_split_multiverse", "mnist", 60000, 784, gemm,
              "kNN at k = 50, MLE at k = 5..50 (46 values) and TwoNN, one pass")
    med, times, peak, est = timed(lambda: intrinsic_dim.estimate_all(x, range(5, 51), twonn=True), device, repeats)
    t.add("domaingap intrinsic_dim.estimate_all", True, med, times, peak, value=est.mle[20], twonn=est.twonn)
    return t.finish()


# ---------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=None, help="images per dataset (default 10000; --quick 1000)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="smoke run: N = 1000, MNIST only, one repeat")
    ap.add_argument("--datasets", default=None, help="comma list (default mnist,cifar10)")
    ap.add_argument("--peers", default="faiss,torch,sklearn,skdim",
                    help="comma list of peers to run (faiss, torch, sklearn, skdim), or 'none'")
    ap.add_argument("--no-multiverse-peer", action="store_true",
                    help="skip the five separate skdim fits of the multiverse workload (the slowest peer)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of our kernels (median reported)")
    ap.add_argument("--peer-repeats", type=int, default=3, help="timed runs of each peer (median reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch and faiss threads (default: torch's default)")
    ap.add_argument("--full-split", action="store_true", help="also time the multiverse on all 60,000 MNIST images")
    ap.add_argument("--out", default=None, help="output JSON (default benchmarks/results/geometry_<tag>.json)")
    args = ap.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch.cuda.is_available() is False")
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass
    n = args.n or (1000 if args.quick else 10000)
    names = (args.datasets or ("mnist" if args.quick else "mnist,cifar10")).split(",")
    repeats = 1 if args.quick else args.repeats
    peer_repeats = 1 if args.quick else args.peer_repeats
    peers = set() if args.peers == "none" else {p.strip() for p in args.peers.split(",") if p.strip()}

    meta = machine_meta("geometry (P1 kNN, K_F, MLE, TwoNN)", device, argv, numpy=np.__version__, n=n, k=K,
                        ks=list(KS), repeats=repeats, peer_repeats=peer_repeats, quick=args.quick,
                        timing="median of repeats after a warm-up; peak = resident memory above the level before "
                               "each call")
    for mod in ("faiss", "sklearn", "skdim"):
        try:
            meta[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing peer is recorded, not fatal
            meta[mod] = None
    print(json.dumps({k: meta[k] for k in ("device", "device_name", "cpu_count", "torch_threads", "torch",
                                           "load_average_1_5_15")}))
    tables = []
    for name in names:
        tables += run_dataset(name, n, device, peers, repeats, peer_repeats, not args.no_multiverse_peer)
    if args.full_split:
        tables.append(run_full_split(device, 1 if args.quick else 1))
    write_result("geometry", device, meta, tables, quick=args.quick, out=Path(args.out) if args.out else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
