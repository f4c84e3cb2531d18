"""Tests for domaingap.kernels.attacks: constraints hold exactly, known answers on linear models,
PGD vs FGSM, representation inversion, adversarial training, no side effects, clear errors."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from domaingap.kernels import attacks

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")




def _mlp(d_in: int, k: int = 3, seed: int = 0, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d_in, 16), nn.Tanh(), nn.Linear(16, k)).to(dtype)


def _images(n: int, lo: float, hi: float, seed: int = 0, shape=(1, 6, 6)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = lo + (hi - lo) * torch.rand((n, *shape), generator=g)
    # put exact boundary values in, where clamping and rounding are most likely to go wrong
    x.view(n, -1)[:, 0] = lo
    x.view(n, -1)[:, 1] = hi
    return x


# --------------------------------------------------------------------------- constraints


@pytest.mark.parametrize("input_range", [(0.0, 1.0), (0.0, 255.0)])
@pytest.mark.parametrize(
    "method,norm",
    [("fgsm", "linf"), ("pgd", "linf"), ("pgd", "l2"), ("pgd_best_restarts", "l2"), ("pgd_best_restarts", "linf")],
)
def test_perturbation_inside_ball_and_range_exactly(method, norm, input_range):
    lo, hi = input_range
    scale = hi - lo
    x = _images(32, lo, hi, seed=1)
    model = _mlp(x[0].numel())
    y = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(2))
    # L2 budget large enough that most examples end on the sphere (where rounding bites)
    eps = (8 / 255) * scale if norm == "linf" else 0.5 * scale
    if method == "fgsm":
        xa = attacks.fgsm(model, x, y, eps, input_range=input_range)
    else:
        extra = dict(keep_best=True, restarts=2) if method == "pgd_best_restarts" else {}
        xa = attacks.pgd(
            model, x, y, eps, steps=6, step_size=eps / 3, norm=norm, input_range=input_range,
            generator=torch.Generator().manual_seed(3), **extra,
        )
    assert xa.shape == x.shape and xa.dtype == x.dtype and xa.device == x.device
    d = xa.double() - x.double()
    if norm == "linf":
        assert d.abs().max().item() <= eps
        assert d.abs().max().item() > 0.99 * eps  # the budget is used: the check is not vacuous
    else:
        norms = d.flatten(1).norm(dim=1)
        assert (norms <= eps).all()
        assert norms.max().item() > 0.99 * eps
    assert xa.min().item() >= lo and xa.max().item() <= hi


def test_l2_exactness_repair_on_the_sphere():
    # examples sitting exactly on the sphere in real arithmetic, in [0, 255], many dimensions:
    # rounding x + delta to float32 pushes about half of them outside by a few ulps
    x = _images(64, 0.0, 255.0, seed=5, shape=(3, 16, 16))
    eps = 100.0
    g = torch.Generator().manual_seed(0)
    d = torch.randn(x.shape, generator=g, dtype=torch.float64)
    d = d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * eps
    xa = (x.double() + d).clamp(0, 255).float()
    fixed = attacks._enforce_l2(xa, x, eps, 0.0, 255.0)
    assert ((fixed.double() - x.double()).flatten(1).norm(dim=1) <= eps).all()
    assert torch.allclose(fixed, xa, atol=1e-3)  # pulled in by ~sqrt(D) half-ulps only
    # a budget below float32's resolution at 255 cannot be met by moving: fall back to x
    tiny = attacks._enforce_l2(xa, x, 1e-6, 0.0, 255.0)
    assert torch.equal(tiny, x)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_unbounded_input_range(norm):
    g = torch.Generator().manual_seed(0)
    x = 50 * torch.randn(16, 1, 6, 6, generator=g)  # e.g. standardised features, no natural range
    model = _mlp(36)
    y = torch.randint(0, 3, (16,), generator=g)
    eps = 0.3 if norm == "linf" else 3.0
    xa = attacks.pgd(model, x, y, eps, steps=4, step_size=eps / 2, norm=norm, input_range=(-math.inf, math.inf))
    d = (xa.double() - x.double()).flatten(1)
    assert ((d.abs().amax(1) if norm == "linf" else d.norm(dim=1)) <= eps).all()


def test_pgd_zero_steps_is_random_noise_in_ball():
    x = _images(8, 0.0, 1.0)
    model = _mlp(x[0].numel())
    y = torch.zeros(8, dtype=torch.long)
    xa = attacks.pgd(model, x, y, 0.3, steps=0, step_size=0.1, norm="l2", generator=torch.Generator().manual_seed(0))
    n = (xa.double() - x.double()).flatten(1).norm(dim=1)
    assert (n <= 0.3).all() and (n > 0).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_zero_gradient_gives_zero_step_not_nan(norm):
    # a model whose output ignores x (or a saturated softmax) has grad_x = 0 exactly
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 2))
    with torch.no_grad():
        model[1].weight.zero_()
    x = _images(4, 0.0, 255.0)
    y = torch.tensor([0, 1, 0, 1])
    xa = attacks.pgd(model, x, y, 10.0, steps=3, step_size=5.0, norm=norm, random_start=False, input_range=(0, 255))
    assert torch.equal(xa, x)
    assert torch.equal(attacks.fgsm(model, x, y, 2.0, input_range=(0, 255)), x)


# --------------------------------------------------------------------------- known answers


def test_fgsm_never_lowers_loss_of_logistic_regression():
    # For a linear model z = W x + b, CE(z(x), y) is convex in x, so
    #   L(x + d) >= L(x) + g . d       with g = grad_x L(x)   (first-order convexity).
    # FGSM takes d_i = eps * sign(g_i), clamped to [lo, hi]. Since x is inside the range the
    # clamp only shortens d_i towards 0 without changing its sign, so g_i * d_i >= 0 for every
    # i and g . d >= 0: the adversarial loss is never below the clean loss (strictly above
    # whenever some g_i != 0 has room to move).
    torch.manual_seed(0)
    n, dim, k = 200, 20, 4
    model = nn.Linear(dim, k).double()
    x = torch.rand(n, dim, dtype=torch.float64)
    x[:, :3] = 0.0  # at the lower boundary: the clamp binds for negative gradient components
    x[:, 3:6] = 1.0
    y = torch.randint(0, k, (n,))
    xa = attacks.fgsm(model, x, y, 0.05)
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y, reduction="none")
        adv = F.cross_entropy(model(xa), y, reduction="none")
    assert (adv > clean).all()


def _two_class_linear(dim: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(dim, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, dim, generator=g, dtype=torch.float64))
        model.bias.copy_(torch.randn(2, generator=g, dtype=torch.float64))
    x = torch.randn(64, dim, generator=g, dtype=torch.float64)
    return model, x


def test_targeted_l2_pgd_matches_closed_form_on_linear_model():
    # Two-class linear model: grad_x CE(target t) = (1 - p_t) (w_o - w_t), always along
    # u = (w_t - w_o) / ||w_t - w_o||. Normalised steps therefore walk straight along u and the
    # projection keeps the direction: x_adv = x + min(steps * step, eps) * u exactly, and the
    # target is reached iff eps exceeds the distance to the boundary, m / ||w_t - w_o||.
    model, x = _two_class_linear(dim=10, seed=0)
    with torch.no_grad():
        pred = model(x).argmax(1)
    t = 1 - pred
    w, b = model.weight.detach(), model.bias.detach()
    wd = w[t] - w[pred]  # (N, D) per-example w_t - w_o
    margin = -((wd * x).sum(1) + b[t] - b[pred])  # > 0: distance along u is margin / ||wd||
    dist = margin / wd.norm(dim=1)
    eps = dist.median().item()
    u = wd / wd.norm(dim=1, keepdim=True)
    xa = attacks.pgd(
        model, x, t, eps, steps=20, step_size=eps / 10, norm="l2", targeted=True,
        random_start=False, input_range=(-100, 100),
    )
    assert torch.allclose(xa, x + eps * u, atol=1e-9)
    with torch.no_grad():
        reached = model(xa).argmax(1) == t
    assert torch.equal(reached, dist < eps)
    assert 0 < reached.sum() < len(x)


def test_targeted_linf_pgd_matches_closed_form_on_linear_model():
    # Same model: sign(grad) = -sign(w_t - w_o) at every step, so after enough steps
    # x_adv = x + eps * sign(w_t - w_o); the target is reached iff margin < eps * ||w_t - w_o||_1.
    model, x = _two_class_linear(dim=10, seed=1)
    with torch.no_grad():
        pred = model(x).argmax(1)
    t = 1 - pred
    w, b = model.weight.detach(), model.bias.detach()
    wd = w[t] - w[pred]
    margin = -((wd * x).sum(1) + b[t] - b[pred])
    need = margin / wd.abs().sum(1)
    eps = need.median().item()
    xa = attacks.pgd(
        model, x, t, eps, steps=12, step_size=eps / 5, norm="linf", targeted=True,
        random_start=False, input_range=(-100, 100),
    )
    assert torch.allclose(xa, x + eps * wd.sign(), atol=1e-12)
    with torch.no_grad():
        reached = model(xa).argmax(1) == t
    assert torch.equal(reached, need < eps)


# --------------------------------------------------------------------------- attack strength


@functools.lru_cache(maxsize=1)
def _trained_model_and_data():
    # two noisy prototypes; the tests below only read the model (attacks restore its state)
    g = torch.Generator().manual_seed(0)
    n = 400
    y = torch.randint(0, 2, (n,), generator=g)
    proto = torch.rand(2, 1, 6, 6, generator=g)
    x = (0.35 * proto[y] + 0.65 * torch.rand(n, 1, 6, 6, generator=g)).clamp(0, 1)
    model = _mlp(36, k=2, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, x, y


def test_pgd_at_least_as_strong_as_fgsm_on_trained_model():
    model, x, y = _trained_model_and_data()
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    assert correct.float().mean() > 0.95
    x, y = x[correct], y[correct]
    eps = 0.06
    xf = attacks.fgsm(model, x, y, eps)
    xp = attacks.pgd(model, x, y, eps, steps=10, step_size=2.5 * eps / 10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fooled_f = (model(xf).argmax(1) != y).float().mean().item()
        fooled_p = (model(xp).argmax(1) != y).float().mean().item()
        loss_f = F.cross_entropy(model(xf), y).item()
        loss_p = F.cross_entropy(model(xp), y).item()
    assert fooled_p >= fooled_f
    assert 0 < fooled_p
    assert loss_p >= loss_f


def test_keep_best_and_restarts_never_worse_per_example():
    model, x, y = _trained_model_and_data()
    x, y = x[:64], y[:64]

    def run(**kw):
        return attacks.pgd(model, x, y, 0.05, steps=5, step_size=0.03, norm="l2", generator=torch.Generator().manual_seed(7), **kw)

    def loss(xa, target):
        with torch.no_grad():
            return F.cross_entropy(model(xa), target, reduction="none")

    last, best, multi = run(), run(keep_best=True), run(restarts=3)
    # same random start (same generator seed): the best iterate is one of the same trajectory
    assert (loss(best, y) >= loss(last, y)).all()
    # the first restart reproduces the single run; the other two can only improve it
    assert (loss(multi, y) >= loss(last, y) - 1e-7).all()
    # targeted: keep_best keeps the lowest loss
    t = 1 - y
    last_t = attacks.pgd(model, x, t, 0.05, steps=5, step_size=0.03, norm="l2", targeted=True, random_start=False)
    best_t = attacks.pgd(model, x, t, 0.05, steps=5, step_size=0.03, norm="l2", targeted=True, random_start=False, keep_best=True)
    # (up to float32 noise: the final L2 rounding repair may move an iterate by a few ulps)
    assert (loss(best_t, t) <= loss(last_t, t) + 1e-5).all()


def test_custom_loss_fn_changes_the_objective():
    model, x, y = _trained_model_and_data()
    x, y = x[:32], y[:32]

    def margin_loss(logits, target):  # CW-style margin, per example
        other = logits.gather(1, (1 - target)[:, None]).squeeze(1)
        return other - logits.gather(1, target[:, None]).squeeze(1)

    xa = attacks.pgd(model, x, y, 0.05, steps=5, step_size=0.02, loss_fn=margin_loss, keep_best=True, random_start=False)
    with torch.no_grad():
        assert (margin_loss(model(xa), y) >= margin_loss(model(x), y)).all()


# --------------------------------------------------------------------------- inversion


def test_invert_representation_lowers_representation_distance():
    torch.manual_seed(0)
    feat = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 12))
    g = torch.Generator().manual_seed(1)
    x_target = torch.rand(6, 1, 8, 8, generator=g)
    x_start = torch.rand(6, 1, 8, 8, generator=g)

    def dist(z):
        with torch.no_grad():
            return (feat(z) - feat(x_target)).norm(dim=1)

    out = attacks.invert_representation(feat, x_target, x_start, steps=40, step_size=0.05)
    assert out.shape == x_start.shape and out.min() >= 0 and out.max() <= 1
    before, after = dist(x_start), dist(out)
    assert (after < 0.5 * before).all()
    # keep_best returns, per example, no worse than the last iterate
    last = attacks.invert_representation(feat, x_target, x_start, steps=40, step_size=0.05, keep_best=False)
    assert (after <= dist(last)).all()


# --------------------------------------------------------------------------- adversarial training


def _tsipras_data(n: int, d_weak: int, eta: float, p: float, seed: int):
    # Tsipras et al. (2019): one robust feature, x0 = y with probability p (else -y), and
    # d_weak non-robust features N(eta * y, 1). Standard training leans on the weak features,
    # which an L-inf attack with eps = 2 * eta flips; the robust feature survives eps < 1.
    g = torch.Generator().manual_seed(seed)
    s = torch.randint(0, 2, (n,), generator=g) * 2 - 1
    flip = torch.rand(n, generator=g) > p
    x0 = torch.where(flip, -s, s).float()
    weak = eta * s[:, None].float() + torch.randn(n, d_weak, generator=g)
    x = torch.cat([x0[:, None], weak], 1).clamp(-8, 8)
    return x, ((s + 1) // 2).long()


def test_adversarial_training_raises_robust_accuracy():
    eta, eps, rng = 0.25, 0.5, (-8.0, 8.0)
    x, y = _tsipras_data(2000, 64, eta, 0.95, seed=0)
    xt, yt = _tsipras_data(1000, 64, eta, 0.95, seed=1)

    def train(adversarial: bool) -> nn.Module:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(65, 32), nn.ReLU(), nn.Linear(32, 2))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        g = torch.Generator().manual_seed(0)
        for _ in range(15):
            for idx in torch.randperm(len(x), generator=g).split(200):
                if adversarial:
                    attacks.adversarial_training_step(
                        model, opt, x[idx], y[idx], eps=eps, steps=5, step_size=0.25, norm="linf", input_range=rng
                    )
                else:
                    opt.zero_grad()
                    F.cross_entropy(model(x[idx]), y[idx]).backward()
                    opt.step()
        return model

    def accuracies(model):
        xa = attacks.pgd(model, xt, yt, eps, steps=20, step_size=0.1, input_range=rng, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            return (model(xt).argmax(1) == yt).float().mean().item(), (model(xa).argmax(1) == yt).float().mean().item()

    clean_std, robust_std = accuracies(train(False))
    clean_adv, robust_adv = accuracies(train(True))
    assert clean_std > 0.95
    assert robust_std < 0.5
    assert robust_adv > robust_std + 0.3
    assert robust_adv > 0.8


def test_adversarial_training_step_updates_and_returns_loss():
    model = _mlp(36, k=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = _images(16, 0.0, 1.0)
    y = torch.randint(0, 2, (16,))
    before = [p.detach().clone() for p in model.parameters()]
    loss = attacks.adversarial_training_step(model, opt, x, y, eps=0.3, steps=3, step_size=0.2, norm="l2", input_range=(0, 1))
    assert loss.dim() == 0 and not loss.requires_grad and math.isfinite(loss.item())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


# --------------------------------------------------------------------------- side effects


class _Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2))
        self.seen_training: list[bool] = []

    def forward(self, x):
        self.seen_training.append(self.training)
        return self.net(x)


def _attack_calls():
    return {
        "fgsm": lambda m, x, y: attacks.fgsm(m, x, y, 0.1),
        "pgd": lambda m, x, y: attacks.pgd(m, x, y, 0.1, steps=2, step_size=0.05, keep_best=True),
        "pgd_l2": lambda m, x, y: attacks.pgd(m, x, y, 0.5, steps=2, step_size=0.2, norm="l2", restarts=2),
        "invert": lambda m, x, y: attacks.invert_representation(m, x, x.flip(0), steps=2),
    }


@pytest.mark.parametrize("name", list(_attack_calls()))
def test_no_gradient_leak_and_modes_restored(name):
    model = _Recorder()
    x = _images(8, 0.0, 1.0)
    y = torch.randint(0, 2, (8,))
    model.train()
    model.net[3].eval()  # a mixed configuration must come back as it was
    F.cross_entropy(model(x), y).backward()
    model.net[4].bias.grad = None  # one parameter without a .grad
    grads = {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    bn_stats = model.net[2].running_mean.clone()
    modes = [m.training for m in model.modules()]
    model.seen_training.clear()

    _attack_calls()[name](model, x, y)

    assert model.seen_training and not any(model.seen_training)  # eval mode while attacking
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(model.net[2].running_mean, bn_stats)  # BatchNorm statistics untouched
    for n, p in model.named_parameters():
        assert torch.equal(p, params[n])
        if grads[n] is None:
            assert p.grad is None
        else:
            assert torch.equal(p.grad, grads[n])


def test_attacks_work_under_no_grad_and_inference_tensors():
    model, x, y = _trained_model_and_data()
    with torch.inference_mode():
        xi = x[:8].clone()
    with torch.no_grad():
        xa = attacks.pgd(model, xi, y[:8], 0.05, steps=2, step_size=0.02)
    assert not torch.equal(xa, xi)


# --------------------------------------------------------------------------- errors


def _bad_cases():
    model = _mlp(36, k=2)
    x = _images(4, 0.0, 1.0)
    y = torch.tensor([0, 1, 0, 1])
    pgd = lambda **kw: attacks.pgd(model, kw.pop("x", x), kw.pop("y", y), kw.pop("eps", 0.1), **{"steps": 2, "step_size": 0.05, **kw})  # noqa: E731
    return {
        "eps<0": (lambda: attacks.fgsm(model, x, y, -0.1), "eps"),
        "eps nan": (lambda: pgd(eps=float("nan")), "eps"),
        "step_size 0": (lambda: pgd(step_size=0.0), "step_size"),
        "steps -1": (lambda: pgd(steps=-1), "steps"),
        "norm": (lambda: pgd(norm="l3"), "norm"),
        "range reversed": (lambda: attacks.fgsm(model, x, y, 0.1, input_range=(1, 0)), "input_range"),
        "x outside range": (lambda: attacks.fgsm(model, x * 255, y, 2.0), "input_range"),
        "x outside 255 range": (lambda: pgd(x=x - 0.5, input_range=(0, 255)), "outside input_range"),
        "label too large": (lambda: attacks.fgsm(model, x, torch.tensor([0, 1, 2, 0]), 0.1), "[0, 1]"),
        "label negative": (lambda: pgd(y=torch.tensor([0, -1, 0, 1])), "[0, 1]"),
        "y length": (lambda: attacks.fgsm(model, x, y[:3], 0.1), "shape (4,)"),
        "y 2-D": (lambda: pgd(y=y[:, None]), "shape (4,)"),
        "x int": (lambda: attacks.fgsm(model, (x * 255).to(torch.uint8), y, 0.1), "floating-point"),
        "restarts 0": (lambda: pgd(restarts=0), "restarts"),
        "restarts without random start": (lambda: pgd(restarts=2, random_start=False), "random_start"),
        "scalar loss with keep_best": (lambda: pgd(keep_best=True, loss_fn=lambda z, t: F.cross_entropy(z, t)), "per-example"),
        "invert shapes": (lambda: attacks.invert_representation(model, x, x[:2], steps=1), "same shape"),
        "invert outside range": (lambda: attacks.invert_representation(model, x, x + 2, steps=1), "x_start"),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_inputs_raise_clear_value_errors(case):
    call, fragment = _bad_cases()[case]
    with pytest.raises(ValueError) as info:
        call()
    assert fragment in str(info.value)


# --------------------------------------------------------------------------- CUDA


@pytest.mark.gpu
@needs_cuda
def test_cuda_matches_cpu_and_stays_on_device():
    model, x = _two_class_linear(dim=10, seed=0)
    y = model(x).argmax(1).detach()
    x = (x - x.min()) / (x.max() - x.min())
    xa_cpu = attacks.fgsm(model, x, y, 0.05)
    mc, xc, yc = model.cuda(), x.cuda(), y.cuda()
    xa = attacks.fgsm(mc, xc, yc, 0.05)
    assert xa.is_cuda and torch.allclose(xa.cpu(), xa_cpu, atol=1e-12)
    for norm, eps in (("linf", 0.05), ("l2", 0.3)):
        xp = attacks.pgd(mc, xc, yc, eps, steps=5, step_size=eps / 2, norm=norm, restarts=2, keep_best=True,
                         generator=torch.Generator(device="cuda").manual_seed(0))
        assert xp.is_cuda
        d = (xp - xc).flatten(1)
        assert (d.abs().amax(1) <= eps).all() if norm == "linf" else (d.norm(dim=1) <= eps).all()
    xi = attacks.invert_representation(mc, xc, xc.flip(0), steps=3)
    assert xi.is_cuda
    with pytest.raises(ValueError, match="generator"):
        attacks.pgd(mc, xc, yc, 0.1, steps=1, step_size=0.1, generator=torch.Generator().manual_seed(0))
