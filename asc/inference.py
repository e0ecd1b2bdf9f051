"""Run any trained model (a PyTorch bundle or an ONNX file) on waveforms, batched.

``load_predictor(path)`` accepts a run folder, a bundle ``.pt`` or an ``.onnx`` file; every command that predicts
(evaluate, predict, package) goes through it, so PyTorch and ONNX models give the same reports.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm


class Predictor(Protocol):
    labels: list[str]
    frontend: nn.Module
    name: str

    def logits_from_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        """[B, 1, F, T] log-mel -> [B, n_classes] logits.

        A predictor that routes clips to device-specific models (DCASE25) takes a second argument
        ``device_ids: list[str] | None`` (device name per clip, "" = unknown); :func:`predict_batches` passes it.
        """


def accepts_device_ids(predictor: Predictor) -> bool:
    """Whether ``predictor.logits_from_logmel`` takes per-clip ``device_ids``."""
    return "device_ids" in inspect.signature(predictor.logits_from_logmel).parameters


class TorchPredictor:
    """A PyTorch model bundle in eval mode.

    A multi-device bundle (``asc finetune-devices``: extra key ``device_state_dicts`` {device: state dict}) holds one
    fine-tuned copy of the network per training device; with ``device_ids`` each clip goes to its device's model,
    clips of other or unknown devices to the general one.
    """

    def __init__(self, bundle):
        import copy

        from asc.models.registry import load_state_dict_strict

        self.bundle = bundle
        self.model = bundle.model.eval()
        self.frontend = bundle.frontend.eval()
        self.labels = bundle.labels
        self.name = bundle.model_name
        self.selection = bundle.extra.get("selection")  # how the training run chose this checkpoint
        self.device_models: dict[str, nn.Module] = {}
        for device, state_dict in bundle.extra.get("device_state_dicts", {}).items():
            model = copy.deepcopy(bundle.model)
            load_state_dict_strict(model, state_dict, f"device model {device!r} of {self.name}")
            self.device_models[device] = model.eval()

    @torch.inference_mode()
    def logits_from_logmel(self, logmel: torch.Tensor, device_ids: Sequence[str] | None = None) -> torch.Tensor:
        if not self.device_models or not device_ids:
            return self.model(logmel).float()
        rows_of: dict[str, list[int]] = {}
        for i, device in enumerate(device_ids):
            rows_of.setdefault(device, []).append(i)
        out = None
        for device, rows in rows_of.items():
            part = self.device_models.get(device, self.model)(logmel[rows]).float()
            if out is None:
                out = part.new_empty((len(device_ids), part.shape[1]))
            out[rows] = part
        return out


def load_predictor(path: str | Path) -> Predictor:
    path = Path(path)
    if path.suffix == ".onnx":
        from asc.export import OnnxPredictor

        return OnnxPredictor(path)
    from asc.models.registry import load_bundle

    return TorchPredictor(load_bundle(path))


@torch.inference_mode()
def predict_batches(predictor: Predictor, batches: Iterable[dict], total: int | None = None,
                    desc: str = "predict", progress: bool = True,
                    device_names: Sequence[str] | None = None) -> np.ndarray:
    """Logits [N, n_classes] for batches of dicts with ``audio`` [B, samples] (32 kHz waveforms).

    With ``device_names`` (the dataset's device list) and a predictor that :func:`accepts_device_ids`, each batch's
    ``device`` indices (-1 = unknown) are passed on as device names.
    """
    out = []
    frontend = predictor.frontend.eval()
    route = device_names is not None and accepts_device_ids(predictor)
    for batch in tqdm(batches, total=total, desc=desc, unit="batch", disable=not progress, leave=False):
        logmel = frontend(batch["audio"].float())
        if route:
            ids = [device_names[i] if i >= 0 else "" for i in torch.as_tensor(batch["device"]).tolist()]
            logits = predictor.logits_from_logmel(logmel, device_ids=ids)
        else:
            logits = predictor.logits_from_logmel(logmel)
        out.append(logits.cpu().numpy())
    if not out:
        return np.zeros((0, len(predictor.labels)), dtype=np.float32)
    return np.concatenate(out).astype(np.float32)
