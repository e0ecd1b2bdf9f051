"""ONNX deployment of trained models: fp32, fp16 or static INT8 (ONNX Runtime, QDQ), checked against PyTorch.

``export_onnx(run, out, precision="int8", data_root=ROOT)`` writes ONE self-contained ONNX file whose input is the
front end's log-mel ``[B, 1, F, T]`` (dynamic batch axis) and whose output is the logits ``[B, n_classes]``; its
``metadata_props`` (``asc.labels``, ``asc.frontend``, ``asc.model``, ``asc.precision``) rebuild everything else, so
:class:`OnnxPredictor` runs it anywhere the toolkit predicts (evaluate, predict, package). INT8 is ONNX Runtime static
quantization in QDQ format (uint8 activations, int8 per-channel weights), calibrated on the front end's output of
real training clips. With ``with_frontend=True`` a second file takes the 32 kHz waveform ``[B, samples]`` instead
(front end in fp32, then the network in the chosen precision). Every file is checked against PyTorch before it is
written, and written atomically: on any failure no ONNX file is left behind.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from asc.errors import AscError, CheckpointError
from asc.fileio import atomic_path, write_json
from asc.runs import export_report_path

PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
INPUT_NAME = "logmel"
WAVEFORM_NAME = "waveform"
OUTPUT_NAME = "logits"
# ORT vs PyTorch (fp32 reference): |onnx - torch| <= ATOL + RTOL * |torch| elementwise; INT8 is judged by agreement.
TOLERANCES = {"fp32": (1e-4, 1e-4), "fp16": (5e-2, 2e-2)}
MIN_INT8_AGREEMENT = 0.9
N_RANDOM_CHECK = 8
N_REAL_CHECK = 256
METADATA_KEYS = ("asc.labels", "asc.frontend", "asc.model", "asc.precision")


class ExportError(AscError):
    """A model cannot be exported, calibrated or checked."""


@dataclass
class ExportCheck:
    """ONNX Runtime against the fp32 PyTorch model on one set of inputs."""

    inputs: str  # "random" or "real"
    n: int
    max_abs_diff: float
    top1_agreement: float
    tolerance: str  # what was required, in words
    passed: bool | None  # None: reported only (INT8 on random inputs)


@dataclass
class ExportReport:
    """What :func:`export_model` wrote and how it compares with PyTorch."""

    path: Path
    precision: str
    model_name: str
    source: str
    size_bytes: int
    input_shape: list[int]
    checks: list[ExportCheck]
    calibration: dict[str, Any] | None = None
    frontend_path: Path | None = None
    frontend_size_bytes: int | None = None
    frontend_checks: list[ExportCheck] = field(default_factory=list)
    frontend_note: str | None = None  # why no front-end file was written
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in [*self.checks, *self.frontend_checks])

    def to_dict(self) -> dict[str, Any]:
        out = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        out["passed"] = self.passed
        return out


# ----------------------------------------------------------------------------------------------------- sources


def _load_source(model_path) -> tuple[Any, str]:
    """A Bundle (given, or loaded from a run folder / bundle file) and a description of where it came from."""
    from asc.models.registry import Bundle, load_bundle

    if isinstance(model_path, Bundle):
        return model_path, f"<{model_path.model_name} bundle>"
    bundle = load_bundle(model_path)
    return bundle, str(model_path)


# ----------------------------------------------------------------------------------------------------- export


class _HalfPrecision(nn.Module):
    """The network in fp16 between float32 input and output casts (so callers always exchange float32)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = copy.deepcopy(model).half().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half()).float()


class _FrontendAndModel(nn.Module):
    def __init__(self, frontend: nn.Module, model: nn.Module):
        super().__init__()
        self.frontend, self.model = frontend, model

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.model(self.frontend(waveform))


