"""Chapter P1 experiment logic: tasks, preprocessing, splits, run specs, cached runs, run graph and statistics.

Known answers and float64 brute-force references; the data-dependent tests use the real mirror (small subsets).
"""

import inspect
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from domaingap import paths
from domaingap.chapters import p1
from domaingap.chapters.p1 import pools
from domaingap.chapters.p1 import runs as p1_runs


@pytest.fixture(autouse=True)
def _tmp_artefacts(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ARTEFACTS_ENV, str(tmp_path / "art"))


DATA_CFG = {"size": 28, "medical_datasets": ["breastmnist"], "natural_datasets": ["mnist"], "pairs": 2,
            "pair_seed": 1337, "split_seed": 1337, "test_fraction_max": 0.34, "test_per_class": 20}


# ----------------------------------------------------------------------------------------------- tasks

def test_tasks_keys_roundtrip_and_clinical_default():
    t = p1.make_task("retinamnist")  # no DR vs referable DR (grade >= 2): a grouped clinical task
    assert t.groups == ((0,), (2, 3, 4)) and t.domain == "medical" and t.key == "retinamnist:0-2+3+4"
    assert t.clinical and not t.radiology
    assert p1.parse_task(t.key) == t
    assert p1.parse_task("cifar10:3-5").label == "CIFAR-10 cat vs dog"
    assert p1.parse_task("cifar10:3-5").groups == ((3,), (5,)) and not p1.parse_task("cifar10:3-5").clinical
    assert p1.parse_task("kneeoa:0-2+3+4").label == "Knee OA KL 0 vs KL 2+KL 3+KL 4"
    with pytest.raises(ValueError, match="repeated"):
        p1.make_task("mnist", (3, 3))
    with pytest.raises(ValueError, match="binary"):
        p1.make_task("mnist", (1, 2, 3))
    with pytest.raises(ValueError, match="no clinical binary task"):
        p1.make_task("mnist")
    with pytest.raises(ValueError, match="dataset:a-b"):
        p1.parse_task("mnist-3-8")


def test_random_pairs_seeded_distinct_and_extendable():
    a = p1.random_pairs("mnist", 5, seed=1)
    assert a == p1.random_pairs("mnist", 5, seed=1)
    assert len(set(a)) == 5 and all(x < y for x, y in a)
    assert p1.random_pairs("mnist", 7, seed=1)[:5] == a  # more pairs extend fewer
    assert p1.random_pairs("fashionmnist", 5, seed=1) != a or True  # independent stream per dataset
    with pytest.raises(ValueError, match="n_pairs must be in 1..45"):
        p1.random_pairs("mnist", 46, seed=1)


def test_tasks_from_profile_section_follow_one_rule_for_both_domains():
    ts = p1.tasks({**DATA_CFG, "medical_datasets": ["breastmnist", "mednist", "kneeoa"]})
    keys = [t.key for t in ts]
    # clinical task where the dataset has one; random pairs (same seed and count) elsewhere, in both domains
    assert keys[0] == "breastmnist:0-1" and keys[3] == "kneeoa:0-2+3+4"
    assert keys[1:3] == [f"mednist:{a}-{b}" for a, b in p1.random_pairs("mednist", 2, 1337)]
    assert keys[4:] == [f"mnist:{a}-{b}" for a, b in p1.random_pairs("mnist", 2, 1337)]
    assert [t.domain for t in ts] == ["medical"] * 4 + ["natural"] * 2
    with pytest.raises(ValueError, match="listed twice"):
        p1.tasks({**DATA_CFG, "medical_datasets": ["breastmnist", "breastmnist"]})
    with pytest.raises(ValueError, match="wrong domain.*mnist"):
        p1.tasks({**DATA_CFG, "medical_datasets": ["mnist"]})


