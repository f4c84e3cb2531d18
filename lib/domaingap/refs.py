"""The nbval reference notebooks (``tests/notebooks/<chapter>__<name>.ipynb``, the ci profile's executed
notebooks): are they current, and the ci-profile book assembled from them.

    python -m domaingap.runner refs          # regenerate them (runs every notebook at ci)
    python -m domaingap.runner check-refs    # fail if one is missing or its code differs from its MyST source
"""

from __future__ import annotations

from pathlib import Path

from . import paths
from .runner import REFS_DIR, StaleReferences, code_cells, sources, target, to_notebook

__all__ = ["assemble_refs", "stale_refs"]


def stale_refs() -> list[str]:
    """Problems with the nbval references: missing, orphaned, or code differing from the MyST source."""
    import nbformat

    problems = []
    expected = {target(s, REFS_DIR, flat=True): s for s in sources()}
    for ref, source in expected.items():
        if not ref.is_file():
            problems.append(f"{ref.relative_to(paths.REPO_ROOT)} is missing")
            continue
        if code_cells(nbformat.read(ref, as_version=4)) != code_cells(to_notebook(source)):
            problems.append(f"{ref.relative_to(paths.REPO_ROOT)} differs from {source.relative_to(paths.REPO_ROOT)}")
    for ref in REFS_DIR.glob("*.ipynb"):
        if ref not in expected and not ref.name.endswith(".tmp.ipynb"):
            problems.append(f"{ref.relative_to(paths.REPO_ROOT)} has no source under notebooks/")
    return problems


def assemble_refs(book_dir: Path) -> None:
    """Make ``book_dir`` a copy of book/ whose executed notebooks are the ci-profile references, so the HTML book
    can be built and browser-checked in CI without running every notebook a second time (and without touching a
    default-profile build in book/)."""
    import shutil

    problems = stale_refs()
    if problems:
        raise StaleReferences("nbval references are out of date (regenerate with: make refs):\n" +
                              "\n".join(problems))
    if book_dir.exists():
        shutil.rmtree(book_dir)
    shutil.copytree(paths.BOOK_DIR, book_dir, ignore=shutil.ignore_patterns("_build", "executed"))
    out_dir = book_dir / "executed"
    for source in sources():
        dest = target(source, out_dir, flat=False)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target(source, REFS_DIR, flat=True), dest)
    print(f"assembled {len(sources())} executed ci-profile notebooks into {out_dir}")