def _first_lines(e: BaseException, n: int = 2) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return f"{type(e).__name__}: {' '.join(lines[:n])}" if lines else type(e).__name__


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's and the quantizer's progress prints and warnings."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def torch_to_onnx(module: nn.Module, example: torch.Tensor, input_name: str, what: str):
    """Export ``module`` (eval mode, dynamic batch axis) to an in-memory ``onnx.ModelProto``.

    Uses the ``torch.export``-based exporter (it folds BatchNorm and exports ``torch.stft``; the TorchScript one
    exports neither STFT nor data-dependent control flow faithfully). Raises :class:`ExportError` naming ``what``.
    """
    import onnx

    module = module.eval()
    with tempfile.TemporaryDirectory(prefix="asc-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            with _quiet(), torch.no_grad():
                torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=[OUTPUT_NAME],
                                  dynamo=True, external_data=False, optimize=True, verbose=False,
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
            model = onnx.load(str(path), load_external_data=True)
            onnx.checker.check_model(model)
        except Exception as e:  # the exporter raises many unrelated types
            cause = f" (cause: {_first_lines(e.__cause__)})" if e.__cause__ is not None else ""
            raise ExportError(f"{what} cannot be exported to ONNX with the torch.export-based exporter: "
                              f"{_first_lines(e)}{cause}. Remove data-dependent Python control flow and "
                              "unsupported ops from its forward") from None
    _strip_debug_info(model)
    return model


def _strip_debug_info(model) -> None:
    """Drop the exporter's per-node stack traces and doc strings (a third of a small student's file)."""
    for node in model.graph.node:
        node.ClearField("metadata_props")
        node.doc_string = ""
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        value.ClearField("metadata_props")


def _rename_graph_io(model, input_name: str, output_name: str = OUTPUT_NAME) -> None:
    """Give the graph its canonical input/output names (the exporters may keep the forward's argument names)."""
    graph = model.graph
    renames = {graph.input[0].name: input_name, graph.output[0].name: output_name}
    for old, new in renames.items():
        if old == new:
            continue
        for node in graph.node:
            node.input[:] = [new if n == old else n for n in node.input]
            node.output[:] = [new if n == old else n for n in node.output]
    graph.input[0].name = input_name
    graph.output[0].name = output_name


# ----------------------------------------------------------------------------------------------------- calibration


def _frontend_batches(frontend: nn.Module, waveforms: np.ndarray, batch_size: int = 64) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for i in range(0, len(waveforms), batch_size):
            out.append(frontend(torch.from_numpy(np.ascontiguousarray(waveforms[i:i + batch_size]))).float().numpy())
    return np.concatenate(out).astype(np.float32)


def split_waveforms(data_root: str | Path, split: str, n: int | None, sample_rate: int, seed: int = 0,
                    cache_dir: str | Path | None = None) -> np.ndarray:
    """``n`` clips of a split (a seeded random subset, all if ``n`` is None or larger) as waveforms [N, samples]."""
    from asc.data.dataset import ClipDataset
    from asc.data.layout import open_dataset

    dataset = ClipDataset.from_split(open_dataset(data_root), split, cache_dir=cache_dir, sample_rate=sample_rate)
    if len(dataset) == 0:
        raise ExportError(f"{data_root}: split {split!r} has no clips to calibrate or check on")
    rows = np.arange(len(dataset))
    if n is not None and n < len(rows):
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=n, replace=False))
    return np.stack([np.asarray(dataset[int(i)]["audio"], dtype=np.float32) for i in rows])


def file_waveforms(data_root: str | Path, filenames: Sequence[str], sample_rate: int,
                   cache_dir: str | Path | None = None) -> np.ndarray:
    """The clips ``filenames`` (relative to ``data_root``, e.g. ``audio/x.wav``) as waveforms [N, samples]."""
    from asc.data.cache import load_cache

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
                        what: str = "calibration set") -> np.ndarray:
    """Log-mel inputs [N, 1, F, T] from an array of log-mels [N, 1, F, T] or of waveforms [N, samples].

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
        array = _frontend_batches(frontend.eval(), array)
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
            with _quiet():
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
            raise ExportError(f"INT8 quantization failed: {_first_lines(e, 3)}") from None
        return onnx.load(str(quantized))


# ----------------------------------------------------------------------------------------------------- checks


def ort_session(model, threads: int | None = None):
    """A CPU ``onnxruntime.InferenceSession`` of a file path or an in-memory ModelProto."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    source = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def compare(session, reference: nn.Module, inputs: np.ndarray, precision: str, kind: str,
            batch_size: int = 64) -> ExportCheck:
    """Run ``inputs`` through the ONNX session and the fp32 PyTorch ``reference``; judge by precision."""
    name = session.get_inputs()[0].name
    ours, theirs = [], []
    with torch.inference_mode():
        for i in range(0, len(inputs), batch_size):
            batch = np.ascontiguousarray(inputs[i:i + batch_size])
            ours.append(session.run(None, {name: batch})[0])
            theirs.append(reference(torch.from_numpy(batch)).float().numpy())
    a, b = np.concatenate(ours).astype(np.float64), np.concatenate(theirs).astype(np.float64)
    diff = float(np.abs(a - b).max())
    agreement = float((a.argmax(1) == b.argmax(1)).mean())
    if precision in TOLERANCES:
        atol, rtol = TOLERANCES[precision]
        passed = bool(np.all(np.abs(a - b) <= atol + rtol * np.abs(b)))
        tolerance = f"|onnx - torch| <= {atol:g} + {rtol:g}·|torch|"
    elif kind == "real":
        passed = agreement >= MIN_INT8_AGREEMENT
        tolerance = f"top-1 agreement >= {MIN_INT8_AGREEMENT:.0%}"
    else:
        passed, tolerance = None, "reported only (random inputs are outside the calibrated range)"
    return ExportCheck(inputs=kind, n=len(inputs), max_abs_diff=diff, top1_agreement=agreement,
                       tolerance=tolerance, passed=passed)


