"""Compute a graph of runs with one ``concurrent.futures``-style executor: sequential, process pool, Dask, Slurm.

One setting chooses where runs are computed, so the same chapter runs on a laptop or a cluster::

    DOMAINGAP_EXECUTOR=sequential             # default: one run after another, in this process
    DOMAINGAP_EXECUTOR=process:4              # a local pool of 4 worker processes (spawned)
    DOMAINGAP_EXECUTOR=dask                   # a Dask LocalCluster on this machine (one worker per core)
    DOMAINGAP_EXECUTOR=dask:tcp://host:8786   # an existing Dask cluster (workers must see the same
                                              # DOMAINGAP_DATA / DOMAINGAP_ARTEFACTS, e.g. a shared disk)
    DOMAINGAP_EXECUTOR=slurm                  # Slurm through submitit (parameters from DOMAINGAP_SLURM_*)

:func:`compute` expands the graph (upstream runs first, each key once), skips every run whose verified entry
exists, and submits a run as soon as all its upstream entries exist, so independent runs proceed in parallel and
nothing is computed twice. A run that fails does not stop the others; its dependents are skipped, and every
failure is reported at the end in one :class:`RunsFailed`. A worker process that dies (out of memory, killed) is
replaced and its runs resubmitted, up to ``retries`` times each.

Why Dask distributed rather than Ray: it is pure Python (a small install next to torch), its LocalCluster runs on
loopback with no extra daemons, and ``dask-jobqueue`` reaches HPC schedulers with the same client code.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from .graph import Run
from .store import Entry, Store

log = logging.getLogger(__name__)

EXECUTOR_ENV = "DOMAINGAP_EXECUTOR"
KINDS = ("sequential", "process", "dask", "slurm")

__all__ = ["ExecutorSetting", "RunsFailed", "compute", "plan", "work"]


@dataclass(frozen=True)
class ExecutorSetting:
    kind: str
    arg: str | None = None  # process: number of workers; dask: scheduler address

    @classmethod
    def parse(cls, text: str | None) -> "ExecutorSetting":
        text = (text or os.environ.get(EXECUTOR_ENV) or "sequential").strip()
        kind, _, arg = text.partition(":")
        if kind not in KINDS:
            raise ValueError(f"{EXECUTOR_ENV}={text!r}: executor must be one of {', '.join(KINDS)} "
                             f"(optionally kind:argument, e.g. process:4 or dask:tcp://host:8786)")
        if kind == "process" and arg and (not arg.isdigit() or int(arg) < 1):
            raise ValueError(f"{EXECUTOR_ENV}={text!r}: the process pool size must be a positive integer")
        return cls(kind, arg or None)


class RunsFailed(RuntimeError):
    """Some runs failed; ``failures`` maps each failed run to its error, ``skipped`` lists runs not attempted
    because an upstream run failed."""

    def __init__(self, failures: dict[Run, BaseException], skipped: list[Run]):
        self.failures, self.skipped = failures, skipped
        lines = [f"{len(failures)} run(s) failed" + (f", {len(skipped)} skipped as their upstream failed" if skipped
                                                   else "") + ":"]
        for run, err in failures.items():
            lines.append(f"  {run.kind.name} {run.key} spec={_short(run.spec)}: {type(err).__name__}: {err}")
        super().__init__("\n".join(lines))


def _short(spec: dict, limit: int = 160) -> str:
    text = repr(spec)
    return text if len(text) <= limit else text[:limit] + "..."


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def work(run: Run, root: str) -> str:
    """Compute one run whose upstream entries exist (in whatever process executes it); returns its key.

    The key is recomputed here: a worker whose code or library versions differ from the scheduler's would
    otherwise file its result under a key that does not describe it."""
    fresh = Run(run.kind, run.spec, run.threads)
    if fresh.key != run.key:
        raise RuntimeError(f"{run.kind.name}: this worker computes key {fresh.key} for the run the scheduler keyed "
                           f"{run.key}; its code or environment differs ({fresh.environment} here)")
    store = Store(root)
    inputs: dict[str, Entry] = {}
    for name, up in run.upstream.items():
        entry = store.lookup(up.kind.name, up.key)
        if entry is None:
            raise RuntimeError(f"{run.kind.name}: upstream {name!r} ({up.kind.name} {up.key}) is missing or corrupt")
        inputs[name] = entry
    with _threads(run.threads):
        store.compute(run.kind.name, run.key, run.record, lambda folder: run.kind.fn(run.spec, inputs, folder))
    return run.key


def plan(runs: Iterable[Run]) -> list[Run]:
    """Every run of the graph below ``runs``, each key once, upstream before downstream."""
    order: list[Run] = []
    seen: set[str] = set()

    def visit(run: Run, path: tuple[str, ...]) -> None:
        if run.key in path:
            raise ValueError(f"the run graph has a cycle through {run.kind.name} {run.key}")
        if run.key in seen:
            return
        for up in run.upstream.values():
            visit(up, path + (run.key,))
        seen.add(run.key)
        order.append(run)

    for run in runs:
        visit(run, ())
    return order


class _Inline(Executor):
    """The sequential executor: runs each submitted call at once, in this process."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 - handed to the scheduler like a worker's error
            fut.set_exception(err)
        return fut


