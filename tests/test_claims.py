"""The claims ledger's second axis (effect, CI, test, n, magnitude vs the paper, MDE) and book-wide Holm."""

import math

import numpy as np
import pytest

from domaingap import claims, forest, paths, stats


@pytest.fixture(autouse=True)
def _tmp_artefacts(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ARTEFACTS_ENV, str(tmp_path / "art"))


BASE = dict(claim="c", paper_value="pv", ours="o", statistic="s", notebook="p1/x", profile="ci")


def test_record_fills_the_second_axis_from_a_test_result_and_checks_the_published_number():
    r = stats.pearson([1, 2, 3, 4, 5, 6], [1.1, 1.9, 3.2, 3.8, 5.3, 5.9], unit="datasets")
    c = claims.record("P1", "corr", verdict="reproduced", result=r, published=0.70,
                      mde=stats.mde_correlation(6), **BASE)
    assert c.test == "Pearson r" and c.estimand == "r" and c.n == (6,) and c.unit == "datasets"
    assert c.low < c.estimate < c.high and c.p == pytest.approx(r.p)
    # 0.70 lies below the Fisher-z CI of r ~ 0.99 -> the magnitude differs from the paper's
    assert c.published == 0.70 and c.magnitude == ("consistent" if c.low <= 0.70 <= c.high else "differs")
    assert c.magnitude == "differs" and "ratio" in c.magnitude_text
    assert c.mde.startswith("r = ")
    (back,) = claims.load("ci", "P1")
    assert back == c  # tuples survive the JSON round trip


def test_null_claims_need_an_equivalence_result_and_untestable_goes_with_its_verdict():
    a, b = [1.0, 2, 3, 4, 5, 6, 7], [1.5, 2.5, 3.5, 4.5]
    with pytest.raises(ValueError, match="equivalence test"):
        claims.record("P1", "null", verdict="reproduced", kind="null", result=stats.mann_whitney(a, b), **BASE)
    eq = stats.tost_auc(a, b, 0.25, unit="datasets")
    c = claims.record("P1", "null", verdict=stats.equivalence_verdict(eq), kind="null", result=eq, **BASE)
    assert c.margin == (0.25, 0.75) and c.kind == "null" and c.p == pytest.approx(eq.p)
    with pytest.raises(ValueError, match="not testable here"):
        claims.record("P3", "x", verdict="not testable here", **BASE)
    c = claims.record("P3", "x", verdict="not testable here", kind="untestable", **BASE)
    assert c.magnitude == "no published number" and c.p is None


def test_old_records_without_the_second_axis_still_load(tmp_path):
    import json

    out = paths.artefacts_dir() / "claims" / "ci" / "P2"
    out.mkdir(parents=True)
    (out / "old.json").write_text(json.dumps({"paper": "P2", "claim_id": "old", "verdict": "inconclusive",
                                              "recorded": "", "differences": "", **BASE}))
    (c,) = claims.load("ci", "P2")
    assert c.kind == "directional" and c.estimate is None and c.magnitude == "no published number"


def test_holm_within_each_paper_turns_weak_verdicts_inconclusive():
    ps = {"a": 0.01, "b": 0.04, "c": 0.30}
    for cid, p in ps.items():
        res = stats.StatResult(test="t", estimand="d", estimate=1.0, low=0.1, high=2.0, level=0.95, p=p, n=(5,))
        claims.record("P1", cid, verdict=claims.verdict(1.0, p), result=res, **BASE)
    claims.record("P2", "lone", verdict="reproduced", **BASE)  # no structured record
    t = forest.adjusted(claims.table("ci"))
    row = t.set_index("claim_id")
    # Holm over 3: 0.03, 0.08, 0.30 (step-down, monotone)
    assert row.at["a", "p_holm"] == pytest.approx(0.03) and row.at["b", "p_holm"] == pytest.approx(0.08)
    assert row.at["a", "verdict_holm"] == "reproduced" and row.at["b", "verdict_holm"] == "inconclusive"
    assert row.at["lone", "verdict_holm"] == "reproduced" and "not adjusted" in row.at["lone", "adjusted_note"]
    assert (row.loc[["a", "b", "c"], "family_size"] == 3).all()
    fig = forest.forest_plot(t)
    assert fig is not None and len(fig.axes) == 1  # one estimand -> one panel
    assert forest.forest_plot(t.iloc[0:0]) is None
    assert math.isfinite(np.float64(row.at["c", "p_holm"]))


