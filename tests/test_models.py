"""Tests for domaingap.models: small-input adaptations, penultimate representations, and
pretrained-weight loading from local state-dict files (never a download)."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from domaingap import models

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")




def _first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


# --------------------------------------------------------------------------- build_model


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_every_model_classifies_28px_grayscale(name):
    torch.manual_seed(0)
    model = models.build_model(name, in_channels=1, num_classes=2, image_size=28).eval()
    assert model.arch == name
    assert _first_conv(model).in_channels == 1
    with torch.no_grad():
        out = model(torch.rand(1, 1, 28, 28))
    assert out.shape == (1, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["resnet18", "vgg13", "small_cnn"])
@pytest.mark.parametrize("size", [32, 64])
def test_rgb_inputs_and_other_small_sizes(name, size):
    model = models.build_model(name, in_channels=3, num_classes=5, image_size=size).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, size, size)).shape == (2, 5)


def test_small_input_adaptations():
    r = models.build_model("resnet34", in_channels=1, num_classes=2, image_size=28)
    assert r.conv1.kernel_size == (3, 3) and r.conv1.stride == (1, 1)
    assert isinstance(r.maxpool, nn.Identity)
    v = models.build_model("vgg16", in_channels=1, num_classes=2, image_size=28).eval()
    assert all(m.ceil_mode for m in v.features if isinstance(m, nn.MaxPool2d))
    with torch.no_grad():  # five ceil-mode halvings: 28 -> 14 -> 7 -> 4 -> 2 -> 1
        assert v.features(torch.rand(1, 1, 28, 28)).shape == (1, 512, 1, 1)
    assert v.classifier[0].in_features == 512 and v.classifier[3].out_features == 4096


def test_large_inputs_keep_imagenet_definitions():
    r = models.build_model("resnet50", in_channels=3, num_classes=2, image_size=224)
    ref = torchvision.models.resnet50(weights=None)
    assert r.conv1.kernel_size == (7, 7) and r.conv1.stride == (2, 2)
    assert isinstance(r.maxpool, nn.MaxPool2d)
    shapes = {k: v.shape for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in r.state_dict().items() if not k.startswith("fc.")} == shapes
    v = models.build_model("vgg13", in_channels=1, num_classes=2, image_size=65)
    assert v.avgpool.output_size == (7, 7) and v.classifier[0].in_features == 512 * 7 * 7


def test_width_and_stem_options():
    r = models.build_model("resnet18", in_channels=1, num_classes=2, image_size=28, width=16, stem="imagenet")
    assert isinstance(r, torchvision.models.ResNet)
    assert r.conv1.kernel_size == (7, 7) and isinstance(r.maxpool, nn.MaxPool2d)
    assert r.layer4[0].conv1.out_channels == 128 and r.fc.in_features == 128
    ref = torchvision.models.resnet18(weights=None)
    assert list(r.state_dict()) == list(ref.state_dict())  # torchvision's names, key for key
    assert [n for n, _ in r.named_children()] == [n for n, _ in ref.named_children()]  # and order
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert r.eval()(x).shape == (2, 2)
        assert models.penultimate(r, x, resnet_layer="layer4").shape == (2, 128)  # 28 -> 7 -> 4 -> 2 -> 1
    r50 = models.build_model("resnet50", in_channels=1, num_classes=3, image_size=28, width=8)
    assert r50.fc.in_features == 8 * 8 * 4  # Bottleneck expansion 4 kept
    v = models.build_model("vgg13", in_channels=1, num_classes=2, image_size=28, width=16).eval()
    with torch.no_grad():
        assert models.penultimate(v, x).shape == (2, 1024) and v(x).shape == (2, 2)
    s = models.build_model("small_cnn", in_channels=3, num_classes=4, image_size=16, width=8)
    assert models.penultimate(s, torch.rand(2, 3, 16, 16)).shape == (2, 32)


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        (dict(name="resnet101", in_channels=1, num_classes=2, image_size=28), "unknown model name"),
        (dict(name="resnet18", in_channels=0, num_classes=2, image_size=28), "in_channels"),
        (dict(name="vgg13", in_channels=1, num_classes=2, image_size="28"), "image_size"),
        (dict(name="small_cnn", in_channels=1, num_classes=0, image_size=28), "num_classes"),
        (dict(name="vgg16", in_channels=1, num_classes=2, image_size=28, stem="cifar"), "ResNets only"),
        (dict(name="resnet18", in_channels=1, num_classes=2, image_size=28, stem="tiny"), "stem"),
        (dict(name="resnet18", in_channels=1, num_classes=2, image_size=28, width=0), "width"),
    ],
)
def test_build_model_rejects_bad_arguments(kwargs, fragment):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=fragment):
        models.build_model(name, **kwargs)


# --------------------------------------------------------------------------- penultimate


@pytest.mark.parametrize("name", ["resnet18", "vgg13", "small_cnn"])
def test_penultimate_feeds_the_classifier(name):
    torch.manual_seed(0)
    model = models.build_model(name, in_channels=1, num_classes=3, image_size=28).eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        logits = model(x)
        pen = models.penultimate(model, x)
        if name == "vgg13":
            # P1: second classifier Linear before its ReLU -> it can be negative
            assert pen.shape == (3, 4096) and (pen < 0).any()
            head = model.classifier[4:](pen.clone())  # ReLU is in place: keep pen intact
        else:
            assert pen.shape == (3, 512 if name == "resnet18" else 128)
            head = model.fc(pen)
    torch.testing.assert_close(head, logits, rtol=1e-5, atol=1e-6)


def test_penultimate_resnet_layer4_is_p1_flattened_map():
    torch.manual_seed(0)
    model = models.build_model("resnet18", in_channels=1, num_classes=2, image_size=28)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        flat = models.penultimate(model, x, resnet_layer="layer4")
        pooled = models.penultimate(model, x)
    assert flat.shape == (2, 512 * 4 * 4)  # 28 -> 28 -> 14 -> 7 -> 4 through the stages
    torch.testing.assert_close(flat.view(2, 512, 16).mean(2), pooled, rtol=1e-5, atol=1e-6)


def test_penultimate_eval_mode_restored_differentiable_and_chunked():
    torch.manual_seed(0)
    model = models.build_model("small_cnn", in_channels=1, num_classes=2, image_size=12)
    model.train()
    model.features[1].eval()  # mixed modes come back as they were
    modes = [m.training for m in model.modules()]
    bn = model.features[1].running_mean.clone()
    x = torch.rand(5, 1, 12, 12, requires_grad=True)
    pen = models.penultimate(model, x)
    pen.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(model.features[1].running_mean, bn)
    with torch.no_grad():
        torch.testing.assert_close(models.penultimate(model, x, batch_size=2), pen.detach())


def test_penultimate_rejects_bad_input():
    model = models.build_model("small_cnn", in_channels=1, num_classes=2, image_size=8)
    with pytest.raises(ValueError, match="N, C, H, W"):
        models.penultimate(model, torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="resnet_layer"):
        models.penultimate(model, torch.rand(1, 1, 8, 8), resnet_layer="layer3")
    with pytest.raises(ValueError, match="Linear"):
        models.penultimate(nn.Linear(4, 2), torch.rand(1, 1, 2, 2))


# --------------------------------------------------------------------------- load_pretrained


def test_load_pretrained_remaps_prefix_adapts_channels_skips_head(tmp_path):
    torch.manual_seed(0)
    src = models.build_model("resnet18", in_channels=3, num_classes=10, image_size=28)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that buffers matter too
        for m in src.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)

    dst = models.build_model("resnet18", in_channels=1, num_classes=2, image_size=28)
    report = models.load_pretrained(dst, path)

    assert report.adapted == ["conv1.weight"]
    assert sorted(report.skipped_head) == ["fc.bias", "fc.weight"]
    assert sorted(report.missing) == ["fc.bias", "fc.weight"]
    assert report.unexpected == []
    torch.testing.assert_close(dst.conv1.weight, src.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(dst.layer3[1].conv2.weight, src.layer3[1].conv2.weight)
    assert torch.equal(dst.layer2[0].bn1.running_var, src.layer2[0].bn1.running_var)
    # summing the RGB kernel is exact for grayscale images replicated to three channels
    g = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(
            models.penultimate(dst, g), models.penultimate(src, g.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5
        )


def test_load_pretrained_radimagenet_style_sequential_backbone(tmp_path):
    # converted RadImageNet checkpoints hold nn.Sequential(*list(resnet.children())[:-1])
    # under "backbone.": keys like "backbone.4.0.conv1.weight" for layer1.0.conv1.weight
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None)
    backbone = nn.Sequential(*list(ref.children())[:-1])
    path = tmp_path / "RadImageNet-ResNet18.pt"
    torch.save({f"backbone.{k}": v for k, v in backbone.state_dict().items()}, path)

    dst = models.build_model("resnet18", in_channels=3, num_classes=2, image_size=224)
    report = models.load_pretrained(dst, path)
    assert sorted(report.missing) == ["fc.bias", "fc.weight"]
    assert report.unexpected == [] and report.skipped_head == [] and report.adapted == []
    assert torch.equal(dst.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)
    assert torch.equal(dst.conv1.weight, ref.conv1.weight)


def test_load_pretrained_reports_unexpected_and_vgg_head(tmp_path):
    torch.manual_seed(0)
    src = models.build_model("small_cnn", in_channels=1, num_classes=5, image_size=28)
    state = {f"model.{k}": v for k, v in src.state_dict().items()}
    state["model.aux_head.weight"] = torch.zeros(3, 3)
    path = tmp_path / "own.pt"
    torch.save({"model": state}, path)
    dst = models.build_model("small_cnn", in_channels=1, num_classes=2, image_size=28)
    report = models.load_pretrained(dst, path)
    assert report.unexpected == ["aux_head.weight"]
    assert sorted(report.skipped_head) == ["fc.bias", "fc.weight"]
    assert torch.equal(dst.embed[0].weight, src.embed[0].weight)


def test_load_pretrained_errors(tmp_path):
    small = models.build_model("resnet18", in_channels=1, num_classes=2, image_size=28)
    large = models.build_model("resnet18", in_channels=1, num_classes=2, image_size=224)
    path = tmp_path / "small.pt"
    torch.save(small.state_dict(), path)
    with pytest.raises(ValueError, match="conv1.weight.*stem='imagenet'"):  # 3x3 stem into a 7x7 stem
        models.load_pretrained(large, path)
    junk = tmp_path / "junk.pt"
    torch.save({"foo.weight": torch.zeros(2)}, junk)
    with pytest.raises(ValueError, match="no key"):
        models.load_pretrained(small, junk)
    with pytest.raises(ValueError, match="existing state-dict file"):
        models.load_pretrained(small, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="arch"):
        models.load_pretrained(models.build_model("small_cnn", in_channels=1, num_classes=2, image_size=8), "imagenet")
    pickled = tmp_path / "module.pt"
    torch.save(nn.Linear(2, 2), pickled)
    with pytest.raises(ValueError, match="state_dict"):
        models.load_pretrained(small, pickled)


def test_load_pretrained_imagenet_offline_gives_clear_error(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    # torchvision's WeightsEnum.get_state_dict downloads through this name
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    model = models.build_model("resnet18", in_channels=1, num_classes=2, image_size=224)
    with pytest.raises(RuntimeError, match="could not download ImageNet weights for resnet18"):
        models.load_pretrained(model, "imagenet")


def test_load_pretrained_imagenet_path_with_stubbed_download(monkeypatch):
    torch.manual_seed(2)
    fake = torchvision.models.resnet18(weights=None).state_dict()  # 3 channels, 1000 classes
    seen = {}

    def fake_download(url, *args, **kwargs):
        seen["url"] = url
        return fake

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fake_download)
    model = models.build_model("resnet18", in_channels=1, num_classes=2, image_size=112)
    report = models.load_pretrained(model, "imagenet")
    assert "resnet18" in seen["url"]
    assert report.source == "imagenet:resnet18" and report.adapted == ["conv1.weight"]
    assert sorted(report.skipped_head) == ["fc.bias", "fc.weight"]
    torch.testing.assert_close(model.conv1.weight, fake["conv1.weight"].sum(1, keepdim=True))


# --------------------------------------------------------------------------- CUDA


@pytest.mark.gpu
@needs_cuda
def test_models_and_penultimate_on_cuda():
    for name in ("resnet18", "vgg13", "small_cnn"):
        model = models.build_model(name, in_channels=1, num_classes=2, image_size=28).cuda().eval()
        x = torch.rand(4, 1, 28, 28, device="cuda")
        with torch.no_grad():
            assert model(x).is_cuda and models.penultimate(model, x).is_cuda


def test_channels_last_keeps_values_and_outputs_and_is_used_by_every_training_run():
    from domaingap.chapters import p1, p2, p3
    from domaingap.runs import code

    torch.manual_seed(0)
    model = models.build_model("resnet18", in_channels=1, num_classes=2, image_size=28, width=8).eval()
    x = torch.rand(4, 1, 28, 28)
    ref = model(x)
    cl_model, cl_x = models.channels_last(model, x)
    assert cl_x.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl_x, x)
    assert cl_model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl_model(cl_x), ref, rtol=1e-5, atol=1e-6)  # the same network, another layout
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) tensors, got a tensor of shape \(4, 784\)"):
        models.channels_last(x.flatten(1))
    with pytest.raises(ValueError, match="at least one"):
        models.channels_last()
    # one helper for the book: every training run reaches it
    for kind in (p1.runs.train, p2.runs.train_run, p3.run_pretrain, p3.run_finetune):
        assert "domaingap.models.channels_last" in code.closure([kind]), kind.name
