"""The device path: device strings and autocast modes, and evaluate / predict / teachers ensemble run with
``--device cpu`` and autocast requested giving the predictions of the plain path (float32). On a machine without a
GPU the CUDA branches are exercised through their errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from asc.accel import Accel, autocast_dtype, parse_device, resolve
from asc.cli import main
from asc.errors import ConfigError
from asc.evaluate import evaluate
from asc.inference import TorchPredictor, load_predictor, predict_batches
from asc.models.registry import load_bundle, make_config, save_bundle
from asc.submission.predict import predict_eval_set
from asc.train.ensemble import ensemble_teachers
from asc.train.logits import TeacherLogits
from test_evaluate import OVERRIDES, random_model

# How far mixed-precision logits of the test model (|logits| <= 1.2) may be from float32: fp16 keeps 11 significant
# bits, bf16 8; measured 0.005 and 0.05.
TOLERANCE = {"fp16": 0.02, "bf16": 0.15}


def discriminative_bundle(path, dev_root, seed: int = 0):
    """A baseline24 bundle with random weights and the BatchNorm statistics of the dev-test clips, so that its
    logits differ from clip to clip (a random network with random statistics gives every clip the same class)."""
    from asc.data.dataset import ClipDataset
    from asc.frontend import build_frontend

    model = random_model(seed)
    dataset = ClipDataset.from_split(dev_root, "test", progress=False)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the one batch
    with torch.no_grad():
        model.train()(build_frontend("baseline24")(dataset.batch(np.arange(len(dataset)))["audio"]))
    save_bundle(path, model.eval(), "baseline24", make_config("baseline24", OVERRIDES, 10), dataset.labels)
    return path


@pytest.fixture(scope="module")
def bundle_path(synth_data, tmp_path_factory):
    return discriminative_bundle(tmp_path_factory.mktemp("models") / "tiny.pt", synth_data.dev)


def test_device_strings():
    assert parse_device("cpu") == torch.device("cpu") and parse_device(" CPU ") == torch.device("cpu")
    assert parse_device("auto") == (torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu"))
    for bad in ("gpu", "cuda:x", "cpu:1", "cuda:-1", ""):
        with pytest.raises(ConfigError, match="expected auto"):
            parse_device(bad)
    if not torch.cuda.is_available():
        for text in ("cuda", "cuda:1"):
            with pytest.raises(ConfigError, match="CUDA is not available on this machine"):
                parse_device(text)


def test_autocast_modes():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "auto") is None and autocast_dtype(cpu, "off") is None
    assert autocast_dtype(cpu, "bf16") == torch.bfloat16 and autocast_dtype(cpu, "fp16") == torch.float16
    with pytest.raises(ConfigError, match="autocast 'half'"):
        autocast_dtype(cpu, "half")
    accel = resolve("cpu", "bf16")
    assert accel == Accel(cpu, torch.bfloat16) and accel.precision == "bf16" and not accel.pin_memory
    assert accel.batch_size("predict") == 8 and resolve("cpu").batch_size("train") == 256
    with accel.autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with resolve("cpu", "off").autocast():
        assert not torch.is_autocast_enabled("cpu")


def test_cli_device_errors_are_one_line_exit_2(bundle_path, synth_data, capsys):
    args = ["evaluate", str(bundle_path), "--data", str(synth_data.dev)]
    assert main(args + ["--device", "tpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "device 'tpu'" in err
    assert main(args + ["--autocast", "fp8"]) == 2
    assert "autocast 'fp8'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(args + ["--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def _same_predictions(plain: np.ndarray, mixed: np.ndarray, precision: str = "fp16") -> None:
    """Logits within the rounding of ``precision``, and the same class wherever the float32 margin between the two
    best classes exceeds twice the largest deviation (closer calls may flip)."""
    assert plain.shape == mixed.shape
    deviation = float(np.abs(mixed - plain).max())
    assert 0 < deviation < TOLERANCE[precision]  # mixed precision did run, and only rounded
    top2 = np.sort(plain, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * deviation
    assert len(set(plain.argmax(1))) > 2, "the test model must tell clips apart"
    assert clear.mean() > (0.75 if precision == "fp16" else 0.25)
    np.testing.assert_array_equal(mixed.argmax(1)[clear], plain.argmax(1)[clear])


def test_torch_predictor_runs_under_the_requested_autocast(bundle_path):
    seen = []
    bundle = load_bundle(bundle_path)
    bundle.model.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    predictor = TorchPredictor(bundle, resolve("cpu", "bf16"))
    audio = torch.randn(4, 32000) * 0.1
    out = predict_batches(predictor, [{"audio": audio, "device": torch.zeros(4, dtype=torch.long)}], progress=False)
    assert seen == [torch.bfloat16] and out.dtype == np.float32  # the network in bf16, logits back in float32


def test_evaluate_through_the_device_path(bundle_path, synth_data, tmp_path, capsys):
    plain = evaluate(bundle_path, synth_data.dev, out_dir=tmp_path / "plain", progress=False, device="cpu",
                     autocast="off")
    assert main(["evaluate", str(bundle_path), "--data", str(synth_data.dev), "--out", str(tmp_path / "mixed"),
                 "--device", "cpu", "--autocast", "fp16", "--batch-size", "7", "--json"]) == 0
    mixed = json.loads(capsys.readouterr().out)
    assert mixed["n"] == plain["n"] == 40
    assert mixed["log_loss"] == pytest.approx(plain["log_loss"], abs=0.02)
    # clip by clip (the report's confusion matrix may move by the close calls), through the one prediction path
    from asc.data.dataset import ClipDataset
    from asc.inference import predict_dataset

    dataset = ClipDataset.from_split(synth_data.dev, "test", progress=False)
    logits = predict_dataset(load_predictor(bundle_path, "cpu", "off"), dataset, progress=False)
    for precision in ("fp16", "bf16"):
        mixed_logits = predict_dataset(load_predictor(bundle_path, "cpu", precision), dataset, 5, progress=False)
        _same_predictions(logits, mixed_logits, precision)


def test_predict_through_the_device_path(bundle_path, synth_data, tmp_path):
    plain = predict_eval_set(bundle_path, synth_data.eval, progress=False, device="cpu", autocast="off")
    out = tmp_path / "mixed.csv"
    assert main(["predict", str(bundle_path), "--eval-set", str(synth_data.eval), "--out", str(out), "--device",
                 "cpu", "--autocast", "fp16", "--quiet"]) == 0
    mixed = pd.read_csv(out, sep="\t")
    assert list(mixed["filename"]) == list(plain["filename"])
    labels = list(plain.columns[2:])
    logp_plain = np.log(plain[labels].to_numpy())
    logp_mixed = np.log(np.clip(mixed[labels].to_numpy(), 1e-6, 1))
    _same_predictions(logp_plain, logp_mixed)


def test_teachers_ensemble_through_the_device_path(bundle_path, synth_data, tmp_path):
    plain = ensemble_teachers([bundle_path], synth_data.dev, tmp_path / "plain.logits", progress=False,
                              device="cpu", autocast="off")
    mixed = ensemble_teachers([bundle_path], synth_data.dev, tmp_path / "mixed.logits", progress=False,
                              device="cpu", autocast="fp16", batch_size=9)
    assert (plain["precision"], mixed["precision"]) == ("fp32", "fp16")
    a = TeacherLogits.load(tmp_path / "plain.logits", synth_data.dev)
    b = TeacherLogits.load(tmp_path / "mixed.logits", synth_data.dev)
    assert a.filenames == b.filenames and len(a.filenames) == 80
    _same_predictions(a.logits, b.logits)
    assert not (tmp_path / "plain.logits.partial").exists()  # partial results are removed once merged