def test_every_default_task_is_binary_and_has_enough_images(require_data):
    for name in ("breastmnist", "kneeoa", "braintumor", "pbc", "imagenette"):
        require_data(name)
    cfg = p1.configs("default")
    ts = p1.tasks(cfg["data"])
    assert len({t.dataset for t in ts if t.domain == "medical"}) >= 7
    assert len({t.dataset for t in ts if t.domain == "natural"}) >= 4
    limits = {t.key: p1.task_limits(t, cfg["data"]) for t in ts}
    common = min(v["max_train"] for v in limits.values())
    assert limits["breastmnist:0-1"]["max_train"] == common == 278  # 210 malignant, 71 held out
    # the K_F(n) curve's common size: the largest profile size every task reaches
    assert max(n for n in cfg["fig1"]["n"] if n <= common) == 250


# ----------------------------------------------------------------------------------------------- images

def test_p1_format_scales_each_image_to_255_truncates_and_keeps_black():
    import torch

    from domaingap.data.formats import p1_format

    x = torch.zeros(3, 1, 4, 4)
    x[0, 0, 0, 0], x[0, 0, 1, 1] = 100.0, 50.0  # max 100 -> 255, 50 -> 127.5 -> 127 (truncated)
    x[1] = 255.0
    out = p1_format(x, 4)
    assert out.dtype == torch.uint8 and out.shape == (3, 1, 4, 4)
    assert out[0, 0, 0, 0] == 255 and out[0, 0, 1, 1] == 127
    assert int(out[1].min()) == 255 and int(out[2].max()) == 0
    # resizing a constant image keeps it constant
    assert torch.equal(p1_format(torch.full((1, 1, 8, 8), 30.0), 4), torch.full((1, 1, 4, 4), 255, dtype=torch.uint8))
    # RGB: one peak per image over all channels, so grey repeated 3 times = the grey result repeated
    g = torch.arange(2 * 9 * 9, dtype=torch.float32).remainder_(97).view(2, 1, 9, 9) * 1.7
    assert torch.equal(p1_format(g.repeat(1, 3, 1, 1), 5), p1_format(g, 5).repeat(1, 3, 1, 1))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        p1_format(torch.zeros(2, 4, 4), 4)
    with pytest.raises(ValueError, match="size must be an int >= 2"):
        p1_format(torch.zeros(2, 1, 4, 4), 1)


def test_task_pool_common_format(require_data):
    require_data("breastmnist")
    pool = p1.task_pool(p1.make_task("breastmnist"))
    assert pool.x.dtype == np.uint8 and pool.x.shape == (780, 1, 28, 28)
    assert pool.class_counts.tolist() == [210, 570]
    assert set(np.unique(pool.split)) == {"train", "val", "test"}
    # P1's per-image scaling: every image peaks at (almost exactly, after resize rounding) 255
    assert pool.x.reshape(len(pool), -1).max(1).min() >= 250


# ----------------------------------------------------------------------------------------------- splits

def test_paper_profile_reads_p1s_224_px_format_from_the_224_px_release(monkeypatch):
    from domaingap import data, profiles

    assert profiles.get("p1_data", "paper")["size"] == 224 and profiles.get("p1_data", "default")["size"] == 28
    asked = []

    def fake_load(name, split, **kw):
        asked.append((name, kw.get("release")))
        raise data.DataFileError("stop here")

    monkeypatch.setattr(data, "load", fake_load)
    pools._pool.cache_clear()
    with pytest.raises(data.DataFileError):
        p1.task_pool(p1.Task("pneumoniamnist", ((0,), (1,))), 224)
    assert asked == [("pneumoniamnist", 224)]