def test_a_magnitude_check_on_another_estimate_is_named_and_kept_off_the_forest_axis():
    a, b = [3.0, 4, 5, 6, 7, 8, 9], [1.0, 2, 2.5, 3]
    cmp = stats.compare_independent(a, b, unit="datasets")
    pc = stats.compare_to_published(cmp.ratio, 2.5, name="ratio of means")
    c = claims.record("P1", "kf", verdict="reproduced", result=cmp.mwu, published=pc, **BASE)
    assert c.estimand == "AUC" and c.published == 2.5 and c.published_on == "ratio of means"
    assert c.magnitude == ("consistent" if pc.contains else "differs") and c.magnitude_text.startswith("ratio")


def test_a_published_number_without_our_interval_is_no_interval_not_a_crash():
    res = stats.signed_rank([0.1, 0.3, -0.2, 0.4])  # 4 pairs: no 95% interval exists
    c = claims.record("P3", "few", verdict="inconclusive", result=res, published=-0.1, **BASE)
    assert c.magnitude == "no interval" and c.published == -0.1 and "no 95% interval" in c.magnitude_text


def test_each_record_carries_its_rules_calibration_at_its_n_and_flags_a_rule_that_cannot_reject():
    from domaingap.stats.calibration import for_claim

    # Mann-Whitney at 3 vs 2 datasets: its smallest two-sided p is 0.2 > alpha, so it never rejects
    small = claims.record("P1", "small", verdict="inconclusive", result=stats.mann_whitney([1.0, 2, 3], [4.0, 5]),
                          **BASE)
    assert small.flag == "cannot reject at this n" and "power 0.000" in small.calibration
    # at 7 vs 7 it is calibrated (type-I error within alpha's Monte-Carlo error) and can reject
    a, b = list(np.linspace(0, 1, 7)), list(np.linspace(0.5, 1.5, 7))
    big = claims.record("P1", "big", verdict="inconclusive", result=stats.mann_whitney(a, b), **BASE)
    cal = for_claim("Mann-Whitney U (exact)", (7, 7), alpha=0.05)
    assert big.flag == "" and cal.type_i_low <= 0.05 and cal.power > 0.5
    # a test without a simulated rule says so instead of pretending
    assert for_claim("Kruskal-Wallis H", (7,)).startswith("not calibrated: no simulated rule for 'Kruskal-Wallis H'")
    assert for_claim("paired t TOST", (2,)).startswith("not calibrated")  # an equivalence test is not its t-test
    (back_big, back_small) = claims.load("ci", "P1")
    assert back_small.flag == "cannot reject at this n" and back_big.calibration == big.calibration
    assert "rule flag" in claims.html_table(claims.table("ci", "P1"))
    # a paired TOST record carries the sd its calibration needs, read back from its 90% t interval
    tost = claims.record("P3", "tost", verdict="inconclusive", kind="null",
                         result=stats.tost_paired([0.5, -0.4, 0.3, -0.6], margin=(-1.0, 0.05)), **BASE)
    sd = f"sd {np.std([0.5, -0.4, 0.3, -0.6], ddof=1):.3g} plugged in"
    assert sd in tost.calibration and tost.flag == "cannot reject at this n"


def test_a_record_carries_its_rule_on_shuffled_labels_and_its_flag():
    labels = np.array(["medical"] * 3 + ["natural"] * 3)
    always = stats.relabel_calibration("domains", lambda lab: True, stats.domain_relabellings(labels))
    never = stats.relabel_calibration("domains", lambda lab: False, stats.domain_relabellings(labels))
    a = claims.record("P1", "shuffled_bad", verdict="inconclusive", result=stats.mann_whitney([1.0, 2, 3], [4.0, 5, 6]),
                      relabel=always, **BASE)
    b = claims.record("P1", "shuffled_ok", verdict="inconclusive", result=stats.mann_whitney([1.0, 2, 3], [4.0, 5, 6]),
                      relabel=never, **BASE)
    assert a.flag.endswith("rejects shuffled labels above alpha") and "20 of every 20" in a.relabel
    assert "rejects shuffled" not in b.flag and "0 of every 20" in b.relabel
    assert "the rule on shuffled labels" in claims.html_table(claims.table("ci", "P1"))
