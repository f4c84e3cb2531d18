"""Tests for domaingap.chapters.p3 (Juodelyte et al., TMLR 2023): folds, initialisations and weight loading, the
frozen warm-up, prediction agreement, the statistics helpers, the run graph (code closures, upstream keys), and a
tiny end-to-end pipeline on real data.

Known answers are computed independently (hand-counted tables, scipy / scikit-learn); the pipeline test checks
properties that hold at any size: folds partition the pool, a network is CCA-identical to itself, cached runs
are reused bit for bit.
"""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import cohen_kappa_score

from domaingap import models, paths, runs
from domaingap.chapters import p3
from domaingap.chapters.p3 import analysis, specs
from domaingap.runs import code

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

# A tiny ResNet keeps the CPU cost of a test to seconds; width/stem are used when build_model offers them.
_HAS_WIDTH = "width" in inspect.signature(models.build_model).parameters
TINY = {"arch": "resnet18", "image_size": 12, "channels": 1, **({"width": 4, "stem": "cifar"} if _HAS_WIDTH else {})}




@pytest.fixture
def tmp_artefacts(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ARTEFACTS_ENV, str(tmp_path / "art"))
    return tmp_path / "art"


# ----------------------------------------------------------------------------------------------- folds

def test_folds_partition_and_stratify():
    y = np.array([0] * 37 + [1] * 13 + [2] * 10)
    fs = p3.folds(y, 5, seed=3)
    assert len(fs) == 5
    held = np.concatenate([te for _, te in fs])
    assert np.array_equal(np.sort(held), np.arange(len(y)))  # every image held out exactly once
    for tr, te in fs:
        assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == len(y)
        for c, total in zip(range(3), (37, 13, 10)):  # stratified: per-class counts within one of total/5
            assert abs(np.sum(y[te] == c) - total / 5) < 1
    again = p3.folds(y, 5, seed=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(fs, again))
    with pytest.raises(ValueError, match="n_folds=5 needs >= 5 images per class"):
        p3.folds(np.array([0] * 10 + [1] * 3), 5, seed=0)


# ----------------------------------------------------------------------------------------------- agreement

def test_agreement_known_answer():
    a = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], bool)  # acc 0.6
    b = np.array([1, 1, 1, 1, 0, 0, 1, 0, 0, 0], bool)  # acc 0.5
    r = p3.agreement(a, b)
    assert r["observed"] == pytest.approx(7 / 10)  # 4 both right + 3 both wrong
    assert r["independent"] == pytest.approx(0.6 * 0.5 + 0.4 * 0.5)
    assert r["paper_a"] == pytest.approx(0.6 ** 2 + 0.4 ** 2)
    assert r["paper_b"] == pytest.approx(0.5)
    assert r["kappa"] == pytest.approx(cohen_kappa_score(a, b))
    # with equal accuracies P3's baseline is the independence baseline
    r2 = p3.agreement(a, a[::-1])
    assert r2["paper_a"] == pytest.approx(r2["independent"])
    with pytest.raises(ValueError, match=r"shapes \(10,\) and \(9,\)"):
        p3.agreement(a, b[:9])


def test_agreement_test_direction():
    rng = np.random.default_rng(0)
    a = rng.random(400) < 0.7
    same = p3.agreement_test(a, a)
    opposite = p3.agreement_test(a, ~a)
    assert same["p"] < 1e-10 and opposite["p"] > 0.99
    assert same["table"][0][1] == 0 and same["table"][1][0] == 0


# ----------------------------------------------------------------------------------------------- models

def test_build_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    m1 = p3.build(TINY, 2, seed=5)
    after = torch.rand(1)
    m2, m3 = p3.build(TINY, 2, seed=5), p3.build(TINY, 2, seed=6)
    assert torch.equal(before, after)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert not torch.equal(m1.conv1.weight, m3.conv1.weight)
    with pytest.raises(ValueError, match="not accepted by build_model"):
        p3.build({**TINY, "depth_multiplier": 2}, 2, seed=0)


