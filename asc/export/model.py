"""``export_model`` / ``export_onnx``: a run folder, bundle file or Bundle as ONE self-contained ONNX file (fp32,
fp16 or static INT8) whose metadata rebuild everything else, checked against PyTorch before it is written and
written atomically (optionally a second file taking waveforms, front end included), with a JSON report beside it."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from asc.accel import resolve
from asc.export.calibration import (CALIBRATION_METHODS, calibration_logmels, file_waveforms, quantize_int8,
                                    split_waveforms)
from asc.export.checks import TOLERANCES, ExportCheck, run_checks
from asc.export.graph import (ExportError, FrontendAndModel, HalfPrecision, rename_graph_io, save_all,
                              set_metadata, torch_to_onnx)
from asc.errors import first_lines
from asc.fileio import check_writable, write_json
from asc.frontend import input_shape
from asc.inference import INPUT_NAME, WAVEFORM_NAME, ort_session
from asc.models.registry import Bundle, load_bundle
from asc.runs import export_report_path, run_lock_for

PRECISIONS = ("fp32", "fp16", "int8")
N_RANDOM_CHECK = 8
N_REAL_CHECK = 256


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


def _load_source(model_path) -> tuple[Any, str]:
    """A Bundle (given, or loaded from a run folder / bundle file) and a description of where it came from."""
    if isinstance(model_path, Bundle):
        return model_path, f"<{model_path.model_name} bundle>"
    bundle = load_bundle(model_path)
    return bundle, str(model_path)


def export_model(model_path, out: str | Path, precision: str = "fp32", calibration=None,
                 n_calibration: int = 256, calibration_method: str = "minmax", calibration_split: str = "100",
                 with_frontend: bool = False, data_root: str | Path | None = None,
                 calibration_files: Sequence[str] | None = None, check_split: str = "test",
                 n_check: int = N_REAL_CHECK, cache_dir: str | Path | None = None, strict: bool = True,
                 seed: int = 0, device: str = "auto") -> ExportReport:
    """Export a run folder, bundle file or :class:`~asc.models.registry.Bundle` to ONNX; see :func:`export_onnx`.

    The front end of the calibration and check clips runs on ``device``; the PyTorch reference the file is checked
    against stays on the CPU in float32 (as ONNX Runtime runs the file). Returns the :class:`ExportReport` (also written as JSON beside ``out``). With ``strict`` a fp32/fp16 file that
    differs from PyTorch beyond tolerance is an :class:`ExportError` and nothing is written.
    """
    if precision not in PRECISIONS:
        raise ExportError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if calibration_method not in CALIBRATION_METHODS:
        raise ExportError(f"calibration method {calibration_method!r}: choose one of {', '.join(CALIBRATION_METHODS)}")
    if n_calibration < 1:
        raise ExportError(f"n_calibration={n_calibration}: need at least one calibration clip")
    out = Path(out)
    if out.suffix != ".onnx":
        raise ExportError(f"{out}: the output file must end in .onnx")
    check_writable(out, "ONNX file")
    with run_lock_for(out):  # an export into a run folder waits for a process writing that run
        bundle, source = _load_source(model_path)
        model, frontend = bundle.model.eval(), bundle.frontend.eval()
        shape = input_shape(frontend)
        what = f"model {bundle.model_name} ({source})"
        accel = resolve(device, "off")

        # Real clips: calibration (INT8) and the check inputs.
        calib_logmel = None
        calib_info = None
        if precision == "int8":
            if calibration is not None:
                calib_logmel = calibration_logmels(calibration, frontend, shape, n_calibration, accel=accel)
                calib_source = "given array"
            elif data_root is None:
                raise ExportError("INT8 needs calibration clips: pass data_root (a dataset in the TAU layout; "
                                  "CLI: --data ROOT), calibration_files with data_root, or a calibration array")
            elif calibration_files is not None:
                waves = file_waveforms(data_root, list(calibration_files)[:n_calibration], frontend.sample_rate,
                                       cache_dir)
                calib_logmel = calibration_logmels(waves, frontend, shape, None, "calibration_files", accel)
                calib_source = f"{len(waves)} listed files of {data_root}"
            else:
                waves = split_waveforms(data_root, calibration_split, n_calibration, frontend.sample_rate, seed,
                                        cache_dir)
                calib_logmel = calibration_logmels(waves, frontend, shape, None,
                                                   f"{data_root} split {calibration_split}", accel)
                calib_source = f"{data_root} split{calibration_split}"
            calib_info = {"n": len(calib_logmel), "method": calibration_method, "source": calib_source,
                          "format": "QDQ", "activations": "uint8", "weights": "int8 per-channel"}
        real_waves = None
        if data_root is not None:
            real_waves = split_waveforms(data_root, check_split, n_check, frontend.sample_rate, seed + 1, cache_dir)
        elif calibration is not None:
            array = (calibration.detach().cpu().numpy() if isinstance(calibration, torch.Tensor)
                     else np.asarray(calibration))
            if array.ndim == 2:
                real_waves = array[:n_check].astype(np.float32)
        real_logmel = None
        if real_waves is not None:
            real_logmel = calibration_logmels(real_waves, frontend, shape, None, "check set", accel)
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
            raise ExportError(f"{what} does not run on its front end's output {list(shape)}: "
                              f"{first_lines(e)}") from None
        if precision == "fp16":
            net = torch_to_onnx(HalfPrecision(model), example, INPUT_NAME, f"{what} in fp16")
        else:
            net = torch_to_onnx(model, example, INPUT_NAME, what)
        rename_graph_io(net, INPUT_NAME)
        if precision == "int8":
            net = quantize_int8(net, calib_logmel, calibration_method)
        checks = run_checks(ort_session(net), model, random_logmel, real_logmel, precision)
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
        if bundle.extra.get("selection"):
            metadata["asc.selection"] = json.dumps(bundle.extra["selection"])
        set_metadata(net, metadata)
        net.producer_name, net.doc_string = "asc", f"{bundle.model_name} {precision}: log-mel [B, 1, F, T] -> logits"

        # The optional waveform-input file.
        fe_model, fe_checks, fe_note = None, [], None
        fe_out = out.with_name(out.stem + ".e2e.onnx")
        if with_frontend:
            fe_model, fe_checks, fe_note = _with_frontend(net, bundle, shape, real_waves, precision, what, strict)
            if fe_model is not None:
                set_metadata(fe_model, {**metadata, "asc.input": WAVEFORM_NAME,
                                         "asc.input_shape": json.dumps(["batch", frontend.sample_rate])})

        notes = []
        if bundle.extra.get("device_state_dicts"):
            notes.append(f"the bundle holds {len(bundle.extra['device_state_dicts'])} device-specific models "
                         f"({', '.join(bundle.extra['device_state_dicts'])}); only the general model was exported")
        size, *fe_size = save_all([(net, out)] + ([(fe_model, fe_out)] if fe_model is not None else []))
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
    rename_graph_io(fe, WAVEFORM_NAME, "frontend_logmel")
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
        return None, [], f"no waveform-input file: cannot join front end and network: {first_lines(e)}"
    reference = FrontendAndModel(frontend, model).eval()
    rng = np.random.default_rng(1)
    random_waves = (rng.standard_normal((N_RANDOM_CHECK, samples)) * 0.1).astype(np.float32)
    session = ort_session(merged)
    # Front-end rounding (log of small mel energies) adds to the network's; judge fp32 with the fp16 tolerance.
    judged = "fp16" if precision == "fp32" else precision
    checks = run_checks(session, reference, random_waves, real_waves, judged)
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
