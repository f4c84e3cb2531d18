"""Artefacts are keyed by spec and code, written atomically, reused on resume and never stale."""

import json

import numpy as np
import pytest

from domaingap import artefacts, paths


@pytest.fixture(autouse=True)
def _tmp_artefacts(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ARTEFACTS_ENV, str(tmp_path / "art"))


def test_computed_once_then_reused():
    calls = []

    def compute(spec, work):
        calls.append(spec["n"])
        (work / "extra.txt").write_text("model")
        return {"loss": spec["n"] * 0.5}

    a = artefacts.cached("t", {"n": 3}, compute)
    b = artefacts.cached("t", {"n": 3}, compute)
    assert calls == [3] and a["loss"] == b["loss"] == 1.5
    assert (artefacts.folder("t", {"n": 3}) / "extra.txt").read_text() == "model"


def test_changed_spec_or_code_gets_a_new_key():
    assert artefacts.key({"n": 1}) != artefacts.key({"n": 2})
    assert artefacts.key({"n": 1, "m": 2}) == artefacts.key({"m": 2, "n": 1})
    assert artefacts.key({"n": 1}, depends=("data",)) != artefacts.key({"n": 1}, depends=("profiles",))


def test_failed_run_leaves_no_finished_artefact_and_resumes():
    def boom(spec, work):
        (work / "partial.bin").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        artefacts.cached("t", {"n": 9}, boom)
    assert artefacts.load("t", {"n": 9}) is None
    leftovers = list((paths.artefacts_dir() / "t").iterdir())
    assert leftovers == []
    assert artefacts.cached("t", {"n": 9}, lambda s, w: {"ok": True})["ok"] is True


def test_sweep_runs_only_missing_specs():
    seen = []
    compute = lambda spec, work: seen.append(spec["i"]) or {"i": spec["i"]}  # noqa: E731
    artefacts.sweep("s", [{"i": 0}, {"i": 1}], compute, progress=False)
    out = artefacts.sweep("s", [{"i": 0}, {"i": 1}, {"i": 2}], compute, progress=False)
    assert seen == [0, 1, 2] and [r["i"] for r in out] == [0, 1, 2]
    spec = json.loads((artefacts.folder("s", {"i": 2}) / "spec.json").read_text())
    assert spec["spec"] == {"i": 2}


def test_claim_verdicts_follow_the_statistic_and_records_roundtrip():
    from domaingap import claims

    assert claims.verdict(0.4, 0.01) == "reproduced"
    assert claims.verdict(np.float64(-0.4), np.float64(0.01)) == "not reproduced"  # numpy scalars from statsmodels
    assert claims.verdict(-0.4, 0.01) == "not reproduced"
    assert claims.verdict(-0.4, 0.01, expected_sign=-1) == "reproduced"
    assert claims.verdict(0.4, 0.2) == "inconclusive" and claims.verdict(float("nan"), 0.01) == "inconclusive"
    with pytest.raises(ValueError, match="verdict must be one of"):
        claims.record("P1", "x", claim="c", paper_value="", ours="", statistic="", verdict="yes",
                      notebook="p1/x", profile="ci")
    claims.record("P2", "b", claim="c", paper_value="", ours="o", statistic="s", verdict="inconclusive",
                  notebook="p2/x", profile="ci")
    assert [c.claim_id for c in claims.load("ci")] == ["b"] and claims.load("default") == []


def test_claims_markdown_table_escapes_pipes_and_links_the_rendered_page():
    import markdown_it

    from domaingap import claims

    assert "No claims" in claims.markdown_table(claims.table("nothing-recorded"))
    claims.record("P1", "a", claim="K_F | medical > natural", paper_value="2.5x", ours="2.06 [1.2, 3.0]",
                  statistic="MWU p = 0.15\nWelch p = 0.07", verdict="inconclusive",
                  notebook="p1/fig1_intrinsic_properties", profile="ci")
    text = claims.markdown_table(claims.table("ci"))
    # a GFM table: header + one row of 7 cells, the pipe in the claim escaped, the verdict right after the claim
    html = markdown_it.MarkdownIt("gfm-like").render(text)
    assert html.count("<th>") == 7 and html.count("<td>") == 7 and "K_F | medical &gt; natural" in html
    assert text.splitlines()[0].split("|")[2:4] == [" claim ", " verdict "]
    assert '<a href="../p1/fig1_intrinsic_properties.html">fig1_intrinsic_properties</a>' in html
    assert claims.markdown_table(claims.table("ci"), with_paper=False).splitlines()[0].startswith("| claim |")
