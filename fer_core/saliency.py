"""Saliency maps: which parts of a face drove a prediction.

- `grad_cam` (Selvaraju et al. 2017) weights the channels of a feature map by the mean gradient
  of the class score. On the last map (6x6 for a 48x48 face) that is one blob in the same place
  on every face, so it reads the last map at least `size` pixels wide (12: the stage before the
  last pooling). `plus=True` weights the channels as Grad-CAM++ does (Chattopadhay et al. 2018).
- `occlusion` (Zeiler & Fergus 2014) greys out a square at every position and maps how much the
  class probability drops: model-agnostic, but one forward pass per position.

`saliency_map` is the method the app shows, Grad-CAM++ on the 12x12 map: of those compared by
`bench/saliency.py` (BENCHMARKS.md) it marks the regions whose removal costs the class most, and
it lights up eyes, brows and mouth where Grad-CAM scatters spots, for the cost of one forward and
a partial backward pass (occlusion takes about a hundred times as long).

None of these change the model they are given: no train/eval switch, no parameter gradients
(only the feature map is differentiated, with `torch.autograd.grad`), so they can run on a model
shared with other threads. A model in training mode is explained through an eval-mode copy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_core.inference import to_input

DEFAULT_SIZE = 12  # grad_cam's feature-map width: 12x12 for every 48x48 network here


def saliency_map(
    model: nn.Module, faces: np.ndarray, mean: float, std: float, target=None
) -> np.ndarray:
    """The app's saliency: Grad-CAM++ on the 12x12 feature map. (N, 48, 48) uint8 faces ->
    (N, 48, 48) float32 maps in [0, 1]; target: a class index per face, default the predicted."""
    return grad_cam(model, faces, mean, std, target, size=DEFAULT_SIZE, plus=True)


def grad_cam(
    model: nn.Module,
    faces: np.ndarray,
    mean: float,
    std: float,
    target=None,
    size: int = DEFAULT_SIZE,
    plus: bool = False,
) -> np.ndarray:
    """Grad-CAM (or Grad-CAM++) of the last feature map at least `size` pixels wide (0: the last
    map). (N, 48, 48) uint8 faces -> (N, 48, 48) float32 maps in [0, 1]."""
    if len(faces) == 0:
        return np.zeros((0, *faces.shape[1:]), np.float32)
    model = _eval_model(model)
    act, logits = _feature_map(model, _inputs(model, faces, mean, std), size)
    idx = _targets(logits, target)
    score = logits.gather(1, idx[:, None]).sum()
    (grad,) = torch.autograd.grad(score, act)  # (N, C, h, w); no parameter gets a .grad
    weights = _plus_weights(act, grad) if plus else grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(1, keepdim=True)).detach()  # (N, 1, h, w)
    return _normalise(_upsample(cam, faces.shape[1:]))


def occlusion(
    model: nn.Module,
    faces: np.ndarray,
    mean: float,
    std: float,
    target=None,
    patch: int = 8,
    stride: int = 4,
) -> np.ndarray:
    """Occlusion sensitivity: the drop of the class probability when a `patch` square around each
    pixel is set to the mean grey, averaged over the squares covering it. Same shapes as
    `grad_cam`; 121 forward passes per face at the defaults."""
    if len(faces) == 0:
        return np.zeros((0, *faces.shape[1:]), np.float32)
    model = _eval_model(model)
    x = _inputs(model, faces, mean, std)  # (N, 1, H, W); 0 is the mean grey
    h, w = x.shape[2:]
    spots = [
        (r, c) for r in range(0, h - patch + 1, stride) for c in range(0, w - patch + 1, stride)
    ]
    cover = torch.zeros(h, w)
    for r, c in spots:
        cover[r : r + patch, c : c + patch] += 1
    heat = torch.zeros(len(x), h, w)
    with torch.no_grad():
        probs = model(x).softmax(-1)
        idx = _targets(probs, target)
        base = probs.gather(1, idx[:, None])[:, 0]
        for i in range(len(x)):
            copies = x[i].repeat(len(spots), 1, 1, 1)  # (S, 1, H, W)
            for k, (r, c) in enumerate(spots):
                copies[k, :, r : r + patch, c : c + patch] = 0
            drop = base[i] - model(copies).softmax(-1)[:, idx[i]]
            for k, (r, c) in enumerate(spots):
                heat[i, r : r + patch, c : c + patch] += drop[k].cpu()
    return _normalise(F.relu(heat / cover.clamp_min(1))[:, None])


def overlay(face: np.ndarray, cam: np.ndarray, alpha: float = 0.45, size: int = 144) -> np.ndarray:
    """A gray face with its saliency map as a colour overlay: (size, size, 3) uint8 RGB."""
    import cv2

    gray = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
    heat = cv2.applyColorMap(
        (cv2.resize(cam, (size, size)) * 255).astype(np.uint8), cv2.COLORMAP_JET
    )
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    base = np.repeat(gray[..., None], 3, axis=2)
    return (base * (1 - alpha) + heat * alpha).astype(np.uint8)


def _eval_model(model: nn.Module) -> nn.Module:
    """The model itself when in eval mode; a private eval copy otherwise (switching a shared
    model's mode would change what other threads compute)."""
    return copy.deepcopy(model).eval() if model.training else model


def _inputs(model: nn.Module, faces: np.ndarray, mean: float, std: float) -> torch.Tensor:
    device = next(model.parameters()).device
    return to_input(torch.from_numpy(np.ascontiguousarray(faces)).to(device), mean, std)


def _feature_map(model: nn.Module, x: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, logits): A (N, C, h, w) is the last map of `model.features` at least `size` pixels
    wide, made a leaf, and logits (N, K) are computed from it with gradients on."""
    features = getattr(model, "features", None)
    layers: list[nn.Module] = list(features) if isinstance(features, nn.Sequential) else []
    forward_features = cast(Callable[[torch.Tensor], torch.Tensor], model.forward_features)
    forward_head = cast(Callable[[torch.Tensor], torch.Tensor], model.forward_head)
    with torch.no_grad():
        if not layers:
            x = forward_features(x)
        start = 0
        while start < len(layers):
            out = layers[start](x)
            if out.shape[-1] < size:
                break  # layers[start] downsamples past `size`: it is run again below, with grad
            x, start = out, start + 1
    act = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = act
        for layer in layers[start:]:
            out = layer(out)
        return act, forward_head(out)


def _targets(scores: torch.Tensor, target) -> torch.Tensor:
    """(N,) class indices: `target` (one per face, or one for all) or the top-scoring class."""
    if target is None:
        return scores.argmax(-1)
    idx = torch.as_tensor(np.asarray(target), dtype=torch.long, device=scores.device)
    return idx.expand(len(scores)) if idx.ndim == 0 else idx


def _plus_weights(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ channel weights (N, C, 1, 1): positive gradients weighted per position by
    alpha = g^2 / (2 g^2 + sum(A) g^3), the closed form for an exponential class score."""
    g2 = grad.pow(2)
    alpha = g2 / (2 * g2 + act.sum(dim=(2, 3), keepdim=True) * g2 * grad).clamp_min(1e-12)
    alpha = torch.where(grad != 0, alpha, torch.zeros_like(alpha))
    return (alpha * F.relu(grad)).sum(dim=(2, 3), keepdim=True)


def _upsample(cam: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(N, 1, h, w) -> (N, 1, H, W), bilinear."""
    return F.interpolate(cam.float(), size=tuple(shape), mode="bilinear", align_corners=False)


def _normalise(cam: torch.Tensor) -> np.ndarray:
    """(N, 1, H, W) -> (N, H, W) float32, each map scaled to [0, 1] (an all-zero map stays 0)."""
    flat = cam.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    scaled = (flat - lo) / (hi - lo).clamp_min(1e-8)
    return scaled.view(len(cam), *cam.shape[2:]).cpu().numpy().astype(np.float32)
