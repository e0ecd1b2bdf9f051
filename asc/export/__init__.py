"""ONNX deployment of trained models: fp32, fp16 or static INT8 (ONNX Runtime, QDQ), checked against PyTorch.

``export_onnx(run, out, precision="int8", data_root=ROOT)`` writes ONE self-contained ONNX file whose input is the
front end's log-mel ``[B, 1, F, T]`` (dynamic batch axis) and whose output is the logits ``[B, n_classes]``; its
``metadata_props`` (``asc.labels``, ``asc.frontend``, ``asc.model``, ``asc.precision``) rebuild everything else, so
:class:`asc.inference.OnnxPredictor` runs it anywhere the toolkit predicts (evaluate, predict, package). INT8 is ONNX
Runtime static quantization in QDQ format (uint8 activations, int8 per-channel weights), calibrated on the front
end's output of real training clips. With ``with_frontend=True`` a second file takes the 32 kHz waveform
``[B, samples]`` instead (front end in fp32, then the network in the chosen precision). Every file is checked against
PyTorch before it is written, and written atomically: on any failure no ONNX file is left behind.

Modules: :mod:`~asc.export.graph` (PyTorch -> ONNX graph, metadata, atomic save), :mod:`~asc.export.calibration`
(calibration clips, INT8 quantization), :mod:`~asc.export.checks` (ONNX Runtime vs PyTorch),
:mod:`~asc.export.model` (:func:`export_model`, :func:`export_onnx`).
"""

from asc.export.calibration import (CALIBRATION_METHODS, ArrayCalibrationReader, calibration_logmels, file_waveforms,
                                    quantize_int8, split_waveforms)
from asc.export.checks import ExportCheck, compare
from asc.export.graph import ExportError, torch_to_onnx
from asc.export.model import PRECISIONS, ExportReport, export_model, export_onnx

__all__ = ["CALIBRATION_METHODS", "PRECISIONS", "ArrayCalibrationReader", "ExportCheck", "ExportError",
           "ExportReport", "calibration_logmels", "compare", "export_model", "export_onnx", "file_waveforms",
           "quantize_int8", "split_waveforms", "torch_to_onnx"]
