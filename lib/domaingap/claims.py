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
KINDS = ("directional", "null", "untestable")
# magnitude axis: does our CI contain the paper's number? ("no published number" when it gives none)
MAGNITUDES = ("consistent", "differs", "no interval", "no published number")


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
    # --- the structured second axis (issue 18); optional so that older records still load
    kind: str = "directional"  # one of KINDS: a directional claim, a null claim (decided by equivalence), untestable
    test: str = ""  # the test the verdict rests on
    estimand: str = ""  # what `estimate` is, e.g. "AUC", "r", "ratio of means"
    estimate: float | None = None  # the effect the verdict rests on, with its CI
    low: float | None = None
    high: float | None = None
    level: float | None = None  # of the CI (a TOST's is 1 - 2 alpha)
    p: float | None = None  # the verdict's p-value (TOST: the larger one-sided p), for multiplicity adjustment
    n: tuple[int, ...] = ()  # units per side (or in all)
    unit: str = ""  # the unit of analysis, e.g. "datasets", "models"
    margin: tuple[float, float] | None = None  # equivalence bounds of a null claim
    mde: str = ""  # minimum detectable effect at 80% power at this n, e.g. "Cohen's d = 1.9"
    published: float | None = None  # the paper's number, when it gives one (on `estimate`'s scale unless
    #                                 published_on is set)
    published_on: str = ""  # the estimand the magnitude check is on when it is not the verdict's own
    magnitude: str = "no published number"  # one of MAGNITUDES
    magnitude_text: str = ""  # e.g. "ours / P1 = 0.55 [0.31, 0.98]"
    # the verdict rule's simulated type-I error and power at this n (stats.calibration.for_claim), and its flag:
    # "type-I error above alpha" | "cannot reject at this n" | "" (calibrated, nothing to flag) | "not calibrated"
    calibration: str = ""
    flag: str = ""
    # the rule on this claim's own data with its labels shuffled (stats.relabel_calibration), when the chapter ran
    # it; its flag "rejects shuffled labels above alpha" is joined to `flag`
    relabel: str = ""


def verdict(estimate: float, p: float, *, expected_sign: int = 1, alpha: float | None = None) -> str:
    """Verdict on a directional claim from a test: "reproduced" when the estimate has the claimed sign and
    p < alpha; "not reproduced" when it has the opposite sign and p < alpha; "inconclusive" otherwise
    (including NaN). ``alpha`` defaults to the analysis plan's (:func:`domaingap.plan.alpha`)."""
    if alpha is None:
        from . import plan

        alpha = plan.alpha()
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


