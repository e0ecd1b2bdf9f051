"""The one prediction path: any trained model (a PyTorch bundle or an ONNX file) on batches of waveforms, on a
device (``asc.accel``).

``load_predictor(path, accel)`` accepts a run folder, a bundle ``.pt`` or an ``.onnx`` file; every command that
runs a model (evaluate, predict, package, teachers ensemble, export checks, the trainer's validation) goes through
:func:`predict_dataset` (cache -> batches -> device -> front end -> network) or :func:`predict_batches`, so PyTorch
and ONNX models, CPU and GPU give the same reports (within float tolerance). An ONNX file written by ``asc export``
names its labels, front end and model in its ``metadata_props`` (:data:`METADATA_KEYS`), so :class:`OnnxPredictor`
rebuilds everything else; ``onnx`` / ``onnxruntime`` are optional heavy imports, loaded when an ONNX file is opened.

On the CPU, the front end of the next batch is computed in a second thread while the network runs the current one
(both release the GIL), each stage with half of torch's threads (:func:`asc.accel.stage_threads`), so that the two
cores of a small machine each work on one stage instead of both fighting over every small operation; ONNX Runtime's
idle threads sleep rather than spin (:func:`ort_session`), and the front end works a few clips at a time
(:func:`asc.frontend.in_cpu_chunks`).
"""

from __future__ import annotations

import copy
import inspect
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator, Protocol, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Sampler
from tqdm import tqdm

from asc.accel import CPU, Accel, cpu_threads, resolve, stage_threads
from asc.data.dataset import ClipDataset, clip_loader
from asc.errors import CheckpointError, ConfigError, first_lines
from asc.frontend import build_frontend
from asc.models.registry import Bundle, load_bundle, load_state_dict_strict

INPUT_NAME = "logmel"  # the input of an exported network: log-mel [B, 1, F, T]
WAVEFORM_NAME = "waveform"  # the input of an exported file with its front end: 32 kHz waveform [B, samples]
METADATA_KEYS = ("asc.labels", "asc.frontend", "asc.model", "asc.precision")


class Predictor(Protocol):
    labels: list[str]
    frontend: nn.Module
    name: str
    accel: Accel

    def logits_from_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        """[B, 1, F, T] log-mel (on ``accel.device``) -> [B, n_classes] float32 logits.

        A predictor that routes clips to device-specific models (DCASE25) takes a second argument
        ``device_ids: list[str] | None`` (device name per clip, "" = unknown); :func:`predict_batches` passes it.
        """


def accepts_device_ids(predictor: Predictor) -> bool:
    """Whether ``predictor.logits_from_logmel`` takes per-clip ``device_ids``."""
    return "device_ids" in inspect.signature(predictor.logits_from_logmel).parameters


