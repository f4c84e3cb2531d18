"""Run-size profiles: the one place where experiment sizes live.

Every notebook takes a ``profile`` parameter (injected by papermill) and asks this module for its settings::

    cfg = profiles.get("p1_fig1", profile)

- ``ci``: seconds to a few minutes on 2 CPU cores; a smoke test under nbval, not a result.
- ``default``: CPU-sized, enough runs for the statistics to mean something (the book is built with it).
- ``paper``: the original paper's scale, meant for a GPU and the full datasets.

The sizes themselves are in ``profiles.d/*.yaml`` beside this file (one file per chapter, one section per
notebook); a section name may appear in only one file.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

PROFILES = ("ci", "default", "paper")
_DIR = Path(__file__).with_name("profiles.d")


@lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, dict[str, Any]]]:
    import yaml

    table: dict[str, dict[str, dict[str, Any]]] = {}
    origin: dict[str, str] = {}
    for path in sorted(_DIR.glob("*.yaml")):
        with open(path) as fh:
            for section, per_profile in (yaml.safe_load(fh) or {}).items():
                if section in table:
                    raise ValueError(f"profile section {section!r} is defined in both {origin[section]} and {path.name}")
                missing = [p for p in PROFILES if p not in per_profile]
                if missing:
                    raise ValueError(f"{path.name}: section {section!r} lacks profiles {missing}")
                table[section], origin[section] = per_profile, path.name
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
