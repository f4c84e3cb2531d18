"""Where a sweep's runs are computed: locally in sequence, in a local process pool, on a Dask cluster, or on Slurm.

A sweep is a list of run specs (see :mod:`domaingap.artefacts`); each run's result is an artefact written
atomically, so every executor only computes the specs whose artefacts are missing, and the results are the same
whichever executor computed them. One setting chooses the executor, so the same notebook runs on a laptop or on a
cluster::

    DOMAINGAP_EXECUTOR=sequential             # default: one run after another, with a progress bar
    DOMAINGAP_EXECUTOR=process:4              # a local pool of 4 worker processes
    DOMAINGAP_EXECUTOR=dask                   # a Dask LocalCluster on this machine (one worker per core)
    DOMAINGAP_EXECUTOR=dask:tcp://host:8786   # an existing Dask cluster (its workers must see the same
                                              # DOMAINGAP_DATA / DOMAINGAP_ARTEFACTS paths, e.g. a shared disk)
    DOMAINGAP_EXECUTOR=slurm                  # Slurm through submitit (partition etc. from DOMAINGAP_SLURM_*)

Why Dask distributed rather than Ray: it is pure Python (a small install next to torch), its LocalCluster runs on
loopback with no extra daemons, it reschedules the tasks of a worker that dies, and ``dask-jobqueue`` /
``dask-cloudprovider`` reach HPC schedulers and clouds with the same client code.

``compute`` functions must be importable module-level functions (worker processes import them by name).
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Callable, Sequence

from . import artefacts

EXECUTOR_ENV = "DOMAINGAP_EXECUTOR"
KINDS = ("sequential", "process", "dask", "slurm")


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
        if kind == "process" and arg and not arg.isdigit():
            raise ValueError(f"{EXECUTOR_ENV}={text!r}: the process pool size must be a positive integer")
        return cls(kind, arg or None)


def _run_one(kind: str, spec: dict, compute: Callable, depends: Sequence[str]) -> dict:
    return artefacts.cached(kind, spec, compute, depends)


def run(kind: str, specs: Sequence[dict], compute: Callable[[dict, "os.PathLike"], dict],
        depends: Sequence[str] = (), *, executor: str | None = None, progress: bool = True,
        desc: str | None = None, retries: int = 2) -> list[dict]:
    """Results of every spec, in order; only specs without an artefact are computed, by the chosen executor.

    ``retries``: how often a run whose worker died is resubmitted (process pool and Dask).
    """
    from tqdm.auto import tqdm

    setting = ExecutorSetting.parse(executor)
    specs = list(specs)
    missing = [s for s in specs if artefacts.load(kind, s, depends) is None]
    bar = tqdm(total=len(specs), initial=len(specs) - len(missing), desc=desc or kind, disable=not progress,
               postfix={"executor": setting.kind})
    if missing:
        if setting.kind == "sequential":
            for spec in missing:
                _run_one(kind, spec, compute, depends)
                bar.update()
        elif setting.kind == "process":
            _run_process_pool(kind, missing, compute, depends, int(setting.arg or os.cpu_count() or 1), bar, retries)
        elif setting.kind == "dask":
            _run_dask(kind, missing, compute, depends, setting.arg, bar, retries)
        else:
            _run_slurm(kind, missing, compute, depends, bar)
    bar.close()
    results = []
    for spec in specs:
        found = artefacts.load(kind, spec, depends)
        if found is None:
            raise RuntimeError(f"run {spec} of {kind!r} produced no artefact (executor {setting.kind})")
        found["_dir"] = str(artefacts.folder(kind, spec, depends))
        results.append(found)
    return results


def _run_process_pool(kind, specs, compute, depends, workers, bar, retries):
    import multiprocessing as mp

    # A worker that dies breaks the whole pool and every run in flight with it, so runs cannot be blamed one by
    # one: the pool is rebuilt for the runs still missing, up to (retries + 1) rounds per run.
    todo = list(specs)
    for _ in range((retries + 1) * len(todo)):
        broken = False
        # spawn, not fork: torch and threads do not survive a fork safely
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            pending = {pool.submit(_run_one, kind, s, compute, depends) for s in todo}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    try:
                        fut.result()
                        bar.update()
                    except BrokenProcessPool:
                        broken = True
        todo = [s for s in todo if artefacts.load(kind, s, depends) is None]
        if not todo or not broken:
            break
    if todo:
        raise RuntimeError(f"{len(todo)} runs of {kind!r} still missing: their worker processes kept dying")


def _run_dask(kind, specs, compute, depends, address, bar, retries):
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if address:
        client = Client(address)
    else:
        cluster = LocalCluster(n_workers=os.cpu_count() or 1, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
    try:
        futures = client.map(_run_one, [kind] * len(specs), specs, [compute] * len(specs),
                             [tuple(depends)] * len(specs), pure=False, retries=retries)
        for fut in as_completed(futures):
            fut.result()
            bar.update()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _run_slurm(kind, specs, compute, depends, bar):
    import submitit

    folder = artefacts.paths.artefacts_dir() / "_submitit" / kind
    executor = submitit.AutoExecutor(folder=str(folder), cluster=os.environ.get("DOMAINGAP_SLURM_CLUSTER"))
    params = {k[len("DOMAINGAP_SLURM_"):].lower(): v for k, v in os.environ.items()
              if k.startswith("DOMAINGAP_SLURM_") and k != "DOMAINGAP_SLURM_CLUSTER"}
    for key in ("timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb"):
        if key in params:
            params[key] = int(params[key])
    # e.g. DOMAINGAP_SLURM_SLURM_PARTITION=gpu -> slurm_partition="gpu"
    executor.update_parameters(**params)
    jobs = executor.map_array(_run_one, [kind] * len(specs), specs, [compute] * len(specs),
                              [tuple(depends)] * len(specs))
    for job in jobs:
        job.result()
        bar.update()