def test_imagenet_style_weight_file_loads_into_grey_model(tmp_path):
    """A torchvision ImageNet-layout state dict (RGB 7x7 stem, 1000-class head, DataParallel prefix) loads into
    the chapter's 1-channel model: RGB stem summed, backbone copied, head fresh."""
    import torchvision

    src = torchvision.models.resnet18(weights=None)
    path = tmp_path / "imagenet_like.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    cfg = {"arch": "resnet18", "image_size": 72, "channels": 1}  # > 64 px keeps torchvision's ImageNet stem
    init = p3.weights_init(path)
    assert init["kind"] == "weights" and len(init["sha256"]) == 64
    model, summary = p3.init_model(init, model_cfg=cfg, num_classes=2, seed=7)
    assert torch.allclose(model.conv1.weight, src.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(model.layer3[1].conv2.weight, src.layer3[1].conv2.weight)
    assert torch.equal(model.bn1.running_var, src.bn1.running_var)
    fresh = p3.build(cfg, 2, seed=7)
    assert torch.equal(model.fc.weight, fresh.fc.weight) and model.fc.weight.shape == (2, 512)
    assert summary["adapted"] == ["conv1.weight"] and summary["missing"] == []
    json.dumps(init)
    # a changed file is refused rather than silently used under the old spec
    torch.save(src.state_dict(), path)
    with pytest.raises(ValueError, match="changed since its spec was made"):
        p3.init_model(init, model_cfg=cfg, num_classes=2, seed=7)
    with pytest.raises(ValueError, match="does not exist"):
        p3.weights_init(tmp_path / "nope.pt")
    assert p3.weights_init("imagenet") == {"kind": "weights", "source": "imagenet"}


def test_radimagenet_style_sequential_checkpoint_loads(tmp_path):
    """Converted RadImageNet ResNet50 checkpoints are ``nn.Sequential(*children[:-1])`` state dicts
    ("0.weight", "4.0.conv1.weight", ...): they load into the chapter's ResNet50 with a fresh head."""
    import torchvision
    from torch import nn

    src = torchvision.models.resnet50(weights=None)
    backbone = nn.Sequential(*list(src.children())[:-1])
    path = tmp_path / "RadImageNet-ResNet50.pt"
    torch.save(backbone.state_dict(), path)
    cfg = {"arch": "resnet50", "image_size": 112, "channels": 1}
    model, summary = p3.init_model(p3.weights_init(path), model_cfg=cfg, num_classes=3, seed=0)
    assert torch.equal(model.layer4[2].conv3.weight, src.layer4[2].conv3.weight)
    assert torch.allclose(model.conv1.weight, src.conv1.weight.sum(1, keepdim=True))
    assert summary["missing"] == [] and summary["unexpected"] == []
    assert model.fc.out_features == 3


def test_warmup_trains_only_the_head():
    torch.manual_seed(0)
    model = p3.build(TINY, 2, seed=0)
    x = torch.rand(40, 1, TINY["image_size"], TINY["image_size"])
    y = (x.mean((1, 2, 3)) > x.mean()).long()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    p3.warmup_head(model, x, y, epochs=3, lr=1e-2, batch_size=16, seed=0)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}  # backbone weights AND BatchNorm statistics untouched


def test_layer_similarity_self_is_one_and_checks_shapes():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(30, 6, 4, 4, generator=g)
    b = torch.randn(30, 6, 4, 4, generator=g)
    same = p3.layer_similarity(a, a, n_channels=4, repeats=2)
    assert all(v == pytest.approx(1.0, abs=1e-6) for v in same.values())
    other = p3.layer_similarity(a, b, n_channels=4, repeats=2)
    assert all(v < 0.5 for v in other.values())
    with pytest.raises(ValueError, match=r"\(30, 6, 4, 4\) and \(30, 5, 4, 4\)"):
        p3.layer_similarity(a, b[:, :5])


# ----------------------------------------------------------------------------------------------- config

def _cfg(**over):
    cfg = {"model": TINY, "sources": {"natural": {"dataset": "fashionmnist"},
                                      "medical": {"dataset": "pneumoniamnist"}},
           "targets": ["breastmnist"], "n_folds": 2, "fold_seed": 0, "pretrain_seeds": [0],
           "pretrain": {"n": 96, "n_test": 48, "epochs": 1, "batch_size": 32, "lr": 1e-3, "weight_decay": 1e-4},
           "finetune": {"max_pool": 48, "max_epochs": 2, "patience": 1, "val_fraction": 0.25, "batch_size": 16,
                        "lr": 1e-3, "weight_decay": 1e-4},
           "warmup": {"epochs": 1, "lr": 1e-3, "batch_size": 16},
           "similarity": {"probe_n": 24, "n_channels": 4, "repeats": 2}}
    cfg.update(over)
    return cfg


def test_config_errors_name_the_problem():
    p3.check_config(_cfg())
    with pytest.raises(ValueError, match="must be a resnet, got 'vgg16'"):
        p3.check_config(_cfg(model={**TINY, "arch": "vgg16"}))
    with pytest.raises(ValueError, match="exactly one of 'dataset' or 'weights'"):
        p3.check_config(_cfg(sources={"x": {"dataset": "mnist", "weights": "imagenet"}}))
    with pytest.raises(ValueError, match="reserved"):
        p3.check_config(_cfg(sources={"random": {"dataset": "mnist"}}))
    for profile in ("ci", "default", "paper"):
        assert "threads" not in p3.config(profile)  # the store sets threads ($DOMAINGAP_RUN_THREADS, in the key)