def _checks(session, reference: nn.Module, random_inputs: np.ndarray, real_inputs: np.ndarray | None,
            precision: str) -> list[ExportCheck]:
    checks = [compare(session, reference, random_inputs, precision, "random", batch_size=len(random_inputs) - 1)]
    if real_inputs is not None:
        checks.append(compare(session, reference, real_inputs, precision, "real"))
    return checks


# ----------------------------------------------------------------------------------------------------- metadata


def _set_metadata(model, metadata: dict[str, str]) -> None:
    existing = {p.key: p for p in model.metadata_props}
    for key, value in metadata.items():
        if key in existing:
            existing[key].value = value
        else:
            model.metadata_props.add(key=key, value=value)


def _save_all(files: list[tuple[Any, Path]]) -> list[int]:
    """Write every (ModelProto, path) as one self-contained file; all are renamed into place or none is."""
    import onnx

    with contextlib.ExitStack() as stack:
        sizes = []
        for model, path in files:
            tmp = stack.enter_context(atomic_path(path))
            onnx.save_model(model, str(tmp), save_as_external_data=False)
            sizes.append(tmp.stat().st_size)
    return sizes


# ----------------------------------------------------------------------------------------------------- main


def export_model(model_path, out: str | Path, precision: str = "fp32", calibration=None,
                 n_calibration: int = 256, calibration_method: str = "minmax", calibration_split: str = "100",
                 with_frontend: bool = False, data_root: str | Path | None = None,
                 calibration_files: Sequence[str] | None = None, check_split: str = "test",
                 n_check: int = N_REAL_CHECK, cache_dir: str | Path | None = None, strict: bool = True,
                 seed: int = 0) -> ExportReport:
    """Export a run folder, bundle file or :class:`~asc.models.registry.Bundle` to ONNX; see :func:`export_onnx`.

    Returns the :class:`ExportReport` (also written as JSON beside ``out``). With ``strict`` a fp32/fp16 file that
    differs from PyTorch beyond tolerance is an :class:`ExportError` and nothing is written.
    """
    if precision not in PRECISIONS:
        raise ExportError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if calibration_method not in CALIBRATION_METHODS:
        raise ExportError(f"calibration method {calibration_method!r}: choose one of {', '.join(CALIBRATION_METHODS)}")
    if n_calibration < 1:
        raise ExportError(f"n_calibration={n_calibration}: need at least one calibration clip")
    from asc.frontend import input_shape

    out = Path(out)
    if out.suffix != ".onnx":
        raise ExportError(f"{out}: the output file must end in .onnx")
    bundle, source = _load_source(model_path)
    model, frontend = bundle.model.eval(), bundle.frontend.eval()
    shape = input_shape(frontend)
    what = f"model {bundle.model_name} ({source})"

    # Real clips: calibration (INT8) and the check inputs.
    calib_logmel = None
    calib_info = None
    if precision == "int8":
        if calibration is not None:
            calib_logmel = calibration_logmels(calibration, frontend, shape, n_calibration)
            calib_source = "given array"
        elif data_root is None:
            raise ExportError("INT8 needs calibration clips: pass data_root (a dataset in the TAU layout; "
                              "CLI: --data ROOT), calibration_files with data_root, or a calibration array")
        elif calibration_files is not None:
            waves = file_waveforms(data_root, list(calibration_files)[:n_calibration], frontend.sample_rate,
                                   cache_dir)
            calib_logmel = calibration_logmels(waves, frontend, shape, None, "calibration_files")
            calib_source = f"{len(waves)} listed files of {data_root}"
        else:
            waves = split_waveforms(data_root, calibration_split, n_calibration, frontend.sample_rate, seed,
                                    cache_dir)
            calib_logmel = calibration_logmels(waves, frontend, shape, None, f"{data_root} split {calibration_split}")
            calib_source = f"{data_root} split{calibration_split}"
        calib_info = {"n": len(calib_logmel), "method": calibration_method, "source": calib_source,
                      "format": "QDQ", "activations": "uint8", "weights": "int8 per-channel"}
    real_waves = None
    if data_root is not None:
        real_waves = split_waveforms(data_root, check_split, n_check, frontend.sample_rate, seed + 1, cache_dir)
    elif calibration is not None:
        array = calibration.detach().cpu().numpy() if isinstance(calibration, torch.Tensor) else np.asarray(calibration)
        if array.ndim == 2:
            real_waves = array[:n_check].astype(np.float32)
    real_logmel = None
    if real_waves is not None:
        real_logmel = calibration_logmels(real_waves, frontend, shape, None, "check set")
    elif calib_logmel is not None:
        real_logmel = calib_logmel[:n_check]
    rng = np.random.default_rng(seed)
    random_logmel = rng.standard_normal((N_RANDOM_CHECK, *shape[1:])).astype(np.float32)
    if real_logmel is not None:  # random inputs on the scale of real ones
        random_logmel = random_logmel * real_logmel.std() + real_logmel.mean()

    # The network.
    example = torch.from_numpy(random_logmel[:2])
    try:
        with torch.inference_mode():
            model(example)
    except Exception as e:
        raise ExportError(f"{what} does not run on its front end's output {list(shape)}: {_first_lines(e)}") from None
    if precision == "fp16":
        net = torch_to_onnx(_HalfPrecision(model), example, INPUT_NAME, f"{what} in fp16")
    else:
        net = torch_to_onnx(model, example, INPUT_NAME, what)
    _rename_graph_io(net, INPUT_NAME)
    if precision == "int8":
        net = quantize_int8(net, calib_logmel, calibration_method)
    checks = _checks(ort_session(net), model, random_logmel, real_logmel, precision)
    _fail_if_strict(checks, strict, what, precision)

    metadata = {
        "asc.labels": json.dumps(list(bundle.labels)),
        "asc.frontend": json.dumps({"name": bundle.frontend_name, "config": bundle.frontend_config}),
        "asc.model": json.dumps({"name": bundle.model_name, "config": bundle.model_config}),
        "asc.precision": precision,
        "asc.input": INPUT_NAME,
        "asc.input_shape": json.dumps(["batch", *shape[1:]]),
        "asc.source": source,
    }
    if calib_info:
        metadata["asc.calibration"] = json.dumps(calib_info)
    _set_metadata(net, metadata)
    net.producer_name, net.doc_string = "asc", f"{bundle.model_name} {precision}: log-mel [B, 1, F, T] -> logits"

    # The optional waveform-input file.
    fe_model, fe_checks, fe_note = None, [], None
    fe_out = out.with_name(out.stem + ".e2e.onnx")
    if with_frontend:
        fe_model, fe_checks, fe_note = _with_frontend(net, bundle, shape, real_waves, precision, what, strict)
        if fe_model is not None:
            _set_metadata(fe_model, {**metadata, "asc.input": WAVEFORM_NAME,
                                     "asc.input_shape": json.dumps(["batch", frontend.sample_rate])})

    notes = []
    if bundle.extra.get("device_state_dicts"):
        notes.append(f"the bundle holds {len(bundle.extra['device_state_dicts'])} device-specific models "
                     f"({', '.join(bundle.extra['device_state_dicts'])}); only the general model was exported")
    size, *fe_size = _save_all([(net, out)] + ([(fe_model, fe_out)] if fe_model is not None else []))
    report = ExportReport(path=out, precision=precision, model_name=bundle.model_name, source=source,
                          size_bytes=size, input_shape=["batch", *shape[1:]], checks=checks, calibration=calib_info,
                          frontend_path=fe_out if fe_model is not None else None,
                          frontend_size_bytes=fe_size[0] if fe_size else None, frontend_checks=fe_checks,
                          frontend_note=fe_note, notes=notes)
    write_json(export_report_path(out), report.to_dict())
    return report


