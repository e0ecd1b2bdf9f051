"""Runtime behind generated DCASE 2025 inference packages (``asc package --format inference-2025``).

Each generated module ``<Label>_<n>.py`` forwards the organisers' four functions here, with its own checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from asc.data.cache import decode_file
from asc.inference import TorchPredictor
from asc.models.registry import load_bundle

DEVICE_IDS_2025 = ("a", "b", "c", *(f"s{i}" for i in range(1, 11)), "unknown")


@dataclass
class PackagedModel:
    """What ``load_model`` returns: the predictor (general + device-specific networks) and its input format."""

    predictor: TorchPredictor
    sample_rate: int = 32000
    clip_seconds: float = 1.0

    @property
    def n_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)


def load_model(model_file_path: str | Path) -> PackagedModel:
    bundle = load_bundle(model_file_path)
    return PackagedModel(TorchPredictor(bundle), sample_rate=int(getattr(bundle.frontend, "sample_rate", 32000)))


def load_inputs(file_paths: Sequence[str | Path], device_ids: Sequence[str], model: PackagedModel) -> torch.Tensor:
    """Waveforms [B, samples] at the model's rate (mono, resampled like the training cache)."""
    if len(file_paths) != len(device_ids):
        raise ValueError(f"{len(file_paths)} files but {len(device_ids)} device ids")
    clips = [decode_file(p, model.sample_rate, model.clip_seconds, model.n_samples) for p in file_paths]
    return torch.from_numpy(np.stack(clips)) if clips else torch.zeros(0, model.n_samples)


def get_model_for_device(model: PackagedModel, device_id: str) -> nn.Module:
    """The network (log-mel in, logits out) that handles ``device_id``; unknown devices get the general model."""
    return model.predictor.device_models.get(device_id, model.predictor.model)


@torch.inference_mode()
def predict(file_paths: Sequence[str | Path], device_ids: Sequence[str], model_file_path: str | Path,
            use_cuda: bool = True, batch_size: int = 64) -> tuple[list[torch.Tensor], list[str]]:
    """One logit tensor per file and the class order."""
    model = load_model(model_file_path)
    device = torch.device("cuda" if use_cuda and torch.cuda.is_available() else "cpu")
    predictor = model.predictor
    for net in (predictor.frontend, predictor.model, *predictor.device_models.values()):
        net.to(device).eval()
    outputs: list[torch.Tensor] = []
    for start in range(0, len(file_paths), batch_size):
        ids = list(device_ids[start:start + batch_size])
        waves = load_inputs(list(file_paths[start:start + batch_size]), ids, model).to(device)
        outputs.extend(predictor.logits_from_logmel(predictor.frontend(waves), device_ids=ids).cpu().unbind(0))
    return outputs, list(predictor.labels)