def test_inits_skip_a_source_on_its_own_dataset():
    cfg = _cfg(sources={"natural": {"dataset": "cifar10"}, "medical": {"dataset": "mednist"}})
    assert p3.inits(cfg, "breastmnist") == ["natural", "natural-Fr", "medical", "medical-Fr", "random"]
    assert p3.inits(cfg, "mednist") == ["natural", "natural-Fr", "random"]
    spec = p3.finetune_spec(cfg, "breastmnist", "medical-Fr", 1)
    assert spec["warmup"] == cfg["warmup"] and spec["init"]["spec"]["dataset"] == "mednist"
    assert "device" not in json.dumps(spec)
    assert ("natural", "medical") in p3.similarity_pairs(cfg, "breastmnist")


# ----------------------------------------------------------------------------------------------- data

def test_probe_images_match_data_load(require_data):
    from domaingap import data

    require_data("retinamnist")
    cfg = {"image_size": 28, "channels": 1}
    x = p3.probe_images("retinamnist", model_cfg=cfg, n=10_000, seed=0)  # more than exist: every image
    ref = torch.cat([data.load("retinamnist", s, size=28, channels=1).x for s in ("train", "val", "test")])
    assert x.shape == (1600, 1, 28, 28) and torch.equal(x, ref)
    sub = p3.probe_images("retinamnist", model_cfg=cfg, n=50, seed=1)
    assert sub.shape == (50, 1, 28, 28)


def test_target_pool_cap_keeps_class_proportions(require_data):
    require_data("breastmnist")
    x, y = p3.target_pool("breastmnist", model_cfg={"image_size": 28, "channels": 1})
    assert x.shape == (546 + 78, 1, 28, 28)
    xs, ys = p3.target_pool("breastmnist", model_cfg={"image_size": 28, "channels": 1}, max_pool=100, seed=0)
    assert len(ys) == 100 and abs(ys.float().mean() - y.float().mean()) < 0.01


# ----------------------------------------------------------------------------------------------- pipeline

def test_tiny_pipeline_end_to_end(require_data, tmp_artefacts):
    for name in ("fashionmnist", "pneumoniamnist", "breastmnist"):
        require_data(name)
    cfg = _cfg()
    ft = p3.finetune(cfg, progress=False)  # computes the pretraining upstream first
    assert len(ft) == 5 * 2  # (2 sources x {plain, -Fr} + random) x 2 folds
    df = p3.finetune_frame(ft)
    assert df["auc"].between(0, 1).all() and (df["n_test"] == 24).all()
    held = np.concatenate([p3.load_predictions(e)["index"] for e in ft if e.result["init_name"] == "random"])
    assert np.array_equal(np.sort(held), np.arange(48))  # the folds partition the pool
    loaded = [e.result["loaded"] for e in ft if e.result["init_name"] == "natural"]
    assert all(s["missing"] == [] and s["unexpected"] == [] for s in loaded)
    table = p3.auc_table(df, cfg)
    assert list(table.columns) == p3.inits(cfg, "breastmnist") and table.shape == (1, 5)

    sims = p3.similarities(cfg, progress=False)
    sf = p3.similarity_frame(sims)
    assert set(sf["block"]) == set(p3.LAYER_LABELS.values())
    assert sf["value"].between(-1e-9, 1 + 1e-9).all()
    # a network compared with itself: every measure is 1 (the pretrained sources exist as references)
    x = p3.probe_images("breastmnist", model_cfg=TINY, n=24)
    ref = p3.similarity_models(cfg, "breastmnist", 0)["natural"]
    entry = runs.compute([p3.reference_run(ref)], progress=False)[0]
    net = p3.materialise(ref, model_cfg=TINY, num_classes=2, model_file=entry.file("model.pt"))
    from domaingap.kernels import similarity

    acts = similarity.activations(net, x, ["layer1"])["layer1"]
    assert p3.layer_similarity(acts, acts, n_channels=4, repeats=2)["mean_cca"] == pytest.approx(1.0)

    # everything is cached: a second pass recomputes nothing and returns the same numbers
    again = p3.finetune(cfg, progress=False)
    assert [e.path for e in again] == [e.path for e in ft]
    assert [e.result["auc"] for e in again] == [e.result["auc"] for e in ft]


# ----------------------------------------------------------------------------------------------- run graph

