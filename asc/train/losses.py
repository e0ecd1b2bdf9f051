"""Training losses: cross-entropy and knowledge distillation from stored teacher logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(softmax(t/T) ‖ softmax(s/T))`` averaged over batch × classes, as the CPJKU reference
    (``KLDivLoss(reduction="none", log_target=True)(log_softmax(s/T), log_softmax(t/T)).mean()``)."""
    log_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return F.kl_div(log_s, log_t, reduction="none", log_target=True).mean()


def kd_loss(student_logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor,
            lam: float = 0.02, temperature: float = 2.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``λ·CE(y) + (1−λ)·T²·KL``; returns the loss and its two weighted parts (detached, for logging).
    ``labels``: class indices [B] or class probabilities [B, C] (mixup)."""
    ce = F.cross_entropy(student_logits.float(), labels)
    kl = kd_divergence(student_logits, teacher_logits, temperature) * temperature ** 2
    loss = lam * ce + (1.0 - lam) * kl
    return loss, {"label_loss": (lam * ce).detach(), "kd_loss": ((1.0 - lam) * kl).detach()}


def ce_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy against class indices [B] or class probabilities [B, C]."""
    loss = F.cross_entropy(student_logits.float(), labels)
    return loss, {"label_loss": loss.detach()}