def test_split_is_balanced_disjoint_capped_and_training_sets_nest():
    y = np.array([0] * 30 + [1] * 200)
    split = p1.task_split(y, test_per_class=50, test_fraction_max=0.34, seed=3)
    assert split.test_per_class == 10  # capped at floor(0.34 * 30)
    assert np.bincount(y[split.test]).tolist() == [10, 10]
    assert not set(split.test) & set(split.train_pool) and len(split.test) + len(split.train_pool) == len(y)
    assert split.max_train == 40
    small, big = (p1.train_indices(split, y, n, seed=7) for n in (10, 40))
    assert set(small) <= set(big)  # nested across N for one seed
    assert np.bincount(y[big]).tolist() == [20, 20] and not set(big) & set(split.test)
    assert not np.array_equal(p1.train_indices(split, y, 10, seed=8), small)
    with pytest.raises(ValueError, match="must be even and in 2..40"):
        p1.train_indices(split, y, 42, seed=0)
    with pytest.raises(ValueError, match="binary labels"):
        p1.task_split(np.array([0, 1, 1, 1]), test_per_class=1, test_fraction_max=0.5, seed=0)


def test_sizes_for_keeps_reachable_sizes_and_trains_small_tasks_at_their_maximum():
    assert p1.sizes_for([50, 100, 200, 400], 1000) == [50, 100, 200, 400]
    assert p1.sizes_for([50, 100, 200, 400], 279) == [50, 100, 200, 278]  # even, class-balanced
    # P1's paper sizes out of BreastMNIST's reach: its maximum and half of it (a slope needs two sizes)
    assert p1.sizes_for([500, 750, 1000, 1250, 1500, 1750], 278) == [138, 278]
    assert p1.sizes_for([500, 750], 750) == [500, 750]


def test_train_specs_cap_sizes_a_task_cannot_supply_and_are_json(require_data):
    require_data("breastmnist")
    require_data("mnist")
    train_cfg = {"models": {"small_cnn": {"lr": 1e-3, "batch_size": 16}}, "sizes": [100, 400], "seeds": [0, 1],
                 "epochs": 1, "weight_decay": 1e-4}
    specs = p1.train_specs(DATA_CFG, train_cfg)
    by_task = {}
    for s in specs:
        by_task.setdefault(s["task"], set()).add(s["n"])
        assert "device" not in s and s["arch"] == {} and s["batch_size"] == 16
    # BreastMNIST: 210 malignant images, 20 held out -> at most 380 balanced training images
    assert by_task["breastmnist:0-1"] == {100, 380}
    assert all(v == {100, 400} for k, v in by_task.items() if k.startswith("mnist"))
    json.dumps(specs)


# ----------------------------------------------------------------------------------------------- runs

def _tiny_spec():
    task = p1.make_task("mnist", (0, 1))
    cfg = {**DATA_CFG, "test_per_class": 8}
    train_cfg = {"models": {"small_cnn": {"lr": 3e-3, "batch_size": 8}}, "sizes": [16], "seeds": [0], "epochs": 2,
                 "weight_decay": 1e-4}
    return task, cfg, p1.train_specs(cfg, train_cfg, [task])[0]


def test_geometry_run_matches_float64_brute_force(require_data):
    require_data("mnist")
    task, cfg, _ = _tiny_spec()
    specs = p1.geometry_specs([task], cfg, {"n": [40, 10**6], "reps": [1, 3], "k": 5, "ks": [3, 5],
                                           "kf_sample_images": 40})
    assert [(s["n"], s["rep"]) for s in specs] == [("full", 0), (40, 0)]  # sizes out of reach are skipped
    spec = specs[1]
    res = p1.geometry_sweep([spec], progress=False)[0]
    pool, split = pools._split_for(spec)
    idx = p1.subsample(split, pool.y, 40, 0)
    x = pool.x[idx].reshape(40, -1).astype(np.float64)
    y = pool.y[idx]
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    cross = d[y[:, None] != y[None]]
    assert res["kf"] == pytest.approx(1 / cross.min(), rel=1e-12)
    assert res["kf_sampled"] <= res["kf"] * (1 + 1e-12)  # a max over a sample of pairs cannot exceed the max
    i, j = res["kf_i"], res["kf_j"]
    assert pool.y[i] != pool.y[j]
    assert np.linalg.norm(pool.x[i].astype(float) - pool.x[j].astype(float)) == pytest.approx(res["kf_distance"])
    assert res["n_points"] == 40 and res["class_counts"] == [20, 20]
    # MLE (MacKay-Ghahramani) at each k from the brute-force neighbour distances
    srt = np.sort(d + np.diag(np.full(40, np.inf)), axis=1)
    for k in (3, 5):
        t = srt[:, :k]
        inv = np.log(t[:, -1:] / t[:, :-1]).sum(1) / (k - 2)
        assert res[f"mle_k{k}"] == pytest.approx(1 / inv.mean(), rel=1e-9)