def _fail_if_strict(checks: list[ExportCheck], strict: bool, what: str, precision: str) -> None:
    failed = [c for c in checks if c.passed is False]
    if strict and failed and precision in TOLERANCES:
        c = failed[0]
        raise ExportError(f"{what}: ONNX Runtime {precision} differs from PyTorch on {c.inputs} inputs "
                          f"(max |diff| {c.max_abs_diff:.3g}, required {c.tolerance}); nothing was written")


def _with_frontend(net, bundle, shape, real_waves, precision: str, what: str, strict: bool):
    """The front end (fp32) composed with the exported network: waveform [B, samples] -> logits."""
    import onnx

    frontend, model = bundle.frontend.eval(), bundle.model.eval()
    samples = int(frontend.sample_rate)
    example = torch.randn(2, samples) * 0.1
    try:
        fe = torch_to_onnx(frontend, example, WAVEFORM_NAME, f"front end {bundle.frontend_name}")
    except ExportError as e:
        return None, [], f"no waveform-input file: {e}"
    _rename_graph_io(fe, WAVEFORM_NAME, "frontend_logmel")
    net = copy.deepcopy(net)
    net.ClearField("metadata_props")
    opsets: dict[str, int] = {}
    for o in [*fe.opset_import, *net.opset_import]:
        opsets[o.domain] = max(o.version, opsets.get(o.domain, 0))
    ir_version = max(fe.ir_version, net.ir_version)
    for m in (fe, net):  # merge_models needs identical IR and opset versions
        m.ir_version = ir_version
        del m.opset_import[:]
        for domain, version in opsets.items():
            m.opset_import.add(domain=domain, version=version)
    try:
        fe = onnx.compose.add_prefix(fe, "frontend/", rename_inputs=False, rename_outputs=False)
        merged = onnx.compose.merge_models(fe, net, io_map=[("frontend_logmel", INPUT_NAME)])
        onnx.checker.check_model(merged)
    except Exception as e:
        return None, [], f"no waveform-input file: cannot join front end and network: {_first_lines(e)}"
    reference = _FrontendAndModel(frontend, model).eval()
    rng = np.random.default_rng(1)
    random_waves = (rng.standard_normal((N_RANDOM_CHECK, samples)) * 0.1).astype(np.float32)
    session = ort_session(merged)
    # Front-end rounding (log of small mel energies) adds to the network's; judge fp32 with the fp16 tolerance.
    judged = "fp16" if precision == "fp32" else precision
    checks = _checks(session, reference, random_waves, real_waves, judged)
    _fail_if_strict(checks, strict, f"{what} with front end {bundle.frontend_name}", judged)
    return merged, checks, None


