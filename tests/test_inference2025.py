"""The DCASE 2025 inference package: built from a trained, device-fine-tuned run, installed into a fresh virtual
environment where the toolkit is not importable, and put through a re-implementation of the organisers' complexity
and evaluation steps (tests/organisers/); plus budget refusal, label checks and ``asc check-complexity`` on a
package module."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from asc.cli import main as cli_main
from asc.data.layout import TAU_SCENES, open_eval_set
from asc.data.validate import open_dataset
from asc.evaluate import evaluate
from asc.models.registry import build_model, make_config, save_bundle
from asc.submission.complexity2025 import ORGANISER_DEVICE_IDS, organisers_macs, organisers_param_bytes
from asc.submission.inference2025 import build_inference_package
from asc.submission.package import Author, PackageConfig, SubmissionError, SubmissionRejected, SystemConfig
from asc.submission.package2025.deploy import deploy
from asc.submission.predict import predict_eval_set
from asc.train.devices import finetune_devices
from asc.train.recipes import build_config
from asc.train.trainer import fit

ORGANISERS = Path(__file__).parent / "organisers"
LABEL = "Doe_TUW_task1"
TINY = ["model_config.base_channels=8", "batch_size=16", "eval_batch_size=64", "schedule.warmup_steps=2",
        "optim.lr=0.01", "progress=false"]


def package_config(synth_data, systems: list[SystemConfig], **kw) -> PackageConfig:
    return PackageConfig(lastname="Doe", institute="TUW", eval_set=str(synth_data.eval), dev_data=str(synth_data.dev),
                         authors=[Author("Doe", "Jane", "jane@example.org", "TU Wien", corresponding=True)],
                         systems=systems, **kw)


@pytest.fixture(scope="module")
def device_run(synth_data, tmp_path_factory):
    """A tiny baseline24 trained one epoch on split 50, then fine-tuned one epoch for devices a and s1."""
    runs = tmp_path_factory.mktemp("runs")
    fit(build_config("baseline24", overrides=TINY, data=str(synth_data.dev), split="50", epochs=1), runs / "general")
    finetune_devices(runs / "general", out_dir=runs / "devices", epochs=1, devices=["a", "s1"], overrides=TINY,
                     progress=False)
    return runs / "devices"


@pytest.fixture(scope="module")
def package(synth_data, device_run, tmp_path_factory) -> Path:
    systems = [SystemConfig(index=1, name="tiny baseline, device-specific", abbreviation="TB", models={
                   "all": str(device_run)}, precision="fp16"),
               SystemConfig(index=2, name="tiny baseline, int8", abbreviation="TB8", models={"all": str(device_run)},
                            precision="int8")]
    return build_inference_package(package_config(synth_data, systems), tmp_path_factory.mktemp("build"))


@pytest.fixture(scope="module")
def venv(package, tmp_path_factory) -> tuple[Path, dict, Path]:
    """(python of a fresh venv holding only the installed package, its environment, a working folder)."""
    root = tmp_path_factory.mktemp("venv")
    work = tmp_path_factory.mktemp("work")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root / "env")],
                   check=True)
    python = root / "env" / "bin" / "python"
    # The venv sees the base interpreter's site-packages (torch), where README's `pip install ".[test]"` may have put
    # the toolkit too: an `asc` first on the path that cannot be imported keeps the package honest either way.
    shadow = root / "no-toolkit" / "asc"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'asc'\", name='asc')\n")
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONHOME"}, "PYTHONPATH": str(shadow.parent)}
    # --no-index: the package's requirements must all be met by what is installed, none by the toolkit
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index",
                    "--no-build-isolation", str(package)], check=True, env=env, cwd=work)
    return python, env, work


def run_in(venv, *args) -> subprocess.CompletedProcess:
    python, env, work = venv
    return subprocess.run([str(python), *map(str, args)], env=env, cwd=work, capture_output=True, text=True)


def test_package_passes_the_organisers_steps_without_the_toolkit(venv, package, device_run, synth_data):
    no_toolkit = run_in(venv, "-c", "import asc")
    assert no_toolkit.returncode != 0 and "No module named 'asc'" in no_toolkit.stderr
    installed = run_in(venv, "-c", f"import {LABEL}, json; print(json.dumps({LABEL}.__file__))")
    assert installed.returncode == 0 and "site-packages" in installed.stdout, installed.stderr

    declared = json.loads((package / LABEL / "complexity.json").read_text())
    for index, bytes_per_param in ((1, 2), (2, 1)):
        step = run_in(venv, ORGANISERS / "complexity_step.py", "--submission_name", LABEL, "--submission_index", index)
        assert step.returncode == 0, step.stderr
        measured = json.loads((venv[2] / "predictions" / f"{LABEL}_{index}" / "complexity.json").read_text())
        assert list(measured["per_device"]) == list(ORGANISER_DEVICE_IDS)
        assert measured["max_MACs"] <= 30_000_000 and measured["max_Params"] <= 128_000
        assert "OVER" not in step.stdout and step.stdout.count("within") == 13
        ours = declared[f"{LABEL}_{index}"]["per_device"]
        for device, figures in measured["per_device"].items():
            assert (figures["MACs"], figures["Params"]) == (ours[device]["MACs"], ours[device]["Params"])
            assert figures["Params"] == bytes_per_param * ours[device]["parameters"]
        assert ours["unknown"]["Params"] == ours["s10"]["Params"]

    step = run_in(venv, ORGANISERS / "evaluation_step.py", "--submission_name", LABEL, "--submission_index", 1,
                  "--dev_set_dir", synth_data.dev, "--eval_set_dir", synth_data.eval)
    assert step.returncode == 0, step.stderr
    out = venv[2] / "predictions" / f"{LABEL}_1"
    accuracy = json.loads((out / "test_accuracy.json").read_text())["Test Accuracy"]
    reference = evaluate(device_run, synth_data.dev, split="test", progress=False)
    margins = dev_test_margins(device_run, synth_data.dev)  # fp16 weights can only flip near-ties
    assert abs(accuracy - 100 * reference["accuracy"]) <= 100 * (margins < 0.01).sum() / len(margins) + 1e-6
    state = torch.load(out / "model_state_dict.pt", weights_only=True)
    assert {k.split(".")[0] for k in state} == {"base_model", "device_models"}
    assert {k.split(".")[1] for k in state if k.startswith("device_models.")} == {"a", "s1"}
    assert all(v.dtype == torch.float16 for k, v in state.items() if k.endswith("weight"))
    table = pd.read_csv(out / "output.csv", sep="\t")
    eval_files = list(open_eval_set(synth_data.eval).files["filename"])
    assert list(table.columns) == ["filename", "scene_label", *TAU_SCENES] and list(table["filename"]) == eval_files
    expected = predict_eval_set(device_run, synth_data.eval, progress=False)
    probs = expected[list(TAU_SCENES)].to_numpy()
    assert abs(table[list(TAU_SCENES)].to_numpy() - probs).max() < 2e-3
    clear = np.diff(np.sort(probs, axis=1)[:, -2:], axis=1)[:, 0] > 4e-3
    assert clear.any() and (table["scene_label"] == expected["scene_label"])[clear].all()


def dev_test_margins(run: Path, data: Path) -> np.ndarray:
    """Top-2 logit margin of each dev-test clip as ``asc evaluate`` predicts it."""
    from asc.data.dataset import ClipDataset
    from asc.inference import load_predictor, predict_batches

    predictor = load_predictor(run)
    dataset = ClipDataset.from_split(open_dataset(data), "test", progress=False)
    logits = predict_batches(predictor, torch.utils.data.DataLoader(dataset, batch_size=64), progress=False,
                             device_names=dataset.devices)
    top2 = np.sort(logits, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def test_generated_code_is_standalone_and_readable(package):
    sources = sorted((package / LABEL).rglob("*.py"))
    assert {p.relative_to(package / LABEL).as_posix() for p in sources} >= {
        "__init__.py", f"{LABEL}_1.py", f"{LABEL}_2.py", "_common.py", "deploy.py", "frontend.py", "audio.py",
        "models/baseline24.py"}
    for path in sources:
        tree = ast.parse(path.read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                     and not n.level}
        assert "asc" not in imported, path
        assert len(path.read_text().splitlines()) < 250, path
    for data in ("resources/dummy.wav", "resources/test.csv", f"ckpts/{LABEL}_1.pt", "complexity.json"):
        assert (package / LABEL / data).is_file()
    assert list(pd.read_csv(package / LABEL / "resources" / "test.csv", sep="\t").columns) == ["filename",
                                                                                                 "scene_label"]
    build = json.loads((package / "build.json").read_text())
    assert all(s["agreement_with_toolkit"]["top1_agreement"] >= 0.9 for s in build["systems"].values())


def test_check_complexity_of_a_package_module_matches_complexity_json(package, capsys):
    module = package / LABEL / f"{LABEL}_2.py"
    assert cli_main(["check-complexity", str(module), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["edition"] == "dcase2025"  # the default for package modules
    declared = json.loads((package / LABEL / "complexity.json").read_text())[f"{LABEL}_2"]["per_device"]
    devices = {m["device"]: m for m in result["models"]}
    assert list(devices) == [*ORGANISER_DEVICE_IDS, "unknown"]
    for device, m in devices.items():
        assert (m["report"]["macs"], m["param_bytes"]) == (declared[device]["MACs"], declared[device]["Params"])
        assert m["within_budget"] and m["report"]["stored_dtypes"] == {"int8": m["report"]["params"]}
    assert LABEL not in sys.modules  # loaded from its folder for the measurement only


def test_int8_networks_are_counted_at_one_byte_by_the_organisers_rule():
    net = build_model("cpmobile").eval()
    x = torch.randn(2, 1, 256, 64)
    reference = net(x)
    int8 = deploy(build_model("cpmobile").eval(), "int8")
    int8.load_state_dict(deploy(net, "int8").state_dict())
    grn_scalars = 12  # two float32 scalars in each of six blocks
    assert organisers_param_bytes(int8) == 126_952 - grn_scalars + 4 * grn_scalars
    assert organisers_macs(int8, (1, 1, 256, 64)) == organisers_macs(build_model("cpmobile"), (1, 1, 256, 64))
    assert torch.allclose(int8(x), reference, atol=0.5)  # weight-only quantization: close, not equal


def test_over_budget_systems_are_refused_with_the_checkers_message(synth_data, tmp_path):
    bundle = tmp_path / "cpmobile.pt"
    save_bundle(bundle, build_model("cpmobile"), "cpmobile", make_config("cpmobile"), list(TAU_SCENES))
    system = SystemConfig(index=1, name="CP-Mobile", abbreviation="CPM", models={"all": str(bundle)}, precision="fp16")
    with pytest.raises(SubmissionRejected, match=r"253,904 bytes.*128,000.*precision = \"int8\"") as e:
        build_inference_package(package_config(synth_data, [system]), tmp_path / "out")
    assert e.value.exit_code == 1 and not (tmp_path / "out" / LABEL).exists()
    assert not list((tmp_path / "out").glob(".*"))  # the staging folder is gone
    system.precision = "int8"
    folder = build_inference_package(package_config(synth_data, [system]), tmp_path / "out")
    figures = json.loads((folder / LABEL / "complexity.json").read_text())[f"{LABEL}_1"]
    assert figures["max_Params"] == 126_988 and figures["max_MACs"] == 28_893_268 and figures["within_budget"]


def test_labels_and_names_are_checked(synth_data, tmp_path):
    labels = [*TAU_SCENES[:-1], "beach"]
    bundle = tmp_path / "other.pt"
    save_bundle(bundle, build_model("baseline24", {"base_channels": 8}), "baseline24",
                make_config("baseline24", {"base_channels": 8}), labels)
    system = SystemConfig(index=1, name="x", abbreviation="x", models={"all": str(bundle)})
    with pytest.raises(SubmissionError, match="not the classes"):
        build_inference_package(package_config(synth_data, [system]), tmp_path / "out")
    cfg = package_config(synth_data, [system])
    cfg.lastname = "Müller"
    with pytest.raises(SubmissionError, match="ASCII"):
        build_inference_package(cfg, tmp_path / "out")
