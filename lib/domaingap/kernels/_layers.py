"""Layer activations for :mod:`domaingap.kernels.similarity`: extraction, P3's conv reshaping, layer similarity.

:func:`activations` collects named modules' outputs with forward hooks; :func:`conv_to_matrix` and
:func:`mean_cca_conv` are P3's procedure on ``(N, C, h, w)`` conv activations; :func:`layer_similarity` is P3's
mean CCA and its peers (SVCCA, PWCCA, linear CKA) between two activations of one layer. Import the public
functions from :mod:`~domaingap.kernels.similarity`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from ..devices import eval_mode
import torch
from torch import Tensor, nn

from ._cca import _cca_core, pwcca, svcca
from ._cka import linear_cka
from ._sim_inputs import ArrayLike, _as_tensor, _check_epsilon, _pair, _pair2d

__all__ = ["LayerNotFoundError", "activations", "conv_to_matrix", "layer_similarity", "mean_cca_conv"]


# --------------------------------------------------------------------------- #
# Convolutional activations (P3's procedure)
# --------------------------------------------------------------------------- #
def _check_conv(act: Tensor, name: str) -> None:
    if act.ndim != 4:
        raise ValueError(
            f"{name} must be 4-D (N, C, h, w) convolutional activations; "
            f"got shape {tuple(act.shape)}"
        )


def _check_n_channels(n_channels: int) -> int:
    if isinstance(n_channels, bool) or int(n_channels) != n_channels or n_channels < 1:
        raise ValueError(f"n_channels must be a positive integer; got {n_channels!r}")
    return int(n_channels)


def _channel_indices(c: int, n_channels: int, rng: np.random.Generator) -> np.ndarray | None:
    """Sorted random channel subset, or ``None`` for all channels when ``c <= n_channels``."""
    if c <= n_channels:
        return None
    return np.sort(rng.choice(c, size=n_channels, replace=False))


def _flatten_channels(act: Tensor, idx: np.ndarray | None) -> Tensor:
    if idx is not None:
        # Select before reshaping, so only n_channels of C channels are copied.
        act = act.index_select(1, torch.as_tensor(idx, device=act.device))
    n, c, h, w = act.shape
    return act.permute(0, 2, 3, 1).reshape(n * h * w, c)


def conv_to_matrix(
    act: ArrayLike, *, n_channels: int = 64, seed: int = 0
) -> Tensor | np.ndarray:
    """Reshape conv activations to P3's ``(N*h*w, n_channels)`` matrix.

    Every spatial position of every image is a data point and the channels are the
    neurons (Juodelyte et al., TMLR 2023; flattening "along channels" in google/
    svcca's terms). ``n_channels`` channels are drawn without replacement by
    ``numpy.random.default_rng(seed)`` (P3's draw was unseeded) and kept in
    increasing order; the same ``seed`` on two networks with the same ``C`` picks
    the same channels. If ``C <= n_channels`` all channels are used.

    Args:
        act: activations of shape ``(N, C, h, w)`` (PyTorch layout).
        n_channels: channels to keep (64 in P3).
        seed: seed of the channel draw.

    Returns:
        Array of shape ``(N*h*w, min(C, n_channels))``, same dtype as ``act``: a
        tensor on ``act``'s device, or a numpy array for numpy input. Rows are
        ordered image by image, then row-major over ``(h, w)``.
    """
    t = _as_tensor(act, "act")
    _check_conv(t, "act")
    n_channels = _check_n_channels(n_channels)
    idx = _channel_indices(t.shape[1], n_channels, np.random.default_rng(seed))
    out = _flatten_channels(t, idx)
    return out if isinstance(act, Tensor) else out.numpy()


def mean_cca_conv(
    act_a: ArrayLike,
    act_b: ArrayLike,
    *,
    n_channels: int = 64,
    repeats: int = 5,
    seed: int = 0,
    epsilon: float = 1e-12,
) -> float:
    """P3's layer similarity: mean CCA on channel subsets, averaged over repeats.

    For each repeat, ``n_channels`` channel indices are drawn (the *same* indices
    for both networks), each activation is reshaped to ``(N*h*w, n_channels)`` and
    :func:`mean_cca` is taken; the result is the average over ``repeats``
    (Juodelyte et al., TMLR 2023: 64 channels, 5 repeats, epsilon 1e-12). The
    draws come from one ``numpy.random.default_rng(seed)``, so the first repeat
    uses the channels of ``conv_to_matrix(act, seed=seed)``. If ``C <=
    n_channels`` every repeat would be identical, so it is computed once.

    P3 also drew a fresh batch of ``round(10000 / (h*w))`` images for each repeat;
    here the caller passes fixed activations (draw the images yourself to mimic
    that). P3's early layers therefore used only 1-4 images: prefer more.

    Args:
        act_a: activations of network A, shape ``(N, C, h, w)``.
        act_b: activations of network B for the same ``N`` inputs, same shape
            (same layer of the same architecture).
        n_channels: channels per repeat.
        repeats: number of channel draws to average.
        seed: seed of the channel draws.
        epsilon: relative ridge and neuron-dropping threshold (see :func:`cca`).

    Returns:
        Mean CCA averaged over repeats, in ``[0, 1]``.
    """
    # No float64 copy of all C channels: only the drawn subsets are cast.
    ta, tb = _pair(act_a, act_b, ndim=4, what="(N, C, h, w) convolutional activations",
                   cast=False)
    if ta.shape != tb.shape:
        raise ValueError(
            "act_a and act_b must have the same shape (N, C, h, w) -- the same layer of "
            f"the same architecture on the same inputs; got {tuple(ta.shape)} and "
            f"{tuple(tb.shape)}"
        )
    n_channels = _check_n_channels(n_channels)
    if isinstance(repeats, bool) or int(repeats) != repeats or repeats < 1:
        raise ValueError(f"repeats must be a positive integer; got {repeats!r}")
    epsilon = _check_epsilon(epsilon)
    rng = np.random.default_rng(seed)
    c = ta.shape[1]
    values = []
    for _ in range(1 if c <= n_channels else int(repeats)):
        idx = _channel_indices(c, n_channels, rng)
        ma, mb = _pair2d(_flatten_channels(ta, idx), _flatten_channels(tb, idx))
        rho = _cca_core(ma, mb, epsilon, "svd").rho
        values.append(float(rho.mean()) if rho.numel() else 0.0)
    return float(np.mean(values))


# --------------------------------------------------------------------------- #
# Layer similarity (P3's measure and its peers)
# --------------------------------------------------------------------------- #
def layer_similarity(act_a, act_b, *, n_channels: int = 64, repeats: int = 5, seed: int = 0,
                     epsilon: float = 1e-12) -> dict[str, float]:
    """P3's mean CCA and its peers between two activations of one layer, ``(N, C, h, w)`` each.

    ``mean_cca`` is :func:`mean_cca_conv` (P3's procedure). ``svcca``, ``pwcca`` and
    ``cka`` (linear, biased) are averaged over ``repeats`` draws of the same ``n_channels`` channels in both
    networks, each reshaped to P3's ``(N*h*w, n_channels)`` matrix (:func:`conv_to_matrix`).
    """
    if tuple(act_a.shape) != tuple(act_b.shape) or act_a.dim() != 4:
        raise ValueError(f"activations must be two (N, C, h, w) tensors of one shape, got {tuple(act_a.shape)} "
                         f"and {tuple(act_b.shape)}")
    with warnings.catch_warnings():
        # a dead stem channel or tiny probe only warns; the value is still P3's
        warnings.simplefilter("ignore", RuntimeWarning)
        out = {"mean_cca": mean_cca_conv(act_a, act_b, n_channels=n_channels, repeats=repeats,
                                         seed=seed, epsilon=epsilon)}
        c = act_a.shape[1]
        draws = 1 if c <= n_channels else repeats
        vals: dict[str, list[float]] = {"svcca": [], "pwcca": [], "cka": []}
        for r in range(draws):
            ma = conv_to_matrix(act_a, n_channels=n_channels, seed=seed + 1 + r)
            mb = conv_to_matrix(act_b, n_channels=n_channels, seed=seed + 1 + r)
            vals["svcca"].append(svcca(ma, mb))
            vals["pwcca"].append(pwcca(ma, mb, epsilon=epsilon))
            vals["cka"].append(linear_cka(ma, mb))
    out.update({k: float(np.mean(v)) for k, v in vals.items()})
    return out


# --------------------------------------------------------------------------- #
# Activation extraction
# --------------------------------------------------------------------------- #
class LayerNotFoundError(KeyError, ValueError):
    """A requested layer name is not in ``model.named_modules()``."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def _model_device(model: nn.Module) -> torch.device | None:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return None


def _batches(x: Tensor | Iterable[Any], batch_size: int) -> Iterable[Tensor]:
    if isinstance(x, Tensor):
        for i in range(0, x.shape[0], batch_size):
            yield x[i : i + batch_size]
        return
    for item in x:
        if isinstance(item, (tuple, list)):  # (inputs, labels) from a DataLoader
            item = item[0]
        if not isinstance(item, Tensor):
            raise TypeError(f"x yielded {type(item).__name__}; expected tensors or (tensor, ...)")
        yield item


def activations(
    model: nn.Module,
    x: Tensor | Iterable[Any],
    layers: Sequence[str],
    *,
    batch_size: int = 256,
    out_device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """Outputs of named modules of ``model`` on inputs ``x``, via forward hooks.

    The model runs in eval mode under ``torch.no_grad()``; each module's own
    ``training`` flag is restored afterwards and the hooks are removed, also when
    the forward pass raises.

    Args:
        model: any ``nn.Module``.
        x: inputs, a tensor of shape ``(N, ...)`` split into batches of
            ``batch_size``, or an iterable of batches (tensors or tuples whose first
            element is the input, e.g. a ``DataLoader``). Batches are moved to the
            model's device (that of its first parameter or buffer).
        layers: module names as in ``model.named_modules()``, e.g. ``"layer1.0.conv1"``.
        batch_size: batch size when ``x`` is a tensor.
        out_device: where to gather the activations (default: where they are
            produced); ``"cpu"`` saves GPU memory for large conv maps.

    Returns:
        ``{name: tensor}`` with the module outputs concatenated over the batches,
        shape ``(N, ...)`` (e.g. ``(N, C, h, w)`` for a conv block), detached.

    Raises:
        LayerNotFoundError (a ``KeyError`` and ``ValueError``): unknown layer name;
            the message lists the available names.
        ValueError: empty or duplicate ``layers``, bad ``batch_size``, or a module
            that runs more than once per forward pass (its output is ambiguous).
        TypeError: a module whose output is not a tensor.
    """
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty; name at least one module of model.named_modules()")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers has duplicate names: {layers}")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        available = [name for name in modules if name]
        raise LayerNotFoundError(
            f"layer(s) {missing} not found in {type(model).__name__}; available names "
            f"(model.named_modules()): {available}"
        )

    outputs: dict[str, list[Tensor]] = {name: [] for name in layers}
    calls: dict[str, int] = dict.fromkeys(layers, 0)

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            calls[name] += 1
            if not isinstance(output, Tensor):
                raise TypeError(
                    f"module {name!r} returned {type(output).__name__}, not a tensor; "
                    "hook one of its tensor-valued submodules instead"
                )
            out = output.detach()
            outputs[name].append(out if out_device is None else out.to(out_device))

        return hook

    device = _model_device(model)
    handles = [modules[name].register_forward_hook(make_hook(name)) for name in layers]
    try:
        with eval_mode(model), torch.no_grad():
            for batch in _batches(x, int(batch_size)):
                for name in layers:
                    calls[name] = 0
                model(batch if device is None else batch.to(device, non_blocking=True))
                for name in layers:
                    if calls[name] != 1:
                        raise ValueError(
                            f"module {name!r} ran {calls[name]} times in one forward pass; "
                            "expected exactly once (shared or unused modules are ambiguous)"
                        )
    finally:
        for h in handles:
            h.remove()
    if not outputs[layers[0]]:
        raise ValueError("x is empty: no batch was run")
    return {name: torch.cat(chunks) for name, chunks in outputs.items()}
