import json

import numpy as np
import pytest
import torch

from asc.cli import main
from asc.data.validate import open_dataset
from asc.errors import DatasetError
from asc.evaluate import evaluate
from asc.models.registry import build_model, load_bundle, make_config, save_bundle

OVERRIDES = {"base_channels": 8}


def random_model(seed=0):
    torch.manual_seed(seed)
    model = build_model("baseline24", OVERRIDES, n_classes=10).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics so that every layer matters
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
    return model


@pytest.fixture(scope="module")
def layout(synth_data):
    return open_dataset(synth_data.dev)


@pytest.fixture(scope="module")
def bundle_path(layout, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    save_bundle(path, random_model(), "baseline24", make_config("baseline24", OVERRIDES, 10), layout.labels)
    return path


@pytest.fixture(scope="module")
def result(bundle_path, layout):
    return evaluate(bundle_path, layout.root, "test", batch_size=16, progress=False)


def test_evaluate_bundle_writes_json_and_plot(result, bundle_path, layout):
    table = layout.split("test")
    out = bundle_path.parent / "tiny.eval"
    assert json.loads((out / "test.json").read_text()) == result
    assert (out / "test_confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert result["model"] == str(bundle_path.resolve()) and result["data_root"] == str(layout.root.resolve())
    assert result["split"] == "test" and result["model_name"] == "baseline24"
    assert result["n"] == len(table)
    assert result["labels"] == layout.labels
    counts = table["device"].value_counts()
    assert {d: m["n"] for d, m in result["per_device"].items()} == counts.to_dict()
    assert {"real", "seen", "unseen"} <= set(result["per_group"])
    confusion = np.array(result["confusion"])
    assert confusion.sum() == len(table)
    assert confusion.sum(axis=1).tolist() == [int((table["label"] == k).sum()) for k in range(10)]
    assert result["accuracy"] == pytest.approx(np.trace(confusion) / len(table))


def test_evaluate_agrees_with_the_model_run_directly(result, bundle_path, layout):
    from asc.data.dataset import ClipDataset

    dataset = ClipDataset.from_split(layout, "test")
    bundle = load_bundle(bundle_path)
    audio = torch.stack([dataset[i]["audio"] for i in range(len(dataset))])
    with torch.no_grad():
        pred = bundle.model(bundle.frontend(audio)).argmax(1).numpy()
    labels = layout.split("test")["label"].to_numpy()
    assert result["accuracy"] == pytest.approx(float((pred == labels).mean()))


def test_run_folder_default_output_and_label_order(result, layout, tmp_path):
    """A model whose class order differs (head rows permuted to match) gets the same scores per class."""
    perm = np.random.default_rng(0).permutation(10)
    model = random_model()
    state = model.state_dict()
    for key in ("feed_forward.0.weight", "feed_forward.1.weight", "feed_forward.1.bias",
                "feed_forward.1.running_mean", "feed_forward.1.running_var"):
        state[key] = state[key][torch.as_tensor(perm)]
    model.load_state_dict(state)
    run = tmp_path / "runs" / "permuted"
    save_bundle(run / "checkpoints" / "best.pt", model, "baseline24", make_config("baseline24", OVERRIDES, 10),
                [layout.labels[i] for i in perm])
    permuted = evaluate(run, layout.root, "test", batch_size=64, progress=False)
    assert (run / "eval" / "test.json").is_file() and (run / "eval" / "test_confusion.png").is_file()
    assert permuted["labels"] == [layout.labels[i] for i in perm]
    for name, m in result["per_class"].items():
        assert permuted["per_class"][name]["n"] == m["n"]
        assert permuted["per_class"][name]["accuracy"] == pytest.approx(m["accuracy"])
        assert permuted["per_class"][name]["log_loss"] == pytest.approx(m["log_loss"], rel=1e-4)
    assert permuted["macro_accuracy"] == pytest.approx(result["macro_accuracy"])
    for device, m in result["per_device"].items():
        assert permuted["per_device"][device]["accuracy"] == pytest.approx(m["accuracy"])


def test_unknown_dataset_class_is_an_error(layout, tmp_path):
    labels = [*layout.labels[:-1], "ferry"]
    path = save_bundle(tmp_path / "other.pt", random_model(), "baseline24", make_config("baseline24", OVERRIDES, 10),
                       labels)
    with pytest.raises(DatasetError, match=layout.labels[-1]):
        evaluate(path, layout.root, "test", out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_multi_device_bundle_routes_clips_by_device(result, layout, tmp_path):
    """A DCASE25-style bundle with a device-specific model for b: only b's scores change."""
    path = save_bundle(tmp_path / "devices.pt", random_model(), "baseline24",
                       make_config("baseline24", OVERRIDES, 10), layout.labels,
                       device_state_dicts={"b": random_model(seed=1).state_dict()})
    routed = evaluate(path, layout.root, "test", batch_size=64, progress=False)
    assert routed["per_device"]["b"]["log_loss"] != pytest.approx(result["per_device"]["b"]["log_loss"], rel=1e-3)
    for device, m in result["per_device"].items():
        if device != "b":
            assert routed["per_device"][device] == pytest.approx(m, rel=1e-4)


def test_cli_prints_report_and_json(result, bundle_path, layout, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["evaluate", str(bundle_path), "--data", str(layout.root), "--out", str(out),
                 "--batch-size", "32"]) == 0
    text = capsys.readouterr().out
    assert f"macro accuracy {100 * result['macro_accuracy']:.2f} %" in text
    assert "airport" in text and "unseen" in text and str(out / "test.json") in text
    assert json.loads((out / "test.json").read_text())["confusion"] == result["confusion"]
    assert (out / "test_confusion.png").is_file()
    assert main(["evaluate", str(bundle_path), "--data", str(layout.root), "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["macro_accuracy"] == pytest.approx(result["macro_accuracy"])
    assert main(["evaluate", str(bundle_path), "--data", str(layout.root), "--split", "7"]) == 2
    assert "unknown split" in capsys.readouterr().err


def test_onnx_model_gets_the_same_report(result, bundle_path, layout):
    from asc.export import export_onnx
    from asc.runs import default_export_path

    onnx_path = export_onnx(bundle_path, default_export_path(bundle_path, "fp32"))
    onnx = evaluate(onnx_path, layout.root, "test", progress=False)
    assert json.loads((bundle_path.parent / "tiny.fp32.eval" / "test.json").read_text()) == onnx
    assert json.loads((bundle_path.parent / "tiny.eval" / "test.json").read_text()) == result
    assert onnx["model"] == str(onnx_path.resolve())
    assert onnx["confusion"] == result["confusion"]
    assert onnx["log_loss"] == pytest.approx(result["log_loss"], rel=1e-4)
    for device, m in result["per_device"].items():
        assert onnx["per_device"][device]["log_loss"] == pytest.approx(m["log_loss"], rel=1e-4)
