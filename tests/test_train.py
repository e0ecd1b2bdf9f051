"""Training: schedules, KD loss, teacher-logit store, the training loop's run folder, resume after a crash,
two-process torchrun, distillation through the CLI and device-specific fine-tuning (tiny models, tiny data)."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from asc.cli import main
from asc.config import from_dict, read_toml
from asc.data.cache import load_cache
from asc.data.splits import carve_validation
from asc.data.validate import open_dataset
from asc.errors import ConfigError
from asc.models.registry import load_bundle
from asc.train.config import TrainConfig
from asc.train.losses import kd_loss
from asc.train.logits import TeacherLogits, TeacherLogitsError
from asc.train.recipes import build_config
from asc.train.schedules import cosine_with_warmup, cpjku
from asc.train.distributed import EpochSampler
from asc.train.trainer import Callback, fit

TINY = ["model_config.base_channels=8", "batch_size=16", "eval_batch_size=64", "schedule.warmup_steps=2",
        "optim.lr=0.01", "augment.mixstyle_p=1.0", "progress=false"]


def tiny_config(data: Path, epochs: int = 2, split: str = "50", extra: list[str] | None = None) -> TrainConfig:
    return build_config("baseline24", overrides=TINY + (extra or []), data=str(data), split=split, epochs=epochs)


# ---------------------------------------------------------------------------------------------------- schedules


def test_cosine_schedule_key_steps():
    f = cosine_with_warmup(warmup_steps=2000, total_steps=10000)
    assert f(0) == 0.0
    assert f(1000) == pytest.approx(0.5)
    assert f(2000) == pytest.approx(1.0)
    assert f(6000) == pytest.approx(0.5)  # half-way through the cosine
    assert f(10000) == pytest.approx(0.0, abs=1e-12)
    assert cosine_with_warmup(0, 100, min_factor=0.1)(100) == pytest.approx(0.1)


def test_cpjku_schedule_key_epochs():
    steps = 10
    f = cpjku(steps, warmup_epochs=14, rampdown_start=50, rampdown_epochs=84, last_factor=0.005)
    assert f(0) == pytest.approx(math.exp(-5 * (1 - 0.5 / 14) ** 2))  # epoch 0 is clipped to 0.5
    assert f(9) == f(0)  # constant within an epoch (the original steps per epoch)
    assert f(7 * steps) == pytest.approx(math.exp(-5 * 0.25))
    assert f(14 * steps) == 1.0
    assert f(50 * steps) == 1.0
    assert f(92 * steps) == pytest.approx(0.005 + 0.995 * 42 / 84)
    assert f(134 * steps) == pytest.approx(0.005)
    assert f(149 * steps + 9) == pytest.approx(0.005)


# ---------------------------------------------------------------------------------------------------- KD loss


def test_kd_loss_matches_hand_computation():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 10, generator=g) * 3, torch.randn(4, 10, generator=g) * 3
    y = torch.tensor([1, 0, 9, 3])
    lam, T = 0.02, 2.0
    loss, parts = kd_loss(s, y, t, lam, T)

    sn, tn = s.double().numpy() / T, t.double().numpy() / T
    log_ps = sn - np.log(np.exp(sn).sum(1, keepdims=True))
    log_pt = tn - np.log(np.exp(tn).sum(1, keepdims=True))
    kl = (np.exp(log_pt) * (log_pt - log_ps)).mean()  # averaged over batch x classes
    logits = s.double().numpy()
    ce = -(logits[np.arange(4), y.numpy()] - np.log(np.exp(logits).sum(1))).mean()
    expected = lam * ce + (1 - lam) * T * T * kl
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert (parts["label_loss"] + parts["kd_loss"]).item() == pytest.approx(expected, rel=1e-5)
    reference = torch.nn.KLDivLoss(reduction="none", log_target=True)(
        F.log_softmax(s / T, dim=-1), F.log_softmax(t / T, dim=-1)).mean()
    assert parts["kd_loss"].item() == pytest.approx((1 - lam) * T * T * reference.item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------------- logit store


def test_teacher_logits_round_trip_and_errors(synth_data, tmp_path):
    layout = open_dataset(synth_data.dev)
    files = layout.split("100")["filename"].tolist()
    logits = np.random.default_rng(0).normal(size=(len(files), len(layout.labels))).astype(np.float32)
    digests = load_cache(synth_data.dev, files, progress=False).digests(files)
    store = TeacherLogits.for_dataset(synth_data.dev, files, logits, layout.labels, digests,
                                      {"teachers": [{"run": "x"}]})
    path = store.save(tmp_path / "t.logits")
    assert json.loads((tmp_path / "t.logits.json").read_text())["fingerprint"] == store.fingerprint

    loaded = TeacherLogits.load(path, dataset_root=synth_data.dev)
    assert loaded.fingerprint == store.fingerprint and loaded.provenance["teachers"] == [{"run": "x"}]
    order = [files[5], files[0], files[17]]
    np.testing.assert_array_equal(loaded.for_files(order), logits[[5, 0, 17]])

    test_file = layout.split("test")["filename"].iloc[0]
    with pytest.raises(TeacherLogitsError, match=test_file.replace(".", r"\.")):
        loaded.for_files([files[0], test_file])

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    meta = (synth_data.dev / "meta.csv").read_text().splitlines()
    (foreign / "meta.csv").write_text("\n".join(meta[:-1]) + "\n")  # one clip fewer: another dataset
    with pytest.raises(TeacherLogitsError, match="another dataset"):
        TeacherLogits.load(path, dataset_root=foreign)
    with pytest.raises(TeacherLogitsError, match="not found"):
        TeacherLogits.load(tmp_path / "missing.logits")


def test_epoch_sampler_is_a_function_of_seed_and_epoch_and_pads_shards():
    a, b = EpochSampler(11, seed=3), EpochSampler(11, seed=3)
    a.set_epoch(4), b.set_epoch(4)
    assert list(a) == list(b) and sorted(a) == list(range(11))
    b.set_epoch(5)
    assert list(a) != list(b)
    shards = [EpochSampler(11, seed=3, rank=r, world_size=2) for r in range(2)]
    for s in shards:
        s.set_epoch(4)
    assert [len(s) for s in shards] == [6, 6]
    assert sorted(set(list(shards[0]) + list(shards[1]))) == list(range(11))


# ---------------------------------------------------------------------------------------------------- the loop


@pytest.fixture(scope="module")
def trained_run(synth_data, tmp_path_factory):
    """One uninterrupted 2-epoch run of a tiny baseline24 on the synthetic split 50."""
    run_dir = tmp_path_factory.mktemp("runs") / "plain"
    result = fit(tiny_config(synth_data.dev), run_dir)
    return run_dir, result


def test_run_folder_artefacts(trained_run, synth_data):
    """Without a validation set the run's model is its last epoch: no best.pt, no per-epoch validation."""
    from asc.evaluate import evaluate

    run_dir, result = trained_run
    for name in ("config.toml", "metrics.jsonl", "checkpoints/last.pt", "learning_curve.png",
                 "eval/test.json", "eval/test_confusion.png"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "checkpoints" / "best.pt").exists() and not (run_dir / "validation.csv").exists()
    cfg = from_dict(TrainConfig, read_toml(run_dir / "config.toml"))
    assert cfg.model_config["base_channels"] == 8 and cfg.model_config["n_classes"] == 10  # fully resolved
    assert cfg.frontend["n_mels"] == 256 and cfg.name == "plain"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert {"train_loss", "lr", "time_s"} <= set(records[-1])
    assert not any(key.startswith("val_") for r in records for key in r)
    saved = json.loads((run_dir / "eval" / "test.json").read_text())
    assert saved["n"] == 40
    assert saved["selection"] == {"checkpoint": "last", "epoch": 2, "selected_on": "last epoch"}
    last = evaluate(run_dir / "checkpoints" / "last.pt", synth_data.dev, out_dir=run_dir / "check", progress=False)
    assert result["macro_accuracy"] == pytest.approx(last["macro_accuracy"])
    assert result["log_loss"] == pytest.approx(last["log_loss"], rel=1e-6)
    bundle = load_bundle(run_dir, which="last")
    assert bundle.model_name == "baseline24" and bundle.extra["epoch"] == 2
    assert set(bundle.extra) >= {"optimizer", "scheduler", "rng", "sampler", "best_metric"}
    with pytest.raises(ConfigError, match="--resume"):
        fit(tiny_config(synth_data.dev), run_dir)


