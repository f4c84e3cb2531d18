"""Module-level run functions for the executor tests (worker processes import them by name)."""

import os
import time
from pathlib import Path

import numpy as np


def seeded_stat(spec, work):
    """A deterministic result of the spec, plus which process computed it."""
    time.sleep(spec.get("sleep", 0.0))
    rng = np.random.default_rng(spec["seed"])
    return {"value": float(rng.standard_normal(1000).mean()), "pid": os.getpid()}


def dies_once(spec, work):
    """Kills its own worker process on the first attempt (a crashed node), succeeds when retried."""
    marker = Path(spec["marker_dir"]) / f"attempt-{spec['seed']}"
    attempts = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(attempts + 1))
    if attempts == 0:
        os._exit(1)
    return seeded_stat(spec, work) | {"attempts": attempts + 1}
