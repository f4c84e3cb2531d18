"""Chapter P2's run kinds: the only code that enters its artefact keys (:mod:`domaingap.runs`).

The graph (upstream edges in brackets)::

    p2_model        train_run        one model, standard or L2-PGD adversarial [data: p2_dataset if it trains on one]
    p2_dataset      dataset_run      D_rand / D_det / D_NR / D_R (Ilyas et al.)  [source: p2_model]
    p2_robust_view  robust_view_run  a robust model's view of D_rand / D_det     [dataset: p2_dataset, robust: p2_model]
    p2_robust_eval  robust_eval_run  clean / PGD / APGD accuracy, eps sweep      [model: p2_model]
    p2_mmc_data     mmc_data_run     a task's MedMNIST-C corrupted test stacks   []
    p2_mmc_eval     mmc_eval_run     a model on every corruption x severity      [model: p2_model,
                                                                                  data:<corruption>: p2_mmc_data]
    p2_saliency     saliency_run     Fig. 1: saliency, clean vs adversarial      [standard, robust: p2_model]

A run function gets its spec, its upstream entries and an empty folder, and never reads the store. The device
(CUDA when available, :func:`domaingap.devices.default_device`) is never part of a spec.
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path

import numpy as np

# the domaingap modules whose functions shape the results (training.fit, attacks.pgd, ...): the code hash follows
# these attribute calls into them
from ... import data, devices, models, training
from ...kernels import attacks
from ...kernels.corruptions import corrupt, to_uint8
from ...kernels.saliency import edge_alignment, input_saliency, rank_correlation
from ...runs import kind
from .inputs import (attack_batch, balanced_class_weights, build, derangement, head, load_model, quiet_metrics,
                     targets, test_data, train_data)
from .tasks import get_task, load_task

__all__ = ["dataset_run", "mmc_data_run", "mmc_eval_run", "mmc_input_name", "robust_eval_run", "robust_view_run",
           "saliency_run", "train_run"]

TORCH = ("numpy", "torch", "scikit-learn")


def _model_upstream(spec: dict) -> dict:
    return {"data": dataset_run(spec["train_on"])} if isinstance(spec["train_on"], dict) else {}


@kind("p2_model", upstream=_model_upstream, libraries=TORCH)
def train_run(spec: dict, inputs: dict, work: Path) -> dict:
    """Train one model (standard or L2-PGD adversarial, Madry et al. 2018) and evaluate it on the ORIGINAL
    clean test subset.

    Writes ``model.pt`` (CPU state dict) into ``work``; returns the test metrics of
    :func:`domaingap.training.evaluate`, the test labels and predictions (for exact tests against chance), the
    per-epoch training loss and timings.
    """
    import torch


    device = devices.default_device()
    t = get_task(spec["task"])
    x, y = train_data(spec, inputs.get("data"))
    x_te, y_te = test_data(spec)
    weights = balanced_class_weights(y, t.num_classes) if spec["class_weights"] == "balanced" else None
    torch.manual_seed(spec["seed"])  # the initial weights
    net, x = models.channels_last(build(spec), x)  # faster steps (models.channels_last); saved contiguous
    adversarial = None
    if spec["adversarial"] is not None:
        adversarial = {k: v for k, v in spec["adversarial"].items() if k in ("eps", "steps", "step_size", "norm")}
    start = time.perf_counter()
    hist = training.fit(net, x.to(device), y.to(device), epochs=spec["epochs"], batch_size=spec["batch_size"],
                        lr=spec["lr"], weight_decay=spec["weight_decay"], optimizer=spec["optimizer"],
                        schedule=spec["schedule"], seed=spec["seed"], adversarial=adversarial,
                        class_weights=weights, progress=False, device=device)
    seconds = time.perf_counter() - start
    prob = training.predict_proba(net, x_te.to(device)).cpu()
    with quiet_metrics():
        test = training.evaluate(net, x_te.to(device), y_te.to(device))
    torch.save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, work / "model.pt")
    return {"test": test, "test_pred": prob.argmax(1).tolist(), "test_y": y_te.tolist(),
            "n_train": int(len(y)), "train_label_counts": np.bincount(y.numpy(), minlength=t.num_classes).tolist(),
            "history_train_loss": hist["train_loss"], "seconds": seconds,
            "n_params": int(sum(p.numel() for p in net.parameters())), "device": str(device)}


@kind("p2_dataset", upstream=lambda spec: {"source": train_run(spec["source"])})
def dataset_run(spec: dict, inputs: dict, work: Path) -> dict:
    """Build D_rand, D_det, D_NR or D_R from the source model (Ilyas et al. 2019, Sec. 3).

    rand/det: targeted L2 PGD (``steps`` steps of ``step_ratio * eps``, no random start, lowest-loss iterate
    kept, as Ilyas et al.). The budget is the smallest of ``eps_grid`` at which the attack moves at least
    ``target_success`` of ``calibration_n`` random training images to their target (the largest if none does): Ilyas
    et al.'s attacks on a CIFAR-10 ResNet-50 succeed almost always at eps 0.5, but a small model trained on a
    few hundred images has larger margins, and an image the attack fails to move keeps its original features
    under a wrong label. nr/r: representation inversion from another random training image.

    Writes ``x.pt`` (float32 ``(N, C, S, S)`` in [0, 1]) and ``y.pt`` (int64 ``(N,)``) into ``work``; returns
    diagnostics: for rand/det the calibration, the budget used, the fraction of images the source model
    classifies as their new label (attack success), the fraction of labels unchanged, and the L2 size of the
    perturbations; for nr/r the relative distance ``||g(x') - g(x)|| / ||g(x)||`` reached and the source
    model's accuracy on the new images.
    """
    import torch


    device = devices.default_device()
    src = spec["source"]
    t = get_task(src["task"])
    net = load_model(src, inputs["source"], device)
    x, y = train_data(src)
    seed = int(src["seed"])
    bs = attack_batch(device)
    out = []
    if spec["variant"] in ("rand", "det"):
        new_y = torch.from_numpy(targets(y.numpy(), t.num_classes, spec["variant"], seed))

        def attack(xs, ts, eps):
            adv = torch.cat([attacks.pgd(net, xb.to(device), tb.to(device), eps, steps=spec["steps"],
                                         step_size=spec["step_ratio"] * eps, norm="l2", targeted=True,
                                         random_start=False, keep_best=True).cpu()
                             for xb, tb in zip(xs.split(bs), ts.split(bs))])
            with torch.no_grad():
                pred = torch.cat([net(xb.to(device)).argmax(1).cpu() for xb in adv.split(bs)])
            return adv, pred

        # the smallest budget of the grid at which the targeted attack reaches its target on most images,
        # judged on a random subset (training subsets are sorted by position, which can mean by class)
        cal = torch.from_numpy(np.random.default_rng(seed).permutation(len(y))[: spec["calibration_n"]])
        calibration = []
        eps = spec["eps_grid"][-1]
        for e in spec["eps_grid"]:
            _, pred = attack(x[cal], new_y[cal], e)
            calibration.append({"eps": e, "success": float((pred == new_y[cal]).float().mean())})
            if calibration[-1]["success"] >= spec["target_success"]:
                eps = e
                break
        x_new, pred = attack(x, new_y, eps)
        norms = (x_new - x).flatten(1).norm(dim=1)
        info = {"attack_success": float((pred == new_y).float().mean()),
                "label_kept": float((new_y == y).float().mean()),
                "l2_mean": float(norms.mean()), "l2_max": float(norms.max()), "eps": eps,
                "calibration": calibration}
    else:
        rng = np.random.default_rng(seed)
        n = spec["n"]
        keep = np.arange(len(y)) if n is None or n >= len(y) else np.sort(rng.permutation(len(y))[:n])
        x, y = x[keep], y[keep]
        if len(y) < 2:
            raise ValueError(f"representation inversion needs >= 2 images, got {len(y)}")
        starts = torch.from_numpy(derangement(len(y), rng))

        def g(z):
            return models.penultimate(net, z)

        for xb, sb in zip(x.split(bs), starts.split(bs)):
            out.append(attacks.invert_representation(g, xb.to(device), x[sb].to(device), steps=spec["steps"],
                                                     step_size=spec["step_size"], keep_best=True).cpu())
        x_new, new_y = torch.cat(out), y.clone()
        with torch.no_grad():
            rel, pred = [], []
            for xb, nb in zip(x.split(bs), x_new.split(bs)):
                ga, gb = g(xb.to(device)), g(nb.to(device))
                rel.append(((gb - ga).norm(dim=1) / ga.norm(dim=1).clamp_min(1e-12)).cpu())
                pred.append(net(nb.to(device)).argmax(1).cpu())
        rel, pred = torch.cat(rel), torch.cat(pred)
        info = {"rel_repr_distance": float(rel.median()), "source_accuracy": float((pred == y).float().mean()),
                "l2_from_start_mean": float((x_new - x[starts]).flatten(1).norm(dim=1).mean())}
    torch.save(x_new.contiguous(), work / "x.pt")
    torch.save(new_y.contiguous(), work / "y.pt")
    info.update(n=int(len(new_y)), label_counts=np.bincount(new_y.numpy(), minlength=t.num_classes).tolist(),
                device=str(device))
    return info


@kind("p2_robust_view",
      upstream=lambda spec: {"dataset": dataset_run(spec["dataset"]), "robust": train_run(spec["robust"])})
def robust_view_run(spec: dict, inputs: dict, work: Path) -> dict:
    """How an adversarially trained model (``spec["robust"]``) sees a D_rand / D_det set (``spec["dataset"]``):
    the fraction of its relabelled images it assigns to the original label ``y`` and to the new label ``t``,
    the fraction of their clean originals it already assigned to ``t``, the difference (``robust_target_shift``,
    what the perturbation did), and its accuracy on the clean originals.

    If the targeted perturbations had painted *robust* features of ``t`` into the images (a risk when the budget
    grows), the robust model would follow them to ``t``; if they are nonrobust, it keeps seeing ``y``.
    """
    import torch

    device = devices.default_device()
    dspec = spec["dataset"]
    x_new, t_new = train_data({"train_on": dspec}, inputs["dataset"])
    x, y = train_data(dspec["source"])
    net = load_model(spec["robust"], inputs["robust"], device)
    bs = attack_batch(device) * 4
    with torch.no_grad():
        pred_new = torch.cat([net(b.to(device)).argmax(1).cpu() for b in x_new.split(bs)])
        pred_clean = torch.cat([net(b.to(device)).argmax(1).cpu() for b in x.split(bs)])
    changed = t_new != y  # D_rand keeps some labels: only the changed ones tell y from t
    says_target = float((pred_new[changed] == t_new[changed]).float().mean())
    # a weak robust model already calls some clean originals t: the perturbation's effect is the increase
    target_on_clean = float((pred_clean[changed] == t_new[changed]).float().mean())
    return {"robust_says_original": float((pred_new[changed] == y[changed]).float().mean()),
            "robust_says_target": says_target, "robust_target_on_clean": target_on_clean,
            "robust_target_shift": says_target - target_on_clean,
            "robust_clean_accuracy": float((pred_clean == y).float().mean()), "n_changed": int(changed.sum())}


@kind("p2_robust_eval", upstream=lambda spec: {"model": train_run(spec["model"])},
      libraries=TORCH + ("torchattacks",))
def robust_eval_run(spec: dict, inputs: dict, work: Path) -> dict:
    """Clean and adversarial accuracy of a trained model.

    - ``pgd``: untargeted L2 PGD (:func:`domaingap.kernels.attacks.pgd`) at ``eps`` with ``pgd_steps`` steps of
      ``2.5 * eps / steps`` from ``pgd_restarts`` random starts, on ``n_attack`` test images (a seeded random
      subset, :func:`.inputs.head`);
    - ``apgd`` (optional): an independent, step-size-free attack, APGD-CE of Croce & Hein (2020) as
      implemented by ``torchattacks``, with more steps and restarts on the first ``apgd[n]`` of those images;
      if it finds many more adversarial examples than PGD, the PGD number reflects gradient masking;
    - ``sweep`` (optional): PGD accuracy at ``eps * m`` for each multiplier ``m``: it must fall to ~0 for a
      large enough budget, another check against masked gradients (Carlini et al. 2019).
    """
    import torch
    from sklearn import metrics


    device = devices.default_device()
    net = load_model(spec["model"], inputs["model"], device)
    x, y = test_data(spec["model"])
    eps = spec["eps"]
    bs = attack_batch(device)
    gen = torch.Generator(device=device).manual_seed(int(spec["model"]["seed"]) + 12345)

    def predict(xs):
        with torch.no_grad():
            return torch.cat([net(b.to(device)).argmax(1).cpu() for b in xs.split(bs)])

    def pgd(xs, ys, e, steps, restarts):
        if e == 0:
            return xs
        return torch.cat([attacks.pgd(net, xb.to(device), yb.to(device), e, steps=steps, step_size=2.5 * e / steps,
                                      norm="l2", random_start=True, restarts=restarts, generator=gen).cpu()
                          for xb, yb in zip(xs.split(bs), ys.split(bs))])

    def scores(ys, pred):
        yn, pn = ys.numpy(), pred.numpy()
        with quiet_metrics():
            return float(metrics.accuracy_score(yn, pn)), float(metrics.balanced_accuracy_score(yn, pn))

    xa, ya = head(x, y, spec["n_attack"])
    clean_pred = predict(xa)
    adv_pred = predict(pgd(xa, ya, eps, spec["pgd_steps"], spec["pgd_restarts"]))
    out = {"eps": eps, "n_attack": int(len(ya))}
    out["clean_accuracy"], out["clean_balanced_accuracy"] = scores(ya, clean_pred)
    out["pgd_accuracy"], out["pgd_balanced_accuracy"] = scores(ya, adv_pred)
    out["pgd_correct"] = (adv_pred == ya).tolist()
    if spec["apgd"] is not None:
        import torchattacks

        cfg = spec["apgd"]
        xs, ys = head(x, y, cfg["n"])
        atk = torchattacks.APGD(net, norm="L2", eps=eps, steps=cfg["steps"], n_restarts=cfg["restarts"],
                                seed=int(spec["model"]["seed"]), loss="ce")
        x_apgd = torch.cat([atk(xb.to(device), yb.to(device)).detach().cpu()
                            for xb, yb in zip(xs.split(bs), ys.split(bs))])
        apgd_ok = predict(x_apgd) == ys
        pgd_ok = adv_pred[: len(ys)] == ys
        # the strongest of the two per image: what an evaluator should report
        out["apgd"] = {"n": int(len(ys)), "apgd_accuracy": float(apgd_ok.float().mean()),
                       "pgd_accuracy_same_images": float(pgd_ok.float().mean()),
                       "worst_case_accuracy": float((apgd_ok & pgd_ok).float().mean())}
    if spec["sweep"] is not None:
        cfg = spec["sweep"]
        xs, ys = head(x, y, cfg["n"])
        out["sweep"] = {"multipliers": cfg["multipliers"], "eps": [eps * m for m in cfg["multipliers"]],
                        "accuracy": [scores(ys, predict(pgd(xs, ys, eps * m, cfg["steps"], 1)))[0]
                                     for m in cfg["multipliers"]]}
    return out


@kind("p2_mmc_data", libraries=("numpy", "torch", "torchvision", "medmnistc", "pillow", "scikit-image", "Wand"))
def mmc_data_run(spec: dict, inputs: dict, work: Path) -> dict:
    """One task's test subset corrupted by one MedMNIST-C corruption (Di Salvo et al. 2024) at every severity.

    Writes ``x.npy``, uint8 ``(5, N, C, H, W)`` (one stack per severity; ``(1, N, ...)`` for ``"none"``), and
    returns per severity the RMS pixel change (0..1 scale) from the clean round trip at the model's resolution
    (``rms_change``) and at ``work_size`` (``rms_change_work``), and from the original images
    (``rms_vs_original``; for ``"none"``: the round trip's own error)."""

    s = load_task(spec["task"], "test", n=spec["n_test"], seed=0)
    imgs = to_uint8(s.x)
    size = imgs.shape[-1]
    src = imgs
    if spec.get("source_release"):  # the same test images, from the larger release (names a missing file)
        big, _ = data.load_arrays(get_task(spec["task"]).dataset, "test", release=spec["source_release"])
        src = big[s.indices]
    sevs = [0] if spec["corruption"] == "none" else [0, 1, 2, 3, 4]
    # one seed per (corruption, severity) so that every stack is reproducible on its own
    base = int(spec["seed"]) * 1_000_003 + zlib.crc32(f"{spec['task']}/{spec['corruption']}".encode())
    ref = corrupt(src, spec["registry"], "none", 0, work_size=spec["work_size"], out_size=size).astype(np.float64)

    def rms(a, b):  # mean over images of the per-image RMS difference, 0..1 scale
        return float(np.sqrt(((a.astype(np.float64) - b) ** 2).mean(axis=(1, 2, 3))).mean() / 255.0)

    stacks, rms_small, rms_orig, rms_work = [], [], [], []
    for sev in sevs:
        out, rms_w = corrupt(src, spec["registry"], spec["corruption"], sev, seed=(base + sev) % 2**32,
                             work_size=spec["work_size"], out_size=size, return_rms_work=True)
        stacks.append(out)
        rms_small.append(rms(out, ref))
        rms_orig.append(rms(out, imgs.astype(np.float64)))
        rms_work.append(float(rms_w.mean()))
    np.save(work / "x.npy", np.stack(stacks))
    return {"n": int(len(imgs)), "severities": sevs, "rms_change": rms_small, "rms_vs_original": rms_orig,
            "rms_change_work": rms_work}


def mmc_input_name(data_spec: dict) -> str:
    """The name under which a ``p2_mmc_eval`` run receives the ``p2_mmc_data`` entry of ``data_spec``."""
    return f"data:{data_spec['corruption']}"


@kind("p2_mmc_eval", libraries=TORCH,
      upstream=lambda spec: {"model": train_run(spec["model"]),
                             **{mmc_input_name(d): mmc_data_run(d) for d in spec["data"]}})
def mmc_eval_run(spec: dict, inputs: dict, work: Path) -> dict:
    """Accuracy and balanced accuracy of the model on every corruption x severity of its task (and on the clean
    round trip, ``corruption = "none"``)."""
    import torch
    from sklearn import metrics

    device = devices.default_device()
    net = load_model(spec["model"], inputs["model"], device)
    y = load_task(spec["model"]["task"], "test", n=spec["data"][0]["n_test"], seed=0).y.numpy()
    bs = attack_batch(device) * 4
    rows = []
    for dspec in spec["data"]:
        stacks = np.load(inputs[mmc_input_name(dspec)].file("x.npy"))
        for sev, imgs in enumerate(stacks):
            x = torch.from_numpy(imgs).float().div_(255.0)
            with torch.no_grad():
                pred = torch.cat([net(b.to(device)).argmax(1).cpu() for b in x.split(bs)]).numpy()
            with quiet_metrics():
                bacc = float(metrics.balanced_accuracy_score(y, pred))
            rows.append({"corruption": dspec["corruption"], "severity": sev + 1 if dspec["corruption"] != "none" else 0,
                         "accuracy": float(metrics.accuracy_score(y, pred)), "balanced_accuracy": bacc})
    return {"rows": rows, "n": int(len(y))}


def _saliency_upstream(spec: dict) -> dict:
    up = {"standard": train_run(spec["standard"]), "robust": train_run(spec["robust"])}
    if spec.get("source") is not None:
        up["source"] = train_run(spec["source"])
    return up


@kind("p2_saliency", upstream=_saliency_upstream, libraries=TORCH + ("scipy",))
def saliency_run(spec: dict, inputs: dict, work: Path) -> dict:
    """Fig. 1 analogue: input-gradient saliency of a standard and a robust model on ``n_images`` test images
    (seeded random subset), on the clean image and on perturbed versions, and the Spearman correlation between
    the clean and the perturbed map per image (:func:`domaingap.kernels.saliency.rank_correlation`).

    Perturbations (L2, budget ``eps``):

    - ``own``: untargeted PGD against the model itself (P2's Fig. 1; each model sees a different perturbation);
    - ``transfer``: PGD against ``source``, a third (standard) model of the same task: the SAME perturbed images
      for both models;
    - ``random``: a uniformly random direction per image with the L2 norm of that image's transferred
      perturbation (the same images for both models): the control for "any perturbation of that size".

    Also the edge alignment of each clean map (:func:`domaingap.kernels.saliency.edge_alignment`: Spearman
    correlation of the map with the image's Sobel edge magnitude). Writes ``maps.npz`` (images, own adversarial
    images, maps, predictions) for the figure.
    """
    import torch


    device = devices.default_device()
    x, y = test_data(spec["standard"])
    x, y = head(x, y, spec["n_images"])
    eps, steps = spec["eps"], spec["pgd_steps"]
    arrays, out = {"x": x.numpy(), "y": y.numpy()}, {"eps": eps, "n": int(len(y))}
    xd, yd = x.to(device), y.to(device)
    shared = {}
    if spec.get("source") is not None:
        src = load_model(spec["source"], inputs["source"], device)
        gen = torch.Generator(device=device).manual_seed(2025)
        xt = attacks.pgd(src, xd, yd, eps, steps=steps, step_size=2.5 * eps / steps, norm="l2", generator=gen)
        norms = (xt - xd).flatten(1).norm(dim=1)
        gen_r = torch.Generator(device="cpu").manual_seed(2026)
        direction = torch.randn(x.shape, generator=gen_r).to(device)
        direction = direction / direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        xr = (xd + direction * norms.view(-1, 1, 1, 1)).clamp(0, 1)
        with torch.no_grad():
            out["source_adv_accuracy"] = float((src(xt).argmax(1) == yd).float().mean())
        out["transfer_l2_mean"] = float(norms.mean())
        out["random_l2_mean"] = float((xr - xd).flatten(1).norm(dim=1).mean())
        shared = {"transfer": xt, "random": xr}
    for name in ("standard", "robust"):
        net = load_model(spec[name], inputs[name], device)
        gen = torch.Generator(device=device).manual_seed(2024)
        xa = attacks.pgd(net, xd, yd, eps, steps=steps, step_size=2.5 * eps / steps, norm="l2", generator=gen)
        s_clean, s_adv = input_saliency(net, xd, yd), input_saliency(net, xa, yd)
        with torch.no_grad():
            p_clean, p_adv = net(xd).argmax(1).cpu(), net(xa).argmax(1).cpu()
        rho = rank_correlation(s_clean, s_adv)
        arrays.update({f"{name}_x_adv": xa.cpu().numpy(), f"{name}_sal_clean": s_clean.cpu().numpy(),
                       f"{name}_sal_adv": s_adv.cpu().numpy(), f"{name}_pred_clean": p_clean.numpy(),
                       f"{name}_pred_adv": p_adv.numpy()})
        res = {"rho": [None if not np.isfinite(r) else float(r) for r in rho],
               "clean_accuracy": float((p_clean == y).float().mean()),
               "adv_accuracy": float((p_adv == y).float().mean()),
               "edge_alignment": [None if not np.isfinite(r) else float(r)
                                  for r in edge_alignment(s_clean.cpu(), x)]}
        for kind_name, xp in shared.items():
            r = rank_correlation(s_clean, input_saliency(net, xp, yd))
            with torch.no_grad():
                acc = float((net(xp).argmax(1) == yd).float().mean())
            res[f"rho_{kind_name}"] = [None if not np.isfinite(v) else float(v) for v in r]
            res[f"{kind_name}_accuracy"] = acc
        out[name] = res
    np.savez_compressed(work / "maps.npz", **arrays)
    return out