def _structured(result, published, mde, kind: str, unit: str) -> dict:
    """The second axis of a record from a :mod:`domaingap.stats` result (duck-typed, so that this module does
    not import stats, which imports :func:`verdict` from here)."""
    out: dict = {"kind": kind}
    if result is not None:
        if not getattr(result, "computable", True):
            out.update(test=result.test, n=tuple(result.n), unit=unit or result.unit)
        else:
            out.update(test=result.test, estimand=result.estimand, estimate=float(result.estimate),
                       low=None if result.low is None else float(result.low),
                       high=None if result.high is None else float(result.high),
                       level=None if result.level is None else float(result.level),
                       p=None if result.p is None else float(result.p), n=tuple(int(v) for v in result.n),
                       unit=unit or result.unit)
            if getattr(result, "margin", None) is not None:
                out["margin"] = (float(result.margin[0]), float(result.margin[1]))
    if out.get("test") and out.get("n"):
        out.update(_calibration(out["test"], out["n"], out.get("margin"), _sd_of_mean_ci(out)))
    if kind == "null" and out.get("margin") is None:
        raise ValueError("a null claim must be decided by an equivalence test: pass its result (with a margin)")
    if mde is not None:
        out["mde"] = mde if isinstance(mde, str) else (
            f"{mde.effect_name} = {mde.effect:.3g} at {mde.power:.0%} power" if mde.achievable
            else f"no {mde.effect_name} is detectable at {mde.power:.0%} power at this n")
    if published is not None and hasattr(published, "contains"):  # a stats.PublishedComparison on another scale
        pc = published
        out["published"], out["published_on"] = float(pc.published), pc.name or "another estimand"
        out["magnitude"] = "consistent" if pc.contains else "differs"
        text = (f"{out['published_on']}: ours {pc.estimate:.3g} [{pc.low:.3g}, {pc.high:.3g}] vs paper "
                f"{pc.published:.3g}: difference {pc.difference:+.3g} [{pc.difference_low:+.3g}, "
                f"{pc.difference_high:+.3g}]")
        if pc.ratio is not None:
            text += f", ratio {pc.ratio:.3g} [{pc.ratio_low:.3g}, {pc.ratio_high:.3g}]"
        out["magnitude_text"] = text
    elif published is not None and (out.get("low") is None or out.get("high") is None):
        # e.g. a signed-rank test with < 6 pairs has no 95% interval: the paper's number cannot be checked
        if out.get("estimate") is None:
            raise ValueError("a magnitude check needs the result the verdict rests on: pass result=")
        out["published"], out["magnitude"] = float(published), "no interval"
        out["magnitude_text"] = (f"ours {out['estimate']:.3g} (no {out.get('level') or 0.95:.0%} interval at n = "
                                 f"{' vs '.join(map(str, out.get('n', ())))}) vs paper {float(published):.3g}")
    elif published is not None:
        pub = float(published)
        if not math.isfinite(pub):
            raise ValueError(f"published must be a finite number, got {published!r}")
        lo, hi, est = out["low"], out["high"], out["estimate"]
        out["published"], out["magnitude"] = pub, "consistent" if lo <= pub <= hi else "differs"
        text = f"ours {est:.3g} [{lo:.3g}, {hi:.3g}] vs paper {pub:.3g}: difference {est - pub:+.3g} " \
               f"[{lo - pub:+.3g}, {hi - pub:+.3g}]"
        if pub != 0:
            r_lo, r_hi = sorted((lo / pub, hi / pub))
            text += f", ratio {est / pub:.3g} [{r_lo:.3g}, {r_hi:.3g}]"
        out["magnitude_text"] = text
    return out


def _sd_of_mean_ci(out: dict) -> float | None:
    """The sd of the units behind a t interval of a mean (``high - low = 2 t sd / sqrt(n)`` at the record's
    level), for the rules whose rates depend on it (a paired t TOST); None where there is no such interval."""
    n, lo, hi, level = out.get("n") or (), out.get("low"), out.get("high"), out.get("level")
    if len(n) != 1 or n[0] < 2 or lo is None or hi is None or not level:
        return None
    from scipy.stats import t

    return float((hi - lo) / 2 * math.sqrt(n[0]) / t.ppf(0.5 + level / 2, n[0] - 1))


def _calibration(test: str, n: tuple[int, ...], margin, scale: float | None = None) -> dict:
    """``calibration`` and ``flag`` of a record: its rule simulated at its n (imported late: stats imports this
    module); ``scale``: the units' sd, used only by rules that need it (paired t TOST)."""
    from . import plan
    from .stats.calibration import for_claim

    scale = scale if test.lower().startswith("paired t tost") else None  # keeps for_claim's cache keys shared
    cal = for_claim(test, tuple(int(v) for v in n), None if margin is None else tuple(margin), alpha=plan.alpha(),
                    scale=scale)
    if isinstance(cal, str):
        return {"calibration": cal, "flag": "not calibrated"}
    text = (f"{cal.rule}: type-I error {cal.type_i:.3f} [{cal.type_i_low:.3f}, {cal.type_i_high:.3f}], power "
            f"{cal.power:.3f} at {cal.effect_name} = {cal.effect:g} (n = {' vs '.join(map(str, cal.n))}, "
            f"{cal.n_sim} simulations each, alpha = {cal.alpha:g})")
    return {"calibration": text, "flag": cal.flag}


