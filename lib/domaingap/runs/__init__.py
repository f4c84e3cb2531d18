"""Runs: a content-addressed artefact store, run kinds that declare their code and upstream runs, and executors
that compute the graph.

- :mod:`~domaingap.runs.canonical`: the canonical spec encoding keys are hashed from (rejects non-JSON data).
- :mod:`~domaingap.runs.code`: the source closure of a run function (what its key covers).
- :mod:`~domaingap.runs.graph`: :func:`kind`, :class:`Kind`, :class:`Run`.
- :mod:`~domaingap.runs.store`: :class:`Store`, verified atomic entries, quarantine.
- :mod:`~domaingap.runs.executors`: :func:`compute` over sequential / process / Dask / Slurm executors.

Nothing here imports torch at import time.
"""

from .executors import ExecutorSetting, RunsFailed, compute, plan
from .graph import KINDS, Kind, Run, kind, run_threads
from .store import CorruptArtefact, Entry, Store

__all__ = ["CorruptArtefact", "Entry", "ExecutorSetting", "KINDS", "Kind", "Run", "RunsFailed", "Store",
           "compute", "kind", "plan", "run_threads"]