def test_full_geometry_run_uses_the_whole_training_pool_and_never_the_test_set(require_data):
    require_data("breastmnist")
    task = p1.make_task("breastmnist")
    spec = p1.geometry_specs([task], DATA_CFG, {"n": [], "reps": [], "k": 5, "ks": [5], "kf_sample_images": 50})[0]
    res = p1.geometry_sweep([spec], progress=False)[0]
    pool, split = pools._split_for(spec)
    assert res["n_points"] == len(split.train_pool) == 780 - 40
    assert res["class_counts"] == np.bincount(pool.y[split.train_pool]).tolist() == [190, 550]
    assert res["kf_i"] in set(split.train_pool) and res["kf_j"] in set(split.train_pool)


def test_training_attack_and_repr_runs_are_cached(require_data):
    require_data("mnist")
    task, _, spec = _tiny_spec()
    first = p1.train_sweep([spec], progress=False)[0]
    assert first["n_train"] == 16 and first["n_test"] == 16 and len(first["history_train_loss"]) == 2
    assert np.isfinite(first["test_loss"]) and 0 <= first["test_accuracy"] <= 1
    again = p1.train_sweep([spec], progress=False)[0]
    assert again["test_loss"] == first["test_loss"] and again["_dir"] == first["_dir"]
    model, res = p1.trained(spec)
    assert res["_dir"] == first["_dir"]

    att = p1.attack_specs([spec], {"attacks": {"fgsm": [0, 8], "pgd": [0, 8]}, "pgd_steps": 3,
                                   "pgd_step_factor": 2.5, "sizes": None})
    rows = p1.attack_sweep(att, progress=False)[0]["rows"]
    assert [(r["attack"], r["eps"]) for r in rows] == [("fgsm", 0.0), ("fgsm", 8.0), ("pgd", 0.0), ("pgd", 8.0)]
    for r in rows:
        assert r["clean_loss"] == pytest.approx(first["test_loss"], rel=1e-6)
        if r["eps"] == 0:
            assert r["delta_loss"] == pytest.approx(0, abs=1e-9) and r["delta_accuracy"] == 0
    assert p1.attack_specs([spec], {"attacks": {"fgsm": [1]}, "pgd_steps": 1, "pgd_step_factor": 1,
                                    "sizes": [999]}) == []
    with pytest.raises(ValueError, match="unknown attacks"):
        p1.attack_specs([spec], {"attacks": {"cw": [1]}, "pgd_steps": 1, "pgd_step_factor": 1})

    rep = p1.repr_sweep(p1.repr_specs([spec], {"k": 5}), progress=False)[0]
    assert rep["n_points"] == 16 and rep["features"] > 0 and rep["data_mle"] > 0
    assert math.isnan(rep["twonn"]) or rep["twonn"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_training_uses_cuda_and_matches_cpu_scale(require_data):
    require_data("mnist")
    _, _, spec = _tiny_spec()
    res = p1.train_sweep([spec], progress=False)[0]
    model, _ = p1.trained(spec)
    assert next(model.parameters()).device.type == "cuda" and np.isfinite(res["test_loss"])


# ----------------------------------------------------------------------------------------------- statistics

def test_grouped_bootstrap_mean_of_group_means_and_interval():
    vals = [1.0, 1.0, 1.0, 5.0]
    groups = ["a", "a", "a", "b"]
    mean, lo, hi = p1.grouped_bootstrap_ci(vals, groups, n_boot=500)
    assert mean == 3.0  # groups weigh equally, not points
    assert lo == 1.0 and hi == 5.0  # resampling two groups: both a, mixed, or both b
    m1, l1, h1 = p1.grouped_bootstrap_ci([2.0, 2.0], ["x", "x"])
    assert (m1, l1, h1) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="equal non-zero length"):
        p1.grouped_bootstrap_ci([1.0], ["a", "b"])


