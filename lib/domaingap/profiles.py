"""Run-size profiles: the one place where experiment sizes live.

Every notebook takes a ``profile`` parameter (injected by papermill) and asks this module for its settings::

    cfg = profiles.get("p1_fig1", profile)

- ``ci``: seconds to a few minutes on 2 CPU cores; a smoke test under nbval, not a result.
- ``default``: CPU-sized, enough runs for the statistics to mean something (the book is built with it).
- ``paper``: the original paper's scale, meant for a GPU and the full datasets.

The sizes themselves are in ``profiles.d/*.yaml`` beside this file (one file per chapter, one section per
notebook); a section name may appear in only one file. Each section has a ``ci``, a ``default`` and a ``paper``
entry and optionally a ``common`` one, merged under each profile's own keys (shallowly).

When the files are first read, the merged settings of every profile of every section are validated against the
section's pydantic model in :mod:`domaingap.profile_schema` (where a chapter adds a key or a section). Any
problem in any file raises one :class:`ProfileError` listing every problem, each naming the file, section,
profile and key, e.g. ``p1.yaml: section p1_fig2, profile default: key 'epochs': Input should be a valid
integer, got 'x'``.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

PROFILES = ("ci", "default", "paper")
COMMON = "common"
_DIR = Path(__file__).with_name("profiles.d")


class ProfileError(ValueError):
    """Invalid profile YAML; ``problems`` lists one message per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(f"invalid run-size profiles ({len(self.problems)} problem"
                         f"{'s' if len(self.problems) != 1 else ''}):\n  " + "\n  ".join(self.problems))


def _loader():
    """A safe YAML loader that rejects a key given twice in one mapping (PyYAML silently keeps the last)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return Loader


def _key(loc: tuple) -> str:
    """``('models', 'resnet18', 'lr')`` -> ``models.resnet18.lr``; list positions as ``medical[2]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _messages(where: str, model: type, settings: dict, own: dict, common: dict) -> list[str]:
    """Problems of the merged ``settings`` of one profile under ``model``, each prefixed with ``where``."""
    from pydantic import ValidationError

    try:
        model.model_validate(settings)
        return []
    except ValidationError as err:
        errors = err.errors(include_url=False)
    out = []
    for e in errors:
        loc = tuple(e["loc"])
        top = loc[0] if loc else None
        origin = " (set in common)" if top is not None and top not in own and top in common else ""
        if e["type"] == "missing":
            msg = "missing (give it in common or in this profile)"
        elif e["type"] == "extra_forbidden":
            msg = (f"unknown key (not in the schema of the section, profile_schema.{model.__name__}: "
                   f"add a field there, see domaingap/profile_schema.py)")
        else:
            msg = f"{e['msg']}, got {e['input']!r}"
            if isinstance(e["input"], str) and _looks_numeric(e["input"]):
                msg += " (YAML reads a number without a '.' in its mantissa, like 1e-3, as a string: write 1.0e-3)"
        out.append(f"{where}: key '{_key(loc)}'{origin}: {msg}" if loc else f"{where}: {msg}")
    return out


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def load(directory: Path | str | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Read and validate every ``*.yaml`` of ``directory`` (default ``profiles.d/``).

    Returns ``{section: {profile: merged settings}}`` (the settings as YAML read them, without ``profile``);
    raises :class:`ProfileError` listing every problem of every file.
    """
    import yaml

    from .profile_schema import SECTIONS

    directory = Path(directory) if directory is not None else _DIR
    table: dict[str, dict[str, dict[str, Any]]] = {}
    origin: dict[str, str] = {}
    problems: list[str] = []
    files = sorted(directory.glob("*.yaml"))
    if not files:
        problems.append(f"{directory}: no *.yaml profile files")
    for path in files:
        name = path.name
        try:
            doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_loader()) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            at = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
            what = " ".join(filter(None, (getattr(err, "context", None), getattr(err, "problem", None))))
            problems.append(f"{name}: not valid YAML:{at} {what or err}")
            continue
        if not isinstance(doc, dict):
            problems.append(f"{name}: must map section names to their profiles, got {type(doc).__name__}")
            continue
        for section, per_profile in doc.items():
            where = f"{name}: section {section}"
            if section in origin:
                problems.append(f"{where}: also defined in {origin[section]} (a section may appear in one file only)")
                continue
            origin[section] = name
            model = SECTIONS.get(section)
            if model is None:
                problems.append(f"{where}: unknown section (no model for it in domaingap/profile_schema.py; "
                                f"known: {', '.join(sorted(SECTIONS))})")
                continue
            if not isinstance(per_profile, dict):
                problems.append(f"{where}: must map {COMMON!r} and the profiles {', '.join(PROFILES)} to their "
                                f"settings, got {type(per_profile).__name__}")
                continue
            entries: dict[str, dict] = {}
            for prof, entry in per_profile.items():
                if prof not in (COMMON, *PROFILES):
                    problems.append(f"{where}, profile {prof}: unknown profile (expected {COMMON} (optional), "
                                    f"{', '.join(PROFILES)})")
                elif entry is not None and not isinstance(entry, dict):
                    problems.append(f"{where}, profile {prof}: must map keys to values, got {type(entry).__name__}")
                else:
                    entries[prof] = entry or {}
            for prof in PROFILES:
                if prof not in per_profile:
                    problems.append(f"{where}, profile {prof}: missing (every section needs {', '.join(PROFILES)})")
            if COMMON in per_profile and COMMON not in entries:
                continue  # a malformed common entry, reported above
            common = entries.get(COMMON, {})
            table[section] = {}
            for prof in (p for p in PROFILES if p in entries):
                merged = {**common, **entries[prof]}
                problems += _messages(f"{where}, profile {prof}", model, merged, entries[prof], common)
                table[section][prof] = merged
    if problems:
        raise ProfileError(problems)
    return table


@lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, dict[str, Any]]]:
    return load(_DIR)


def sections() -> list[str]:
    """Names of the notebook sections in ``profiles.d/*.yaml``."""
    return sorted(_table())


def get(section: str, profile: str) -> dict[str, Any]:
    """Settings of notebook ``section`` at ``profile`` (a fresh copy, safe to modify).

    A ``common`` entry of the section, if any, is merged under the profile's own keys; ``profile`` is added.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    table = _table()
    if section not in table:
        raise KeyError(f"no profile section {section!r}; known sections: {', '.join(sorted(table))}")
    merged = copy.deepcopy(table[section][profile])
    merged["profile"] = profile
    return merged
