"""A small, flat training loop for in-memory tensors, with optional PGD adversarial training.

Recipes it covers:

- P1 (Konz & Mazurowski, ICLR 2024): Adam, weight decay 1e-4, lr 1e-3 (ResNet) / 1e-4 (VGG),
  cross-entropy, no augmentation, last epoch kept; test loss = mean cross-entropy.
- P3 (Juodelyte et al., TMLR 2023): Adam, early stopping on the validation loss with the best epoch's
  weights restored (Keras ``EarlyStopping(patience, restore_best_weights=True)``): ``patience=``.
- P2 (Mouton et al. 2026) after Ilyas et al. (2019) and the ``robustness`` library: SGD
  (momentum 0.9), lr 0.1 decayed x0.1 at 1/3 and 2/3 of training, weight decay 5e-4, and for
  robust models L2 PGD adversarial training with 7 attack steps (Madry et al. 2018).

Data are plain tensors: ``x`` float ``(N, C, H, W)`` (any ``(N, ...)`` works), ``y`` int64
``(N,)``. Training runs on ``device`` (default: ``x``'s device; the model is moved there);
``x`` may stay on the CPU while training on CUDA, batches are moved one at a time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn import metrics
from torch import nn
from tqdm import tqdm

from domaingap.devices import eval_mode
from domaingap.kernels.attacks import adversarial_training_step

__all__ = ["AdversarialConfig", "early_stop", "fit", "evaluate", "predict_proba"]


@dataclass
class AdversarialConfig:
    """PGD adversarial-training settings (Madry et al. 2018; ``robustness`` library defaults)."""

    eps: float  # attack budget in the input's units (Ilyas et al. L2: 0.25-0.5 on [0, 1] CIFAR)
    steps: int = 7  # PGD steps per training batch (robustness library: 7)
    step_size: float | None = None  # None -> 2.5 * eps / steps (Madry et al.'s rule)
    norm: Literal["l2", "linf"] = "l2"  # threat model; Ilyas et al.'s robust models are L2
    input_range: tuple[float, float] = (0.0, 1.0)  # valid input values ((0, 255) for P1 scaling)
    random_start: bool = True  # start each attack uniformly inside the eps-ball

    def resolved_step_size(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / max(self.steps, 1)


def _adversarial_config(adversarial: Any) -> AdversarialConfig | None:
    if adversarial is None or isinstance(adversarial, AdversarialConfig):
        return adversarial
    if isinstance(adversarial, dict):
        known = {f.name for f in fields(AdversarialConfig)}
        unknown = set(adversarial) - known
        if unknown:
            raise ValueError(f"unknown adversarial settings {sorted(unknown)}; expected keys among {sorted(known)}")
        if "eps" not in adversarial:
            raise ValueError("adversarial settings need 'eps'")
        return AdversarialConfig(**adversarial)
    raise ValueError(f"adversarial must be None, a dict or an AdversarialConfig, got {type(adversarial).__name__}")


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _check_xy(x: torch.Tensor, y: torch.Tensor, what: str = "") -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        desc = f"{x.dtype} tensor {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x{what} must be a float (N, C, H, W) tensor, got {desc}")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (x.shape[0],):
        desc = f"{y.dtype} tensor {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y{what} must be an int64 tensor of shape ({x.shape[0]},) matching x{what}, got {desc}")
    if x.shape[0] == 0:
        raise ValueError(f"x{what} is empty")


def _check_label_values(y: torch.Tensor, num_classes: int, what: str = "") -> None:
    mn, mx = (int(v) for v in torch.aminmax(y))
    if mn < 0 or mx >= num_classes:
        raise ValueError(f"labels y{what} must lie in [0, {num_classes - 1}] for a {num_classes}-class model, got [{mn}, {mx}]")


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``(N, K)`` logits in eval mode, computed on the model's device, returned there."""
    device = _model_device(model)
    with eval_mode(model):
        return torch.cat([model(xb.to(device, non_blocking=True)) for xb in x.split(batch_size)])