def test_bootstrap_ci_covers_the_mean_and_handles_degenerate_input():
    rng = np.random.default_rng(0)
    v = rng.normal(10, 1, 200)
    lo, hi = p1.bootstrap_ci(v)
    assert lo < v.mean() < hi and hi - lo < 0.6
    assert p1.bootstrap_ci([3.0, 3.0]) == (3.0, 3.0)
    assert all(math.isnan(c) for c in p1.bootstrap_ci([1.0]))


def test_correlation_known_answers():
    from scipy import stats

    x = np.arange(10.0)
    c = p1.correlation(x, 2 * x + 1)
    assert c["r"] == pytest.approx(1) and c["rho"] == pytest.approx(1) and c["r_low"] == pytest.approx(1)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=30), rng.normal(size=30)
    c = p1.correlation(a, b)
    assert c["r"] == pytest.approx(stats.pearsonr(a, b).statistic)
    assert c["rho_p"] == pytest.approx(stats.spearmanr(a, b).pvalue)
    assert c["r_low"] < c["r"] < c["r_high"]
    c = p1.correlation([1, 2, np.nan, 4], [1, 2, 3, np.nan])
    assert c["n"] == 2 and math.isnan(c["r"])
    with pytest.raises(ValueError, match="equal length"):
        p1.correlation([1, 2], [1, 2, 3])


def test_verdict_rules():
    assert p1.verdict(0.5, 0.01) == "reproduced"
    assert p1.verdict(-0.5, 0.01) == "not reproduced"
    assert p1.verdict(-0.5, 0.01, expected_sign=-1) == "reproduced"
    assert p1.verdict(0.5, 0.2) == "inconclusive"
    assert p1.verdict(math.nan, 0.01) == "inconclusive"
    with pytest.raises(ValueError, match="expected_sign"):
        p1.verdict(1, 0.01, expected_sign=0)


def test_domain_test_known_answers():
    res = p1.domain_test([4, 5, 6, 1, 2, 3], ["medical"] * 3 + ["natural"] * 3)
    assert res["ratio"] == pytest.approx(2.5) and res["auc"] == 1.0
    assert res["mwu_p_greater"] == pytest.approx(0.05)  # exact: 1 / C(6, 3)
    assert res["ratio_low"] <= 2.5 <= res["ratio_high"]
    with pytest.raises(ValueError, match=">= 2 tasks per domain"):
        p1.domain_test([1, 2, 3], ["medical", "natural", "natural"])


def test_fit_ols_recovers_coefficients_like_lstsq():
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 120
    df = pd.DataFrame({"log_n": rng.normal(size=n), "d": rng.normal(size=n), "task": rng.integers(0, 12, n)})
    df["y"] = 0.5 - 0.7 * df.log_n + 0.2 * df.d + rng.normal(scale=0.05, size=n)
    res = p1.fit_ols("y ~ log_n + d", df)
    ref = np.linalg.lstsq(np.column_stack([np.ones(n), df.log_n, df.d]), df.y, rcond=None)[0]
    assert np.allclose(res.params.to_numpy(), ref, atol=1e-10)
    tab = p1.coef_table(res)
    assert (tab["low"] < tab["coef"]).all() and (tab["coef"] < tab["high"]).all()
    assert tab.loc["log_n", "p"] < 1e-6 and res.df_resid >= 1


def test_wilson_fraction():
    f, lo, hi = p1.wilson_fraction(8, 10)
    assert f == 0.8 and lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert all(math.isnan(v) for v in p1.wilson_fraction(0, 0))


def _require_ci_data(require_data):
    from domaingap import profiles

    cfg = profiles.get("p1_data", "ci")
    for name in list(cfg["medical_datasets"]) + list(cfg["natural_datasets"]):
        require_data(name)


