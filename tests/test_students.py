"""Students (baseline24, CP-Mobile) and the CP-ResNet teacher: exact complexity figures, published checkpoints
reproduced, training, fusion, ONNX export, config overrides, and errors for wrong checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from asc.cli import main as cli_main
from asc.errors import CheckpointError, ConfigError
from asc.models.blocks import GRN, fusion_groups, make_divisible
from asc.complexity.catalog import catalog
from asc.models.convert import convert, convert_to_bundle
from asc.models.registry import build_model, get_spec, load_bundle, save_bundle

STUDENTS = ["baseline24", "cpmobile", "cpmobile_s", "cpmobile_xs"]
BUDGET_BYTES, BUDGET_MACS = 128_000, 30_000_000


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics/affines and GRN scalars, so exported and fused graphs are really compared."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
            elif isinstance(m, GRN):
                m.gamma.copy_(0.5 * torch.randn(1, generator=g))
                m.beta.copy_(0.1 * torch.randn(1, generator=g))
    return model.eval()


def test_complexity_figures_of_the_registry():
    rows = {r.name: r for r in catalog(["baseline24", "cpmobile", "cpmobile_s", "cpmobile_xs", "cpresnet"])}
    assert (rows["baseline24"].input_shape, rows["baseline24"].params, rows["baseline24"].macs) == \
        ((1, 1, 256, 65), 61_148, 29_419_156)
    assert (rows["cpmobile"].input_shape, rows["cpmobile"].params, rows["cpmobile"].macs) == \
        ((1, 1, 256, 64), 126_952, 28_893_268)
    assert (rows["cpresnet"].input_shape, rows["cpresnet"].params, rows["cpresnet"].macs) == \
        ((1, 1, 256, 43), 127_684, 28_840_396)
    assert rows["cpresnet"].role == "teacher" and rows["cpmobile"].role == "student"
    # each preset fits the 2024 budget at the precision its description states, and not at the next wider one
    for name, nbytes in [("baseline24", 2), ("cpmobile", 1), ("cpmobile_s", 2), ("cpmobile_xs", 4)]:
        r = rows[name]
        precision = {1: "int8", 2: "fp16", 4: "fp32"}[nbytes]
        assert precision in r.description
        assert r.params * nbytes <= BUDGET_BYTES < r.params * nbytes * 2 and r.macs <= BUDGET_MACS, name


def test_cpmobile_macs_depend_on_the_time_axis():
    from asc.complexity import count

    report = count(build_model("cpmobile"), (1, 1, 256, 65))
    assert (report.params, report.macs) == (126_952, 31_684_180)


def test_make_divisible_gives_the_published_widths():
    assert [make_divisible(32 * 1.8 ** i, 8) for i in range(3)] == [32, 56, 104]
    assert [make_divisible(32 * 2.3 ** i, 8) for i in range(3)] == [32, 72, 168]
    assert make_divisible(56 * 2.1, 8) == 120


@pytest.mark.parametrize("model_name, src, folder", [
    ("baseline24", "baseline24/reference.pt", "baseline24"),
    ("cpmobile", "cpmobile23/cpmobile23_epoch149.ckpt", "cpmobile23"),
])
def test_reference_logits_reproduced(shared_dir, tmp_path, model_name, src, folder):
    ref = torch.load(shared_dir / "reference" / folder / "reference.pt", weights_only=True)
    model, config = convert(shared_dir / "reference" / src, model_name)
    with torch.no_grad():
        logits = model(ref["logmel"].unsqueeze(1))
    torch.testing.assert_close(logits, ref["logits"], atol=1e-4, rtol=1e-4)

    out = tmp_path / f"{model_name}.pt"
    assert cli_main(["models", "convert", str(shared_dir / "reference" / src), "--model", model_name,
                     "--out", str(out)]) == 0
    bundle = load_bundle(out)
    assert bundle.model_name == model_name and len(bundle.labels) == 10
    with torch.no_grad():
        end_to_end = bundle.model(bundle.frontend(ref["waveform_32k"]))
    torch.testing.assert_close(end_to_end, ref["logits"], atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("name", STUDENTS + ["cpresnet"])
def test_forward_backward_small_input(name):
    model = build_model(name, n_classes=7).train()
    x = torch.randn(3, 1, 64, 24)
    logits = model(x)
    assert logits.shape == (3, 7)
    logits.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("name", ["baseline24", "cpmobile"])
def test_conv_bn_relu_fusion_keeps_outputs(name):
    model = _randomize(build_model(name))
    x = torch.randn(2, 1, 256, 64)
    with torch.no_grad():
        before = model(x)
    groups = fusion_groups(model)
    assert ["in_c.0.0", "in_c.0.1", "in_c.0.2"] in groups
    assert ["stages.s1.b1.block.2.0", "stages.s1.b1.block.2.1"] in groups
    fused = torch.ao.quantization.fuse_modules(model, groups)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    with torch.no_grad():
        torch.testing.assert_close(fused(x), before, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", STUDENTS)
def test_onnx_export_matches_torch(tmp_path, name):
    import onnxruntime as ort

    model = _randomize(build_model(name))
    x = torch.randn(2, 1, 256, 64)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False,
                      input_names=["logmel"], output_names=["logits"], verbose=False)
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "weights must be inside the .onnx file"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours = session.run(None, {"logmel": x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    assert expected.std() > 0.01, "the comparison must not be between near-constant outputs"
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=1e-4)


def test_config_overrides_change_shapes():
    wide = build_model("baseline24", {"base_channels": 48})
    assert wide.in_c[1][0].weight.shape == (48, 12, 3, 3)
    assert build_model("cpmobile", {"expansion_rate": 2.0}).stages.s1.b1.block[0][0].weight.shape == (64, 32, 1, 1)
    deep = build_model("cpmobile", {"n_blocks": [2, 2, 2]})
    assert [len(s) for s in deep.stages] == [2, 2, 2]
    assert build_model("cpresnet", {"widths": [16, 32, 48], "groups": [1, 1, 1]}).feed_forward[0].weight.shape == \
        (10, 48, 1, 1)
    assert build_model("cpresnet").stage3.block1.conv1.kernel_size == (3, 3)
    assert build_model("cpresnet", {"rho": 4}).stage3.block1.conv1.kernel_size == (1, 1)  # smaller receptive field
    with pytest.raises(ConfigError, match=r"groups\[1\]"):
        build_model("cpresnet", {"groups": [1, 3, 1]})
    model = build_model("baseline24", {"strides": {"b2": [2, 2]}})
    assert model(torch.randn(1, 1, 256, 65)).shape == (1, 10)
    assert model.stages.s1.b2.block[1][0].stride == (2, 2)
    with pytest.raises(ConfigError, match="b9"):
        build_model("cpmobile", {"strides": {"b9": [2, 2]}})
    with pytest.raises(ConfigError, match="strides.b2"):
        build_model("cpmobile", {"strides": {"b2": [2, 2, 2]}})
    with pytest.raises(ConfigError, match="base_chanels"):
        build_model("baseline24", {"base_chanels": 24})
    assert get_spec("cpresnet").frontend_config == {"hop_length": 750}


def test_wrong_checkpoint_names_mismatched_keys(tmp_path):
    src = tmp_path / "baseline24_state.pt"
    torch.save({"state_dict": build_model("baseline24").state_dict()}, src)
    with pytest.raises(CheckpointError, match=r"missing keys.*after_block_norm\.beta"):
        convert(src, "cpmobile")
    with pytest.raises(CheckpointError, match=r"shape mismatches.*in_c\.1\.0\.weight"):
        convert(src, "baseline24", {"base_channels": 48})
    with pytest.raises(CheckpointError, match="3 labels"):
        convert_to_bundle(src, "baseline24", tmp_path / "b.pt", labels=["a", "b", "c"])
    assert cli_main(["models", "convert", str(tmp_path / "missing.pt"), "--model", "baseline24",
                     "--out", str(tmp_path / "b.pt")]) == 2


def test_bundle_round_trip_and_models_list_json(tmp_path, capsys):
    model = _randomize(build_model("cpmobile_s"))
    path = save_bundle(tmp_path / "s.pt", model, "cpmobile_s", model.config, [f"c{i}" for i in range(10)])
    bundle = load_bundle(path)
    x = torch.randn(1, 1, 256, 64)
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(x), model(x))
    assert bundle.frontend.name == "cpjku23"

    assert cli_main(["models", "list", "baseline24", "cpresnet", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["role"], r["frontend"], r["params"], r["macs"]) for r in rows] == [
        ("baseline24", "student", "baseline24", 61_148, 29_419_156),
        ("cpresnet", "teacher", "cpjku23", 127_684, 28_840_396)]
    assert cli_main(["models", "list", "no_such_model"]) == 2