def _qualname(fn) -> str:
    fn = getattr(fn, "fn", fn)
    return f"{fn.__module__}.{fn.__qualname__}"


def test_code_closures_hold_what_shapes_each_result_and_no_analysis():
    from domaingap import data, training
    from domaingap.kernels import similarity

    shared = [training.fit, training.evaluate, models.build_model, models.build_configured, p3.build, data.info]
    wanted = {
        p3.run_pretrain: shared + [p3.load_images, data.load, p3.save_state],
        p3.run_finetune: shared + [p3.target_pool, p3.folds, p3.load_images, p3.init_model, p3.warmup_head,
                                   models.load_pretrained, models.penultimate, training.predict_proba,
                                   p3.save_state, p3.validation_split, training.early_stop,
                                   models.channels_last],
        p3.run_similarity: [p3.probe_images, p3.materialise, p3.init_model, p3.load_state, p3.pair_label,
                            similarity.activations, similarity.layer_similarity, models.build_model,
                            data.load_arrays, data.release_for, p3.matched_cca, p3.matched_rows],
    }
    analysis_fns = [_qualname(f) for name, f in vars(analysis).items()
                    if callable(f) and getattr(f, "__module__", "") == analysis.__name__]
    assert "domaingap.chapters.p3.analysis.auc_table" in analysis_fns and len(analysis_fns) >= 6
    for kind, fns in wanted.items():
        found = code.closure([kind])
        missing = [_qualname(f) for f in fns if _qualname(f) not in found]
        assert not missing, f"{kind.name} closure lacks {missing}"
        # editing an analysis function, a spec builder or a notebook retrains nothing
        assert not [k for k in found if k in analysis_fns or ".p3.analysis." in k or ".p3.specs." in k], kind.name


def test_upstream_edges_follow_the_specs():
    cfg = _cfg()
    ft = {(r.spec["init_name"], r.spec["fold"]): r for r in specs.finetune_runs(cfg)}
    pre = {(r.spec["dataset"], r.spec["seed"]): r for r in specs.pretrain_runs(cfg)}
    assert set(ft[("natural-Fr", 1)].upstream) == {"init"}
    assert ft[("natural-Fr", 1)].upstream["init"].key == pre[("fashionmnist", 0)].key
    assert ft[("random", 0)].upstream == {}
    sim = specs.similarity_runs(cfg)[0]
    ups = sim.upstream
    assert {n: u.kind.name for n, u in ups.items()} == {
        "natural-FT": "p3_finetune", "natural-Fr-FT": "p3_finetune", "medical-FT": "p3_finetune",
        "medical-Fr-FT": "p3_finetune", "random-FT": "p3_finetune", "natural": "p3_pretrain",
        "medical": "p3_pretrain"}  # random inits need no run
    assert ups["medical-FT"].key == ft[("medical", 0)].key
    sweeps = p3.sweeps("ci")
    assert set(sweeps) == {"pretrain", "finetune", "similarity"} and all(sweeps.values())


def test_downstream_keys_change_with_their_upstream_only(monkeypatch):
    cfg = _cfg()
    other = _cfg(pretrain={**cfg["pretrain"], "epochs": 2})  # a changed pretraining spec
    by_init = lambda c: {r.spec["init_name"]: r for r in specs.finetune_runs(c) if r.spec["fold"] == 0}
    a, b = by_init(cfg), by_init(other)
    assert a["natural"].key != b["natural"].key and a["medical-Fr"].key != b["medical-Fr"].key
    assert a["random"].key == b["random"].key  # not downstream of any pretraining
    assert b["natural"].record["upstream"]["init"]["key"] == specs.pretrain_runs(other)[0].key
    sa, sb = specs.similarity_runs(cfg)[0], specs.similarity_runs(other)[0]
    assert sa.key != sb.key and sa.upstream["random-FT"].key == sb.upstream["random-FT"].key

    # an edited pretraining function (its code hash) changes its dependents' keys, not the random-init runs'
    before = {n: r.key for n, r in a.items()}
    sim_before = sa.key
    monkeypatch.setitem(p3.run_pretrain.__dict__, "code_hash", "edited-pretraining-code")
    after = {n: r.key for n, r in by_init(cfg).items()}  # fresh Run nodes: keys are computed anew
    assert after["random"] == before["random"]
    assert all(after[n] != before[n] for n in after if n != "random")
    assert specs.similarity_runs(cfg)[0].key != sim_before


def test_pretrained_init_needs_its_upstream_file():
    spec = p3.finetune_spec(_cfg(), "breastmnist", "natural", 0)
    with pytest.raises(ValueError, match="pass its model.pt as pretrained_file"):
        p3.init_model(spec["init"], model_cfg=TINY, num_classes=2, seed=0)


