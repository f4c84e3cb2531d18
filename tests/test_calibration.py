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
