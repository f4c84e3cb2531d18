"""What every benchmark script shares: timing with peak memory, the same-run reference, one table per workload,
the machine facts, and the atomic result file.

A table is one workload on one input: each implementation's median seconds, peak memory above the level before the
call, its time as a percentage of the same-run *reference* (the least work any implementation of the workload has
to do, timed in the same run: a float32 GEMM for the geometry and similarity kernels, the model's forward+backward
passes for the attacks), and the speed-up of ours over the fastest peer (a peer's row: its time over ours). The
performance appendix renders these tables from ``benchmarks/results/*.json``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
GEMM = "same-run float32 GEMM"


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
            self._stop.wait(0.002)

    @staticmethod
    def _release_freed() -> None:
        """Hand freed heap memory back to the OS, so that the next call's peak is its own (glibc only)."""
        import ctypes
        import gc

        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass

    def __enter__(self):
        self._release_freed()
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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int):
    """(median seconds, list of seconds, max peak MiB over the runs, result of the last run)."""
    times, peaks, out = [], [], None
    for _ in range(repeats):
        out = None  # release the previous result before measuring memory again
        with PeakMemory(device) as mem:
            t0 = time.perf_counter()
            out = fn()
            sync(device)
            times.append(time.perf_counter() - t0)
        peaks.append(mem.peak_mb)
    return statistics.median(times), times, max(peaks), out


def timed_round_robin(fns: dict, device: torch.device, repeats: int) -> dict:
    """:func:`timed` for several implementations of one workload, interleaved: repeat ``r`` runs every one of them
    once, starting with a different one each repeat, so load drift, frequency changes and the previous call's
    frees hit all of them alike. Returns ``{name: (median s, list of s, max peak MiB, last result)}``."""
    names = list(fns)
    times: dict = {k: [] for k in names}
    peaks: dict = {k: [] for k in names}
    outs: dict = {}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            outs[name] = None  # release the previous result before measuring memory again
            with PeakMemory(device) as mem:
                t0 = time.perf_counter()
                outs[name] = fns[name]()
                sync(device)
                times[name].append(time.perf_counter() - t0)
            peaks[name].append(mem.peak_mb)
    return {k: (statistics.median(times[k]), times[k], max(peaks[k]), outs[k]) for k in names}


def gemm_seconds(a: torch.Tensor, b: torch.Tensor | None = None, repeats: int = 3) -> float:
    """Median time of the raw float32 GEMM ``a @ b.T`` (``b = a``: the N x N x D Gram product) in row blocks of
    2048, TF32 off: the dense work every exact distance, CCA or CKA method faces."""
    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        af = a.float()
        bf = af if b is None else b.float()
        step = min(af.shape[0], 2048)
        out = torch.empty(step, bf.shape[0], dtype=torch.float32, device=a.device)
        torch.mm(af[:step], bf.T, out=out)  # warm-up
        times = []
        for _ in range(repeats):
            sync(a.device)
            t0 = time.perf_counter()
            for i in range(0, af.shape[0], step):
                rows = af[i: i + step]
                torch.mm(rows, bf.T, out=out[: rows.shape[0]])
            sync(a.device)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)
    finally:
        torch.set_float32_matmul_precision(prev)


class Table:
    """The rows of one workload on one input, printed as they come (see the module docstring)."""

    def __init__(self, workload: str, dataset: str, n: int, d: int, reference_s: float, what: str,
                 reference: str = GEMM):
        self.workload, self.dataset, self.n, self.d, self.what = workload, dataset, n, d, what
        self.reference, self.reference_s = reference, reference_s
        self.rows: list[dict] = []
        print(f"\n== {workload} on {dataset} (N={n}, D={d}): {what}; {reference} {reference_s:.3f} s", flush=True)

    def add(self, impl: str, ours: bool, median_s: float, times: list, peak: float, **extra) -> dict:
        row = {"workload": self.workload, "dataset": self.dataset, "impl": impl, "ours": ours,
               "median_s": median_s, "times_s": times, "peak_mem_mb": peak,
               "pct_of_reference": 100.0 * median_s / self.reference_s}
        row.update(extra)
        self.rows.append(row)
        return row

    def skip(self, impl: str, why: str) -> None:
        self.rows.append({"workload": self.workload, "dataset": self.dataset, "impl": impl, "ours": False,
                          "skipped": why})

    def finish(self) -> dict:
        timed_rows = [r for r in self.rows if "median_s" in r]
        peers = [r for r in timed_rows if not r["ours"]]
        best = min((r["median_s"] for r in peers), default=None)
        ours = [o["median_s"] for o in timed_rows if o["ours"]]
        for r in timed_rows:
            if r["ours"]:
                r["speedup_vs_best_peer"] = None if best is None else best / r["median_s"]
            else:
                r["time_vs_ours"] = r["median_s"] / ours[0] if ours else None
        print(f"{'impl':44s} {'median s':>9s} {'peak MiB':>9s} {'% ref':>7s} {'speed-up':>9s}  notes")
        for r in self.rows:
            if "skipped" in r:
                print(f"{r['impl']:44s} skipped: {r['skipped']}")
                continue
            sp = r.get("speedup_vs_best_peer")
            vs = r.get("time_vs_ours")
            sp_txt = f"{sp:8.2f}x" if sp is not None else ("" if r["ours"] or not vs else f"{1 / vs:8.2f}x")
            notes = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()
                              if k in ("value", "max_abs_err", "rows_differ", "rel_diff", "abs_diff"))
            print(f"{r['impl']:44s} {r['median_s']:9.3f} {r['peak_mem_mb']:9.1f} {r['pct_of_reference']:6.0f}% "
                  f"{sp_txt:>9s}  {notes}", flush=True)
        return {"workload": self.workload, "dataset": self.dataset, "n": self.n, "d": self.d,
                "reference": self.reference, "reference_s": self.reference_s, "what": self.what, "rows": self.rows}


def device_tag(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return "cuda-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return "cpu"


def machine_meta(benchmark: str, device: torch.device, argv: list[str] | None, **extra) -> dict:
    """Machine and run facts recorded with every result (the load average tells whether the machine was busy)."""
    meta = {
        "benchmark": benchmark,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else (
            platform.processor() or platform.machine()),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15": os.getloadavg(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "argv": sys.argv[1:] if argv is None else list(argv),
        # OpenMP threads that spin while waiting cost a lot on shared cores: record how this run was set up
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                               "MKL_NUM_THREADS", "DOMAINGAP_DATA")},
        **extra,
    }
    try:
        with open("/proc/cpuinfo") as f:
            models = {line.split(":", 1)[1].strip() for line in f if line.startswith("model name")}
        meta["cpu_model"] = ", ".join(sorted(models))
    except OSError:
        pass
    return meta


def write_result(name: str, device: torch.device, meta: dict, tables: list[dict], *, quick: bool = False,
                 out: Path | None = None) -> Path:
    """Write ``{meta, tables, cases}`` atomically to ``benchmarks/results/<name>_<device-tag>.json`` (``quick``:
    ``results/quick/``, which the performance appendix does not read); returns the path."""
    meta["load_average_1_5_15_end"] = os.getloadavg()
    record = {"meta": meta, "tables": {f"{t['workload']}/{t['dataset']}": t for t in tables},
              "cases": [row for t in tables for row in t["rows"]]}
    path = out or (RESULTS / ("quick" if quick else "") / f"{name}_{device_tag(device)}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=float) + "\n")
    os.replace(tmp, path)  # readers never see a half-written file
    print(f"\nwrote {path}")
    return path
