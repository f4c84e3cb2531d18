"""Where models run, and the one way to switch a model to eval mode and back.

The device is never part of a run's spec or key: CUDA is used whenever it is available (``DOMAINGAP_DEVICE``
overrides it, e.g. ``cpu`` on a GPU machine to reproduce a CPU build).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

DEVICE_ENV = "DOMAINGAP_DEVICE"

__all__ = ["DEVICE_ENV", "default_device", "eval_mode"]


def default_device():
    """``torch.device``: ``$DOMAINGAP_DEVICE`` when set (``cpu``, ``cuda``, ``cuda:1``), else CUDA when
    available, else the CPU. Asking for CUDA where there is none is a ``ValueError``."""
    import torch

    wanted = os.environ.get(DEVICE_ENV, "").strip().lower()
    if wanted in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(wanted)
    except RuntimeError as err:
        raise ValueError(f"{DEVICE_ENV}={wanted!r} is not a device; expected auto, cpu, cuda or cuda:N") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{DEVICE_ENV}={wanted!r}, but torch sees no CUDA device on this machine")
    return dev


@contextmanager
def eval_mode(model) -> Iterator[None]:
    """Put every submodule of ``model`` in eval mode for the block, then restore each one's own flag (a model
    with frozen BatchNorm layers inside a training model keeps them frozen). Anything without ``modules()``
    (a plain function) passes through unchanged."""
    if not hasattr(model, "modules"):  # a plain feature function: nothing to switch
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in modes:
            m.training = flag
