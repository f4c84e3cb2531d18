"""Tests for domaingap.training: fit learns, is seed-deterministic on CPU, its options work;
evaluate matches hand-computed and scikit-learn metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn import metrics
from torch import nn

from domaingap import models, training

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")




def _blobs(n: int = 256, seed: int = 0, size: int = 4):
    """Two classes of (N, 1, size, size) images: a bright or dark patch plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.5 + 0.25 * (2 * y.float() - 1).view(-1, 1, 1, 1) + 0.1 * torch.randn(n, 1, size, size, generator=g)
    return x.clamp(0, 1), y


def _mlp(d_in: int = 16, k: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d_in, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, k))


# --------------------------------------------------------------------------- fit


def test_fit_reduces_loss_and_learns_separable_task():
    x, y = _blobs()
    xv, yv = _blobs(128, seed=1)
    model = _mlp()
    hist = training.fit(model, x, y, epochs=8, batch_size=32, lr=1e-2, seed=0, x_val=xv, y_val=yv, progress=False)
    assert hist["epoch"] == list(range(1, 9))
    assert all(len(v) == 8 for v in hist.values())
    assert hist["train_loss"][-1] < 0.3 * hist["train_loss"][0]
    assert hist["val_accuracy"][-1] > 0.95 and hist["val_auc"][-1] > 0.99
    assert not model.training  # left in eval mode


