"""Chapter P2 experiment logic: budgets, targets, constructed datasets, MedMNIST-C round trip, saliency, statistics.

Known answers and SciPy/scikit-learn references; the data-dependent tests use the real mirror (tiny subsets).
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from domaingap import data, paths, profiles, runs
from domaingap.chapters import p2
from domaingap.runs import code


@pytest.fixture(autouse=True)
def _tmp_artefacts(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ARTEFACTS_ENV, str(tmp_path / "art"))


MCFG = {"tasks": ["breastmnist"], "seeds": [0], "data_seed": 0, "n_train": 48, "n_test": 40, "arch": "small_cnn",
        "arch_options": {}, "epochs": 1, "batch_size": 16, "lr": 0.05, "optimizer": "sgd", "schedule": "constant",
        "weight_decay": 5e-4, "class_weights": "balanced", "adv_eps_ref": 0.5, "adv_steps": 2}
TAB1 = {"pgd_eps_ref": 0.5, "pgd_eps_multipliers": [4, 1], "pgd_target_success": 0.9, "pgd_calibration_n": 16,
        "pgd_steps": 3, "pgd_step_ratio": 0.5, "inversion_steps": 3, "inversion_step_ref": 0.1, "inversion_n": 12}
TAB2 = {"eps_ref": 0.5, "n_attack": 24, "pgd_steps": 3, "pgd_restarts": 1, "apgd_n": 8, "apgd_steps": 5,
        "apgd_restarts": 1, "sweep_multipliers": [0, 1, 64], "sweep_steps": 3, "sweep_n": 8}


# ----------------------------------------------------------------------------------------------- budgets, specs

def test_scaled_eps_keeps_per_pixel_rms_of_ilyas_cifar_budget():
    assert p2.scaled_eps(0.5, (3, 32, 32)) == 0.5
    assert p2.scaled_eps(0.5, (1, 28, 28)) == pytest.approx(0.5 * 28 / math.sqrt(3072), abs=1e-6)  # 0.252591
    assert p2.scaled_eps(0.5, (3, 28, 28)) == pytest.approx(0.4375, abs=1e-6)
    # same RMS per pixel: eps / sqrt(D) is constant
    assert p2.scaled_eps(1.0, (1, 28, 28)) / 28 == pytest.approx(1.0 / math.sqrt(3072), abs=1e-6)
    with pytest.raises(ValueError, match="eps_ref"):
        p2.scaled_eps(-1, (1, 28, 28))
    with pytest.raises(ValueError, match="input_shape"):
        p2.scaled_eps(0.5, (1, 0, 28))


def test_tasks_are_consistent_with_the_registry():
    t = p2.get_task("mednist_ct")
    assert t.class_names == ("AbdomenCT", "ChestCT", "HeadCT") and t.num_classes == 3 and t.domain == "medical"
    assert p2.get_task("cifar10").domain == "natural" and p2.get_task("cifar10").medmnistc is None
    ds, _, _ = p2.medmnistc_registry()
    for task in p2.TASKS.values():
        assert task.medmnistc is None or task.medmnistc in ds
    with pytest.raises(ValueError, match="unknown P2 task 'organamnist'"):
        p2.get_task("organamnist")



def test_tasks_yaml_is_validated_with_the_file_task_and_field_named(tmp_path):
    import yaml

    entries = yaml.safe_load(p2.tasks.TASKS_FILE.read_text())
    assert {e["name"] for e in entries} == set(p2.TASKS)
    assert p2.tasks.read_tasks(p2.tasks.TASKS_FILE) == p2.TASKS  # the chapter's list is the file's
    good = {"name": "ct", "dataset": "mednist", "classes": [0, 3], "size": 28, "channels": 1, "medmnistc": None,
            "title": "CT"}
    assert p2.tasks.read_tasks(_yaml(tmp_path, [good]))["ct"].class_names == ("AbdomenCT", "ChestCT")
    for bad, field in ((dict(good, size=0), "'size' = 0"), (dict(good, channels=2), "'channels' = 2"),
                       (dict(good, classes=[0, 99]), "'classes' = [0, 99]"), (dict(good, dataset="nope"), "'dataset'"),
                       (dict(good, colour=1), "unknown field(s) ['colour']")):
        path = _yaml(tmp_path, [bad])
        with pytest.raises(ValueError) as err:
            p2.tasks.read_tasks(path)
        assert str(path) in str(err.value) and "task 'ct'" in str(err.value) and field in str(err.value)
    with pytest.raises(ValueError, match="listed twice"):
        p2.tasks.read_tasks(_yaml(tmp_path, [good, good]))
    # corruptions: optional, a list of names, only with a MedMNIST-C entry
    assert p2.tasks.read_tasks(_yaml(tmp_path, [good]))["ct"].corruptions is None
    ok = dict(good, medmnistc="organamnist", corruptions=["jpeg_compression", "gaussian_noise"])
    assert p2.tasks.read_tasks(_yaml(tmp_path, [ok]))["ct"].corruptions == ("jpeg_compression", "gaussian_noise")
    for bad in (dict(good, corruptions=["jpeg_compression"]), dict(ok, corruptions=[]),
                dict(ok, corruptions=["a", "a"]), dict(ok, corruptions="jpeg_compression")):
        with pytest.raises(ValueError, match="field 'corruptions'"):
            p2.tasks.read_tasks(_yaml(tmp_path, [bad]))


def test_new_tasks_and_their_shift_corruptions():
    """Issue 16: knee KL and brain MRI at 28 px gray, Imagenette at 28 px RGB; the natural controls get the four
    corruption families of every medical entry (JPEG, noise, blur, contrast) from an entry of their colour type."""
    knee, brain, inet, fmnist = (p2.get_task(n) for n in ("kneeoa", "braintumor", "imagenette", "fashionmnist"))
    assert knee.input_shape == brain.input_shape == (1, 28, 28) and inet.input_shape == (3, 28, 28)
    assert knee.num_classes == 5 and brain.num_classes == 4 and inet.num_classes == 10
    assert knee.domain == brain.domain == "medical" and inet.domain == fmnist.domain == "natural"
    assert p2.specs.task_corruptions("breastmnist") == p2.corruption_names("breastmnist")  # medical: the whole entry
    families = {"jpeg_compression": "digital", "gaussian_noise": "noise", "contrast_down": "color"}
    for t in (inet, fmnist):
        names = p2.specs.task_corruptions(t.name)
        assert len(names) == 4 and all(families.get(c, p2.corruption_category(c)) == p2.corruption_category(c)
                                       for c in names)
        assert sorted(p2.corruption_category(c) for c in names) == ["blur", "color", "digital", "noise"]
        _, rgb, _ = p2.medmnistc_registry()
        assert rgb[t.medmnistc] == (t.channels == 3)
    with pytest.raises(ValueError, match="no MedMNIST-C registry entry"):
        p2.specs.task_corruptions("cifar10")
    # a release without a test split is tested on its val split
    assert p2.tasks.data_split("imagenette", "test") == "val" and p2.tasks.data_split("kneeoa", "test") == "test"
    assert p2.tasks.data_split("imagenette", "train") == "train"


def _yaml(tmp_path, entries):
    import yaml

    path = tmp_path / "tasks.yaml"
    path.write_text(yaml.safe_dump(entries))
    return path


def test_published_numbers_say_where_they_come_from():
    from domaingap.chapters import published

    pub = published("p2")
    assert pub["ilyas_cifar10_clean_accuracy"]["values"] == {"D_R": 0.8486, "D_NR": 0.8779, "D_rand": 0.6327,
                                                             "D_det": 0.4381}
    assert pub["ilyas_cifar10_pgd_accuracy"]["values"] == {"D_R": 0.48, "D_NR": 0.0}
    assert all("Ilyas" in entry["source"] for entry in pub.values())

def test_model_and_dataset_specs():
    std = p2.model_spec("breastmnist", MCFG, 3)
    rob = p2.model_spec("breastmnist", MCFG, 3, robust=True)
    eps = p2.scaled_eps(0.5, (1, 28, 28))
    assert std["adversarial"] is None and std["seed"] == 3 and std["train_on"] == "clean"
    assert rob["adversarial"] == {"eps": eps, "steps": 2, "step_size": round(2.5 * eps / 2, 6), "norm": "l2"}
    assert p2.runs.train_run(std).key != p2.runs.train_run(rob).key
    det = p2.dataset_spec("det", std, TAB1)
    assert det["eps_grid"] == [eps, round(4 * eps, 6)] and det["step_ratio"] == 0.5 and det["source"] == std
    assert p2.dataset_spec("r", rob, TAB1)["n"] == 12
    with pytest.raises(ValueError, match="D_r needs a robust source"):
        p2.dataset_spec("r", std, TAB1)
    with pytest.raises(ValueError, match="D_det needs a standard source"):
        p2.dataset_spec("det", rob, TAB1)
    with pytest.raises(ValueError, match="variant"):
        p2.dataset_spec("flip", std, TAB1)
    with pytest.raises(ValueError, match="multipliers"):
        p2.dataset_spec("det", std, {**TAB1, "pgd_eps_multipliers": [0, 1]})
    fresh = p2.model_spec("breastmnist", MCFG, 3, train_on=det)
    assert fresh["train_on"]["source"] == std  # nested, JSON-able
    p2.runs.train_run(fresh).key  # a valid spec (plain JSON data)
    assert p2.runs.train_run(fresh).upstream["data"].spec == det  # its dataset is an upstream run


def test_targets_det_changes_every_label_and_rand_is_uniform_and_seeded():
    y = np.arange(600) % 3
    det = p2.targets(y, 3, "det", seed=0)
    assert (det == (y + 1) % 3).all() and (det != y).all()
    r1, r2 = p2.targets(y, 3, "rand", seed=1), p2.targets(y, 3, "rand", seed=1)
    assert (r1 == r2).all() and set(np.unique(r1)) == {0, 1, 2}
    # uniform over ALL classes: about 1/K keep their label (chi-square against uniform is not rejected)
    assert stats.chisquare(np.bincount(r1, minlength=3)).pvalue > 1e-3
    assert abs((r1 == y).mean() - 1 / 3) < 0.08
    with pytest.raises(ValueError, match="variant"):
        p2.targets(y, 3, "nr", seed=0)


@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_derangement_has_no_fixed_points(n):
    for seed in range(20):
        perm = p2.derangement(n, np.random.default_rng(seed))
        assert sorted(perm) == list(range(n)) and (perm != np.arange(n)).all()


def test_head_is_a_seeded_random_nested_subset():
    x = torch.arange(20.0).view(20, 1)
    y = torch.arange(20)
    xa, ya = p2.head(x, y, 5)
    xb, yb = p2.head(x, y, 12)
    assert (ya == yb[:5]).all() and (xa[:, 0] == ya).all()  # nested prefixes, pairs kept
    assert not (ya == torch.arange(5)).all()  # not the first five (sorted test sets can be sorted by class)
    assert sorted(p2.head(x, y, None)[1].tolist()) == list(range(20))


def test_balanced_class_weights_equalise_the_classes():
    y = np.array([0] * 6 + [1] * 2 + [2] * 4)
    w = p2.balanced_class_weights(y, 4)
    assert w[:3] == pytest.approx([12 / (4 * 6), 12 / (4 * 2), 12 / (4 * 4)]) and w[3] == 1.0
    assert np.bincount(y)[:3] * np.array(w[:3]) == pytest.approx([3.0, 3.0, 3.0])
    with pytest.raises(ValueError, match="num_classes"):
        p2.balanced_class_weights(y, 2)


# ----------------------------------------------------------------------------------------------- saliency

def test_saliency_of_a_linear_model_is_its_weights_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    model.train()
    x = torch.rand(5, 2, 4, 4)
    y = torch.tensor([0, 1, 2, 1, 0])
    sal = p2.input_saliency(model, x, y)
    w = model[1].weight.detach().view(3, 2, 4, 4)
    assert sal.shape == (5, 4, 4)
    torch.testing.assert_close(sal, w[y].abs().sum(1))
    assert model.training and all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        p2.input_saliency(model, x[0], y)


def test_rank_correlation_matches_spearman():
    rng = np.random.default_rng(0)
    a, b = rng.random((4, 6, 6)), rng.random((4, 6, 6))
    rho = p2.rank_correlation(a, b)
    assert rho == pytest.approx([stats.spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in range(4)])
    assert p2.rank_correlation(a, 2 * a + 1) == pytest.approx(np.ones(4))
    assert p2.rank_correlation(a, -a) == pytest.approx(-np.ones(4))
    flat = p2.rank_correlation(np.ones((1, 3, 3)), a[:1, :3, :3])
    assert math.isnan(flat[0])
    with pytest.raises(ValueError, match="same shape"):
        p2.rank_correlation(a, b[:, :5])


# ----------------------------------------------------------------------------------------------- MedMNIST-C

def _smooth_images(n, c, size=28, seed=0):
    # low-frequency images (like real scans at 28 px) for which the 224 px round trip is nearly exact
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, c, size, size), np.uint8)
    for i in range(n):
        for ch in range(c):
            f = rng.uniform(0.5, 2, 2)
            out[i, ch] = np.rint(127.5 + 100 * np.sin(2 * np.pi * (f[0] * xx + f[1] * yy) + rng.uniform(0, 6)))
    return out


def test_corrupt_round_trip_and_determinism():
    imgs = _smooth_images(3, 1)
    clean = p2.corrupt(imgs, "breastmnist", "none", 0)
    assert clean.shape == imgs.shape and clean.dtype == np.uint8
    assert np.sqrt(((clean.astype(float) - imgs) ** 2).mean()) < 2.0  # grey levels
    state = np.random.get_state()
    a = p2.corrupt(imgs, "pneumoniamnist", "gaussian_noise", 4, seed=7)
    assert all((x == y).all() for x, y in zip(np.random.get_state()[1:2], state[1:2]))  # global state restored
    b = p2.corrupt(imgs, "pneumoniamnist", "gaussian_noise", 4, seed=7)
    c = p2.corrupt(imgs, "pneumoniamnist", "gaussian_noise", 4, seed=8)
    assert (a == b).all() and not (a == c).all()


def test_corrupt_severity_orders_the_effect_and_rgb_stays_rgb():
    imgs = _smooth_images(2, 3)
    means = [p2.corrupt(imgs, "retinamnist", "brightness_down", s).mean() for s in range(5)]
    assert all(m1 > m2 for m1, m2 in zip(means, means[1:]))  # darker with every severity (0.9 ... 0.5)
    out = p2.corrupt(imgs, "retinamnist", "pixelate", 4)
    assert out.shape == (2, 3, 28, 28)
    noisy, rms224 = p2.corrupt(imgs[:1, :1], "organamnist", "gaussian_noise", 4, return_rms_work=True)
    rms28 = np.sqrt(((noisy.astype(float) - p2.corrupt(imgs[:1, :1], "organamnist", "none", 0)) ** 2).mean()) / 255
    assert 0.1 < rms224[0] < 0.25 and rms28 < rms224[0] / 3  # i.i.d. noise averages out over 8 x 8 pixels


def test_corrupt_a_224_px_release_directly_and_shrink_it_to_the_model_size():
    from PIL import Image

    big = _smooth_images(2, 1, size=224)
    clean = p2.corrupt(big, "breastmnist", "none", 0, out_size=28)
    # no up-sampling: the clean "round trip" is just the box (area) shrink of the 224 px image
    boxed = np.stack([np.asarray(Image.fromarray(b[0]).resize((28, 28), Image.BOX))[None] for b in big])
    assert clean.shape == (2, 1, 28, 28) and np.abs(clean.astype(int) - boxed).max() <= 1
    noisy = p2.corrupt(big, "breastmnist", "speckle_noise", 4, seed=0, out_size=28)
    assert noisy.shape == (2, 1, 28, 28) and not (noisy == clean).all()
    with pytest.raises(ValueError, match="square"):
        p2.corrupt(big[:, :, :, :100], "breastmnist", "none", 0)


def test_paper_profile_corrupts_the_224_px_release(monkeypatch):
    paper, default = profiles.get("p2_tab3", "paper"), profiles.get("p2_tab3", "default")
    assert p2.mmc_data_spec("pneumoniamnist", "pixelate", paper)["source_release"] == 224
    assert "source_release" not in p2.mmc_data_spec("pneumoniamnist", "pixelate", default)
    assert "source_release" not in p2.mmc_data_spec("mednist_ct", "pixelate", paper)  # MedNIST: 64 px only


def test_corrupt_motion_blur_at_224_works_for_gray():
    imgs = _smooth_images(1, 1)
    out = p2.corrupt(imgs, "breastmnist", "motion_blur", 2, seed=0)
    assert out.shape == (1, 1, 28, 28) and out.dtype == np.uint8


def test_corrupt_rejects_bad_input():
    imgs = _smooth_images(1, 1)
    with pytest.raises(ValueError, match="uint8"):
        p2.corrupt(imgs.astype(np.float32), "breastmnist", "pixelate", 0)
    with pytest.raises(ValueError, match="severity"):
        p2.corrupt(imgs, "breastmnist", "pixelate", 5)
    with pytest.raises(ValueError, match="no corruption 'gaussian_noise'"):
        p2.corrupt(imgs, "breastmnist", "gaussian_noise", 0)
    with pytest.raises(ValueError, match="registry entry 'mednist'"):
        p2.corrupt(imgs, "mednist", "pixelate", 0)
    assert p2.corruption_category("gaussian_noise") == "noise"
    assert p2.corruption_category("gamma_corr_up") == "task-specific"



# ----------------------------------------------------------------------------------------------- run kinds, keys

KIND_SHAPERS = {  # run kind -> functions that shape its result and must be in its code closure
    "train_run": ["domaingap.training.fit", "domaingap.training.evaluate", "domaingap.training.predict_proba",
                  "domaingap.models.build_model", "domaingap.models.build_configured",
                  "domaingap.chapters.p2.inputs.train_data", "domaingap.chapters.p2.inputs.test_data",
                  "domaingap.chapters.p2.inputs.balanced_class_weights", "domaingap.chapters.p2.tasks.load_task",
                  "domaingap.data.request.load"],
    "dataset_run": ["domaingap.kernels.attacks.pgd", "domaingap.kernels._inversion.invert_representation",
                    "domaingap.models.penultimate", "domaingap.chapters.p2.inputs.targets",
                    "domaingap.chapters.p2.inputs.derangement", "domaingap.chapters.p2.inputs.load_model",
                    "domaingap.chapters.p2.inputs.train_data"],
    "robust_view_run": ["domaingap.chapters.p2.inputs.train_data", "domaingap.chapters.p2.inputs.load_model",
                        "domaingap.models.build_model"],
    "robust_eval_run": ["domaingap.kernels.attacks.pgd", "domaingap.chapters.p2.inputs.head",
                        "domaingap.chapters.p2.inputs.test_data", "domaingap.chapters.p2.inputs.load_model"],
    "mmc_data_run": ["domaingap.kernels.corruptions.corrupt", "domaingap.kernels.corruptions.to_uint8",
                     "domaingap.chapters.p2.tasks.load_task", "domaingap.data.request.load_arrays"],
    "mmc_eval_run": ["domaingap.chapters.p2.inputs.load_model", "domaingap.chapters.p2.runs.mmc_input_name",
                     "domaingap.chapters.p2.tasks.load_task"],
    "saliency_run": ["domaingap.kernels.saliency.input_saliency", "domaingap.kernels.saliency.rank_correlation",
                     "domaingap.kernels.saliency.edge_alignment", "domaingap.kernels.saliency.sobel_magnitude",
                     "domaingap.kernels.attacks.pgd", "domaingap.chapters.p2.inputs.head",
                     "domaingap.chapters.p2.inputs.load_model"],
}


@pytest.mark.parametrize("name", sorted(KIND_SHAPERS))
def test_code_closure_of_each_run_kind_has_what_shapes_it_and_no_analysis(name):
    import inspect

    found = code.closure([getattr(p2.runs, name)])
    assert f"domaingap.chapters.p2.runs.{name}" in found
    missing = [f for f in KIND_SHAPERS[name] if f not in found]
    assert not missing, f"{name}'s code hash misses {missing}"
    assert "const:domaingap.chapters.p2.tasks.TASK_TABLE" in found  # editing tasks.yaml recomputes the runs
    # editing a table, a statistic or the spec builders retrains nothing
    analysis = [f"{fn.__module__}.{fn.__qualname__}" for mod in (p2.analysis, p2.specs)
                for _, fn in inspect.getmembers(mod, inspect.isfunction) if fn.__module__ == mod.__name__]
    assert len(analysis) > 15 and not [f for f in analysis if f in found]
    assert not any(n.startswith(("domaingap.chapters.p2.analysis", "domaingap.chapters.p2.specs",
                                 "domaingap.runs", "domaingap.claims")) for n in found)
    other_kinds = [f"domaingap.chapters.p2.runs.{k}" for k in KIND_SHAPERS if k != name]
    assert not [k for k in other_kinds if k in found]  # another kind's code enters only through its key


def test_downstream_keys_follow_their_upstream_runs(monkeypatch):
    std = p2.model_spec("breastmnist", MCFG, 0)
    det = p2.dataset_spec("det", std, TAB1)
    ds, fresh = p2.runs.dataset_run(det), p2.runs.train_run(p2.model_spec("breastmnist", MCFG, 0, train_on=det))
    assert ds.upstream["source"].key == p2.runs.train_run(std).key
    assert fresh.record["upstream"]["data"] == {"kind": "p2_dataset", "key": ds.key}
    assert p2.runs.train_run(std).upstream == {}  # a model trained on the clean set has no upstream
    # the source model's spec changes -> the dataset and the fresh model trained on it change
    std2 = p2.model_spec("breastmnist", {**MCFG, "epochs": 2}, 0)
    det2 = p2.dataset_spec("det", std2, TAB1)
    assert p2.runs.dataset_run(det2).upstream["source"].key != ds.upstream["source"].key
    assert p2.runs.dataset_run(det2).key != ds.key
    assert p2.runs.train_run(p2.model_spec("breastmnist", MCFG, 0, train_on=det2)).key != fresh.key
    # the source model's code changes (same specs): its dependents get new keys, unrelated runs keep theirs
    mmc = p2.runs.mmc_data_run(p2.mmc_data_spec("breastmnist", "pixelate", {"n_test": 6, "corruption_seed": 0,
                                                                              "work_size": 224}))
    saliency = p2.runs.saliency_run(p2.saliency_spec(std, p2.model_spec("breastmnist", MCFG, 0, robust=True),
                                                     {"n_images": 4, "eps_ref": 0.5, "pgd_steps": 2}))
    before = {"ds": ds.key, "fresh": fresh.key, "mmc": mmc.key, "saliency": saliency.key}
    monkeypatch.setitem(p2.runs.train_run.__dict__, "code_hash", "an-edited-train-run")
    after = {"ds": p2.runs.dataset_run(det).key, "mmc": p2.runs.mmc_data_run(mmc.spec).key,
             "fresh": p2.runs.train_run(fresh.spec).key, "saliency": p2.runs.saliency_run(saliency.spec).key}
    assert {k for k in before if before[k] != after[k]} == {"ds", "fresh", "saliency"}


def test_sweeps_list_every_run_the_notebooks_read_once():
    sw = p2.sweeps("ci")
    assert list(sw) == ["models", "tab2", "tab3", "fig1", "tab1"]
    assert all(isinstance(r, runs.Run) for items in sw.values() for r in items)
    keys = [r.key for items in sw.values() for r in items]
    assert len(keys) == len(set(keys))  # each run in one sweep only: summed compute counts it once
    listed = set(keys)
    mcfg, t1, f1 = (profiles.get(f"p2_{n}", "ci") for n in ("models", "tab1", "fig1"))
    assert len(sw["models"]) == len(mcfg["tasks"]) * len(mcfg["seeds"]) * 2 == len(sw["tab2"])
    assert all(item["model"].key in listed and item["eval"].key in listed for item in p2.specs.tab2_plan("ci"))
    plan = p2.specs.tab1_plan("ci")
    n_inv = sum(t in t1["inversion_tasks"] for t in mcfg["tasks"]) * len(t1["inversion_seeds"])
    assert len(plan) == len(mcfg["tasks"]) * len(t1["seeds"]) * len(t1["variants"]) + 2 * n_inv  # + D_NR, D_R
    assert all(item[k].key in listed for item in plan for k in ("source", "dataset", "fresh", "view", "eval")
               if item[k] is not None)
    assert {item["variant"] for item in plan if item["eval"] is not None} == {"nr", "r"}
    tab3 = p2.specs.tab3_plan("ci")
    assert {r.key for r in tab3["data"] + tab3["evals"]} <= listed
    assert {ev.spec["model"]["task"] for ev in tab3["evals"]} == set(mcfg["tasks"])  # natural controls too
    assert all(r.kind.name == "p2_mmc_data" for ev in tab3["evals"] for n, r in ev.upstream.items() if n != "model")
    fig1 = p2.specs.fig1_plan("ci")
    assert [r.kind.name for r in sw["fig1"]] == ["p2_saliency"] * len(fig1) == ["p2_saliency"] * (
        len(f1["tasks"]) * len(f1["seeds"]))
    for r in fig1:  # a third model of the same task: the standard model of the next seed
        std, src = r.spec["standard"], r.spec["source"]
        assert src["task"] == std["task"] and src["adversarial"] is None and src["seed"] != std["seed"]
        assert set(r.upstream) == {"standard", "robust", "source"} and r.upstream["source"].key in listed
    # APGD on every robust model, on standard models of check_seeds only
    t2 = profiles.get("p2_tab2", "ci")
    for item in p2.specs.tab2_plan("ci"):
        s = item["model"].spec
        assert (item["eval"].spec["apgd"] is not None) == (s["adversarial"] is not None or s["seed"] in t2["check_seeds"])


def test_source_seed_is_another_seed_of_the_list():
    assert p2.specs.source_seed(0, [0, 1, 2]) == 1 and p2.specs.source_seed(2, [0, 1, 2]) == 0
    assert p2.specs.source_seed(0, [0]) == 1 and p2.specs.source_seed(5, [0, 1]) == 6
    std, rob = p2.model_spec("breastmnist", MCFG, 0), p2.model_spec("breastmnist", MCFG, 0, robust=True)
    cfg = {"n_images": 4, "eps_ref": 0.5, "pgd_steps": 2}
    with pytest.raises(ValueError, match="third model"):
        p2.saliency_spec(std, rob, cfg, std)
    with pytest.raises(ValueError, match="third model"):
        p2.saliency_spec(std, rob, cfg, p2.model_spec("mednist_ct", MCFG, 1))


def test_task_level_summaries_of_inversion_and_saliency_pairs():
    rows = [{"task": t, "seed": s, "variant": v, "pgd_accuracy": acc, "test": {"balanced_accuracy": 0.5}}
            for t, s, v, acc in (("a", 0, "r", 0.5), ("a", 0, "nr", 0.1), ("a", 1, "r", 0.4), ("a", 1, "nr", 0.2),
                                 ("b", 0, "r", 0.1), ("b", 0, "nr", 0.3), ("b", 1, "r", 0.2))]  # b seed 1: no D_NR
    rows.append({"task": "a", "seed": 0, "variant": "det", "pgd_accuracy": None, "test": {}})
    pairs = p2.analysis.inversion_pairs(rows)
    assert [(p["task"], p["seed"]) for p in pairs] == [("a", 0), ("a", 1), ("b", 0)]
    assert [p["diff"] for p in pairs] == pytest.approx([0.4, 0.2, -0.2])
    means = p2.analysis.task_means(pairs, ["diff"])
    assert means == [{"task": "a", "seeds": 2, "diff": pytest.approx(0.3)},
                     {"task": "b", "seeds": 1, "diff": pytest.approx(-0.2)}]

    def model(rho, rt, rr, edge):
        return {"rho": rho, "rho_transfer": rt, "rho_random": rr, "edge_alignment": edge, "clean_accuracy": 0.9,
                "transfer_accuracy": 0.5}

    item = {"task": "a", "seed": 0, "source_seed": 1,
            "result": {"standard": model([0.2, None], [0.1, 0.3], [0.9, 0.7], [0.0, 0.2]),
                       "robust": model([0.8, 0.6], [0.5, 0.7], [0.95, 0.85], [0.4, 0.6])}}
    row = p2.analysis.saliency_pairs([item])[0]
    assert row["standard_own"] == pytest.approx(0.2)  # undefined rho (None) dropped
    assert row["diff_transfer"] == pytest.approx(0.4) and row["diff_random"] == pytest.approx(0.1)
    assert row["diff_edge"] == pytest.approx(0.4) and row["diff_own"] == pytest.approx(0.5)


def test_cli_lists_the_sweeps(capsys):
    from domaingap.chapters import cli

    assert cli.main("p2", ["--profile", "ci", "--list"]) == 0
    out = capsys.readouterr().out
    n_fig1 = len(p2.specs.fig1_plan("ci"))
    assert "p2 tab1:" in out and f"p2 fig1: {n_fig1} runs, 0 cached" in out

# ----------------------------------------------------------------------------------------------- cached runs

def test_models_datasets_and_evaluations_end_to_end(require_data):
    require_data("breastmnist")
    std = p2.model_spec("breastmnist", MCFG, 0)
    rob = p2.model_spec("breastmnist", MCFG, 0, robust=True)
    entries = runs.compute([p2.runs.train_run(std), p2.runs.train_run(rob)], progress=False)
    for r in (e.result for e in entries):
        assert r["n_train"] == 48 and len(r["test_pred"]) == 40 == r["test"]["n"]
        assert r["test"]["accuracy"] == np.mean(np.array(r["test_pred"]) == np.array(r["test_y"]))
    assert runs.compute([p2.runs.train_run(std)], progress=False)[0].path == entries[0].path  # cached

    eps = p2.scaled_eps(0.5, (1, 28, 28))
    x, y = p2.train_data(std)
    det_spec = p2.dataset_spec("det", std, TAB1)
    det = runs.compute([p2.runs.dataset_run(det_spec)], progress=False)[0].result
    xd, yd = p2.train_data(p2.model_spec("breastmnist", MCFG, 0, train_on=det_spec))
    assert det["label_kept"] == 0 and (yd == (y + 1) % 2).all()
    # the budget is the first of the grid reaching the target success on the calibration images, else the last
    cal = det["calibration"]
    assert det["eps"] in det_spec["eps_grid"] and [c["eps"] for c in cal] == det_spec["eps_grid"][: len(cal)]
    assert det["eps"] == cal[-1]["eps"] and (cal[-1]["success"] >= 0.9 or len(cal) == len(det_spec["eps_grid"]))
    assert all(c["success"] < 0.9 for c in cal[:-1])
    assert ((xd - x).flatten(1).norm(dim=1) <= det["eps"] + 1e-6).all() and det["l2_max"] <= det["eps"] + 1e-6
    assert xd.min() >= 0 and xd.max() <= 1
    view = p2.robust_view(det_spec, rob)
    assert view["n_changed"] == 48 and view["robust_says_original"] + view["robust_says_target"] == pytest.approx(1)
    assert view["robust_target_shift"] == pytest.approx(view["robust_says_target"] - view["robust_target_on_clean"])
    with pytest.raises(ValueError, match="robust model spec"):
        p2.robust_view(det_spec, std)

    nr_spec = p2.dataset_spec("r", rob, TAB1)
    xr, yr = p2.train_data(p2.model_spec("breastmnist", MCFG, 0, train_on=nr_spec))
    assert xr.shape == (12, 1, 28, 28) and len(yr) == 12 and 0 <= xr.min() and xr.max() <= 1

    fresh = p2.model_spec("breastmnist", MCFG, 0, train_on=det_spec)
    ev = runs.compute([p2.runs.robust_eval_run(p2.robust_eval_spec(fresh, TAB2, apgd=True, sweep=True))],
                      progress=False)[0].result
    assert ev["n_attack"] == 24 and 0 <= ev["pgd_accuracy"] <= 1 and len(ev["pgd_correct"]) == 24
    assert ev["apgd"]["n"] == 8 and ev["apgd"]["worst_case_accuracy"] <= ev["apgd"]["apgd_accuracy"]
    acc = ev["sweep"]["accuracy"]
    # eps = 0 is the clean accuracy of those images; a bigger budget cannot help a 1-epoch model (which may
    # be constant, so "reaches 0" is left to the notebooks' real models)
    model, _ = p2.trained(fresh)
    xs, ys = p2.head(*p2.test_data(fresh), 8)
    assert acc[0] == pytest.approx(float((model(xs).argmax(1) == ys).float().mean()))
    assert acc[2] <= acc[0]



def test_medmnistc_data_and_eval_runs(require_data):
    require_data("breastmnist")
    cfg = {"n_test": 6, "corruption_seed": 0, "work_size": 224}
    spec = p2.model_spec("breastmnist", MCFG, 0)
    ev_spec = p2.mmc_eval_spec(spec, cfg)
    assert [d["corruption"] for d in ev_spec["data"]] == ["none"] + p2.corruption_names("breastmnist")
    stacks = p2.mmc_data(p2.mmc_data_spec("breastmnist", "brightness_up", cfg))
    assert stacks.shape == (5, 6, 1, 28, 28) and stacks.dtype == np.uint8
    assert stacks[4].mean() > stacks[0].mean()
    ev_spec["data"] = ev_spec["data"][:2]  # clean round trip + pixelate keep the test fast
    ev = runs.compute([p2.runs.mmc_eval_run(ev_spec)], progress=False)[0].result
    assert [(r["corruption"], r["severity"]) for r in ev["rows"]] == [("none", 0)] + [("pixelate", s) for s in range(1, 6)]
    assert all(0 <= r["balanced_accuracy"] <= 1 for r in ev["rows"])
    # paper: the same test images from the 224 px release; offline the run names the missing file
    with pytest.raises(data.DataFileError, match="breastmnist_224.npz"):
        p2.runs.mmc_data_run.fn(p2.mmc_data_spec("breastmnist", "pixelate", {**cfg, "source_release": True}), {}, None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_use_cuda(require_data):
    require_data("breastmnist")
    std = p2.model_spec("breastmnist", MCFG, 0)
    res = runs.compute([p2.runs.train_run(std)], progress=False)[0].result
    model, _ = p2.trained(std)
    assert res["device"].startswith("cuda") and next(model.parameters()).device.type == "cuda"
    det = runs.compute([p2.runs.dataset_run(p2.dataset_spec("det", std, TAB1))], progress=False)[0].result
    assert det["device"].startswith("cuda") and det["label_kept"] == 0


def test_verdict():
    assert p2.verdict(0.1, 0.01) == "reproduced" and p2.verdict(-0.1, 0.01) == "not reproduced"
    assert p2.verdict(-0.1, 0.01, expected_sign=-1) == "reproduced" and p2.verdict(0.1, 0.2) == "inconclusive"
    assert p2.verdict(float("nan"), 0.01) == "inconclusive"


def test_swap_by_task_flags_seeds_that_share_their_task_effect():
    import pandas as pd

    idx = pd.MultiIndex.from_product([[f"t{i}" for i in range(6)], [0, 1, 2]], names=["task", "seed"])
    rng = np.random.default_rng(0)
    # three seeds per task that all carry their task's difference: 18 pairs but only 6 independent units
    shared = p2.swap_by_task(pd.Series(np.repeat([0.10, 0.05, 0.20, 0.08, 0.15, 0.12], 3)
                                       + 0.005 * rng.normal(size=18), index=idx))
    # every pair its own independent draw: swapping whole tasks is no worse than swapping pairs
    independent = p2.swap_by_task(pd.Series(rng.normal(size=18), index=idx))
    assert shared.rejections == 18 and shared.rate == pytest.approx(18 / 64)  # all 2^6 patterns enumerated
    assert shared.rate > 0.2 and independent.rate <= 0.07 and "must be <= alpha" in shared.summary()
