"""Runs as an explicit graph: a run kind declares its function, the code it uses and its upstream runs.

::

    @runs.kind("p1_train", uses=[training.fit, models.build_model])
    def train(spec: dict, inputs: dict, work: Path) -> dict:
        ...                                   # writes work / "model.pt", returns metrics

    @runs.kind("p1_attack", uses=[attacks], upstream=lambda spec: {"model": train(spec["train"])})
    def attack(spec: dict, inputs: dict, work: Path) -> dict:
        model_file = inputs["model"].file("model.pt")   # the upstream entry, verified, computed first
        ...

    results = runs.compute([attack(s) for s in specs])  # trains what is missing, then attacks

A run function never calls the store: its upstream entries arrive in ``inputs`` (name -> :class:`Entry`), so an
executor sees the whole graph, computes each run once and runs independent ones in parallel.

A run's key hashes (see :mod:`domaingap.runs.canonical`, :mod:`domaingap.runs.code`):

- the kind's name and the canonical encoding of its spec;
- the code hash of its function and what it declares in ``uses``;
- the versions of the libraries it declares (``libraries``, default numpy and torch) and, for ``threaded`` kinds,
  the number of intra-op threads it runs with (:func:`run_threads`; training at 1 and at 2 threads gives
  different bits, so those are different artefacts);
- the keys of its upstream runs, so editing a run function changes that run's key and its dependents' keys, and
  nothing else.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

from . import canonical, code

THREADS_ENV = "DOMAINGAP_RUN_THREADS"
STORE_FORMAT = 2  # bump when the key layout or the store layout changes
KINDS: dict[str, "Kind"] = {}

__all__ = ["Kind", "Run", "kind", "run_threads", "library_versions", "KINDS"]


def run_threads() -> int:
    """Intra-op threads every threaded run uses (``$DOMAINGAP_RUN_THREADS``, default 1). It is part of the key;
    executors set it in the process that computes the run. One thread per run, several runs in parallel is also
    the fastest way to train the book's small CPU models."""
    raw = os.environ.get(THREADS_ENV, "1")
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{THREADS_ENV}={raw!r}: expected a positive number of threads, e.g. 1")
    return value


@lru_cache(maxsize=None)
def library_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``names`` (distribution names); a library that is not installed is an error."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError as err:
            raise ValueError(f"run kind declares the library {name!r}, which is not installed") from err
    return out


def _by_reference(module: str, qualname: str) -> "Kind":
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True, eq=False)
class Kind:
    """A kind of run. Call it with a spec to get a :class:`Run` node."""

    name: str
    fn: Callable[[dict, dict, Path], dict]
    uses: tuple = ()  # functions, classes and modules whose code shapes the result (see domaingap.runs.code)
    upstream: Callable[[dict], Mapping[str, "Run"]] | None = None  # spec -> {name: upstream Run}
    libraries: tuple[str, ...] = ("numpy", "torch")  # their versions enter the key
    threaded: bool = True  # the intra-op thread count enters the key and is set before the run

    def __call__(self, spec: dict) -> "Run":
        return Run(self, spec)

    def __reduce__(self):  # pickled by reference, so worker processes import the kind by its module
        return _by_reference, (self.fn.__module__, self.fn.__qualname__)

    def __repr__(self) -> str:
        return f"Kind({self.name!r})"

    @cached_property
    def code_hash(self) -> str:
        return code.code_hash((self.fn, *self.uses))


def kind(name: str, *, uses: tuple | list = (), upstream: Callable[[dict], Mapping[str, "Run"]] | None = None,
         libraries: tuple[str, ...] = ("numpy", "torch"), threaded: bool = True) -> Callable[[Callable], Kind]:
    """Decorator declaring a run kind (module-level functions only: workers import them by name)."""

    def wrap(fn: Callable) -> Kind:
        if "<locals>" in fn.__qualname__:
            raise ValueError(f"run function {fn.__qualname__} must be defined at module level (workers import it)")
        if name in KINDS and KINDS[name].fn.__module__ + KINDS[name].fn.__qualname__ != fn.__module__ + fn.__qualname__:
            raise ValueError(f"run kind {name!r} is already declared by {KINDS[name].fn.__module__}."
                             f"{KINDS[name].fn.__qualname__}")
        made = Kind(name, fn, tuple(uses), upstream, tuple(libraries), threaded)
        KINDS[name] = made
        return made

    return wrap


@dataclass(frozen=True, eq=False)
class Run:
    """One node of the graph: a kind and a spec (JSON data; validated on creation)."""

    kind: Kind
    spec: dict = field(repr=False)

    threads: int | None = field(default=None, repr=False)  # filled in on creation (see run_threads)

    def __post_init__(self):
        object.__setattr__(self, "spec", canonical.normalise(self.spec, f"spec of {self.kind.name}"))
        # fixed when the run is declared, not when its key is first asked for
        object.__setattr__(self, "threads", run_threads() if self.kind.threaded else None)

    @cached_property
    def upstream(self) -> dict[str, "Run"]:
        if self.kind.upstream is None:
            return {}
        ups = dict(self.kind.upstream(self.spec))
        bad = {n: u for n, u in ups.items() if not isinstance(u, Run)}
        if bad:
            raise TypeError(f"upstream of {self.kind.name} must map names to Run objects, got {bad}")
        return ups

    @cached_property
    def environment(self) -> dict:
        return {"format": STORE_FORMAT, "libraries": library_versions(self.kind.libraries),
                "threads": self.threads}

    @cached_property
    def record(self) -> dict:
        """Everything the key hashes, as stored in the entry's ``record.json``."""
        return {"kind": self.kind.name, "spec": self.spec, "code": self.kind.code_hash, "env": self.environment,
                "upstream": {n: {"kind": u.kind.name, "key": u.key} for n, u in sorted(self.upstream.items())}}

    @cached_property
    def key(self) -> str:
        return canonical.digest(self.record)

    def __repr__(self) -> str:
        return f"Run({self.kind.name}, {self.key})"