# ----------------------------------------------------------------------------------------------- issue 16

def test_validation_split_is_carved_from_the_training_part():
    y = np.array([0] * 30 + [1] * 10 + [2] * 5)
    tr, te = p3.folds(y, 3, seed=0)[1]
    fit, val = p3.validation_split(y, tr, 0.2, seed=1)
    assert np.array_equal(np.sort(np.concatenate([fit, val])), np.sort(tr))
    assert len(np.intersect1d(fit, val)) == 0 and len(np.intersect1d(val, te)) == 0
    assert len(val) == round(0.2 * len(tr)) and set(y[val]) == {0, 1, 2}  # stratified
    again = p3.validation_split(y, tr, 0.2, seed=1)
    assert np.array_equal(again[1], val)


def test_matched_rows_give_the_stated_shapes():
    torch.manual_seed(0)
    shallow, deep = torch.rand(10, 16, 12, 12), torch.rand(10, 128, 3, 3)
    n_chan = min(shallow.shape[1], deep.shape[1], 64)
    n_rows = min(a.shape[0] * a.shape[2] * a.shape[3] for a in (shallow, deep))
    assert (n_chan, n_rows) == (16, 90)
    for act in (shallow, deep):
        m = p3.matched_rows(act, n_channels=n_chan, n_rows=n_rows, rng=np.random.default_rng(0))
        assert m.shape == (90, 16, 1, 1)
    # the rows are (image, position) rows of the chosen channels: every value is one of the activation's
    m = p3.matched_rows(deep, n_channels=4, n_rows=7, rng=np.random.default_rng(3))
    ch = np.sort(np.random.default_rng(3).choice(128, size=4, replace=False))
    flat = deep[:, ch].permute(0, 2, 3, 1).reshape(-1, 4)
    assert all(any(torch.equal(r, f) for f in flat) for r in m[:, :, 0, 0])
    assert p3.matched_cca(deep, deep, n_channels=16, n_rows=90, repeats=2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cannot draw"):
        p3.matched_rows(shallow, n_channels=17, n_rows=10, rng=np.random.default_rng(0))


def test_seed_to_seed_replicas_exist_and_differ_only_by_pretraining_seed():
    cfg = _cfg(pretrain_seeds=[0, 1, 2], n_folds=3)
    all_specs = specs.finetune_specs(cfg)
    reps = [s for s in all_specs if s["replica"] == 1]
    assert sorted({s["init_name"] for s in reps}) == ["medical", "natural"]
    assert len(reps) == 2 * 3  # two plain sources x three folds, one target
    for r in reps:
        main = p3.finetune_spec(cfg, r["target"], r["init_name"], r["fold"])
        assert main["init"]["spec"]["seed"] == r["fold"]  # fold k from pretraining seed k
        assert r["init"]["spec"]["seed"] == (r["fold"] + 1) % 3  # the replica: the next seed
        assert {k for k in main if main[k] != r[k]} == {"init", "replica"}
    assert not [s for s in specs.finetune_specs(_cfg()) if s["replica"]]  # one seed: no replica
    with pytest.raises(ValueError, match="random init has none"):
        p3.finetune_spec(cfg, "breastmnist", "random", 0, replica=1)
    for profile in ("ci", "default"):
        c = p3.config(profile)
        assert len(c["pretrain_seeds"]) >= 2 and p3.replica_inits(c, c["targets"][0])
    assert len(p3.config("default")["pretrain_seeds"]) >= 3  # independent units


def test_no_target_in_its_own_source(monkeypatch):
    from domaingap import data
    from domaingap.chapters.p3 import tasks

    for profile in ("ci", "default", "paper"):
        cfg = p3.config(profile)  # check_config passes: no overlap
        for t in cfg["targets"]:
            assert all(not p3.origin_overlap(s["dataset"], t) for s in cfg["sources"].values() if "dataset" in s)
    assert "braintumor" in p3.config("default")["targets"]
    # MedNIST has head CT but no brain MRI class
    assert not any("brain" in c.lower() or "mri" in c.lower() and "breast" not in c.lower()
                   for c in data.info("mednist").classes)
    assert p3.origin_overlap("mednist", "mednist")  # a dataset is its own origin
    monkeypatch.setitem(tasks.ORIGINS, "braintumor", frozenset({"TCIA (CT, breast MRI)"}))
    with pytest.raises(ValueError, match="target 'braintumor' shares images with source 'medical'"):
        p3.check_config(_cfg(sources={"medical": {"dataset": "mednist"}}, targets=["braintumor"]))
