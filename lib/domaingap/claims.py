"""Claims ledger: each notebook records the verdict on the paper claims it tests; claims pages read them back.

A notebook that tests a claim calls :func:`record` with the statistic it computed and a verdict derived from
that statistic in code (never typed by hand). Records are JSON files under
``<artefacts_dir>/claims/<profile>/<paper>/<claim_id>.json``, so the per-paper claims pages and the book's
summary table are built from what the notebooks actually computed at the profile the book was built with.
Profiles never mix: a ``ci`` smoke run cannot leak verdicts into a ``default`` book.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import paths

VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not testable here")
PAPERS = ("P1", "P2", "P3")


@dataclass(frozen=True)
class Claim:
    paper: str  # "P1" | "P2" | "P3"
    claim_id: str  # short slug, unique within the paper, e.g. "kf_medical_higher"
    claim: str  # the paper's claim, in one sentence
    paper_value: str  # what the paper reports (figure/table and number), or "" if none is published
    ours: str  # our result, with numbers
    statistic: str  # the test and its value, e.g. "Welch t = 3.1, p = 0.004 (n = 5 vs 15)"
    verdict: str  # one of VERDICTS
    notebook: str  # notebook path relative to notebooks/, without suffix, e.g. "p1/fig1_intrinsic_properties"
    profile: str
    differences: str = ""  # protocol differences that matter for this claim
    recorded: str = ""


def verdict(estimate: float, p: float, *, expected_sign: int = 1, alpha: float = 0.05) -> str:
    """Verdict on a directional claim from a test: "reproduced" when the estimate has the claimed sign and
    p < alpha; "not reproduced" when it has the opposite sign and p < alpha; "inconclusive" otherwise
    (including NaN)."""
    if expected_sign not in (1, -1):
        raise ValueError(f"expected_sign must be +1 or -1, got {expected_sign!r}")
    if not (math.isfinite(estimate) and math.isfinite(p)):
        return "inconclusive"
    if p < alpha:
        sign = int(estimate > 0) - int(estimate < 0)  # numpy scalars too
        return "reproduced" if sign == expected_sign else "not reproduced"
    return "inconclusive"


def _dir(profile: str) -> Path:
    return paths.artefacts_dir() / "claims" / profile


def record(paper: str, claim_id: str, *, claim: str, paper_value: str, ours: str, statistic: str, verdict: str,
           notebook: str, profile: str, differences: str = "") -> Claim:
    """Write (atomically, replacing any earlier record) one claim's verdict; returns it."""
    if paper not in PAPERS:
        raise ValueError(f"paper must be one of {PAPERS}, got {paper!r}")
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    if not claim_id or any(c in claim_id for c in "/\\ "):
        raise ValueError(f"claim_id must be a non-empty slug without spaces or slashes, got {claim_id!r}")
    item = Claim(paper, claim_id, claim, paper_value, ours, statistic, verdict, notebook, profile, differences,
                 time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    out = _dir(profile) / paper / f"{claim_id}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(item), indent=1))
    os.replace(tmp, out)
    return item


def load(profile: str, paper: str | None = None) -> list[Claim]:
    """All recorded claims at ``profile`` (optionally one paper), ordered by paper, notebook, claim id."""
    root = _dir(profile)
    files = sorted(root.glob(f"{paper or '*'}/*.json")) if root.is_dir() else []
    items = [Claim(**json.loads(f.read_text())) for f in files]
    return sorted(items, key=lambda c: (c.paper, c.notebook, c.claim_id))


def table(profile: str, paper: str | None = None):
    """The claims as a pandas DataFrame (for the claims pages and the summary)."""
    import pandas as pd

    rows = [asdict(c) for c in load(profile, paper)]
    cols = ["paper", "claim", "paper_value", "ours", "statistic", "verdict", "notebook", "differences"]
    return pd.DataFrame(rows, columns=list(Claim.__dataclass_fields__))[cols] if rows else pd.DataFrame(columns=cols)


def markdown_table(table, *, with_paper: bool = True, empty: str = "*No claims have been recorded at this profile "
                                                                     "yet.*") -> str:
    """A GitHub-flavoured Markdown table of :func:`table`'s rows for a claims page (``display(Markdown(...))``).

    The verdict comes right after the claim so that it stays in view on narrow screens; the notebook column links
    to the rendered page as ``../<chapter>/<name>.html``, which resolves from every page under ``executed/`` (the
    book build does not rewrite links inside cell outputs)."""
    if not len(table):
        return empty

    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    head = (["paper"] if with_paper else []) + ["claim", "verdict", "ours", "statistic", "paper reports", "notebook"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table.itertuples():
        cells = ([row.paper] if with_paper else []) + [
            cell(row.claim), f"**{row.verdict}**", cell(row.ours), cell(row.statistic), cell(row.paper_value),
            f"[{row.notebook.split('/')[-1]}](../{row.notebook}.html)"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
