"""Run any trained model (a PyTorch bundle or an ONNX file) on waveforms, batched.

``load_predictor(path)`` accepts a run folder, a bundle ``.pt`` or an ``.onnx`` file; every command that predicts
(evaluate, predict, package) goes through it, so PyTorch and ONNX models give the same reports. An ONNX file written
by ``asc export`` names its labels, front end and model in its ``metadata_props`` (:data:`METADATA_KEYS`), so
:class:`OnnxPredictor` rebuilds everything else; ``onnx`` / ``onnxruntime`` are optional heavy imports, loaded when
an ONNX file is opened.
"""

from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from asc.errors import CheckpointError, first_lines
from asc.frontend import build_frontend
from asc.models.registry import load_bundle, load_state_dict_strict

INPUT_NAME = "logmel"  # the input of an exported network: log-mel [B, 1, F, T]
WAVEFORM_NAME = "waveform"  # the input of an exported file with its front end: 32 kHz waveform [B, samples]
METADATA_KEYS = ("asc.labels", "asc.frontend", "asc.model", "asc.precision")


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


def ort_session(model, threads: int | None = None):
    """A CPU ``onnxruntime.InferenceSession`` of a file path or an in-memory ModelProto."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    source = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class _Passthrough(nn.Module):
    """Stands in for the front end of a waveform-input ONNX file (the file holds its own)."""

    def __init__(self, sample_rate: int):
        super().__init__()
        self.sample_rate = sample_rate

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return waveform


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (without loading its weights into a session)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable ONNX file: {first_lines(e)}") from None
    return {p.key: p.value for p in model.metadata_props}


class OnnxPredictor:
    """An exported ONNX file behind the :class:`Predictor` protocol (ONNX Runtime, CPU).

    ``frontend`` is rebuilt from the file's ``asc.frontend`` metadata; ``logits_from_logmel`` runs the session.
    For a waveform-input file (``with_frontend``) the front end is a pass-through and the file does everything.
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: ONNX file not found")
        try:
            self.session = ort_session(self.path, threads)
        except Exception as e:
            raise CheckpointError(f"{self.path}: ONNX Runtime cannot load it: {first_lines(e)}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        missing = [k for k in METADATA_KEYS if k not in meta]
        if missing:
            raise CheckpointError(f"{self.path}: metadata_props {', '.join(missing)} missing; "
                                  "export it with `asc export` (asc.export.export_onnx)")
        try:
            self.labels = list(json.loads(meta["asc.labels"]))
            fe = json.loads(meta["asc.frontend"])
            spec = json.loads(meta["asc.model"])
            self.model_name, self.model_config = spec["name"], spec["config"]
            self.frontend_name, self.frontend_config = fe["name"], fe["config"]
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{self.path}: malformed asc metadata ({first_lines(e)})") from None
        self.precision = meta["asc.precision"]
        self.selection = json.loads(meta["asc.selection"]) if "asc.selection" in meta else None
        self.metadata = dict(meta)
        self.name = f"{self.model_name} ({self.precision} ONNX)"
        self.input_name = self.session.get_inputs()[0].name
        self.input_kind = meta.get("asc.input", INPUT_NAME)
        frontend = build_frontend(self.frontend_name, self.frontend_config).eval()
        self.frontend = _Passthrough(frontend.sample_rate) if self.input_kind == WAVEFORM_NAME else frontend

    def logits_from_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(logmel.detach().cpu().float().numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: x})[0]).float()


def load_predictor(path: str | Path) -> Predictor:
    path = Path(path)
    if path.suffix == ".onnx":
        return OnnxPredictor(path)
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