def test_cli_rejects_unknown_sweeps_before_loading_any_data(monkeypatch, capsys):
    from domaingap import chapters
    from domaingap.chapters import cli

    def no_specs(*args):
        raise AssertionError("specs were built before --only was checked")

    monkeypatch.setattr(cli, "sweeps", no_specs)
    for chapter in chapters.CHAPTERS:
        with pytest.raises(SystemExit):
            cli.main(chapter, ["--profile", "ci", "--only", "bogus"])
        assert "unknown sweep(s) ['bogus']" in capsys.readouterr().err
    monkeypatch.undo()
    with pytest.raises(ValueError, match="unknown sweep"):
        p1.run_all("ci", only=("bogus",))


# ----------------------------------------------------------------------------------------------- run graph

def _qualname(fn) -> str:
    fn = inspect.unwrap(fn)
    return f"{fn.__module__}.{fn.__qualname__}"


def test_code_closures_hold_what_shapes_each_result_and_no_analysis():
    from domaingap import data, models, training
    from domaingap.kernels import attacks, distances, intrinsic_dim, sharpness
    from domaingap.runs import code

    from domaingap.data import formats

    shared = [formats.p1_format, pools.task_pool, pools.task_split, pools.train_indices, pools._split_for,
              data.load, data.sample_indices]
    model = [training.fit, training.evaluate, models.build_model, models.build_configured, pools.run_data,
             p1_runs.build]
    wanted = {
        p1_runs.geometry: shared + [pools.geometry_indices, pools.subsample, intrinsic_dim.estimate_all,
                                    sharpness.label_sharpness,
                                    sharpness.label_sharpness_sampled, distances.min_cross_class_distance],
        p1_runs.train: shared + model,
        p1_runs.attack: shared + [models.build_model, pools.run_data, p1_runs.load_model, attacks.fgsm, attacks.pgd],
        p1_runs.repr_dim: shared + [models.build_model, models.penultimate, p1_runs.load_model, p1_runs.representation,
                                    intrinsic_dim.mle, intrinsic_dim.twonn],
    }
    # the chapter's analysis, loading, spec and task-listing code, and the notebooks' claims, never enter a key
    # (nor the data-file plumbing: paths and the checksummed fetching of files, runs.code.NOT_IN_KEY)
    outside = ("domaingap.chapters.p1.analysis.", "domaingap.chapters.p1.levels.", "domaingap.chapters.p1.results.",
               "domaingap.paths.", "domaingap.data.files.",
               "domaingap.chapters.p1.specs.", "domaingap.stats.",
               "domaingap.claims.", "domaingap.chapters.p2", "domaingap.chapters.p3", "domaingap.profiles.")
    analysis = [getattr(p1.analysis, n) for n in p1.analysis.__all__]
    for kind, fns in wanted.items():
        names = set(code.closure([kind]))
        missing = [_qualname(f) for f in fns if _qualname(f) not in names]
        assert not missing, f"{kind.name} closure lacks {missing}"
        assert not [n for n in names if n.startswith(outside)], kind.name
        assert not {_qualname(f) for f in analysis} & names
        assert not {_qualname(f) for f in (p1.tasks, p1.random_pairs, p1.make_task, p1.train_specs)} & names
    # one kind's function is not in another's closure: its upstream key stands for it
    assert _qualname(p1_runs.train.fn) not in code.closure([p1_runs.attack])
    assert _qualname(p1_runs.attack.fn) not in code.closure([p1_runs.train])


