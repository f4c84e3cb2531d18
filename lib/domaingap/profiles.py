"""Run-size profiles: the one place where experiment sizes live.

Every notebook takes a ``profile`` parameter (injected by papermill) and asks this module for its settings::

    cfg = profiles.get("p1_fig1", profile)

- ``ci``: seconds to a few minutes on 2 CPU cores; a smoke test under nbval, not a result.
- ``default``: CPU-sized, enough runs for the statistics to mean something (the book is built with it).
- ``paper``: the original paper's scale, meant for a GPU and the full datasets.

The sizes themselves are in ``profiles.yaml`` beside this file, one section per notebook.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

PROFILES = ("ci", "default", "paper")
_YAML = Path(__file__).with_name("profiles.yaml")


@lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, dict[str, Any]]]:
    import yaml

    with open(_YAML) as fh:
        table = yaml.safe_load(fh)
    for section, per_profile in table.items():
        missing = [p for p in PROFILES if p not in per_profile]
        if missing:
            raise ValueError(f"profiles.yaml section {section!r} lacks profiles {missing}")
    return table


def sections() -> list[str]:
    """Names of the notebook sections in ``profiles.yaml``."""
    return sorted(_table())


def get(section: str, profile: str) -> dict[str, Any]:
    """Settings of notebook ``section`` at ``profile`` (a fresh copy, safe to modify).

    A ``common`` entry of the section, if any, is merged under the profile's own keys.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    table = _table()
    if section not in table:
        raise KeyError(f"no profile section {section!r}; known sections: {', '.join(sorted(table))}")
    merged = dict(copy.deepcopy(table[section].get("common", {})))
    merged.update(copy.deepcopy(table[section][profile]))
    merged["profile"] = profile
    return merged