class TorchPredictor:
    """A PyTorch model bundle in eval mode on ``accel.device``, run under ``accel``'s autocast.

    A multi-device bundle (``asc finetune-devices``: extra key ``device_state_dicts`` {device: state dict}) holds one
    fine-tuned copy of the network per training device; with ``device_ids`` each clip goes to its device's model,
    clips of other or unknown devices to the general one. ``channels_last`` (default: on a GPU) feeds the network
    channels-last inputs.
    """

    def __init__(self, bundle: Bundle, accel: Accel = CPU, channels_last: bool | None = None):
        self.bundle, self.accel = bundle, accel
        self.model = bundle.model.to(accel.device).eval()
        self.frontend = bundle.frontend.to(accel.device).eval()
        self.labels = bundle.labels
        self.name = bundle.model_name
        self.selection = bundle.extra.get("selection")  # how the training run chose this checkpoint
        self.channels_last = accel.cuda if channels_last is None else channels_last
        self.device_models: dict[str, nn.Module] = {}
        for device, state_dict in bundle.extra.get("device_state_dicts", {}).items():
            model = copy.deepcopy(bundle.model)
            load_state_dict_strict(model, state_dict, f"device model {device!r} of {self.name}")
            self.device_models[device] = model.to(accel.device).eval()

    def _run(self, model: nn.Module, logmel: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            logmel = logmel.contiguous(memory_format=torch.channels_last)
        with self.accel.autocast():
            return model(logmel).float()

    @torch.inference_mode()
    def logits_from_logmel(self, logmel: torch.Tensor, device_ids: Sequence[str] | None = None) -> torch.Tensor:
        logmel = logmel.to(self.accel.device)
        if not self.device_models or not device_ids:
            return self._run(self.model, logmel)
        rows_of: dict[str, list[int]] = {}
        for i, device in enumerate(device_ids):
            rows_of.setdefault(device, []).append(i)
        out = None
        for device, rows in rows_of.items():
            part = self._run(self.device_models.get(device, self.model), logmel[rows])
            if out is None:
                out = part.new_empty((len(device_ids), part.shape[1]))
            out[rows] = part
        return out


def ort_session(model, threads: int | None = None, accel: Accel = CPU):
    """An ``onnxruntime.InferenceSession`` of a file path or an in-memory ModelProto: CUDA for a GPU ``accel`` (it
    needs ``onnxruntime-gpu``), else the CPU with ``threads`` intra-op threads (default: ONNX Runtime's), executing
    sequentially with every graph optimisation. Idle intra-op threads sleep instead of spinning: spinning threads
    take the cores the front end runs on beside the network (half the throughput of ``asc predict`` on 2 cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers: list = ["CPUExecutionProvider"]
    if accel.cuda:
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError(f"device {accel.device}: this ONNX Runtime ({ort.__version__}) has no CUDA execution "
                              f"provider; install onnxruntime-gpu or run ONNX models with --device cpu")
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": accel.device.index or 0}))
    source = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=providers)


def onnx_on_gpu() -> bool:
    """Whether ONNX Runtime here can run on a GPU (``onnxruntime-gpu`` and a CUDA device)."""
    import onnxruntime as ort

    return torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()


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
    """An exported ONNX file behind the :class:`Predictor` protocol (ONNX Runtime).

    ``frontend`` is rebuilt from the file's ``asc.frontend`` metadata and runs in PyTorch on ``accel.device``;
    ``logits_from_logmel`` runs the session (on the GPU with ``onnxruntime-gpu``, else the CPU). For a
    waveform-input file (``with_frontend``) the front end is a pass-through and the file does everything. The file's
    precision is its own: autocast does not apply.
    """

    def __init__(self, path: str | Path, threads: int | None = None, accel: Accel = CPU):
        self.path, self.accel = Path(path), accel
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: ONNX file not found")
        try:
            self.session = ort_session(self.path, threads, accel)
        except ConfigError:
            raise
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
        frontend = build_frontend(self.frontend_name, self.frontend_config).to(accel.device).eval()
        self.frontend = _Passthrough(frontend.sample_rate) if self.input_kind == WAVEFORM_NAME else frontend

    def logits_from_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(logmel.detach().float().cpu().numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: x})[0]).float()


def load_predictor(path: str | Path, device: str | Accel = "auto", autocast: str = "auto",
                   threads: int | None = None) -> Predictor:
    """The model at ``path`` (run folder, bundle ``.pt`` or ``.onnx``) on ``device`` (an :class:`Accel`, or a
    ``--device`` string with an ``--autocast`` mode). ``auto`` puts an ONNX file on the GPU only where ONNX Runtime
    can run there."""
    path = Path(path)
    if path.suffix == ".onnx":
        if device == "auto":
            device = "auto" if onnx_on_gpu() else "cpu"
        return OnnxPredictor(path, threads, device if isinstance(device, Accel) else resolve(device, "off"))
    return TorchPredictor(load_bundle(path), device if isinstance(device, Accel) else resolve(device, autocast))


def _logmels(predictor: Predictor, batches: Iterable[dict]) -> Iterator[tuple[dict, torch.Tensor]]:
    frontend, accel = predictor.frontend.eval(), predictor.accel
    for batch in batches:
        with torch.inference_mode():
            logmel = frontend(accel.to(batch["audio"]).float())
        yield batch, logmel


def _prefetched(items: Iterator, enabled: bool) -> Iterator:
    """``items``, the next one computed in a worker thread while the caller works on the current one."""
    if not enabled:
        yield from items
        return
    done = object()
    with ThreadPoolExecutor(1, thread_name_prefix="asc-frontend") as pool:
        pending = pool.submit(next, items, done)
        while (item := pending.result()) is not done:
            pending = pool.submit(next, items, done)
            yield item


def iter_logits(predictor: Predictor, batches: Iterable[dict],
                device_names: Sequence[str] | None = None) -> Iterator[tuple[dict, np.ndarray]]:
    """(batch, its logits [B, n_classes] float32) for batches of dicts with ``audio`` [B, samples] (32 kHz
    waveforms), on the predictor's device.

    With ``device_names`` (the dataset's device list) and a predictor that :func:`accepts_device_ids`, each batch's
    ``device`` indices (-1 = unknown) are passed on as device names.
    """
    route = device_names is not None and accepts_device_ids(predictor)
    overlap = not predictor.accel.cuda and torch.get_num_threads() > 1
    with cpu_threads(stage_threads() if overlap else torch.get_num_threads()):
        for batch, logmel in _prefetched(_logmels(predictor, batches), overlap):
            with torch.inference_mode():
                if route:
                    ids = [device_names[i] if i >= 0 else "" for i in torch.as_tensor(batch["device"]).tolist()]
                    logits = predictor.logits_from_logmel(logmel, device_ids=ids)
                else:
                    logits = predictor.logits_from_logmel(logmel)
            yield batch, logits.float().cpu().numpy()


def predict_batches(predictor: Predictor, batches: Iterable[dict], total: int | None = None,
                    desc: str = "predict", progress: bool = True,
                    device_names: Sequence[str] | None = None) -> np.ndarray:
    """Logits [N, n_classes] of all ``batches`` (see :func:`iter_logits`), with a progress bar."""
    out = [logits for _, logits in tqdm(iter_logits(predictor, batches, device_names), total=total, desc=desc,
                                        unit="batch", disable=not progress or None, leave=False)]
    if not out:
        return np.zeros((0, len(predictor.labels)), dtype=np.float32)
    return np.concatenate(out).astype(np.float32)


def predict_dataset(predictor: Predictor, dataset: ClipDataset, batch_size: int | None = None,
                    order: Sampler[int] | Sequence[int] | None = None, desc: str = "predict",
                    progress: bool = True, num_workers: int = 0) -> np.ndarray:
    """Logits of ``dataset``'s clips (in ``order``: a sampler or index list; default: all, in table order), sliced
    from the cache in batches of ``batch_size`` (default: the device's, :meth:`asc.accel.Accel.batch_size`), each
    clip routed by its recording device where the predictor routes."""
    accel = predictor.accel
    loader = clip_loader(dataset, batch_size or accel.batch_size("predict"), order, num_workers, accel.pin_memory)
    return predict_batches(predictor, loader, total=len(loader), desc=desc, progress=progress,
                           device_names=dataset.devices)