def test_upstream_edges_and_keys_follow_the_training_run(require_data, monkeypatch):
    require_data("mnist")
    _, _, spec = _tiny_spec()
    att = p1.attack_specs([spec], {"attacks": {"fgsm": [2]}, "pgd_steps": 1, "pgd_step_factor": 1, "sizes": None})[0]
    rep = p1.repr_specs([spec], {"k": 5})[0]
    a, r, t = p1_runs.attack(att), p1_runs.repr_dim(rep), p1_runs.train(spec)
    assert a.upstream["model"].key == t.key == r.upstream["model"].key
    assert a.record["upstream"] == {"model": {"kind": "p1_train", "key": t.key}}
    # the upstream run's spec changes -> the downstream keys change
    other = {**spec, "seed": 1}
    a2 = p1_runs.attack({**att, "train": other})
    assert a2.upstream["model"].key == p1_runs.train(other).key != t.key and a2.key != a.key
    # a changed training function (its code hash) changes the training and attack keys, not the geometry's
    geo_spec = p1.geometry_specs([p1.make_task("mnist", (0, 1))], {**DATA_CFG, "test_per_class": 8},
                                 {"n": [40], "reps": [1], "k": 5, "ks": [5], "kf_sample_images": 40})[1]
    g = p1_runs.geometry(geo_spec)
    own = p1_runs.attack.code_hash
    monkeypatch.setitem(p1_runs.train.__dict__, "code_hash", "edited")
    assert p1_runs.train(spec).key != t.key
    assert p1_runs.attack(att).key != a.key and p1_runs.repr_dim(rep).key != r.key
    assert p1_runs.attack.code_hash == own and p1_runs.geometry(geo_spec).key == g.key


@pytest.mark.slow
def test_keys_are_the_same_in_a_fresh_process(require_data):
    """The code closure follows attribute calls into loaded modules only: importing the chapter must load every
    module its runs reach (e.g. kernels.distances, which the kernels import lazily), whatever ran before."""
    require_data("mnist")
    _, _, spec = _tiny_spec()
    geo = p1.geometry_specs([p1.make_task("mnist", (0, 1))], {**DATA_CFG, "test_per_class": 8},
                            {"n": [40], "reps": [1], "k": 5, "ks": [5], "kf_sample_images": 40})[1]
    here = [p1_runs.geometry(geo).key, p1_runs.train(spec).key]
    script = ("import json, sys; from domaingap.chapters.p1 import runs as k; s = json.load(sys.stdin); "
              "print(k.geometry(s['geo']).key, k.train(s['train']).key)")
    out = subprocess.run([sys.executable, "-c", script], input=json.dumps({"geo": geo, "train": spec}), text=True,
                         capture_output=True, check=True, env={**os.environ}).stdout.split()
    assert out == here


def test_sweeps_name_every_run_the_notebooks_read(require_data):
    _require_ci_data(require_data)
    sw = p1.sweeps("ci")
    assert list(sw) == list(p1.SWEEPS) == ["geometry", "train", "attack", "repr"]
    kinds = {name: {r.kind.name for r in items} for name, items in sw.items()}
    assert kinds == {"geometry": {"p1_geometry"}, "train": {"p1_train"}, "attack": {"p1_attack"},
                     "repr": {"p1_repr"}}
    train_keys = {r.key for r in sw["train"]}
    assert len(train_keys) == len(sw["train"]) and len(sw["repr"]) == len(sw["train"])
    assert {r.upstream["model"].key for r in sw["attack"] + sw["repr"]} <= train_keys
    cfg = p1.configs("ci")
    assert all(r.spec["train"]["n"] in cfg["fig3"]["sizes"] for r in sw["attack"])


def test_published_numbers_are_data_with_their_source():
    from domaingap import chapters

    pub = p1.published()
    assert pub == chapters.published("p1") and all(entry["source"] for entry in pub.values())
    fig1 = pub["fig1"]["datasets"]
    assert len(fig1) == 11 and sum(v["domain"] == "medical" for v in fig1.values()) == 7
    assert fig1["OAI"] == {"domain": "medical", "d_data": 8.5, "kf_e4": 3.43}
    assert pub["fgsm_delta_loss"]["datasets"]["DBC"] == 31.5 and pub["fgsm_r"]["value"] == 0.70
    assert set(pub["fgsm_delta_loss"]["datasets"]) <= set(fig1)
