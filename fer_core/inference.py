"""Batched inference on uint8 faces: the one place that turns pixels into class probabilities.

Training validation, evaluation and prediction all go through `predict_proba`, so preprocessing
(scaling, normalisation, test-time views) cannot drift between them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from fer_core.calibration import apply_temperature
from fer_core.data.augment import tta_views


def to_input(images_uint8: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """(B, H, W) uint8 -> (B, 1, H, W) normalised float32."""
    return ((images_uint8.float() / 255.0 - mean) / std).unsqueeze(1)


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def available_devices() -> list[str]:
    """The device names a run can ask for here: auto and cpu, then cuda / mps when present."""
    found = ["auto", "cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        found.append("mps")
    return found


def autocast(device: torch.device, enabled: bool = True, cache: bool = True):
    """bf16 autocast on CUDA; a no-op elsewhere (CPU bf16 is slower than fp32 on most laptops).
    cache=False: no cache of cast weights (inside a CUDA graph's capture)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache)
    return nullcontext()


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor | np.ndarray,
    mean: float,
    std: float,
    tta: str = "none",
    batch_size: int = 512,
    amp: bool = True,
    temperature: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Mean logits over test-time views for (N, H, W) uint8 faces; returns (N, K) float32 on CPU.

    Views are averaged in probability space and returned as log-probabilities, so softmax of the
    result is the averaged probability; `temperature` then calibrates them (`calibration.py`).
    `progress(done, total)` is called after each batch.
    """
    device = next(itertools.chain(model.parameters(), model.buffers())).device
    if device.type == "cpu":
        batch_size = min(
            batch_size, 16
        )  # oneDNN is fastest per face at 8-16 (activations stay in cache)
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = to_input(images[start : start + batch_size].to(device), mean, std)
        views = tta_views(x, tta)  # (V, B, 1, H, W)
        v, b = views.shape[:2]
        flat = views.reshape(v * b, *views.shape[2:]).contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            logits = model(flat).float()
        probs = logits.softmax(-1).reshape(v, b, -1).mean(0)
        out.append(probs.clamp_min(1e-12).log().cpu())
        if progress is not None:
            progress(min(start + batch_size, len(images)), len(images))
    model.train(was_training)
    if not out:
        return torch.empty(0, 0)
    return apply_temperature(torch.cat(out), temperature)


def predict_proba(
    model: nn.Module,
    images,
    mean: float,
    std: float,
    tta: str = "none",
    batch_size: int = 512,
    amp: bool = True,
    temperature: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """(N, H, W) uint8 faces -> (N, K) probabilities as a float32 numpy array."""
    logp = predict_logits(model, images, mean, std, tta, batch_size, amp, temperature, progress)
    return logp.exp().numpy().astype(np.float32)