VALIDATION = ["validation.fraction=0.3", "validation.select=\"best\""]


def test_validation_set_is_carved_from_the_training_split_and_selects_the_model(synth_data, tmp_path):
    from asc.evaluate import evaluate
    from asc.runs import resolve_checkpoint

    run_dir = tmp_path / "val"
    result = fit(tiny_config(synth_data.dev, epochs=3, extra=VALIDATION), run_dir)
    layout = open_dataset(synth_data.dev)
    split, test = layout.split("50"), layout.split("test")
    val = pd.read_csv(run_dir / "validation.csv", sep="\t")
    val_rows = split[split["filename"].isin(val["filename"])]
    train_rows = split[~split["filename"].isin(val["filename"])]
    assert len(val_rows) == len(val) == 12 and set(val["filename"]) <= set(split["filename"])
    assert not set(val_rows["location"]) & set(train_rows["location"])  # whole locations
    assert not set(val["filename"]) & set(test["filename"])
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(r["val_n"] == 12 for r in records)
    best = max(records, key=lambda r: r["val_macro_accuracy"])  # the first of equals
    assert resolve_checkpoint(run_dir) == run_dir / "checkpoints" / "best.pt"
    bundle = load_bundle(run_dir)
    assert bundle.extra["epoch"] == best["epoch"]
    selection = json.loads((run_dir / "eval" / "test.json").read_text())["selection"]
    assert selection["checkpoint"] == "best" and selection["epoch"] == best["epoch"]
    assert selection["selected_on"] == "validation macro accuracy"
    assert selection["validation_macro_accuracy"] == pytest.approx(best["val_macro_accuracy"])
    again = evaluate(run_dir / "checkpoints" / "best.pt", synth_data.dev, out_dir=tmp_path / "check", progress=False)
    assert result["macro_accuracy"] == pytest.approx(again["macro_accuracy"])  # the dev-test score of best.pt
    with pytest.raises(ConfigError, match="validation.fraction"):
        fit(tiny_config(synth_data.dev, extra=["validation.select=\"best\""]), tmp_path / "no-val")


