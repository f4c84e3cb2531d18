"""Module-level run kinds for the store and executor tests (worker processes import them by name).

Each computation drops a file into ``$RUN_KINDS_COUNTER`` (when set), so tests can count computations across
processes.
"""

import os
import time
from pathlib import Path

from domaingap import runs

COUNTER_ENV = "RUN_KINDS_COUNTER"


def count(name: str, spec: dict) -> None:
    folder = os.environ.get(COUNTER_ENV)
    if folder:
        Path(folder, f"{name}-{spec.get('i')}-{os.getpid()}-{time.time_ns()}").touch()


def computations(folder: Path, name: str = "") -> int:
    return len([p for p in Path(folder).iterdir() if p.name.startswith(name)])


@runs.kind("t_square", threaded=False, libraries=("numpy",))
def square(spec: dict, inputs: dict, work: Path) -> dict:
    """i -> i**2, with an extra file of random bytes (so tests can tell two writers' outputs apart)."""
    count("square", spec)
    time.sleep(spec.get("sleep", 0.0))
    for chunk in range(spec.get("slow_chunks", 0)):  # a slow writer of an extra file, to be killed mid-write
        with open(work / "big.bin", "ab") as fh:
            fh.write(os.urandom(1 << 16))
        time.sleep(0.2)
    (work / "blob.bin").write_bytes(os.urandom(1000))
    return {"y": spec["i"] ** 2, "pid": os.getpid()}


@runs.kind("t_total", threaded=False, libraries=("numpy",),
           upstream=lambda spec: {f"s{i}": square({"i": i}) for i in spec["items"]})
def total(spec: dict, inputs: dict, work: Path) -> dict:
    count("total", spec)
    return {"total": sum(e.result["y"] for e in inputs.values())}


@runs.kind("t_fail", threaded=False, libraries=("numpy",))
def fail(spec: dict, inputs: dict, work: Path) -> dict:
    raise ValueError(f"run t_fail refuses i={spec['i']}")


@runs.kind("t_after_fail", threaded=False, libraries=("numpy",), upstream=lambda spec: {"up": fail({"i": spec["i"]})})
def after_fail(spec: dict, inputs: dict, work: Path) -> dict:
    count("after_fail", spec)
    return {}


@runs.kind("t_dies_once", threaded=False, libraries=("numpy",))
def dies_once(spec: dict, inputs: dict, work: Path) -> dict:
    """Kills its own worker process on the first attempt (a crashed node), succeeds when retried."""
    marker = Path(spec["marker_dir"]) / f"attempt-{spec['i']}"
    attempts = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(attempts + 1))
    if attempts == 0:
        os._exit(1)
    return {"attempts": attempts + 1}


@runs.kind("t_threads", libraries=("numpy", "torch"))
def threads(spec: dict, inputs: dict, work: Path) -> dict:
    import torch

    return {"threads": torch.get_num_threads()}
