"""Check that two artefact folders hold the same results, e.g. a sweep run sequentially and on a Dask cluster.

    DOMAINGAP_ARTEFACTS=/tmp/seq  python -m domaingap.chapters.p1 --profile ci --executor sequential
    DOMAINGAP_ARTEFACTS=/tmp/dask python -m domaingap.chapters.p1 --profile ci --executor dask
    python scripts/compare_artefacts.py /tmp/seq /tmp/dask

Every ``<kind>/<key>/result.json`` of the first folder must exist in the second with equal content (the wall-time
field ``seconds`` excepted), and every other file of the artefact (e.g. ``model.pt``) must be byte-identical
(``record.json`` is the same by construction of the key; ``MANIFEST.json`` holds the checksum of result.json, whose
wall time differs). Exits non-zero on any difference.
"""

from __future__ import annotations

import filecmp
import json
import sys
from pathlib import Path


def strip(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "seconds"}  # wall time differs by nature


def compare(a: Path, b: Path) -> list[str]:
    problems = []
    results = sorted(a.glob("*/*/result.json"))
    if not results:
        return [f"no artefacts (*/*/result.json) under {a}"]
    for ra in results:
        rel = ra.parent.relative_to(a)
        rb = b / rel / "result.json"
        if not rb.is_file():
            problems.append(f"{rel}: missing in {b}")
            continue
        if strip(json.loads(ra.read_text())) != strip(json.loads(rb.read_text())):
            problems.append(f"{rel}: result.json differs")
        for fa in ra.parent.iterdir():
            if fa.name in ("result.json", "record.json", "MANIFEST.json") or not fa.is_file():
                continue
            fb = b / rel / fa.name
            if not fb.is_file() or not filecmp.cmp(fa, fb, shallow=False):
                problems.append(f"{rel}: {fa.name} differs or is missing")
    print(f"{len(results)} artefacts compared, {len(problems)} problems")
    return problems


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    found = compare(Path(sys.argv[1]), Path(sys.argv[2]))
    for p in found:
        print(p)
    sys.exit(1 if found else 0)
