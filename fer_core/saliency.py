"""Grad-CAM saliency: which parts of a face drove a prediction (Selvaraju et al. 2017).

Uses the model's `forward_features` / `forward_head` split: the gradient of the chosen class score
with respect to the last feature map weights that map's channels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fer_core.inference import to_input


def grad_cam(
    model, faces: np.ndarray, mean: float, std: float, target: np.ndarray | None = None
) -> np.ndarray:
    """(N, 48, 48) uint8 faces -> (N, 48, 48) float32 maps in [0, 1].

    target: class index per face; default the predicted class.
    """
    if len(faces) == 0:
        return np.zeros((0, *faces.shape[1:]), np.float32)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = to_input(torch.from_numpy(np.ascontiguousarray(faces)).to(device), mean, std)
    with torch.enable_grad():
        feats = model.forward_features(x)  # (N, C, h, w)
        feats.retain_grad()
        logits = model.forward_head(feats)
        idx = logits.argmax(-1) if target is None else torch.as_tensor(target, device=device)
        logits.gather(1, idx.view(-1, 1)).sum().backward()
    weights = feats.grad.mean(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
    cam = F.relu((weights * feats).sum(1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=faces.shape[1:], mode="bilinear", align_corners=False)[:, 0]
    flat = cam.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    cam = ((flat - lo) / (hi - lo).clamp_min(1e-8)).view_as(cam)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return cam.cpu().numpy().astype(np.float32)


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