def export_onnx(model_path, out: str | Path, precision: str = "fp32", calibration_files: Sequence[str] | None = None,
                n_calibration: int = 256, calibration_method: str = "minmax", with_frontend: bool = False,
                data_root: str | Path | None = None, calibration=None, calibration_split: str = "100",
                **kwargs) -> Path:
    """Write ``model_path`` (run folder, bundle file or Bundle) as ONE self-contained ONNX file at ``out``.

    ``precision``: "fp32", "fp16" (weights and activations fp16, float32 input/output) or "int8" (static QDQ).
    INT8 calibrates on (first that is given) ``calibration``, an array of waveforms [N, samples] or log-mels
    [N, 1, F, T]; ``calibration_files`` of the dataset at ``data_root``; or ``n_calibration`` random clips of
    ``calibration_split`` there; ``calibration_method`` minmax/entropy/percentile. With ``data_root`` the check
    against PyTorch also runs on real clips of the dev-test split. ``with_frontend`` also writes
    ``<out stem>.e2e.onnx`` taking waveforms. Returns ``out``; see :func:`export_model` for the report.
    """
    return export_model(model_path, out, precision=precision, calibration=calibration, n_calibration=n_calibration,
                        calibration_method=calibration_method, calibration_split=calibration_split,
                        with_frontend=with_frontend, data_root=data_root, calibration_files=calibration_files,
                        **kwargs).path


# ----------------------------------------------------------------------------------------------------- inference


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
        raise CheckpointError(f"{path}: not a readable ONNX file: {_first_lines(e)}") from None
    return {p.key: p.value for p in model.metadata_props}


class OnnxPredictor:
    """An exported ONNX file behind the Predictor protocol of :mod:`asc.inference` (ONNX Runtime, CPU).

    ``frontend`` is rebuilt from the file's ``asc.frontend`` metadata; ``logits_from_logmel`` runs the session.
    For a waveform-input file (``with_frontend``) the front end is a pass-through and the file does everything.
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        from asc.frontend import build_frontend

        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: ONNX file not found")
        try:
            self.session = ort_session(self.path, threads)
        except Exception as e:
            raise CheckpointError(f"{self.path}: ONNX Runtime cannot load it: {_first_lines(e)}") from None
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
            raise CheckpointError(f"{self.path}: malformed asc metadata ({_first_lines(e)})") from None
        self.precision = meta["asc.precision"]
        self.metadata = dict(meta)
        self.name = f"{self.model_name} ({self.precision} ONNX)"
        self.input_name = self.session.get_inputs()[0].name
        self.input_kind = meta.get("asc.input", INPUT_NAME)
        frontend = build_frontend(self.frontend_name, self.frontend_config).eval()
        self.frontend = _Passthrough(frontend.sample_rate) if self.input_kind == WAVEFORM_NAME else frontend

    def logits_from_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(logmel.detach().cpu().float().numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: x})[0]).float()
