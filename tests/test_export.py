"""ONNX export (fp32 / fp16 / INT8 / with front end), the ORT-vs-PyTorch checks, metadata round trip, failures."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from asc.data.validate import open_dataset
from asc.errors import AscError
from asc.export import ExportError, export_model
from asc.frontend import build_frontend
from asc.inference import OnnxPredictor, read_metadata
from asc.models.registry import Bundle, build_model, load_bundle, make_config, save_bundle


def _trained_ish(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights, BatchNorm affine parameters and statistics from data: logits vary clearly between clips."""
    g = torch.Generator().manual_seed(seed)
    frontend = build_frontend("baseline24").eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    model.train()
    with torch.no_grad():
        model(frontend(_waveforms(32, seed=seed + 100)))
    return model.eval()


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory, synth_data):
    labels = open_dataset(synth_data.dev).labels
    torch.manual_seed(0)
    model = _trained_ish(build_model("baseline24", n_classes=len(labels)))
    path = tmp_path_factory.mktemp("bundle") / "baseline24.pt"
    save_bundle(path, model, "baseline24", make_config("baseline24", n_classes=len(labels)), labels)
    return path


def _waveforms(n: int = 6, seed: int = 0) -> torch.Tensor:
    """Tones of random pitch and level in noise of random level: clearly different spectra."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(32000) / 32000
    pitch = torch.rand(n, 1, generator=g) * 4000 + 50
    level, noise = torch.rand(n, 1, generator=g), torch.rand(n, 1, generator=g) * 0.1
    return level * torch.sin(2 * torch.pi * pitch * t) + noise * torch.randn(n, 32000, generator=g)


def test_fp32_matches_torch_and_metadata_round_trips(bundle_path, tmp_path, capsys):
    from asc.cli import main

    out = tmp_path / "b24.fp32.onnx"
    assert main(["export", str(bundle_path), "--precision", "fp32", "--out", str(out), "--with-frontend"]) == 0
    printed = capsys.readouterr().out
    assert "ONNX Runtime vs PyTorch fp32" in printed and "FAILED" not in printed and f"wrote {out}" in printed
    report = json.loads(out.with_suffix(".export.json").read_text())
    assert report["passed"] and report["checks"][0]["max_abs_diff"] < 1e-4

    model = onnx.load(str(out))
    assert not any(t.HasField("data_location") and t.data_location == onnx.TensorProto.EXTERNAL
                   for t in model.graph.initializer), "weights must be inside the one file"
    assert not list(tmp_path.glob("*.data")) and not list(tmp_path.glob(".*.tmp"))
    meta = read_metadata(out)
    # CPU sessions sleep when idle: spinning intra-op threads would take the cores of the pipelined front end
    options = OnnxPredictor(out).session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    bundle = load_bundle(bundle_path)
    assert json.loads(meta["asc.labels"]) == bundle.labels
    assert json.loads(meta["asc.model"]) == {"name": "baseline24", "config": bundle.model_config}
    assert json.loads(meta["asc.frontend"])["name"] == "baseline24"
    assert meta["asc.precision"] == "fp32"

    predictor = OnnxPredictor(out, threads=1)
    assert predictor.labels == bundle.labels and predictor.precision == "fp32"
    logmel = predictor.frontend(_waveforms())
    reference = bundle.model(bundle.frontend(_waveforms())).detach()
    for rows in (slice(0, 1), slice(0, 6)):  # dynamic batch axis
        ours = predictor.logits_from_logmel(logmel[rows])
        assert ours.shape == reference[rows].shape
        assert torch.allclose(ours, reference[rows], atol=1e-4, rtol=1e-4)
    assert reference.std(0).mean() > 0.05, "the test model must give clip-dependent logits"

    # The waveform-input file: front end (fp32) and network in one graph.
    e2e = tmp_path / "b24.fp32.e2e.onnx"
    assert report["frontend_path"] == str(e2e) and all(c["passed"] for c in report["frontend_checks"])
    predictor = OnnxPredictor(e2e)
    assert predictor.input_kind == "waveform" and predictor.labels == bundle.labels
    ours = predictor.logits_from_logmel(predictor.frontend(_waveforms()))
    assert torch.allclose(ours, reference, atol=2e-3, rtol=1e-3)


def test_fp16_weights_and_tolerance(bundle_path, tmp_path):
    report = export_model(bundle_path, tmp_path / "b24.fp16.onnx", precision="fp16")
    assert report.passed and report.precision == "fp16"
    model = onnx.load(str(report.path))
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    dtypes = {t.data_type for t in model.graph.initializer if t.name in conv_weights}
    assert dtypes == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 in and out
    predictor = OnnxPredictor(report.path)
    x = predictor.frontend(_waveforms(4, seed=1))
    reference = load_bundle(bundle_path).model(x).detach()
    assert (predictor.logits_from_logmel(x) - reference).abs().max() < 0.05


def test_int8_qdq_calibrated_on_real_clips_and_evaluates(bundle_path, synth_data, tmp_path):
    from asc.evaluate import evaluate

    out = tmp_path / "b24.int8.onnx"
    report = export_model(bundle_path, out, precision="int8", data_root=synth_data.dev, n_calibration=48,
                          calibration_split="100", n_check=48)
    assert report.calibration["n"] == 48 and report.calibration["method"] == "minmax"
    real = [c for c in report.checks if c.inputs == "real"][0]
    n_test = len(open_dataset(synth_data.dev).split("test"))
    assert real.n == min(48, n_test) and real.top1_agreement >= 0.9 and real.passed
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    init = {t.name: t for t in model.graph.initializer}
    weight_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in init
                 and len(init[n.input[0]].dims) == 4]
    assert weight_dq and all(init[n.input[0]].data_type == onnx.TensorProto.INT8 for n in weight_dq)
    assert any(init[n.input[1]].dims and init[n.input[1]].dims[0] > 1 for n in weight_dq), "per-channel scales"
    activation_zero_points = [init[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert activation_zero_points and all(z.data_type == onnx.TensorProto.UINT8 for z in activation_zero_points)
    assert read_metadata(out)["asc.precision"] == "int8"
    fp32_size = sum(np.prod(t.dims) * 4 for t in init.values() if t.data_type == onnx.TensorProto.INT8)
    assert report.size_bytes < fp32_size  # int8 weights: a quarter of the fp32 bytes, plus scales

    result = evaluate(out, synth_data.dev, split="test", out_dir=tmp_path / "eval", progress=False)
    assert result["model_name"] == "baseline24 (int8 ONNX)" and 0.0 <= result["macro_accuracy"] <= 1.0
    assert result["n"] == n_test


def test_bad_calibration_is_an_error_and_writes_nothing(bundle_path, synth_data, tmp_path):
    out = tmp_path / "bad.int8.onnx"
    with pytest.raises(ExportError, match="calibration file.*not found: audio/missing.wav"):
        export_model(bundle_path, out, precision="int8", data_root=synth_data.dev,
                     calibration_files=["audio/missing.wav"])
    with pytest.raises(ExportError, match="empty"):
        export_model(bundle_path, out, precision="int8", calibration=np.zeros((0, 32000), np.float32))
    with pytest.raises(ExportError, match=r"shape \[4, 1, 128, 10\].*expects log-mels \[N, 1, 256, 65\]"):
        export_model(bundle_path, out, precision="int8", calibration=np.zeros((4, 1, 128, 10), np.float32))
    with pytest.raises(ExportError, match="needs calibration"):
        export_model(bundle_path, out, precision="int8")
    assert list(tmp_path.iterdir()) == []


class _DataDependent(nn.Module):
    """Branches on a tensor value: torch.export cannot capture it and tracing would freeze one branch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(1, 2, 3))[:, None].repeat(1, 10)
        if x.mean() > 0:
            return pooled
        return -pooled


def test_unexportable_model_is_an_error_and_writes_nothing(tmp_path):
    name = "baseline24"
    bundle = Bundle(model=_DataDependent(), frontend=build_frontend(name).eval(), model_name=name,
                    model_config={}, frontend_name=name, frontend_config={}, labels=[str(i) for i in range(10)])
    with pytest.raises(AscError, match="cannot be exported to ONNX") as err:
        export_model(bundle, tmp_path / "bad.onnx")
    assert "torch.export" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_unknown_onnx_file_is_a_clear_error(tmp_path):
    from asc.errors import CheckpointError

    path = tmp_path / "plain.onnx"
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), str(path))
    with pytest.raises(CheckpointError, match="asc.labels"):
        OnnxPredictor(path)
