"""The loss a training step minimises: cross-entropy (label smoothing, class weights, soft
labels), plus distillation from a teacher when `distill` is on.

Teachers: the EMA weights of a plain network (the "mean teacher"); in a grouped network the
branches' average, or with peers the peers' average, which only member 0 (the model) learns from.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fer_core.training.config import TrainConfig


class Objective:
    def __init__(self, config: TrainConfig, class_weight: torch.Tensor | None) -> None:
        self.config = config
        self.class_weight = class_weight

    def hard(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against class indices (B,) or class probabilities (B, classes)."""
        return F.cross_entropy(
            logits.float(),
            target,
            weight=self.class_weight,
            label_smoothing=self.config.label_smoothing,
        )

    def with_teacher(
        self, hard: torch.Tensor, logits: torch.Tensor, teacher_logp: torch.Tensor
    ) -> torch.Tensor:
        """(1 - distill) * the hard loss + distill * T^2 * KL(teacher || student), both softened
        by the temperature T (`teacher_logp` already is); T^2 keeps the soft term's gradient the
        size of the hard loss's."""
        t = self.config.distill_temperature
        student = F.log_softmax(logits.float() / t, dim=-1)
        soft = F.kl_div(student, teacher_logp, log_target=True, reduction="batchmean") * t * t
        return (1 - self.config.distill) * hard + self.config.distill * soft

    def plain(
        self, logits: torch.Tensor, target: torch.Tensor, teacher_logits: torch.Tensor | None
    ) -> torch.Tensor:
        """A plain network's loss; `teacher_logits` (the EMA's, no gradient) when distilling."""
        loss = self.hard(logits, target)
        if teacher_logits is None:
            return loss
        teacher = F.log_softmax(teacher_logits.float() / self.config.distill_temperature, -1)
        return self.with_teacher(loss, logits, teacher)

    def branches(
        self, logits: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A grouped network's (B, branches, classes) logits -> (the logits that count for
        accuracy, the loss to minimise, the loss to report).

        Every branch learns the labels, and with `distill` also its teacher's softened
        prediction. Branch losses are summed, so each branch gets the gradient it would get
        alone. With peers only branch 0 counts; otherwise the branches' averaged probabilities.
        """
        cfg = self.config
        n = logits.shape[1]
        losses = [self.hard(logits[:, i], target) for i in range(n)]
        if cfg.distill:
            with torch.no_grad():
                teachers = logits[:, 1:] if cfg.peers else logits
                probs = F.softmax(teachers / cfg.distill_temperature, dim=-1).mean(1)
                teacher = probs.clamp_min(1e-12).log()
            for i in range(1 if cfg.peers else n):
                losses[i] = self.with_teacher(losses[i], logits[:, i], teacher)
        total = sum(losses[1:], losses[0])
        if cfg.peers:
            return logits[:, 0], total, losses[0]
        mean_logp = torch.logsumexp(logits.log_softmax(-1), dim=1) - math.log(n)
        return mean_logp, total, total / n
