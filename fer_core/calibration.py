"""Confidences that mean what they say: temperature scaling and calibration error.

A network trained with cross-entropy is usually over-confident: among faces it calls "happy 90%",
fewer than 90% are happy. Temperature scaling (Guo et al. 2017) divides the log-probabilities by
one number T fitted on held-out data (PublicTest), which leaves every prediction's class unchanged
and makes the probabilities honest. The expected calibration error (ECE) measures the gap: the
mean |accuracy - confidence| over bins of the top probability, weighted by the bins' sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
BINS = 15


def apply_temperature(logp: torch.Tensor, temperature: float) -> torch.Tensor:
    """(N, K) log-probabilities -> log-probabilities of softmax(logp / T)."""
    if temperature == 1.0:
        return logp
    return torch.log_softmax(logp / temperature, dim=-1)


def fit_temperature(logp: np.ndarray | torch.Tensor, labels: np.ndarray) -> float:
    """The T that minimises the negative log-likelihood of `labels` under softmax(logp / T)."""
    from scipy.optimize import minimize_scalar  # only when fitting: keeps imports light

    logp = torch.as_tensor(np.asarray(logp), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)

    def nll(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(logp / np.exp(log_t), y))

    best = minimize_scalar(
        nll,
        bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(best.x))


@dataclass(frozen=True)
class Reliability:
    """Top-label reliability per confidence bin (bins without predictions are left out)."""

    confidence: list[float]  # mean top probability in the bin
    accuracy: list[float]  # share of those predictions that were right
    count: list[int]
    ece: float


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> Reliability:
    """Reliability of (N, K) probabilities against (N,) labels over `bins` equal-width bins."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if len(probs) == 0:
        return Reliability([], [], [], 0.0)
    top = probs.max(1)
    correct = probs.argmax(1) == labels
    which = np.minimum((top * bins).astype(int), bins - 1)
    conf, acc, count = [], [], []
    for b in range(bins):
        inside = which == b
        if inside.any():
            conf.append(float(top[inside].mean()))
            acc.append(float(correct[inside].mean()))
            count.append(int(inside.sum()))
    gaps = np.abs(np.asarray(acc) - np.asarray(conf)) * np.asarray(count)
    return Reliability(conf, acc, count, float(gaps.sum() / len(probs)))
