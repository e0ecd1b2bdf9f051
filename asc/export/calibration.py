"""Calibration of static INT8: real clips (a seeded subset of a split, or listed files) through the front end into
log-mel inputs, and ONNX Runtime's static quantization (QDQ, uint8 activations, int8 per-channel weights) on the
ranges they give. ``onnx`` / ``onnxruntime`` are optional heavy imports, loaded when a model is quantized."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from asc.accel import CPU, Accel
from asc.data.cache import load_cache
from asc.data.dataset import ClipDataset
from asc.data.validate import open_dataset
from asc.errors import first_lines
from asc.export.graph import ExportError, quiet
from asc.inference import INPUT_NAME

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def _frontend_batches(frontend: nn.Module, waveforms: np.ndarray, accel: Accel, batch_size: int = 64) -> np.ndarray:
    """The front end of ``waveforms`` [N, samples] on ``accel``'s device (a copy of it there), batched, as float32
    [N, 1, F, T]."""
    frontend = copy.deepcopy(frontend).to(accel.device) if accel.cuda else frontend
    out = []
    with torch.inference_mode():
        for i in range(0, len(waveforms), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(waveforms[i:i + batch_size]))
            out.append(frontend(accel.to(batch)).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def split_waveforms(data_root: str | Path, split: str, n: int | None, sample_rate: int, seed: int = 0,
                    cache_dir: str | Path | None = None) -> np.ndarray:
    """``n`` clips of a split (a seeded random subset, all if ``n`` is None or larger) as waveforms [N, samples],
    sliced from the audio cache in one read."""
    dataset = ClipDataset.from_split(open_dataset(data_root), split, cache_dir=cache_dir, sample_rate=sample_rate,
                                     progress=False)
    if len(dataset) == 0:
        raise ExportError(f"{data_root}: split {split!r} has no clips to calibrate or check on")
    rows = np.arange(len(dataset))
    if n is not None and n < len(rows):
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=n, replace=False))
    return dataset.batch(rows)["audio"].numpy()


def file_waveforms(data_root: str | Path, filenames: Sequence[str], sample_rate: int,
                   cache_dir: str | Path | None = None) -> np.ndarray:
    """The clips ``filenames`` (relative to ``data_root``, e.g. ``audio/x.wav``) as waveforms [N, samples]."""
    filenames = [str(f) for f in filenames]
    if not filenames:
        raise ExportError("calibration_files is empty: list at least one clip (paths relative to the dataset root)")
    missing = [f for f in filenames if not (Path(data_root) / f).is_file()]
    if missing:
        raise ExportError(f"{data_root}: calibration file(s) not found: {', '.join(missing[:5])}"
                          f"{' …' if len(missing) > 5 else ''}")
    cache = load_cache(data_root, filenames, sample_rate, cache_dir)
    return cache.batch(cache.rows(filenames)).astype(np.float32)


def calibration_logmels(calibration, frontend: nn.Module, input_shape: Sequence[int], n: int | None,
                        what: str = "calibration set", accel: Accel = CPU) -> np.ndarray:
    """Log-mel inputs [N, 1, F, T] from an array of log-mels [N, 1, F, T] or of waveforms [N, samples] (whose front
    end runs on ``accel``'s device).

    Raises :class:`ExportError` when the set is empty or its shape does not fit the model input ``input_shape``.
    """
    if isinstance(calibration, torch.Tensor):
        calibration = calibration.detach().cpu().numpy()
    array = np.asarray(calibration, dtype=np.float32)
    expected = tuple(int(d) for d in input_shape[1:])
    if array.ndim == 0 or len(array) == 0:
        raise ExportError(f"{what} is empty: give at least one clip (waveforms [N, samples] or log-mels "
                          f"[N, {', '.join(map(str, expected))}])")
    if n is not None:
        array = array[:n]
    if array.ndim == 2:
        array = _frontend_batches(frontend.eval(), array, accel)
    if array.ndim != 4 or tuple(array.shape[1:]) != expected:
        raise ExportError(f"{what} has shape {list(np.asarray(calibration).shape)} (log-mel {list(array.shape)}); "
                          f"the model expects log-mels [N, {', '.join(map(str, expected))}] "
                          f"or 1-s waveforms [N, {frontend.sample_rate}] at {frontend.sample_rate} Hz")
    if not np.isfinite(array).all():
        raise ExportError(f"{what} contains NaN or infinite values")
    return array


class ArrayCalibrationReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over an array of model inputs, in batches."""

    def __init__(self, inputs: np.ndarray, input_name: str = INPUT_NAME, batch_size: int = 32):
        self.inputs, self.input_name, self.batch_size = inputs, input_name, batch_size
        self._start = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._start >= len(self.inputs):
            return None
        batch = self.inputs[self._start:self._start + self.batch_size]
        self._start += self.batch_size
        return {self.input_name: batch}

    def rewind(self) -> None:
        self._start = 0

    def __len__(self) -> int:
        return -(-len(self.inputs) // self.batch_size)


# Calibrator settings. quantize_static cannot pass histogram sizes on, and its entropy default (128 bins for 128
# quantized bins) leaves one candidate threshold, the min/max range; entropy here uses TensorRT's 2048 / 128.
# Ranges stay asymmetric (uint8 activations; ORT's percentile default would make them symmetric).
CALIBRATOR_OPTIONS = {
    "minmax": {"symmetric": False},
    "entropy": {"symmetric": False, "num_bins": 2048, "num_quantized_bins": 128},
    "percentile": {"symmetric": False, "num_bins": 2048, "percentile": 99.999},
}


def quantize_int8(model, calibration: np.ndarray, method: str = "minmax", input_name: str = INPUT_NAME):
    """Static INT8 (QDQ, uint8 activations, int8 per-channel weights) of an fp32 ``onnx.ModelProto``.

    Shape inference and graph clean-up first (``quant_pre_process``), then ranges from ``calibration`` (model inputs
    [N, ...]) with ``method`` (minmax, entropy or percentile), then ``quantize_static`` on those ranges.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ExportError(f"calibration method {method!r}: choose one of {', '.join(CALIBRATION_METHODS)}")
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory(prefix="asc-quant-") as tmp:
        fp32, prepared, quantized, ranges = (Path(tmp) / n for n in
                                             ("fp32.onnx", "prepared.onnx", "int8.onnx", "ranges.json"))
        onnx.save_model(model, str(fp32))
        try:
            with quiet():
                try:
                    quant_pre_process(str(fp32), str(prepared))
                except Exception:  # ORT's symbolic shape inference lacks some ops (ReduceL2 of opset 18)
                    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
                calibrator = create_calibrator(prepared, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                               calibrate_method=methods[method],
                                               extra_options=CALIBRATOR_OPTIONS[method])
                calibrator.collect_data(ArrayCalibrationReader(calibration, input_name))
                save_tensors_data(calibrator.compute_data(), ranges)
                quantize_static(str(prepared), str(quantized), None, quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                                calibrate_method=methods[method], calibration_cache_path=ranges)
        except Exception as e:  # ORT's quantizer raises plain exceptions
            raise ExportError(f"INT8 quantization failed: {first_lines(e, 3)}") from None
        return onnx.load(str(quantized))