class SplitReads(Callback):
    """Records every split the dataset is asked for, and the end of each epoch, in order."""

    def __init__(self, monkeypatch):
        from asc.data.layout import Layout

        self.events: list[tuple[str, str]] = []
        original = Layout.split

        def split(layout, name):
            self.events.append(("split", str(name)))
            return original(layout, name)

        monkeypatch.setattr(Layout, "split", split)

    def on_epoch_end(self, state):
        self.events.append(("epoch_end", str(state.epoch)))


def _relabel_test_clips(src, dst):
    """A copy of dataset ``src`` whose test clips all carry one class, consistently: label and the scene in their
    file names (links to the original audio), in every table, so that the dataset validation accepts it."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("audio"))
    (dst / "audio").mkdir()
    test = pd.read_csv(src / "splits" / "test.csv", sep="\t")["filename"]
    label = sorted(pd.read_csv(src / "meta.csv", sep="\t")["scene_label"])[0]
    renamed = {f: f"audio/{label}-{f.split('/', 1)[1].split('-', 1)[1]}" for f in test}
    for f in pd.read_csv(src / "meta.csv", sep="\t")["filename"]:
        (dst / renamed.get(f, f)).symlink_to(src / f)
    for table in [dst / "meta.csv", *(dst / "splits").glob("*.csv"), *(dst / "evaluation_setup").glob("*.csv")]:
        df = pd.read_csv(table, sep="\t")
        relabel = df["filename"].isin(renamed)
        if "scene_label" in df.columns:
            df.loc[relabel, "scene_label"] = label
        df["filename"] = df["filename"].map(lambda f: renamed.get(f, f))
        df.to_csv(table, sep="\t", index=False)
    return dst


def test_no_decision_is_made_on_the_test_split(synth_data, tmp_path, monkeypatch):
    """Model selection and early stopping read only the training split; the test split is read after the last epoch,
    and scrambling its labels changes the reported score but not the model."""
    reads = SplitReads(monkeypatch)
    extra = VALIDATION + ["validation.patience=1"]
    fit(tiny_config(synth_data.dev, epochs=3, extra=extra), tmp_path / "a", callbacks=[reads])
    events = reads.events
    last_epoch = max(i for i, e in enumerate(events) if e[0] == "epoch_end")
    test_reads = [i for i, e in enumerate(events) if e == ("split", "test")]
    assert test_reads and min(test_reads) > last_epoch, events

    scrambled = _relabel_test_clips(synth_data.dev, tmp_path / "scrambled")
    b = fit(tiny_config(scrambled, epochs=3, extra=extra), tmp_path / "b")
    a_model = torch.load(tmp_path / "a" / "checkpoints" / "best.pt", weights_only=False)
    b_model = torch.load(tmp_path / "b" / "checkpoints" / "best.pt", weights_only=False)
    assert a_model["epoch"] == b_model["epoch"]
    for key, value in a_model["state_dict"].items():
        torch.testing.assert_close(b_model["state_dict"][key], value, msg=key)
    a = json.loads((tmp_path / "a" / "eval" / "test.json").read_text())
    assert a["confusion"] != b["confusion"]  # the scrambled labels are what the final report scores


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_train_start(self, state):
        self.calls.append(("start", state.epoch, state.step))

    def on_epoch_start(self, state):
        self.calls.append(("epoch_start", state.epoch, state.step))

    def on_epoch_end(self, state):
        self.calls.append(("epoch_end", state.epoch, state.step))


def test_given_model_and_callbacks(synth_data, tmp_path):
    """A network handed to fit (as quantization-aware training will) is trained, checkpointed and scored in memory;
    callbacks see the epoch boundaries."""
    from asc.models.registry import build_model

    model = build_model("baseline24", {"base_channels": 8}, n_classes=10)
    first = next(model.parameters()).detach().clone()
    recorder = Recorder()
    result = fit(tiny_config(synth_data.dev, epochs=2, split="25"), tmp_path / "given", callbacks=[recorder],
                 model=model)
    assert recorder.calls == [("start", 0, 0), ("epoch_start", 0, 0), ("epoch_end", 0, 2), ("epoch_start", 1, 2),
                              ("epoch_end", 1, 4)]
    assert not torch.equal(next(model.parameters()).detach(), first)  # trained in place
    saved = json.loads((tmp_path / "given" / "eval" / "test.json").read_text())
    assert saved["n"] == 40 and saved["macro_accuracy"] == pytest.approx(result["macro_accuracy"])


class OutputDtypes(Callback):
    """The dtype of every output of the network being trained."""

    def __init__(self):
        self.seen = []

    def on_train_start(self, state):
        state.model.register_forward_hook(lambda module, inputs, output: self.seen.append(output.dtype))


def test_mixed_precision_training_with_grad_scaler(synth_data, tmp_path):
    """Autocast requested on the CPU: the network runs in fp16 under a grad scaler (checkpointed), losses stay
    finite and the run reports like any other."""
    dtypes = OutputDtypes()
    cfg = tiny_config(synth_data.dev, epochs=1, split="25", extra=['autocast="fp16"'])
    fit(cfg, tmp_path / "fp16", callbacks=[dtypes])
    assert dtypes.seen and set(dtypes.seen) == {torch.float16}
    ckpt = torch.load(tmp_path / "fp16" / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["scaler"]["scale"] > 0  # the scaler ran
    record = json.loads((tmp_path / "fp16" / "metrics.jsonl").read_text().splitlines()[0])
    assert math.isfinite(record["train_loss"])
    assert read_toml(tmp_path / "fp16" / "config.toml")["autocast"] == "fp16"


class SimulatedCrash(Exception):
    pass


class CrashAt(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, state):
        if state.step == self.step:
            raise SimulatedCrash(f"crash after step {state.step}")


def test_resume_after_crash_mid_epoch_equals_uninterrupted(trained_run, synth_data, tmp_path):
    run_dir, result = trained_run
    resumed = tmp_path / "resumed"
    cfg = tiny_config(synth_data.dev)
    with pytest.raises(SimulatedCrash):
        fit(cfg, resumed, callbacks=[CrashAt(step=4)])  # 3 steps per epoch: dies in the 2nd epoch
    assert load_bundle(resumed, which="last").extra["epoch"] == 1
    resumed_result = fit(cfg, resumed, resume=True)

    a = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["state_dict"]
    b = torch.load(resumed / "checkpoints" / "last.pt", weights_only=False)["state_dict"]
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)
    rows_a = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows_b] == [1, 2]
    for ra, rb in zip(rows_a, rows_b):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-5)
    assert resumed_result["macro_accuracy"] == pytest.approx(result["macro_accuracy"])
    assert resumed_result["log_loss"] == pytest.approx(result["log_loss"], rel=1e-5)


def test_teacher_ensemble_and_distill_via_cli(trained_run, synth_data, tmp_path, capsys):
    run_dir, _ = trained_run
    store_path = tmp_path / "teachers" / "t.logits"
    assert main(["teachers", "ensemble", str(run_dir), str(run_dir), "--out", str(store_path),
                 "--data", str(synth_data.dev), "--json"]) == 0
    prov = json.loads(capsys.readouterr().out)
    single = json.loads((run_dir / "eval" / "test.json").read_text())["macro_accuracy"]
    assert prov["teachers"][0]["macro_accuracy"] == pytest.approx(single)
    assert prov["ensemble"]["macro_accuracy"] == pytest.approx(single)  # mean of two identical teachers
    store = TeacherLogits.load(store_path, dataset_root=synth_data.dev)
    assert len(store.filenames) == 80  # every training clip (split 100)

    args = ["distill", "--teachers", str(store_path), "--data", str(synth_data.dev), "--split", "25",
            "--epochs", "1", "--name", "kd", "--runs-dir", str(tmp_path / "runs"), "--json"]
    for o in TINY:
        args += ["-o", o]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 40
    record = json.loads((tmp_path / "runs" / "kd" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["train_kd_loss"] > 0
    cfg = read_toml(tmp_path / "runs" / "kd" / "config.toml")
    assert cfg["kd"]["teacher_logits"] == str(store_path) and cfg["kd"]["lam"] == 0.02

    online = ["distill", "--teachers", str(run_dir), str(run_dir), "--data", str(synth_data.dev), "--split", "25",
              "--epochs", "1", "--name", "kd-online", "--runs-dir", str(tmp_path / "runs"), "--json"]
    for o in TINY + ["augment.mixup_alpha=0.3"]:
        online += ["-o", o]
    assert main(online) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 40
    cfg = read_toml(tmp_path / "runs" / "kd-online" / "config.toml")
    assert cfg["kd"]["teachers"] == [str(run_dir)] * 2 and cfg["kd"]["teacher_logits"] == ""
    record = json.loads((tmp_path / "runs" / "kd-online" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["train_kd_loss"] > 0
    assert main(online[:2] + [str(store_path), str(run_dir)] + online[4:]) == 2
    assert "a logit store" in capsys.readouterr().err


def test_online_teachers_see_the_students_augmented_batch(trained_run, synth_data, tmp_path, monkeypatch):
    """Consistent teaching: the teacher gets the student's waveforms after DIR and roll, the student's Freq-MixStyle
    draw and mixup on its own features; in the trainer, exactly what the augmentation pipeline gave the student."""
    import soundfile as sf

    from asc.accel import CPU
    from asc.augment import FreqMixStyle, TrainAugment, freq_mixstyle, mix, mixup_params
    from asc.models.registry import build_model, make_config, save_bundle
    from asc.train.trainer import OnlineTeachers

    run_dir, _ = trained_run
    trained = load_bundle(run_dir)
    fresh = tmp_path / "fresh.pt"  # a second teacher whose logits depend strongly on its input
    torch.manual_seed(0)
    save_bundle(fresh, build_model("baseline24", {"base_channels": 8}, n_classes=10).eval(), "baseline24",
                make_config("baseline24", {"base_channels": 8}, n_classes=10), trained.labels)
    other = load_bundle(fresh)
    teachers = OnlineTeachers([str(run_dir), str(fresh)], trained.labels, 32000, CPU, channels_last=False)
    g = torch.Generator().manual_seed(1)  # clips of different spectra: tones of several pitches and levels in noise
    tone = torch.sin(2 * torch.pi * (torch.rand(6, 1, generator=g) * 4000 + 50) * torch.arange(32000) / 32000)
    audio = torch.rand(6, 1, generator=g) * tone + torch.rand(6, 1, generator=g) * 0.1 * torch.randn(6, 32000,
                                                                                                   generator=g)
    fms = FreqMixStyle(p=1.0, alpha=0.3, generator=torch.Generator().manual_seed(2)).train()
    draw = fms.sample(6)
    mixup = mixup_params(6, 0.3, torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = sum(b.model(mix(freq_mixstyle(b.frontend(audio), *draw), *mixup)) for b in (trained, other)) / 2
        plain = sum(b.model(b.frontend(audio)) for b in (trained, other)) / 2
    got = teachers.logits(audio, fms, draw, mixup)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)  # the mean of the two teachers
    assert not torch.allclose(got, plain, atol=1e-3)

    # In the training loop: the teachers get the very objects the pipeline made for the student.
    irs = tmp_path / "irs"
    irs.mkdir()
    sf.write(irs / "ir.wav", np.r_[1.0, np.zeros(99), -0.5].astype(np.float32), 32000)
    made, taught = [], []
    original_call, original_logits = TrainAugment.__call__, OnlineTeachers.logits

    def call(self, audio, devices):
        made.append(original_call(self, audio, devices))
        return made[-1]

    def logits(self, audio, mixstyle, draw, mixup):
        taught.append((audio, mixstyle, draw, mixup))
        return original_logits(self, audio, mixstyle, draw, mixup)

    monkeypatch.setattr(TrainAugment, "__call__", call)
    monkeypatch.setattr(OnlineTeachers, "logits", logits)
    cfg = tiny_config(synth_data.dev, epochs=1, split="25", extra=[
        "augment.mixup_alpha=0.3", "augment.dir_p=1.0", f"augment.dir_folder=\"{irs}\"", "augment.dir_devices=[\"a\"]"])
    cfg.kd.teachers = [str(run_dir)]
    fit(cfg, tmp_path / "kd-online")
    assert len(made) == len(taught) == 2
    for batch, (audio, mixstyle, draw, mixup) in zip(made, taught):
        assert audio is batch.audio and draw is batch.mixstyle and mixup is batch.mixup and mixup is not None
        assert mixstyle.p == 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_count_each_clip_once(synth_data, tmp_path):
    from asc.evaluate import evaluate

    data = tmp_path / "dev"
    shutil.copytree(synth_data.dev, data, ignore=shutil.ignore_patterns("audio"))
    (data / "audio").symlink_to(synth_data.dev / "audio")
    layout = open_dataset(data)
    _, val = carve_validation(layout.split("50"), 0.3, 0)
    split_csv = data / "splits" / "split50.csv"
    table = pd.read_csv(split_csv, sep="\t")
    table[table["filename"] != val["filename"].iloc[0]].to_csv(split_csv, sep="\t", index=False)
    # 11 validation clips: one shard is padded with a duplicate
    args = ["--data", str(data), "--split", "50", "--epochs", "1", "--name", "ddp", "--runs-dir",
            str(tmp_path / "runs"), "--quiet", "--val-split", "0.3"]
    for o in TINY:
        args += ["-o", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(_free_port()), "-m", "asc", "train", *args],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "runs" / "ddp"
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["val_n"] == 11 == len(pd.read_csv(run_dir / "validation.csv", sep="\t"))
    assert json.loads((run_dir / "eval" / "test.json").read_text())["n"] == 40
    # the same model scored in one process on the validation files
    (data / "splits" / "test.csv").write_text((run_dir / "validation.csv").read_text())
    single = evaluate(run_dir / "checkpoints" / "last.pt", data, out_dir=tmp_path / "check", progress=False)
    assert single["n"] == 11
    assert record["val_macro_accuracy"] == pytest.approx(single["macro_accuracy"])
    assert record["val_loss"] == pytest.approx(single["log_loss"], rel=1e-4)


def test_finetune_devices_routes_clips_by_device(trained_run, synth_data, tmp_path):
    from asc.inference import load_predictor
    from asc.train.devices import finetune_devices

    run_dir, _ = trained_run
    out = tmp_path / "ft"
    summary = finetune_devices(run_dir, out_dir=out, epochs=1, devices=["c", "s1"], overrides=TINY,
                               progress=False)
    assert set(summary["device_runs"]) == {"c", "s1"}
    assert (out / "eval" / "test.json").is_file() and (out / "finetune.json").is_file()
    for device in ("c", "s1"):
        assert (out / "devices" / device / "checkpoints" / "last.pt").is_file()
        cfg = read_toml(out / "devices" / device / "config.toml")
        assert cfg["train_devices"] == [device] and cfg["augment"]["mixstyle_p"] == 1.0  # TINY overrides apply

    predictor = load_predictor(out)
    assert set(predictor.device_models) == {"c", "s1"}
    general = predictor.model
    x = torch.randn(3, 1, 256, 65)
    routed = predictor.logits_from_logmel(x, device_ids=["c", "s4", "s1"])
    with torch.inference_mode():
        torch.testing.assert_close(routed[0], predictor.device_models["c"](x[:1]).float()[0])
        torch.testing.assert_close(routed[1], general(x[1:2]).float()[0])  # unseen device -> general model
        torch.testing.assert_close(routed[2], predictor.device_models["s1"](x[2:]).float()[0])
        assert not torch.allclose(predictor.device_models["c"](x[:1]), general(x[:1]))
    assert summary["per_device"]["c"]["n"] > 0
