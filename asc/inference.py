"""Run any trained model (a PyTorch bundle or an ONNX file) on waveforms, batched.

``load_predictor(path)`` accepts a run folder, a bundle ``.pt`` or an ``.onnx`` file; every command that predicts
(evaluate, predict, package) goes through it, so PyTorch and ONNX models give the same reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm


class Predictor(Protocol):
    labels: list[str]
    frontend: nn.Module
    name: str

    def logits_from_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        """[B, 1, F, T] log-mel -> [B, n_classes] logits."""


class TorchPredictor:
    """A PyTorch model bundle in eval mode."""

    def __init__(self, bundle):
        self.bundle = bundle
        self.model = bundle.model.eval()
        self.frontend = bundle.frontend.eval()
        self.labels = bundle.labels
        self.name = bundle.model_name

    @torch.inference_mode()
    def logits_from_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.model(logmel).float()


def load_predictor(path: str | Path) -> Predictor:
    path = Path(path)
    if path.suffix == ".onnx":
        from asc.export import OnnxPredictor

        return OnnxPredictor(path)
    from asc.models.registry import load_bundle

    return TorchPredictor(load_bundle(path))


@torch.inference_mode()
def predict_batches(predictor: Predictor, batches: Iterable[dict], total: int | None = None,
                    desc: str = "predict", progress: bool = True) -> np.ndarray:
    """Logits [N, n_classes] for batches of dicts with ``audio`` [B, samples] (32 kHz waveforms)."""
    out = []
    frontend = predictor.frontend.eval()
    for batch in tqdm(batches, total=total, desc=desc, unit="batch", disable=not progress, leave=False):
        logmel = frontend(batch["audio"].float())
        out.append(predictor.logits_from_logmel(logmel).cpu().numpy())
    if not out:
        return np.zeros((0, len(predictor.labels)), dtype=np.float32)
    return np.concatenate(out).astype(np.float32)
