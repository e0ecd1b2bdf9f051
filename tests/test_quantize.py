"""Quantization-aware training: the fake-quant layers, freezing, and a QAT run through the trainer to INT8 ONNX."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from torch import nn

from asc.config import save_config, to_dict
from asc.data.validate import open_dataset
from asc.frontend import build_frontend
from asc.models.registry import build_model, load_bundle, make_config, save_bundle
from asc.quantize import (ActivationFakeQuant, FreezableBatchNorm2d, QATConfig, QATConv2d, calibrate,
                          fake_quant_weight, prepare_qat, run_qat, set_frozen, strip_qat)


def _logmels(n: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(32000) / 32000
    pitch, level = torch.rand(n, 1, generator=g) * 4000 + 50, torch.rand(n, 1, generator=g)
    waves = level * torch.sin(2 * torch.pi * pitch * t) + 0.05 * torch.randn(n, 32000, generator=g)
    with torch.no_grad():
        return build_frontend("baseline24").eval()(waves)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model("baseline24", n_classes=10)
    for m in model.modules():  # BatchNorm statistics from data: logits of unit scale
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model.train()(_logmels(32, seed=seed + 1))
    return model.eval()


def test_prepare_keeps_state_dict_and_strip_restores_float():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = _logmels(8)
    with torch.no_grad():
        reference = model(x)
    prepare_qat(model)
    assert sum(isinstance(m, QATConv2d) for m in model.modules()) == 21
    assert sum(isinstance(m, FreezableBatchNorm2d) for m in model.modules()) == 21
    state = model.state_dict()
    assert state.keys() == before.keys() and all(torch.equal(state[k], before[k]) for k in before)
    fresh = build_model("baseline24", n_classes=10)
    fresh.load_state_dict(state)  # strict: a QAT checkpoint is an ordinary bundle state dict

    calibrate(model, x)
    with torch.no_grad():
        simulated = model.eval()(x)
    error = (simulated - reference).abs().max()
    assert 0 < error < 0.25 * reference.abs().max(), "fake INT8 is close to, but not the same as, float"
    # the fake-INT8 logits follow the float ones (a random network's top classes are near ties: their agreement over
    # 8 clips would measure float noise, not the quantizer)
    assert torch.corrcoef(torch.stack([simulated.flatten(), reference.flatten()]))[0, 1] > 0.9

    strip_qat(model)
    assert not any(isinstance(m, (QATConv2d, FreezableBatchNorm2d, ActivationFakeQuant)) for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(x), reference)


def test_weight_grid_and_straight_through_gradient():
    w = torch.randn(6, 4, 3, 3, requires_grad=True)
    q = fake_quant_weight(w)
    scale = w.detach().reshape(6, -1).abs().amax(1) / 127
    steps = q.detach().reshape(6, -1) / scale[:, None]
    assert torch.allclose(steps, steps.round(), atol=1e-3) and steps.abs().max() <= 127 + 1e-3
    assert (q - w).abs().reshape(6, -1).max(1).values.le(scale / 2 + 1e-6).all()
    q.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def test_freezing_bn_and_observers():
    model = prepare_qat(_model())
    calibrate(model, _logmels(8))
    bn = next(m for m in model.modules() if isinstance(m, FreezableBatchNorm2d))
    fq = next(m for m in model.modules() if isinstance(m, ActivationFakeQuant))
    loud = _logmels(8, seed=5) * 3 + 2

    set_frozen(model, bn=True, observers=True)
    mean, lo = bn.running_mean.clone(), fq.min_val.clone()
    with torch.no_grad():
        train_out = model.train()(loud)
        eval_out = model.eval()(loud)
    assert torch.equal(bn.running_mean, mean) and torch.equal(fq.min_val, lo)
    assert torch.allclose(train_out, eval_out, atol=1e-5), "frozen BN normalises with its running statistics"

    set_frozen(model, bn=False, observers=False)
    with torch.no_grad():
        model.train()(loud)
    assert not torch.equal(bn.running_mean, mean) and not torch.equal(fq.min_val, lo)


def test_qat_run_through_the_trainer_exports_int8(synth_data, tmp_path):
    from asc.train.config import TrainConfig

    layout = open_dataset(synth_data.dev)
    run = tmp_path / "b24"
    cfg = TrainConfig(name="b24", data=str(synth_data.dev), split="100", model="baseline24", epochs=1, batch_size=80,
                      progress=False)
    save_config(cfg, run / "config.toml")
    model = build_model("baseline24", n_classes=len(layout.labels))
    save_bundle(run / "checkpoints" / "best.pt", model, "baseline24",
                make_config("baseline24", n_classes=len(layout.labels)), layout.labels, train_config=to_dict(cfg))

    summary = run_qat(run, QATConfig(epochs=1, n_calibration=32), progress=False)  # BN and observers frozen
    out = tmp_path / "b24-qat"
    assert summary["run"] == str(out) and json.loads((out / "qat.json").read_text())["source"] == str(run)
    saved = load_bundle(out)  # an ordinary float bundle, fine-tuned
    assert not any(isinstance(m, (QATConv2d, FreezableBatchNorm2d)) for m in saved.model.modules())
    assert any(not torch.equal(a, b) for a, b in zip(saved.model.state_dict().values(), model.state_dict().values()))
    qat_cfg = (out / "config.toml").read_text()
    assert "epochs = 1" in qat_cfg and "warmup_steps = 0" in qat_cfg and "init_from" in qat_cfg
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1] and lines[0]["lr"] == pytest.approx(5e-4)  # the run's lr / 10
    onnx_path = out / "export" / "model.int8.onnx"
    assert summary["export"]["path"] == str(onnx_path)
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(onnx_path)).graph.node}
    assert summary["fake_quant"]["epoch"] == 1 and (out / "eval-float" / "test.json").is_file()
    assert all(0.0 <= summary[k]["macro_accuracy"] <= 1.0 for k in ("fake_quant", "float", "int8"))
