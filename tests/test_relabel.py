"""Relabelling calibration of a verdict rule on fixed data (domaingap.stats.relabel)."""

import numpy as np
import pytest

from domaingap import stats


def test_domain_relabellings_are_every_split_with_the_same_counts():
    labels = ["medical"] * 7 + ["natural"] * 4
    items, exhaustive = stats.domain_relabellings(labels)
    assert exhaustive and len(items) == 330  # C(11, 4)
    assert all((r == "medical").sum() == 7 for r in items)
    assert len({tuple(r) for r in items}) == 330
    sample, exhaustive = stats.domain_relabellings(labels, max_relabellings=50, seed=1)
    assert not exhaustive and len(sample) == 50
    with pytest.raises(ValueError, match="exactly two labels"):
        stats.domain_relabellings(["a", "b", "c"])


def test_an_exact_permutation_test_holds_alpha_on_every_relabelling():
    rng = np.random.default_rng(0)
    values = rng.normal(size=11)
    labels = np.array(["medical"] * 7 + ["natural"] * 4)

    def decide(lab):
        return stats.mann_whitney(values[lab == "medical"], values[lab == "natural"]).p < 0.05

    cal = stats.relabel_calibration("domains", decide, stats.domain_relabellings(labels))
    assert cal.exhaustive and cal.rate <= 0.05 and cal.flag == ""
    assert "of every 330 relabellings" in cal.summary()


def test_pairs_nested_in_tasks_treated_as_independent_are_caught_by_swapping_whole_tasks():
    # 4 tasks x 5 seeds: each task's robust - standard differences share a large task offset, so a Wilcoxon
    # test over the 20 pairs "finds" an effect whenever most tasks happen to lean one way
    offsets = np.array([3.0, 2.5, -2.0, 2.8])
    rng = np.random.default_rng(0)
    diffs = np.repeat(offsets, 5) + rng.normal(0, 0.1, 20)

    def decide(signs):
        return stats.wilcoxon_signed_rank(diffs * np.repeat(signs, 5)).p < 0.05

    cal = stats.relabel_calibration("swap robust/standard per task", decide, stats.swap_relabellings(4))
    assert cal.n_relabellings == 16 and cal.rate >= 2 / 16 and cal.flag == "rejects shuffled labels above alpha"
    # the same differences averaged per task (the task as the unit) cannot reject at 4 tasks
    means = diffs.reshape(4, 5).mean(axis=1)
    ok = stats.relabel_calibration("per task", lambda s: stats.wilcoxon_signed_rank(means * s).p < 0.05,
                                   stats.swap_relabellings(4))
    assert ok.rate == 0.0 and ok.flag == ""
    with pytest.raises(ValueError, match=">= 1 block"):
        stats.swap_relabellings(0)