class _Slurm(Executor):
    """submitit jobs behind ``concurrent.futures`` futures (one waiting thread per job)."""

    def __init__(self, root: str):
        import submitit

        self._ex = submitit.AutoExecutor(folder=os.path.join(root, "_submitit"),
                                         cluster=os.environ.get("DOMAINGAP_SLURM_CLUSTER"))
        params = {k[len("DOMAINGAP_SLURM_"):].lower(): v for k, v in os.environ.items()
                  if k.startswith("DOMAINGAP_SLURM_") and k != "DOMAINGAP_SLURM_CLUSTER"}
        for key in ("timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb"):
            if key in params:
                params[key] = int(params[key])
        self._ex.update_parameters(**params)  # e.g. DOMAINGAP_SLURM_SLURM_PARTITION=gpu
        self._waiters = ThreadPoolExecutor(max_workers=64)

    def submit(self, fn, /, *args, **kwargs) -> Future:
        job = self._ex.submit(fn, *args, **kwargs)
        return self._waiters.submit(job.result)

    def shutdown(self, wait: bool = True, **kwargs) -> None:
        self._waiters.shutdown(wait=wait)


@contextmanager
def _executor(setting: ExecutorSetting, root: str) -> Iterator[Executor]:
    if setting.kind == "sequential":
        yield _Inline()
    elif setting.kind == "process":
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: torch and threads do not survive a fork safely
        with ProcessPoolExecutor(max_workers=int(setting.arg or os.cpu_count() or 1),
                                 mp_context=mp.get_context("spawn")) as pool:
            yield pool
    elif setting.kind == "dask":
        from distributed import Client, LocalCluster

        cluster = None if setting.arg else LocalCluster(n_workers=os.cpu_count() or 1, threads_per_worker=1,
                                                        processes=True, host="127.0.0.1", dashboard_address=None)
        client = Client(setting.arg or cluster)
        try:
            yield client.get_executor(pure=False)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    else:
        ex = _Slurm(root)
        try:
            yield ex
        finally:
            ex.shutdown()


def compute(runs: Sequence[Run] | Iterable[Run], *, executor: str | None = None, store: Store | None = None,
            progress: bool = True, desc: str | None = None, retries: int = 2) -> list[Entry]:
    """The verified entries of ``runs``, in order, computing what is missing (and its missing upstream).

    Raises :class:`RunsFailed` after every run that could be attempted was, when any failed."""
    from tqdm.std import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets (TqdmWarning)

    runs = list(runs)
    store = store or Store()
    setting = ExecutorSetting.parse(executor)
    graph = plan(runs)
    present = {r.key for r in graph if store.lookup(r.kind.name, r.key) is not None}
    # only what a wanted run needs: a present run's upstream need not exist
    needed: dict[str, Run] = {}

    def need(run: Run) -> None:
        if run.key in present or run.key in needed:
            return
        needed[run.key] = run
        for up in run.upstream.values():
            need(up)

    for run in runs:
        need(run)
    failures: dict[Run, BaseException] = {}
    skipped: list[Run] = []
    if needed:
        bar = tqdm(total=len(needed), desc=desc or ", ".join(sorted({r.kind.name for r in needed.values()})),
                   disable=not progress, postfix={"executor": setting.kind}, leave=False)
        attempts: dict[str, int] = {}
        todo = [r for r in graph if r.key in needed]
        lock = threading.Lock()
        while todo:
            broken = False
            with _executor(setting, str(store.root)) as pool:
                inflight: dict[Future, Run] = {}
                while todo or inflight:
                    with lock:
                        dead = {f.key for f in failures} | {s.key for s in skipped}
                        blocked = [r for r in todo if any(u.key in dead for u in r.upstream.values())]
                        ready = [r for r in todo if r not in blocked
                                 and all(u.key in present for u in r.upstream.values())]
                    for r in blocked:
                        todo.remove(r)
                        skipped.append(r)
                        bar.update()
                    for r in ready:
                        todo.remove(r)
                        attempts[r.key] = attempts.get(r.key, 0) + 1
                        inflight[pool.submit(work, r, str(store.root))] = r
                    if not inflight:
                        break
                    done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                    for fut in done:
                        r = inflight.pop(fut)
                        try:
                            fut.result()
                            present.add(r.key)
                            bar.update()
                        except BrokenProcessPool as err:
                            broken = True
                            if attempts[r.key] <= retries:
                                todo.append(r)  # its worker died: try again in a fresh pool
                            else:
                                failures[r] = RuntimeError(f"its worker process died {attempts[r.key]} times "
                                                           f"({err})")
                                bar.update()
                        except Exception as err:  # noqa: BLE001 - collected and reported at the end
                            failures[r] = err
                            log.error("run %s %s failed: %s: %s", r.kind.name, r.key, type(err).__name__, err)
                            bar.update()
                    if broken:
                        for fut, r in inflight.items():  # the pool is gone: resubmit what was in flight
                            todo.append(r)
                        inflight.clear()
                        break
            if not broken:
                break
        bar.close()
        leftover = [r for r in todo if r not in skipped]
        skipped += leftover
    if failures or skipped:
        raise RunsFailed(failures, skipped)
    entries = []
    for run in runs:
        entry = store.lookup(run.kind.name, run.key)
        if entry is None:
            raise RuntimeError(f"run {run.kind.name} {run.key} has no verified entry after it was computed")
        entries.append(entry)
    return entries