def record(paper: str, claim_id: str, *, claim: str, paper_value: str, ours: str, statistic: str, verdict: str,
           notebook: str, profile: str, differences: str = "", result=None, published=None,
           mde=None, kind: str = "directional", unit: str = "", relabel=None) -> Claim:
    """Write (atomically, replacing any earlier record) one claim's verdict; returns it.

    The second axis (issue 18) comes from the test the verdict rests on: ``result`` (a
    :class:`domaingap.stats.StatResult` or :class:`~domaingap.stats.EquivalenceResult`) fills the test, effect and
    CI, p, n and unit; ``published`` (the paper's number on the estimate's scale, or a
    :class:`~domaingap.stats.PublishedComparison` of another estimate, e.g. a ratio of means beside an AUC test,
    named by its ``name``) gives the magnitude verdict (does our CI contain it?); ``mde`` (a
    :class:`~domaingap.stats.PowerResult` or text) the minimum detectable effect at this n. ``kind="null"``
    claims must pass an equivalence ``result``. ``relabel`` (a :class:`~domaingap.stats.RelabelCalibration`):
    the verdict rule applied to this claim's data with its labels shuffled; its flag joins the record's.
    """
    if paper not in PAPERS:
        raise ValueError(f"paper must be one of {PAPERS}, got {paper!r}")
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if (kind == "untestable") != (verdict == "not testable here"):
        raise ValueError(f"verdict 'not testable here' goes with kind 'untestable' (got {verdict!r}, {kind!r})")
    if not claim_id or any(c in claim_id for c in "/\\ "):
        raise ValueError(f"claim_id must be a non-empty slug without spaces or slashes, got {claim_id!r}")
    extra = _structured(result, published, mde, kind, unit)
    if relabel is not None:
        extra["relabel"] = relabel.summary()
        if relabel.flag:
            extra["flag"] = "; ".join(f for f in (extra.get("flag", ""), relabel.flag) if f)
    item = Claim(paper, claim_id, claim, paper_value, ours, statistic, verdict, notebook, profile, differences,
                 time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra)
    out = _dir(profile) / paper / f"{claim_id}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(item), indent=1))
    os.replace(tmp, out)
    return item


def load(profile: str, paper: str | None = None) -> list[Claim]:
    """All recorded claims at ``profile`` (optionally one paper), ordered by paper, notebook, claim id."""
    root = _dir(profile)
    files = sorted(root.glob(f"{paper or '*'}/*.json")) if root.is_dir() else []
    items = [_from_json(json.loads(f.read_text())) for f in files]
    return sorted(items, key=lambda c: (c.paper, c.notebook, c.claim_id))


def _from_json(d: dict) -> Claim:
    for key in ("n", "margin"):  # JSON lists back to tuples
        if isinstance(d.get(key), list):
            d[key] = tuple(d[key])
    return Claim(**d)


def table(profile: str, paper: str | None = None):
    """The claims as a pandas DataFrame (for the claims pages and the summary)."""
    import pandas as pd

    rows = [asdict(c) for c in load(profile, paper)]
    cols = ["paper", "claim_id", "claim", "paper_value", "ours", "statistic", "verdict", "notebook", "differences",
            "kind", "test", "estimand", "estimate", "low", "high", "level", "p", "n", "unit", "margin", "mde",
            "published", "published_on", "magnitude", "magnitude_text", "calibration", "flag", "relabel"]
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


def html_table(table) -> str:
    """The claims as a compact HTML table for the claims pages: claim, verdict (raw, and after Holm when the
    table comes from :func:`domaingap.forest.adjusted`), magnitude and notebook, with our result, the statistic,
    the paper's number and the protocol differences folded into a ``<details>`` dropdown per claim."""
    import html

    if not len(table):
        return "<p><em>No claims have been recorded at this profile yet.</em></p>"
    holm = "verdict_holm" in table.columns
    head = ["paper", "claim", "verdict"] + (["after Holm"] if holm else []) + ["magnitude", "rule flag", "notebook"]
    out = ['<table class="claims-table">', "<thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead>",
           "<tbody>"]
    for _, r in table.iterrows():
        e = html.escape
        details = "".join(f"<p><b>{label}:</b> {e(str(r[col]))}</p>" for label, col in (
            ("ours", "ours"), ("statistic", "statistic"), ("paper reports", "paper_value"),
            ("magnitude vs the paper", "magnitude_text"), ("minimum detectable effect", "mde"),
            ("calibration of the rule at this n", "calibration"),
            ("the rule on shuffled labels", "relabel"), ("protocol differences", "differences"))
            if col in r and str(r[col] or "").strip())
        cells = [e(r["paper"]), f"{e(r['claim'])}<details><summary>details</summary>{details}</details>",
                 f"<b>{e(r['verdict'])}</b>"]
        if holm:
            cells.append(e(str(r["verdict_holm"])))
        name = r["notebook"].split("/")[-1]
        flag = r.get("flag", "")
        cells += [e(str(r.get("magnitude", ""))), e(str(flag)) if isinstance(flag, str) and flag else "",
                  f'<a href="../{e(r["notebook"])}.html">{e(name)}</a>']
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)
