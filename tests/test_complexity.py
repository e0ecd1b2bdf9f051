"""Complexity checker: the official figures of the students and the CP-ResNet teacher, the torchinfo traps
(INT8-converted, QAT-prepared, pruned, parametrized, fp16 models), ONNX files (float and INT8 QDQ), budgets of all
editions, the source extension point, and the CLI's exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.ao.quantization as tq
from torch import nn
from torch.nn.utils import prune
from torch.nn.utils.parametrizations import weight_norm

import asc.complexity as C
import asc.complexity.sources
from asc.cli import main as cli_main
from asc.complexity import (SourceOptions, check, check_source, count, count_named, count_onnx, count_source,
                            load_budget, memory_advice, register_source)
from asc.errors import ConfigError
from asc.models.blocks import fusion_groups
from asc.models.registry import build_model, make_config, save_bundle

B24_SHAPE = (1, 1, 256, 65)
LABELS = ["airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
          "street_pedestrian", "street_traffic", "tram"]


@pytest.fixture(scope="module")
def baseline():
    return count_named("baseline24")


@pytest.fixture(scope="module")
def cpmobile():
    return count_named("cpmobile")


class SmallNet(nn.Module):
    """Conv-BN-ReLU, conv (with bias)-BN, pool, linear: 1,458 parameters, 1,418 with BatchNorm folded."""

    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.conv, self.bn, self.relu = nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(16, 10)

    def forward(self, x):
        x = self.relu(self.bn(self.conv(self.quant(x))))
        return self.dequant(self.fc(self.pool(self.bn2(self.conv2(x))).flatten(1)))


SMALL_SHAPE = (1, 1, 32, 16)
SMALL_GROUPS = [["conv", "bn", "relu"], ["conv2", "bn2"]]
# conv 72 x 512 positions + BN 16 + conv2 (1152 + 16) x 128 + BN 32 + linear 170
SMALL_PARAMS, SMALL_MACS = 1_458, 72 * 512 + 16 + 1_168 * 128 + 32 + 170
# folded: conv 72 + 8 bias, conv2 1152 + 16, linear 170; MACs (72 + 8) x 512 + 1168 x 128 + 170
SMALL_FOLDED_PARAMS, SMALL_FOLDED_MACS = 1_418, 80 * 512 + 1_168 * 128 + 170


def test_baseline24_official_figures(baseline, shared_dir):
    reference = torch.load(shared_dir / "reference" / "baseline24" / "reference.pt", weights_only=True)
    assert baseline.input_size == B24_SHAPE
    assert (baseline.params, baseline.macs) == (61_148, 29_419_156)
    assert (reference["torchinfo_params"], reference["torchinfo_macs"]) == (61_148, 29_419_156)
    assert (baseline.check_params, baseline.check_macs) == (61_148, 29_419_156) and not baseline.warnings
    assert baseline.param_bytes("fp16") == 122_296 and baseline.param_bytes("fp32") == 244_592
    assert baseline.stored_bytes == 244_592 and baseline.stored_dtypes == {"float32": 61_148}
    budget = load_budget("dcase2024")
    assert check(baseline, budget, "fp16") == [] and check(baseline, budget) == []  # default: fp16 for 2024
    assert [v.limit for v in check(baseline, budget, "fp32")] == ["param_bytes"]
    # per-layer table: the README of the DCASE 2024 baseline lists 304,144 MACs (conv + BN) for in_c[0]
    rows = {r.name: r for r in baseline.layers}
    assert rows["in_c.0.0"].macs + rows["in_c.0.1"].macs == 304_144 and rows["in_c.0.1"].params == 16
    assert all(r.check_macs == r.macs for r in baseline.layers)
    assert sum(r.macs for r in baseline.layers) == baseline.macs


def test_cpmobile_budget_depends_on_precision_and_time_axis(cpmobile, shared_dir):
    reference = torch.load(shared_dir / "reference" / "cpmobile23" / "reference.pt", weights_only=True)
    budget = load_budget()
    assert (cpmobile.input_size, cpmobile.params, cpmobile.macs) == ((1, 1, 256, 64), 126_952, 28_893_268)
    assert cpmobile.param_bytes("int8") == 126_952 and check(cpmobile, budget, "int8") == []
    over = check(cpmobile, budget, "fp16")
    assert [(v.limit, v.figure, v.maximum, v.excess) for v in over] == [("param_bytes", 253_904, 128_000, 125_904)]
    assert "253,904" in over[0] and "128,000" in over[0] and "125,904" in over[0]
    assert memory_advice(cpmobile, budget, "fp16") == \
        "fits dcase2024 only when quantized to int8 (126,952 bytes)"
    long = count(build_model("cpmobile"), (1, 1, 256, 65), precision="int8")
    assert long.macs == 31_684_180 == reference["torchinfo_macs"]
    assert [(v.limit, v.excess) for v in check(long, budget)] == [("macs", 1_684_180)]


def test_cpresnet_teacher_on_hop_750():
    report = count_named("cpresnet")
    assert (report.input_size, report.params, report.macs) == ((1, 1, 256, 43), 127_684, 28_840_396)
    assert report.cross_check_agrees


def test_bn_folding_reported_on_float_models():
    report = count(SmallNet().eval(), SMALL_SHAPE)
    assert (report.params, report.macs) == (SMALL_PARAMS, SMALL_MACS)
    assert (report.folded_params, report.folded_macs) == (SMALL_FOLDED_PARAMS, SMALL_FOLDED_MACS)
    assert report.raw_torchinfo is None and report.deployed_precision is None


def test_converted_int8_eager_model_counts_packed_weights():
    model = tq.fuse_modules(SmallNet().eval(), SMALL_GROUPS)
    model.qconfig = tq.get_default_qconfig("x86")
    tq.prepare(model, inplace=True)
    model(torch.randn(8, *SMALL_SHAPE[1:]))
    converted = tq.convert(model)
    report = count(converted, SMALL_SHAPE)
    assert report.raw_torchinfo == {"params": 0, "macs": 0}  # the trap
    assert (report.params, report.macs) == (SMALL_FOLDED_PARAMS, SMALL_FOLDED_MACS)  # BN folded by the conversion
    assert report.cross_check_agrees and report.bn_folded and report.method == "torchinfo"
    # weights stored as qint8 (1 byte), biases in float32
    assert report.stored_dtypes == {"qint8": 72 + 1_152 + 160, "float32": 8 + 16 + 10}
    assert report.stored_bytes == 1_384 + 4 * 34
    assert report.deployed_precision == "stored" and check(report, load_budget()) == []


def test_qat_prepared_baseline_counted_as_float():
    model = build_model("baseline24").train()
    model.qconfig = tq.get_default_qat_qconfig("x86")
    model = tq.fuse_modules_qat(model, fusion_groups(model))
    tq.prepare_qat(model, inplace=True)
    report = count(model.eval(), B24_SHAPE)
    assert report.raw_torchinfo["macs"] < 10_000  # torchinfo alone sees only the BatchNorms
    assert (report.params, report.macs) == (61_148, 29_419_156) and report.cross_check_agrees
    assert report.deployed_precision == "int8" and C.resolve_precision(report, load_budget()) == "int8"


def test_pruned_model_counts_zeros_and_is_left_intact():
    model = build_model("baseline24").eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        prune.l1_unstructured(conv, "weight", amount=0.5)
    x = torch.rand(B24_SHAPE)
    before = model(x)
    report = count(model, B24_SHAPE)
    assert report.raw_torchinfo["params"] < 45_000  # torchinfo counts unmasked weights only
    assert (report.params, report.macs) == (61_148, 29_419_156) and report.cross_check_agrees
    assert report.zero_params >= sum(c.weight.numel() // 2 for c in convs)
    assert torch.equal(model(x), before) and all(prune.is_pruned(c) for c in convs)


def test_parametrized_and_fp16_models():
    model = SmallNet().eval()
    weight_norm(model.conv2)
    x = torch.rand(SMALL_SHAPE)
    before = model(x)
    report = count(model, SMALL_SHAPE)
    assert report.params == SMALL_PARAMS + 16  # original parameters: g (16) and v (1,152) instead of the weight
    assert report.macs == SMALL_MACS and report.cross_check_agrees
    assert torch.equal(model(x), before)  # the caller's parametrized model still works
    half = count(SmallNet().half(), SMALL_SHAPE)
    assert (half.params, half.macs) == (SMALL_PARAMS, SMALL_MACS)
    assert half.stored_dtypes == {"float16": SMALL_PARAMS} and half.param_bytes() == 2 * SMALL_PARAMS


def _export(model: nn.Module, path, shape, metadata: dict | None = None):
    import onnx

    torch.onnx.export(model.eval(), torch.rand(shape), str(path), dynamo=False, input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    if metadata:
        proto = onnx.load(str(path))
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(path))
    return path


def test_onnx_float_and_int8_qdq(tmp_path, baseline):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    path = _export(build_model("baseline24"), tmp_path / "b24.onnx", B24_SHAPE,
                   {"asc.model": json.dumps({"name": "baseline24", "config": {}})})
    report = count_onnx(path)
    assert report.input_size == B24_SHAPE  # dynamic batch -> 1
    # the graph holds BatchNorm folded into the convolutions: the torch model's folded figure
    assert (report.params, report.macs) == (baseline.folded_params, baseline.folded_macs) == (59_794, 30_216_768)
    assert (report.check_params, report.check_macs) == (59_794, 30_216_768) and not report.warnings
    assert report.stored_dtypes == {"float32": 59_794}

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.items = iter([{"x": rng.standard_normal(B24_SHAPE).astype(np.float32)} for _ in range(2)])

        def get_next(self):
            return next(self.items, None)

    qdq = tmp_path / "b24_int8.onnx"
    quantize_static(str(path), str(qdq), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    q = count_onnx(qdq)
    conv_weights = 59_794 - 1_354  # all weights int8; the 1,354 folded biases int32; scales / zero points not counted
    assert (q.params, q.macs) == (59_794, 30_216_768)
    assert q.stored_dtypes == {"int8": conv_weights, "int32": 1_354}
    assert q.stored_bytes == conv_weights + 4 * 1_354 and q.param_bytes("int8") == 59_794
    # folded conv biases add graph MACs; the verdict uses the unfused PyTorch model the metadata names, as the rules
    assert (q.torch_params, q.torch_macs) == (61_148, 29_419_156)
    assert (q.budget_params, q.budget_macs) == (61_148, 29_419_156)
    assert check(q, load_budget()) == []
    assert any("29,419,156 MACs" in h and "30,216,768" in h for h in C.budget_advice(q, load_budget()))
    # through the source dispatcher, with a different number of frames
    [(device, short)] = count_source(str(path), SourceOptions(frames=33))
    assert device is None and short.input_size == (1, 1, 256, 33) and short.macs < report.macs


def test_onnx_small_linear_model(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 3))
    report = count_onnx(_export(model, tmp_path / "mlp.onnx", (1, 4, 5)))
    assert (report.params, report.macs) == (20 * 8 + 8 + 8 * 3 + 3,) * 2


def test_budgets_of_all_editions(cpmobile):
    assert C.list_budgets() == ["dcase2022", "dcase2023", "dcase2024", "dcase2025"]
    b22 = load_budget("dcase2022")
    assert (b22.max_params, b22.max_param_bytes, b22.max_macs) == (128_000, None, 30_000_000)
    assert check(cpmobile, b22, "fp32") == []  # 2022 limits the count (INT8 counted), not the float memory
    wide = count_named("cpmobile", {"channels_multiplier": 2.4})
    assert "params" in [v.limit for v in check(wide, b22)]
    b23 = load_budget("dcase2023")
    assert (b23.max_params, b23.max_param_bytes, b23.max_macs) == (128_000, None, 30_000_000)
    for edition in ("dcase2024", "dcase2025"):
        b = load_budget(edition)
        assert (b.max_param_bytes, b.max_macs) == (128_000, 30_000_000) and b.source.startswith("https://")
    assert load_budget("dcase2025").per_device and not load_budget().per_device
    with pytest.raises(ConfigError, match="dcase1999"):
        load_budget("dcase1999")


def test_per_device_sources_through_the_extension_point(monkeypatch, baseline, cpmobile):
    monkeypatch.setattr(asc.complexity.sources, "_SOURCE_HANDLERS", [])
    register_source(lambda spec, options: [("a", baseline), ("b", cpmobile)] if spec == "pkg:demo" else None)
    result = check_source("pkg:demo", "dcase2025", SourceOptions(precision="fp16"))
    assert [(m.device, m.within_budget) for m in result.models] == [("a", True), ("b", False)]
    assert not result.within_budget and "OVER budget for b" in result.format()
    assert cli_main(["check-complexity", "pkg:demo", "--edition", "dcase2025"]) == 1


def test_bundle_and_run_folder_sources(tmp_path):
    run = tmp_path / "runs" / "b24"
    save_bundle(run / "checkpoints" / "best.pt", build_model("baseline24"), "baseline24",
                make_config("baseline24"), LABELS)
    [(_, report)] = count_source(str(run))
    assert (report.params, report.macs, report.input_size) == (61_148, 29_419_156, B24_SHAPE)
    with pytest.raises(ConfigError, match="registry model names only"):
        count_source(str(run), SourceOptions(overrides={"base_channels": 16}))


def test_cli_exit_codes_and_messages(tmp_path, capsys):
    assert cli_main(["check-complexity", "baseline24"]) == 0
    out = capsys.readouterr().out
    assert "61,148" in out and "29,419,156" in out and "122,296" in out and "within dcase2024" in out
    assert cli_main(["check-complexity", "cpmobile", "--precision", "int8"]) == 0
    assert cli_main(["check-complexity", "cpmobile", "--precision", "fp16"]) == 1
    out = capsys.readouterr().out
    assert "parameter memory: 253,904 bytes at fp16 exceed the dcase2024 limit of 128,000 bytes by 125,904" in out
    assert "fits dcase2024 only when quantized to int8" in out
    assert cli_main(["check-complexity", "cpmobile", "--precision", "int8", "--frames", "65"]) == 1
    assert "MACs: 31,684,180 exceed the dcase2024 limit of 30,000,000 by 1,684,180" in capsys.readouterr().out
    saved = tmp_path / "cx.json"
    assert cli_main(["check-complexity", "baseline24", "--config-override", "base_channels=24", "--json",
                     "--layers", "--save", str(saved)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == json.loads(saved.read_text()) and saved.with_suffix(".txt").is_file()
    assert data["within_budget"] and data["models"][0]["report"]["params"] < 61_148
    assert data["models"][0]["report"]["layers"]
    for bad in (["nosuchmodel"], ["baseline24", "-o", "nosuchkey=1"], ["baseline24", "--input-shape", "1,x"],
                [str(tmp_path / "missing.onnx")], ["baseline24", "--edition", "dcase1999"]):
        assert cli_main(["check-complexity", *bad]) == 2, bad
    assert "nosuchkey" in capsys.readouterr().err
