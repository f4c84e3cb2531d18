"""Simulated calibration of the verdict rules (domaingap.stats.calibration)."""

import pytest

from domaingap import stats
from domaingap.stats import calibration


def test_a_valid_test_holds_its_level_and_a_large_effect_is_found():
    c = calibration.RULES["one_sample_t"](12, 2.0, 0.05, 400, 1)
    assert c.type_i_low <= 0.05 <= c.type_i_high + 0.02  # exact t under normal data: at its level
    assert c.power > 0.95 and c.flag == ""


def test_a_rule_that_always_rejects_is_flagged_and_one_that_never_does_too():
    always = stats.calibrate("always", lambda x: True, lambda r: (r.normal(size=3),), lambda r: (r.normal(size=3),),
                             n=(3,), effect=1.0, effect_name="d", n_sim=50)
    assert always.type_i == 1.0 and always.flag == "type-I error above alpha"
    never = stats.calibrate("never", lambda x: False, lambda r: (r.normal(size=3),), lambda r: (r.normal(size=3),),
                            n=(3,), effect=1.0, effect_name="d", n_sim=50)
    assert never.power == 0.0 and never.flag == "cannot reject at this n"
    with pytest.raises(ValueError, match="n_sim"):
        stats.calibrate("x", lambda x: True, lambda r: (1,), lambda r: (1,), n=(1,), effect=0, effect_name="d",
                        n_sim=5)


def test_auc_tost_at_7_vs_4_datasets_can_never_declare_equivalence():
    # the finding the P1 chapter relies on: at P1's dataset counts a +/- 0.25 AUC margin is out of reach
    c = calibration.RULES["tost_auc"](7, 4, (0.25, 0.75), 0.05, 100, 0)
    assert c.type_i <= 0.05 and c.power < 0.05 and c.flag == "cannot reject at this n"
    assert calibration._auc_to_d(0.5) == pytest.approx(0.0)


def test_ols_coefficient_t_holds_its_level_and_gains_power_with_degrees_of_freedom():
    # normal errors: the t of one coefficient is exact, whatever the other predictors
    small = calibration.RULES["ols"](5, 2, 0.7, 0.05, 400, 0)  # n = 5, two predictors
    large = calibration.RULES["ols"](40, 37, 0.7, 0.05, 400, 0)
    assert small.type_i_low <= 0.05 and large.type_i_low <= 0.05
    assert small.power < 0.4 < 0.95 < large.power
    with pytest.raises(ValueError, match="no predictor"):
        calibration.RULES["ols"](5, 4, 0.7, 0.05, 100, 0)


def test_spearman_tost_is_at_or_below_its_level_on_the_margin_and_finds_no_association_at_large_n():
    c = calibration.RULES["tost_spearman"](200, (-0.3, 0.3), 0.05, 300, 0)
    assert c.type_i_low <= 0.05 and c.power > 0.9
    assert calibration.for_claim("Fisher z TOST (Spearman rho)", (200,), (-0.3, 0.3), n_sim=300) == c
    assert isinstance(calibration.for_claim("OLS t (df = 8)", (11,), n_sim=100), stats.Calibration)


def test_mixedlm_wald_z_with_few_groups_is_liberal_and_with_many_is_not():
    # the Wald z's normal reference ignores that a between-group effect rests on few groups: liberal at 4
    few = calibration.RULES["mixed"](4, 40, 0.7, 0.05, 300, 0)
    many = calibration.RULES["mixed"](40, 400, 0.7, 0.05, 300, 0)
    assert few.type_i > many.type_i and few.type_i > 0.06
    assert many.type_i_low <= 0.05 and many.power > 0.95
    with pytest.raises(ValueError, match=">= 3 groups"):
        calibration.RULES["mixed"](2, 20, 0.7, 0.05, 50, 0)
    c = calibration.for_claim("MixedLM Wald z (40 task points)", (4,), n_sim=300)
    assert c == few


def test_page_trend_holds_its_level_and_detects_a_fall_over_layers():
    c = calibration.RULES["page"](10, 5, 1.5, 0.05, 300, 0)
    assert c.type_i_low <= 0.05 and c.power > 0.9 and c.n == (10,)
    assert "5 ordered" in calibration.for_claim("Page's trend test (asymptotic, k = 5)", (10,), n_sim=300).rule
    r = stats.page_trend([[3, 2, 1], [3, 1, 0], [5, 4, 2]], n_resamples=200)
    assert r.estimate == pytest.approx(-1.0) and r.test.endswith("k = 3)") and r.extra["p_decreasing"] < 0.05
    with pytest.raises(ValueError, match="k >= 3"):
        stats.page_trend([[1, 2], [2, 3]])


def test_item_rules_mcnemar_and_chance_permutation_hold_their_level():
    mc = calibration.RULES["mcnemar"](300, 0.1, 0.05, 400, 0)
    assert mc.type_i_low <= 0.05 and mc.power > 0.8
    ch = calibration.RULES["chance"](200, 3, 0.15, 0.05, 100, 0)
    assert ch.type_i_low <= 0.05 and ch.power > 0.8
    assert calibration.for_claim("McNemar (exact); deciding pair", (300,), n_sim=400) == mc


def test_paired_tost_needs_the_sd_and_cannot_reject_with_two_units():
    msg = calibration.for_claim("paired t TOST", (2,), (-1.0, 0.05))
    assert isinstance(msg, str) and "sd of the differences" in msg
    two = calibration.for_claim("paired t TOST", (2,), (-1.0, 0.05), scale=0.2, n_sim=300)
    assert two.flag == "cannot reject at this n"  # df = 1: the 90% interval is +/- 6.3 sd / sqrt(2) > 0.05
    many = calibration.RULES["tost_paired"](30, (-0.2, 0.2), 0.1, 0.05, 300, 0)
    assert many.type_i_low <= 0.05 and many.power > 0.9
