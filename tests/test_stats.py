"""domaingap.stats against independent references: hand arithmetic, textbook values, scipy/statsmodels called
directly, brute-force enumeration, and small seeded simulations of error rates and coverage."""

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from domaingap import claims
from domaingap import stats as S

Z975 = 1.959963984540054  # normal 0.975 quantile
Z80 = 0.8416212335729143  # normal 0.80 quantile


@pytest.fixture(autouse=True)
def no_leaked_warnings():
    """Wrappers capture what scipy/statsmodels warn about; nothing may reach the caller's output."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ----------------------------------------------------------------------------------------------- bootstrap

def test_bootstrap_ci_is_scipys_bca_with_the_same_seed():
    v = np.random.default_rng(0).exponential(size=25)
    res = S.bootstrap_ci(v, np.median, n_resamples=999, seed=3, unit="tasks")
    ref = sps.bootstrap((v,), np.median, n_resamples=999, method="BCa", rng=np.random.default_rng(3))
    assert (res.low, res.high) == (ref.confidence_interval.low, ref.confidence_interval.high)
    assert res.estimate == np.median(v) and res.p is None and res.n == (25,) and "BCa" in res.ci_method
    assert res.summary().endswith("n = 25 tasks")


def test_bootstrap_ci_of_constant_values_falls_back_to_percentile_and_says_so():
    res = S.bootstrap_ci([3.0, 3.0, 3.0], n_resamples=200)
    assert (res.estimate, res.low, res.high) == (3.0, 3.0, 3.0)  # no variation seen: zero-width, not NaN
    assert res.ci_method.startswith("percentile") and "BCa interval not computable" in res.notes[0]


def test_bootstrap_ci_coverage_of_a_mean_is_near_nominal():
    rng = np.random.default_rng(11)
    hits = []
    for i in range(150):
        r = S.bootstrap_ci(rng.normal(size=30), n_resamples=400, seed=i)
        hits.append(r.low < 0 < r.high)
    assert 0.86 <= np.mean(hits) <= 0.99  # nominal 0.95; 150 runs: sd 0.018


def test_cluster_bootstrap_weighs_groups_equally_and_enumerates_two_groups():
    # groups a = [1, 1, 1], b = [5]: group means 1 and 5, estimate (1 + 5) / 2 = 3, not the pooled mean 2.
    # Members are constant, so a resample mean is 1 (aa), 3 (ab, ba) or 5 (bb): the 95% interval is [1, 5].
    res = S.cluster_bootstrap_ci([1.0, 1.0, 1.0, 5.0], ["a", "a", "a", "b"], n_resamples=500)
    assert res.estimate == 3.0 and (res.low, res.high) == (1.0, 5.0) and res.extra["n_groups"] == 2
    one = S.cluster_bootstrap_ci([1.0, 2.0, 3.0], ["x"] * 3, n_resamples=300)
    assert one.estimate == 2.0 and "one group only" in one.notes[0]
    assert one.low < 2.0 < one.high  # members are resampled in the second stage ...
    fixed = S.cluster_bootstrap_ci([1.0, 2.0, 3.0], ["x"] * 3, n_resamples=300, resample_members=False)
    assert (fixed.low, fixed.high) == (2.0, 2.0)  # ... and only groups without it


def test_cluster_bootstrap_covers_where_the_iid_bootstrap_does_not():
    # 6 groups x 10 values, between-group sd 1, within 0.2: the mean's SE is ~0.41, an i.i.d. bootstrap sees ~0.13
    rng = np.random.default_rng(5)
    groups = np.repeat(np.arange(6), 10)
    cluster, iid = [], []
    for i in range(120):
        v = rng.normal(size=6)[groups] + rng.normal(scale=0.2, size=60)
        c = S.cluster_bootstrap_ci(v, groups, n_resamples=400, seed=i)
        b = S.bootstrap_ci(v, n_resamples=400, seed=i, method="percentile")
        cluster.append(c.low < 0 < c.high)
        iid.append(b.low < 0 < b.high)
    assert np.mean(cluster) > 0.75 and np.mean(iid) < 0.65


# ----------------------------------------------------------------------------------------------- two samples

def test_mann_whitney_auc_by_hand_and_scipy_p():
    a, b = [1, 2, 3, 4.5], [0, 1.5, 2.5]
    # pairs with a > b: 1 > 0; 2 > 0, 1.5; 3 > all three; 4.5 > all three -> U = 1 + 2 + 3 + 3 = 9 of 12
    res = S.mann_whitney(a, b, unit="datasets")
    assert res.statistic == 9 and res.estimate == 0.75
    assert res.p == sps.mannwhitneyu(a, b, method="exact").pvalue and res.test == "Mann-Whitney U (exact)"
    assert 0 <= res.low < 0.75 < res.high <= 1 and res.n == (4, 3)


def test_mwu_minimum_p_is_two_over_35_for_4_vs_3():
    # C(7, 3) = 35 equally likely rank splits; complete separation is the most extreme in each direction
    assert S.mwu_min_pvalue(4, 3) == pytest.approx(2 / 35) == pytest.approx(0.0571, abs=1e-4)
    assert S.mwu_min_pvalue(4, 3, "greater") == pytest.approx(1 / 35)
    for n1, n2 in [(2, 3), (3, 3), (5, 4), (6, 2)]:
        x, y = np.arange(n1) + n2, np.arange(n2)
        assert S.mwu_min_pvalue(n1, n2) == pytest.approx(sps.mannwhitneyu(x, y, method="exact").pvalue)
    res = S.compare_domains([4, 5, 6, 7, 1, 2, 3], ["medical"] * 4 + ["natural"] * 3)
    assert res.mwu.estimate == 1.0 and res.mwu.p == pytest.approx(2 / 35) and not res.can_reject(0.05)
    assert res.can_reject(0.06) and "cannot reach p < 0.05" in res.summary()


def test_mann_whitney_with_ties_is_an_exact_permutation_test():
    a, b = np.array([1, 2, 2, 3.0]), np.array([2, 0, 1.0])
    res = S.mann_whitney(a, b)
    pooled = np.concatenate([a, b])
    us = []
    for idx in itertools.combinations(range(7), 4):  # all C(7, 4) = 35 splits
        rest = np.setdiff1d(np.arange(7), idx)
        us.append(sps.mannwhitneyu(pooled[list(idx)], pooled[rest]).statistic)
    us = np.array(us)
    # two-sided: twice the smaller tail
    brute = min(1.0, 2 * min(np.mean(us >= res.statistic), np.mean(us <= res.statistic)))
    assert "permutation" in res.test and res.p == pytest.approx(brute)


def test_mann_whitney_type_one_error_is_near_nominal():
    rng = np.random.default_rng(0)
    rejected = [S.mann_whitney(rng.normal(size=8), rng.normal(size=8)).p < 0.05 for _ in range(800)]
    assert 0.025 <= np.mean(rejected) <= 0.07  # exact test at 8 vs 8: size just under 0.05


def test_welch_t_by_hand():
    a, b = [1, 2, 3, 4], [2, 4, 6]
    # means 2.5, 4; variances 5/3, 4; se^2 = (5/3)/4 + 4/3 = 1.75; t = -1.5 / sqrt(1.75)
    # df = 1.75^2 / ((5/12)^2 / 3 + (4/3)^2 / 2)
    se, df = math.sqrt(1.75), 1.75 ** 2 / ((5 / 12) ** 2 / 3 + (4 / 3) ** 2 / 2)
    res = S.welch_t(a, b)
    assert res.estimate == -1.5 and res.statistic == pytest.approx(-1.5 / se)
    assert res.extra["df"] == pytest.approx(df) and res.p == pytest.approx(2 * sps.t.sf(1.5 / se, df))
    half = sps.t.ppf(0.975, df) * se
    assert (res.low, res.high) == pytest.approx((-1.5 - half, -1.5 + half))
    greater = S.welch_t(a, b, alternative="greater")
    # the interval stays two-sided; the one-sided p is P(T > t_obs)
    assert (greater.low, greater.high) == (res.low, res.high) and greater.p == pytest.approx(sps.t.sf(-1.5 / se, df))


def test_hodges_lehmann_and_ratio_by_hand():
    # differences a_i - b_j of [1, 2, 3] and [0, 1]: 1, 0, 2, 1, 3, 2 -> median of 0,1,1,2,2,3 = 1.5
    hl = S.hodges_lehmann([1, 2, 3], [0, 1], n_resamples=300)
    assert hl.estimate == 1.5 and hl.low <= 1.5 <= hl.high
    ratio = S.ratio_of_means([2, 4, 6], [1, 3, 2], n_resamples=300)  # 4 / 2
    assert ratio.estimate == 2.0 and ratio.low < 2.0 < ratio.high


def test_compare_independent_marks_what_it_cannot_compute():
    res = S.compare_independent([1, 1, 1], [2, 2, 2], labels=("med", "nat"), n_resamples=200)
    assert not res.welch.computable and "both are constant" in res.welch.reason
    assert res.ratio.computable and res.ratio.estimate == 0.5 and res.means == (1.0, 2.0)
    res = S.compare_independent([1, 2, 3], [0.5, -1, 2], n_resamples=200)
    assert not res.ratio.computable and "b > 0" in res.ratio.reason and res.welch.computable


# ----------------------------------------------------------------------------------------------- paired

def test_paired_t_matches_scipy_ttest_rel():
    x, y = np.array([0.61, 0.66, 0.58, 0.70, 0.64]), np.array([0.60, 0.61, 0.59, 0.65, 0.60])
    res = S.paired_t(x, y, alternative="greater")
    ref = sps.ttest_rel(x, y, alternative="greater")
    ci = sps.t.interval(0.95, 4, loc=(x - y).mean(), scale=sps.sem(x - y))
    assert res.p == pytest.approx(ref.pvalue) and (res.low, res.high) == pytest.approx(ci)
    m = S.mean_ci(x)
    assert (m.low, m.high) == pytest.approx(sps.t.interval(0.95, 4, loc=x.mean(), scale=sps.sem(x)))


def test_wilcoxon_by_hand_and_zero_policy():
    # d = 1, 2, -3, 4, 5: ranks of |d| are 1..5, W+ = 1 + 2 + 4 + 5 = 12, W- = 3.
    # P(W+ >= 12) under H0: subsets of {1..5} with sum >= 12 <=> complement sum <= 3: {}, {1}, {2}, {3}, {1,2}
    # -> 5/32; two-sided p = 10/32. Rank-biserial (12 - 3) / 15 = 0.6.
    res = S.wilcoxon_signed_rank([1, 2, -3, 4, 5])
    assert res.statistic == 12 and res.p == pytest.approx(10 / 32) and res.extra["rank_biserial"] == pytest.approx(0.6)
    with_zero = S.wilcoxon_signed_rank([0, 1, 2, -3, 4, 5])  # the zero is dropped (Wilcoxon's method)
    assert with_zero.p == pytest.approx(10 / 32) and with_zero.extra["n_zero"] == 1
    # Walsh averages of 1, 2, 4: 1, 1.5, 2.5, 2, 3, 4 -> median of 1, 1.5, 2, 2.5, 3, 4 = 2.25
    assert S.wilcoxon_signed_rank([1, 2, 4]).estimate == 2.25
    # all differences zero: p = 1 and estimate 0 for every paired test, no NaN, no error
    zero = S.compare_paired([0.7, 0.8, 0.9], [0.7, 0.8, 0.9])
    for r in (zero.t, zero.wilcoxon, zero.sign_flip):
        assert r.p == 1.0 and r.estimate == 0.0
    assert zero.n_zero == 3 and zero.wilcoxon.extra["rank_biserial"] == 0.0


def test_wilcoxon_with_ties_matches_brute_force_sign_flips():
    d = np.array([1, 1, 2, -2, 3.0])
    ranks = sps.rankdata(np.abs(d))
    w_obs = ranks[d > 0].sum()
    ws = np.array([ranks[np.array(s) > 0].sum() for s in itertools.product([-1, 1], repeat=5)])
    brute = min(1.0, 2 * min(np.mean(ws >= w_obs), np.mean(ws <= w_obs)))
    res = S.wilcoxon_signed_rank(d)
    assert "permutation" in res.test and res.p == pytest.approx(brute)


def test_sign_flip_exact_and_monte_carlo_p():
    # exact: of the 16 sign patterns of 1, 2, 3, 4 only all-positive reaches the observed mean 2.5
    assert S.sign_flip_test([1, 2, 3, 4], alternative="greater").p == pytest.approx(1 / 16)
    # random flips (2^20 > R): nothing but the identity reaches the observed mean, so p = (0 + 1) / (R + 1)
    res = S.sign_flip_test(np.arange(1.0, 21.0), alternative="greater", n_resamples=999, seed=1)
    assert res.p == pytest.approx(1 / 1000) and "random" in res.test


def test_constant_nonzero_differences_have_no_t_but_rank_tests_run():
    res = S.compare_paired([1.0, 1.0, 1.0, 1.0])
    assert not res.t.computable and "all 4 equal 1" in res.t.reason
    assert res.wilcoxon.p == pytest.approx(2 / 16) and res.sign_flip.p == pytest.approx(2 / 16)
    row = res.row()  # a table row: the t interval is NaN, named as such, never a silent blank
    assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"]) and row["n_pos"] == 4 and row["mean"] == 1.0


def test_paired_row_matches_scipy():
    d = np.array([0.1, 0.2, 0.15, 0.3, 0.05, 0.12, -0.02])
    row = S.compare_paired(d).row()
    ci = sps.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert row["mean"] == pytest.approx(d.mean())
    assert row["wilcoxon_p"] == pytest.approx(sps.wilcoxon(d).pvalue) and (row["n_pos"], row["n_neg"]) == (6, 1)
    assert row["median"] == pytest.approx(0.12) and row["n"] == 7 and row["n_zero"] == 0


# ----------------------------------------------------------------------------------------------- correlation

def _with_correlation(r: float, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x = (x - x.mean()) / x.std()
    e = rng.normal(size=n)
    e -= e.mean() + (e @ x) / (x @ x) * x  # orthogonal to x and centred
    e /= e.std()
    return x, r * x + math.sqrt(1 - r ** 2) * e  # sample correlation exactly r


def test_pearson_fisher_interval_textbook_r_05_n_30():
    x, y = _with_correlation(0.5, 30)
    res = S.pearson(x, y)
    # atanh(0.5) = 0.5493, se = 1/sqrt(27) = 0.1925, 0.5493 -/+ 1.96 * 0.1925 = 0.1721, 0.9265 -> tanh: 0.170, 0.729
    assert res.estimate == pytest.approx(0.5)
    assert (res.low, res.high) == pytest.approx((0.1704, 0.7290), abs=2e-4)
    assert res.p == pytest.approx(sps.pearsonr(x, y).pvalue)
    one_sided = S.pearson(x, y, alternative="greater")
    assert (one_sided.low, one_sided.high) == (res.low, res.high) and one_sided.p == pytest.approx(res.p / 2)


def test_spearman_matches_scipy_and_its_options():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=25), rng.integers(0, 5, 25).astype(float)  # ties in y
    res = S.spearman(x, y, n_resamples=300)
    ref = sps.spearmanr(x, y)
    assert res.estimate == pytest.approx(ref.statistic) and res.p == pytest.approx(ref.pvalue)
    assert -1 <= res.low <= res.estimate <= res.high <= 1
    # 5! = 120 pairings enumerated: only the identity reaches rho = 1
    perm = S.spearman([1, 2, 3, 4, 5], [2, 4, 6, 8, 10], p_method="permutation", alternative="greater")
    assert perm.p == pytest.approx(1 / 120)


def test_spearman_within_groups_and_cluster_resampling():
    rng = np.random.default_rng(1)
    groups = np.repeat([0, 1, 2, 3, 4], 20)
    offset = rng.normal(scale=3, size=5)[groups]
    x, y = offset + rng.normal(size=100), offset + rng.normal(size=100)  # correlated only through the groups
    pooled = S.spearman(x, y, n_resamples=300)
    within = S.spearman(x, y, groups=groups, within_groups=True, n_resamples=300)
    means = {g: (x[groups == g].mean(), y[groups == g].mean()) for g in range(5)}
    cx = x - np.array([means[g][0] for g in groups])
    cy = y - np.array([means[g][1] for g in groups])
    assert within.estimate == pytest.approx(sps.spearmanr(cx, cy).statistic) and abs(within.estimate) < 0.3
    assert pooled.estimate > 0.6
    clustered = S.spearman(x, y, groups=groups, resample="groups", n_resamples=300)
    assert clustered.high - clustered.low > pooled.high - pooled.low  # 5 clusters carry less information


# ----------------------------------------------------------------------------------------------- equivalence

def test_tost_two_sample_by_hand_and_its_interval_duality():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=60), rng.normal(0.1, 1.5, size=40)
    res = S.tost_two_sample(a, b, 0.8)
    va, vb = a.var(ddof=1) / 60, b.var(ddof=1) / 40
    se, df = math.sqrt(va + vb), (va + vb) ** 2 / (va ** 2 / 59 + vb ** 2 / 39)
    diff = a.mean() - b.mean()
    assert res.p_lower == pytest.approx(sps.t.sf((diff + 0.8) / se, df))
    assert res.p_upper == pytest.approx(sps.t.cdf((diff - 0.8) / se, df))
    assert res.level == 0.9 and res.margin == (-0.8, 0.8)
    assert (res.low, res.high) == pytest.approx((diff - sps.t.ppf(0.95, df) * se, diff + sps.t.ppf(0.95, df) * se))
    assert res.equivalent == (-0.8 < res.low and res.high < 0.8)


def test_tost_declares_clear_cases():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=200), rng.normal(size=200)
    same = S.tost_two_sample(a, b, 0.3)
    shifted = S.tost_two_sample(a + 1.0, b, 0.3)
    assert same.equivalent and same.p < 0.01 and not shifted.equivalent and shifted.p > 0.99
    assert S.equivalence_verdict(same) == "reproduced" and S.equivalence_verdict(shifted) == "not reproduced"
    vague = S.tost_two_sample(a[:4], b[:4], 0.3)
    assert not vague.equivalent and S.equivalence_verdict(vague) == "inconclusive"
    d = rng.normal(0, 0.1, size=30)
    assert S.tost_paired(d, margin=0.2).equivalent and not S.tost_paired(d + 0.5, margin=0.2).equivalent


def test_tost_type_one_error_at_the_margin_is_near_alpha():
    # true difference on the upper bound: H0 holds, the TOST should reject in ~5% of samples. (With a margin
    # of the order of the standard error the TOST is far below alpha - its 90% CI hardly fits inside the bounds -
    # so the margin here is 1 against an SE of sqrt(2/20) = 0.32.)
    rng = np.random.default_rng(4)
    hits = [S.tost_two_sample(rng.normal(1.0, 1, 20), rng.normal(0, 1, 20), 1.0).equivalent for _ in range(800)]
    assert 0.025 <= np.mean(hits) <= 0.075


def test_tost_correlation_on_fisher_z_by_hand():
    x, y = _with_correlation(0.05, 200, seed=1)
    res = S.tost_correlation(x, y, 0.2)
    se = 1 / math.sqrt(197)
    assert res.p_lower == pytest.approx(sps.norm.sf((math.atanh(0.05) - math.atanh(-0.2)) / se))
    assert res.p_upper == pytest.approx(sps.norm.cdf((math.atanh(0.05) - math.atanh(0.2)) / se))
    assert res.equivalent
    x, y = _with_correlation(0.5, 200, seed=1)
    assert not S.tost_correlation(x, y, 0.2).equivalent


def test_tost_auc_against_half():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=80), rng.normal(size=80)
    res = S.tost_auc(a, b, 0.15)
    assert res.estimate == pytest.approx(S.mann_whitney(a, b).estimate) and res.margin == (0.35, 0.65)
    assert res.equivalent and res.low < res.estimate < res.high and res.level == 0.9
    shifted = S.tost_auc(a + 0.3, b, 0.15)  # AUC above 0.5: the upper bound is the harder one to reject
    assert shifted.estimate > 0.5 and shifted.p_upper > shifted.p_lower and shifted.p == shifted.p_upper
    assert not S.tost_auc(a + 1.5, b, 0.15).equivalent
    with pytest.raises(ValueError, match="complete separation"):
        S.tost_auc([5, 6, 7], [1, 2, 3], 0.1)


def test_compare_to_published_by_hand():
    ours = S.StatResult(test="bootstrap", estimand="r", estimate=0.6, low=0.4, high=0.8, level=0.95)
    res = S.compare_to_published(ours, 0.7)
    assert res.contains and res.difference == pytest.approx(-0.1)
    assert (res.difference_low, res.difference_high) == pytest.approx((-0.3, 0.1))
    assert (res.ratio, res.ratio_low, res.ratio_high) == pytest.approx((6 / 7, 4 / 7, 8 / 7))
    neg = S.compare_to_published(ours, -2.0)
    assert not neg.contains and (neg.ratio_low, neg.ratio_high) == pytest.approx((-0.4, -0.2))
    assert S.compare_to_published(ours, 0).ratio is None


# ----------------------------------------------------------------------------------------------- multiplicity

def test_holm_and_by_on_a_known_vector():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm, sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03,
    # 0.06, 0.06; back in input order:
    h = S.holm(p)
    assert h.p_adjusted == pytest.approx((0.03, 0.06, 0.06, 0.02)) and h.reject == (True, False, False, True)
    # BY: c(4) = 1 + 1/2 + 1/3 + 1/4 = 25/12; p_(i) * 4 * c / i = 0.0417, 0.0417, 0.0833, 0.0833 (running min from top)
    by = S.benjamini_yekutieli(p)
    c = 25 / 12
    assert by.p_adjusted == pytest.approx((0.01 * 4 * c / 2, 0.04 * c, 0.04 * c, 0.005 * 4 * c))
    assert by.reject == (True, False, False, True) and by.method == "fdr_by"


# ----------------------------------------------------------------------------------------------- power

def _t_power(d: float, df: float, nc_scale: float, alpha: float = 0.05) -> float:
    tc = sps.t.ppf(1 - alpha / 2, df)
    nc = d * nc_scale
    return sps.nct.sf(tc, df, nc) + sps.nct.cdf(-tc, df, nc)


def test_mde_two_sample_and_paired_have_the_stated_power():
    res = S.mde_two_sample(12, 8)
    assert _t_power(res.effect, 18, math.sqrt(12 * 8 / 20)) == pytest.approx(0.8, abs=1e-4)
    assert S.power_two_sample(res.effect, 12, 8).power == pytest.approx(0.8, abs=1e-6)
    res = S.mde_paired(6)
    assert _t_power(res.effect, 5, math.sqrt(6)) == pytest.approx(0.8, abs=1e-4)


def test_mde_of_rank_tests_uses_the_3_over_pi_efficiency_and_flags_impossible_designs():
    t, mwu = S.mde_two_sample(200, 200), S.mde_two_sample(200, 200, test="mwu")
    assert mwu.effect / t.effect == pytest.approx(math.sqrt(math.pi / 3), abs=2e-3)  # d scales as 1/sqrt(n)
    none = S.mde_two_sample(4, 3, test="mwu")  # min p 2/35 > 0.05
    assert not none.achievable and none.effect is None and "0.0571" in none.notes[0]
    assert S.power_two_sample(3.0, 4, 3, test="mwu").power == 0.0
    signed_rank = S.mde_paired(200, test="wilcoxon").effect / S.mde_paired(200).effect
    assert signed_rank == pytest.approx(math.sqrt(math.pi / 3), abs=2e-3)
    assert not S.mde_paired(5, test="wilcoxon").achievable  # min p 2/32 = 0.0625
    assert S.mde_paired(6, test="wilcoxon").achievable  # min p 2/64


def test_mde_correlation_textbook_n_30():
    # r = tanh((z_0.975 + z_0.8) / sqrt(27)) = tanh(2.80159 / 5.19615) = tanh(0.53917) = 0.49236 (the far tail,
    # which statsmodels includes, moves it by < 1e-6)
    res = S.mde_correlation(30)
    assert res.effect == pytest.approx(math.tanh((Z975 + Z80) / math.sqrt(27)), abs=1e-6)
    assert res.effect == pytest.approx(0.49236, abs=1e-5)
    assert S.power_correlation(res.effect, 30).power == pytest.approx(0.8, abs=1e-6)


def test_mde_proportion_exact_binomial_by_hand():
    # n = 10, p0 = 0.5: P(X >= 9) = 11/1024 = 0.011 < 0.05 <= P(X >= 8) = 56/1024, so reject at X >= 9 and
    # power(p) = 10 p^9 (1 - p) + p^10
    res = S.mde_proportion(10, 0.5)
    p = res.effect
    assert 10 * p ** 9 * (1 - p) + p ** 10 == pytest.approx(0.8, abs=1e-8)
    from domaingap.stats.power import rejection_region

    ref = [k for k in range(26) if sps.binomtest(k, 25, 0.3, alternative="greater").pvalue < 0.05]
    assert rejection_region(25, 0.3).tolist() == ref
    assert not S.mde_proportion(3, 0.5).achievable  # P(X = 3) = 1/8 > 0.05: nothing can reject


# ----------------------------------------------------------------------------------------------- regression

def _grouped_frame(group_sd: float, seed: int = 0, groups: int = 8, per: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=g.size)
    e = rng.normal(scale=0.5, size=g.size)
    if group_sd == 0:
        e -= np.array([e[g == k].mean() for k in range(groups)])[g]  # no between-group variance at all
    y = 1 + 2 * x + rng.normal(scale=group_sd or 1, size=groups)[g] * (group_sd > 0) + e
    return pd.DataFrame({"y": y, "x": x, "g": [f"d{k}" for k in g], "x2": 2 * x})


def test_mixed_lm_matches_statsmodels_and_captures_warnings():
    import statsmodels.formula.api as smf

    df = _grouped_frame(1.0)
    fit = S.mixed_lm("y ~ x", df, "g")
    ref = smf.mixedlm("y ~ x", df, groups="g").fit()
    assert fit.table.loc["x", "coef"] == pytest.approx(ref.fe_params["x"]) and abs(fit.table.loc["x", "coef"] - 2) < 0.2
    assert fit.group_var == pytest.approx(float(ref.cov_re.iloc[0, 0])) and fit.group_var > 0.2
    assert fit.n_groups == 8 and fit.n_obs == 80 and not fit.boundary
    se = fit.table.loc["x", "se"]
    assert fit.table.loc["x", "low"] == pytest.approx(fit.table.loc["x", "coef"] - Z975 * se)
    flat = _grouped_frame(0)
    with pytest.raises(ValueError, match="boundary"):
        S.mixed_lm("y ~ x", flat, "g")
    kept = S.mixed_lm("y ~ x", flat, "g", allow_boundary=True)  # warnings captured, none printed (fixture)
    assert kept.boundary and any("boundary" in w or "singular" in w for w in kept.warnings)
    with pytest.raises(ValueError, match="singular fit"):
        S.mixed_lm("y ~ x + x2", df, "g")


def test_fit_ols_cluster_inference_uses_g_minus_1_df():
    df = _grouped_frame(1.0, groups=7)
    res = S.fit_ols("y ~ x", df, groups="g")
    assert res.params.to_numpy() == pytest.approx(np.polyfit(df.x, df.y, 1)[::-1])
    tab = S.coef_table(res)
    half = sps.t.ppf(0.975, 7 - 1) * tab.loc["x", "se"]
    assert tab.loc["x", "low"] == pytest.approx(tab.loc["x", "coef"] - half)
    assert tab.loc["x", "p"] == pytest.approx(2 * sps.t.sf(abs(tab.loc["x", "coef"] / tab.loc["x", "se"]), 6))


# ----------------------------------------------------------------------------------------------- classifiers

def test_chance_tests_exact_and_monte_carlo_p():
    # 5 samples, 5! = 120 pairings enumerated; a perfect classifier's pairing is matched by the 2! * 3! = 12
    # permutations that keep the label pattern: p = 12 / 120
    small = S.chance_tests([0, 0, 1, 1, 1], [0, 0, 1, 1, 1])
    assert small.exact and small.p_balanced == pytest.approx(0.1)
    y = np.array([0, 1] * 10)
    perfect = S.chance_tests(y, y, n_resamples=199)  # no random pairing of 20 reaches 1 (chance 1/184756)
    assert perfect.p_balanced == pytest.approx(1 / 200) and not perfect.exact
    assert perfect.p_accuracy == pytest.approx(sps.binomtest(20, 20, 0.5, alternative="greater").pvalue)
    majority = S.chance_tests(np.array([0] * 7 + [1] * 3), np.zeros(10, int), n_resamples=199)
    assert majority.accuracy == 0.7 == majority.majority_rate and majority.balanced_accuracy == 0.5
    assert majority.p_balanced == 1.0  # every permutation ties


def test_wilson_and_binomial_test():
    w = S.wilson_interval(8, 10)
    assert w.estimate == 0.8 and (w.low, w.high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    b = S.binomial_test(8, 10, 0.5, alternative="greater")
    assert b.p == pytest.approx(56 / 1024)  # P(X >= 8) = (45 + 10 + 1) / 1024


def test_agreement_by_hand():
    from sklearn.metrics import cohen_kappa_score

    # 4 both right, 6 only A right, 1 only B right, 3 both wrong (n = 14)
    a = np.array([1] * 4 + [1] * 6 + [0] * 1 + [0] * 3, bool)
    b = np.array([1] * 4 + [0] * 6 + [1] * 1 + [0] * 3, bool)
    r = S.agreement(a, b)
    a1, a2 = 10 / 14, 5 / 14
    assert r.observed == pytest.approx(7 / 14) and r.independent == pytest.approx(a1 * a2 + (1 - a1) * (1 - a2))
    assert r.kappa == pytest.approx(cohen_kappa_score(a, b)) and r.table == ((4, 6), (1, 3))
    # exact McNemar on 7 discordant samples split 6 / 1: 2 * P(X <= 1 | 7, 1/2) = 2 * (1 + 7) / 128
    assert r.mcnemar.p == pytest.approx(16 / 128) and r.mcnemar.estimate == pytest.approx(a1 - a2)
    assert r.association.p == pytest.approx(sps.fisher_exact([[4, 6], [1, 3]], alternative="greater").pvalue)
    same = S.agreement(np.ones(5, bool), np.ones(5, bool))
    assert same.kappa is None and same.mcnemar.p == 1.0 and not same.association.computable


# ----------------------------------------------------------------------------------------------- verdicts

def test_verdict_is_claims_verdict_and_verdict_of_uses_the_null():
    assert S.verdict is claims.verdict  # one function: the semantics cannot drift
    for est, p in itertools.product([-1.0, 0.0, 1.0, math.nan], [0.01, 0.2, math.nan]):
        for sign in (1, -1):
            assert S.verdict(est, p, expected_sign=sign) == claims.verdict(est, p, expected_sign=sign)
    auc = S.mann_whitney([5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 5.5, 6.5])  # AUC > 0.5, p < 0.05
    assert S.verdict_of(auc, null=0.5) == "reproduced"
    assert S.verdict_of(auc, null=0.5, expected_sign=-1) == "not reproduced"
    low = S.mann_whitney([1, 2, 3, 4, 5.5, 6.5], [5, 6, 7, 8, 9, 10])  # AUC < 0.5: the AUC's null is 0.5, not 0
    assert low.estimate < 0.5 and low.p < 0.05 and S.verdict_of(low) == "not reproduced"
    assert S.verdict_of(S.NotComputable("Welch t", "constant")) == "inconclusive"
    with pytest.raises(ValueError, match="no p-value"):
        S.verdict_of(S.bootstrap_ci([1, 2, 3], n_resamples=50))


# ----------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, message", [
    (lambda: S.bootstrap_ci([1.0]), r"at least 2 values, got 1: \[1\]"),
    (lambda: S.bootstrap_ci([1.0, math.nan, 3.0]), r"non-finite values \[nan\] at positions \[1\]"),
    (lambda: S.mann_whitney([1, 2], [0, math.inf]), r"b has non-finite values \[inf\] at positions \[1\]"),
    (lambda: S.welch_t([1, 1], [2, 2]), r"both are constant \(a = 1, b = 2\)"),
    (lambda: S.ratio_of_means([1, 2], [1, -1]), r"b has \[-1.0\] at positions \[1\]"),
    (lambda: S.paired_t([1, 1, 1]), r"all 3 equal 1"),
    (lambda: S.pearson([1, 2, 3, 4], [2, 2, 2, 2]), r"variance in y; all 4 values equal 2"),
    (lambda: S.spearman([1, 2, 3], [1, 2, 3, 4]), r"needs at least 4 values, got 3"),
    (lambda: S.spearman([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], groups=list("aabbb"), resample="groups"),
     r"got 2: \['a', 'b'\]"),
    (lambda: S.spearman(range(5), range(5), groups=list("aab"), resample="groups"), r"one label per value \(5\)"),
    (lambda: S.spearman(range(5), range(5), groups=list("aabbc")), r"groups given but unused"),
    (lambda: S.holm([0.1, math.nan, 0.2]), r"NaN at positions \[1\]"),
    (lambda: S.holm([0.1, 1.5]), r"\[1.5\] at positions \[1\]"),
    (lambda: S.adjust_pvalues([0.1], "bonferroni"), r"'bonferroni'"),
    (lambda: S.tost_two_sample([1, 2, 3], [1, 2, 4], -1), r"got -1"),
    (lambda: S.tost_correlation(range(6), [1, 3, 2, 5, 4, 6], 1.5), r"\(-1.5, 1.5\) fall outside"),
    (lambda: S.tost_paired([2, 2, 2], margin=1.0), r"all 3 equal 2"),
    (lambda: S.wilson_interval(0, 0), r"n must be an integer >= 1, got 0"),
    (lambda: S.wilson_interval(5, 3), r"k = 5, n = 3"),
    (lambda: S.chance_tests([1, 1, 1], [1, 0, 1]), r"one class only \(\[1\]\)"),
    (lambda: S.compare_domains([1, 2, 3], ["medical", "natural", "other"]), r"\['other'\]"),
    (lambda: S.mde_two_sample(1, 5), r"n1 must be an integer >= 2, got 1"),
    (lambda: S.mde_proportion(10, 1.2), r"p0 must be in \(0, 1\), got 1.2"),
    (lambda: S.mixed_lm("y ~ x", _grouped_frame(1.0, groups=2), "g"), r"got 2: \['d0', 'd1'\]"),
    (lambda: S.mixed_lm("y ~ x", _grouped_frame(1.0), "dataset"), r"column 'dataset' is not in the data"),
    (lambda: S.agreement([1, 2, 1], [1, 0, 1]), r"values \[1, 2\]"),
    (lambda: S.mann_whitney([1, 2], [3, 4], alternative="bigger"), r"'bigger'"),
])
def test_bad_input_raises_with_the_offending_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_mixed_lm_nested_tasks_stop_task_offsets_counting_as_evidence_about_a_task_covariate():
    """A covariate constant within tasks (d_data) and task offsets unrelated to it: with a dataset intercept only,
    the 16 points per task count as independent evidence and the null slope looks significant; with tasks
    nested in datasets (a variance component) it does not, and the fit says which model it is."""
    rng = np.random.default_rng(0)
    p_flat, p_nested = [], []
    for _ in range(3):
        rows = []
        for ds in range(6):
            centre = rng.normal(12, 3)
            for t in range(3):
                d, offset = centre + rng.normal(0, 2), rng.normal(0, 0.5)
                for m in range(2):
                    for n in (50, 100, 200, 400):
                        rows.append({"dataset": f"d{ds}", "task": f"d{ds}t{t}", "model": f"m{m}", "log_N": np.log(n),
                                     "d_data": d, "log_L": -0.3 * np.log(n) + offset + rng.normal(0, 0.05)})
        frame = pd.DataFrame(rows)
        p_flat.append(S.mixed_lm("log_L ~ log_N + d_data + C(model)", frame, "dataset",
                                     allow_boundary=True).table.loc["d_data", "p"])
        fit = S.mixed_lm("log_L ~ log_N + d_data + C(model)", frame, "dataset", nested="task",
                             allow_boundary=True)
        p_nested.append(fit.table.loc["d_data", "p"])
        assert "(1 | task)" in fit.formula
    assert min(p_flat) < 0.05 and min(p_nested) > 0.3  # the third draw is a false positive without nesting


def test_signed_rank_interval_is_tukeys_walsh_interval_and_inverts_the_test():
    """Tukey's interval: the k-th smallest and largest Walsh averages, k from the exact signed-rank null; every
    shift inside it is not rejected by the two-sided test at 5%, every shift just outside is."""
    from scipy import stats as sps

    d = np.array([1.8, -0.4, 2.2, 0.9, 3.1, 1.2, -0.7, 2.6, 0.3, 1.5])
    res = S.signed_rank(d)
    i, j = np.triu_indices(d.size)
    walsh = np.sort((d[i] + d[j]) / 2)
    assert res.low in walsh and res.high in walsh and res.low < res.estimate < res.high
    assert res.estimate == pytest.approx(np.median(walsh))
    for shift in (res.low + 1e-9, res.high - 1e-9):
        assert sps.wilcoxon(d - shift, method="exact").pvalue > 0.05
    for shift in (res.low - 1e-3, res.high + 1e-3):
        assert sps.wilcoxon(d - shift, method="exact").pvalue <= 0.05
    short = S.signed_rank(d[:5])  # 5 pairs: no 95% interval exists (the widest covers 1 - 2/32 = 94%)
    assert short.low is None and short.high is None and "no 95% interval" in short.notes[-1]
    assert S.ci_text(short).startswith("[no 95% interval at n = 5")
    assert S.ci_text(res, ".2f") == f"[{res.low:.2f}, {res.high:.2f}]"


def test_fit_warnings_are_reported_in_words_without_the_warning_class_name():
    # the book's pages show a fit's diagnostics; the browser check refuses raw "...Warning" debris on a page
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    from domaingap.stats._base import distinct_messages

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            warnings.warn("The MLE may be on the boundary", ConvergenceWarning)
        warnings.warn("divide by zero", RuntimeWarning)
    assert distinct_messages(caught) == ("convergence: The MLE may be on the boundary", "runtime: divide by zero")