def test_fit_is_deterministic_given_the_seed():
    x, y = _blobs(96, size=8)

    def run(seed):
        torch.manual_seed(0)  # same initial weights
        model = models.build_model("small_cnn", in_channels=1, num_classes=2, image_size=8)
        model.fc = nn.Sequential(nn.Dropout(0.3), model.fc)  # dropout draws from the seed too
        training.fit(model, x, y, epochs=2, batch_size=16, lr=1e-3, optimizer="sgd", seed=seed, progress=False)
        return model.state_dict()

    a, b, c = run(5), run(5), run(6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_fit_step_schedule_and_class_weights():
    x, y = _blobs(64)
    model = _mlp()
    hist = training.fit(
        model, x, y, epochs=6, batch_size=32, lr=0.1, optimizer="sgd", schedule="step", seed=0,
        class_weights=[1.0, 3.0], progress=False,
    )
    # x0.1 at 1/3 and 2/3 of the epochs (robustness library: every 50 of 150 epochs)
    np.testing.assert_allclose(hist["lr"], [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert all(math.isfinite(v) for v in hist["train_loss"])


def test_fit_adversarial_path_runs():
    x, y = _blobs(64)
    model = _mlp()
    hist = training.fit(
        model, x, y, epochs=2, batch_size=32, seed=0, progress=False,
        adversarial={"eps": 0.5, "steps": 3, "norm": "l2"},
    )
    assert len(hist["train_loss"]) == 2 and all(math.isfinite(v) for v in hist["train_loss"])
    cfg = training.AdversarialConfig(eps=0.1, steps=2, norm="linf")
    assert cfg.resolved_step_size() == pytest.approx(0.125)
    hist = training.fit(_mlp(), x, y, epochs=1, batch_size=32, seed=0, progress=False, adversarial=cfg)
    assert len(hist["train_loss"]) == 1


@pytest.mark.parametrize(
    "change,fragment",
    [
        (dict(y=torch.zeros(64)), "int64"),
        (dict(y=torch.zeros(63, dtype=torch.long)), "shape (64,)"),
        (dict(y=torch.full((64,), 2, dtype=torch.long)), "[0, 1]"),
        (dict(optimizer="rmsprop"), "optimizer"),
        (dict(schedule="linear"), "schedule"),
        (dict(epochs=0), "epochs"),
        (dict(x_val=torch.rand(4, 1, 4, 4)), "both x_val and y_val"),
        (dict(class_weights=[1.0, 1.0, 1.0]), "class_weights"),
        (dict(adversarial={"eps": 0.1, "iters": 3}), "iters"),
        (dict(adversarial={"steps": 3}), "eps"),
        (dict(patience=2), "needs validation data"),
        (dict(patience=0, x_val=torch.rand(4, 1, 4, 4), y_val=torch.zeros(4, dtype=torch.long)), "positive int"),
    ],
)
def test_fit_rejects_bad_inputs(change, fragment):
    x, y = _blobs(64)
    kwargs = dict(x=x, y=y, epochs=1, progress=False)
    kwargs.update(change)
    with pytest.raises(ValueError) as info:
        training.fit(_mlp(), kwargs.pop("x"), kwargs.pop("y"), **kwargs)
    assert fragment in str(info.value)


def test_early_stop_picks_the_best_validation_epoch():
    losses = [1.0, 0.8, 0.9, 0.7, 0.75, 0.8, 0.9]
    # epoch 4 (0.7) is best; with patience 2 training stops after epoch 6, two epochs without improvement
    assert [training.early_stop(losses[:e], patience=2) for e in (1, 4, 5, 6)] == [(1, False), (4, False),
                                                                                  (4, False), (4, True)]
    assert training.early_stop([0.5, 0.5, 0.6], patience=5) == (1, False)  # ties: the first epoch
    assert training.early_stop([float("nan"), 0.9], patience=1) == (2, False)  # NaN is never best
    with pytest.raises(ValueError, match="patience must be an int >= 1"):
        training.early_stop([1.0], patience=0)
    with pytest.raises(ValueError, match="at least one"):
        training.early_stop([], patience=1)


def test_fit_with_patience_stops_and_restores_the_best_epoch():
    # a high learning rate on few examples overfits: validation loss turns up, so training must stop early
    x, y = _blobs(32, size=4)
    xv, yv = _blobs(64, seed=3, size=4)
    yv = yv[torch.randperm(64, generator=torch.Generator().manual_seed(0))]  # shuffled labels: val loss rises
    model = _mlp()
    hist = training.fit(model, x, y, epochs=40, batch_size=8, lr=3e-2, seed=0, x_val=xv, y_val=yv, patience=3,
                        progress=False)
    run = len(hist["epoch"])
    best = hist["best_epoch"][-1]
    assert all(len(v) == run for v in hist.values())
    assert run < 40 and run - best == 3  # stopped by the rule, three epochs after the best
    assert (best, True) == training.early_stop(hist["val_loss"], 3)
    # the kept weights are the best epoch's: their validation loss is the recorded minimum, not the last one
    assert training.evaluate(model, xv, yv)["loss"] == pytest.approx(min(hist["val_loss"]), rel=1e-6)
    assert hist["val_loss"][-1] > min(hist["val_loss"])


def test_fit_with_patience_matches_plain_fit_up_to_the_stop():
    # early stopping changes nothing about the epochs it runs: same batches, same updates as a plain fit
    x, y = _blobs(64, size=4)
    xv, yv = _blobs(32, seed=2, size=4)
    a, b = _mlp(seed=1), _mlp(seed=1)
    ha = training.fit(a, x, y, epochs=4, batch_size=16, seed=2, x_val=xv, y_val=yv, progress=False)
    hb = training.fit(b, x, y, epochs=4, batch_size=16, seed=2, x_val=xv, y_val=yv, patience=10, progress=False)
    assert ha["train_loss"] == hb["train_loss"] and ha["val_loss"] == hb["val_loss"]
    assert hb["best_epoch"] == [1 + min(range(e), key=lambda i: ha["val_loss"][i]) for e in range(1, 5)]


# --------------------------------------------------------------------------- evaluate


def test_evaluate_binary_known_answers_and_sklearn():
    # the "model" returns its input, so x are the logits: log-probabilities chosen by hand
    p1 = np.array([0.9, 0.2, 0.6, 0.4, 0.8])
    y = torch.tensor([1, 0, 1, 1, 0])
    x = torch.tensor(np.log(np.stack([1 - p1, p1], 1)), dtype=torch.float64)
    ev = training.evaluate(nn.Identity(), x, y)
    # predictions [1, 0, 1, 0, 1]: 3 of 5 right; recall 2/3 (class 1) and 1/2 (class 0)
    assert ev["accuracy"] == pytest.approx(0.6)
    assert ev["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # AUC = P(score of a positive > score of a negative): pairs (0.9, 0.6, 0.4) x (0.2, 0.8) -> 4/6
    assert ev["auc"] == pytest.approx(4 / 6)
    # loss: mean -log p(true class) = -mean log(0.9, 0.8, 0.6, 0.4, 0.2)
    assert ev["loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.6, 0.4, 0.2])), rel=1e-12)
    assert ev["n"] == 5
    assert ev["auc"] == pytest.approx(metrics.roc_auc_score(y.numpy(), p1))
    assert ev["balanced_accuracy"] == pytest.approx(metrics.balanced_accuracy_score(y.numpy(), p1 > 0.5))


def test_evaluate_multiclass_matches_sklearn():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(60, 4, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 4, (60,), generator=g)
    ev = training.evaluate(nn.Identity(), logits, y, batch_size=7)
    prob = torch.softmax(logits, 1).numpy()
    yn = y.numpy()
    assert ev["accuracy"] == pytest.approx(metrics.accuracy_score(yn, prob.argmax(1)))
    assert ev["balanced_accuracy"] == pytest.approx(metrics.balanced_accuracy_score(yn, prob.argmax(1)))
    assert ev["auc"] == pytest.approx(metrics.roc_auc_score(yn, prob, multi_class="ovr", average="macro"))
    assert ev["loss"] == pytest.approx(metrics.log_loss(yn, prob, labels=range(4)), rel=1e-9)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_evaluate_confident_mistake_not_clipped_and_auc_nan_for_one_class():
    x = torch.tensor([[0.0, 60.0], [0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 0])
    ev = training.evaluate(nn.Identity(), x, y)
    # -log softmax = 60 + log(1 + e^-60) and log 2; sklearn's log_loss would clip the first
    assert ev["loss"] == pytest.approx((60 + math.log1p(math.exp(-60)) + math.log(2)) / 2, rel=1e-12)
    assert math.isnan(ev["auc"])


def test_predict_proba_rows_and_mode():
    model = _mlp()
    model.train()
    x, _ = _blobs(10)
    p = training.predict_proba(model, x, batch_size=3)
    assert p.shape == (10, 2) and p.device == x.device
    torch.testing.assert_close(p.sum(1), torch.ones(10))
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(p, torch.softmax(model(x), 1))


# --------------------------------------------------------------------------- CUDA


@pytest.mark.gpu
@needs_cuda
def test_fit_on_cuda_from_cpu_tensors():
    x, y = _blobs(128)
    model = _mlp()
    hist = training.fit(model, x, y, epochs=10, batch_size=32, lr=1e-2, seed=0, device="cuda", progress=False,
                        adversarial={"eps": 0.3, "steps": 2}, x_val=x, y_val=y)
    assert next(model.parameters()).is_cuda
    assert hist["val_accuracy"][-1] > 0.9
    assert training.predict_proba(model, x).device == x.device