def predict_proba(model: nn.Module, x: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
    """Class probabilities ``(N, K)`` (softmax of the logits), model in eval mode, no gradients.

    Runs on the model's device in batches; the result is returned on ``x``'s device.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise ValueError(f"x must be a float (N, C, H, W) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return torch.softmax(_logits(model, x, batch_size), dim=1).to(x.device)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512) -> dict[str, float]:
    """Loss and classification metrics of ``model`` on ``(x, y)``.

    Returns a dict with

    - ``loss``: mean cross-entropy (unweighted; P1's test loss ``L``), from float64 log-softmax
      of the logits, so very confident mistakes are not clipped as in ``sklearn.log_loss``;
    - ``accuracy`` and ``balanced_accuracy`` (mean per-class recall; P2 and MedMNIST-C report
      balanced error = 1 - balanced accuracy) from ``sklearn.metrics``;
    - ``auc``: binary: ROC AUC of the class-1 probability; multiclass: macro one-vs-rest ROC
      AUC (``sklearn.metrics.roc_auc_score``); NaN when undefined (a class absent from ``y``);
    - ``n``: number of examples.
    """
    _check_xy(x, y)
    logits = _logits(model, x, batch_size).double().cpu()
    yc = y.cpu()
    if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError(f"model must return (N, K) logits, got {tuple(logits.shape)}")
    k = logits.shape[1]
    _check_label_values(yc, k)
    loss = F.cross_entropy(logits, yc).item()
    prob = torch.softmax(logits, dim=1).numpy()
    y_np = yc.numpy()
    pred = prob.argmax(axis=1)
    try:
        if len(np.unique(y_np)) < 2:
            raise ValueError("ROC AUC needs both classes")  # sklearn would only warn
        if k == 2:
            auc = metrics.roc_auc_score(y_np, prob[:, 1])
        else:
            auc = metrics.roc_auc_score(y_np, prob, multi_class="ovr", average="macro", labels=np.arange(k))
    except ValueError:  # only one class present in y, or a class without examples
        auc = math.nan
    return {
        "loss": loss,
        "accuracy": float(metrics.accuracy_score(y_np, pred)),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(y_np, pred)),
        "auc": float(auc),
        "n": int(x.shape[0]),
    }


def early_stop(val_losses: Sequence[float], patience: int) -> tuple[int, bool]:
    """Early-stopping rule on the validation losses so far (epoch 1 first): ``(best_epoch, stop)``.

    ``best_epoch`` (1-based) is the epoch of the lowest validation loss (the first one on ties); ``stop`` is True
    once ``patience`` epochs have passed since it without a lower loss (Keras ``EarlyStopping(patience)`` with
    ``restore_best_weights=True``, as P3's code). A NaN loss is never the best.
    """
    losses = [float(v) for v in val_losses]
    if not losses:
        raise ValueError("early_stop needs at least one validation loss")
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ValueError(f"patience must be an int >= 1, got {patience!r}")
    finite = [v if v == v else math.inf for v in losses]  # NaN never counts as best
    best = min(range(len(finite)), key=lambda i: (finite[i], i)) + 1
    return best, len(losses) - best >= patience


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 10,  # passes over the training set (P1: 100)
    batch_size: int = 128,  # examples per update
    lr: float = 1e-3,  # learning rate (P1: 1e-3 ResNet, 1e-4 VGG; robustness/SGD: 0.1)
    weight_decay: float = 1e-4,  # L2 penalty added by the optimizer (P1: 1e-4; robustness: 5e-4)
    optimizer: Literal["adam", "sgd"] = "adam",  # Adam (P1) or SGD with momentum 0.9 (Ilyas et al.)
    schedule: Literal["constant", "step", "cosine"] = "constant",  # "step": x0.1 at 1/3 and 2/3 of the epochs
    seed: int = 0,  # seeds shuffling, dropout and attack starts: CPU runs are bit-reproducible
    adversarial: AdversarialConfig | dict | None = None,  # PGD adversarial training settings, None = standard
    x_val: torch.Tensor | None = None,  # optional validation images, evaluated after every epoch
    y_val: torch.Tensor | None = None,  # their labels
    patience: int | None = None,  # early stopping on val loss (needs x_val), best epoch restored; None: keep last
    progress: bool = True,  # tqdm bar over epochs
    class_weights: Sequence[float] | torch.Tensor | None = None,  # cross-entropy class weights (imbalance)
    device: str | torch.device | None = None,  # None: x's device; the model is moved there
) -> dict[str, list]:
    """Train ``model`` in place on ``(x, y)`` with cross-entropy; returns the per-epoch history.

    Args: see the comments in the signature. ``x``: float ``(N, C, H, W)``; ``y``: int64 ``(N,)``.

    Returns:
        ``history``: dict of equal-length lists, one entry per epoch: ``epoch``, ``lr``,
        ``train_loss`` (mean over the epoch's batches; on adversarial batches when
        ``adversarial`` is set), ``time_s`` and, with validation data, ``val_loss``,
        ``val_accuracy``, ``val_balanced_accuracy``, ``val_auc`` (see :func:`evaluate`); with ``patience``
        also ``best_epoch``, the best validation epoch so far (:func:`early_stop`), so the kept epoch is
        ``history["best_epoch"][-1]`` and the epochs run ``len(history["epoch"])``.

    Without ``patience`` the last epoch's weights are kept (as in P1). With it, training stops once ``patience``
    epochs pass without a lower validation loss (at most ``epochs``), and the best validation epoch's weights are
    restored (P3). The model is left in eval mode. Batches are reshuffled each epoch by a
    generator seeded with ``seed``; ``torch.manual_seed(seed)`` fixes dropout. On CUDA some
    kernels are non-deterministic, so only CPU runs are bit-identical.
    """
    _check_xy(x, y)
    if (x_val is None) != (y_val is None):
        raise ValueError("pass both x_val and y_val, or neither")
    if patience is not None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be a positive int or None, got {patience!r}")
        if x_val is None:
            raise ValueError(f"early stopping (patience={patience}) needs validation data: pass x_val and y_val")
    if x_val is not None:
        _check_xy(x_val, y_val, "_val")
        if x_val.shape[1:] != x.shape[1:]:
            raise ValueError(f"x_val examples {tuple(x_val.shape[1:])} differ from x examples {tuple(x.shape[1:])}")
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if schedule not in ("constant", "step", "cosine"):
        raise ValueError(f"schedule must be 'constant', 'step' or 'cosine', got {schedule!r}")
    adv = _adversarial_config(adversarial)

    device = torch.device(device) if device is not None else x.device
    model.to(device)
    torch.manual_seed(seed)
    # probe one example for the number of classes, to check labels and weights up front
    num_classes = _logits(model, x[:1], 1).shape[-1]
    _check_label_values(y, num_classes)
    if y_val is not None:
        _check_label_values(y_val, num_classes, "_val")
    weight = None
    if class_weights is not None:
        weight = torch.as_tensor(class_weights, dtype=torch.float32, device=device).flatten()
        if weight.numel() != num_classes or not bool((weight >= 0).all()):
            raise ValueError(f"class_weights must be {num_classes} non-negative numbers, got {class_weights!r}")

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, weight=weight)

    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if schedule == "step":
        milestones = sorted({max(1, round(epochs / 3)), max(1, round(2 * epochs / 3))})
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    elif schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    else:
        sched = None

    shuffle_gen = torch.Generator().manual_seed(seed)
    attack_gen = torch.Generator(device=device).manual_seed(seed + 1) if adv is not None else None
    n = x.shape[0]
    history: dict[str, list] = {"epoch": [], "lr": [], "train_loss": [], "time_s": []}
    if x_val is not None:
        for key in ("val_loss", "val_accuracy", "val_balanced_accuracy", "val_auc"):
            history[key] = []
    if patience is not None:
        history["best_epoch"] = []
    best_state: dict[str, torch.Tensor] | None = None

    bar = tqdm(range(1, epochs + 1), desc="fit", disable=not progress, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=shuffle_gen).to(x.device)
        starts = list(range(0, n, batch_size))
        if n > 1 and n - starts[-1] == 1:
            starts.pop()  # a final batch of one example breaks BatchNorm in train mode
        total = torch.zeros((), dtype=torch.float64, device=device)
        seen = 0
        lr_now = opt.param_groups[0]["lr"]
        for s in starts:
            idx = perm[s : s + batch_size]
            xb = x[idx].to(device, non_blocking=True)
            yb = y[idx].to(device, non_blocking=True)
            if adv is not None:
                loss = adversarial_training_step(
                    model, opt, xb, yb, eps=adv.eps, steps=adv.steps,
                    step_size=adv.resolved_step_size(), norm=adv.norm, input_range=adv.input_range,
                    random_start=adv.random_start, loss_fn=loss_fn, generator=attack_gen,
                )
            else:
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
                loss = loss.detach()
            total += loss.double() * len(idx)  # accumulated on device: no sync per batch
            seen += len(idx)
        if sched is not None:
            sched.step()
        history["epoch"].append(epoch)
        history["lr"].append(lr_now)
        history["train_loss"].append(total.item() / seen)
        postfix = {"loss": f"{history['train_loss'][-1]:.4f}"}
        if x_val is not None:
            ev = evaluate(model, x_val, y_val, batch_size=max(batch_size, 256))
            for key in ("loss", "accuracy", "balanced_accuracy", "auc"):
                history[f"val_{key}"].append(ev[key])
            postfix["val_acc"] = f"{ev['accuracy']:.3f}"
        stop = False
        if patience is not None:
            best, stop = early_stop(history["val_loss"], patience)
            history["best_epoch"].append(best)
            if best == epoch:  # a copy of the best weights so far, restored at the end
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history["time_s"].append(time.perf_counter() - t0)
        bar.set_postfix(postfix)
        if stop:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history
