"""The frozen analysis plan (``analysis_plan.yaml``): alpha, the multiplicity family and every equivalence margin.

Notebooks take their thresholds from here (:func:`margin`, :func:`alpha`), never from literals, so changing a rule
is one visible edit to one file; the provenance page prints :func:`sha256` of that file.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

PLAN_FILE = Path(__file__).with_name("analysis_plan.yaml")

__all__ = ["PLAN_FILE", "alpha", "load", "margin", "reason", "sha256"]


@lru_cache(maxsize=1)
def load() -> dict:
    """The plan as a dict (cached; the file is part of the package)."""
    import yaml

    plan = yaml.safe_load(PLAN_FILE.read_text())
    for paper, items in plan.get("margins", {}).items():
        for cid, m in items.items():
            lo, hi = m.get("bounds", (None, None))
            if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo < hi) or not m.get("reason"):
                raise ValueError(f"analysis plan: margin of {paper} {cid} needs bounds [low < high] and a reason, "
                                 f"got {m!r}")
    return plan


def alpha() -> float:
    return float(load()["alpha"])


def margin(paper: str, claim_id: str) -> tuple[float, float]:
    """Equivalence bounds of a null claim, e.g. ``margin("P1", "ddata_does_not_separate") == (0.25, 0.75)``."""
    try:
        m = load()["margins"][paper][claim_id]
    except KeyError:
        known = {p: sorted(v) for p, v in load().get("margins", {}).items()}
        raise ValueError(f"no equivalence margin for {paper} {claim_id!r} in {PLAN_FILE.name}; "
                         f"it has {known}") from None
    return float(m["bounds"][0]), float(m["bounds"][1])


def reason(paper: str, claim_id: str) -> str:
    margin(paper, claim_id)
    return " ".join(str(load()["margins"][paper][claim_id]["reason"]).split())


def sha256() -> str:
    """SHA-256 of the plan file as stored (printed by the provenance page)."""
    return hashlib.sha256(PLAN_FILE.read_bytes()).hexdigest()
