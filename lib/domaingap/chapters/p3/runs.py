"""P3's run kinds (the only code of the chapter that enters artefact keys).

- ``p3_pretrain``: the chapter's ResNet trained on a pretraining source (our stand-in for ImageNet / RadImageNet
  weights; Juodelyte et al., TMLR 2023); writes ``model.pt``.
- ``p3_finetune``: one initialisation fine-tuned on one fold of one target (a cell of P3's AUC table); upstream
  ``init``: the ``p3_pretrain`` run it starts from, when it starts from our pretraining; writes ``model.pt`` and
  ``predictions.npz``.
- ``p3_similarity``: every layer-wise comparison of one fold of one target (P3's mean CCA figure); upstream: one
  entry per compared network that is a run (name -> ``p3_finetune`` or ``p3_pretrain``).

A run function receives its upstream entries in ``inputs`` and never calls the store. The device (CUDA when
available, :func:`domaingap.devices.default_device`) is never part of a spec; the intra-op thread count is the
store's (``$DOMAINGAP_RUN_THREADS``, in the key), so nothing here sets torch threads.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ... import data, devices, runs, training
from ...models import channels_last
from ...kernels import similarity
from .images import folds, load_images, probe_images, target_pool, validation_split
from .networks import build, init_model, materialise, reference_kind, save_state, warmup_head
from .tasks import pair_label

__all__ = ["matched_cca", "matched_rows", "reference_run", "run_finetune", "run_pretrain",
           "run_similarity"]


_LIBRARIES = ("numpy", "torch", "torchvision", "scikit-learn")


@runs.kind("p3_pretrain", libraries=_LIBRARIES)
def run_pretrain(spec: dict, inputs: dict, work: Path) -> dict:
    """Pretrain the chapter's ResNet on a source dataset; saves ``model.pt`` (state dict) in ``work``.

    Result: source test metrics (:func:`domaingap.training.evaluate`), per-epoch history, sizes, seconds.
    """
    t0 = time.perf_counter()
    dev = devices.default_device()
    x, y = load_images(spec["dataset"], "train", model_cfg=spec["model"], n=spec["n"], seed=spec["seed"])
    test_split = "test" if "test" in data.info(spec["dataset"]).split_sizes else "val"  # Imagenette: train/val
    xt, yt = load_images(spec["dataset"], test_split, model_cfg=spec["model"], n=spec["n_test"], seed=0)
    model = channels_last(build(spec["model"], data.info(spec["dataset"]).num_classes, spec["seed"]))
    x, xt = channels_last(x, xt)
    hist = training.fit(model, x.to(dev), y.to(dev), epochs=spec["epochs"], batch_size=spec["batch_size"],
                        lr=spec["lr"], weight_decay=spec["weight_decay"], optimizer="adam",
                        schedule=spec["schedule"], seed=spec["seed"], x_val=xt.to(dev), y_val=yt.to(dev),
                        progress=False, device=dev)
    test = training.evaluate(model, xt.to(dev), yt.to(dev))
    save_state(model, work / "model.pt")
    return {"dataset": spec["dataset"], "n_train": int(len(y)), "n_test": int(len(yt)), "test_split": test_split,
            "test": test,
            "history": hist, "seconds": time.perf_counter() - t0, "device": str(dev)}


def _finetune_upstream(spec: dict) -> dict:
    # a fine-tuning run that starts from our pretraining needs that pretraining first
    return {"init": run_pretrain(spec["init"]["spec"])} if spec["init"].get("kind") == "pretrained" else {}


@runs.kind("p3_finetune", libraries=_LIBRARIES, upstream=_finetune_upstream)
def run_finetune(spec: dict, inputs: dict, work: Path) -> dict:
    """Fine-tune one initialisation on one fold of one target; saves ``model.pt`` and ``predictions.npz``.

    ``predictions.npz``: ``index`` (positions of the held-out images in the pool), ``y`` and ``prob``
    ``(n_test, K)``. Result: held-out metrics (:func:`domaingap.training.evaluate`: ``auc``, ``accuracy``,
    ``balanced_accuracy``, ``loss``), sizes, what was loaded, per-epoch training loss, seconds.
    """
    t0 = time.perf_counter()
    dev = devices.default_device()
    x, y = target_pool(spec["target"], model_cfg=spec["model"], max_pool=spec["max_pool"], seed=spec["fold_seed"])
    tr, te = folds(y, spec["n_folds"], spec["fold_seed"])[spec["fold"]]
    fit_idx, val_idx = validation_split(y, tr, spec["val_fraction"], seed=spec["fold_seed"] + spec["fold"])
    num_classes = data.info(spec["target"]).num_classes
    init_file = inputs["init"].file("model.pt") if "init" in inputs else None
    model, loaded = init_model(spec["init"], model_cfg=spec["model"], num_classes=num_classes, seed=spec["seed"],
                               pretrained_file=init_file)
    model = channels_last(model).to(dev)
    x = channels_last(x)
    xtr, ytr = x[fit_idx].to(dev), y[fit_idx].to(dev)
    xva, yva = x[val_idx].to(dev), y[val_idx].to(dev)
    xte, yte = x[te].to(dev), y[te].to(dev)
    warm = None
    if spec["warmup"]:
        w = spec["warmup"]
        warm = warmup_head(model, xtr, ytr, epochs=w["epochs"], lr=w["lr"], batch_size=w["batch_size"],
                           seed=spec["seed"])
        warm["auc_after_warmup"] = training.evaluate(model, xte, yte)["auc"]
    # P3: Adam, early stopping on the validation loss, the best validation epoch's weights kept
    hist = training.fit(model, xtr, ytr, epochs=spec["max_epochs"], batch_size=spec["batch_size"], lr=spec["lr"],
                        weight_decay=spec["weight_decay"], optimizer="adam", seed=spec["seed"], x_val=xva, y_val=yva,
                        patience=int(spec["patience"]), progress=False, device=dev)
    metrics = training.evaluate(model, xte, yte)
    prob = training.predict_proba(model, xte).cpu().numpy()
    save_state(model, work / "model.pt")
    np.savez(work / "predictions.npz", index=te, y=y[te].numpy(), prob=prob.astype(np.float32))
    return {"target": spec["target"], "init_name": spec["init_name"], "replica": spec["replica"],
            "fold": spec["fold"], **metrics, "n_train": int(len(fit_idx)), "n_val": int(len(val_idx)),
            "n_test": int(len(te)), "loaded": loaded, "warmup": warm, "best_epoch": hist["best_epoch"][-1],
            "epochs_run": len(hist["epoch"]), "train_loss": hist["train_loss"], "val_loss": hist["val_loss"],
            "val_auc": hist["val_auc"], "seconds": time.perf_counter() - t0, "device": str(dev)}


def matched_rows(act, *, n_channels: int, n_rows: int, rng):
    """``act`` ``(N, C, h, w)`` as an ``(n_rows, n_channels, 1, 1)`` tensor: ``n_channels`` channels and
    ``n_rows`` of the ``N*h*w`` (image, position) rows drawn without replacement from ``rng``
    (a ``numpy.random.Generator``). Call it with generators in the same state for two networks to draw the same
    channels and rows in both."""
    import torch

    n, c, h, w = act.shape
    if not (1 <= n_channels <= c and 1 <= n_rows <= n * h * w):
        raise ValueError(f"cannot draw {n_channels} channels and {n_rows} rows from activations {tuple(act.shape)}")
    ch = np.sort(rng.choice(c, size=n_channels, replace=False))
    rows = np.sort(rng.choice(n * h * w, size=n_rows, replace=False))
    flat = act[:, torch.from_numpy(ch)].permute(0, 2, 3, 1).reshape(n * h * w, n_channels)
    return flat[torch.from_numpy(rows)].reshape(n_rows, n_channels, 1, 1).contiguous()


def matched_cca(act_a, act_b, *, n_channels: int, n_rows: int, repeats: int, seed: int = 0,
                epsilon: float = 1e-12) -> float:
    """P3's mean CCA at a layer on a matched budget: ``n_channels`` channels and ``n_rows`` rows (the same draws in
    both networks, :func:`matched_rows`), averaged over ``repeats`` draws. With the smallest channel count and
    row count over the layers, every layer is compared on the same shape of data, so a trend with depth cannot
    come from layers passing more channels or more positions per image."""
    vals = []
    for r in range(int(repeats)):
        ma = matched_rows(act_a, n_channels=n_channels, n_rows=n_rows, rng=np.random.default_rng([seed, r]))
        mb = matched_rows(act_b, n_channels=n_channels, n_rows=n_rows, rng=np.random.default_rng([seed, r]))
        vals.append(similarity.mean_cca_conv(ma, mb, n_channels=n_channels, repeats=1, seed=0, epsilon=epsilon))
    return float(np.mean(vals))


def reference_run(ref: dict) -> runs.Run | None:
    """The upstream run of a similarity model reference: a fine-tuning or pretraining run, or None (a random
    init or a user's weight file, which need no run)."""
    needs = reference_kind(ref)
    if needs == "p3_finetune":
        return run_finetune(ref["spec"])
    if needs == "p3_pretrain":
        return run_pretrain(ref["init"]["spec"])
    return None


def _similarity_upstream(spec: dict) -> dict:
    # every compared network that is a run, under its name in the spec ("natural-FT", "natural", ...)
    ups = {name: reference_run(ref) for name, ref in spec["models"].items()}
    return {name: run for name, run in ups.items() if run is not None}


@runs.kind("p3_similarity", libraries=_LIBRARIES, upstream=_similarity_upstream)
def run_similarity(spec: dict, inputs: dict, work: Path) -> dict:
    """Every pair of the spec's ``pairs`` at every layer of its ``layers``, on one target's probe images.

    Result: ``rows``, a list of ``{pair, a, b, layer, mean_cca, svcca, pwcca, cka}``; ``probe`` (images, rows per
    image at each layer); seconds.
    """
    t0 = time.perf_counter()
    dev = devices.default_device()
    x = probe_images(spec["target"], model_cfg=spec["model"], n=spec["probe_n"], seed=spec["probe_seed"])
    needed = sorted({name for pair in spec["pairs"] for name in pair})
    acts = {}
    for name in needed:
        model_file = inputs[name].file("model.pt") if name in inputs else None
        model = materialise(spec["models"][name], model_cfg=spec["model"], num_classes=spec["num_classes"],
                            model_file=model_file)
        acts[name] = similarity.activations(model.to(dev), x, spec["layers"], batch_size=256)
        del model
    any_acts = acts[needed[0]]
    # the matched measure: every layer on the same channel count and the same number of rows
    n_chan = min([int(v.shape[1]) for v in any_acts.values()] + [int(spec["n_channels"])])
    n_rows = min(int(v.shape[0] * v.shape[2] * v.shape[3]) for v in any_acts.values())
    rows = []
    for a, b in spec["pairs"]:
        for layer in spec["layers"]:
            vals = similarity.layer_similarity(acts[a][layer], acts[b][layer], n_channels=spec["n_channels"],
                                               repeats=spec["repeats"], seed=0, epsilon=spec["epsilon"])
            vals["matched_cca"] = matched_cca(acts[a][layer], acts[b][layer], n_channels=n_chan, n_rows=n_rows,
                                              repeats=spec["repeats"], seed=0, epsilon=spec["epsilon"])
            rows.append({"pair": pair_label((a, b)), "a": a, "b": b, "layer": layer, **vals})
    probe = {"n": int(len(x)), "rows_per_image": {k: int(v.shape[2] * v.shape[3]) for k, v in any_acts.items()},
             "channels": {k: int(v.shape[1]) for k, v in any_acts.items()},
             "matched": {"channels": n_chan, "rows": n_rows}}
    return {"target": spec["target"], "fold": spec["fold"], "rows": rows, "probe": probe,
            "seconds": time.perf_counter() - t0, "device": str(dev)}
